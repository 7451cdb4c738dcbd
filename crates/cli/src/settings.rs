//! Settings, resolved once: flags, then the environment, then `sparkify.toml`, then defaults.
//! This is the one place that precedence is worked out; each sink crate owns its sections of
//! the file (and its own secret lookup), and gets back a config it is built from.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sparkify_core::model::SongplaysMode;
use sparkify_core::source::Input;
use sparkify_core::source::Location;
use sparkify_s3::{S3Options, S3Section};
use sparkify_sink_duckdb::Transform;
use sparkify_sink_parquet::ParquetConfig;
use sparkify_sink_redshift::{CopySettings, IamSection, RedshiftSection, WarehouseConfig};

use crate::args::{
    CompressionArg, ConfigArgs, DuckDbArgs, LoadArgs, ParquetArgs, RedshiftArgs, S3Args, Songplays,
    TransformArg,
};
use crate::exit::Failure;

/// `sparkify.toml`: each section belongs to the crate that uses it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub redshift: RedshiftSection,
    #[serde(default)]
    pub s3: S3Section,
    #[serde(default)]
    pub iam: IamSection,
}

impl File {
    /// `--config`, else `./sparkify.toml`; a missing file is an empty one unless it was named.
    pub fn load(args: &ConfigArgs) -> Result<File, Failure> {
        let explicit = args.config.is_some();
        let path = args
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("sparkify.toml"));
        read(&path, explicit)
    }
}

fn read(path: &Path, explicit: bool) -> Result<File, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(File::default()),
        Err(e) => Err(Failure::Usage(format!("{}: {e}", path.display()))),
    }
}

/// Where the tables go, and how.
#[derive(Debug, Clone)]
pub enum SinkSettings {
    DuckDb { path: PathBuf, transform: Transform },
    Warehouse(Box<WarehouseConfig>),
    Parquet(ParquetConfig),
}

/// Everything one load needs.
#[derive(Debug)]
pub struct LoadSettings {
    pub songs: Vec<Input>,
    pub events: Vec<Input>,
    pub sink: SinkSettings,
    pub max_errors: u64,
    pub mode: SongplaysMode,
    pub threads: Option<usize>,
    pub batch_size: usize,
    pub summary_json: Option<PathBuf>,
    pub dry_run: bool,
    /// How `s3://` inputs are reached, and GETs at a time.
    pub s3: S3Options,
    pub s3_concurrency: usize,
}

impl LoadSettings {
    pub fn resolve(
        songs: Vec<Input>,
        events: Vec<Input>,
        sink: &str,
        args: LoadArgs,
    ) -> Result<Self, Failure> {
        let file = File::load(&args.config)?;
        let mode = match args.run.songplays {
            Songplays::Matched => SongplaysMode::Matched,
            Songplays::All => SongplaysMode::All,
        };
        let sink = SinkSpec {
            file: &file,
            s3: &args.s3,
            duckdb: &args.duckdb,
            parquet: &args.parquet,
            redshift: &args.redshift,
            mode,
            songs: &songs,
            events: &events,
        }
        .resolve(sink)?;
        Ok(LoadSettings {
            sink,
            max_errors: args.run.max_errors,
            mode,
            threads: args.run.threads,
            batch_size: args.run.batch_size.max(1),
            summary_json: args.run.summary_json,
            dry_run: args.run.dry_run,
            s3: s3_options(&args.s3, &file.s3),
            s3_concurrency: args.s3.s3_concurrency.max(1),
            songs,
            events,
        })
    }
}

/// The sink of `sparkify tables`, `sql` and `analytics`: only what DDL, queries and a
/// connection need.
pub fn sql_sink(
    spec: &str,
    config: &ConfigArgs,
    redshift: &RedshiftArgs,
) -> Result<SinkSettings, Failure> {
    let file = File::load(config)?;
    SinkSpec {
        file: &file,
        s3: &S3Args {
            s3_concurrency: 1,
            no_sign_request: false,
            s3_endpoint: None,
            s3_region: None,
        },
        duckdb: &DuckDbArgs::default(),
        parquet: &ParquetArgs::default(),
        redshift,
        mode: SongplaysMode::Matched,
        songs: &[],
        events: &[],
    }
    .resolve(spec)
}

/// How `s3://` inputs are reached: the S3 flags over `[s3]` of the config file.
pub fn s3_settings(config: &ConfigArgs, flags: &S3Args) -> Result<S3Options, Failure> {
    Ok(s3_options(flags, &File::load(config)?.s3))
}

/// S3 flags over `[s3]`; the SDK's own chain (`AWS_ENDPOINT_URL`, `AWS_REGION`, profiles)
/// after both.
fn s3_options(flags: &S3Args, file: &S3Section) -> S3Options {
    S3Options {
        endpoint_url: flags.s3_endpoint.clone().or_else(|| file.endpoint.clone()),
        region: flags.s3_region.clone().or_else(|| file.region.clone()),
        no_sign_request: flags.no_sign_request,
        ..S3Options::default()
    }
}

/// What `--sink` is resolved with.
struct SinkSpec<'a> {
    file: &'a File,
    s3: &'a S3Args,
    duckdb: &'a DuckDbArgs,
    parquet: &'a ParquetArgs,
    redshift: &'a RedshiftArgs,
    mode: SongplaysMode,
    songs: &'a [Input],
    events: &'a [Input],
}

impl SinkSpec<'_> {
    fn resolve(&self, spec: &str) -> Result<SinkSettings, Failure> {
        if let Some(path) = spec.strip_prefix("duckdb:").filter(|p| !p.is_empty()) {
            let transform = match self.duckdb.transform {
                TransformArg::Memory => Transform::Memory,
                TransformArg::Sql => Transform::Sql(self.mode),
            };
            return Ok(SinkSettings::DuckDb {
                path: path.into(),
                transform,
            });
        }
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            return Ok(SinkSettings::Warehouse(Box::new(
                WarehouseConfig::postgres(spec, self.mode),
            )));
        }
        if spec == "redshift" {
            return Ok(SinkSettings::Warehouse(Box::new(self.redshift())));
        }
        if let Some(out) = spec.strip_prefix("parquet:").filter(|p| !p.is_empty()) {
            let location = Location::parse(out).map_err(|e| Failure::Usage(e.to_string()))?;
            return Ok(SinkSettings::Parquet(ParquetConfig {
                compression: match self.parquet.compression {
                    CompressionArg::Zstd => sparkify_sink_parquet::Compression::Zstd,
                    CompressionArg::Snappy => sparkify_sink_parquet::Compression::Snappy,
                },
                staging_tables: self.parquet.with_staging_tables,
                concurrency: self.s3.s3_concurrency.max(1),
                s3: s3_options(self.s3, &self.file.s3),
                ..ParquetConfig::new(location)
            }));
        }
        Err(Failure::Usage(format!(
            "unknown sink {spec:?}: expected duckdb:PATH, postgres://user@host:port/db, redshift, \
             parquet:DIR or parquet:s3://bucket/prefix"
        )))
    }

    /// `[redshift]`, `[s3]` and `[iam]` with the Redshift flags over them. What is missing is
    /// for the sink to report, all at once, when a plan or a load needs it.
    fn redshift(&self) -> WarehouseConfig {
        let flags = self.redshift;
        let file = &self.file;
        let section = RedshiftSection {
            host: flags
                .redshift_host
                .clone()
                .or_else(|| file.redshift.host.clone()),
            port: flags.redshift_port.or(file.redshift.port),
            database: flags
                .redshift_database
                .clone()
                .or_else(|| file.redshift.database.clone()),
            user: flags
                .redshift_user
                .clone()
                .or_else(|| file.redshift.user.clone()),
            ..file.redshift.clone()
        };
        // `--songs s3://…` / `--events s3://…` (one prefix each) over `[s3]`.
        let s3_input = |inputs: &[Input]| match inputs {
            [Input::S3(url)] => Some(url.to_string()),
            _ => None,
        };
        let copy = CopySettings {
            copy_from: flags
                .copy_from
                .clone()
                .or_else(|| file.redshift.copy_from.clone()),
            events: s3_input(self.events).or_else(|| file.s3.events.clone()),
            songs: s3_input(self.songs).or_else(|| file.s3.songs.clone()),
            jsonpaths: file.s3.jsonpaths.clone(),
            region: file.s3.region.clone(),
            upload_prefix: flags
                .upload_prefix
                .clone()
                .or_else(|| file.s3.upload_prefix.clone()),
            iam_role: file.iam.role_arn.clone(),
            serverless: file.redshift.serverless,
        };
        let mut config = WarehouseConfig::redshift(&section, copy, self.mode);
        config.upload.concurrency = self.s3.s3_concurrency.max(1);
        config.s3 = s3_options(self.s3, &file.s3);
        config
    }
}
