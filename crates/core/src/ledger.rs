//! The ledger of input files a sink holds, `etl_files`, and what an incremental load does
//! with it: which files to parse ([`split`]), which rows to remove ([`Increment`],
//! [`increment_sql`]), and the `etl_file_id` of every staged row ([`tag`]).
//!
//! A load writes the ledger in the same transaction as the rows, so the ledger always says
//! what the tables hold. An incremental load reads it first ([`SELECT`]), parses only the
//! files that are new or changed (by size and version: mtime or ETag), removes a changed
//! file's old rows, its rejects and its ledger row, appends the new ones, and rebuilds the star
//! schema over every staged row in SQL. Under the load's lock it reads the ledger again and
//! goes on only if nothing changed since ([`digest`]): a load that committed in between would
//! otherwise be half undone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};

use crate::error::{Error, Result};
use crate::model::SongplaysMode;
use crate::source::{FileRead, InputFile};
use crate::sql::{Dialect, literal};
use crate::table::{ETL_FILES, LOAD_ERRORS, STAGING_EVENTS, STAGING_SONGS, TableDef};

/// Which staging table a file feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Songs,
    Events,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Songs => "songs",
            Kind::Events => "events",
        }
    }

    /// The staging table of this kind.
    pub fn table(self) -> &'static TableDef {
        match self {
            Kind::Songs => &STAGING_SONGS,
            Kind::Events => &STAGING_EVENTS,
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "songs" => Some(Kind::Songs),
            "events" => Some(Kind::Events),
            _ => None,
        }
    }
}

/// The ledger as a load reads it, in file id order; [`digest`] of the result says whether it
/// changed.
pub const SELECT: &str = "SELECT file_id, kind, path, size, version, checksum, rows_staged, \
                          rejects FROM etl_files ORDER BY file_id";

/// One file the sink holds rows of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file_id: i32,
    pub kind: Kind,
    pub path: String,
    pub size: u64,
    pub version: Option<String>,
    pub rows_staged: u64,
    pub rejects: u64,
}

/// Every file a sink holds rows of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    pub entries: Vec<Entry>,
    /// [`digest`] of the query it was read from.
    pub digest: u64,
}

/// A fingerprint of [`SELECT`]'s rows (every value as text, `None` for NULL), the same for
/// the same rows in every sink.
pub fn digest(rows: &[Vec<Option<String>>]) -> u64 {
    let mut text = String::new();
    for row in rows {
        for v in row {
            match v {
                Some(v) => text.push_str(&format!("{}:{v}", v.len())),
                None => text.push('N'),
            }
        }
        text.push('\n');
    }
    twox_hash::XxHash64::oneshot(0, text.as_bytes())
}

impl Ledger {
    /// The ledger from [`SELECT`]'s rows (every value as text, `None` for NULL).
    pub fn from_rows(rows: &[Vec<Option<String>>]) -> Result<Ledger> {
        let bad = |what: &str| Error::Ledger(format!("etl_files: {what}"));
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let get = |i: usize| row.get(i).cloned().flatten();
            let num = |i: usize| -> Result<u64> {
                get(i)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("a count that is not a number"))
            };
            let file_id = get(0)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad("a file_id that is not a number"))?;
            let kind = get(1)
                .as_deref()
                .and_then(Kind::parse)
                .ok_or_else(|| bad("a kind that is neither songs nor events"))?;
            entries.push(Entry {
                file_id,
                kind,
                path: get(2).ok_or_else(|| bad("a file without a path"))?,
                size: num(3)?,
                version: get(4),
                rows_staged: num(6)?,
                rejects: num(7)?,
            });
        }
        Ok(Ledger {
            entries,
            digest: digest(rows),
        })
    }

    /// The id the next new file gets.
    pub fn next_id(&self) -> i32 {
        self.entries.iter().map(|e| e.file_id).max().unwrap_or(0) + 1
    }
}

/// What an incremental load does with one table's files.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// New files, and files changed since they were loaded: to parse.
    pub read: Vec<InputFile>,
    /// Files loaded before, as they are now: not parsed.
    pub unchanged: usize,
    /// Ledger entries whose rows go: the changed files' (and, pruning, the vanished ones').
    pub remove: Vec<Entry>,
    /// Ledger entries of files no longer in the input.
    pub vanished: Vec<Entry>,
}

impl Split {
    /// Files of [`Split::read`] loaded before, whose rows the load replaces.
    pub fn changed(&self) -> usize {
        self.remove
            .iter()
            .filter(|e| !self.vanished.contains(e))
            .count()
    }
}

/// Splits the `kind` files an input holds now against the ledger. A file is unchanged when
/// its path, size and version are the ledger's (a file without a version always counts as
/// changed); the ledger's files of `kind` the input no longer holds have vanished, and go too
/// when `prune`.
pub fn split(ledger: &Ledger, kind: Kind, files: &[InputFile], prune: bool) -> Split {
    let mut held: HashMap<&str, &Entry> = ledger
        .entries
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| (e.path.as_str(), e))
        .collect();
    let mut out = Split::default();
    for file in files {
        let name = file.name();
        match held.remove(name.as_str()) {
            Some(e) if e.size == file.len && e.version.is_some() && e.version == file.version => {
                out.unchanged += 1;
            }
            Some(e) => {
                out.remove.push(e.clone());
                out.read.push(file.clone());
            }
            None => out.read.push(file.clone()),
        }
    }
    let mut vanished: Vec<Entry> = held.into_values().cloned().collect();
    vanished.sort_by_key(|e| e.file_id);
    if prune {
        out.remove.extend(vanished.iter().cloned());
    }
    out.vanished = vanished;
    out
}

/// What an incremental load changes in a sink beyond appending the run's rows; known before
/// the run reads a byte, so a sink can remove the replaced files' rows first and append the
/// run's as they are read.
#[derive(Debug, Clone)]
pub struct Increment {
    /// The ledger entries whose rows, rejects and ledger rows the load removes.
    pub remove: Vec<Entry>,
    /// [`Ledger::digest`] of the ledger the run read: the load goes on only if the sink's is
    /// still the same under its lock.
    pub digest: u64,
    /// Rows `staging_events`, `staging_songs`, `load_errors` and `etl_files` hold for the
    /// ledger's entries that stay.
    pub kept: Vec<(&'static TableDef, u64)>,
    /// Which plays the star schema keeps.
    pub mode: SongplaysMode,
    /// The first `file_id` of the run's files ([`Ledger::next_id`]): the staged rows from it
    /// on are the ones the run added.
    pub first_new_id: i32,
    /// The star tables dropped and built again over every staged row (`--rebuild`), instead
    /// of the rows of what changed maintained ([`crate::sql::maintain_star`]).
    pub rebuild: bool,
}

impl Increment {
    /// The increment of a run against `ledger` that removes `remove`.
    pub fn new(ledger: &Ledger, remove: Vec<Entry>, mode: SongplaysMode, rebuild: bool) -> Self {
        let removed: HashSet<i32> = remove.iter().map(|e| e.file_id).collect();
        let kept: Vec<&Entry> = ledger
            .entries
            .iter()
            .filter(|e| !removed.contains(&e.file_id))
            .collect();
        let staged = |kind: Kind| -> u64 {
            kept.iter()
                .filter(|e| e.kind == kind)
                .map(|e| e.rows_staged)
                .sum()
        };
        let kept = vec![
            (&STAGING_EVENTS, staged(Kind::Events)),
            (&STAGING_SONGS, staged(Kind::Songs)),
            (&LOAD_ERRORS, kept.iter().map(|e| e.rejects).sum()),
            (&ETL_FILES, kept.len() as u64),
        ];
        Increment {
            remove,
            digest: ledger.digest,
            kept,
            mode,
            first_new_id: ledger.next_id(),
            rebuild,
        }
    }

    /// The rows each counted table holds after the load, the run having staged `run`'s.
    pub fn expected(&self, run: &[(&'static TableDef, u64)]) -> Vec<(&'static TableDef, u64)> {
        self.kept
            .iter()
            .map(|&(table, kept)| {
                let now: u64 = run
                    .iter()
                    .filter(|(t, _)| t.name == table.name)
                    .map(|r| r.1)
                    .sum();
                (table, kept + now)
            })
            .collect()
    }
}

/// The statements that remove `increment`'s files from the staging tables, `load_errors` and
/// the ledger, before the run's rows are appended.
pub fn increment_sql(increment: &Increment, dialect: &Dialect) -> Vec<String> {
    let ids = |kind: Option<Kind>| -> Vec<String> {
        increment
            .remove
            .iter()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .map(|e| e.file_id.to_string())
            .collect()
    };
    let paths: Vec<String> = increment
        .remove
        .iter()
        .map(|e| literal(&e.path, dialect))
        .collect();
    // What the star's maintenance must revisit, noted before it is deleted.
    let mut out = match increment.rebuild {
        true => Vec::new(),
        false => crate::sql::note_removed(&ids(Some(Kind::Events)), &ids(Some(Kind::Songs))),
    };
    for kind in [Kind::Events, Kind::Songs] {
        out.extend(delete_in(
            kind.table().name,
            "etl_file_id",
            &ids(Some(kind)),
        ));
    }
    out.extend(delete_in(LOAD_ERRORS.name, "source", &paths));
    out.extend(delete_in(ETL_FILES.name, "file_id", &ids(None)));
    out
}

/// The star statements of a load once its rows are staged: every row made ([`crate::sql::transforms`];
/// a full load, or an incremental one with `rebuild`), or an incremental load's changes
/// maintained ([`crate::sql::maintain_star`]).
pub fn star_sql(
    dialect: &Dialect,
    mode: SongplaysMode,
    increment: Option<&Increment>,
) -> Vec<String> {
    let (mut out, done) = star_sql_parts(dialect, mode, increment);
    out.extend(done);
    out
}

/// [`star_sql`] in two: its statements, and what ends them (a maintenance's temporary tables
/// dropped), for a sink that checks what the statements made in between.
pub fn star_sql_parts(
    dialect: &Dialect,
    mode: SongplaysMode,
    increment: Option<&Increment>,
) -> (Vec<String>, Vec<String>) {
    match increment {
        Some(inc) if !inc.rebuild => (
            crate::sql::maintain_star(dialect, inc.mode, inc.first_new_id),
            crate::sql::drop_maintenance_tables(),
        ),
        _ => (crate::sql::transforms(dialect, mode), Vec::new()),
    }
}

/// `DELETE FROM table WHERE column IN (…)` for `values` (SQL text already), at most 1,000 a
/// statement; none for no values.
fn delete_in(table: &str, column: &str, values: &[String]) -> Vec<String> {
    values
        .chunks(1000)
        .map(|chunk| {
            format!(
                "DELETE FROM {table} WHERE {column} IN ({})",
                chunk.join(", ")
            )
        })
        .collect()
}

/// `batch` (one staging table's rows, in file order, as the reader gives them) with each
/// row's `etl_file_id`: `files` numbered from `first_id`, each owning its `rows`.
pub fn tag(
    table: &'static TableDef,
    batch: &RecordBatch,
    files: &[FileRead],
    first_id: i32,
) -> Result<RecordBatch> {
    let runs: Vec<(i32, u64)> = (first_id..).zip(files.iter().map(|f| f.rows)).collect();
    let mut tagged = tag_runs(table, vec![batch.clone()], &runs)?;
    Ok(tagged
        .pop()
        .unwrap_or_else(|| RecordBatch::new_empty(table.schema())))
}

/// `batches` (rows of `table` in order) with each row's `etl_file_id`: `runs` says whose they
/// are, in order, as (file id, rows); the runs must account for every row.
pub fn tag_runs(
    table: &'static TableDef,
    batches: Vec<RecordBatch>,
    runs: &[(i32, u64)],
) -> Result<Vec<RecordBatch>> {
    let total: u64 = runs.iter().map(|r| r.1).sum();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if total != rows as u64 {
        return Err(Error::Ledger(format!(
            "{}: the files read account for {total} rows, the table has {rows}",
            table.name
        )));
    }
    let mut ids = runs
        .iter()
        .flat_map(|&(id, rows)| std::iter::repeat_n(id, rows as usize));
    let schema = table.schema();
    batches
        .into_iter()
        .map(|b| {
            let column: Int32Array = ids.by_ref().take(b.num_rows()).map(Some).collect();
            let mut columns = b.columns().to_vec();
            columns.push(Arc::new(column));
            Ok(RecordBatch::try_new(Arc::clone(&schema), columns)?)
        })
        .collect()
}

/// The `etl_files` rows of a run's files: each table's files numbered on from `first_id`,
/// in the order given.
pub fn ledger_batch(
    run: &[(Kind, &[FileRead])],
    first_id: i32,
    stamp: &crate::history::RunStamp,
) -> Result<RecordBatch> {
    let files: Vec<(Kind, &FileRead)> = run
        .iter()
        .flat_map(|(k, files)| files.iter().map(move |f| (*k, f)))
        .collect();
    let n = files.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            (0..n).map(|i| first_id + i as i32),
        )),
        Arc::new(StringArray::from_iter_values(
            files.iter().map(|(k, _)| k.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            files.iter().map(|(_, f)| f.name.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            files.iter().map(|(_, f)| f.size as i64),
        )),
        Arc::new(StringArray::from_iter(
            files.iter().map(|(_, f)| f.version.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            files
                .iter()
                .map(|(_, f)| format!("xxh64:{:016x}", f.checksum)),
        )),
        Arc::new(Int64Array::from_iter_values(
            files.iter().map(|(_, f)| f.rows as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            files.iter().map(|(_, f)| f.rejects as i64),
        )),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            std::iter::repeat_n(stamp.started_at_ms, n),
        )),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            &*stamp.id, n,
        ))),
    ];
    Ok(RecordBatch::try_new(ETL_FILES.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::source::Location;

    fn file(name: &str, len: u64, version: &str) -> InputFile {
        InputFile {
            location: Location::Path(name.into()),
            len,
            version: Some(version.into()),
        }
    }

    fn entry(id: i32, kind: Kind, path: &str, size: u64, version: &str) -> Entry {
        Entry {
            file_id: id,
            kind,
            path: path.into(),
            size,
            version: Some(version.into()),
            rows_staged: 10,
            rejects: 1,
        }
    }

    #[test]
    fn a_file_is_parsed_again_only_when_its_size_or_version_changed() {
        let ledger = Ledger {
            entries: vec![
                entry(1, Kind::Events, "a.json", 5, "100"),
                entry(2, Kind::Events, "b.json", 5, "100"),
                entry(3, Kind::Events, "c.json", 5, "100"),
                entry(4, Kind::Events, "gone.json", 5, "100"),
                entry(5, Kind::Songs, "d.json", 5, "100"),
            ],
            digest: 0,
        };
        let now = [
            file("a.json", 5, "100"),
            file("b.json", 6, "100"),
            file("c.json", 5, "101"),
            file("new.json", 5, "1"),
        ];
        let s = split(&ledger, Kind::Events, &now, false);
        let read: Vec<String> = s.read.iter().map(InputFile::name).collect();
        assert_eq!(read, ["b.json", "c.json", "new.json"]);
        assert_eq!(s.unchanged, 1);
        let ids = |v: &[Entry]| v.iter().map(|e| e.file_id).collect::<Vec<_>>();
        assert_eq!(ids(&s.remove), [2, 3]);
        assert_eq!(ids(&s.vanished), [4], "a songs file is not an events file");
        let pruned = split(&ledger, Kind::Events, &now, true);
        assert_eq!(ids(&pruned.remove), [2, 3, 4]);

        let inc = Increment::new(&ledger, pruned.remove, SongplaysMode::Matched, true);
        let counts = |run: &[(&'static TableDef, u64)]| -> Vec<u64> {
            inc.expected(run).iter().map(|(_, n)| *n).collect()
        };
        // Left: a.json (events) and d.json (songs), 10 rows and 1 reject each.
        assert_eq!(counts(&[]), [10, 10, 2, 2]);
        assert_eq!(
            counts(&[(&STAGING_EVENTS, 7), (&ETL_FILES, 3)]),
            [17, 10, 2, 5]
        );
        let sql = increment_sql(&inc, &Dialect::Postgres);
        assert_eq!(
            sql,
            [
                "DELETE FROM staging_events WHERE etl_file_id IN (2, 3, 4)",
                "DELETE FROM load_errors WHERE source IN ('b.json', 'c.json', 'gone.json')",
                "DELETE FROM etl_files WHERE file_id IN (2, 3, 4)",
            ]
        );
    }

    #[test]
    fn rows_are_tagged_with_their_files_id() {
        let batch = RecordBatch::new_empty(STAGING_SONGS.input_schema());
        let err = tag(&STAGING_SONGS, &batch, &[read("x", 2)], 1).unwrap_err();
        assert!(err.to_string().contains("account for 2 rows"), "{err}");
        let tagged = tag(&STAGING_SONGS, &batch, &[read("x", 0)], 7).unwrap();
        assert_eq!(tagged.schema(), STAGING_SONGS.schema());
        let ledger = ledger_batch(
            &[(Kind::Songs, &[read("x", 0), read("y", 0)])],
            7,
            &crate::history::RunStamp::at(0),
        )
        .unwrap();
        assert_eq!(ledger.num_rows(), 2);
    }

    fn read(name: &str, rows: u64) -> FileRead {
        FileRead {
            name: name.into(),
            size: 1,
            version: None,
            checksum: 0,
            rows,
            rejects: 0,
        }
    }
}
