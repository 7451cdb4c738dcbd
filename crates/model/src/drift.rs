//! Schema drift: fields the input holds that the staging schema does not (a new field), and
//! fields whose JSON type the column cannot take (another type, which also makes the record a
//! reject). The decoders note each occurrence where they find it ([`DriftLog`]); the run
//! reports them in its summary and writes them to `schema_drift`, and `--on-new-field fail`
//! stops a load that met a new field before it commits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::sql::{Dialect, literal};
use crate::table::SCHEMA_DRIFT;

/// What kind of drift a field shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The staging schema has no such column: the field is not loaded.
    NewField,
    /// The column takes another JSON type: each such record is a reject.
    OtherType,
}

impl DriftKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::NewField => "new_field",
            DriftKind::OtherType => "other_type",
        }
    }
}

/// One field of one table that drifted, over a whole run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    /// `staging_events` or `staging_songs`.
    pub table: &'static str,
    pub field: String,
    /// The value's JSON type: `string`, `number`, `boolean`, `null`, `object` or `array`.
    pub json_type: &'static str,
    pub kind: DriftKind,
    /// The first file and line it was met at (files in path order).
    pub first_source: String,
    pub first_line: u64,
    /// Records that hold it.
    pub records: u64,
}

/// Where one drifted field was first met and how often, as a decoder or the run counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    first: (Arc<str>, u64),
    records: u64,
}

type Key = (String, &'static str, DriftKind);

/// The drift a decoder found since it last handed it on: kept by the decoder, merged into the
/// run's [`DriftLog`] when the decoder hands on its rejects.
#[derive(Debug, Default)]
pub struct Found {
    seen: BTreeMap<Key, Seen>,
}

impl Found {
    /// `field` of JSON type `json_type`, as `kind`, in `source` at `line`.
    pub fn note(
        &mut self,
        field: &str,
        json_type: &'static str,
        kind: DriftKind,
        source: &Arc<str>,
        line: u64,
    ) {
        let at = (Arc::clone(source), line);
        match self.seen.get_mut(&(field.to_owned(), json_type, kind)) {
            Some(seen) => {
                seen.records += 1;
                if at < seen.first {
                    seen.first = at;
                }
            }
            None => {
                self.seen.insert(
                    (field.to_owned(), json_type, kind),
                    Seen {
                        first: at,
                        records: 1,
                    },
                );
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The drift of one staging table over a run, from every decoder that reads its input.
#[derive(Debug)]
pub struct DriftLog {
    table: &'static str,
    seen: Mutex<BTreeMap<Key, Seen>>,
}

impl DriftLog {
    /// An empty log for `table`'s input.
    pub fn new(table: &'static str) -> Arc<Self> {
        Arc::new(DriftLog {
            table,
            seen: Mutex::new(BTreeMap::new()),
        })
    }

    /// Adds what a decoder found.
    pub fn merge(&self, found: &mut Found) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, s) in std::mem::take(&mut found.seen) {
            match seen.get_mut(&key) {
                Some(held) => {
                    held.records += s.records;
                    if s.first < held.first {
                        held.first = s.first;
                    }
                }
                None => {
                    seen.insert(key, s);
                }
            }
        }
    }

    /// Every drifted field so far, by field, type and kind.
    pub fn entries(&self) -> Vec<Drift> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.iter()
            .map(|((field, json_type, kind), s)| Drift {
                table: self.table,
                field: field.clone(),
                json_type,
                kind: *kind,
                first_source: s.first.0.to_string(),
                first_line: s.first.1,
                records: s.records,
            })
            .collect()
    }
}

/// What a run does when its input holds a field the staging schema lacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnNewField {
    /// Load, and report it (the summary, `schema_drift`).
    #[default]
    Warn,
    /// Commit nothing.
    Fail,
    /// Load, and report it only in `schema_drift` and the summary's JSON.
    Ignore,
}

/// `--on-new-field fail`: the new fields `entries` hold, as the error that stops the load.
pub fn refuse(entries: &[Drift]) -> crate::Result<()> {
    let new: Vec<String> = entries
        .iter()
        .filter(|d| d.kind == DriftKind::NewField)
        .map(|d| format!("{} ({})", located(d), d.json_type))
        .collect();
    match new.is_empty() {
        true => Ok(()),
        false => Err(crate::Error::NewFields(new.join("; "))),
    }
}

/// `field `mood` of staging_events, first at FILE:LINE, in N records`.
pub fn located(d: &Drift) -> String {
    format!(
        "field `{}` of {}, first at {}:{}, in {} record{}",
        d.field,
        d.table,
        d.first_source,
        d.first_line,
        d.records,
        if d.records == 1 { "" } else { "s" }
    )
}

/// The JSON type of a tape node, as `schema_drift` names it.
pub fn json_type(node: &simd_json::Node<'_>) -> &'static str {
    use simd_json::{Node, StaticNode};
    match node {
        Node::String(_) => "string",
        Node::Object { .. } => "object",
        Node::Array { .. } => "array",
        Node::Static(StaticNode::Null) => "null",
        Node::Static(StaticNode::Bool(_)) => "boolean",
        Node::Static(_) => "number",
    }
}

/// The statements that add `entries` to `schema_drift` with the run's id: the table created
/// if missing (like the run history, it is kept across loads), then one `INSERT`.
pub fn record_sql(entries: &[Drift], run_id: &str, dialect: &Dialect) -> Vec<String> {
    let mut out = vec![crate::sql::create_table_if_missing(&SCHEMA_DRIFT, dialect)];
    if entries.is_empty() {
        return out;
    }
    let text = |s: &str| literal(s, dialect);
    let rows: Vec<String> = entries
        .iter()
        .map(|d| {
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {})",
                text(run_id),
                text(d.table),
                text(SCHEMA_DRIFT.fit("field", &d.field)),
                text(d.json_type),
                text(d.kind.as_str()),
                text(SCHEMA_DRIFT.fit("first_source", &d.first_source)),
                d.first_line,
                d.records
            )
        })
        .collect();
    let columns: Vec<&str> = SCHEMA_DRIFT.columns.iter().map(|c| c.name).collect();
    out.push(format!(
        "INSERT INTO {} ({}) VALUES\n{}",
        SCHEMA_DRIFT.name,
        columns.join(", "),
        rows.join(",\n")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_place_and_the_count_survive_any_merge_order() {
        let (a, b): (Arc<str>, Arc<str>) = ("a.json".into(), "b.json".into());
        let mut one = Found::default();
        one.note("mood", "string", DriftKind::NewField, &b, 3);
        one.note("mood", "string", DriftKind::NewField, &b, 9);
        let mut two = Found::default();
        two.note("mood", "string", DriftKind::NewField, &a, 7);
        two.note("ts", "string", DriftKind::OtherType, &a, 2);
        let log = DriftLog::new("staging_events");
        log.merge(&mut one);
        log.merge(&mut two);
        assert!(one.is_empty() && two.is_empty());
        let entries = log.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (
                &entries[0].field[..],
                &entries[0].first_source[..],
                entries[0].first_line
            ),
            ("mood", "a.json", 7)
        );
        assert_eq!(entries[0].records, 3);
        assert_eq!(entries[1].kind, DriftKind::OtherType);
        let refused = refuse(&entries).unwrap_err().to_string();
        assert!(
            refused.contains(
                "field `mood` of staging_events, first at a.json:7, in 3 records (string)"
            ),
            "{refused}"
        );
        assert!(
            refuse(&entries[1..]).is_ok(),
            "another type is a reject, not refused"
        );
        let sql = record_sql(&entries, "r'1", &Dialect::Postgres);
        assert!(
            sql[1].contains(
                "('r''1', 'staging_events', 'mood', 'string', 'new_field', 'a.json', 7, 3)"
            ),
            "{}",
            sql[1]
        );
    }
}
