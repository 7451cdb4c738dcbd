//! Order-independent content fingerprints of the tables (`sparkify verify`): computed inside
//! DuckDB, PostgreSQL and Redshift by the SQL built here ([`fingerprints_sql`]), and over
//! Arrow batches ([`of_batch`]) for a Parquet lake and for the model recomputed from the
//! input. All of them must give the same numbers for the same rows, so the canonical form of a
//! row is spelled out once, here and in `docs/verify.md`:
//!
//! - each compared column's value as text: integers in decimal; doubles as PostgreSQL prints
//!   them, the shortest digits that read back exactly ([`crate::text::double`]: `1`, `0.1`,
//!   `1e+15`, `1e-05`, `-0`, `NaN`, `Infinity`); timestamps as ISO 8601 UTC with six fraction
//!   digits and `Z`; text as it is;
//! - each value encoded as `N` for NULL, else its length in bytes, `:`, and the text (so NULL
//!   is not `''`, and no value can run into the next);
//! - a row's encoding is its values' encodings in column order, and its hash the MD5 of that;
//! - a table's fingerprint is its row count and two sums over its rows, of the first and of
//!   the second 32 bits of the hash: a row missing, added or changed changes it, the order of
//!   the rows does not.
//!
//! Columns left out: `ft_songplays.songplay_id`, a surrogate each warehouse numbers its own
//! way (Redshift's `IDENTITY`); `load_errors.run_started_at` and `run_id`, the run's clock and
//! name; and the staging
//! tables' `etl_file_id`, which numbers files in the order loads met them (an incremental load
//! numbers them otherwise than a full one). Rows are matched on their natural key instead
//! ([`key_columns`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use arrow::error::ArrowError;
use md5::{Digest, Md5};

use crate::sql::Dialect;
use crate::table::{
    Column, FT_SONGPLAYS, LOAD_ERRORS, STAGING_EVENTS, STAGING_SONGS, SqlType, TableDef,
};
use crate::text::QueryResult;

/// A table's row count and the two sums of its rows' hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub rows: u64,
    pub sums: [u128; 2],
}

impl Fingerprint {
    fn add(&mut self, hash: &str) {
        self.rows += 1;
        for (sum, part) in self.sums.iter_mut().zip(halves(hash)) {
            *sum += u128::from(part);
        }
    }
}

/// Sixteen hex digits: each sum modulo 2³².
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = self.sums.map(|s| s & 0xffff_ffff);
        write!(f, "{a:08x}{b:08x}")
    }
}

/// The first and second 32 bits of a hex MD5.
fn halves(hash: &str) -> [u32; 2] {
    let part = |range: std::ops::Range<usize>| {
        hash.get(range)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    [part(0..8), part(8..16)]
}

/// The columns a fingerprint covers, in table order.
pub fn compared_columns(table: &TableDef) -> impl Iterator<Item = &'static Column> + '_ {
    table.columns.iter().filter(move |c| {
        !(c.lineage
            || (table.name == FT_SONGPLAYS.name && c.name == "songplay_id")
            || (table.name == LOAD_ERRORS.name && matches!(c.name, "run_started_at" | "run_id")))
    })
}

/// The columns that name a row in a report: the natural key of `ft_songplays`
/// (`session_id`, `item_in_session`), a dimension's primary key; for the tables with no key
/// (staging, `load_errors`), columns that help a person find the row.
pub fn key_columns(table: &TableDef) -> &'static [&'static str] {
    match table.name {
        n if n == FT_SONGPLAYS.name => &["session_id", "item_in_session"],
        n if n == STAGING_EVENTS.name => &["sessionId", "itemInSession", "ts"],
        n if n == STAGING_SONGS.name => &["song_id"],
        n if n == LOAD_ERRORS.name => &["source", "line"],
        _ => table.primary_key,
    }
}

/// Whether [`key_columns`] identify a row (so a row can be "changed"), or only label it.
pub fn keyed(table: &TableDef) -> bool {
    table.name == FT_SONGPLAYS.name || !table.primary_key.is_empty()
}

// ---------------------------------------------------------------------------------------------
// SQL

/// The canonical text of `column` (NULL for NULL).
fn canonical_sql(dialect: &Dialect, column: &Column) -> String {
    // Unquoted, as the DDL names them (PostgreSQL folds `firstName` to lower case).
    let c = column.name;
    match (dialect, column.ty) {
        (_, SqlType::Text) => c.to_owned(),
        (_, SqlType::Integer | SqlType::BigInt) => format!("CAST({c} AS VARCHAR)"),
        // DuckDB prints the same shortest digits as PostgreSQL, but `1.0` for 1 and positional
        // notation up to 1e16 (PostgreSQL: up to 1e15); `nan`, `inf`.
        (Dialect::DuckDb, SqlType::Double) => format!(
            "CASE CAST({c} AS VARCHAR) WHEN 'nan' THEN 'NaN' WHEN 'inf' THEN 'Infinity' \
             WHEN '-inf' THEN '-Infinity' ELSE CASE WHEN abs({c}) >= 1e15 AND abs({c}) < 1e16 \
             THEN regexp_replace(regexp_replace(CAST({c} AS VARCHAR), \
             '^(-?)(\\d)(\\d{{15}})\\.?(\\d*)$', '\\1\\2.\\3\\4e+15'), '\\.?0+e', 'e') \
             ELSE regexp_replace(CAST({c} AS VARCHAR), '\\.0$', '') END END"
        ),
        // PostgreSQL 12 and later print the shortest exact digits (extra_float_digits = 1).
        (_, SqlType::Double) => format!("CAST({c} AS VARCHAR)"),
        (Dialect::DuckDb, SqlType::Timestamp) => {
            format!("strftime({c}, '%Y-%m-%dT%H:%M:%S.%fZ')")
        }
        (_, SqlType::Timestamp) => format!("to_char({c}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"),
        // Spelled out: Redshift will not cast a BOOLEAN to text.
        (_, SqlType::Boolean) => format!("CASE WHEN {c} THEN 'true' WHEN NOT {c} THEN 'false' END"),
    }
}

/// `N`, or the byte length, `:` and the canonical text.
fn encoded_sql(dialect: &Dialect, column: &Column) -> String {
    let text = canonical_sql(dialect, column);
    let bytes = match dialect {
        Dialect::DuckDb => "strlen",
        Dialect::Postgres | Dialect::Redshift(_) => "octet_length",
    };
    format!("COALESCE(CAST({bytes}({text}) AS VARCHAR) || ':' || {text}, 'N')")
}

/// A row's hash, as 32 hex digits.
fn row_hash_sql(dialect: &Dialect, table: &TableDef) -> String {
    let values: Vec<String> = compared_columns(table)
        .map(|c| encoded_sql(dialect, c))
        .collect();
    format!("md5({})", values.join(" || "))
}

/// Eight hex digits of `hash` from `start` (1-based) as an integer.
fn hex_sql(dialect: &Dialect, hash: &str, start: usize) -> String {
    let part = format!("substr({hash}, {start}, 8)");
    match dialect {
        Dialect::DuckDb => format!("CAST('0x' || {part} AS BIGINT)"),
        Dialect::Postgres => format!("CAST(CAST('x' || {part} AS BIT(32)) AS BIGINT)"),
        Dialect::Redshift(_) => format!("STRTOL({part}, 16)"),
    }
}

/// One query giving, for each of `tables`, a row `(table_name, row_count, sum_1, sum_2)`.
pub fn fingerprints_sql(dialect: &Dialect, tables: &[&TableDef]) -> String {
    let one = |t: &TableDef| {
        format!(
            "SELECT '{name}' AS table_name, COUNT(*) AS row_count, COALESCE(SUM(h1), 0) AS sum_1, \
             COALESCE(SUM(h2), 0) AS sum_2 FROM (SELECT {h1} AS h1, {h2} AS h2 FROM \
             (SELECT {hash} AS h FROM {name}) AS hashed) AS parts",
            name = t.name,
            h1 = hex_sql(dialect, "h", 1),
            h2 = hex_sql(dialect, "h", 9),
            hash = row_hash_sql(dialect, t),
        )
    };
    tables
        .iter()
        .map(|t| one(t))
        .collect::<Vec<_>>()
        .join("\nUNION ALL\n")
}

/// Every row's key text (`key_text`) and hash: fetched only for a table that differs.
pub fn row_hashes_sql(dialect: &Dialect, table: &TableDef) -> String {
    let key: Vec<String> = key_columns(table)
        .iter()
        .filter_map(|k| table.columns.iter().find(|c| c.name == *k))
        .map(|c| {
            format!(
                "'{}=' || COALESCE({}, 'NULL')",
                c.name,
                canonical_sql(dialect, c)
            )
        })
        .collect();
    let key = if key.is_empty() {
        "''".to_owned()
    } else {
        key.join(" || ', ' || ")
    };
    format!(
        "SELECT {key} AS row_key, {hash} AS row_hash FROM {name}",
        hash = row_hash_sql(dialect, table),
        name = table.name
    )
}

/// The rows of [`fingerprints_sql`], by table name.
pub fn parse_fingerprints(result: &QueryResult) -> Result<BTreeMap<String, Fingerprint>, String> {
    result
        .rows
        .iter()
        .map(|row| {
            let text = |i: usize| row.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let number = |i: usize| {
                text(i)
                    .parse::<u128>()
                    .map_err(|e| format!("fingerprint of {}: {:?}: {e}", text(0), text(i)))
            };
            let rows = u64::try_from(number(1)?).map_err(|e| e.to_string())?;
            Ok((
                text(0).to_owned(),
                Fingerprint {
                    rows,
                    sums: [number(2)?, number(3)?],
                },
            ))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Arrow

/// The canonical text of the value at `row` of a column of type `ty` (`None` for NULL).
fn canonical_value(array: &dyn Array, ty: SqlType, row: usize) -> Result<Option<String>, String> {
    if array.is_null(row) {
        return Ok(None);
    }
    let found = array.data_type();
    Ok(Some(match (ty, found) {
        (SqlType::Text, DataType::Utf8) => array.as_string::<i32>().value(row).to_owned(),
        (SqlType::Text, DataType::LargeUtf8) => array.as_string::<i64>().value(row).to_owned(),
        (SqlType::Text, DataType::Utf8View) => array.as_string_view().value(row).to_owned(),
        (SqlType::Integer | SqlType::BigInt, DataType::Int32) => {
            array.as_primitive::<Int32Type>().value(row).to_string()
        }
        (SqlType::Integer | SqlType::BigInt, DataType::Int64) => {
            array.as_primitive::<Int64Type>().value(row).to_string()
        }
        (SqlType::Double, DataType::Float64) => {
            crate::text::double(array.as_primitive::<Float64Type>().value(row))
        }
        (SqlType::Boolean, DataType::Boolean) => array.as_boolean().value(row).to_string(),
        (SqlType::Timestamp, DataType::Timestamp(..)) => crate::time::micros_at(array, row)
            .map(crate::time::iso_micros)
            .ok_or("a timestamp out of range")?,
        _ => return Err(format!("expected {ty:?}, found {found}")),
    }))
}

/// Each row of `batch` (columns by name, as `table` declares them) as `(key text, hash)`.
pub fn row_hashes(
    table: &TableDef,
    batch: &RecordBatch,
) -> Result<Vec<(String, String)>, ArrowError> {
    let column = |c: &Column| {
        batch
            .column_by_name(c.name)
            .ok_or_else(|| ArrowError::SchemaError(format!("{}: no column {}", table.name, c.name)))
    };
    let compared: Vec<(&Column, &dyn Array)> = compared_columns(table)
        .map(|c| Ok((c, column(c)?.as_ref())))
        .collect::<Result<_, ArrowError>>()?;
    let keys: Vec<(&Column, &dyn Array)> = key_columns(table)
        .iter()
        .filter_map(|k| table.columns.iter().find(|c| c.name == *k))
        .map(|c| Ok((c, column(c)?.as_ref())))
        .collect::<Result<_, ArrowError>>()?;
    let bad =
        |c: &Column, e: String| ArrowError::SchemaError(format!("{}.{}: {e}", table.name, c.name));
    (0..batch.num_rows())
        .map(|row| {
            let mut encoded = String::new();
            for (c, array) in &compared {
                match canonical_value(*array, c.ty, row).map_err(|e| bad(c, e))? {
                    None => encoded.push('N'),
                    Some(text) => {
                        encoded += &text.len().to_string();
                        encoded.push(':');
                        encoded += &text;
                    }
                }
            }
            let mut key = Vec::with_capacity(keys.len());
            for (c, array) in &keys {
                let text = canonical_value(*array, c.ty, row).map_err(|e| bad(c, e))?;
                key.push(format!("{}={}", c.name, text.as_deref().unwrap_or("NULL")));
            }
            let hash = md5_hex(encoded.as_bytes());
            Ok((key.join(", "), hash))
        })
        .collect()
}

/// MD5 as 32 lowercase hex digits, as SQL's `md5()`.
fn md5_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    Md5::digest(bytes)
        .iter()
        .fold(String::with_capacity(32), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The fingerprint of `batch` as table `table`.
pub fn of_batch(table: &TableDef, batch: &RecordBatch) -> Result<Fingerprint, ArrowError> {
    let mut fingerprint = Fingerprint::default();
    for (_, hash) in row_hashes(table, batch)? {
        fingerprint.add(&hash);
    }
    Ok(fingerprint)
}

// ---------------------------------------------------------------------------------------------
// Differences

/// How one copy of a table differs from the reference copy: rows (their key text) only in the
/// reference, only in the other, and, for a keyed table, under the same key with other values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowDiff {
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub changed: Vec<String>,
}

/// The rows of `other` against `reference` (both from [`row_hashes`] or [`row_hashes_sql`]),
/// each list sorted.
pub fn diff(
    table: &TableDef,
    reference: &[(String, String)],
    other: &[(String, String)],
) -> RowDiff {
    let mut out = RowDiff::default();
    if keyed(table) {
        let theirs: HashMap<&str, &str> = other
            .iter()
            .map(|(k, h)| (k.as_str(), h.as_str()))
            .collect();
        let ours: HashMap<&str, &str> = reference
            .iter()
            .map(|(k, h)| (k.as_str(), h.as_str()))
            .collect();
        for (key, hash) in &ours {
            match theirs.get(key) {
                None => out.missing.push((*key).to_owned()),
                Some(h) if h != hash => out.changed.push((*key).to_owned()),
                Some(_) => {}
            }
        }
        out.extra = theirs
            .keys()
            .filter(|k| !ours.contains_key(*k))
            .map(|k| (*k).to_owned())
            .collect();
    } else {
        // A multiset of rows: a row held twice in one copy and once in the other differs.
        let mut count: HashMap<&str, (i64, &str)> = HashMap::new();
        for (key, hash) in reference {
            count.entry(hash).or_insert((0, key)).0 += 1;
        }
        for (key, hash) in other {
            count.entry(hash).or_insert((0, key)).0 -= 1;
        }
        for (n, key) in count.into_values() {
            let list = if n > 0 {
                &mut out.missing
            } else {
                &mut out.extra
            };
            list.extend(std::iter::repeat_n(
                key.to_owned(),
                n.unsigned_abs() as usize,
            ));
        }
    }
    out.missing.sort();
    out.extra.sort();
    out.changed.sort();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, StringArray};

    use super::*;
    use crate::table::DM_ARTISTS;

    type Artist<'a> = (&'a str, Option<&'a str>, Option<f64>);

    fn fp(rows: &[Artist<'_>]) -> Fingerprint {
        of_batch(&DM_ARTISTS, &artists(rows)).unwrap()
    }

    fn artists(rows: &[Artist<'_>]) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "artist_id",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )) as _,
            ),
            (
                "location",
                Arc::new(StringArray::from(vec![None::<&str>; rows.len()])) as _,
            ),
            (
                "latitude",
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )) as _,
            ),
            (
                "longitude",
                Arc::new(Float64Array::from(vec![None; rows.len()])) as _,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn the_canonical_form_is_spelled_out() {
        let batch = artists(&[("AR1", Some("Dwight"), Some(1.0))]);
        let (key, hash) = row_hashes(&DM_ARTISTS, &batch).unwrap().remove(0);
        assert_eq!(key, "artist_id=AR1");
        // 3:AR1 6:Dwight N 1:1 N
        let want = md5_hex(b"3:AR16:DwightN1:1N");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hash, want);
    }

    #[test]
    fn null_and_empty_text_differ_and_values_cannot_run_together() {
        assert_ne!(fp(&[("A", None, None)]), fp(&[("A", Some(""), None)]));
        assert_ne!(fp(&[("A", Some("1"), None)]), fp(&[("A", None, Some(1.0))]));
        assert_ne!(
            fp(&[("AB", Some("C"), None)]),
            fp(&[("A", Some("BC"), None)])
        );
    }

    #[test]
    fn the_order_of_rows_does_not_matter_and_every_row_counts() {
        let a = ("A", Some("x"), Some(1.5));
        let b = ("B", Some("y"), None);
        assert_eq!(fp(&[a, b]), fp(&[b, a]));
        assert_ne!(fp(&[a, b]), fp(&[a]));
        assert_ne!(fp(&[a, b]), fp(&[a, b, b]));
        assert_eq!(fp(&[a, b]).rows, 2);
        assert_eq!(fp(&[]), Fingerprint::default());
        assert_eq!(Fingerprint::default().to_string(), "0000000000000000");
    }

    #[test]
    fn differences_name_missing_extra_and_changed_keys() {
        let h = |rows: &[Artist<'_>]| row_hashes(&DM_ARTISTS, &artists(rows)).unwrap();
        let reference = h(&[("A", Some("x"), None), ("B", None, None), ("C", None, None)]);
        let other = h(&[
            ("A", Some("x"), None),
            ("B", Some("b"), None),
            ("D", None, None),
        ]);
        let d = diff(&DM_ARTISTS, &reference, &other);
        assert_eq!(d.missing, ["artist_id=C"]);
        assert_eq!(d.extra, ["artist_id=D"]);
        assert_eq!(d.changed, ["artist_id=B"]);
        // Without a key, rows are a multiset.
        let reference = vec![("r".into(), "h1".into()), ("r".into(), "h1".into())];
        let other = vec![("r".into(), "h1".into()), ("s".into(), "h2".into())];
        let d = diff(&STAGING_SONGS, &reference, &other);
        assert_eq!(
            (d.missing.len(), d.extra, d.changed.len()),
            (1, vec!["s".to_owned()], 0)
        );
    }

    #[test]
    fn sums_parse_back_from_any_database() {
        let result = QueryResult {
            columns: vec![],
            rows: vec![vec![
                Some("dm_users".into()),
                Some("96".into()),
                Some("206045581522".into()),
                Some("0".into()),
            ]],
        };
        let parsed = parse_fingerprints(&result).unwrap();
        assert_eq!(parsed["dm_users"].rows, 96);
        assert_eq!(parsed["dm_users"].sums, [206045581522, 0]);
    }
}
