//! `--sink`: parsing it and driving whichever sink it names.

use anyhow::{Context, anyhow};
use sparkify_core::model::SongplaysMode;
use sparkify_core::sql::RedshiftKeys;
use sparkify_core::{Load, Sink};
use sparkify_sink_duckdb::{DuckDbSink, Transform};
use sparkify_sink_parquet::{Compression, ParquetSink};
use sparkify_sink_redshift::stage::StageOptions;
use sparkify_sink_redshift::{Flavor, RedshiftCopy, Staging, Target, Tls, WarehouseSink};

use crate::config::Config;
use crate::etl::{Failure, USAGE};
use crate::s3::LazyS3;

/// Any sink the command line can name.
#[derive(Debug)]
pub enum AnySink {
    DuckDb(DuckDbSink),
    Warehouse(Box<WarehouseSink>),
    Parquet(ParquetSink),
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
    /// The run's S3 client, for `parquet:s3://…` and Parquet staging.
    pub s3: &'a LazyS3,
    /// Parquet: also write the staging tables; the codec.
    pub with_staging: bool,
    pub compression: Compression,
    /// `--staging` / `--staging-prefix` (Redshift).
    pub staging: Option<&'a str>,
    pub staging_prefix: Option<&'a str>,
    /// S3 requests at a time.
    pub concurrency: usize,
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
    if let Some(out) = spec.strip_prefix("parquet:").filter(|p| !p.is_empty()) {
        let target = if out.starts_with("s3://") {
            sparkify_sink_parquet::Target::S3 {
                s3: opts.s3.get()?,
                url: crate::s3::url(out)?,
            }
        } else {
            sparkify_sink_parquet::Target::Dir(out.into())
        };
        return Ok(AnySink::Parquet(
            ParquetSink::new(target)
                .with_staging(opts.with_staging)
                .with_compression(opts.compression)
                .with_concurrency(opts.concurrency),
        ));
    }
    Err(usage(format!(
        "unknown sink {spec:?}: expected duckdb:PATH, postgres://user@host:port/db, redshift, \
         parquet:DIR or parquet:s3://bucket/prefix"
    )))
}

fn redshift(opts: SinkOptions<'_>) -> Result<AnySink, Failure> {
    let c = opts.config;
    let need = |v: Option<&str>, what: &str| {
        v.map(str::to_owned)
            .ok_or_else(|| usage(format!("--sink redshift needs {what} (sparkify.toml)")))
    };
    let staging = match opts.staging.or(c.redshift.staging.as_deref()) {
        None | Some("json") => Staging::Json,
        Some("parquet") => Staging::Parquet {
            prefix: crate::s3::url(&need(
                opts.staging_prefix.or(c.s3.staging_prefix.as_deref()),
                "--staging-prefix s3://… or [s3] staging_prefix",
            )?)?,
        },
        Some(other) => {
            return Err(usage(format!(
                "unknown staging {other:?}: expected json or parquet"
            )));
        }
    };
    let json = staging == Staging::Json;
    // JSON staging reads the input from S3; Parquet staging does not need these.
    let json_need = |v: Option<&str>, what: &str| {
        if json {
            need(v, what)
        } else {
            Ok(v.unwrap_or_default().to_owned())
        }
    };
    let copy = RedshiftCopy {
        events: json_need(
            opts.s3_events.or(c.s3.events.as_deref()),
            "--events s3://… or [s3] events",
        )?,
        songs: json_need(
            opts.s3_songs.or(c.s3.songs.as_deref()),
            "--songs s3://… or [s3] songs",
        )?,
        jsonpaths: json_need(c.s3.jsonpaths.as_deref(), "[s3] jsonpaths")?,
        region: json_need(c.s3.region.as_deref(), "[s3] region")?,
        staging,
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
    let mut sink = WarehouseSink::new(target, Flavor::Redshift(copy), opts.mode);
    if !json && !opts.dry_run {
        let stage = StageOptions {
            slices: c.redshift.slices.unwrap_or(StageOptions::default().slices),
            concurrency: opts.concurrency,
            ..StageOptions::default()
        };
        sink = sink.with_s3(opts.s3.get()?, stage);
    }
    Ok(AnySink::Warehouse(Box::new(sink)))
}

impl AnySink {
    pub fn describe(&self) -> String {
        match self {
            AnySink::DuckDb(s) => s.describe(),
            AnySink::Warehouse(s) => s.describe(),
            AnySink::Parquet(s) => s.describe(),
        }
    }

    /// Whether the sink stages from S3 itself (Redshift's JSON COPY) rather than from the
    /// core's batches.
    pub fn stages_from_s3(&self) -> bool {
        matches!(self, AnySink::Warehouse(s) if s.copies_json_from_s3())
    }

    pub fn check(&mut self) -> anyhow::Result<()> {
        let what = self.describe();
        match self {
            AnySink::DuckDb(s) => s.check().map_err(anyhow::Error::from),
            AnySink::Warehouse(s) => s.check().map_err(anyhow::Error::from),
            AnySink::Parquet(s) => s.check().map_err(anyhow::Error::from),
        }
        .with_context(|| format!("sink {what}"))
    }

    pub fn load(&mut self, load: &Load<'_>) -> anyhow::Result<()> {
        let what = self.describe();
        match self {
            AnySink::DuckDb(s) => s.load(load).map_err(anyhow::Error::from),
            AnySink::Warehouse(s) => s.load(load).map_err(anyhow::Error::from),
            AnySink::Parquet(s) => s.load(load).map_err(anyhow::Error::from),
        }
        .with_context(|| format!("loading {what}"))
    }

    pub fn plan_text(&self) -> Vec<String> {
        match self {
            AnySink::DuckDb(s) => s.plan_text(),
            AnySink::Warehouse(s) => s.plan_text(),
            AnySink::Parquet(_) => {
                vec!["-- parquet: no SQL; every table is written as files".into()]
            }
        }
    }

    pub fn tables_sql(&self, create: bool) -> anyhow::Result<Vec<String>> {
        let dialect = match self {
            AnySink::DuckDb(_) => sparkify_core::sql::Dialect::DuckDb,
            AnySink::Warehouse(s) => s.dialect(),
            AnySink::Parquet(_) => anyhow::bail!("a Parquet sink has no tables to create or drop"),
        };
        Ok(if create {
            sparkify_core::sql::recreate_all(&dialect)
        } else {
            sparkify_core::table::ALL_TABLES
                .iter()
                .map(|t| sparkify_core::sql::drop_table(t))
                .collect()
        })
    }

    pub fn execute(&self, statements: &[String]) -> anyhow::Result<()> {
        match self {
            AnySink::DuckDb(s) => s.execute(statements).map_err(anyhow::Error::from),
            AnySink::Warehouse(s) => s.execute(statements).map_err(anyhow::Error::from),
            AnySink::Parquet(_) => anyhow::bail!("a Parquet sink runs no SQL"),
        }
    }
}
