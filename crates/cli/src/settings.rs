//! Settings, resolved once: flags, then the environment, then `sparkify.toml`, then defaults.
//! This is the one place that precedence is worked out; each sink crate owns its sections of
//! the file (and its own secret lookup), and gets back a config it is built from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sparkify::sink::{DuckDbConfig, ParquetConfig, Transform, WarehouseConfig};
use sparkify::{CheckOptions, OnNewField, SinkConfig, SinkSpec, SongplaysMode};
use sparkify_cluster::{Cloud, ClusterSection};
use sparkify_core::source::Input;
use sparkify_s3::{AwsSection, S3Options, S3Section};
use sparkify_sink_redshift::{CopySettings, CredentialSource, IamSection, RedshiftSection};

use crate::args::{
    CompressionArg, ConfigArgs, DuckDbArgs, LoadArgs, NewFieldArg, ParquetArgs, RedshiftArgs,
    S3Args, Songplays, TransformArg,
};
use crate::exit::Failure;
use crate::layers::{FlagValue, Layered, Origin};

/// `sparkify.toml` merged with the environment and the flags ([`Layered`]): each section
/// belongs to the crate that uses it.
#[derive(Debug, Default)]
pub struct File {
    pub redshift: RedshiftSection,
    pub s3: S3Section,
    pub iam: IamSection,
    pub aws: AwsSection,
    pub cluster: ClusterSection,
}

impl File {
    /// The sections of `layers`; a section sparkify does not know is an error.
    pub fn from_layers(layers: &Layered) -> Result<File, Failure> {
        if let Some(unknown) = layers.unknown_sections().first() {
            return Err(Failure::Usage(format!(
                "{}: unknown section [{unknown}]: expected [aws], [cluster], [iam], [redshift] \
                 or [s3]",
                layers.path.display()
            )));
        }
        if matches!(layers.origin("redshift", "password"), Some(Origin::File(_))) {
            warn_plaintext_password(&layers.path);
        }
        Ok(File {
            redshift: layers.section("redshift")?,
            s3: layers.section("s3")?,
            iam: layers.section("iam")?,
            aws: layers.section("aws")?,
            cluster: layers.section("cluster")?,
        })
    }

    /// The settings every command reads: `--config` with the environment, and `flags`.
    pub fn load(config: &ConfigArgs, flags: &[FlagValue]) -> Result<File, Failure> {
        File::from_layers(&Layered::load(config, flags)?)
    }
}

/// Once a run: a password in the config file works, but the file is plain text.
fn warn_plaintext_password(path: &Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        crate::log::warn(&format!(
            "{} holds [redshift] password in plain text; prefer PGPASSWORD, ~/.pgpass \
             (libpq's password file) or --iam-auth",
            path.display()
        ));
    });
}

/// The flags that set `sparkify.toml` settings, as layers.
pub fn flag_values(s3: Option<&S3Args>, redshift: Option<&RedshiftArgs>) -> Vec<FlagValue> {
    let text = |v: &Option<String>| v.clone().map(toml::Value::String);
    let mut out = Vec::new();
    if let Some(s3) = s3 {
        out.push(("s3", "endpoint", text(&s3.s3_endpoint)));
        out.push(("s3", "region", text(&s3.s3_region)));
        let int =
            |v: Option<u64>| v.map(|n| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
        out.push(("s3", "connect_timeout", int(s3.s3_connect_timeout)));
        out.push(("s3", "read_timeout", int(s3.s3_read_timeout)));
        out.push(("s3", "attempts", int(s3.s3_attempts.map(u64::from))));
    }
    if let Some(r) = redshift {
        out.push(("redshift", "host", text(&r.redshift_host)));
        out.push((
            "redshift",
            "port",
            r.redshift_port.map(|p| toml::Value::Integer(i64::from(p))),
        ));
        out.push(("redshift", "database", text(&r.redshift_database)));
        out.push(("redshift", "user", text(&r.redshift_user)));
        out.push(("redshift", "copy_from", text(&r.copy_from)));
        out.push(("s3", "upload_prefix", text(&r.upload_prefix)));
        out.push((
            "redshift",
            "iam_auth",
            r.iam_auth.then_some(toml::Value::Boolean(true)),
        ));
    }
    out
}

/// Everything one load needs.
#[derive(Debug)]
pub struct LoadSettings {
    pub songs: Vec<Input>,
    pub events: Vec<Input>,
    pub sink: SinkConfig,
    /// What the engine is given besides the input and the sink.
    pub options: sparkify::Options,
    pub summary_json: Option<PathBuf>,
    pub dry_run: bool,
}

impl LoadSettings {
    pub fn resolve(
        songs: Vec<Input>,
        events: Vec<Input>,
        sink: &SinkSpec,
        args: LoadArgs,
    ) -> Result<Self, Failure> {
        let file = File::load(
            &args.config,
            &flag_values(Some(&args.s3), Some(&args.redshift)),
        )?;
        let mode = songplays_mode(args.run.songplays);
        if !args.run.check && args.run.freshness.max_age.is_some() {
            return Err(Failure::Usage(
                "--max-age sets a check: add --check to run the checks before the COMMIT".into(),
            ));
        }
        let sink = SinkResolver {
            file: &file,
            s3: &args.s3,
            duckdb: &args.duckdb,
            parquet: &args.parquet,
            mode,
            songs: &songs,
            events: &events,
            lock_timeout: Duration::from_secs(args.run.lock_timeout),
        }
        .resolve(sink);
        Ok(LoadSettings {
            sink,
            options: sparkify::Options {
                max_errors: args.run.max_errors,
                mode,
                threads: args.run.threads,
                batch_size: args.run.batch_size.max(1),
                in_flight: args.run.in_flight,
                incremental: args.run.incremental,
                prune: args.run.prune,
                rebuild: args.run.rebuild,
                s3: s3_options(&args.s3, &file),
                s3_concurrency: args.s3.s3_concurrency.max(1),
                checks: args.run.check.then_some(CheckOptions {
                    mode,
                    max_age: args.run.freshness.max_age,
                    as_of_ms: args.run.freshness.as_of,
                }),
                on_new_field: match args.run.on_new_field {
                    NewFieldArg::Warn => OnNewField::Warn,
                    NewFieldArg::Fail => OnNewField::Fail,
                    NewFieldArg::Ignore => OnNewField::Ignore,
                },
                command: None,
            },
            summary_json: args.run.summary_json,
            dry_run: args.run.dry_run,
            songs,
            events,
        })
    }
}

/// `--songplays` as the engine takes it.
pub fn songplays_mode(songplays: Songplays) -> SongplaysMode {
    match songplays {
        Songplays::Matched => SongplaysMode::Matched,
        Songplays::All => SongplaysMode::All,
    }
}

/// The sink of `sparkify tables`, `sql` and `analytics`: only what DDL, queries and a
/// connection need.
pub fn sql_sink(
    spec: &SinkSpec,
    config: &ConfigArgs,
    redshift: &RedshiftArgs,
) -> Result<SinkConfig, Failure> {
    let file = File::load(config, &flag_values(None, Some(redshift)))?;
    Ok(SinkResolver {
        file: &file,
        s3: &S3Args {
            s3_concurrency: 1,
            no_sign_request: false,
            s3_endpoint: None,
            s3_region: None,
            s3_connect_timeout: None,
            s3_read_timeout: None,
            s3_attempts: None,
        },
        duckdb: &DuckDbArgs::default(),
        parquet: &ParquetArgs::default(),
        mode: SongplaysMode::Matched,
        songs: &[],
        events: &[],
        lock_timeout: sparkify_core::sink::DEFAULT_LOCK_TIMEOUT,
    }
    .resolve(spec))
}

/// How `s3://` inputs are reached: the S3 flags over `[s3]` of the config file.
pub fn s3_settings(config: &ConfigArgs, flags: &S3Args) -> Result<S3Options, Failure> {
    let file = File::load(config, &flag_values(Some(flags), None))?;
    Ok(s3_options(flags, &file))
}

/// The AWS control plane's clients (IAM, Redshift, EC2): `[aws]`'s region and profile, the
/// endpoint of `AWS_ENDPOINT_URL` (a local stand-in such as moto), the standard chain for the
/// rest.
pub fn aws_options(file: &File) -> S3Options {
    S3Options {
        region: file.aws.region.clone(),
        profile: file.aws.profile.clone(),
        endpoint_url: std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|e| !e.is_empty()),
        ..S3Options::default()
    }
}

/// `[s3]` (with the S3 flags merged in), `[aws]` after it; the SDK's own chain
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, profiles) after both.
pub fn s3_options(flags: &S3Args, file: &File) -> S3Options {
    let defaults = S3Options::default();
    S3Options {
        endpoint_url: file.s3.endpoint.clone(),
        region: file.s3.region.clone().or_else(|| file.aws.region.clone()),
        profile: file.aws.profile.clone(),
        no_sign_request: flags.no_sign_request,
        connect_timeout: file
            .s3
            .connect_timeout
            .map_or(defaults.connect_timeout, Duration::from_secs),
        read_timeout: file
            .s3
            .read_timeout
            .map_or(defaults.read_timeout, Duration::from_secs),
        max_attempts: file.s3.attempts.unwrap_or(defaults.max_attempts).max(1),
        ..defaults
    }
}

/// What `--sink` is resolved with.
struct SinkResolver<'a> {
    file: &'a File,
    s3: &'a S3Args,
    duckdb: &'a DuckDbArgs,
    parquet: &'a ParquetArgs,
    mode: SongplaysMode,
    songs: &'a [Input],
    events: &'a [Input],
    lock_timeout: Duration,
}

impl SinkResolver<'_> {
    fn resolve(&self, spec: &SinkSpec) -> SinkConfig {
        match spec {
            SinkSpec::DuckDb(path) => SinkConfig::DuckDb(DuckDbConfig {
                path: path.clone(),
                transform: match self.duckdb.transform {
                    TransformArg::Memory => Transform::Memory,
                    TransformArg::Sql => Transform::Sql(self.mode),
                },
                lock_timeout: self.lock_timeout,
                on_wait: Some(crate::progress::on_wait()),
            }),
            SinkSpec::Postgres(url) => {
                let mut config = WarehouseConfig::postgres(url.clone(), self.mode);
                config.lock_timeout = self.lock_timeout;
                config.on_wait = Some(crate::progress::on_wait());
                config.into()
            }
            SinkSpec::Redshift => self.redshift().into(),
            SinkSpec::Parquet(location) => SinkConfig::Parquet(ParquetConfig {
                compression: match self.parquet.compression {
                    CompressionArg::Zstd => sparkify::sink::Compression::Zstd,
                    CompressionArg::Snappy => sparkify::sink::Compression::Snappy,
                },
                staging_tables: self.parquet.with_staging_tables,
                concurrency: self.s3.s3_concurrency.max(1),
                s3: s3_options(self.s3, self.file),
                ..ParquetConfig::new(location.clone())
            }),
        }
    }

    /// `[redshift]`, `[s3]` and `[iam]` with the Redshift flags over them. What is missing is
    /// for the sink to report, all at once, when a plan or a load needs it.
    fn redshift(&self) -> WarehouseConfig {
        let file = &self.file;
        // `--songs s3://…` / `--events s3://…` (one prefix each) over `[s3]`.
        let s3_input = |inputs: &[Input]| match inputs {
            [Input::S3(url)] => Some(url.to_string()),
            _ => None,
        };
        let copy = CopySettings {
            copy_from: file.redshift.copy_from.clone(),
            events: s3_input(self.events).or_else(|| file.s3.events.clone()),
            songs: s3_input(self.songs).or_else(|| file.s3.songs.clone()),
            jsonpaths: file.s3.jsonpaths.clone(),
            region: file.s3.region.clone().or_else(|| file.aws.region.clone()),
            upload_prefix: file.s3.upload_prefix.clone(),
            iam_role: file.iam.role_arn.clone(),
            serverless: file.redshift.is_serverless(),
        };
        let section = &file.redshift;
        let mut config = WarehouseConfig::redshift(section, copy, self.mode);
        config.upload.concurrency = self.s3.s3_concurrency.max(1);
        config.s3 = s3_options(self.s3, file);
        config.lock_timeout = self.lock_timeout;
        config.on_wait = Some(crate::progress::on_wait());
        if section.iam_auth == Some(true) {
            config.connection = config.connection.with_iam(iam_credentials(file));
        }
        config
    }
}

/// `--iam-auth`: credentials asked when a connection is made: from `GetCredentials` for
/// `[redshift] workgroup` and database on Serverless (the user is the caller's IAM
/// identity), else from `GetClusterCredentials` for `[cluster] identifier` and the database
/// and user of `[redshift]` (else `[cluster]`).
fn iam_credentials(file: &File) -> CredentialSource {
    let cluster = file.cluster.identifier.clone();
    let workgroup = file
        .redshift
        .is_serverless()
        .then(|| file.redshift.workgroup.clone());
    let database = file
        .redshift
        .database
        .clone()
        .or_else(|| file.cluster.database.clone());
    let user = file
        .redshift
        .user
        .clone()
        .or_else(|| file.cluster.user.clone());
    let aws = aws_options(file);
    std::sync::Arc::new(move || {
        let places = |section: &str, key: &str| {
            crate::layers::setting(section, key).map_or_else(String::new, |k| k.places())
        };
        let ask: Box<dyn Fn(&Cloud) -> sparkify_cluster::Result<_> + Send + Sync> = match &workgroup
        {
            Some(workgroup) => {
                let workgroup = workgroup.clone().ok_or_else(|| {
                    format!(
                        "--iam-auth on Redshift Serverless needs [redshift] workgroup: set it \
                         with {}",
                        places("redshift", "workgroup")
                    )
                })?;
                let database = database.clone().ok_or_else(|| {
                    format!(
                        "--iam-auth needs the database: set it with {}",
                        places("redshift", "database")
                    )
                })?;
                Box::new(move |cloud| cloud.serverless_credentials(&workgroup, &database))
            }
            None => {
                let cluster = cluster.clone().ok_or_else(|| {
                    format!(
                        "--iam-auth needs [cluster] identifier: set it with {}",
                        places("cluster", "identifier")
                    )
                })?;
                let (Some(database), Some(user)) = (database.clone(), user.clone()) else {
                    return Err(format!(
                        "--iam-auth needs the database and user: set them with {} and {}",
                        places("redshift", "database"),
                        places("redshift", "user")
                    ));
                };
                Box::new(move |cloud| cloud.credentials(&cluster, &database, &user))
            }
        };
        // Asked from inside the sink's runtime: the AWS clients get a thread of their own.
        let got = std::thread::scope(|s| s.spawn(|| ask(&Cloud::connect(&aws)?)).join())
            .map_err(|_| "the credentials request panicked".to_owned())?
            .map_err(|e| sparkify_core::error::chain(&e))?;
        Ok((got.user, got.password))
    })
}
