//! A DuckDB load as data: [`steps`] lists what a load does, in order; `--dry-run` prints each
//! step's [`Step::text`] and the load walks the same list (`DuckDbSink::load_stream`), so
//! the plan shown and the load run cannot drift apart (as Redshift's `plan.rs` and `exec.rs`).

use sparkify_core::checks::Check;
use sparkify_core::ledger::{self, Increment};
use sparkify_core::model::{SLICE_ROWS, SONGPLAYS_SLICE_ROWS};
use sparkify_core::sink::{COUNTED, Closing};
use sparkify_core::sql::{self, Dialect};
use sparkify_core::table::{
    DM_TIME, FT_SONGPLAYS, SINK_TABLES, STAGING_EVENTS, STAGING_SONGS, STAGING_TABLES, TableDef,
};

use crate::{
    IDLE_MEMORY_LIMIT, RESET_LIMIT, Transform, appends, checked_on_batches, insert, insert_fed,
    keys_to_add, limit_appends, made, replace_all,
};

/// One step of a load.
#[derive(Debug, Clone)]
pub(crate) enum Step<'a> {
    /// The load's transaction begins.
    Begin,
    /// A statement, run as it is.
    Sql(String),
    /// The columns renamed since the sink was loaded ([`sql::RENAMED`]) given their new
    /// names, when it still has them.
    Rename,
    /// An incremental load goes on only if `etl_files` is still what the run read, `digest`
    /// ([`ledger::digest`]).
    CheckLedger { digest: u64 },
    /// `staging_events`' rows as the reader gives them, in one insert that scans them as
    /// they come.
    AppendRead(&'static TableDef),
    /// The rows of the last staging table (the songs), each part as the stream gives it;
    /// then the reading finishes, under [`IDLE_MEMORY_LIMIT`] (with `star`: the star schema
    /// is built in memory then), and the cap for appends is set again.
    AppendStaged {
        table: &'static TableDef,
        star: bool,
    },
    /// A table built from the staging rows (a star table in memory, `load_errors`,
    /// `etl_files`); with `check_key`, its key is checked on the rows before they go in.
    AppendBuilt {
        table: &'static TableDef,
        check_key: bool,
    },
    /// The star schema held in memory let go; `RESET memory_limit`.
    ResetLimit,
    /// The counted tables against the run's counts ([`sparkify_core::sink::reconcile`]).
    Reconcile,
    /// A note: the keys of these tables were checked on their rows as they were appended.
    KeysChecked(Vec<&'static TableDef>),
    /// The key of each of these tables checked unique in SQL; with `changed`, after a
    /// maintenance, only at the keys of the rows it made ([`sql::duplicate_changed_keys`]).
    CheckKeys {
        tables: Vec<&'static TableDef>,
        changed: bool,
    },
    /// `etl --check`: every check run; the load fails, naming each one that failed, if any
    /// returns a row.
    Checks(Vec<Check>),
    /// The run's schema drift and its row in `etl_runs`, its end the time the step runs.
    RecordRun(&'a Closing),
    /// The transaction commits.
    Commit,
}

/// Every step of a load with `transform` (an incremental one when `increment` is given),
/// closing with `closing`'s checks and row.
pub(crate) fn steps<'a>(
    transform: Transform,
    increment: Option<&Increment>,
    closing: Option<&'a Closing>,
) -> Vec<Step<'a>> {
    let full = increment.is_none();
    let mut out = vec![Step::Begin];
    match increment {
        Some(increment) => {
            out.push(Step::Rename);
            out.extend(
                sql::prepare_increment(&Dialect::DuckDb, increment.rebuild)
                    .into_iter()
                    .map(Step::Sql),
            );
            out.push(Step::CheckLedger {
                digest: increment.digest,
            });
            out.extend(
                ledger::increment_sql(increment, &Dialect::DuckDb)
                    .into_iter()
                    .map(Step::Sql),
            );
        }
        None => out.extend(replace_all().into_iter().map(Step::Sql)),
    }
    out.push(Step::Sql(limit_appends()));
    out.push(Step::AppendRead(&STAGING_EVENTS));
    out.push(Step::AppendStaged {
        table: &STAGING_SONGS,
        star: transform == Transform::Memory,
    });
    for table in SINK_TABLES
        .iter()
        .filter(|t| appends(transform, t) && !STAGING_TABLES.iter().any(|s| s.name == t.name))
    {
        out.push(Step::AppendBuilt {
            table,
            check_key: checked_on_batches(transform, full, table),
        });
    }
    out.push(Step::ResetLimit);
    // A maintenance's temporary tables stay until its keys are checked.
    let mut done = Vec::new();
    if let Transform::Sql(mode) = transform {
        let (star, after) = ledger::star_sql_parts(&Dialect::DuckDb, mode, increment);
        out.extend(star.into_iter().map(Step::Sql));
        done = after;
    }
    out.push(Step::Reconcile);
    let (on_batches, in_sql): (Vec<&'static TableDef>, Vec<&'static TableDef>) = SINK_TABLES
        .iter()
        .copied()
        .partition(|t| checked_on_batches(transform, full, t));
    if !on_batches.is_empty() {
        out.push(Step::KeysChecked(on_batches));
    }
    if sql::duplicate_keys(&in_sql).is_some() {
        out.push(Step::CheckKeys {
            tables: in_sql,
            changed: !done.is_empty(),
        });
    }
    out.extend(done.into_iter().map(Step::Sql));
    if full {
        out.extend(keys_to_add().into_iter().map(Step::Sql));
    }
    if let Some(closing) = closing {
        let checks = closing.checks(&Dialect::DuckDb);
        if !checks.is_empty() {
            out.push(Step::Checks(checks));
        }
        out.push(Step::RecordRun(closing));
    }
    out.push(Step::Commit);
    out
}

impl Step<'_> {
    /// The step as `--dry-run` shows it: a statement, or what the load does in a comment.
    pub(crate) fn text(&self) -> String {
        match self {
            Step::Begin => "BEGIN".to_owned(),
            Step::Sql(s) => s.clone(),
            Step::Rename => format!(
                "-- each column found renamed (ALTER TABLE … RENAME COLUMN):\n{}",
                sql::renamed_probe()
            ),
            Step::CheckLedger { .. } => format!(
                "-- fails the load unless etl_files is still what the run read:\n{}",
                ledger::SELECT
            ),
            Step::AppendRead(table) => format!(
                "-- {}: the run's events as they are read (parallel Arrow scan)",
                insert_fed(table)
            ),
            Step::AppendStaged { table, star: true } => format!(
                "-- {}: the run's rows (parallel Arrow scan); then the star schema is built, \
                 under memory_limit = '{IDLE_MEMORY_LIMIT}', and the cap is set again",
                insert(table)
            ),
            Step::AppendStaged { table, star: false } => format!(
                "-- {}: the run's rows (parallel Arrow scan); then the reading finishes, under \
                 memory_limit = '{IDLE_MEMORY_LIMIT}', and the cap is set again",
                insert(table)
            ),
            Step::AppendBuilt { table, .. } if table.name == DM_TIME.name => format!(
                "-- {}: the run's times, the other columns made {SLICE_ROWS} rows at a time \
                 as they are scanned (parallel Arrow scan)",
                insert_fed(table)
            ),
            Step::AppendBuilt { table, .. } if table.name == FT_SONGPLAYS.name => format!(
                "-- {}: the run's plays kept, their columns made {SONGPLAYS_SLICE_ROWS} rows \
                 at a time as they are scanned (parallel Arrow scan)",
                insert_fed(table)
            ),
            Step::AppendBuilt { table, .. } if made(table) => format!(
                "-- {}: the run's rejects, {SLICE_ROWS} rows at a time as they are scanned, \
                 read back from a temporary file when they outgrew a quarter of --in-flight \
                 (parallel Arrow scan)",
                insert_fed(table)
            ),
            Step::AppendBuilt { table, .. } => {
                format!("-- {}: the run's rows (parallel Arrow scan)", insert(table))
            }
            Step::ResetLimit => RESET_LIMIT.to_owned(),
            Step::Reconcile => format!(
                "-- fails the load unless each count equals the run's:\n{}",
                sql::count_rows(&COUNTED)
            ),
            Step::KeysChecked(tables) => {
                let names: Vec<&str> = tables.iter().map(|t| t.name).collect();
                format!(
                    "-- the keys of {} are checked on the run's rows before they are appended",
                    names.join(", ")
                )
            }
            Step::CheckKeys { tables, changed } => format!(
                "-- fails the load if it returns a row:\n{}",
                duplicates(tables, *changed).unwrap_or_default()
            ),
            Step::Checks(checks) => checks
                .iter()
                .map(Check::text)
                .collect::<Vec<_>>()
                .join(";\n\n"),
            Step::RecordRun(closing) => closing.record(&Dialect::DuckDb, &[]).join(";\n\n"),
            Step::Commit => "COMMIT".to_owned(),
        }
    }
}

/// The query that finds a duplicate key in `tables` (see [`Step::CheckKeys`]).
pub(crate) fn duplicates(tables: &[&TableDef], changed: bool) -> Option<String> {
    match changed {
        true => sql::duplicate_changed_keys(tables),
        false => sql::duplicate_keys(tables),
    }
}
