//! sparkify-sink-redshift: loads Amazon Redshift or PostgreSQL over the same wire protocol
//! (tokio-postgres). Staging is `COPY`: from S3 on Redshift, `FROM STDIN` (binary) on
//! PostgreSQL; then the transforms of [`sparkify_core::sql`] build the star schema on the
//! server. Everything, DDL included, runs in one transaction: a failure or a dropped
//! connection leaves the previous tables as they were.
//!
//! ```no_run
//! use sparkify_core::model::SongplaysMode;
//! use sparkify_sink_redshift::{Flavor, Target, WarehouseSink};
//!
//! let target = Target::from_url("postgres://sparkify@127.0.0.1:5432/sparkify")?;
//! let sink = WarehouseSink::new(Some(target), Flavor::Postgres, SongplaysMode::Matched);
//! for statement in sink.plan_text() {
//!     println!("{statement};");
//! }
//! # Ok::<(), sparkify_sink_redshift::Error>(())
//! ```

mod copy;
mod plan;
pub mod stage;

use std::fmt;
use std::sync::Arc;

use sparkify_core::model::SongplaysMode;
use sparkify_core::{Load, Sink};
use tokio_postgres::{Client, NoTls};

pub use plan::{
    QueryResult, RedshiftCopy, Staging, Step, copy_events_sql, copy_parquet_sql, copy_songs_sql,
    load_errors_query,
};
use sparkify_core::table::{STAGING_EVENTS, STAGING_SONGS};
use sparkify_s3::S3;
use stage::StageOptions;

/// What can go wrong loading the warehouse. Messages never include a password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad connection settings: {0}")]
    Config(String),
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{statement}\nfailed: {source}")]
    Sql {
        statement: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("COPY into {table} failed: {source}\n{details}")]
    CopyS3 {
        table: String,
        details: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("COPY into {table} loaded {got} rows, expected {expected}")]
    CopyCount {
        table: String,
        expected: u64,
        got: u64,
    },
    #[error("Parquet staging: {0}")]
    Stage(#[from] sparkify_sink_parquet::Error),
    #[error(transparent)]
    S3(#[from] sparkify_s3::Error),
    #[error("no connection settings: this sink was built for --dry-run only")]
    NoTarget,
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Disable,
    /// TLS with the web PKI roots; Redshift's default.
    Require,
}

/// Where to connect. The password, when there is one, is only handed to the driver.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    tls: Tls,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Target {
    /// From a `postgres://user[:password]@host:port/db[?sslmode=require]` URL. With no password
    /// in it, `PGPASSWORD` is used when set.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| {
                Error::Config(format!("{e} (in the postgres:// URL)"))
            })?;
        if config.get_password().is_none()
            && let Ok(pw) = std::env::var("PGPASSWORD")
        {
            config.password(pw);
        }
        let tls = if url.contains("sslmode=require") {
            Tls::Require
        } else {
            Tls::Disable
        };
        config.application_name("sparkify");
        Ok(Target { config, tls })
    }

    /// From parts, as for Redshift (`password` from `PGPASSWORD` or the config file).
    pub fn new(
        host: &str,
        port: u16,
        dbname: &str,
        user: &str,
        password: Option<&str>,
        tls: Tls,
    ) -> Self {
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(port)
            .dbname(dbname)
            .user(user)
            .application_name("sparkify");
        if let Some(pw) = password {
            config.password(pw);
        }
        Target { config, tls }
    }

    /// `user@host:port/db`, never the password.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            self.config.get_user().unwrap_or("?"),
            self.config.get_dbname().unwrap_or("?")
        )
    }

    async fn connect(&self) -> Result<Client> {
        let err = |source| Error::Connect {
            target: self.describe(),
            source,
        };
        match self.tls {
            Tls::Disable => {
                let (client, conn) = self.config.connect(NoTls).await.map_err(err)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::warn!(error = %e, "connection ended");
                    }
                });
                Ok(client)
            }
            Tls::Require => {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let tls_config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| Error::Config(format!("TLS: {e}")))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config);
                let (client, conn) = self.config.connect(tls).await.map_err(err)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::warn!(error = %e, "connection ended");
                    }
                });
                Ok(client)
            }
        }
    }
}

/// Which warehouse, and how it stages.
#[derive(Debug, Clone)]
// Made once per run; not worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Flavor {
    /// PostgreSQL: `COPY … FROM STDIN` of the core's staging batches; no DIST/SORT keys.
    Postgres,
    /// Amazon Redshift: `COPY` from S3.
    Redshift(RedshiftCopy),
}

/// The Redshift or PostgreSQL sink.
#[derive(Debug, Clone)]
pub struct WarehouseSink {
    target: Option<Target>,
    flavor: Flavor,
    mode: SongplaysMode,
    s3: Option<Arc<S3>>,
    stage: StageOptions,
}

impl WarehouseSink {
    /// A sink; with no `target` it can only print its plan.
    pub fn new(target: Option<Target>, flavor: Flavor, mode: SongplaysMode) -> Self {
        WarehouseSink {
            target,
            flavor,
            mode,
            s3: None,
            stage: StageOptions::default(),
        }
    }

    /// The S3 client Parquet staging uploads with, and how it cuts the parts.
    pub fn with_s3(mut self, s3: Arc<S3>, stage: StageOptions) -> Self {
        self.s3 = Some(s3);
        self.stage = stage;
        self
    }

    /// Every statement a load runs, in order, as text (for `--dry-run`).
    pub fn plan_text(&self) -> Vec<String> {
        plan::load_plan(&self.flavor, self.mode)
            .iter()
            .map(|s| s.text(None))
            .collect()
    }

    /// The statements of `sparkify tables create` (drop, then create, every table).
    pub fn create_tables_sql(&self) -> Vec<String> {
        sparkify_core::sql::recreate_all(&self.dialect())
    }

    /// The SQL dialect of this warehouse.
    pub fn dialect(&self) -> sparkify_core::sql::Dialect {
        plan::dialect(&self.flavor)
    }

    /// Whether this is Redshift.
    pub fn is_redshift(&self) -> bool {
        matches!(self.flavor, Flavor::Redshift(_))
    }

    /// Whether the cluster reads the JSON input from S3 itself (Redshift with JSON staging):
    /// then sparkify reads nothing.
    pub fn copies_json_from_s3(&self) -> bool {
        matches!(&self.flavor, Flavor::Redshift(c) if c.staging == Staging::Json)
    }

    /// With Parquet staging, uploads `load`'s staging tables and returns the flavor with the
    /// row counts COPY must load; otherwise the flavor as it is.
    fn staged_flavor(&self, load: &Load<'_>) -> Result<Flavor> {
        let mut flavor = self.flavor.clone();
        if let Flavor::Redshift(c) = &mut flavor
            && let Staging::Parquet { prefix } = &c.staging
        {
            let s3 = self.s3.as_ref().ok_or_else(|| {
                Error::Config("Parquet staging needs an S3 client (with_s3)".into())
            })?;
            let events = stage::stage_table(
                s3,
                prefix,
                &STAGING_EVENTS,
                load.staging_events,
                &self.stage,
            )?;
            let songs =
                stage::stage_table(s3, prefix, &STAGING_SONGS, load.staging_songs, &self.stage)?;
            tracing::info!(
                events_parts = events.parts.len(),
                songs_parts = songs.parts.len(),
                "staged as Parquet"
            );
            c.expected_events = Some(events.rows);
            c.expected_songs = Some(songs.rows);
        }
        Ok(flavor)
    }

    /// The statements of `sparkify tables drop`.
    pub fn drop_tables_sql(&self) -> Vec<String> {
        sparkify_core::table::ALL_TABLES
            .iter()
            .map(|t| sparkify_core::sql::drop_table(t))
            .collect()
    }

    /// Runs `statements` in one transaction.
    pub fn execute(&self, statements: &[String]) -> Result<()> {
        self.block_on(async {
            let client = self.client().await?;
            let mut steps = vec![Step::Sql("BEGIN".into())];
            steps.extend(statements.iter().cloned().map(Step::Sql));
            steps.push(Step::Sql("COMMIT".into()));
            plan::run(&client, &steps, None).await
        })
    }

    /// Runs one query and returns its rows as text (NULL as `None`).
    pub fn query(&self, sql: &str) -> Result<QueryResult> {
        self.block_on(async {
            let client = self.client().await?;
            plan::query_text(&client, sql).await
        })
    }

    async fn client(&self) -> Result<Client> {
        self.target.as_ref().ok_or(Error::NoTarget)?.connect().await
    }

    fn block_on<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(f)
    }
}

impl Sink for WarehouseSink {
    type Error = Error;

    fn describe(&self) -> String {
        let kind = match self.flavor {
            Flavor::Postgres => "postgres",
            Flavor::Redshift(_) => "redshift",
        };
        match &self.target {
            Some(t) => format!("{kind}://{}", t.describe()),
            None => format!("{kind} (dry run)"),
        }
    }

    fn check(&mut self) -> Result<()> {
        self.block_on(async {
            let client = self.client().await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|source| Error::Sql {
                    statement: "SELECT 1".into(),
                    source,
                })?;
            Ok(())
        })
    }

    fn load(&mut self, load: &Load<'_>) -> Result<()> {
        let steps = plan::load_plan(&self.staged_flavor(load)?, self.mode);
        self.block_on(async {
            let client = self.client().await?;
            plan::run(&client, &steps, Some(load)).await
        })
    }
}
