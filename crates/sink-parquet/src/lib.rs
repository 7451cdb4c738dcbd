//! sparkify-sink-parquet: the tables as Parquet, in a folder or under an S3 prefix, laid out
//! as a Hive-partitioned data lake (the layout Spark's `partitionBy` writes, which Redshift
//! Spectrum, Athena, DuckDB and Polars read):
//!
//! ```text
//! OUT/ft_songplays/year=2018/month=11/part-00000.parquet
//! OUT/dm_songs/year=1969/artist_id=ARMJAGH1187FB546F3/part-00000.parquet
//! OUT/dm_users/part-00000.parquet  (dm_artists, dm_time, load_errors alike)
//! OUT/staging_events/…, OUT/staging_songs/…  (the staging tables, only with
//!                                               [`ParquetSink::with_staging_tables`])
//! OUT/_SUCCESS
//! ```
//!
//! The encoding and the partitioning are `sparkify-parquet`'s, shared with Redshift's Parquet
//! upload; this crate decides where the files go and how a rerun replaces them.
//!
//! A rerun replaces the output: in a folder, the new output is written beside it and
//! exchanged with the old one in one atomic rename (the old one is then deleted). S3 has no rename: the new
//! objects are uploaded under `OUT/_tmp-RUN/`, and only once all of them are there is
//! `_SUCCESS` removed, each object copied into place server-side, the old objects the new run
//! did not write deleted, and `_SUCCESS` written again. A failed upload leaves the previous
//! output as it was; a reader that waits for `_SUCCESS` never sees a half-swapped one.
//!
//! ```no_run
//! use sparkify_core::Sink;
//! use sparkify_sink_parquet::ParquetSink;
//!
//! let mut sink = ParquetSink::dir("lake").with_staging_tables(true);
//! sink.check()?;
//! # Ok::<(), sparkify_sink_parquet::Error>(())
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sparkify_core::model::{Rows, SLICE_ROWS};
use sparkify_core::sink::{self, QueryResult, Staged, TablesAction};
use sparkify_core::source::Location;
use sparkify_core::table::STAGING_TABLES;
use sparkify_core::{Load, Sink};
pub use sparkify_parquet::Compression;
use sparkify_parquet::{PartitionedWriter, TableWriter, count_rows, io, partitioning, write_table};
use sparkify_s3::{Body, LazyS3, S3, S3Options, S3Url};

/// What can go wrong writing the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input failed while a streamed load was read; nothing was written.
    #[error(transparent)]
    Core(#[from] sparkify_core::Error),
    /// A lake is written whole: it has no rows to add a file's to.
    #[error(
        "a Parquet lake is replaced whole on every load: --incremental needs a DuckDB, \
         PostgreSQL or Redshift sink"
    )]
    Incremental,
    #[error(transparent)]
    Unreconciled(#[from] sparkify_core::sink::Unreconciled),
    #[error(transparent)]
    Parquet(#[from] sparkify_parquet::Error),
    #[error(transparent)]
    S3(#[from] sparkify_s3::Error),
    /// A Parquet lake has no SQL tables to create or drop, and runs no SQL.
    #[error("a Parquet sink {0}")]
    NoSql(&'static str),
    /// The load brought no parsed tables: the lake is written from what sparkify parsed.
    #[error("a Parquet sink needs the parsed tables")]
    NothingParsed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a Parquet sink is built from.
#[derive(Debug, Clone)]
pub struct ParquetConfig {
    /// A folder, or an S3 prefix.
    pub location: Location,
    pub compression: Compression,
    /// Also write the staging tables, `staging_events` and `staging_songs`.
    pub staging_tables: bool,
    /// Uploads at a time, for an S3 location.
    pub concurrency: usize,
    /// The S3 client's settings, for an S3 location.
    pub s3: S3Options,
}

impl ParquetConfig {
    pub fn new(location: Location) -> Self {
        ParquetConfig {
            location,
            compression: Compression::default(),
            staging_tables: false,
            concurrency: sparkify_s3::DEFAULT_CONCURRENCY,
            s3: S3Options::default(),
        }
    }

    /// The sink; nothing is written or connected yet.
    pub fn build(self) -> ParquetSink {
        ParquetSink::new(self)
    }
}

/// The Parquet sink.
#[derive(Debug)]
pub struct ParquetSink {
    location: Location,
    s3: LazyS3,
    compression: Compression,
    staging_tables: bool,
    concurrency: usize,
}

impl ParquetSink {
    pub fn new(config: ParquetConfig) -> Self {
        ParquetSink {
            s3: LazyS3::new(config.s3),
            location: config.location,
            compression: config.compression,
            staging_tables: config.staging_tables,
            concurrency: config.concurrency.max(1),
        }
    }

    /// A lake folder.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        ParquetSink::new(ParquetConfig::new(Location::Path(dir.into())))
    }

    /// A lake under `url`, written with `s3`.
    pub fn s3(s3: Arc<S3>, url: S3Url) -> Self {
        ParquetSink {
            s3: LazyS3::connected(s3),
            ..ParquetSink::new(ParquetConfig::new(Location::S3(url)))
        }
    }

    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Also write the staging tables, `staging_events` and `staging_songs`.
    pub fn with_staging_tables(mut self, staging_tables: bool) -> Self {
        self.staging_tables = staging_tables;
        self
    }

    /// Uploads at a time, for an S3 target.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Writes every table of `staged` under `root` as it comes (the staging tables part by
    /// part, when they are written at all) and marks it done with `_SUCCESS`.
    fn write_all(&self, root: &Path, staged: &mut dyn Staged) -> Result<()> {
        fs::create_dir_all(root).map_err(io(root))?;
        let mut writers = Vec::new();
        if self.staging_tables {
            for table in STAGING_TABLES {
                writers.push(TableWriter::create(root, table, self.compression)?);
            }
        }
        while let Some(part) = staged.next() {
            let (table, batches) = part?;
            let writer = STAGING_TABLES
                .iter()
                .position(|t| t.name == table.name)
                .and_then(|i| writers.get_mut(i));
            // Without the staging tables in the lake, a part is dropped once read.
            if let Some(writer) = writer {
                batches.iter().try_for_each(|b| writer.write(b))?;
            }
        }
        for writer in writers {
            writer.close()?;
        }
        let finished = staged.finish()?;
        staged.phase("writing the star schema");
        for (table, rows) in finished.tables() {
            if partitioning(table).is_empty() {
                // One file, written as it comes: dm_time made a slice at a time, never whole.
                let mut writer = TableWriter::create(root, table, self.compression)?;
                for batch in rows.batches(SLICE_ROWS) {
                    writer.write(&batch?)?;
                }
                writer.close()?;
                tracing::debug!(table = table.name, files = 1, "written");
            } else if let Rows::Batch(batch) = rows {
                // Held whole (dm_songs): its partitions written side by side.
                let files = write_table(root, table, batch, self.compression)?;
                tracing::debug!(table = table.name, files = files.len(), "written");
            } else {
                // Made a slice at a time (ft_songplays, in the order of its partitions): each
                // slice's rows go into their partitions' files as they come.
                let mut writer = PartitionedWriter::new(root, table, self.compression);
                for batch in rows.batches(SLICE_ROWS) {
                    writer.write(&batch?)?;
                }
                let files = writer.close()?;
                tracing::debug!(table = table.name, files = files.len(), "written as made");
            }
        }
        // The tables the run parsed, counted from the files' footers, before they replace the
        // previous output.
        let mut expected = Vec::new();
        let mut counted = Vec::new();
        for (table, rows) in finished.staged {
            if let Some(found) = count_rows(root, table)? {
                expected.push((table, rows));
                counted.push((table.name.to_owned(), found));
            } else if rows > 0
                && (self.staging_tables || !STAGING_TABLES.iter().any(|t| t.name == table.name))
            {
                expected.push((table, rows));
            }
        }
        sink::reconcile(&expected, &counted)?;
        let success = root.join("_SUCCESS");
        fs::write(&success, b"").map_err(io(&success))?;
        Ok(())
    }

    fn load_dir(&self, dir: &Path, staged: &mut dyn Staged) -> Result<()> {
        let aside = sibling(dir, "tmp");
        let result = self
            .write_all(&aside, staged)
            .and_then(|()| swap_in(&aside, dir));
        if result.is_err() {
            let _ = fs::remove_dir_all(&aside);
        }
        result
    }

    fn load_s3(&self, s3: &S3, url: &S3Url, staged: &mut dyn Staged) -> Result<()> {
        let local = std::env::temp_dir().join(format!("sparkify-parquet-{}", sink::run_id()));
        let result = self
            .write_all(&local, staged)
            .and_then(|()| self.swap_s3(s3, url, &local));
        let _ = fs::remove_dir_all(&local);
        result
    }

    fn swap_s3(&self, s3: &S3, url: &S3Url, local: &Path) -> Result<()> {
        // `lake/`: the trailing slash keeps a listing off a neighbouring `lake-other/`.
        let root = url.join("");
        let tmp = root.join(&format!("_tmp-{}", sink::run_id()));
        let success = root.join("_SUCCESS");
        let mut files = Vec::new();
        collect_files(local, local, &mut files)?;
        // `_SUCCESS` is written last, after the swap.
        files.retain(|rel| rel != "_SUCCESS");
        let uploads = files
            .iter()
            .map(|rel| (Body::File(local.join(rel)), tmp.join(rel)))
            .collect();
        s3.put_many(uploads, self.concurrency)?;
        s3.delete(&url.bucket, vec![success.key.clone()])?;
        let copies = files
            .iter()
            .map(|rel| (tmp.join(rel), root.join(rel)))
            .collect();
        s3.copy_objects(copies, self.concurrency)?;
        // Everything else under the prefix goes: the old output's leftovers and `_tmp-RUN/`.
        let new: Vec<S3Url> = files.iter().map(|rel| root.join(rel)).collect();
        s3.delete_stale(&root, &new.iter().map(|u| u.key.as_str()).collect())?;
        s3.put(&success, Vec::new())?;
        Ok(())
    }
}

/// The files under `dir`, relative to `base`, with `/` separators.
fn collect_files(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            collect_files(base, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(base) {
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(rel.join("/"));
        }
    }
    Ok(())
}

/// `.NAME.WHAT-RUN` beside `dir`.
/// Puts the folder `new` in place of `dir`. When `dir` exists the two are exchanged in one
/// atomic step (Linux's `renameat2` with `RENAME_EXCHANGE`), so `dir` holds the old tables
/// or the new ones whatever happens, a kill included; the old ones, now at `new`, are then
/// deleted. Where the filesystem cannot exchange, `dir` is renamed away first, then `new`
/// renamed into place: a kill between the two leaves `dir` missing (the old output beside
/// it, under a hidden name).
fn swap_in(new: &Path, dir: &Path) -> Result<()> {
    if !dir.exists() {
        return fs::rename(new, dir).map_err(|e| io(dir)(e).into());
    }
    tracing::debug!(dir = %dir.display(), "swapping the new output in");
    let cwd = rustix::fs::CWD;
    match rustix::fs::renameat_with(cwd, new, cwd, dir, rustix::fs::RenameFlags::EXCHANGE) {
        Ok(()) => return fs::remove_dir_all(new).map_err(|e| io(new)(e).into()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
        Err(e) => return Err(io(dir)(e.into()).into()),
    }
    let old = sibling(dir, "old");
    fs::rename(dir, &old).map_err(io(dir))?;
    if let Err(source) = fs::rename(new, dir) {
        let _ = fs::rename(&old, dir);
        return Err(io(dir)(source).into());
    }
    fs::remove_dir_all(&old).map_err(|e| io(&old)(e).into())
}

fn sibling(dir: &Path, what: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!(".{name}.{what}-{}", sink::run_id()))
}

impl Sink for ParquetSink {
    type Error = Error;

    fn describe(&self) -> String {
        match &self.location {
            Location::Path(d) => format!("parquet:{}", d.display()),
            Location::S3(url) => format!("parquet:{url}"),
        }
    }

    fn plan(&self) -> Result<Vec<String>> {
        Ok(vec![
            "-- parquet: no SQL; every table is written as files".into(),
        ])
    }

    fn tables_sql(&self, _: TablesAction) -> Result<Vec<String>> {
        Err(Error::NoSql("has no tables to create or drop"))
    }

    fn execute(&mut self, _: &[String]) -> Result<()> {
        Err(Error::NoSql("runs no SQL"))
    }

    fn query(&mut self, _: &str) -> Result<QueryResult> {
        Err(Error::NoSql(
            "runs no SQL: query its files with DuckDB or Polars",
        ))
    }

    fn check(&mut self) -> Result<()> {
        match &self.location {
            Location::Path(dir) => {
                let parent = match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                    _ => PathBuf::from("."),
                };
                fs::create_dir_all(&parent).map_err(io(&parent))?;
                if dir.exists() && !dir.is_dir() {
                    return Err(io(dir)(std::io::Error::other("exists and is not a folder")).into());
                }
                Ok(())
            }
            Location::S3(url) => {
                self.s3.get()?.list_or_empty(url)?;
                Ok(())
            }
        }
    }

    fn load(&mut self, load: Load<'_>) -> Result<()> {
        load.with_staged(|staged| {
            let staged = staged.ok_or(Error::NothingParsed)?;
            if staged.increment().is_some() {
                return Err(Error::Incremental);
            }
            match &self.location {
                Location::Path(dir) => self.load_dir(dir, staged),
                Location::S3(url) => self.load_s3(&*self.s3.get()?, url, staged),
            }
        })
    }
}
