//! The run history: every committed load leaves one row in `etl_runs`, written in the load's
//! own transaction (after dlt's `_dlt_loads`), and stamps its `load_errors` and `etl_files`
//! rows with its id ([`RunStamp`]). A load that fails commits nothing, so it leaves no row.

use std::sync::Arc;

use crate::sql::{Dialect, literal};
use crate::table::{ETL_RUNS, STAGING_TABLES, STAR_TABLES, TableDef};

/// A run's id and start, stamped on the rows it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStamp {
    /// `20261207T054512.345Z-4821`: the start in UTC and the process id. Ids sort by start.
    pub id: Arc<str>,
    /// The start, in milliseconds since the epoch.
    pub started_at_ms: i64,
}

impl RunStamp {
    /// A run starting now.
    pub fn now() -> Self {
        RunStamp::at(chrono::Utc::now().timestamp_millis())
    }

    /// A run that started at `started_at_ms` (milliseconds since the epoch), in this process.
    pub fn at(started_at_ms: i64) -> Self {
        let start = chrono::DateTime::from_timestamp_millis(started_at_ms).unwrap_or_default();
        let id = format!(
            "{}-{}",
            start.format("%Y%m%dT%H%M%S%.3fZ"),
            std::process::id()
        );
        RunStamp {
            id: id.into(),
            started_at_ms,
        }
    }
}

/// Files of a run, as the ledger split them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCounts {
    /// Files the sink held no rows of.
    pub new: u64,
    /// Files loaded before that changed since: their rows were replaced.
    pub changed: u64,
    /// Files loaded before, as they are now: not read.
    pub unchanged: u64,
    /// Files loaded before that are no longer in the input.
    pub vanished: u64,
}

/// What a load records of itself in `etl_runs`; the rows per table and the rejects are
/// counted by the sink when it writes the row, inside the load's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub stamp: RunStamp,
    /// The command line, its secrets removed ([`redact_command`]).
    pub command: String,
    /// The sink as it describes itself (no secrets).
    pub sink: String,
    /// An incremental load (`--incremental`), or a full one.
    pub incremental: bool,
    pub files: FileCounts,
}

/// The tables whose rows `etl_runs` counts after each load, in its column order: the staging
/// tables, then the star schema's.
pub fn counted_tables() -> impl Iterator<Item = &'static TableDef> {
    // Not the level history, newer than `etl_runs`: a sink's table keeps its columns.
    STAGING_TABLES
        .into_iter()
        .chain(STAR_TABLES)
        .filter(|t| t.name != crate::table::DM_USERS_HISTORY.name)
}

/// What `etl_runs.checks` says of a committed run: the checks ran and passed, or none ran.
pub fn checks_outcome(checked: bool) -> &'static str {
    match checked {
        true => "passed",
        false => "not run",
    }
}

/// The statements that write `run`'s row, last in the load's transaction: `etl_runs` created
/// if missing (a full load replaces every other table, never the history), then one `INSERT
/// … SELECT` that counts each table's rows and the run's rejects as the transaction sees
/// them, but for the tables in `counted`, which the load has just counted in the same
/// transaction (its reconciliation): their numbers are written as they are. `ended_at_ms` is
/// when the load came to its COMMIT.
pub fn record_sql(
    run: &RunRecord,
    ended_at_ms: i64,
    checked: bool,
    dialect: &Dialect,
    counted: &[(String, u64)],
) -> Vec<String> {
    let text = |s: &str| literal(s, dialect);
    let at = |ms: i64| {
        let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
        format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.3f"))
    };
    let count = |table: &str| match counted.iter().find(|(t, _)| t == table) {
        Some((_, rows)) => rows.to_string(),
        None => format!("(SELECT COUNT(*) FROM {table})"),
    };
    let f = &run.files;
    let mut values = vec![
        text(&run.stamp.id),
        at(run.stamp.started_at_ms),
        at(ended_at_ms),
        text(env!("CARGO_PKG_VERSION")),
        text(ETL_RUNS.fit("command", &run.command)),
        text(&run.sink),
        text(if run.incremental {
            "incremental"
        } else {
            "full"
        }),
        f.new.to_string(),
        f.changed.to_string(),
        f.unchanged.to_string(),
        f.vanished.to_string(),
        format!(
            "(SELECT COUNT(*) FROM load_errors WHERE run_id = {})",
            text(&run.stamp.id)
        ),
    ];
    values.extend(counted_tables().map(|t| count(t.name)));
    values.push(text(checks_outcome(checked)));
    let columns: Vec<&str> = ETL_RUNS.columns.iter().map(|c| c.name).collect();
    vec![
        crate::sql::create_table_if_missing(&ETL_RUNS, dialect),
        format!(
            "INSERT INTO {} ({})\nSELECT {}",
            ETL_RUNS.name,
            columns.join(", "),
            values.join(",\n       ")
        ),
    ]
}

/// `(table_name, row_count)` of the tables [`counted_tables`] as `run`'s row in `etl_runs`
/// counted them in its load's transaction: what the load left, without counting again.
/// No row when the sink holds no row of `run`.
pub fn recorded_counts(run: &RunStamp) -> String {
    // A run's id is digits, letters, `.` and `-` (RunStamp::at): the same literal in every
    // dialect.
    let id = run.id.replace('\'', "''");
    counted_tables()
        .map(|t| {
            format!(
                "SELECT '{0}' AS table_name, {0} AS row_count FROM {1} WHERE run_id = '{id}'",
                t.name, ETL_RUNS.name
            )
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL\n")
}

/// The run history, oldest first: what `sparkify runs` lists.
pub fn select_runs() -> String {
    format!(
        "SELECT * FROM {} ORDER BY started_at, run_id",
        ETL_RUNS.name
    )
}

/// `args` as `etl_runs.command` keeps them: joined by spaces, each secret replaced by `***`:
/// the value of a flag that names a password, secret, token or key, and the password of a
/// URL (`postgres://user:PASSWORD@host/db`).
pub fn redact_command(args: impl IntoIterator<Item = String>) -> String {
    let secret_flag = |a: &str| {
        let a = a.to_ascii_lowercase();
        a.starts_with("--")
            && ["password", "secret", "token", "key"]
                .iter()
                .any(|s| a.contains(s))
            && !a.contains("key-prefix")
    };
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if std::mem::take(&mut hide_next) {
            out.push("***".to_owned());
            continue;
        }
        if let Some((flag, _)) = arg.split_once('=')
            && secret_flag(flag)
        {
            out.push(format!("{flag}=***"));
            continue;
        }
        if secret_flag(&arg) {
            hide_next = true;
            out.push(arg);
            continue;
        }
        out.push(redact_url(&arg));
    }
    out.join(" ")
}

/// `text` with the password of a URL in it (`scheme://user:PASSWORD@host`) replaced by `***`.
fn redact_url(text: &str) -> String {
    let Some(scheme) = text.find("://") else {
        return text.to_owned();
    };
    let rest = &text[scheme + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return text.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return text.to_owned();
    };
    format!(
        "{}{}:***{}",
        &text[..scheme + 3],
        &authority[..colon],
        &text[scheme + 3 + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_the_recorded_command() {
        let args = [
            "sparkify",
            "etl",
            "--sink",
            "postgres://etl:hunter2@db:5432/dw",
            "--db-password",
            "hunter3",
            "--aws-secret-access-key=hunter4",
            "--songs",
            "s3://bucket/song_data",
        ]
        .map(String::from);
        let recorded = redact_command(args);
        assert_eq!(
            recorded,
            "sparkify etl --sink postgres://etl:***@db:5432/dw --db-password *** \
             --aws-secret-access-key=*** --songs s3://bucket/song_data"
        );
        for secret in ["hunter2", "hunter3", "hunter4"] {
            assert!(!recorded.contains(secret), "{recorded}");
        }
        assert_eq!(
            redact_command(["postgres://etl@db/dw".to_owned()]),
            "postgres://etl@db/dw"
        );
    }

    #[test]
    fn run_ids_sort_by_their_start() {
        let (a, b) = (
            RunStamp::at(1_700_000_000_000),
            RunStamp::at(1_700_000_000_001),
        );
        assert!(a.id < b.id, "{} {}", a.id, b.id);
        assert!(a.id.starts_with("20231114T221320.000Z-"), "{}", a.id);
    }

    #[test]
    fn the_run_row_counts_in_the_transaction_and_quotes_what_it_is_given() {
        let run = RunRecord {
            stamp: RunStamp {
                id: "r1".into(),
                started_at_ms: 0,
            },
            command: "sparkify etl --songs it's".into(),
            sink: "duckdb:x.duckdb".into(),
            incremental: true,
            files: FileCounts {
                new: 1,
                changed: 2,
                unchanged: 3,
                vanished: 4,
            },
        };
        let sql = record_sql(&run, 1_000, true, &Dialect::Postgres, &[]);
        assert_eq!(sql.len(), 2);
        assert!(sql[0].starts_with("CREATE TABLE IF NOT EXISTS etl_runs"));
        let insert = &sql[1];
        for part in [
            "'r1'",
            "TIMESTAMP '1970-01-01 00:00:01.000'",
            "'sparkify etl --songs it''s'",
            "'incremental'",
            "1,\n       2,\n       3,\n       4,",
            "(SELECT COUNT(*) FROM load_errors WHERE run_id = 'r1')",
            "(SELECT COUNT(*) FROM dm_time)",
            "'passed'",
        ] {
            assert!(insert.contains(part), "{part} not in {insert}");
        }
        // Tables the load has counted are written as counted; the others counted here.
        let counted = [
            ("staging_events".to_owned(), 8056),
            ("dm_time".to_owned(), 6813),
        ];
        let insert = &record_sql(&run, 1_000, true, &Dialect::Postgres, &counted)[1];
        assert!(insert.contains("       8056,\n"), "{insert}");
        assert!(insert.contains("       6813,\n"), "{insert}");
        assert!(!insert.contains("FROM staging_events)"), "{insert}");
        assert!(!insert.contains("FROM dm_time)"), "{insert}");
        assert!(
            insert.contains("(SELECT COUNT(*) FROM dm_users)"),
            "{insert}"
        );
    }

    #[test]
    fn a_runs_recorded_counts_are_read_from_its_row() {
        let stamp = RunStamp::at(1_700_000_000_000);
        let sql = recorded_counts(&stamp);
        assert_eq!(
            sql.matches("UNION ALL").count(),
            counted_tables().count() - 1
        );
        assert!(sql.starts_with(&format!(
            "SELECT 'staging_events' AS table_name, staging_events AS row_count FROM etl_runs \
             WHERE run_id = '{}'",
            stamp.id
        )));
        assert!(sql.contains("SELECT 'dm_time' AS table_name, dm_time AS row_count"));
    }
}
