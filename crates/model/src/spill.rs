//! A table written out of memory as its rows come: Arrow IPC in an unnamed temporary file
//! (gone with the process, whatever happens to it), read back a batch at a time as often as a
//! load asks. What a run holds of a table that grows with its input, where that table is not
//! the run's result: its rejects ([`crate::reject::RejectLog`]). And `Scratch`, the file
//! the star's builders write fixed-size records they hold for later to.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::os::unix::fs::FileExt;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;

use crate::error::{Error, Result};

/// A table being written to a temporary file, batch by batch.
pub struct SpillWriter {
    writer: StreamWriter<BufWriter<File>>,
    schema: SchemaRef,
    rows: usize,
}

impl std::fmt::Debug for SpillWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillWriter")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl SpillWriter {
    /// A new temporary file for rows of `schema`.
    pub fn create(schema: SchemaRef) -> Result<Self> {
        let file = tempfile::tempfile().map_err(|source| Error::Io {
            path: format!("a temporary file in {}", std::env::temp_dir().display()),
            source,
        })?;
        let writer = StreamWriter::try_new_buffered(file, &schema)?;
        Ok(SpillWriter {
            writer,
            schema,
            rows: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Every row written, to read back.
    pub fn finish(self) -> Result<Spilled> {
        let file = self
            .writer
            .into_inner()?
            .into_inner()
            .map_err(|e| Error::Io {
                path: "a temporary file".into(),
                source: e.into_error(),
            })?;
        Ok(Spilled {
            file,
            schema: self.schema,
            rows: self.rows,
        })
    }
}

/// A table written by [`SpillWriter`].
#[derive(Debug)]
pub struct Spilled {
    file: File,
    schema: SchemaRef,
    rows: usize,
}

impl Spilled {
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The batches as written, read one at a time; each read starts again at the start of the
    /// file, so several can go on side by side.
    pub fn batches(&self) -> impl Iterator<Item = Result<RecordBatch>> + Send + '_ {
        let reader = StreamReader::try_new(
            BufReader::new(At {
                file: &self.file,
                pos: 0,
            }),
            None,
        );
        let (reader, failed) = match reader {
            Ok(reader) => (Some(reader), None),
            Err(e) => (None, Some(Err(Error::from(e)))),
        };
        failed
            .into_iter()
            .chain(reader.into_iter().flatten().map(|b| b.map_err(Error::from)))
    }

    /// Rows `offset..offset + len`, in one batch.
    pub fn slice(&self, offset: usize, len: usize) -> Result<RecordBatch> {
        let (end, mut at, mut parts) = (offset + len, 0, Vec::new());
        for batch in self.batches() {
            let batch = batch?;
            let (start, stop) = (at, at + batch.num_rows());
            at = stop;
            if stop <= offset || start >= end {
                continue;
            }
            let from = offset.max(start) - start;
            parts.push(batch.slice(from, end.min(stop) - start - from));
            if stop >= end {
                break;
            }
        }
        Ok(concat_batches(&self.schema, &parts)?)
    }
}

/// A reader of `file` from `pos` on that leaves the file's own offset alone.
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let ns: Vec<i64> = (from..from + n).collect();
        let ss: Vec<Option<String>> = ns
            .iter()
            .map(|n| (n % 3 != 0).then(|| format!("row {n}")))
            .collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ns)),
                Arc::new(StringArray::from(ss)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_spilled_table_reads_back_as_written_as_often_as_asked() {
        let written = [batch(0, 5), batch(5, 0), batch(5, 7), batch(12, 1)];
        let mut w = SpillWriter::create(written[0].schema()).unwrap();
        for b in &written {
            w.write(b).unwrap();
        }
        let spilled = w.finish().unwrap();
        assert_eq!(spilled.num_rows(), 13);
        let whole = concat_batches(&spilled.schema(), &written).unwrap();
        for _ in 0..2 {
            let read: Vec<RecordBatch> = spilled.batches().map(Result::unwrap).collect();
            assert_eq!(
                read.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
                [5, 0, 7, 1]
            );
            assert_eq!(concat_batches(&spilled.schema(), &read).unwrap(), whole);
        }
        // Two readers side by side do not move each other.
        let (mut a, mut b) = (spilled.batches(), spilled.batches());
        assert_eq!(a.next().unwrap().unwrap(), written[0]);
        assert_eq!(b.next().unwrap().unwrap(), written[0]);
        assert_eq!(a.nth(1).unwrap().unwrap(), written[2]);
        for (offset, len) in [(0, 13), (0, 0), (3, 4), (5, 7), (4, 9), (12, 1), (13, 0)] {
            assert_eq!(
                spilled.slice(offset, len).unwrap(),
                whole.slice(offset, len),
                "{offset}+{len}"
            );
        }
    }

    #[test]
    fn an_empty_spill_reads_back_empty() {
        let schema = batch(0, 0).schema();
        let spilled = SpillWriter::create(schema.clone())
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(spilled.num_rows(), 0);
        assert_eq!(spilled.batches().count(), 0);
        assert_eq!(spilled.slice(0, 0).unwrap().schema(), schema);
    }
}

/// Records a builder holds for later, out of memory: bytes appended to an unnamed temporary
/// file (in `TMPDIR`, made at the first write) and read back by their place. Clones share the
/// file.
#[derive(Debug, Clone)]
pub(crate) struct Scratch {
    file: Option<std::sync::Arc<File>>,
    written: u64,
    /// What is written, as an error names it: `the plays`.
    what: &'static str,
}

impl Scratch {
    pub(crate) fn new(what: &'static str) -> Self {
        Scratch {
            file: None,
            written: 0,
            what,
        }
    }

    /// Whether anything was written.
    pub(crate) fn used(&self) -> bool {
        self.file.is_some()
    }

    /// Appends `bytes`; where they start.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<u64> {
        use std::io::Write;
        if self.file.is_none() {
            let file = tempfile::tempfile().map_err(|e| self.error(e))?;
            self.file = Some(std::sync::Arc::new(file));
        }
        let mut file: &File = self.file.as_deref().expect("made above");
        file.write_all(bytes).map_err(|e| self.error(e))?;
        let start = self.written;
        self.written += bytes.len() as u64;
        Ok(start)
    }

    /// Fills `bytes` from `at` on.
    pub(crate) fn read_at(&self, bytes: &mut [u8], at: u64) -> Result<()> {
        let Some(file) = &self.file else {
            return Err(self.error(std::io::ErrorKind::UnexpectedEof.into()));
        };
        file.read_exact_at(bytes, at).map_err(|e| self.error(e))
    }

    fn error(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: format!("{} written to a temporary file (TMPDIR)", self.what),
            source,
        }
    }
}
