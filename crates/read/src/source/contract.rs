//! The decoder's contract on any bytes, as the fuzz target (`fuzz/fuzz_targets/decode.rs`)
//! and the corpus replay test check it: no panic, no hang, and no record vanishes.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use super::ReadOptions;
use super::decode::{Part, decode_part};
use crate::table::{STAGING_EVENTS, STAGING_SONGS};

/// Decodes `data` as each staging table, whole and split in small chunks, and checks:
/// - every record the decoder saw is a row or a reject;
/// - every reject points inside the input;
/// - input whose non-blank lines are each a JSON object (NDJSON, as serde_json reads it)
///   gives one row or one reject a line, whole or split, and the same rows and rejects both
///   ways;
/// - input that starts with an object gives at least one row or reject.
pub fn check(data: &[u8]) -> Result<(), String> {
    let lines = ndjson_objects(data);
    for schema in [STAGING_EVENTS.input_schema(), STAGING_SONGS.input_schema()] {
        let whole = decode(data, &schema, usize::MAX)?;
        let split = decode(data, &schema, 64)?;
        for (how, part) in [("whole", &whole), ("split", &split)] {
            let rows: usize = part.batches.iter().map(|b| b.num_rows()).sum();
            let seen = rows as u64 + part.rejects.len() as u64;
            if part.records != seen {
                return Err(format!(
                    "{how}: {} records seen, {rows} rows + {} rejects",
                    part.records,
                    part.rejects.len()
                ));
            }
            if let Some(r) = part
                .rejects
                .iter()
                .find(|r| r.byte_offset > data.len() as u64)
            {
                return Err(format!(
                    "{how}: a reject at byte {} of {}",
                    r.byte_offset,
                    data.len()
                ));
            }
            if let Some(n) = lines
                && seen != n
            {
                return Err(format!(
                    "{how}: {n} NDJSON lines, {rows} rows + {} rejects",
                    part.rejects.len()
                ));
            }
            let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
            let opens_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            if opens_object && seen == 0 {
                return Err(format!(
                    "{how}: input that opens an object gave no row and no reject"
                ));
            }
        }
        if lines.is_some() {
            let same_rows = concat(&whole) == concat(&split);
            if !same_rows || whole.rejects != split.rejects {
                return Err("NDJSON decoded whole and split differ".into());
            }
        }
    }
    Ok(())
}

fn decode(data: &[u8], schema: &SchemaRef, chunk_size: usize) -> Result<Part, String> {
    let opts = ReadOptions {
        chunk_size,
        batch_size: 7,
        ..ReadOptions::default()
    };
    decode_part(data, "fuzz.json", &Arc::clone(schema), &opts).map_err(|e| e.to_string())
}

fn concat(part: &Part) -> Vec<Vec<Option<String>>> {
    part.batches.iter().flat_map(crate::text::rows).collect()
}

/// The number of non-blank lines when each one is a JSON object as serde_json reads it (and
/// the input is UTF-8 with no byte order mark); `None` otherwise.
fn ndjson_objects(data: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(data).ok()?;
    let mut n = 0;
    for line in text.split('\n') {
        // JSON's whitespace only: a form feed is not blank (found by fuzzing: `\x0c` alone
        // was counted as a blank line, and the decoder rightly rejected it).
        if line.trim_matches([' ', '\t', '\r']).is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(_)) => n += 1,
            _ => return None,
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_are_counted_on_their_own() {
        assert_eq!(ndjson_objects(b"{\"a\":1}\n\n{\"b\":2}\r\n"), Some(2));
        assert_eq!(ndjson_objects(b"{\"a\":1}\n[1]\n"), None);
        assert_eq!(ndjson_objects(b"{\"a\":\n1}"), None);
        assert_eq!(ndjson_objects(b""), Some(0));
        assert_eq!(ndjson_objects(b"\x0c"), None);
        assert!(check(b"{\"a\":1}\n\n{\"ts\":\"x\"}\n").is_ok());
        assert!(check(b"{\"a\":1}\n[1]\n{").is_ok());
    }
}
