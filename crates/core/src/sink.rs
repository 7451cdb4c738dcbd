//! The contract every sink keeps (after DataFusion's `DataSink::write_all` and vector's
//! `SinkConfig::build` + healthcheck): built from its own config, it can say what a load
//! would run ([`Sink::plan`], `--dry-run`) and how its tables are made ([`Sink::tables_sql`])
//! without connecting; it is checked before a long run, then given one [`Load`], and commits
//! all of it or none before it returns.

use arrow::array::RecordBatch;

use crate::checks::{Check, CheckOptions};
use crate::history::RunRecord;
use crate::ledger::Increment;
use crate::model::{Kept, Rows, StarSchema};
use crate::sql::Dialect;
pub use crate::sql::TablesAction;
use crate::table::{ETL_FILES, LOAD_ERRORS, STAGING_EVENTS, STAGING_SONGS, TableDef};

/// Every table of a run that sparkify parsed and built itself.
#[derive(Debug, Clone, Copy)]
pub struct Tables<'a> {
    /// The staging tables, each row tagged with its file's `etl_file_id` ([`crate::ledger::tag`]).
    pub staging_events: &'a RecordBatch,
    pub staging_songs: &'a RecordBatch,
    /// The star schema built in memory; `None` when the sink builds it in SQL over every
    /// staged row (an incremental load).
    pub star: Option<&'a StarSchema>,
    /// The run's rejects, as the `load_errors` table.
    pub load_errors: &'a RecordBatch,
    /// The run's files, as `etl_files` rows.
    pub etl_files: &'a RecordBatch,
    /// `None`: the run replaces every table. `Some`: it adds its files to what the sink holds.
    pub increment: Option<&'a Increment>,
}

impl<'a> Tables<'a> {
    /// Every table with its definition, in the order a run reports them (no star tables when
    /// the sink builds them).
    pub fn all(&self) -> Vec<(&'static TableDef, Rows<'a>)> {
        let mut out = vec![
            (&STAGING_EVENTS, Rows::Batch(self.staging_events)),
            (&STAGING_SONGS, Rows::Batch(self.staging_songs)),
        ];
        out.extend(built(
            self.star,
            Rows::Batch(self.load_errors),
            self.etl_files,
        ));
        out
    }
}

/// The rows a load must leave in the tables the run parsed, counted in the sink before COMMIT
/// ([`reconcile`]): every staging table, `load_errors` and `etl_files`, as many rows as the
/// run staged, rejected and read (SPEC: every input record is loaded or reported); for an
/// incremental load, the ledger's files that stay plus the run's.
pub fn staged_counts(tables: &Tables<'_>) -> Vec<(&'static TableDef, u64)> {
    let rows = |b: &RecordBatch| b.num_rows() as u64;
    expected_counts(
        [
            rows(tables.staging_events),
            rows(tables.staging_songs),
            rows(tables.load_errors),
            rows(tables.etl_files),
        ],
        tables.increment,
    )
}

/// [`staged_counts`] of a run that staged `run` rows in the [`COUNTED`] tables, in their
/// order.
pub fn expected_counts(
    run: [u64; 4],
    increment: Option<&Increment>,
) -> Vec<(&'static TableDef, u64)> {
    let run: Vec<(&'static TableDef, u64)> = COUNTED.into_iter().zip(run).collect();
    match increment {
        Some(increment) => increment.expected(&run),
        None => run,
    }
}

/// The tables [`staged_counts`] counts.
pub const COUNTED: [&TableDef; 4] = [&STAGING_EVENTS, &STAGING_SONGS, &LOAD_ERRORS, &ETL_FILES];

/// A table holding another number of rows than the run staged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "reconciliation: {table} holds {found} rows after the load, but the run staged {expected}; \
     nothing was committed"
)]
pub struct Unreconciled {
    pub table: &'static str,
    pub expected: u64,
    pub found: u64,
}

/// Checks the counts a sink found (`(table, rows)`, from [`crate::sql::count_rows`]) against
/// what the run staged; a table not counted counts 0.
pub fn reconcile(
    expected: &[(&'static TableDef, u64)],
    counted: &[(String, u64)],
) -> Result<(), Unreconciled> {
    for (table, rows) in expected {
        let found = counted
            .iter()
            .find(|(t, _)| t == table.name)
            .map_or(0, |(_, n)| *n);
        if found != *rows {
            return Err(Unreconciled {
                table: table.name,
                expected: *rows,
                found,
            });
        }
    }
    Ok(())
}

/// A load whose rows come as they are decoded: the staging tables' rows part by part
/// ([`Staged::next`]), then the tables built from all of them ([`Staged::finish`]). A sink
/// appends each part as it comes, inside the load's one transaction; an error from either
/// (a bad input, more rejects than `--max-errors`) means the sink commits nothing.
pub trait Staged: std::fmt::Debug {
    /// `Some` when the load adds to what the sink holds: what it removes first. Known before
    /// the first part.
    fn increment(&self) -> Option<&Increment>;

    /// The next rows of a staging table, in input order; `None` after the last.
    fn next(&mut self) -> Option<crate::Result<(&'static TableDef, Vec<RecordBatch>)>>;

    /// Once [`Staged::next`] gave `None`: everything built from the rows.
    fn finish(&mut self) -> crate::Result<Finished>;

    /// Says what the load does now, after the staging rows ("committing", say), for the
    /// progress display.
    fn phase(&self, _phase: &str) {}
}

/// What a streamed load gives once its staging rows are through.
#[derive(Debug)]
pub struct Finished {
    /// `None` when the sink builds the star in SQL (an incremental load, or
    /// [`Sink::builds_star`]).
    pub star: Option<StarSchema>,
    /// Held whole, or read back from where the rejects spilled.
    pub load_errors: Kept,
    pub etl_files: RecordBatch,
    /// What [`staged_counts`] says for a load of whole tables: the rows the sink must hold
    /// in each counted table after the load.
    pub staged: Vec<(&'static TableDef, u64)>,
}

impl Finished {
    /// The tables built from the staging rows, in the order a run reports them: the star
    /// schema (when it was built), `load_errors`, `etl_files`.
    pub fn tables(&self) -> Vec<(&'static TableDef, Rows<'_>)> {
        built(self.star.as_ref(), self.load_errors.rows(), &self.etl_files)
    }

    /// The rows of `table`, when it is one of [`Finished::tables`].
    pub fn rows(&self, table: &TableDef) -> Option<Rows<'_>> {
        self.tables()
            .into_iter()
            .find(|(t, _)| t.name == table.name)
            .map(|(_, rows)| rows)
    }
}

/// The tables a run builds from its staging rows, in report order.
fn built<'a>(
    star: Option<&'a StarSchema>,
    load_errors: Rows<'a>,
    etl_files: &'a RecordBatch,
) -> Vec<(&'static TableDef, Rows<'a>)> {
    let mut out = Vec::new();
    if let Some(star) = star {
        out.extend(star.tables());
    }
    out.push((&LOAD_ERRORS, load_errors));
    out.push((&ETL_FILES, Rows::Batch(etl_files)));
    out
}

/// A load of whole tables as a stream: each staging table in one part, then the rest.
#[derive(Debug)]
pub struct Whole<'a> {
    tables: Tables<'a>,
    given: usize,
}

impl<'a> Whole<'a> {
    pub fn new(tables: Tables<'a>) -> Self {
        Whole { tables, given: 0 }
    }
}

impl Staged for Whole<'_> {
    fn increment(&self) -> Option<&Increment> {
        self.tables.increment
    }

    fn next(&mut self) -> Option<crate::Result<(&'static TableDef, Vec<RecordBatch>)>> {
        let t = &self.tables;
        let (table, batch) = [
            (&STAGING_EVENTS, t.staging_events),
            (&STAGING_SONGS, t.staging_songs),
        ]
        .into_iter()
        .nth(self.given)?;
        self.given += 1;
        Some(Ok((table, vec![batch.clone()])))
    }

    fn finish(&mut self) -> crate::Result<Finished> {
        let t = &self.tables;
        Ok(Finished {
            star: t.star.cloned(),
            load_errors: Kept::Batch(t.load_errors.clone()),
            etl_files: t.etl_files.clone(),
            staged: staged_counts(t),
        })
    }
}

/// Where a load's staging tables come from.
#[derive(Debug)]
pub enum Load<'a> {
    /// Parsed here: every table as batches.
    Parsed(Tables<'a>),
    /// Parsed here as the load goes: see [`Staged`].
    Streamed(&'a mut (dyn Staged + Send)),
    /// Read by the warehouse itself from where the input lies (Redshift's `COPY` of the JSON
    /// in S3); nothing was parsed here, and the warehouse builds the star schema in SQL. Up
    /// to [`Closing::max_errors`] bad records are skipped by the warehouse and kept in
    /// `load_errors`; more, and nothing is committed.
    InWarehouse,
}

impl Load<'_> {
    /// Calls `f` with the load as a stream: whole tables as [`Whole`]'s one part each; `None`
    /// when the warehouse reads the input itself.
    pub fn with_staged<T>(self, f: impl FnOnce(Option<&mut (dyn Staged + Send)>) -> T) -> T {
        match self {
            Load::Parsed(tables) => f(Some(&mut Whole::new(tables))),
            Load::Streamed(staged) => f(Some(staged)),
            Load::InWarehouse => f(None),
        }
    }
}

/// What a sink stages from; see [`Load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staging {
    Parsed,
    InWarehouse,
}

/// A name unique to this run, for the files and folders a sink writes while it loads: the
/// process id and the clock in nanoseconds, so two loads at once never pick the same one.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

pub use crate::text::QueryResult;

/// What a load does last, inside its transaction before the COMMIT: the checks when asked
/// (`etl --check`; a failed one means nothing is committed), then the run's row in
/// `etl_runs` ([`crate::history`]).
#[derive(Debug, Clone)]
pub struct Closing {
    pub run: RunRecord,
    pub checks: Option<CheckOptions>,
    /// Bad records the load allows (`--max-errors`): a warehouse that reads the input itself
    /// skips up to this many and keeps them in `load_errors`.
    pub max_errors: u64,
    /// Where the run's schema drift is noted as it reads: written to `schema_drift` with
    /// the run's row.
    pub drift: Vec<std::sync::Arc<crate::drift::DriftLog>>,
}

impl Closing {
    /// The checks the load runs before its COMMIT (none unless asked).
    pub fn checks(&self, dialect: &Dialect) -> Vec<Check> {
        self.checks
            .as_ref()
            .map(|o| crate::checks::checks(o, dialect))
            .unwrap_or_default()
    }

    /// The statements that write the run's schema drift and its row in `etl_runs`, ending
    /// now; `counted`: the rows per table the load counted in its transaction, written as
    /// they are ([`crate::history::record_sql`]).
    pub fn record(&self, dialect: &Dialect, counted: &[(String, u64)]) -> Vec<String> {
        let drift: Vec<crate::drift::Drift> =
            self.drift.iter().flat_map(|log| log.entries()).collect();
        let mut out = crate::drift::record_sql(&drift, &self.run.stamp.id, dialect);
        let now = chrono::Utc::now().timestamp_millis();
        out.extend(crate::history::record_sql(
            &self.run,
            now,
            self.checks.is_some(),
            dialect,
            counted,
        ));
        out
    }
}

/// A load or a query waits for another process: told once, when the wait begins, so that
/// a wait is never silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The sink, as it describes itself (no secrets).
    pub sink: String,
    /// Why, in words: `another process has it open`, `another load holds its lock`.
    pub reason: String,
    /// What is waited for, in a word or two: `the file`, `the lock`.
    pub waiting_for: String,
    /// Who holds it: ` (PID 12, /bin/x)`, or empty when unknown.
    pub holder: String,
    /// Since when it holds it, where that is known.
    pub since: Option<std::time::SystemTime>,
    /// How long the wait may last.
    pub timeout: std::time::Duration,
}

/// Who hears that a wait begins.
#[derive(Clone)]
pub struct OnWait(pub std::sync::Arc<dyn Fn(&Waiting) + Send + Sync>);

impl std::fmt::Debug for OnWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnWait")
    }
}

/// How long a load waits for another load into the same sink (its lock, its file) before
/// it fails, unless told otherwise: every sink's default, and `--lock-timeout`'s.
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A place the tables go.
pub trait Sink {
    /// The sink's own error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A short description for messages, with no secrets in it.
    fn describe(&self) -> String;

    /// The SQL this sink speaks (`None`: it runs none, as a Parquet lake).
    fn dialect(&self) -> Option<Dialect> {
        None
    }

    /// Where this sink's staging tables come from (parsed here, unless it says otherwise).
    fn staging(&self) -> Staging {
        Staging::Parsed
    }

    /// Whether the sink builds the star schema itself, in SQL over the staged rows, on every
    /// load: a run then need not build it in memory ([`Finished::star`] may be `None`).
    fn builds_star(&self) -> bool {
        false
    }

    /// Every statement a load runs, in order, as text (`--dry-run`); connects to nothing.
    fn plan(&self) -> Result<Vec<String>, Self::Error>;

    /// The statements that create (drop, then create) or drop every table; connects to nothing.
    fn tables_sql(&self, action: TablesAction) -> Result<Vec<String>, Self::Error>;

    /// Runs `statements` in one transaction.
    fn execute(&mut self, statements: &[String]) -> Result<(), Self::Error>;

    /// Checks that the sink can be reached and written before the input is read.
    fn check(&mut self) -> Result<(), Self::Error>;

    /// Replaces the sink's tables with `load`'s, all or nothing.
    fn load(&mut self, load: Load<'_>) -> Result<(), Self::Error>;

    /// What the next [`Sink::load`] does before its COMMIT ([`Closing`]): its checks, and its
    /// row in `etl_runs`. A sink that keeps no run history ignores it (the default).
    fn close_with(&mut self, _closing: Closing) {}

    /// Runs one query (`sparkify sql`, `sparkify analytics`) and returns its last result set.
    fn query(&mut self, sql: &str) -> Result<QueryResult, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciliation_names_the_first_table_that_lost_or_gained_rows() {
        let expected = [(&STAGING_EVENTS, 8056), (&LOAD_ERRORS, 0)];
        let counted = |e: u64| {
            vec![
                ("staging_events".to_owned(), e),
                ("load_errors".to_owned(), 0),
            ]
        };
        assert_eq!(reconcile(&expected, &counted(8056)), Ok(()));
        let lost = reconcile(&expected, &counted(8055)).unwrap_err();
        assert_eq!(
            (lost.table, lost.expected, lost.found),
            ("staging_events", 8056, 8055)
        );
        assert!(reconcile(&expected, &counted(8057)).is_err());
        // A table the sink did not count holds no rows.
        assert!(reconcile(&[(&STAGING_SONGS, 1)], &counted(8056)).is_err());
    }
}
