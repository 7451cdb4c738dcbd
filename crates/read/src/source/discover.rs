//! What the input is: one [`Input`] type parses a folder, a file, a glob or an `s3://` URL,
//! and [`discover_all`] turns inputs into the same ordered list of [`InputFile`]s whether they
//! lie on disk or in S3. What counts as an input file, and the order files are read in, are
//! decided here and nowhere else.

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::source::{Blob, BoxError};

/// `s3://bucket/key-or-prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Url {
    pub bucket: String,
    /// The key, or a prefix, without a leading `/` (may be empty: the whole bucket).
    pub key: String,
}

impl S3Url {
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::S3Url(url.to_owned()))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::S3Url(url.to_owned()));
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The URL `spec` names, when it names S3 (`s3://…`); the one place that tells.
    pub fn named(spec: &str) -> Option<Result<Self>> {
        spec.starts_with("s3://").then(|| S3Url::parse(spec))
    }

    /// `self` with `/rel` appended (no doubled slash).
    pub fn join(&self, rel: &str) -> S3Url {
        let key = match self.key.trim_end_matches('/') {
            "" => rel.to_owned(),
            base => format!("{base}/{rel}"),
        };
        S3Url {
            bucket: self.bucket.clone(),
            key,
        }
    }

    /// The same bucket, another key.
    pub fn with_key(&self, key: &str) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
        }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// One input as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A folder (walked recursively), a file (read whatever its name) or a glob.
    Local(String),
    /// Every object under `s3://bucket/prefix`.
    S3(S3Url),
}

impl Input {
    pub fn parse(spec: &str) -> Result<Self> {
        match S3Url::named(spec) {
            Some(url) => url.map(Input::S3),
            None => Ok(Input::Local(spec.to_owned())),
        }
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Input::S3(_))
    }
}

impl FromStr for Input {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        Input::parse(spec)
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Local(spec) => f.write_str(spec),
            Input::S3(url) => url.fmt(f),
        }
    }
}

/// Where one file is, or where output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Path(PathBuf),
    S3(S3Url),
}

impl Location {
    /// `s3://bucket/key`, or a path.
    pub fn parse(spec: &str) -> Result<Self> {
        match S3Url::named(spec) {
            Some(url) => url.map(Location::S3),
            None => Ok(Location::Path(spec.into())),
        }
    }

    /// Files read in this order: paths as paths sort (component by component, so `a/…`
    /// comes before `a-b/…`, which S3's byte order puts first); objects by bucket, then key
    /// as a path.
    fn order(&self, other: &Location) -> Ordering {
        match (self, other) {
            (Location::Path(a), Location::Path(b)) => a.cmp(b),
            (Location::S3(a), Location::S3(b)) => {
                (&a.bucket, Path::new(&a.key)).cmp(&(&b.bucket, Path::new(&b.key)))
            }
            (Location::Path(_), Location::S3(_)) => Ordering::Less,
            (Location::S3(_), Location::Path(_)) => Ordering::Greater,
        }
    }
}

/// One file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub location: Location,
    /// Size as stored (compressed for `.gz`).
    pub len: u64,
    /// What changes when the file does, with its size: a local file's mtime (nanoseconds
    /// since the epoch), an S3 object's ETag. `None` when the system gives none.
    pub version: Option<String>,
}

impl InputFile {
    /// What rejects name it by: its path, or `s3://bucket/key`.
    pub fn name(&self) -> String {
        match &self.location {
            Location::Path(p) => p.display().to_string(),
            Location::S3(url) => url.to_string(),
        }
    }

    /// Whether it is on disk.
    pub fn is_local(&self) -> bool {
        self.path().is_some()
    }

    /// Its path on disk, for a local file.
    pub fn path(&self) -> Option<&Path> {
        match &self.location {
            Location::Path(p) => Some(p),
            Location::S3(_) => None,
        }
    }
}

/// The files under some inputs.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Files to read, in [`Location`] order, each once, so that the order inputs were given
    /// or found in never matters.
    pub files: Vec<InputFile>,
    /// Files under a folder, glob or prefix that are not JSON by name, and were not read.
    pub skipped: Vec<String>,
}

impl Discovery {
    /// Bytes as stored.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }

    /// Whether every file is on disk.
    pub fn is_local(&self) -> bool {
        self.files.iter().all(InputFile::is_local)
    }

    /// Adds an object of a listing: read when JSON by name, else skipped.
    fn offer_object(&mut self, url: S3Url, len: u64, version: Option<String>) {
        if is_json_name(Path::new(&url.key)) {
            self.files.push(InputFile {
                location: Location::S3(url),
                len,
                version,
            });
        } else {
            self.skipped.push(url.to_string());
        }
    }

    /// Adds a local file: read when JSON by name or `named` itself, else skipped (and not
    /// even looked at).
    fn offer_path(&mut self, path: PathBuf, named: bool) -> Result<()> {
        if named || is_json_name(&path) {
            let meta = std::fs::metadata(&path).map_err(|source| io_error(&path, source))?;
            let version = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos().to_string());
            self.files.push(InputFile {
                location: Location::Path(path),
                len: meta.len(),
                version,
            });
        } else {
            self.skipped.push(path.display().to_string());
        }
        Ok(())
    }

    /// Adds what `other` found.
    fn absorb(&mut self, other: Discovery) {
        self.files.extend(other.files);
        self.skipped.extend(other.skipped);
    }

    fn found(&self) -> usize {
        self.files.len() + self.skipped.len()
    }

    fn sort(&mut self) {
        self.files.sort_by(|a, b| a.location.order(&b.location));
        self.files.dedup();
        self.skipped.sort();
        self.skipped.dedup();
    }
}

/// An object of a listing: where it is, its size, its ETag.
pub type Listed = (S3Url, u64, Option<String>);

/// Where inputs other than local files are listed and fetched (S3, by `sparkify-s3`).
pub trait Remote: Sync {
    /// Every object under `url`'s prefix with its size and ETag, folder markers left out. An
    /// empty listing is an error.
    fn list(&self, url: &S3Url) -> std::result::Result<Vec<Listed>, BoxError>;

    /// The bytes of `files` as stored, yielded in the order given; the iterator stops after
    /// the first error.
    fn fetch(
        &self,
        files: &[InputFile],
    ) -> Box<dyn Iterator<Item = std::result::Result<Blob, BoxError>> + Send + '_>;
}

/// Whether a file name says JSON: `.json`, `.jsonl`, `.ndjson`, each optionally `.gz`.
pub fn is_json_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_suffix(".gz").unwrap_or(name);
    [".json", ".jsonl", ".ndjson"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// The files of `inputs`, all local or all in S3 (listed with `remote`).
pub fn discover_all(inputs: &[Input], remote: Option<&dyn Remote>) -> Result<Discovery> {
    let s3 = inputs.iter().filter(|i| i.is_s3()).count();
    if s3 > 0 && s3 < inputs.len() {
        return Err(Error::MixedInputs);
    }
    let mut out = Discovery::default();
    for input in inputs {
        match input {
            Input::Local(spec) => discover_local(spec, &mut out)?,
            Input::S3(url) => {
                let remote = remote.ok_or(Error::NoRemote)?;
                for (url, len, etag) in remote.list(url).map_err(Error::Fetch)? {
                    out.offer_object(url, len, etag);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Expands one local `spec` (a folder, walked recursively; a file, read whatever its name; or
/// a glob) into the JSON files it names.
pub fn discover(spec: &str) -> Result<Discovery> {
    discover_all(&[Input::Local(spec.to_owned())], None)
}

fn discover_local(spec: &str, out: &mut Discovery) -> Result<()> {
    let path = Path::new(spec);
    if path.is_dir() {
        return walk(path, out);
    }
    if path.is_file() {
        return out.offer_path(path.to_owned(), true);
    }
    if !spec.contains(['*', '?', '[']) {
        return Err(Error::NoInput(spec.to_owned()));
    }
    let entries = glob::glob(spec).map_err(|e| Error::Pattern {
        pattern: spec.to_owned(),
        message: e.to_string(),
    })?;
    let before = out.found();
    for entry in entries {
        let p = entry.map_err(|e| Error::Io {
            path: e.path().display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.offer_path(p, false)?;
        }
    }
    if out.found() == before {
        return Err(Error::NoInput(spec.to_owned()));
    }
    Ok(())
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Adds the files under `dir` to `out`.
fn walk(dir: &Path, out: &mut Discovery) -> Result<()> {
    out.absorb(walk_parallel(dir)?);
    Ok(())
}

/// The files under `dir`, its entries looked at in parallel on the caller's pool (one after
/// another, the 14,896 song files' folders and sizes took 0.2 s, the whole CPU of a 100x
/// run's first 0.3 s). Their order is [`Discovery::sort`]'s.
fn walk_parallel(dir: &Path) -> Result<Discovery> {
    let entries = std::fs::read_dir(dir)
        .and_then(Iterator::collect::<std::io::Result<Vec<_>>>)
        .map_err(|e| io_error(dir, e))?;
    entries
        .into_par_iter()
        .map(|entry| {
            let path = entry.path();
            let ty = entry.file_type().map_err(|e| io_error(&path, e))?;
            if ty.is_dir() || (ty.is_symlink() && path.is_dir()) {
                return walk_parallel(&path);
            }
            let mut found = Discovery::default();
            found.offer_path(path, false)?;
            Ok(found)
        })
        .try_reduce(Discovery::default, |mut all, found| {
            all.absorb(found);
            Ok(all)
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_parse_and_join() {
        let u = S3Url::parse("s3://b/song_data/").unwrap();
        assert_eq!(u.bucket, "b");
        assert_eq!(u.join("x.json").key, "song_data/x.json");
        assert_eq!(S3Url::parse("s3://b").unwrap().join("k").key, "k");
        assert_eq!(S3Url::parse("s3://b/p").unwrap().to_string(), "s3://b/p");
        assert!(S3Url::parse("s3:///k").is_err());
        assert!(S3Url::parse("/tmp/x").is_err());
    }

    #[test]
    fn objects_read_in_path_order() {
        let mut found = Discovery::default();
        for key in ["p/a-b/y.json", "p/a/x.json", "p/readme.txt", "p/a/x.json"] {
            found.offer_object(S3Url::parse("s3://b/p").unwrap().with_key(key), 1, None);
        }
        found.sort();
        let names: Vec<String> = found.files.iter().map(InputFile::name).collect();
        assert_eq!(names, ["s3://b/p/a/x.json", "s3://b/p/a-b/y.json"]);
        assert_eq!(found.skipped, ["s3://b/p/readme.txt"]);
    }
}
