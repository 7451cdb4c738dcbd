//! Finding input files (a folder, a file or a glob) and reading them in parallel: files over
//! rayon's workers, and large NDJSON files split in chunks at line starts.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::concat;
use arrow::datatypes::SchemaRef;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::reader::{DEFAULT_BATCH_SIZE, Decoder, ReaderBuilder};
use crate::reject::Reject;

/// One file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub path: PathBuf,
    /// Size as stored (compressed for `.gz`).
    pub len: u64,
}

/// The files under some input paths.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Files to read, sorted by path so that the order they were found in never matters.
    pub files: Vec<InputFile>,
    /// Files under a folder or glob that are not JSON by name, and were not read.
    pub skipped: Vec<PathBuf>,
}

/// Whether a file name says JSON: `.json`, `.jsonl`, `.ndjson`, each optionally `.gz`.
pub fn is_json_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_suffix(".gz").unwrap_or(name);
    [".json", ".jsonl", ".ndjson"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Expands `spec` (a folder, walked recursively; a file, read whatever its name; or a glob)
/// into the JSON files it names.
pub fn discover(spec: &str) -> Result<Discovery> {
    let mut out = Discovery::default();
    let path = Path::new(spec);
    if path.is_dir() {
        walk(path, &mut out)?;
    } else if path.is_file() {
        out.files.push(input_file(path)?);
    } else if spec.contains(['*', '?', '[']) {
        let entries = glob::glob(spec).map_err(|e| Error::Pattern {
            pattern: spec.to_owned(),
            message: e.to_string(),
        })?;
        for entry in entries {
            let p = entry.map_err(|e| Error::Io {
                path: e.path().display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
            if p.is_dir() {
                walk(&p, &mut out)?;
            } else if is_json_name(&p) {
                out.files.push(input_file(&p)?);
            } else {
                out.skipped.push(p);
            }
        }
        if out.files.is_empty() && out.skipped.is_empty() {
            return Err(Error::NoInput(spec.to_owned()));
        }
    } else {
        return Err(Error::NoInput(spec.to_owned()));
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out.files.dedup();
    out.skipped.sort();
    Ok(out)
}

fn input_file(path: &Path) -> Result<InputFile> {
    let meta = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
    Ok(InputFile {
        path: path.to_owned(),
        len: meta.len(),
    })
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn walk(dir: &Path, out: &mut Discovery) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = entry.path();
        let ty = entry.file_type().map_err(|e| io_error(&path, e))?;
        if ty.is_dir() || (ty.is_symlink() && path.is_dir()) {
            walk(&path, out)?;
        } else if is_json_name(&path) {
            out.files.push(input_file(&path)?);
        } else {
            out.skipped.push(path);
        }
    }
    Ok(())
}

/// How to read.
#[derive(Clone)]
pub struct ReadOptions {
    /// Rows per batch the decoders build (the result is the same for any size).
    pub batch_size: usize,
    /// Files larger than this are split in chunks of about this size, decoded in parallel.
    pub chunk_size: usize,
    /// Called with each file's stored size once it is read, from any worker.
    pub on_file: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl std::fmt::Debug for ReadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOptions")
            .field("batch_size", &self.batch_size)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            batch_size: DEFAULT_BATCH_SIZE,
            chunk_size: 4 << 20,
            on_file: None,
        }
    }
}

/// Everything read for one table.
#[derive(Debug, Clone)]
pub struct ReadOutput {
    /// All rows, in file order then line order.
    pub batch: RecordBatch,
    pub rejects: Vec<Reject>,
    pub files_read: usize,
    /// Bytes as stored (compressed for `.gz`).
    pub bytes_read: u64,
}

/// How inputs are grouped for decoding: small ones together (up to `chunk_size` bytes or 256
/// inputs a group, so thousands of one-object files do not make thousands of batches), a large
/// one alone (it is split in chunks itself).
#[derive(Debug)]
struct Grouper {
    chunk_size: usize,
    bytes: usize,
    count: usize,
}

impl Grouper {
    fn new(chunk_size: usize) -> Self {
        Grouper {
            chunk_size,
            bytes: 0,
            count: 0,
        }
    }

    fn is_big(&self, len: u64) -> bool {
        len as usize > self.chunk_size
    }

    /// Whether the open group must close before an input of `len` bytes joins it; a big input
    /// always closes it (and then goes alone, without joining).
    fn closes_before(&mut self, len: u64) -> bool {
        let len = len as usize;
        let close = self.count > 0
            && (len > self.chunk_size || self.bytes + len > self.chunk_size || self.count >= 256);
        if close || len > self.chunk_size {
            self.bytes = 0;
            self.count = 0;
        }
        if len <= self.chunk_size {
            self.bytes += len;
            self.count += 1;
        }
        close
    }
}

type Part = (Vec<RecordBatch>, Vec<Reject>);

/// The parts' batches and rejects, each in the parts' order.
fn flatten(parts: Vec<Part>) -> Part {
    let mut batches = Vec::new();
    let mut rejects = Vec::new();
    for (b, r) in parts {
        batches.extend(b);
        rejects.extend(r);
    }
    (batches, rejects)
}

/// The parts as one batch, and their rejects.
fn gather(parts: Vec<Part>, schema: &SchemaRef) -> Result<(RecordBatch, Vec<Reject>)> {
    let (batches, rejects) = flatten(parts);
    let gathering = std::time::Instant::now();
    let batch = concat_by_column(batches, schema)?;
    tracing::debug!(
        rows = batch.num_rows(),
        seconds = gathering.elapsed().as_secs_f64(),
        "gathered"
    );
    Ok((batch, rejects))
}

/// `batches` as one batch, built column by column on the current rayon pool. Each column's
/// pieces are freed as soon as they are copied, so the peak is the input plus the columns
/// being copied, not twice the input (as `concat_batches` needs).
fn concat_by_column(batches: Vec<RecordBatch>, schema: &SchemaRef) -> Result<RecordBatch> {
    match batches.len() {
        0 => return Ok(RecordBatch::new_empty(Arc::clone(schema))),
        1 => return Ok(batches.into_iter().next().expect("one batch")),
        _ => {}
    }
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let mut pieces: Vec<Vec<ArrayRef>> =
        vec![Vec::with_capacity(batches.len()); schema.fields().len()];
    for batch in batches {
        for (column, array) in pieces.iter_mut().zip(batch.columns()) {
            column.push(Arc::clone(array));
        }
    }
    let columns = pieces
        .into_par_iter()
        .map(|column| {
            let arrays: Vec<&dyn Array> = column.iter().map(AsRef::as_ref).collect();
            concat(&arrays)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

/// A large input (`stored` bytes as stored) decoded in chunks, then reported to `on_file`.
fn decode_big(
    name: &str,
    stored: u64,
    data: &[u8],
    schema: &SchemaRef,
    opts: &ReadOptions,
) -> Result<Part> {
    let out = decode_bytes(data, name, schema, opts)?;
    if let Some(cb) = &opts.on_file {
        cb(stored);
    }
    Ok(out)
}

/// Reads `files` into one batch of `schema`, in parallel on the current rayon pool: small
/// files in groups that share one decoder, large ones split in chunks.
pub fn read_files(
    files: &[InputFile],
    schema: &SchemaRef,
    opts: &ReadOptions,
) -> Result<ReadOutput> {
    let mut groups: Vec<&[InputFile]> = Vec::new();
    let mut grouper = Grouper::new(opts.chunk_size);
    let mut start = 0;
    for (i, f) in files.iter().enumerate() {
        if grouper.closes_before(f.len) {
            groups.push(&files[start..i]);
            start = i;
        }
        if grouper.is_big(f.len) {
            groups.push(&files[start..=i]);
            start = i + 1;
        }
    }
    if start < files.len() {
        groups.push(&files[start..]);
    }
    let parts: Vec<Part> = groups
        .par_iter()
        .map(|group| match group {
            [one] if grouper.is_big(one.len) => {
                let name = one.path.display().to_string();
                decode_big(&name, one.len, &load(&one.path)?, schema, opts)
            }
            _ => decode_group(
                group
                    .iter()
                    .map(|f| Ok((f.path.display().to_string(), f.len, load(&f.path)?))),
                schema,
                opts,
            ),
        })
        .collect::<Result<_>>()?;
    let (batch, rejects) = gather(parts, schema)?;
    Ok(ReadOutput {
        batch,
        rejects,
        files_read: files.len(),
        bytes_read: files.iter().map(|f| f.len).sum(),
    })
}

/// One input already in memory, as fetched from S3, say.
#[derive(Debug)]
pub struct Blob {
    /// What rejects name it by (`s3://bucket/key`).
    pub name: String,
    /// Its bytes as stored: gzip when `name` ends `.gz`.
    pub data: Vec<u8>,
}

/// Reads inputs that arrive one by one, in order (from a network fetch, say), into one batch
/// of `schema`: grouped as [`read_files`] groups files, each group decoded on `pool` while the
/// next arrives. At most a few groups per thread wait to be decoded, so memory stays bounded
/// by the pool's pace, not by the number of inputs. The result is the same as for the same
/// files on disk, read in the same order. Call it from outside `pool`.
pub fn read_stream<I, E>(
    blobs: I,
    schema: &SchemaRef,
    opts: &ReadOptions,
    pool: &rayon::ThreadPool,
) -> Result<ReadOutput>
where
    I: Iterator<Item = std::result::Result<Blob, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let parts: std::sync::Mutex<Vec<(usize, Result<Part>)>> = Default::default();
    // Tokens bound the groups fetched but not yet decoded.
    let in_flight = 2 * pool.current_num_threads() + 1;
    let (give, take) = std::sync::mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        let _ = give.send(());
    }
    let mut grouper = Grouper::new(opts.chunk_size);
    let mut files_read = 0;
    let mut bytes_read = 0;
    let fetched: Result<()> = pool.in_place_scope(|scope| {
        let mut group: Vec<Blob> = Vec::new();
        let mut index = 0;
        let mut dispatch = |work: Work| {
            let _ = take.recv();
            let (parts, give, i) = (&parts, give.clone(), index);
            index += 1;
            scope.spawn(move |_| {
                let out = match work {
                    Work::Group(blobs) => decode_group(
                        blobs.into_iter().map(|b| {
                            let len = b.data.len() as u64;
                            let data = unzip(&b.name, b.data)?;
                            Ok((b.name, len, data))
                        }),
                        schema,
                        opts,
                    ),
                    Work::Big(b) => {
                        let len = b.data.len() as u64;
                        unzip(&b.name, b.data)
                            .and_then(|data| decode_big(&b.name, len, &data, schema, opts))
                    }
                };
                if let Ok(mut p) = parts.lock() {
                    p.push((i, out));
                }
                let _ = give.send(());
            });
        };
        for blob in blobs {
            let blob = blob.map_err(|e| Error::Fetch(e.into()))?;
            let len = blob.data.len() as u64;
            files_read += 1;
            bytes_read += len;
            if grouper.closes_before(len) {
                dispatch(Work::Group(std::mem::take(&mut group)));
            }
            if grouper.is_big(len) {
                dispatch(Work::Big(blob));
            } else {
                group.push(blob);
            }
        }
        if !group.is_empty() {
            dispatch(Work::Group(group));
        }
        Ok(())
    });
    fetched?;
    let mut parts = parts.into_inner().unwrap_or_default();
    parts.sort_by_key(|(i, _)| *i);
    let parts = parts
        .into_iter()
        .map(|(_, p)| p)
        .collect::<Result<Vec<_>>>()?;
    let (batch, rejects) = pool.install(|| gather(parts, schema))?;
    Ok(ReadOutput {
        batch,
        rejects,
        files_read,
        bytes_read,
    })
}

enum Work {
    Group(Vec<Blob>),
    Big(Blob),
}

/// Discovers the files at `spec` (folder, file or glob) and reads them: [`discover`], then
/// [`read_files`].
pub fn read_path(spec: &str, schema: &SchemaRef, opts: &ReadOptions) -> Result<ReadOutput> {
    read_files(&discover(spec)?.files, schema, opts)
}

/// Decodes small inputs (name, stored size, bytes) one after another with one decoder.
fn decode_group(
    inputs: impl Iterator<Item = Result<(String, u64, Vec<u8>)>>,
    schema: &SchemaRef,
    opts: &ReadOptions,
) -> Result<Part> {
    let mut decoder = ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(opts.batch_size)
        .build_decoder()?;
    let mut batches = Vec::new();
    for input in inputs {
        let (name, len, data) = input?;
        decoder.next_stream(Arc::from(name), &mut batches)?;
        let mut pos = 0;
        while pos < data.len() {
            pos += decoder.decode(&data[pos..])?;
            if decoder.is_full() {
                batches.extend(decoder.flush()?);
            }
        }
        if let Some(cb) = &opts.on_file {
            cb(len);
        }
    }
    decoder.finish();
    while let Some(batch) = decoder.flush()? {
        batches.push(batch);
    }
    Ok((batches, decoder.take_rejects()))
}

/// A file's bytes, decompressed when its name ends `.gz`.
fn load(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| io_error(path, e))?;
    unzip(&path.display().to_string(), raw)
}

/// `raw` decompressed when `name` ends `.gz`, else as it is.
fn unzip(name: &str, raw: Vec<u8>) -> Result<Vec<u8>> {
    if !name.ends_with(".gz") {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 6);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|source| Error::Io {
            path: name.to_owned(),
            source,
        })?;
    Ok(out)
}

/// Decodes a whole stream held in memory: a large one whose first value is an object is
/// split at lines that start with `{`, and the pieces decoded in parallel.
pub fn decode_bytes(
    data: &[u8],
    source: &str,
    schema: &SchemaRef,
    opts: &ReadOptions,
) -> Result<(Vec<RecordBatch>, Vec<Reject>)> {
    let source: Arc<str> = Arc::from(source);
    let builder = ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(opts.batch_size)
        .with_source(Arc::clone(&source));
    let starts = chunk_starts(data, opts.chunk_size);
    if starts.len() == 1 {
        return decode_all(builder.build_decoder()?, data);
    }
    let mut bounds: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    bounds.push((*starts.last().unwrap_or(&0), data.len()));
    let lines: Vec<u64> = bounds
        .par_iter()
        .map(|&(a, b)| memchr::memchr_iter(b'\n', &data[a..b]).count() as u64)
        .collect();
    let mut first_line = 1;
    let mut origins = Vec::with_capacity(bounds.len());
    for (&(a, b), n) in bounds.iter().zip(&lines) {
        origins.push((a, b, first_line));
        first_line += n;
    }
    let parts: Vec<Part> = origins
        .par_iter()
        .map(|&(a, b, line)| {
            let decoder = builder
                .clone()
                .with_origin(line, a as u64)
                .build_decoder()?;
            // Only the first piece may begin with a byte order mark.
            decode_all(decoder, &data[a..b])
        })
        .collect::<Result<_>>()?;
    Ok(flatten(parts))
}

/// Where to split `data` for parallel decoding: always 0, then after the first newline past
/// each multiple of `chunk_size` that is followed by `{`. A stream that opens with anything but
/// an object (a top-level array, say) is not split.
fn chunk_starts(data: &[u8], chunk_size: usize) -> Vec<usize> {
    let mut starts = vec![0];
    let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let first = body.iter().find(|b| !crate::reader::is_ws(**b));
    if data.len() <= chunk_size || first != Some(&b'{') {
        return starts;
    }
    let finder = memchr::memmem::Finder::new(b"\n{");
    let mut from = chunk_size;
    while from < data.len() {
        match finder.find(&data[from..]) {
            Some(i) => {
                let start = from + i + 1;
                starts.push(start);
                from = start + chunk_size;
            }
            None => break,
        }
    }
    starts
}

fn decode_all(mut decoder: Decoder, data: &[u8]) -> Result<(Vec<RecordBatch>, Vec<Reject>)> {
    let mut batches = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        pos += decoder.decode(&data[pos..])?;
        if decoder.is_full() {
            batches.extend(decoder.flush()?);
        }
    }
    decoder.finish();
    while let Some(batch) = decoder.flush()? {
        batches.push(batch);
    }
    Ok((batches, decoder.take_rejects()))
}
