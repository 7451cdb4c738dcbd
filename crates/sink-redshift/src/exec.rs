//! Running a plan on a connection: statements as they are, `COPY … FROM STDIN` of the parsed
//! tables, `COPY` from S3 with its load errors read back on failure; any failure rolls back.

use sparkify_core::Tables;
use sparkify_core::sink::QueryResult;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::plan::{Step, insert_rows_sql, load_errors_query, reconcile_sql};
use crate::{Error, Result, copy};

fn sql_error(statement: &str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let statement = statement.to_owned();
    move |source| Error::Sql { statement, source }
}

/// Runs `steps`; on a failure, rolls back (a dropped connection rolls back by itself).
pub(crate) async fn run(
    client: &Client,
    steps: &[Step],
    tables: Option<&Tables<'_>>,
) -> Result<()> {
    for step in steps {
        tracing::debug!(step = %step.text(None).lines().next().unwrap_or(""), "running");
        if let Err(e) = run_step(client, step, tables).await {
            if !client.is_closed() {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            return Err(e);
        }
    }
    Ok(())
}

async fn run_step(client: &Client, step: &Step, tables: Option<&Tables<'_>>) -> Result<()> {
    match step {
        Step::Sql(s) => {
            let started = std::time::Instant::now();
            match client.batch_execute(s).await {
                Ok(()) => Ok(()),
                Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    Err(Error::Locked {
                        holder: lock_holder(client).await,
                        waited: started.elapsed().as_secs(),
                    })
                }
                Err(e) => Err(sql_error(s)(e)),
            }
        }
        Step::CopyIn { table } => {
            let Some(batch) = tables.and_then(|t| t.batch(table)) else {
                return Ok(());
            };
            copy::copy_in(client, table, batch).await
        }
        Step::CopyS3 {
            table,
            sql,
            expected,
            serverless,
        } => {
            if let Err(source) = client.batch_execute(sql).await {
                // The transaction is aborted: roll back before asking what went wrong.
                let _ = client.batch_execute("ROLLBACK").await;
                let details = match query_text(client, load_errors_query(*serverless)).await {
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
                return Err(Error::CopyS3 {
                    table: table.name.to_owned(),
                    details,
                    source,
                });
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
            let Some(tables) = tables else { return Ok(()) };
            let sql = reconcile_sql();
            let counted = query_text(client, &sql).await?.counts();
            Ok(sparkify_core::sink::reconcile(
                &sparkify_core::sink::staged_counts(tables),
                &counted,
            )?)
        }
        Step::InsertRows { table } => {
            let Some(batch) = tables.and_then(|t| t.batch(table)) else {
                return Ok(());
            };
            for s in insert_rows_sql(table, batch) {
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

/// Runs `sql` (simple protocol) and returns its last result set as text.
/// Who holds sparkify's load lock: ` (PID 123, application sparkify, since …)`, or empty.
async fn lock_holder(client: &Client) -> String {
    let sql = format!(
        "SELECT a.pid, a.application_name, a.xact_start FROM pg_locks AS l \
         JOIN pg_stat_activity AS a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {} LIMIT 1",
        crate::plan::LOCK_KEY
    );
    match query_text(client, &sql).await {
        Ok(QueryResult { rows, .. }) => rows
            .first()
            .map(|r| {
                let v = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                format!(" (PID {}, application {}, since {})", v(0), v(1), v(2))
            })
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

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
