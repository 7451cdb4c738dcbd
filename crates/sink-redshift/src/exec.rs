//! Running a plan on a connection: statements as they are, `COPY … FROM STDIN` of the parsed
//! tables, `COPY` from S3 with its load errors read back on failure; any failure rolls back.

use arrow::array::RecordBatch;
use sparkify_core::ledger::Increment;
use sparkify_core::model::{Rows as TableRows, SLICE_ROWS};
use sparkify_core::sink::{Finished, OnWait, QueryResult, Staged, Waiting};
use sparkify_core::sql::{self, Widths};
use sparkify_core::table::{STAGING_TABLES, TableDef};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::copy::{CopyIn, sql_error};
use crate::plan::{Step, insert_rows_sql, last_error_id_query, reconcile_sql, skipped_query};
use crate::{Error, Result};

/// A part of a staging table: its table and batches.
type Part = (&'static TableDef, Vec<RecordBatch>);

/// The rows a load sends, as it goes: the staging tables' parts as the stream gives them,
/// then what was built from them ([`Finished`]); nothing when the warehouse reads the input.
pub(crate) struct Rows<'s> {
    staged: Option<&'s mut (dyn Staged + Send)>,
    /// A part taken from the stream for another table than the one asked for.
    pending: Option<Part>,
    finished: Option<Finished>,
    /// Records the load's COPYs skipped so far (`MAXERROR`).
    skipped: u64,
    /// Rows per table as the reconciliation counted them, for the run's row.
    counted: Vec<(String, u64)>,
}

impl<'s> Rows<'s> {
    pub(crate) fn new(staged: Option<&'s mut (dyn Staged + Send)>) -> Self {
        Rows {
            staged,
            pending: None,
            finished: None,
            skipped: 0,
            counted: Vec::new(),
        }
    }

    /// Whether there are rows at all (not when the warehouse reads the input itself).
    pub(crate) fn parsed(&self) -> bool {
        self.staged.is_some()
    }

    pub(crate) fn increment(&self) -> Option<&Increment> {
        self.staged.as_deref().and_then(|s| s.increment())
    }

    pub(crate) fn phase(&self, phase: &str) {
        if let Some(staged) = &self.staged {
            staged.phase(phase);
        }
    }

    /// The stream's next part, the one put back first.
    fn take(&mut self) -> Result<Option<Part>> {
        if let Some(part) = self.pending.take() {
            return Ok(Some(part));
        }
        match (&mut self.staged, &self.finished) {
            (Some(staged), None) => Ok(staged.next().transpose()?),
            _ => Ok(None),
        }
    }

    /// The next rows of `table`; `None` once the stream has gone past it (blocks until the
    /// reader has them).
    pub(crate) fn next_of(&mut self, table: &TableDef) -> Result<Option<Vec<RecordBatch>>> {
        match self.take()? {
            Some((t, batches)) if t.name == table.name => Ok(Some(batches)),
            other => {
                self.pending = other;
                Ok(None)
            }
        }
    }

    /// What was built from the rows, once every part was sent; `None` without rows.
    pub(crate) fn finished(&mut self) -> Result<Option<&Finished>> {
        if self.finished.is_none() {
            if let Some((table, _)) = self.take()? {
                return Err(Error::Config(format!(
                    "the load's plan sends no more rows of {} at this point: a part came \
                     after its table was sent",
                    table.name
                )));
            }
            let Some(staged) = &mut self.staged else {
                return Ok(None);
            };
            self.finished = Some(staged.finish()?);
        }
        Ok(self.finished.as_ref())
    }

    /// The rows of `table` built from the staging rows (`load_errors`, `etl_files`), as the
    /// run keeps them (the rejects may be in a temporary file).
    fn built(&mut self, table: &TableDef) -> Result<Option<TableRows<'_>>> {
        Ok(self.finished()?.and_then(|f| f.rows(table)))
    }
}

/// Runs `steps`, sending `rows` where they say; on a failure, rolls back (a dropped
/// connection rolls back by itself).
pub(crate) async fn run(
    client: &Client,
    steps: &[Step],
    rows: &mut Rows<'_>,
    wait: &Wait,
) -> Result<()> {
    for step in steps {
        tracing::debug!(step = %step.text().lines().next().unwrap_or(""), "running");
        if let Err(e) = run_step(client, step, rows, wait).await {
            if !client.is_closed() {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Who hears that a load waits for another one's lock, and what they are told of it.
#[derive(Debug, Clone)]
pub(crate) struct Wait {
    pub on_wait: Option<OnWait>,
    /// The sink, as it describes itself.
    pub sink: String,
    pub timeout: std::time::Duration,
}

async fn run_step(client: &Client, step: &Step, rows: &mut Rows<'_>, wait: &Wait) -> Result<()> {
    match step {
        Step::Sql(s) => run_sql(client, s).await,
        Step::AwaitLock(s) => {
            let attempt = s.replacen("pg_advisory_xact_lock", "pg_try_advisory_xact_lock", 1);
            let got = query_text(client, &attempt).await?;
            if got
                .rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .as_deref()
                == Some("t")
            {
                return Ok(());
            }
            if let Some(OnWait(on_wait)) = &wait.on_wait {
                let holder = lock_holder(client).await;
                on_wait(&Waiting {
                    sink: wait.sink.clone(),
                    reason: "another load holds its lock".into(),
                    waiting_for: "the lock".into(),
                    holder: holder.who,
                    since: holder.since,
                    timeout: wait.timeout,
                });
            }
            run_sql(client, s).await
        }
        Step::LockTable => lock_table(client, wait).await,
        Step::Rename => {
            let found = query_text(client, &sql::renamed_probe()).await?;
            for s in sql::renames(&found.rows) {
                tracing::info!(statement = %s, "renaming a column");
                client.batch_execute(&s).await.map_err(sql_error(&s))?;
            }
            Ok(())
        }
        Step::CopyIn { table } if !rows.parsed() => {
            tracing::debug!(table = table.name, "no rows to send");
            Ok(())
        }
        Step::CopyIn { table } if STAGING_TABLES.iter().any(|t| t.name == table.name) => {
            // The staging rows go as the stream gives them, in one COPY per table.
            let mut copy = CopyIn::start(client, table).await?;
            while let Some(batches) = rows.next_of(table)? {
                for batch in &batches {
                    copy.write(batch).await?;
                }
            }
            copy.finish().await?;
            if STAGING_TABLES.last().is_some_and(|t| t.name == table.name) {
                rows.phase("running the transforms");
            }
            Ok(())
        }
        Step::CopyIn { table } => {
            let Some(built) = rows.built(table)? else {
                return Ok(());
            };
            let mut copy = CopyIn::start(client, table).await?;
            for batch in built.batches(SLICE_ROWS) {
                copy.write(&batch?).await?;
            }
            copy.finish().await
        }
        Step::CopyS3 {
            table,
            sql,
            expected,
            serverless,
            skipped,
        } => {
            // The session's load-error rows after this id are the COPY's.
            let before = query_text(client, last_error_id_query(*serverless))
                .await?
                .rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(-1);
            if let Err(source) = client.batch_execute(sql).await {
                // The transaction is aborted: roll back before asking what went wrong.
                let _ = client.batch_execute("ROLLBACK").await;
                let found = query_text(client, &skipped_query(*serverless, Some(before))).await;
                let bad_records = found.as_ref().map_or(0, |f| f.rows.len());
                let details = match found {
                    Ok(QueryResult { rows, .. }) if !rows.is_empty() => rows
                        .iter()
                        .map(|r| {
                            let v = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                            format!(
                                "  {}:{}: column {}: {} (raw value: {})",
                                v(0),
                                v(1),
                                v(2),
                                v(3),
                                v(4)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                    Ok(_) => "  no rows in the load-error table for this COPY".into(),
                    Err(e) => format!("  could not read the load-error table: {e}"),
                };
                if bad_records > 0 {
                    // Redshift stopped at more bad records than MAXERROR allowed.
                    return Err(Error::CopyRejected {
                        table: table.name.to_owned(),
                        rejected: bad_records,
                        max: skipped.as_ref().map_or(0, |s| s.max_errors),
                        details,
                    });
                }
                return Err(Error::CopyS3 {
                    table: table.name.to_owned(),
                    reason: sparkify_core::error::chain(&source),
                    details,
                });
            }
            if let Some(into) = skipped {
                let found = query_text(client, &skipped_query(*serverless, Some(before))).await?;
                let rejects = crate::plan::skipped_rejects(&found.rows);
                rows.skipped += rejects.len() as u64;
                if rows.skipped > into.max_errors {
                    return Err(sparkify_core::Error::TooManyRejects {
                        rejected: usize::try_from(rows.skipped).unwrap_or(usize::MAX),
                        max: into.max_errors,
                    }
                    .into());
                }
                let batch = sparkify_core::reject::rejects_batch(&rejects, &into.stamp);
                for s in insert_rows_sql(&sparkify_core::table::LOAD_ERRORS, &batch) {
                    client.batch_execute(&s).await.map_err(sql_error(&s))?;
                }
            }
            if let Some(expected) = expected {
                let row = client
                    .query_one("SELECT pg_last_copy_count()", &[])
                    .await
                    .map_err(sql_error("SELECT pg_last_copy_count()"))?;
                let got: i64 = row.get(0);
                if got as u64 != *expected {
                    return Err(Error::CopyCount {
                        table: table.name.to_owned(),
                        expected: *expected,
                        got: got as u64,
                    });
                }
            }
            Ok(())
        }
        Step::Reconcile => {
            let Some(finished) = rows.finished()? else {
                return Ok(());
            };
            let expected = finished.staged.clone();
            rows.phase("checking the counts and committing");
            rows.counted = query_text(client, &reconcile_sql()).await?.counts();
            Ok(sparkify_core::sink::reconcile(&expected, &rows.counted)?)
        }
        Step::InsertRows { table } => {
            let Some(built) = rows.built(table)? else {
                return Ok(());
            };
            for batch in built.batches(SLICE_ROWS) {
                for s in insert_rows_sql(table, &batch?) {
                    client.batch_execute(&s).await.map_err(sql_error(&s))?;
                }
            }
            Ok(())
        }
        Step::CreateStar { dialect, keep } => {
            let mut staging = Widths::default();
            let measured = STAGING_TABLES
                .iter()
                .filter(|_| crate::plan::sizes(dialect));
            for table in measured {
                let found = query_text(client, &sql::staging_widths_sql(table)).await?;
                let row = found.rows.into_iter().next().unwrap_or_default();
                for (column, bytes) in sql::staging_text_columns(table).into_iter().zip(row) {
                    let bytes = bytes.and_then(|b| b.parse().ok()).unwrap_or(0);
                    staging.note(table.name, column, bytes);
                }
            }
            for s in sql::star_tables(dialect, &sql::star_widths(&staging), *keep) {
                client.batch_execute(&s).await.map_err(sql_error(&s))?;
            }
            Ok(())
        }
        Step::Widen(widths) => {
            let held = query_text(client, &crate::plan::widths_held_sql()).await?;
            let held: Vec<(String, String, u32)> = held
                .rows
                .into_iter()
                .filter_map(|r| {
                    let v = |i: usize| r.get(i).cloned().flatten();
                    Some((v(0)?, v(1)?, v(2)?.parse().ok()?))
                })
                .collect();
            for s in crate::plan::widen_sql(&held, widths)? {
                tracing::info!(statement = %s, "widening before the load");
                client.batch_execute(&s).await.map_err(sql_error(&s))?;
            }
            Ok(())
        }
        Step::Checks(checks) => {
            rows.phase("running the checks");
            let mut outcomes = Vec::new();
            for check in checks {
                let found = query_text(client, &check.sql).await?;
                outcomes.push(sparkify_core::checks::outcome(check, &found.rows));
            }
            Ok(sparkify_core::checks::passed(outcomes)?)
        }
        Step::RecordRun { closing, dialect } => {
            for s in closing.record(dialect, &rows.counted) {
                client.batch_execute(&s).await.map_err(sql_error(&s))?;
            }
            Ok(())
        }
        Step::CheckLedger { digest } => {
            let held = query_text(client, sparkify_core::ledger::SELECT).await?;
            if sparkify_core::ledger::digest(&held.rows) != *digest {
                return Err(Error::LedgerChanged);
            }
            Ok(())
        }
    }
}

/// Redshift's load lock: `LOCK` of the lock table, tried at once; when another load holds it,
/// whoever hears of waits is told, the transaction begun again and the lock waited for up to
/// the lock timeout (`statement_timeout`, which Redshift has; `lock_timeout` it has not).
async fn lock_table(client: &Client, wait: &Wait) -> Result<()> {
    let lock = format!("LOCK {}", crate::plan::LOCK_TABLE);
    let timed = |ms: u128| format!("SET statement_timeout TO {}", ms.max(1));
    let attempt = format!("{}; {lock}; SET statement_timeout TO 0", timed(200));
    match client.batch_execute(&attempt).await {
        Ok(()) => return Ok(()),
        Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => {}
        Err(e) => return Err(sql_error(&lock)(e)),
    }
    // Held by another load: its transaction is aborted; begin again, and wait.
    client
        .batch_execute("ROLLBACK; SET statement_timeout TO 0; BEGIN")
        .await
        .map_err(sql_error("BEGIN"))?;
    if let Some(OnWait(on_wait)) = &wait.on_wait {
        on_wait(&Waiting {
            sink: wait.sink.clone(),
            reason: "another load holds its lock".into(),
            waiting_for: "the lock".into(),
            holder: String::new(),
            since: None,
            timeout: wait.timeout,
        });
    }
    let started = std::time::Instant::now();
    let waited = format!(
        "{}; {lock}; SET statement_timeout TO 0",
        timed(wait.timeout.as_millis())
    );
    match client.batch_execute(&waited).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(Error::Locked {
                holder: String::new(),
                waited: started.elapsed().as_secs(),
            })
        }
        Err(e) => Err(sql_error(&lock)(e)),
    }
}

/// Runs one statement; a lock not had in time (`lock_timeout`) is [`Error::Locked`], naming
/// who holds sparkify's load lock.
async fn run_sql(client: &Client, s: &str) -> Result<()> {
    let started = std::time::Instant::now();
    match client.batch_execute(s).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            let _ = client.batch_execute("ROLLBACK").await;
            let holder = lock_holder(client).await;
            Err(Error::Locked {
                holder: holder.described(),
                waited: started.elapsed().as_secs(),
            })
        }
        Err(e) => Err(sql_error(s)(e)),
    }
}

/// Who holds sparkify's load lock, and since when.
struct Holder {
    /// ` (PID 123, application sparkify)`, or empty.
    who: String,
    since: Option<std::time::SystemTime>,
    /// The start of the holder's transaction as PostgreSQL prints it.
    since_text: String,
}

impl Holder {
    /// ` (PID 123, application sparkify, since …)`, or empty.
    fn described(&self) -> String {
        match self.who.strip_suffix(')') {
            Some(who) => format!("{who}, since {})", self.since_text),
            None => String::new(),
        }
    }
}

async fn lock_holder(client: &Client) -> Holder {
    let sql = format!(
        "SELECT a.pid, a.application_name, a.xact_start, \
         CAST(EXTRACT(EPOCH FROM a.xact_start) * 1000 AS BIGINT) FROM pg_locks AS l \
         JOIN pg_stat_activity AS a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {} LIMIT 1",
        crate::plan::LOCK_KEY
    );
    let row = match query_text(client, &sql).await {
        Ok(QueryResult { rows, .. }) => rows.into_iter().next(),
        Err(_) => None,
    };
    let Some(r) = row else {
        return Holder {
            who: String::new(),
            since: None,
            since_text: String::new(),
        };
    };
    let v = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    let since = v(3)
        .parse::<u64>()
        .ok()
        .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
    Holder {
        who: format!(" (PID {}, application {})", v(0), v(1)),
        since,
        since_text: v(2),
    }
}

/// Runs `sql` (simple protocol) and returns its last result set as text.
pub(crate) async fn query_text(client: &Client, sql: &str) -> Result<QueryResult> {
    let messages = client.simple_query(sql).await.map_err(sql_error(sql))?;
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for m in messages {
        match m {
            tokio_postgres::SimpleQueryMessage::RowDescription(desc) => {
                columns = desc.iter().map(|c| c.name().to_owned()).collect();
            }
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                if columns.is_empty() {
                    columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
                }
                rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    Ok(QueryResult { columns, rows })
}
