//! sparkify-sink-redshift: loads Amazon Redshift or PostgreSQL over the same wire protocol
//! (tokio-postgres). Staging is `COPY`: from S3 on Redshift, `FROM STDIN` (binary) on
//! PostgreSQL; then the transforms of [`sparkify_core::sql`] build the star schema on the
//! server. Everything, DDL included, runs in one transaction: a failure or a dropped
//! connection leaves the previous tables as they were.
//!
//! ```no_run
//! use sparkify_core::Sink;
//! use sparkify_core::model::SongplaysMode;
//! use sparkify_sink_redshift::{WarehouseConfig, WarehouseSink};
//!
//! let url = "postgres://sparkify@127.0.0.1:5432/sparkify".parse()?;
//! let config = WarehouseConfig::postgres(url, SongplaysMode::Matched);
//! let sink = WarehouseSink::new(config);
//! for statement in sink.plan()? {
//!     println!("{statement};");
//! }
//! # Ok::<(), sparkify_sink_redshift::Error>(())
//! ```
//!
//! Modules: [`config`] (the `sparkify.toml` sections and the settings a sink is built from),
//! [`plan`] (the statements, as data), `exec` (running them), `copy` (`COPY … FROM STDIN`),
//! [`upload`] (Redshift's Parquet upload), `target` (where to connect).

mod copy;
mod exec;
mod target;

pub mod config;
pub mod plan;
pub mod upload;

use std::sync::Arc;

use sparkify_core::sink::{Closing, Staging, TablesAction};
use sparkify_core::sql::{self, Dialect};
use sparkify_core::table::{STAGING_EVENTS, STAGING_SONGS};
use sparkify_core::{Load, Sink};
use sparkify_s3::{LazyS3, S3};
use tokio_postgres::Client;

pub use config::{
    Connection, CopySettings, CredentialSource, IamSection, RedshiftSection, WarehouseConfig,
};
pub use plan::{
    CopyFrom, Expected, Known, RedshiftCopy, Step, copy_events_sql, copy_parquet_sql,
    copy_songs_sql, skipped_query,
};
pub use sparkify_core::sink::QueryResult;
pub use target::{PASSWORD_ENV, PgUrl, Target, Tls, env_password};
pub use upload::UploadOptions;

/// What can go wrong loading the warehouse. Messages never include a password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or bad; the message names it and where it is set.
    #[error("{0}")]
    Config(String),
    /// Another load held the lock longer than the lock timeout; nothing was committed.
    #[error(
        "another load into this database holds sparkify's load lock{holder}; gave up after \
         {waited} s (--lock-timeout); nothing was committed"
    )]
    Locked { holder: String, waited: u64 },
    /// `--iam-auth`: no temporary credentials.
    #[error("IAM database credentials: {0}")]
    Credentials(String),
    /// A malformed `s3://` URL in the settings, or an input that failed while a streamed load
    /// was read (nothing was committed).
    #[error(transparent)]
    Core(#[from] sparkify_core::Error),
    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{statement}\nfailed")]
    Sql {
        statement: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A COPY from S3 the warehouse refused: its reason, then the rows of its load-error
    /// table (said here, after the reason, rather than before it as a cause would be).
    #[error("COPY into {table} failed: {reason}\n{details}")]
    CopyS3 {
        table: String,
        reason: String,
        details: String,
    },
    /// COPY from the JSON found more bad records than `--max-errors` allows (Redshift's
    /// `MAXERROR`): nothing was committed. Each is listed from the load-error table.
    #[error(
        "COPY into {table} found {rejected} bad records, more than --max-errors {max}; \
         nothing was committed:\n{details}"
    )]
    CopyRejected {
        table: String,
        rejected: usize,
        max: u64,
        details: String,
    },
    #[error(transparent)]
    Unreconciled(#[from] sparkify_core::sink::Unreconciled),
    /// Another load changed `etl_files` since this incremental run read it.
    #[error(
        "another load changed etl_files since this incremental run read it; nothing was \
         committed. Run it again"
    )]
    LedgerChanged,
    /// An incremental load's values are longer than a key column of the star holds, and
    /// Redshift alters no key column's type.
    #[error(transparent)]
    KeyTooNarrow(#[from] plan::KeyTooNarrow),
    #[error("COPY into {table} loaded {got} rows, expected {expected}")]
    CopyCount {
        table: String,
        expected: u64,
        got: u64,
    },
    #[error("the Parquet upload")]
    Upload(#[from] sparkify_parquet::Error),
    #[error(transparent)]
    S3(#[from] sparkify_s3::Error),
    #[error("{0} is not a warehouse dialect: expected PostgreSQL or Redshift")]
    Dialect(&'static str),
    #[error("cannot start the async runtime")]
    Runtime(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The Redshift or PostgreSQL sink.
#[derive(Debug)]
pub struct WarehouseSink {
    config: WarehouseConfig,
    /// What the next load does before its COMMIT.
    closing: Option<Closing>,
    /// The Parquet upload's client, connected when first needed.
    s3: LazyS3,
}

impl WarehouseSink {
    pub fn new(config: WarehouseConfig) -> Self {
        let s3 = LazyS3::new(config.s3.clone());
        WarehouseSink {
            config,
            s3,
            closing: None,
        }
    }

    /// The Parquet upload's S3 client: `s3` instead of one made from the config's options.
    pub fn with_s3(mut self, s3: Arc<S3>) -> Self {
        self.s3 = LazyS3::connected(s3);
        self
    }

    /// Who hears of a wait for another load's lock, and what they are told.
    fn wait(&self) -> exec::Wait {
        exec::Wait {
            on_wait: self.config.on_wait.clone(),
            sink: Sink::describe(self),
            timeout: self.config.lock_timeout,
        }
    }

    /// Redshift's COPY settings, resolved, with the bad records the load allows; `None` for
    /// PostgreSQL.
    fn redshift_copy(&self) -> Result<Option<RedshiftCopy>> {
        let max_errors = self.closing.as_ref().map_or(0, |c| c.max_errors);
        match self.config.dialect {
            Dialect::Redshift(_) => self
                .config
                .copy
                .resolve()
                .map(|c| Some(RedshiftCopy { max_errors, ..c })),
            Dialect::Postgres => Ok(None),
            Dialect::DuckDb => Err(Error::Dialect("DuckDB")),
        }
    }

    /// With the Parquet upload, uploads the staging tables of `rows` as they come and
    /// returns the row counts COPY must load.
    fn upload(&self, copy: &RedshiftCopy, rows: &mut exec::Rows<'_>) -> Result<Known> {
        let CopyFrom::Parquet { prefix } = &copy.copy_from else {
            return Ok(Default::default());
        };
        if !rows.parsed() {
            return Ok(Default::default());
        }
        let s3 = self.s3.get()?;
        let mut uploaded = Vec::new();
        for table in [&STAGING_EVENTS, &STAGING_SONGS] {
            let mut uploader = upload::Uploader::new(&s3, prefix, table, &self.config.upload);
            while let Some(batches) = rows.next_of(table)? {
                uploader.push(batches)?;
            }
            uploaded.push(uploader.finish()?);
        }
        rows.phase("copying into Redshift");
        tracing::info!(
            events_parts = uploaded[0].parts.len(),
            songs_parts = uploaded[1].parts.len(),
            "uploaded as Parquet"
        );
        let mut widths = uploaded[0].widths.clone();
        widths.merge(&uploaded[1].widths);
        let counts = Expected {
            events: Some(uploaded[0].rows),
            songs: Some(uploaded[1].rows),
        };
        Ok(Known { counts, widths })
    }

    /// Stages `rows` (uploading them first with the Parquet upload) and runs the load's plan.
    fn load_rows(&self, copy: Option<&RedshiftCopy>, rows: &mut exec::Rows<'_>) -> Result<()> {
        // The staging tables' widths are known here when the rows were uploaded from here;
        // the star's are measured in the warehouse once the staging tables are filled.
        let known = match copy {
            Some(copy) => self.upload(copy, rows)?,
            None => Default::default(),
        };
        let steps = plan::load_plan(
            &self.config.dialect,
            copy,
            &known,
            self.config.mode,
            self.config.lock_timeout,
            rows.increment(),
            self.closing.as_ref(),
        );
        self.block_on(async {
            let client = self.client().await?;
            exec::run(&client, &steps, rows, &self.wait()).await
        })
    }

    /// Deletes the load's own upload folder once the load has committed or failed: COPY has
    /// read it, or nothing will. A failure to delete does not change the load's outcome; it
    /// is logged, and the folder is left for the user to remove.
    fn remove_upload(&self, copy: &RedshiftCopy) {
        let CopyFrom::Parquet { prefix } = &copy.copy_from else {
            return;
        };
        // `load-…/`: the trailing slash keeps the listing off a neighbouring folder.
        let folder = prefix.join("");
        let removed = self
            .s3
            .get()
            .and_then(|s3| s3.delete_stale(&folder, &std::collections::HashSet::new()));
        if let Err(error) = removed {
            tracing::warn!(%folder, %error, "could not delete the load's Parquet upload");
        }
    }

    /// Runs one query and returns its rows as text (NULL as `None`).
    pub fn query(&self, sql: &str) -> Result<QueryResult> {
        self.block_on(async {
            let client = self.client().await?;
            exec::query_text(&client, sql).await
        })
    }

    async fn client(&self) -> Result<Client> {
        self.config.connection.target()?.connect().await
    }

    /// Runs `f` on a runtime whose worker drives the connection, so rows already sent reach
    /// the server while `f` waits for the reader's next part.
    fn block_on<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        rt.block_on(f)
    }
}

impl Sink for WarehouseSink {
    type Error = Error;

    fn dialect(&self) -> Option<Dialect> {
        Some(self.config.dialect.clone())
    }

    fn describe(&self) -> String {
        let kind = match self.config.dialect {
            Dialect::Redshift(_) => "redshift",
            _ => "postgres",
        };
        match self.config.connection.target() {
            Ok(t) => format!("{kind}://{}", t.describe()),
            Err(_) => kind.to_owned(),
        }
    }

    fn builds_star(&self) -> bool {
        true
    }

    fn staging(&self) -> Staging {
        match self.config.dialect {
            Dialect::Redshift(_) if self.config.copy.is_json() => Staging::InWarehouse,
            _ => Staging::Parsed,
        }
    }

    fn plan(&self) -> Result<Vec<String>> {
        let copy = self
            .redshift_copy()?
            .map(|c| c.for_load(plan::LOAD_FOLDER_SHOWN));
        Ok(plan::load_plan(
            &self.config.dialect,
            copy.as_ref(),
            &Known::default(),
            self.config.mode,
            self.config.lock_timeout,
            None,
            self.closing.as_ref(),
        )
        .iter()
        .map(|s| s.text())
        .collect())
    }

    fn tables_sql(&self, action: TablesAction) -> Result<Vec<String>> {
        Ok(sql::tables_sql(action, &self.config.dialect))
    }

    fn execute(&mut self, statements: &[String]) -> Result<()> {
        self.block_on(async {
            let client = self.client().await?;
            let mut steps = vec![Step::Sql("BEGIN".into())];
            steps.extend(statements.iter().cloned().map(Step::Sql));
            steps.push(Step::Sql("COMMIT".into()));
            exec::run(&client, &steps, &mut exec::Rows::new(None), &self.wait()).await
        })
    }

    fn check(&mut self) -> Result<()> {
        self.redshift_copy()?;
        self.query("SELECT 1").map(|_| ())
    }

    fn query(&mut self, sql: &str) -> Result<QueryResult> {
        WarehouseSink::query(self, sql)
    }

    fn close_with(&mut self, closing: Closing) {
        self.closing = Some(closing);
    }

    fn load(&mut self, load: Load<'_>) -> Result<()> {
        let folder = format!("load-{}", sparkify_core::sink::run_id());
        let copy = self.redshift_copy()?.map(|c| c.for_load(&folder));
        load.with_staged(|staged| {
            let mut rows = exec::Rows::new(staged);
            let loaded = self.load_rows(copy.as_ref(), &mut rows);
            if let Some(copy) = &copy
                && rows.parsed()
            {
                self.remove_upload(copy);
            }
            loaded
        })
    }
}
