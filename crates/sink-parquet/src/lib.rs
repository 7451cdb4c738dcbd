//! sparkify-sink-parquet: the tables as Parquet, in a folder or under an S3 prefix, laid out
//! as a Hive-partitioned data lake (the layout Spark's `partitionBy` writes, which Redshift
//! Spectrum, Athena, DuckDB and Polars read):
//!
//! ```text
//! OUT/ft_songplays/year=2018/month=11/part-00000.parquet
//! OUT/dm_songs/year=1969/artist_id=ARMJAGH1187FB546F3/part-00000.parquet
//! OUT/dm_users/part-00000.parquet  (dm_artists, dm_time, load_errors alike)
//! OUT/staging_events/…, OUT/staging_songs/…  (only with [`ParquetSink::with_staging`])
//! OUT/_SUCCESS
//! ```
//!
//! As in Hive, a partition's values live in its path only: `dm_songs` files hold no `year` or
//! `artist_id` column, and `ft_songplays` gains `year`/`month` from its path (taken from
//! `start_time`, UTC). A null value is the partition `__HIVE_DEFAULT_PARTITION__`; characters
//! that a path cannot hold are percent-escaped as Hive does. Timestamps are written as
//! microseconds (Parquet `TIMESTAMP(MICROS)`), which Redshift COPY and Spectrum read as
//! `TIMESTAMP`.
//!
//! A rerun replaces the output: in a folder, the new output is written beside it and renamed
//! into place (the old one is renamed away first, then deleted). S3 has no rename: the new
//! objects are uploaded under `OUT/_tmp-RUN/`, and only once all of them are there is
//! `_SUCCESS` removed, each object copied into place server-side, the old objects the new run
//! did not write deleted, and `_SUCCESS` written again. A failed upload leaves the previous
//! output as it was; a reader that waits for `_SUCCESS` never sees a half-swapped one.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use sparkify_core::table::{DM_SONGS, FT_SONGPLAYS, TableDef};
use sparkify_core::{Load, Sink};
use sparkify_s3::{Body, S3, S3Url};

/// What can go wrong writing Parquet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {table}: {source}")]
    Parquet {
        table: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    S3(#[from] sparkify_s3::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The codec of the column chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zstd" => Ok(Compression::Zstd),
            "snappy" => Ok(Compression::Snappy),
            _ => Err(format!(
                "unknown compression {s:?}: expected zstd or snappy"
            )),
        }
    }
}

fn properties(compression: Compression) -> WriterProperties {
    let codec = match compression {
        Compression::Zstd => Codec::ZSTD(ZstdLevel::default()),
        Compression::Snappy => Codec::SNAPPY,
    };
    WriterProperties::builder().set_compression(codec).build()
}

/// `batch` as it is written: timestamps in microseconds, everything else unchanged.
pub fn for_parquet(batch: &RecordBatch) -> Result<RecordBatch> {
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(field.data_type(), DataType::Timestamp(..)) {
            fields.push(Field::new(
                field.name(),
                micros.clone(),
                field.is_nullable(),
            ));
            columns.push(cast(column, &micros)?);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// One Parquet file holding `batch` (timestamps already as they should be written).
pub fn parquet_bytes(
    table: &str,
    batch: &RecordBatch,
    compression: Compression,
) -> Result<Vec<u8>> {
    let err = |source| Error::Parquet {
        table: table.to_owned(),
        source,
    };
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(properties(compression)))
        .map_err(err)?;
    writer.write(batch).map_err(err)?;
    writer.close().map_err(err)?;
    Ok(out)
}

/// How a table is split in folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// By a column's value; the column is left out of the files.
    Column(&'static str),
    /// By the year, or the month (1–12), of a timestamp column (UTC).
    Year(&'static str),
    Month(&'static str),
}

impl Partition {
    /// The folder's key (`year=`).
    pub fn key(self) -> &'static str {
        match self {
            Partition::Column(c) => c,
            Partition::Year(_) => "year",
            Partition::Month(_) => "month",
        }
    }
}

/// The partitioning of a table: `ft_songplays` by `year=/month=` of `start_time`, `dm_songs`
/// by `year=/artist_id=`, the others not at all.
pub fn partitioning(table: &TableDef) -> &'static [Partition] {
    if table.name == FT_SONGPLAYS.name {
        &[
            Partition::Year("start_time"),
            Partition::Month("start_time"),
        ]
    } else if table.name == DM_SONGS.name {
        &[Partition::Column("year"), Partition::Column("artist_id")]
    } else {
        &[]
    }
}

/// The name Hive gives a null partition value.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Escapes a partition value as Hive's `FileUtils.escapePathName` does.
pub fn escape_partition_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if (c as u32) < 0x20
            || matches!(
                c,
                '"' | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '\x7F'
                    | '{'
                    | '['
                    | ']'
                    | '^'
            )
        {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of partition `p` in every row, as path text.
fn partition_values(batch: &RecordBatch, p: Partition) -> Result<Vec<String>> {
    let column = |name: &str| {
        batch.column_by_name(name).cloned().ok_or_else(|| {
            arrow::error::ArrowError::SchemaError(format!("no column {name} to partition by"))
        })
    };
    let array: ArrayRef = match p {
        Partition::Column(c) => column(c)?,
        Partition::Year(c) | Partition::Month(c) => {
            let ts = column(c)?;
            let part = if matches!(p, Partition::Year(_)) {
                arrow::compute::DatePart::Year
            } else {
                arrow::compute::DatePart::Month
            };
            arrow::compute::date_part(&ts, part)?
        }
    };
    let fmt = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
    Ok((0..array.len())
        .map(|i| {
            if array.is_null(i) {
                NULL_PARTITION.to_owned()
            } else {
                escape_partition_value(&fmt.value(i).to_string())
            }
        })
        .collect())
}

/// `batch` split by `parts`: each partition's relative folder (`year=2018/month=11`; empty for
/// an unpartitioned table) and its rows, without the partition columns, in the rows' order.
pub fn split(batch: &RecordBatch, parts: &[Partition]) -> Result<Vec<(String, RecordBatch)>> {
    let dropped: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            Partition::Column(c) => Some(*c),
            _ => None,
        })
        .collect();
    let keep: Vec<usize> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !dropped.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let body = batch.project(&keep)?;
    if parts.is_empty() {
        return Ok(vec![(String::new(), body)]);
    }
    let values = parts
        .iter()
        .map(|p| partition_values(batch, *p))
        .collect::<Result<Vec<_>>>()?;
    let mut rows: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for i in 0..batch.num_rows() {
        let dir = parts
            .iter()
            .zip(&values)
            .map(|(p, v)| format!("{}={}", p.key(), v[i]))
            .collect::<Vec<_>>()
            .join("/");
        rows.entry(dir).or_default().push(i as u32);
    }
    rows.into_iter()
        .map(|(dir, idx)| {
            let idx = UInt32Array::from(idx);
            let columns = body
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &idx, None))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((dir, RecordBatch::try_new(body.schema(), columns)?))
        })
        .collect()
}

/// The file each partition's rows go in.
pub const PART_FILE: &str = "part-00000.parquet";

/// Writes `batch` as table `table` under `root` (`root/TABLE/[partitions/]part-00000.parquet`)
/// and returns the files written. An empty table is one file with no rows, so that its schema
/// is still there to read.
pub fn write_table(
    root: &Path,
    table: &TableDef,
    batch: &RecordBatch,
    compression: Compression,
) -> Result<Vec<PathBuf>> {
    let batch = for_parquet(batch)?;
    let parts = split(&batch, partitioning(table))?;
    let parts = if parts.is_empty() {
        // A partitioned table with no rows: one empty file at its root.
        vec![(String::new(), split(&batch, &[])?.remove(0).1)]
    } else {
        parts
    };
    parts
        .into_par_iter()
        .map(|(dir, rows)| {
            let folder = root.join(table.name).join(&dir);
            fs::create_dir_all(&folder).map_err(io(&folder))?;
            let path = folder.join(PART_FILE);
            let bytes = parquet_bytes(table.name, &rows, compression)?;
            fs::write(&path, bytes).map_err(io(&path))?;
            Ok(path)
        })
        .collect()
}

/// Where the output goes.
#[derive(Debug, Clone)]
pub enum Target {
    Dir(PathBuf),
    S3 { s3: Arc<S3>, url: S3Url },
}

/// The Parquet sink.
#[derive(Debug)]
pub struct ParquetSink {
    target: Target,
    compression: Compression,
    staging: bool,
    concurrency: usize,
}

impl ParquetSink {
    pub fn new(target: Target) -> Self {
        ParquetSink {
            target,
            compression: Compression::default(),
            staging: false,
            concurrency: 64,
        }
    }

    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Also write `staging_events` and `staging_songs`.
    pub fn with_staging(mut self, staging: bool) -> Self {
        self.staging = staging;
        self
    }

    /// Uploads at a time, for an S3 target.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Writes every table of `load` under `root` and marks it done with `_SUCCESS`.
    fn write_all(&self, root: &Path, load: &Load<'_>) -> Result<()> {
        fs::create_dir_all(root).map_err(io(root))?;
        for (table, batch) in load.tables() {
            if table.name.starts_with("staging_") && !self.staging {
                continue;
            }
            let files = write_table(root, table, batch, self.compression)?;
            tracing::debug!(table = table.name, files = files.len(), "written");
        }
        let success = root.join("_SUCCESS");
        fs::write(&success, b"").map_err(io(&success))
    }

    fn load_dir(&self, dir: &Path, load: &Load<'_>) -> Result<()> {
        let aside = sibling(dir, "tmp");
        let result = self.write_all(&aside, load).and_then(|()| {
            let old = sibling(dir, "old");
            let had_old = dir.exists();
            if had_old {
                fs::rename(dir, &old).map_err(io(dir))?;
            }
            if let Err(source) = fs::rename(&aside, dir) {
                if had_old {
                    let _ = fs::rename(&old, dir);
                }
                return Err(Error::Io {
                    path: dir.display().to_string(),
                    source,
                });
            }
            if had_old {
                fs::remove_dir_all(&old).map_err(io(&old))?;
            }
            Ok(())
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&aside);
        }
        result
    }

    fn load_s3(&self, s3: &S3, url: &S3Url, load: &Load<'_>) -> Result<()> {
        let local = std::env::temp_dir().join(format!("sparkify-parquet-{}", run_id()));
        let result = self
            .write_all(&local, load)
            .and_then(|()| self.swap_s3(s3, url, &local));
        let _ = fs::remove_dir_all(&local);
        result
    }

    fn swap_s3(&self, s3: &S3, url: &S3Url, local: &Path) -> Result<()> {
        // `lake/`: the trailing slash keeps a listing off a neighbouring `lake-other/`.
        let root = url.join("");
        let tmp = root.join(&format!("_tmp-{}", run_id()));
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

/// A name unique to this run (process id and clock).
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// `.NAME.WHAT-RUN` beside `dir`.
fn sibling(dir: &Path, what: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!(".{name}.{what}-{}", run_id()))
}

impl Sink for ParquetSink {
    type Error = Error;

    fn describe(&self) -> String {
        match &self.target {
            Target::Dir(d) => format!("parquet:{}", d.display()),
            Target::S3 { url, .. } => format!("parquet:{url}"),
        }
    }

    fn check(&mut self) -> Result<()> {
        match &self.target {
            Target::Dir(dir) => {
                let parent = match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                    _ => PathBuf::from("."),
                };
                fs::create_dir_all(&parent).map_err(io(&parent))?;
                if dir.exists() && !dir.is_dir() {
                    return Err(Error::Io {
                        path: dir.display().to_string(),
                        source: std::io::Error::other("exists and is not a folder"),
                    });
                }
                Ok(())
            }
            Target::S3 { s3, url } => {
                s3.list_or_empty(url)?;
                Ok(())
            }
        }
    }

    fn load(&mut self, load: &Load<'_>) -> Result<()> {
        match &self.target {
            Target::Dir(dir) => self.load_dir(dir, load),
            Target::S3 { s3, url } => self.load_s3(s3, url, load),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_are_escaped_like_hive() {
        assert_eq!(escape_partition_value("AR12/x=y"), "AR12%2Fx%3Dy");
        assert_eq!(escape_partition_value("Café 1"), "Café 1");
    }
}
