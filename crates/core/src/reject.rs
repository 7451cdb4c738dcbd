//! Records that could not be loaded. Nothing is dropped silently: each bad record becomes a
//! [`Reject`] naming where it was and why, and lands in the sink's `load_errors` table.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder};

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
    pub(crate) fn new(
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

/// The `load_errors` table for `rejects`, stamped with the run's start (epoch milliseconds).
pub fn rejects_batch(rejects: &[Reject], run_started_at_ms: i64) -> RecordBatch {
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
        started.append_value(run_started_at_ms);
    }
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
        ],
    )
    .expect("load_errors columns match LOAD_ERRORS")
}

#[cfg(test)]
mod tests {
    use super::*;

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
