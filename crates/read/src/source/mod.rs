//! Finding input files (a folder, a file, a glob or an `s3://` prefix) and reading them in
//! parallel into Arrow: [`discover`] says what the input is; [`stream`], the one scheduler,
//! groups small inputs and cuts large ones, decodes them on rayon's workers and gives the
//! parts back in input order under a bound on the bytes in flight; [`read`] gathers a
//! table's parts whole; `decode` turns bytes into batches and rejects.

pub mod contract;
mod decode;
mod discover;
mod gather;
mod stream;

use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::error::{Error, Result};
use crate::reader::DEFAULT_BATCH_SIZE;
use crate::reject::Reject;

pub use decode::decode_bytes;
pub use discover::{
    Discovery, Input, InputFile, Listed, Location, Remote, S3Url, discover, discover_all,
    is_json_name,
};
pub use gather::{gather, inputs, read, read_path};
pub use stream::{DEFAULT_IN_FLIGHT, Flow, OnPart, Parts, StreamInput, StreamPart, stream};

/// The error a [`Remote`] reports (the S3 crate's own, boxed so the core need not know it).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How to read.
#[derive(Clone)]
pub struct ReadOptions {
    /// Rows per batch the decoders build (the result is the same for any size).
    pub batch_size: usize,
    /// Files larger than this are split in chunks of about this size, decoded in parallel.
    pub chunk_size: usize,
    /// Called with each file's stored size once it is read, from any worker.
    pub on_file: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    /// Where the decoders note schema drift ([`crate::drift`]); `None`: not tracked.
    pub drift: Option<Arc<crate::drift::DriftLog>>,
    /// The most bytes a text value may take before its record is a reject (the sink's
    /// limit: 65,535 for Redshift); `None`: no limit.
    pub max_text_bytes: Option<usize>,
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
            drift: None,
            max_text_bytes: None,
        }
    }
}

/// Everything read for one table.
#[derive(Debug, Clone)]
pub struct ReadOutput {
    /// All rows, in file order then line order.
    pub batch: RecordBatch,
    pub rejects: Vec<Reject>,
    /// Every record read, each one a row of `batch` or a reject.
    pub records: u64,
    pub files_read: usize,
    /// Bytes as stored (compressed for `.gz`).
    pub bytes_read: u64,
    /// Each file read, in input order: its rows are the next `rows` rows of `batch`.
    pub files: Vec<FileRead>,
}

/// What one input file gave: what `etl_files` records of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRead {
    /// What rejects name it by: its path, or `s3://bucket/key`.
    pub name: String,
    /// Size as stored.
    pub size: u64,
    /// See [`InputFile::version`].
    pub version: Option<String>,
    /// XXH64 of its bytes as stored.
    pub checksum: u64,
    /// Rows it gave, and rejects.
    pub rows: u64,
    pub rejects: u64,
}

impl FileRead {
    /// A file not read yet: no checksum, no rows counted.
    fn unread(name: String, size: u64, version: Option<String>) -> Self {
        FileRead {
            name,
            size,
            version,
            checksum: 0,
            rows: 0,
            rejects: 0,
        }
    }
}

impl ReadOutput {
    /// Checks that every record read is a row of the batch or a reject (SPEC: nothing is
    /// lost on the way from the decoder to the table).
    pub fn reconcile(&self, table: &'static str) -> Result<()> {
        let (rows, rejects) = (self.batch.num_rows() as u64, self.rejects.len() as u64);
        account(table, self.records, rows, rejects)
    }
}

/// Checks that `records` read of `table` are `rows` staged plus `rejects` (SPEC: every input
/// record is loaded or reported).
pub fn account(table: &'static str, records: u64, rows: u64, rejects: u64) -> Result<()> {
    if records != rows + rejects {
        return Err(Error::Unaccounted {
            table,
            records,
            rows,
            rejects,
        });
    }
    Ok(())
}

/// One input fetched, from S3, say.
#[derive(Debug)]
pub struct Blob {
    /// What rejects name it by (`s3://bucket/key`).
    pub name: String,
    /// Its bytes as stored: gzip when `name` ends `.gz`.
    pub data: BlobData,
    /// See [`InputFile::version`].
    pub version: Option<String>,
}

/// A [`Blob`]'s bytes: in memory, or still coming (a large object, fetched range by range).
pub enum BlobData {
    Bytes(Vec<u8>),
    Stream {
        /// Its size as listed.
        len: u64,
        reader: Box<dyn std::io::Read + Send>,
    },
}

impl std::fmt::Debug for BlobData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobData::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            BlobData::Stream { len, .. } => write!(f, "Stream({len} bytes)"),
        }
    }
}

impl BlobData {
    /// Its size: as held, or as listed.
    pub fn len(&self) -> u64 {
        match self {
            BlobData::Bytes(b) => b.len() as u64,
            BlobData::Stream { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All of it in memory; `name` names it in an error.
    pub fn into_bytes(self, name: &str) -> Result<Vec<u8>> {
        match self {
            BlobData::Bytes(b) => Ok(b),
            BlobData::Stream { len, mut reader } => {
                let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                reader.read_to_end(&mut out).map_err(|source| Error::Io {
                    path: name.to_owned(),
                    source,
                })?;
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_neither_staged_nor_rejected_fails_reconciliation() {
        let mut out = ReadOutput {
            batch: RecordBatch::new_empty(crate::table::STAGING_SONGS.input_schema()),
            rejects: Vec::new(),
            records: 0,
            files_read: 1,
            bytes_read: 2,
            files: Vec::new(),
        };
        assert!(out.reconcile("staging_songs").is_ok());
        out.records = 1;
        let err = out.reconcile("staging_songs").unwrap_err().to_string();
        assert_eq!(
            err,
            "reconciliation: read 1 records of staging_songs, but staged 0 rows and rejected 0"
        );
    }
}
