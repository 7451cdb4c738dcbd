//! The statements of a load, in order, and running them. The plan is data, so `--dry-run`
//! prints exactly what a load would run, and snapshot tests pin it down.

use arrow::array::RecordBatch;
use chrono::DateTime;
use sparkify_core::Load;
use sparkify_core::model::SongplaysMode;
use sparkify_core::sql::{self, Dialect, RedshiftKeys, literal};
use sparkify_core::table::{LOAD_ERRORS, STAGING_EVENTS, STAGING_SONGS, TableDef};
use tokio_postgres::Client;

use sparkify_s3::S3Url;

use crate::{Error, Flavor, Result, copy, stage};

/// What Redshift's `COPY` reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Staging {
    /// The JSON input itself, where it lies in S3 ([`RedshiftCopy::events`], `songs`,
    /// `jsonpaths`); bad records are Redshift's to find.
    #[default]
    Json,
    /// The core's parsed staging tables, uploaded as Parquet parts under this prefix with a
    /// manifest ([`crate::stage`]); bad records were already reported by the core.
    Parquet { prefix: S3Url },
}

/// How Redshift stages: `COPY` from S3 with an IAM role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedshiftCopy {
    pub staging: Staging,
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
    pub keys: RedshiftKeys,
    /// Rows each COPY must load, when known (checked with `pg_last_copy_count()`).
    pub expected_events: Option<u64>,
    pub expected_songs: Option<u64>,
}

/// One step of a load.
#[derive(Debug, Clone)]
pub enum Step {
    /// A statement, run as it is.
    Sql(String),
    /// `COPY … FROM STDIN` of the run's batch for `table` (PostgreSQL).
    CopyIn { table: &'static TableDef },
    /// `COPY` from S3 (Redshift), its row count checked after.
    CopyS3 {
        table: &'static TableDef,
        sql: String,
        expected: Option<u64>,
        serverless: bool,
    },
    /// The run's rejects as `INSERT`s into `load_errors` (Redshift has no `COPY FROM STDIN`).
    InsertRejects,
}

impl Step {
    /// The statement's text; for [`Step::InsertRejects`], the statements for `load`'s rejects.
    pub fn text(&self, load: Option<&Load<'_>>) -> String {
        match self {
            Step::Sql(s) | Step::CopyS3 { sql: s, .. } => s.clone(),
            Step::CopyIn { table } => copy_in_sql(table),
            Step::InsertRejects => match load {
                Some(load) => insert_rejects_sql(load.load_errors).join(";\n"),
                None => format!(
                    "-- INSERT INTO load_errors ({}) VALUES …: one row per reject of the run",
                    column_list(&LOAD_ERRORS)
                ),
            },
        }
    }
}

pub(crate) fn dialect(flavor: &Flavor) -> Dialect {
    match flavor {
        Flavor::Postgres => Dialect::Postgres,
        Flavor::Redshift(c) => Dialect::Redshift(c.keys.clone()),
    }
}

/// Every step of a load, in order: one transaction that recreates the tables, stages, runs
/// the transforms and records the rejects.
pub(crate) fn load_plan(flavor: &Flavor, mode: SongplaysMode) -> Vec<Step> {
    let d = dialect(flavor);
    let mut steps = vec![Step::Sql("BEGIN".into())];
    steps.extend(sql::recreate_all(&d).into_iter().map(Step::Sql));
    match flavor {
        Flavor::Postgres => {
            steps.push(Step::CopyIn {
                table: &STAGING_EVENTS,
            });
            steps.push(Step::CopyIn {
                table: &STAGING_SONGS,
            });
        }
        Flavor::Redshift(c) => {
            let sql = |table: &TableDef| match &c.staging {
                Staging::Json if table.name == STAGING_EVENTS.name => copy_events_sql(c),
                Staging::Json => copy_songs_sql(c),
                Staging::Parquet { prefix } => copy_parquet_sql(c, table, prefix),
            };
            for (table, expected) in [
                (&STAGING_EVENTS, c.expected_events),
                (&STAGING_SONGS, c.expected_songs),
            ] {
                steps.push(Step::CopyS3 {
                    table,
                    sql: sql(table),
                    expected,
                    serverless: c.serverless,
                });
            }
        }
    }
    steps.extend(sql::transforms(&d, mode).into_iter().map(Step::Sql));
    steps.push(match flavor {
        Flavor::Postgres => Step::CopyIn {
            table: &LOAD_ERRORS,
        },
        Flavor::Redshift(_) => Step::InsertRejects,
    });
    steps.push(Step::Sql("COMMIT".into()));
    steps
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

fn redshift(c: &RedshiftCopy) -> Dialect {
    Dialect::Redshift(c.keys.clone())
}

/// The events: JSON mapped by the JSONPaths file, `ts` read as epoch milliseconds.
pub fn copy_events_sql(c: &RedshiftCopy) -> String {
    let d = redshift(c);
    format!(
        "COPY staging_events FROM {}\nIAM_ROLE {}\nREGION {}\nFORMAT AS JSON {}\nTIMEFORMAT 'epochmillisecs'\nCOMPUPDATE OFF STATUPDATE OFF",
        literal(&c.events, &d),
        literal(&c.iam_role, &d),
        literal(&c.region, &d),
        literal(&c.jsonpaths, &d),
    )
}

/// The song files: JSON keys matched to column names.
pub fn copy_songs_sql(c: &RedshiftCopy) -> String {
    let d = redshift(c);
    format!(
        "COPY staging_songs FROM {}\nIAM_ROLE {}\nREGION {}\nFORMAT AS JSON 'auto'\nCOMPUPDATE OFF STATUPDATE OFF",
        literal(&c.songs, &d),
        literal(&c.iam_role, &d),
        literal(&c.region, &d),
    )
}

/// A staging table from the Parquet parts its manifest names (columns in table order). COPY
/// from Parquet takes no REGION or COMPUPDATE: the bucket must be in the cluster's region.
pub fn copy_parquet_sql(c: &RedshiftCopy, table: &TableDef, prefix: &S3Url) -> String {
    let d = redshift(c);
    format!(
        "COPY {} FROM {}\nIAM_ROLE {}\nFORMAT AS PARQUET\nMANIFEST\nSTATUPDATE OFF",
        table.name,
        literal(&stage::manifest_url(prefix, table).to_string(), &d),
        literal(&c.iam_role, &d),
    )
}

/// The rows a failed COPY left in Redshift's load-error tables: file, line, column, reason,
/// raw value.
pub fn load_errors_query(serverless: bool) -> &'static str {
    if serverless {
        "SELECT TRIM(file_name), line_number, TRIM(column_name), TRIM(error_message), TRIM(column_value)\nFROM sys_load_error_detail\nWHERE query_id = pg_last_copy_id()\nORDER BY file_name, line_number"
    } else {
        "SELECT TRIM(filename), line_number, TRIM(colname), TRIM(err_reason), TRIM(raw_field_value)\nFROM stl_load_errors\nWHERE query = pg_last_copy_id()\nORDER BY filename, line_number"
    }
}

/// `INSERT`s of the `load_errors` batch, 100 rows each, every value a Redshift literal.
fn insert_rejects_sql(batch: &RecordBatch) -> Vec<String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMillisecondType};
    let d = Dialect::Redshift(RedshiftKeys::default());
    let text = |i: usize, row: usize| {
        let c = batch.column(i).as_string::<i32>();
        if c.is_null(row) {
            "NULL".to_owned()
        } else {
            literal(c.value(row), &d)
        }
    };
    let int = |i: usize, row: usize| {
        let c = batch.column(i).as_primitive::<Int64Type>();
        if c.is_null(row) {
            "NULL".to_owned()
        } else {
            c.value(row).to_string()
        }
    };
    let ts = |row: usize| {
        let ms = batch
            .column(6)
            .as_primitive::<TimestampMillisecondType>()
            .value(row);
        let t = DateTime::from_timestamp_millis(ms)
            .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.3f").to_string());
        format!("TIMESTAMP '{}'", t.unwrap_or_default())
    };
    let rows: Vec<String> = (0..batch.num_rows())
        .map(|r| {
            format!(
                "({}, {}, {}, {}, {}, {}, {})",
                text(0, r),
                int(1, r),
                int(2, r),
                text(3, r),
                text(4, r),
                text(5, r),
                ts(r)
            )
        })
        .collect();
    rows.chunks(100)
        .map(|chunk| {
            format!(
                "INSERT INTO load_errors ({}) VALUES\n{}",
                column_list(&LOAD_ERRORS),
                chunk.join(",\n")
            )
        })
        .collect()
}

fn sql_error(statement: &str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let statement = statement.to_owned();
    move |source| Error::Sql { statement, source }
}

/// Runs `steps`; on a failure, rolls back (a dropped connection rolls back by itself).
pub(crate) async fn run(client: &Client, steps: &[Step], load: Option<&Load<'_>>) -> Result<()> {
    for step in steps {
        tracing::debug!(step = %step.text(None).lines().next().unwrap_or(""), "running");
        if let Err(e) = run_step(client, step, load).await {
            if !client.is_closed() {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            return Err(e);
        }
    }
    Ok(())
}

async fn run_step(client: &Client, step: &Step, load: Option<&Load<'_>>) -> Result<()> {
    match step {
        Step::Sql(s) => client.batch_execute(s).await.map_err(sql_error(s)),
        Step::CopyIn { table } => {
            let batch = load.and_then(|l| {
                l.tables()
                    .into_iter()
                    .find(|(t, _)| t.name == table.name)
                    .map(|(_, b)| b)
            });
            let Some(batch) = batch else {
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
        Step::InsertRejects => {
            let Some(load) = load else { return Ok(()) };
            for s in insert_rejects_sql(load.load_errors) {
                client.batch_execute(&s).await.map_err(sql_error(&s))?;
            }
            Ok(())
        }
    }
}

/// A query's result, every value as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    /// Rows of values, `None` for NULL.
    pub rows: Vec<Vec<Option<String>>>,
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
