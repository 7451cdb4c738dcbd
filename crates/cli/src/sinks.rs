//! `--sink`: parsing it and driving whichever sink it names.

use anyhow::{Context, anyhow};
use sparkify_core::model::SongplaysMode;
use sparkify_core::sql::RedshiftKeys;
use sparkify_core::{Load, Sink};
use sparkify_sink_duckdb::{DuckDbSink, Transform};
use sparkify_sink_redshift::{Flavor, RedshiftCopy, Target, Tls, WarehouseSink};

use crate::config::Config;
use crate::etl::{Failure, USAGE};

/// Any sink the command line can name.
#[derive(Debug)]
pub enum AnySink {
    DuckDb(DuckDbSink),
    Warehouse(Box<WarehouseSink>),
}

/// What the sink needs besides `--sink`.
#[derive(Debug, Clone, Copy)]
pub struct SinkOptions<'a> {
    pub mode: SongplaysMode,
    /// `--transform sql` (DuckDB only: the warehouses always transform in SQL).
    pub sql_transform: bool,
    pub dry_run: bool,
    pub config: &'a Config,
    /// `s3://` sources for Redshift's COPY, from `--songs`/`--events`.
    pub s3_songs: Option<&'a str>,
    pub s3_events: Option<&'a str>,
}

fn usage(msg: String) -> Failure {
    Failure {
        code: USAGE,
        error: anyhow!(msg),
    }
}

pub fn parse(spec: &str, opts: SinkOptions<'_>) -> Result<AnySink, Failure> {
    if let Some(path) = spec.strip_prefix("duckdb:").filter(|p| !p.is_empty()) {
        let transform = if opts.sql_transform {
            Transform::Sql(opts.mode)
        } else {
            Transform::Memory
        };
        return Ok(AnySink::DuckDb(
            DuckDbSink::new(path).with_transform(transform),
        ));
    }
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        let target = Target::from_url(spec).map_err(|e| usage(e.to_string()))?;
        return Ok(AnySink::Warehouse(Box::new(WarehouseSink::new(
            Some(target),
            Flavor::Postgres,
            opts.mode,
        ))));
    }
    if spec == "redshift" {
        return redshift(opts);
    }
    Err(usage(format!(
        "unknown sink {spec:?}: expected duckdb:PATH, postgres://user@host:port/db or redshift"
    )))
}

fn redshift(opts: SinkOptions<'_>) -> Result<AnySink, Failure> {
    let c = opts.config;
    let need = |v: Option<&str>, what: &str| {
        v.map(str::to_owned)
            .ok_or_else(|| usage(format!("--sink redshift needs {what} (sparkify.toml)")))
    };
    let copy = RedshiftCopy {
        events: need(
            opts.s3_events.or(c.s3.events.as_deref()),
            "--events s3://… or [s3] events",
        )?,
        songs: need(
            opts.s3_songs.or(c.s3.songs.as_deref()),
            "--songs s3://… or [s3] songs",
        )?,
        jsonpaths: need(c.s3.jsonpaths.as_deref(), "[s3] jsonpaths")?,
        region: need(c.s3.region.as_deref(), "[s3] region")?,
        iam_role: need(c.iam.role_arn.as_deref(), "[iam] role_arn")?,
        serverless: c.redshift.serverless,
        keys: RedshiftKeys::default(),
        expected_events: None,
        expected_songs: None,
    };
    let target = if opts.dry_run {
        None
    } else {
        let r = &c.redshift;
        let password = std::env::var("PGPASSWORD")
            .ok()
            .or_else(|| r.password.clone());
        let tls = if r.tls.unwrap_or(true) {
            Tls::Require
        } else {
            Tls::Disable
        };
        Some(Target::new(
            &need(r.host.as_deref(), "[redshift] host")?,
            r.port.unwrap_or(5439),
            &need(r.database.as_deref(), "[redshift] database")?,
            &need(r.user.as_deref(), "[redshift] user")?,
            password.as_deref(),
            tls,
        ))
    };
    Ok(AnySink::Warehouse(Box::new(WarehouseSink::new(
        target,
        Flavor::Redshift(copy),
        opts.mode,
    ))))
}

impl AnySink {
    pub fn describe(&self) -> String {
        match self {
            AnySink::DuckDb(s) => s.describe(),
            AnySink::Warehouse(s) => s.describe(),
        }
    }

    /// Whether the sink stages from S3 itself (Redshift) rather than from the core's batches.
    pub fn stages_from_s3(&self) -> bool {
        matches!(self, AnySink::Warehouse(s) if s.is_redshift())
    }

    pub fn check(&mut self) -> anyhow::Result<()> {
        let what = self.describe();
        match self {
            AnySink::DuckDb(s) => s.check().map_err(anyhow::Error::from),
            AnySink::Warehouse(s) => s.check().map_err(anyhow::Error::from),
        }
        .with_context(|| format!("sink {what}"))
    }

    pub fn load(&mut self, load: &Load<'_>) -> anyhow::Result<()> {
        let what = self.describe();
        match self {
            AnySink::DuckDb(s) => s.load(load).map_err(anyhow::Error::from),
            AnySink::Warehouse(s) => s.load(load).map_err(anyhow::Error::from),
        }
        .with_context(|| format!("loading {what}"))
    }

    pub fn plan_text(&self) -> Vec<String> {
        match self {
            AnySink::DuckDb(s) => s.plan_text(),
            AnySink::Warehouse(s) => s.plan_text(),
        }
    }

    pub fn tables_sql(&self, create: bool) -> Vec<String> {
        let dialect = match self {
            AnySink::DuckDb(_) => sparkify_core::sql::Dialect::DuckDb,
            AnySink::Warehouse(s) => s.dialect(),
        };
        if create {
            sparkify_core::sql::recreate_all(&dialect)
        } else {
            sparkify_core::table::ALL_TABLES
                .iter()
                .map(|t| sparkify_core::sql::drop_table(t))
                .collect()
        }
    }

    pub fn execute(&self, statements: &[String]) -> anyhow::Result<()> {
        match self {
            AnySink::DuckDb(s) => s.execute(statements).map_err(anyhow::Error::from),
            AnySink::Warehouse(s) => s.execute(statements).map_err(anyhow::Error::from),
        }
    }
}
