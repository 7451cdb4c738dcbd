//! sparkify-parquet: the tables as Parquet files, shared by the Parquet sink (a
//! Hive-partitioned lake in a folder or under an S3 prefix) and Redshift's Parquet staging
//! (parts uploaded for `COPY … FORMAT AS PARQUET`). It encodes and partitions; where the files
//! go is the caller's business.
//!
//! As in Hive, a partition's values live in its path only: `dm_songs` files hold no `year` or
//! `artist_id` column, and `ft_songplays` gains `year`/`month` from its path (taken from
//! `start_time`, UTC). A null value is the partition `__HIVE_DEFAULT_PARTITION__`; characters
//! that a path cannot hold are percent-escaped as Hive does. Timestamps are written as
//! microseconds (Parquet `TIMESTAMP(MICROS)`), which Redshift COPY and Spectrum read as
//! `TIMESTAMP`.
//!
//! ```no_run
//! use sparkify_core::table::FT_SONGPLAYS;
//! use sparkify_parquet::{Compression, write_table};
//!
//! let batch = arrow::array::RecordBatch::new_empty(FT_SONGPLAYS.schema());
//! let files = write_table("lake".as_ref(), &FT_SONGPLAYS, &batch, Compression::Zstd)?;
//! assert_eq!(files.len(), 1);
//! # Ok::<(), sparkify_parquet::Error>(())
//! ```

mod read;

pub use read::{count_rows, read_table, unescape_partition_value};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use sparkify_core::table::{DM_SONGS, FT_SONGPLAYS, TableDef};

/// What can go wrong writing Parquet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cause follows in the chain (`{:#}`), as for every error here.
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {table}")]
    Parquet {
        table: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// A partitioned table's rows out of their partitions' order ([`PartitionedWriter`]).
    #[error("{0}")]
    Partition(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An I/O error on `path`.
pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
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
    Ok(sparkify_core::time::to_micros(batch)?)
}

/// One Parquet file holding `batch` (timestamps already as they should be written).
pub fn parquet_bytes(
    table: &str,
    batch: &RecordBatch,
    compression: Compression,
) -> Result<Vec<u8>> {
    let err = parquet_error(table);
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(properties(compression)))
        .map_err(&err)?;
    writer.write(batch).map_err(&err)?;
    writer.close().map_err(&err)?;
    Ok(out)
}

/// An unpartitioned table written as it comes: `root/TABLE/part-00000.parquet`, its batches
/// encoded as they are written and a row group flushed to the file whenever the buffered one
/// passes [`ROW_GROUP_BYTES`], so memory holds one row group at most, whatever the table's size.
#[derive(Debug)]
pub struct TableWriter {
    table: &'static TableDef,
    path: PathBuf,
    writer: ArrowWriter<fs::File>,
    rows: u64,
    row_group_bytes: usize,
}

/// The encoded size at which [`TableWriter`] flushes a row group.
pub const ROW_GROUP_BYTES: usize = 32 << 20;

impl TableWriter {
    /// Creates the table's file under `root` (a file with no rows until batches come).
    pub fn create(root: &Path, table: &'static TableDef, compression: Compression) -> Result<Self> {
        Self::create_in(&root.join(table.name), table, table.schema(), compression)
    }

    /// Creates `folder/part-00000.parquet` for rows of `table` with `schema` (a partition's
    /// rows leave out the columns it is split by).
    fn create_in(
        folder: &Path,
        table: &'static TableDef,
        schema: arrow::datatypes::SchemaRef,
        compression: Compression,
    ) -> Result<Self> {
        fs::create_dir_all(folder).map_err(io(folder))?;
        let path = folder.join(PART_FILE);
        let file = fs::File::create(&path).map_err(io(&path))?;
        let schema = for_parquet(&RecordBatch::new_empty(schema))?.schema();
        let writer = ArrowWriter::try_new(file, schema, Some(properties(compression)))
            .map_err(parquet_error(table.name))?;
        Ok(TableWriter {
            table,
            path,
            writer,
            rows: 0,
            row_group_bytes: ROW_GROUP_BYTES,
        })
    }

    /// Flushes a row group once the buffered one passes `bytes` (default [`ROW_GROUP_BYTES`]).
    pub fn with_row_group_bytes(mut self, bytes: usize) -> Self {
        self.row_group_bytes = bytes;
        self
    }

    /// Encodes `batch` (a batch of the table, timestamps in milliseconds) into the file.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let err = parquet_error(self.table.name);
        self.writer.write(&for_parquet(batch)?).map_err(&err)?;
        self.rows += batch.num_rows() as u64;
        if self.writer.in_progress_size() > self.row_group_bytes {
            self.writer.flush().map_err(err)?;
        }
        Ok(())
    }

    /// Writes the footer; returns the file and the rows it holds.
    pub fn close(self) -> Result<(PathBuf, u64)> {
        self.writer
            .close()
            .map_err(parquet_error(self.table.name))?;
        Ok((self.path, self.rows))
    }
}

/// A partitioned table written as its batches come: each partition's rows go into its own
/// file (`root/TABLE/year=…/month=…/part-00000.parquet`) through a [`TableWriter`], so memory
/// holds a batch and the row groups being filled, never the table. The batches must come in
/// the order of their partitions, as `ft_songplays`' rows do (in `start_time` order, so by
/// year and month): a partition's file is closed once a batch comes without it, and rows of a
/// partition already closed fail the write instead of writing its file over.
#[derive(Debug)]
pub struct PartitionedWriter {
    root: PathBuf,
    table: &'static TableDef,
    compression: Compression,
    open: BTreeMap<String, TableWriter>,
    closed: BTreeMap<String, (PathBuf, u64)>,
}

impl PartitionedWriter {
    pub fn new(root: &Path, table: &'static TableDef, compression: Compression) -> Self {
        PartitionedWriter {
            root: root.to_owned(),
            table,
            compression,
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
        }
    }

    /// Writes `batch` (rows of the table, timestamps in milliseconds) into its partitions'
    /// files. A batch with no rows closes nothing.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let parts = split(batch, partitioning(self.table))?;
        let done: Vec<String> = self
            .open
            .keys()
            .filter(|dir| !parts.iter().any(|(d, _)| d == *dir))
            .cloned()
            .collect();
        for dir in done {
            if let Some(writer) = self.open.remove(&dir) {
                self.closed.insert(dir, writer.close()?);
            }
        }
        for (dir, rows) in parts {
            if self.closed.contains_key(&dir) {
                return Err(Error::Partition(format!(
                    "{}: rows of {dir} came after its file was closed (the rows are not in \
                     the order of their partitions)",
                    self.table.name
                )));
            }
            let writer = match self.open.entry(dir) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let folder = self.root.join(self.table.name).join(e.key());
                    let writer = TableWriter::create_in(
                        &folder,
                        self.table,
                        rows.schema(),
                        self.compression,
                    )?;
                    e.insert(writer)
                }
            };
            writer.write(&rows)?;
        }
        Ok(())
    }

    /// Closes every file; returns the files written with their rows. A table with no rows is
    /// one file with none at its root, as [`write_table`] writes it.
    pub fn close(mut self) -> Result<Vec<(PathBuf, u64)>> {
        for (dir, writer) in std::mem::take(&mut self.open) {
            self.closed.insert(dir, writer.close()?);
        }
        if self.closed.is_empty() {
            return Ok(vec![
                TableWriter::create(&self.root, self.table, self.compression)?.close()?,
            ]);
        }
        Ok(self.closed.into_values().collect())
    }
}

fn parquet_error(table: &str) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |source| Error::Parquet {
        table: table.to_owned(),
        source,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_are_escaped_like_hive() {
        assert_eq!(escape_partition_value("AR12/x=y"), "AR12%2Fx%3Dy");
        assert_eq!(escape_partition_value("Café 1"), "Café 1");
    }

    /// `n` rows of `ft_songplays`, in `start_time` order over three months of 2018.
    fn songplays(n: usize) -> RecordBatch {
        use arrow::array::{Int32Array, Int64Array, StringArray, TimestampMillisecondArray};
        use std::sync::Arc;
        let text = |f: fn(usize) -> Option<String>| -> ArrayRef {
            Arc::new((0..n).map(f).collect::<StringArray>())
        };
        let int =
            |f: fn(usize) -> i32| -> ArrayRef { Arc::new((0..n).map(f).collect::<Int32Array>()) };
        // 2018-10-01 plus i hours a play: 90 days in 2,160 rows.
        let start = (0..n).map(|i| 1_538_352_000_000 + i as i64 * 3_600_000);
        RecordBatch::try_new(
            FT_SONGPLAYS.schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
                Arc::new(TimestampMillisecondArray::from_iter_values(start)),
                int(|i| (i % 97) as i32),
                text(|i| Some(["free", "paid"][i % 2].to_owned())),
                text(|i| (i % 3 == 0).then(|| format!("SO{i:05}"))),
                text(|i| (i % 3 == 0).then(|| format!("AR{i:05}"))),
                int(|i| (i / 10) as i32),
                int(|i| (i % 10) as i32),
                text(|i| Some(format!("Town {}", i % 13))),
                text(|i| Some(format!("Agent/{}", i % 5))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_partitioned_table_written_as_it_comes_is_the_table_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let whole = songplays(2_160);
        let files = |root: &Path| {
            let mut found = Vec::new();
            crate::read::collect(&root.join(FT_SONGPLAYS.name), &mut found).unwrap();
            let mut found: Vec<PathBuf> = found
                .iter()
                .map(|f| f.strip_prefix(root).unwrap().to_path_buf())
                .collect();
            found.sort();
            found
        };
        let at_once = dir.path().join("at-once");
        write_table(&at_once, &FT_SONGPLAYS, &whole, Compression::Snappy).unwrap();
        for step in [1, 7, 500, 5_000] {
            let root = dir.path().join(format!("step-{step}"));
            let mut writer = PartitionedWriter::new(&root, &FT_SONGPLAYS, Compression::Snappy);
            for at in (0..whole.num_rows()).step_by(step) {
                let len = step.min(whole.num_rows() - at);
                writer.write(&whole.slice(at, len)).unwrap();
            }
            let written = writer.close().unwrap();
            assert_eq!(written.len(), 3, "step {step}");
            assert_eq!(written.iter().map(|(_, rows)| rows).sum::<u64>(), 2_160);
            assert_eq!(files(&root), files(&at_once), "step {step}");
            assert_eq!(
                read_table(&root, &FT_SONGPLAYS).unwrap(),
                read_table(&at_once, &FT_SONGPLAYS).unwrap(),
                "step {step}"
            );
        }
        // A batch with no rows closes no file; a partition whose rows come again after its
        // file was closed (by a batch without it) fails the write, naming it, instead of
        // writing its file over.
        let root = dir.path().join("out-of-order");
        let mut writer = PartitionedWriter::new(&root, &FT_SONGPLAYS, Compression::Snappy);
        writer.write(&whole.slice(0, 10)).unwrap();
        writer.write(&whole.slice(10, 0)).unwrap();
        writer.write(&whole.slice(10, 10)).unwrap();
        writer.write(&whole.slice(1_000, 10)).unwrap();
        let err = writer.write(&whole.slice(20, 10)).unwrap_err().to_string();
        assert!(
            err.contains("ft_songplays: rows of year=2018/month=10 came after its file was closed"),
            "{err}"
        );
        // No rows: one empty file at the table's root, as write_table writes it.
        let root = dir.path().join("empty");
        let written = PartitionedWriter::new(&root, &FT_SONGPLAYS, Compression::Snappy)
            .close()
            .unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].1, 0);
        assert_eq!(files(&root), [Path::new("ft_songplays").join(PART_FILE)]);
        assert_eq!(
            read_table(&root, &FT_SONGPLAYS)
                .unwrap()
                .unwrap()
                .num_rows(),
            0
        );
    }

    #[test]
    fn a_table_written_as_it_comes_reads_back_whole_in_its_row_groups() {
        use sparkify_core::reject::{Reject, rejects_batch};
        use sparkify_core::table::LOAD_ERRORS;
        let rejects: Vec<Reject> = (0..1000)
            .map(|i| Reject {
                source: format!("log-{}.json", i % 7).into(),
                line: i,
                byte_offset: i * 10,
                column: (i % 3 == 0).then(|| "ts".into()),
                reason: "not a number".into(),
                raw: format!("{{\"ts\": \"x{i}\"}}"),
            })
            .collect();
        let whole = rejects_batch(
            &rejects,
            &sparkify_core::history::RunStamp::at(1_541_903_636_796),
        );
        let dir = tempfile::tempdir().unwrap();
        for (bytes, groups) in [(1, 10), (ROW_GROUP_BYTES, 1)] {
            let root = dir.path().join(bytes.to_string());
            let mut writer = TableWriter::create(&root, &LOAD_ERRORS, Compression::Zstd)
                .unwrap()
                .with_row_group_bytes(bytes);
            for start in (0..1000).step_by(100) {
                writer.write(&whole.slice(start, 100)).unwrap();
            }
            let (path, rows) = writer.close().unwrap();
            assert_eq!(rows, 1000);
            let file = fs::File::open(&path).unwrap();
            let meta = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .metadata()
                .clone();
            assert_eq!(meta.num_row_groups(), groups, "flushed past {bytes} bytes");
            let back = read_table(&root, &LOAD_ERRORS).unwrap().unwrap();
            assert_eq!(back.columns(), for_parquet(&whole).unwrap().columns());
        }
        // A table with no rows is still a file with its schema.
        let root = dir.path().join("empty");
        let (path, rows) = TableWriter::create(&root, &LOAD_ERRORS, Compression::Snappy)
            .unwrap()
            .close()
            .unwrap();
        assert_eq!((rows, path.exists()), (0, true));
        assert_eq!(
            read_table(&root, &LOAD_ERRORS).unwrap().unwrap().num_rows(),
            0
        );
    }
}
