//! Records that could not be loaded. Nothing is dropped silently: each bad record becomes a
//! [`Reject`] naming where it was and why, and lands in the sink's `load_errors` table.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Int64Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::Int64Type;

use crate::error::{Error, Result};
use crate::history::RunStamp;
use crate::model::{Kept, Rows};
use crate::spill::SpillWriter;
use crate::table::LOAD_ERRORS;

/// How much of a bad record's text is kept.
pub const RAW_LIMIT: usize = 1024;

/// One record that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The file or S3 key the record came from.
    pub source: Arc<str>,
    /// 1-based physical line of the file where the record starts.
    pub line: u64,
    /// Byte offset of the record's first byte in the (decompressed) file.
    pub byte_offset: u64,
    /// The JSON key of the field that failed, when one did.
    pub column: Option<String>,
    /// Why the record was rejected.
    pub reason: String,
    /// The record's text, at most [`RAW_LIMIT`] bytes, invalid UTF-8 replaced.
    pub raw: String,
}

impl Reject {
    /// A record of `source` at `line` (its first byte at `byte_offset`) refused for `reason`,
    /// naming `column` when one field is at fault; `raw` kept as text, truncated.
    pub fn new(
        source: &Arc<str>,
        line: u64,
        byte_offset: u64,
        column: Option<&str>,
        reason: impl Into<String>,
        raw: &[u8],
    ) -> Self {
        Reject {
            source: Arc::clone(source),
            line,
            byte_offset,
            column: column.map(str::to_owned),
            reason: reason.into(),
            raw: truncate_raw(raw),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} (byte {})",
            self.source, self.line, self.byte_offset
        )?;
        if let Some(column) = &self.column {
            write!(f, ": field `{column}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

fn truncate_raw(raw: &[u8]) -> String {
    let raw = raw.trim_ascii_end();
    let text = String::from_utf8_lossy(&raw[..raw.len().min(RAW_LIMIT)]);
    // NUL is valid JSON text (as \u0000 it is not raw, but a raw NUL byte can be in bad
    // input) and no SQL sink stores it in a text column.
    let mut text = text.replace('\0', "\u{FFFD}");
    // Cutting at RAW_LIMIT may split a character; its replacement char is left as a marker.
    // Each invalid byte became a 3-byte replacement char, so cut again, at a char boundary
    // (found by fuzzing: a long record of invalid UTF-8 made `truncate` panic).
    let mut cut = text.len().min(RAW_LIMIT + 3);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text
}

/// The `load_errors` table for `rejects`, stamped with the run's start and id.
pub fn rejects_batch(rejects: &[Reject], run: &RunStamp) -> RecordBatch {
    let n = rejects.len();
    let mut source = StringBuilder::with_capacity(n, n * 32);
    let mut line = Int64Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    let mut column = StringBuilder::with_capacity(n, n * 8);
    let mut reason = StringBuilder::with_capacity(n, n * 32);
    let mut raw = StringBuilder::with_capacity(n, n * 64);
    let mut started = TimestampMillisecondBuilder::with_capacity(n);
    for r in rejects {
        source.append_value(&r.source);
        line.append_value(i64::try_from(r.line).unwrap_or(i64::MAX));
        offset.append_value(i64::try_from(r.byte_offset).unwrap_or(i64::MAX));
        column.append_option(r.column.as_deref());
        reason.append_value(&r.reason);
        raw.append_value(&r.raw);
        started.append_value(run.started_at_ms);
    }
    let run_id = StringArray::from_iter_values(std::iter::repeat_n(&*run.id, n));
    RecordBatch::try_new(
        LOAD_ERRORS.schema(),
        vec![
            Arc::new(source.finish()),
            Arc::new(line.finish()),
            Arc::new(offset.finish()),
            Arc::new(column.finish()),
            Arc::new(reason.finish()),
            Arc::new(raw.finish()),
            Arc::new(started.finish()),
            Arc::new(run_id),
        ],
    )
    .expect("load_errors columns match LOAD_ERRORS")
}

/// A run's rejects as they are found, kept for `load_errors` and the run's report: held in
/// memory up to a bound, then written out as `load_errors` batches to a temporary file
/// ([`SpillWriter`]), so that an input of many bad records does not grow the run's memory
/// (each reject keeps up to [`RAW_LIMIT`] bytes of its record).
#[derive(Debug)]
pub struct RejectLog {
    run: RunStamp,
    /// Bytes of rejects held before they are written out.
    bound: usize,
    held: Vec<Reject>,
    held_bytes: usize,
    spill: Option<SpillWriter>,
    /// Rejects pushed, held or written.
    count: usize,
    /// The table, once made: nothing is pushed after.
    kept: Option<Kept>,
}

impl RejectLog {
    /// A log stamping its rows with `run`, holding up to `bound` bytes of rejects.
    pub fn new(run: RunStamp, bound: usize) -> Self {
        RejectLog {
            run,
            bound,
            held: Vec::new(),
            held_bytes: 0,
            spill: None,
            count: 0,
            kept: None,
        }
    }

    /// Rejects pushed so far (not the `first` of [`RejectLog::kept`]).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn push(&mut self, rejects: impl IntoIterator<Item = Reject>) -> Result<()> {
        if self.kept.is_some() {
            return Err(Error::Schema(
                "rejects came after their load_errors table was made".into(),
            ));
        }
        for r in rejects {
            self.held_bytes += held_size(&r);
            self.held.push(r);
            self.count += 1;
        }
        if self.held_bytes > self.bound {
            let spill = match &mut self.spill {
                Some(spill) => spill,
                None => self
                    .spill
                    .insert(SpillWriter::create(LOAD_ERRORS.schema())?),
            };
            spill.write(&rejects_batch(&self.held, &self.run))?;
            tracing::debug!(rejects = self.held.len(), "rejects written out of memory");
            self.held.clear();
            self.held_bytes = 0;
        }
        Ok(())
    }

    /// The `load_errors` table: `first` (the songs' rejects, read whole), then every reject
    /// pushed, in order. Made once: a second call gives the same table, whatever its `first`.
    pub fn kept(&mut self, first: &[Reject]) -> Result<Kept> {
        if let Some(kept) = &self.kept {
            return Ok(kept.clone());
        }
        let at = &self.run;
        let kept = match self.spill.take() {
            None => {
                let all: Vec<Reject> = first.iter().cloned().chain(self.held.drain(..)).collect();
                Kept::Batch(rejects_batch(&all, at))
            }
            Some(spilled) => {
                // `first` came last (the songs are read while the events stream): it goes to
                // the front of a new file, the rows already written are copied after it.
                let spilled = spilled.finish()?;
                let mut out = SpillWriter::create(LOAD_ERRORS.schema())?;
                out.write(&rejects_batch(first, at))?;
                for batch in spilled.batches() {
                    out.write(&batch?)?;
                }
                out.write(&rejects_batch(&self.held, at))?;
                self.held.clear();
                Kept::Spilled(Arc::new(out.finish()?))
            }
        };
        self.held_bytes = 0;
        self.kept = Some(kept.clone());
        Ok(kept)
    }
}

/// What a held reject costs in memory, about.
fn held_size(r: &Reject) -> usize {
    std::mem::size_of::<Reject>()
        + r.raw.len()
        + r.reason.len()
        + r.column.as_ref().map_or(0, String::len)
}

/// The rejects of a `load_errors` table, read back a batch at a time (a run's report reads
/// them from where they spilled).
pub fn read_back<'a>(rows: Rows<'a>) -> impl Iterator<Item = Result<Reject>> + 'a {
    rows.batches(crate::model::SLICE_ROWS).flat_map(|batch| {
        match batch.and_then(|b| rejects_in(&b)) {
            Ok(rejects) => rejects.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        }
    })
}

/// The rejects of one `load_errors` batch.
fn rejects_in(batch: &RecordBatch) -> Result<Vec<Reject>> {
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| Error::Schema(format!("load_errors has no text column {name}")))
    };
    let number = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| Error::Schema(format!("load_errors has no BIGINT column {name}")))
    };
    let (source, column, reason, raw) = (
        text("source")?,
        text("column_name")?,
        text("reason")?,
        text("raw_text")?,
    );
    let (line, offset) = (number("line")?, number("byte_offset")?);
    Ok((0..batch.num_rows())
        .map(|i| Reject {
            source: Arc::from(source.value(i)),
            line: line.value(i) as u64,
            byte_offset: offset.value(i) as u64,
            column: column.is_valid(i).then(|| column.value(i).to_owned()),
            reason: reason.value(i).to_owned(),
            raw: raw.value(i).to_owned(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(source: &str, line: u64, raw_len: usize) -> Reject {
        Reject::new(
            &Arc::from(source),
            line,
            line * 100,
            line.is_multiple_of(2).then_some("ts"),
            format!("reason {line}"),
            "x".repeat(raw_len).as_bytes(),
        )
    }

    #[test]
    fn rejects_past_the_bound_are_spilled_and_read_back_songs_first_in_order() {
        let songs: Vec<Reject> = (1..=3).map(|i| reject("song.json", i, 10)).collect();
        let events: Vec<Reject> = (1..=40).map(|i| reject("log.json", i, 300)).collect();
        for bound in [0, 2_000, 1 << 20] {
            let mut log = RejectLog::new(RunStamp::at(7), bound);
            for part in events.chunks(6) {
                log.push(part.to_vec()).unwrap();
            }
            assert_eq!(log.len(), 40);
            let kept = log.kept(&songs).unwrap();
            let spilled = matches!(kept, Kept::Spilled(_));
            assert_eq!(spilled, bound < 1 << 20, "bound {bound}");
            assert_eq!(kept.rows().num_rows(), 43);
            let want: Vec<Reject> = songs.iter().chain(&events).cloned().collect();
            let got: Vec<Reject> = read_back(kept.rows()).map(Result::unwrap).collect();
            assert_eq!(got, want, "bound {bound}");
            assert_eq!(
                kept.rows().to_batch().unwrap(),
                rejects_batch(&want, &RunStamp::at(7))
            );
            // Made once; nothing is pushed after.
            assert_eq!(read_back(log.kept(&[]).unwrap().rows()).count(), 43);
            assert!(log.push([reject("late.json", 1, 1)]).is_err());
        }
    }

    #[test]
    fn a_log_of_no_rejects_is_an_empty_table() {
        let mut log = RejectLog::new(RunStamp::at(0), 0);
        log.push(Vec::new()).unwrap();
        let kept = log.kept(&[]).unwrap();
        assert!(log.is_empty() && matches!(kept, Kept::Batch(_)));
        assert_eq!(kept.rows().num_rows(), 0);
        assert_eq!(
            kept.rows().to_batch().unwrap().schema(),
            LOAD_ERRORS.schema()
        );
    }

    #[test]
    fn a_long_raw_record_of_invalid_utf8_is_cut_at_a_character() {
        // Found by fuzzing: invalid bytes grow threefold as replacement characters, and the
        // cut fell inside one.
        for lead in 0..4 {
            let mut raw = vec![b'a'; lead];
            raw.extend(std::iter::repeat_n(0xFF, 2 * RAW_LIMIT));
            let text = truncate_raw(&raw);
            assert!(text.len() <= RAW_LIMIT + 3, "{}", text.len());
            assert!(text.ends_with('\u{FFFD}'));
        }
        assert_eq!(truncate_raw(b"{\"a\":1}  \n"), "{\"a\":1}");
    }
}
