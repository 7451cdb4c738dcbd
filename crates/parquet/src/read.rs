//! A table read back from a lake written by [`crate::write_table`]: every file under
//! `root/TABLE/`, the partition columns restored from the folder names (`year=1927`,
//! `artist_id=AR12%2Fx`, `__HIVE_DEFAULT_PARTITION__` for NULL), as one batch with the
//! table's columns in order. `sparkify verify` fingerprints it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, new_null_array};
use arrow::compute::concat_batches;
use arrow::datatypes::{Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use rayon::prelude::*;
use sparkify_core::table::{SqlType, TableDef};

use crate::{Error, NULL_PARTITION, Partition, Result, io, partitioning};

/// `root/TABLE` as one batch; `None` when the lake has no such folder (a lake written without
/// its staging tables).
pub fn read_table(root: &Path, table: &TableDef) -> Result<Option<RecordBatch>> {
    let Some((dir, files)) = table_files(root, table)? else {
        return Ok(None);
    };
    // One file a task: a partitioned table is thousands of small files.
    let batches: Vec<RecordBatch> = files
        .par_iter()
        .map(|file| read_file(table, &dir, file))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let Some(first) = batches.first() else {
        return Ok(Some(RecordBatch::new_empty(table.schema())));
    };
    Ok(Some(concat_batches(&first.schema(), &batches)?))
}

/// The rows of `root/TABLE` from its files' footers (no data is read); `None` when the lake
/// has no such folder.
pub fn count_rows(root: &Path, table: &TableDef) -> Result<Option<u64>> {
    let Some((_, files)) = table_files(root, table)? else {
        return Ok(None);
    };
    let rows = files
        .par_iter()
        .map(|file| {
            let handle = fs::File::open(file).map_err(io(file))?;
            let reader = SerializedFileReader::new(handle).map_err(|source| Error::Parquet {
                table: file.display().to_string(),
                source,
            })?;
            Ok(reader.metadata().file_metadata().num_rows().unsigned_abs())
        })
        .collect::<Result<Vec<u64>>>()?
        .into_iter()
        .sum();
    Ok(Some(rows))
}

/// `root/TABLE` and every Parquet file under it, in path order; `None` without the folder.
fn table_files(root: &Path, table: &TableDef) -> Result<Option<(PathBuf, Vec<PathBuf>)>> {
    let dir = root.join(table.name);
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut files = Vec::new();
    collect(&dir, &mut files)?;
    files.sort();
    Ok(Some((dir, files)))
}

/// One file's batches, with the partition columns of its folder.
fn read_file(table: &TableDef, dir: &Path, file: &Path) -> Result<Vec<RecordBatch>> {
    let partitions = partition_values(dir, file);
    let err = |source| Error::Parquet {
        table: file.display().to_string(),
        source,
    };
    let handle = fs::File::open(file).map_err(io(file))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(handle)
        .map_err(err)?
        .build()
        .map_err(err)?;
    reader
        .map(|batch| with_partitions(table, &batch?, &partitions))
        .collect()
}

pub(crate) fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// The `key=value` folders between `dir` and `file`, values unescaped (`None` for NULL).
fn partition_values(dir: &Path, file: &Path) -> Vec<(String, Option<String>)> {
    let Ok(rel) = file.strip_prefix(dir) else {
        return Vec::new();
    };
    rel.parent()
        .into_iter()
        .flat_map(Path::components)
        .filter_map(|c| {
            let c = c.as_os_str().to_str()?;
            let (key, value) = c.split_once('=')?;
            let value = (value != NULL_PARTITION).then(|| unescape_partition_value(value));
            Some((key.to_owned(), value))
        })
        .collect()
}

/// The inverse of [`crate::escape_partition_value`].
pub fn unescape_partition_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = value
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `batch` with the table's columns in order: those in the file as they are, a partition
/// column from its folder.
fn with_partitions(
    table: &TableDef,
    batch: &RecordBatch,
    partitions: &[(String, Option<String>)],
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let by_path: Vec<&str> = partitioning(table)
        .iter()
        .filter_map(|p| match p {
            Partition::Column(c) => Some(*c),
            _ => None,
        })
        .collect();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for column in table.columns {
        if let Some(array) = batch.column_by_name(column.name) {
            fields.push(Field::new(column.name, array.data_type().clone(), true));
            columns.push(Arc::clone(array));
            continue;
        }
        let ty = column.ty.arrow_type();
        let missing = || {
            arrow::error::ArrowError::SchemaError(format!(
                "{}: no column {}",
                table.name, column.name
            ))
        };
        if !by_path.contains(&column.name) {
            return Err(missing().into());
        }
        let value = partitions
            .iter()
            .find(|(k, _)| k == column.name)
            .ok_or_else(missing)?
            .1
            .as_deref();
        let bad = |e: std::num::ParseIntError| {
            arrow::error::ArrowError::ParseError(format!(
                "{}: partition {}={value:?}: {e}",
                table.name, column.name
            ))
        };
        let array: ArrayRef = match (column.ty, value) {
            (_, None) => new_null_array(&ty, rows),
            (SqlType::Integer, Some(v)) => {
                Arc::new(Int32Array::from(vec![v.parse::<i32>().map_err(bad)?; rows]))
            }
            (SqlType::BigInt, Some(v)) => {
                Arc::new(Int64Array::from(vec![v.parse::<i64>().map_err(bad)?; rows]))
            }
            (SqlType::Text, Some(v)) => Arc::new(StringArray::from(vec![v; rows])),
            (other, Some(_)) => {
                return Err(arrow::error::ArrowError::SchemaError(format!(
                    "{}: cannot partition by a {other:?} column",
                    table.name
                ))
                .into());
            }
        };
        fields.push(Field::new(column.name, ty, true));
        columns.push(array);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sparkify_core::table::DM_SONGS;

    use super::*;
    use crate::{Compression, escape_partition_value, write_table};

    #[test]
    fn a_partitioned_table_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let batch = RecordBatch::try_new(
            DM_SONGS.schema(),
            vec![
                Arc::new(StringArray::from(vec!["S1", "S2", "S3"])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
                Arc::new(StringArray::from(vec![Some("AR/1=x"), Some("AR2"), None])),
                Arc::new(Int32Array::from(vec![Some(1927), None, Some(0)])),
                Arc::new(arrow::array::Float64Array::from(vec![1.5, 2.0, 0.1])),
            ],
        )
        .unwrap();
        write_table(dir.path(), &DM_SONGS, &batch, Compression::Zstd).unwrap();
        let back = read_table(dir.path(), &DM_SONGS).unwrap().unwrap();
        let mut rows = sparkify_core::text::rows(&back);
        rows.sort();
        assert_eq!(rows, {
            let mut want = sparkify_core::text::rows(&batch);
            want.sort();
            want
        });
        assert_eq!(back.column(3).null_count(), 1);
        assert!(
            read_table(dir.path(), &sparkify_core::table::DM_USERS)
                .unwrap()
                .is_none()
        );
        // An empty partitioned table is one file at the table's root.
        let empty = tempfile::tempdir().unwrap();
        write_table(
            empty.path(),
            &DM_SONGS,
            &RecordBatch::new_empty(DM_SONGS.schema()),
            Compression::Zstd,
        )
        .unwrap();
        assert_eq!(
            read_table(empty.path(), &DM_SONGS)
                .unwrap()
                .unwrap()
                .num_rows(),
            0
        );
    }

    #[test]
    fn partition_values_unescape() {
        for v in ["AR12/x=y", "Café 1", "100%", "a%2Fb"] {
            assert_eq!(unescape_partition_value(&escape_partition_value(v)), v);
        }
    }
}
