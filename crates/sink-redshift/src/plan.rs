//! The statements of a load, in order, as data: `--dry-run` prints exactly what a load would
//! run, snapshot tests pin it down, and the executor (`exec.rs`) runs it.

use arrow::array::RecordBatch;
use sparkify_core::checks::Check;
use sparkify_core::history::{self, RunStamp};
use sparkify_core::ledger::{self, Increment};
use sparkify_core::model::SongplaysMode;
use sparkify_core::sink::{COUNTED, Closing};
use sparkify_core::sql::{self, Dialect, RedshiftKeys, Widths, literal};
use sparkify_core::table::{
    ETL_FILES, LOAD_ERRORS, STAGING_EVENTS, STAGING_SONGS, STAGING_TABLES, STAR_TABLES, SqlType,
    TableDef,
};

use sparkify_s3::S3Url;

use crate::upload;

/// What Redshift's `COPY` reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CopyFrom {
    /// The JSON input itself, where it lies in S3 ([`RedshiftCopy::events`], `songs`,
    /// `jsonpaths`); bad records are Redshift's to find.
    #[default]
    Json,
    /// The core's parsed staging tables, uploaded as Parquet parts under this prefix with a
    /// manifest ([`crate::upload`]); bad records were already reported by the core. A load
    /// uploads into a folder of its own under it ([`RedshiftCopy::for_load`]).
    Parquet { prefix: S3Url },
}

/// What `--dry-run` shows in place of a load's own folder under the upload prefix.
pub const LOAD_FOLDER_SHOWN: &str = "load-<run>";

/// How Redshift fills its staging tables: `COPY` from S3 with an IAM role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedshiftCopy {
    pub copy_from: CopyFrom,
    /// `s3://bucket/log_data`: the event logs (JSON staging only, as are `songs` and
    /// `jsonpaths`).
    pub events: String,
    /// `s3://bucket/song_data`: the song files.
    pub songs: String,
    /// `s3://bucket/log_json_path.json`: the JSONPaths file of the logs.
    pub jsonpaths: String,
    /// The IAM role the cluster reads S3 with.
    pub iam_role: String,
    /// The bucket's region.
    pub region: String,
    /// Redshift Serverless keeps load errors in `sys_load_error_detail`, not `stl_load_errors`.
    pub serverless: bool,
    /// COPY from the JSON: bad records Redshift may skip in all (`--max-errors`); each is
    /// kept in `load_errors`. The Parquet upload's rows were checked here: none is skipped.
    pub max_errors: u64,
}

impl RedshiftCopy {
    /// The settings of one load: with the Parquet upload, its parts and manifests go in
    /// `folder` under the upload prefix, a folder of its own (`load-` and a [`run_id`] when
    /// it loads, [`LOAD_FOLDER_SHOWN`] in `--dry-run`). Two loads at once, or a load that
    /// fails halfway, then never write over the files another load's COPY reads.
    ///
    /// [`run_id`]: sparkify_core::sink::run_id
    pub fn for_load(mut self, folder: &str) -> Self {
        if let CopyFrom::Parquet { prefix } = &mut self.copy_from {
            *prefix = prefix.join(folder);
        }
        self
    }
}

/// Rows each COPY must load, when known (the Parquet upload's counts, checked with
/// `pg_last_copy_count()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expected {
    pub events: Option<u64>,
    pub songs: Option<u64>,
}

/// What a load knows of its staging rows before its plan runs (the Parquet upload measured
/// them; nothing when Redshift reads the JSON itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// The rows each COPY must load.
    pub counts: Expected,
    /// The longest value of each staging text column, in bytes.
    pub widths: Widths,
}

/// Where the records a COPY skipped go ([`Step::CopyS3`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Skipped records allowed in all, over every COPY of the load.
    pub max_errors: u64,
    /// The run they belong to.
    pub stamp: sparkify_core::history::RunStamp,
}

/// One step of a load.
#[derive(Debug, Clone)]
pub enum Step {
    /// A statement, run as it is.
    Sql(String),
    /// The load lock's statement: when another load holds the lock, whoever hears of waits
    /// ([`crate::WarehouseConfig::on_wait`]) is told who and since when, before it waits.
    AwaitLock(String),
    /// Redshift's load lock, `LOCK` of [`LOCK_TABLE`], the transaction's first statement:
    /// tried at once; when another load holds it, whoever hears of waits is told, and it is
    /// waited for up to the lock timeout (`statement_timeout`), the transaction begun again.
    LockTable,
    /// The columns renamed since the sink was loaded ([`sql::RENAMED`]) given their new names,
    /// when it still has them.
    Rename,
    /// `COPY … FROM STDIN` of the run's batch for `table` (PostgreSQL).
    CopyIn { table: &'static TableDef },
    /// `COPY` from S3 (Redshift), its row count checked after.
    CopyS3 {
        table: &'static TableDef,
        sql: String,
        /// Whose load-error rows are this COPY's: the session's, after the largest id it had
        /// before the COPY ([`last_error_id_query`]). `pg_last_copy_id()` cannot say: it is
        /// put back when the transaction rolls back ("PG_LAST_COPY_ID"), and the SYS views'
        /// `query_id` is another number than it ("System tables and views reference").
        expected: Option<u64>,
        serverless: bool,
        /// COPY from the JSON with `MAXERROR`: the records it skipped, read from the load-error
        /// table, go into `load_errors` stamped with this run, and more in all than the
        /// run's `--max-errors` fail the load.
        skipped: Option<Skipped>,
    },
    /// The staging tables, `load_errors` and `etl_files` counted, to hold what the run parsed
    /// ([`sparkify_core::sink::reconcile`]); nothing to check when the warehouse read the input.
    Reconcile,
    /// The run's rows of `table` as `INSERT`s (Redshift has no `COPY FROM STDIN`): its rejects
    /// into `load_errors`, its files into `etl_files`.
    InsertRows { table: &'static TableDef },
    /// An incremental load goes on only if `etl_files` is still what the run read, `digest`
    /// ([`sparkify_core::ledger::digest`]).
    CheckLedger { digest: u64 },
    /// The star tables dropped and created (`keep`: created if missing, as an incremental
    /// load keeps them) once the staging tables hold the load's rows, their text columns
    /// sized from the staging tables' longest values ([`sql::star_widths`]).
    CreateStar { dialect: Dialect, keep: bool },
    /// Before the load's transaction (Redshift will not alter a column's type inside one):
    /// every staging column narrower than the step above the run's longest value widened to
    /// it.
    Widen(Widths),
    /// `etl --check`: every check run; the load fails, naming each one that failed, if any
    /// returns a row.
    Checks(Vec<Check>),
    /// The run's row in `etl_runs`, its end the time the step runs ([`Closing::record`]).
    RecordRun {
        closing: Box<Closing>,
        dialect: Dialect,
    },
}

impl Step {
    /// The statement's text (for the rows sent by `COPY … FROM STDIN` or `INSERT`, what
    /// they are).
    pub fn text(&self) -> String {
        match self {
            Step::Sql(s)
            | Step::AwaitLock(s)
            | Step::CopyS3 {
                sql: s,
                skipped: None,
                ..
            } => s.clone(),
            Step::CopyS3 {
                sql,
                serverless,
                skipped: Some(_),
                ..
            } => format!(
                "-- the session's last load-error id before the COPY:\n{};\n\n{sql};\n\n-- the \
                 records it skipped, into load_errors (INSERT … VALUES), the load failing when \
                 more than --max-errors in all:\n{}",
                last_error_id_query(*serverless),
                skipped_query(*serverless, None)
            ),
            Step::LockTable => format!("LOCK {LOCK_TABLE}"),
            Step::Rename => format!(
                "-- each column found renamed (ALTER TABLE … RENAME COLUMN):\n{}",
                sql::renamed_probe()
            ),
            Step::CopyIn { table } => copy_in_sql(table),
            Step::Reconcile => format!(
                "-- fails the load unless each count equals the run's:\n{}",
                reconcile_sql()
            ),
            Step::CheckLedger { .. } => format!(
                "-- fails the load unless etl_files is still what the run read:\n{}",
                ledger::SELECT
            ),
            Step::InsertRows { table } => format!(
                "-- INSERT INTO {} ({}) VALUES …: the run's rows",
                table.name,
                column_list(table)
            ),
            Step::CreateStar { dialect, keep } => {
                let star = sql::star_tables(dialect, &Widths::default(), *keep);
                if !sizes(dialect) {
                    return format!(
                        "-- the star tables, once the staging tables are filled:\n{}",
                        star.join(";\n\n")
                    );
                }
                let mut out: Vec<String> = STAGING_TABLES
                    .iter()
                    .map(|t| sql::staging_widths_sql(t))
                    .collect();
                out.extend(star);
                format!(
                    "-- the star tables, once the staging tables are filled: the longest value of \
                     each staging text column, then each star text column VARCHAR(the step above \
                     its source's; 65535 stands for it below):\n{}",
                    out.join(";\n\n")
                )
            }
            Step::Widen(widths) => format!(
                "-- before BEGIN: each staging and star column narrower than the run's longest \
                 value widened to the step above it ({} columns measured; a key column cannot \
                 be, and fails the load):\n{}",
                widths.0.len(),
                widths_held_sql()
            ),
            Step::Checks(checks) => checks
                .iter()
                .map(Check::text)
                .collect::<Vec<_>>()
                .join(";\n\n"),
            // The counts are the reconciliation's when the load runs.
            Step::RecordRun { closing, dialect } => closing.record(dialect, &[]).join(";\n\n"),
        }
    }
}

/// How long a load waits for another one, by default.
pub use sparkify_core::sink::DEFAULT_LOCK_TIMEOUT;

/// The key of sparkify's load lock (with the schema's hash as the second key): `spkf`.
pub const LOCK_KEY: i32 = 0x7370_6b66;

/// The table Redshift's loads lock first, always, so that two loads take turns instead of
/// one failing with a serializable isolation error (1023) at its COMMIT: AWS's remedy
/// ("Serializable isolation": lock the tables at the start of the transaction, in the same
/// order). Created before the first load's transaction; it holds no rows.
pub const LOCK_TABLE: &str = "etl_load_lock";

/// `CREATE TABLE IF NOT EXISTS` of [`LOCK_TABLE`], before the transaction.
pub fn lock_table_sql() -> String {
    format!("CREATE TABLE IF NOT EXISTS {LOCK_TABLE} (held_by VARCHAR(64))")
}

/// Two loads into one schema take turns: PostgreSQL's transaction-scoped advisory lock, taken
/// first, waited for up to `timeout` (`lock_timeout` also bounds every table lock of the
/// load). Redshift has no advisory locks: its loads `LOCK` [`LOCK_TABLE`] ([`Step::LockTable`]).
pub fn lock_sql(dialect: &Dialect, timeout: std::time::Duration) -> Vec<String> {
    match dialect {
        Dialect::Postgres => vec![
            format!(
                "SET LOCAL lock_timeout = '{}ms'",
                timeout.as_millis().max(1)
            ),
            format!("SELECT pg_advisory_xact_lock({LOCK_KEY}, hashtext(current_schema()))"),
        ],
        _ => Vec::new(),
    }
}

/// Every step of a load, in order: one transaction that recreates the tables (or, for an
/// `increment`, removes its files' rows and rebuilds the star tables), stages (`COPY` from S3
/// on Redshift with `copy`, `COPY … FROM STDIN` of the parsed staging tables otherwise), runs
/// the transforms and records the rejects and the files.
pub fn load_plan(
    dialect: &Dialect,
    copy: Option<&RedshiftCopy>,
    known: &Known,
    mode: SongplaysMode,
    lock_timeout: std::time::Duration,
    increment: Option<&Increment>,
    closing: Option<&Closing>,
) -> Vec<Step> {
    let (expected, widths) = (known.counts, &known.widths);
    let mut steps = Vec::new();
    if increment.is_some() && sizes(dialect) && !widths.0.is_empty() {
        // The star tables a maintained load keeps, too: each as wide as its source needs.
        let mut all = widths.clone();
        all.merge(&sql::star_widths(widths));
        steps.push(Step::Widen(all));
    }
    if sizes(dialect) {
        steps.push(Step::Sql(lock_table_sql()));
    }
    steps.push(Step::Sql("BEGIN".into()));
    if sizes(dialect) {
        steps.push(Step::LockTable);
    }
    steps.extend(lock_sql(dialect, lock_timeout).into_iter().map(|s| {
        match s.starts_with("SELECT pg_advisory_xact_lock") {
            true => Step::AwaitLock(s),
            false => Step::Sql(s),
        }
    }));
    match increment {
        None => steps.extend(
            sql::recreate_staged(dialect, widths)
                .into_iter()
                .map(Step::Sql),
        ),
        Some(increment) => {
            steps.push(Step::Rename);
            steps.extend(
                sql::prepare_appended(dialect, widths)
                    .into_iter()
                    .map(Step::Sql),
            );
            steps.push(Step::CheckLedger {
                digest: increment.digest,
            });
            steps.extend(
                ledger::increment_sql(increment, dialect)
                    .into_iter()
                    .map(Step::Sql),
            );
        }
    }
    match copy {
        None => {
            steps.push(Step::CopyIn {
                table: &STAGING_EVENTS,
            });
            steps.push(Step::CopyIn {
                table: &STAGING_SONGS,
            });
        }
        Some(c) => {
            let sql = |table: &TableDef| match &c.copy_from {
                CopyFrom::Json if table.name == STAGING_EVENTS.name => copy_events_sql(c),
                CopyFrom::Json => copy_songs_sql(c),
                CopyFrom::Parquet { prefix } => copy_parquet_sql(c, table, prefix),
            };
            for (table, expected) in [
                (&STAGING_EVENTS, expected.events),
                (&STAGING_SONGS, expected.songs),
            ] {
                let skipped =
                    (matches!(c.copy_from, CopyFrom::Json) && c.max_errors > 0).then(|| Skipped {
                        max_errors: c.max_errors,
                        stamp: closing.map_or_else(RunStamp::now, |cl| cl.run.stamp.clone()),
                    });
                steps.push(Step::CopyS3 {
                    table,
                    sql: sql(table),
                    expected,
                    serverless: c.serverless,
                    skipped,
                });
            }
        }
    }
    steps.push(Step::CreateStar {
        dialect: dialect.clone(),
        keep: increment.is_some_and(|i| !i.rebuild),
    });
    steps.extend(
        ledger::star_sql(dialect, mode, increment)
            .into_iter()
            .map(Step::Sql),
    );
    for table in [&LOAD_ERRORS, &ETL_FILES] {
        steps.push(match copy {
            None => Step::CopyIn { table },
            Some(_) => Step::InsertRows { table },
        });
    }
    // Nothing to count against when Redshift read the JSON itself (COPY checks its own rows).
    if !copy.is_some_and(|c| matches!(c.copy_from, CopyFrom::Json)) {
        steps.push(Step::Reconcile);
    }
    if let Some(closing) = closing {
        let checks = closing.checks(dialect);
        if !checks.is_empty() {
            steps.push(Step::Checks(checks));
        }
        steps.push(Step::RecordRun {
            closing: Box::new(closing.clone()),
            dialect: dialect.clone(),
        });
    }
    steps.push(Step::Sql("COMMIT".into()));
    steps
}

/// Whether `dialect` sizes its text columns (Redshift's `VARCHAR(n)`; PostgreSQL's `TEXT`
/// has no size).
pub fn sizes(dialect: &Dialect) -> bool {
    matches!(dialect, Dialect::Redshift(_))
}

/// The widths the staging and star columns have now, as [`Step::Widen`] reads them.
pub fn widths_held_sql() -> String {
    let tables: Vec<String> = STAGING_TABLES
        .iter()
        .chain(STAR_TABLES.iter())
        .map(|t| format!("'{}'", t.name))
        .collect();
    format!(
        "SELECT table_name, column_name, character_maximum_length \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name IN ({}) AND character_maximum_length IS NOT NULL",
        tables.join(", ")
    )
}

/// A key column narrower than a load's values: Redshift alters no key column's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{table}.{column} holds {width} bytes and this load's longest value needs {needed}: \
     Redshift cannot widen a key column; load again with --rebuild, which makes the star \
     tables anew at the widths they need (nothing was committed)"
)]
pub struct KeyTooNarrow {
    pub table: String,
    pub column: String,
    pub width: u32,
    pub needed: u32,
}

/// The statements that widen the staging and star columns `held` (`(table, column, width)`,
/// as [`widths_held_sql`] gives them) narrower than the step above the run's longest value.
/// A primary key column cannot be widened ("ALTER TABLE": not on UNIQUE, PRIMARY KEY or
/// FOREIGN KEY columns): one that would need it is [`KeyTooNarrow`].
pub fn widen_sql(
    held: &[(String, String, u32)],
    widths: &Widths,
) -> Result<Vec<String>, KeyTooNarrow> {
    let mut out = Vec::new();
    for (table, column, width) in held {
        // Redshift folds names to lower case: the run's widths are found by either.
        let Some(needed) = widths
            .0
            .iter()
            .find(|((t, c), _)| t == table && c.eq_ignore_ascii_case(column))
            .map(|(_, bytes)| sql::varchar_width(*bytes))
        else {
            continue;
        };
        if needed <= *width {
            continue;
        }
        let key = STAR_TABLES.iter().any(|t| {
            t.name == table && t.primary_key.iter().any(|k| k.eq_ignore_ascii_case(column))
        });
        if key {
            return Err(KeyTooNarrow {
                table: table.clone(),
                column: column.clone(),
                width: *width,
                needed,
            });
        }
        out.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR({needed})"
        ));
    }
    Ok(out)
}

/// The reconciliation's count of the tables the run parsed, and of those the run's row in
/// `etl_runs` counts, which it takes from here (each count reads every row on PostgreSQL).
pub(crate) fn reconcile_sql() -> String {
    let mut tables: Vec<&TableDef> = COUNTED.to_vec();
    tables.extend(history::counted_tables().filter(|t| !COUNTED.iter().any(|c| c.name == t.name)));
    sql::count_rows(&tables)
}

fn column_list(table: &TableDef) -> String {
    table
        .columns
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn copy_in_sql(table: &TableDef) -> String {
    format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        table.name,
        column_list(table)
    )
}

/// The dialect COPY's literals are written in (the keys play no part in them).
fn redshift(_: &RedshiftCopy) -> Dialect {
    Dialect::Redshift(RedshiftKeys::default())
}

/// The events: JSON mapped by the JSONPaths file to the input's columns (`etl_file_id` stays
/// NULL), `ts` read as epoch milliseconds.
pub fn copy_events_sql(c: &RedshiftCopy) -> String {
    let d = redshift(c);
    let columns: Vec<&str> = STAGING_EVENTS
        .columns
        .iter()
        .filter(|c| !c.lineage)
        .map(|c| c.name)
        .collect();
    format!(
        "COPY staging_events ({}) FROM {}\nIAM_ROLE {}\nREGION {}\nFORMAT AS JSON {}\nTIMEFORMAT 'epochmillisecs'{}\nCOMPUPDATE OFF STATUPDATE ON",
        columns.join(", "),
        literal(&c.events, &d),
        literal(&c.iam_role, &d),
        literal(&c.region, &d),
        literal(&c.jsonpaths, &d),
        max_error(c),
    )
}

/// The song files: JSON keys matched to column names.
pub fn copy_songs_sql(c: &RedshiftCopy) -> String {
    let d = redshift(c);
    format!(
        "COPY staging_songs FROM {}\nIAM_ROLE {}\nREGION {}\nFORMAT AS JSON 'auto'{}\nCOMPUPDATE OFF STATUPDATE ON",
        literal(&c.songs, &d),
        literal(&c.iam_role, &d),
        literal(&c.region, &d),
        max_error(c),
    )
}

/// The most `MAXERROR` Redshift takes.
pub const MAXERROR_LIMIT: u64 = 100_000;

/// `\nMAXERROR n+1` when the run allows `n` bad records (each COPY may skip up to all of
/// them; the load counts them over both), else nothing: Redshift's default, 0. A COPY fails
/// at `MAXERROR` errors or more ("COPY: Data load parameters"), so `n` are allowed by `n+1`;
/// at Redshift's limit a COPY skips at most 99,999.
fn max_error(c: &RedshiftCopy) -> String {
    match c.max_errors {
        0 => String::new(),
        n => format!("\nMAXERROR {}", n.saturating_add(1).min(MAXERROR_LIMIT)),
    }
}

/// The largest load-error id the session has so far (-1: none): what a COPY's own rows
/// come after (`stl_load_errors.query`; Serverless: `sys_load_error_detail.query_id`).
pub fn last_error_id_query(serverless: bool) -> &'static str {
    match serverless {
        false => {
            "SELECT COALESCE(MAX(query), -1) FROM stl_load_errors WHERE session = pg_backend_pid()"
        }
        true => {
            "SELECT COALESCE(MAX(query_id), -1) FROM sys_load_error_detail \
             WHERE session_id = pg_backend_pid()"
        }
    }
}

/// The records a COPY skipped or failed on: the session's rows of the load-error table
/// Redshift keeps them in (`stl_load_errors`; Serverless: `sys_load_error_detail`) after
/// `after` (what [`last_error_id_query`] said before the COPY; `None` shows the place):
/// file, line, column, reason and the record's text (`raw_line`; Serverless keeps no text
/// of the record, its reason names the value).
pub fn skipped_query(serverless: bool, after: Option<i64>) -> String {
    let after = after.map_or(
        "-1 /* the session's largest id before the COPY */".to_owned(),
        |a| a.to_string(),
    );
    match serverless {
        false => format!(
            "SELECT TRIM(filename), line_number, TRIM(colname), TRIM(err_reason), TRIM(raw_line)\n\
             FROM stl_load_errors\n\
             WHERE session = pg_backend_pid() AND query > {after}\n\
             ORDER BY query, filename, line_number"
        ),
        true => format!(
            "SELECT TRIM(file_name), line_number, TRIM(column_name), TRIM(error_message), ''\n\
             FROM sys_load_error_detail\n\
             WHERE session_id = pg_backend_pid() AND query_id > {after}\n\
             ORDER BY query_id, file_name, line_number"
        ),
    }
}

/// The rows of [`skipped_query`] as rejects.
pub fn skipped_rejects(rows: &[Vec<Option<String>>]) -> Vec<sparkify_core::Reject> {
    rows.iter()
        .map(|r| {
            let v = |i: usize| r.get(i).cloned().flatten();
            sparkify_core::Reject {
                source: v(0).unwrap_or_default().into(),
                line: v(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0),
                byte_offset: 0,
                column: v(2).filter(|c| !c.is_empty()),
                reason: v(3).unwrap_or_default(),
                raw: v(4).unwrap_or_default(),
            }
        })
        .collect()
}

/// A staging table from the Parquet parts its manifest names (columns in table order). COPY
/// from Parquet takes no REGION or COMPUPDATE: the bucket must be in the cluster's region.
pub fn copy_parquet_sql(c: &RedshiftCopy, table: &TableDef, prefix: &S3Url) -> String {
    let d = redshift(c);
    format!(
        "COPY {} FROM {}\nIAM_ROLE {}\nFORMAT AS PARQUET\nMANIFEST\nSTATUPDATE ON",
        table.name,
        literal(&upload::manifest_url(prefix, table).to_string(), &d),
        literal(&c.iam_role, &d),
    )
}

/// `INSERT`s of `batch` into `table`, 100 rows each, every value a Redshift literal.
pub(crate) fn insert_rows_sql(table: &TableDef, batch: &RecordBatch) -> Vec<String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
    let d = Dialect::Redshift(RedshiftKeys::default());
    let value = |i: usize, ty: SqlType, row: usize| {
        let c = batch.column(i);
        if c.is_null(row) {
            return "NULL".to_owned();
        }
        match ty {
            SqlType::Text => literal(c.as_string::<i32>().value(row), &d),
            SqlType::Integer => c.as_primitive::<Int32Type>().value(row).to_string(),
            SqlType::BigInt => c.as_primitive::<Int64Type>().value(row).to_string(),
            SqlType::Double => format!(
                "CAST({} AS DOUBLE PRECISION)",
                literal(
                    &sparkify_core::text::double(c.as_primitive::<Float64Type>().value(row)),
                    &d
                )
            ),
            SqlType::Boolean => c.as_boolean().value(row).to_string(),
            SqlType::Timestamp => format!(
                "TIMESTAMP '{}'",
                sparkify_core::time::text(c.as_primitive::<TimestampMillisecondType>().value(row))
            ),
        }
    };
    let rows: Vec<String> = (0..batch.num_rows())
        .map(|r| {
            let values: Vec<String> = table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| value(i, c.ty, r))
                .collect();
            format!("({})", values.join(", "))
        })
        .collect();
    rows.chunks(100)
        .map(|chunk| {
            format!(
                "INSERT INTO {} ({}) VALUES\n{}",
                table.name,
                column_list(table),
                chunk.join(",\n")
            )
        })
        .collect()
}

#[cfg(test)]
mod widen_tests {
    use super::*;

    #[test]
    fn the_records_a_copy_skipped_become_rejects() {
        let rows = vec![vec![
            Some("s3://logs/2018-11-05-events.json".to_owned()),
            Some("   7".to_owned()),
            Some("ts".to_owned()),
            Some("Invalid timestamp format or value".to_owned()),
            Some("{\"ts\": \"yesterday\"}".to_owned()),
        ]];
        let rejects = skipped_rejects(&rows);
        assert_eq!(rejects.len(), 1);
        let r = &rejects[0];
        assert_eq!(
            (&*r.source, r.line, r.column.as_deref(), &r.raw[..]),
            (
                "s3://logs/2018-11-05-events.json",
                7,
                Some("ts"),
                "{\"ts\": \"yesterday\"}"
            )
        );
    }

    #[test]
    fn a_key_column_is_never_widened_and_history_levels_are() {
        let mut widths = Widths::default();
        widths.note("dm_songs", "song_id", 100);
        widths.note("dm_users_history", "level", 100);
        let held = [
            ("dm_users_history".to_owned(), "level".to_owned(), 16),
            ("dm_songs".to_owned(), "song_id".to_owned(), 64),
        ];
        assert_eq!(
            widen_sql(&held, &widths),
            Err(KeyTooNarrow {
                table: "dm_songs".into(),
                column: "song_id".into(),
                width: 64,
                needed: 256
            })
        );
        assert_eq!(
            widen_sql(&held[..1], &widths).unwrap(),
            ["ALTER TABLE dm_users_history ALTER COLUMN level TYPE VARCHAR(256)"]
        );
        assert!(widths_held_sql().contains("'dm_users_history'"));
    }

    #[test]
    fn only_a_staging_column_narrower_than_the_runs_longest_value_is_widened() {
        let mut widths = Widths::default();
        widths.note("staging_events", "firstName", 300);
        widths.note("staging_events", "lastName", 10);
        let held = [
            ("staging_events".to_owned(), "firstname".to_owned(), 64),
            ("staging_events".to_owned(), "lastname".to_owned(), 64),
            ("staging_songs".to_owned(), "title".to_owned(), 16),
        ];
        assert_eq!(
            widen_sql(&held, &widths).unwrap(),
            ["ALTER TABLE staging_events ALTER COLUMN firstname TYPE VARCHAR(1024)"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparkify_core::Reject;

    #[test]
    fn reject_rows_are_redshift_literals_whatever_they_hold() {
        let reject = Reject {
            source: "s3://b/o'brien\\x;$$.json".into(),
            line: 3,
            byte_offset: 10,
            column: Some("user'Id".into()),
            reason: "not a number; DROP TABLE x; --".into(),
            raw: "{\"userId\": \"$$'\\\\\"}".into(),
        };
        let run = sparkify_core::history::RunStamp {
            id: "r'1".into(),
            started_at_ms: 0,
        };
        let batch = sparkify_core::reject::rejects_batch(&[reject], &run);
        let sql = insert_rows_sql(&LOAD_ERRORS, &batch);
        assert_eq!(
            sql,
            [
                "INSERT INTO load_errors (source, line, byte_offset, column_name, reason, raw_text, \
                 run_started_at, run_id) VALUES\n('s3://b/o''brien\\\\x;$$.json', 3, 10, 'user''Id', \
                 'not a number; DROP TABLE x; --', '{\"userId\": \"$$''\\\\\\\\\"}', \
                 TIMESTAMP '1970-01-01 00:00:00', 'r''1')"
            ]
        );
    }
}
