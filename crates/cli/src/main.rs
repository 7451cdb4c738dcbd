//! `sparkify`: Sparkify's JSON from folders, files or globs into a star schema in DuckDB.
//!
//! ```text
//! sparkify run                                   # the real fixtures into ./sparkify.duckdb
//! sparkify etl --songs DIR --events DIR --sink duckdb:out.duckdb --max-errors 10
//! ```
//!
//! This is the only crate that prints or exits. Exit status: 0 loaded; 2 bad usage or
//! configuration; 3 more rejects than `--max-errors` (nothing committed); 4 a source or sink
//! failed (nothing committed).

mod config;
mod etl;
mod s3;
mod sinks;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::etl::{EtlArgs, Failure};

#[derive(Debug, Parser)]
#[command(
    name = "sparkify",
    version,
    about = "Sparkify's JSON logs into a star schema"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole job offline: the bundled real data into ./sparkify.duckdb.
    Run {
        /// Where the fixtures are (default: ./fixtures/sparkify, i.e. run from the repository's root).
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// The sink (default: duckdb:sparkify.duckdb).
        #[arg(long, default_value = "duckdb:sparkify.duckdb")]
        sink: String,
        #[command(flatten)]
        common: Common,
    },
    /// Extract, transform and load: song files and event logs into a sink.
    Etl {
        /// Song files: a folder (walked recursively), a file, a glob or s3://bucket/prefix.
        #[arg(long, num_args = 1..)]
        songs: Vec<String>,
        /// Event logs: a folder (walked recursively), a file, a glob or s3://bucket/prefix.
        #[arg(long, num_args = 1..)]
        events: Vec<String>,
        /// Where the tables go: duckdb:PATH, postgres://user@host:port/db, redshift,
        /// parquet:DIR or parquet:s3://bucket/prefix.
        #[arg(long)]
        sink: String,
        #[command(flatten)]
        common: Common,
    },
    /// Generate a realistic data set of any size in the real layout.
    Gen {
        /// Where to write song_data/ and log_data/.
        #[arg(long)]
        out: PathBuf,
        /// Song files.
        #[arg(long, default_value_t = 14896)]
        songs: usize,
        /// Days of logs, from 2018-11-01.
        #[arg(long, default_value_t = 30)]
        days: usize,
        /// Distinct users.
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Events per day.
        #[arg(long, default_value_t = 270)]
        events_per_day: usize,
        /// The fraction of plays whose song is in the song files.
        #[arg(long, default_value_t = 0.05)]
        match_fraction: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Write every file gzipped (`.json.gz`).
        #[arg(long)]
        gzip: bool,
    },
    /// Create (drop, then create) or drop every table in a sink.
    Tables {
        #[arg(value_enum)]
        action: TablesAction,
        /// duckdb:PATH, postgres://user@host:port/db, or redshift.
        #[arg(long)]
        sink: String,
        /// Print the statements instead of running them.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        settings: Settings,
    },
}

/// The config file, and Redshift connection settings that override its `[redshift]`.
#[derive(Debug, Clone, Default, clap::Args)]
struct Settings {
    /// The config file (Redshift connection, S3 paths, IAM role); default ./sparkify.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The cluster's endpoint host.
    #[arg(long)]
    redshift_host: Option<String>,
    /// The cluster's port (default 5439).
    #[arg(long)]
    redshift_port: Option<u16>,
    /// The database.
    #[arg(long)]
    redshift_database: Option<String>,
    /// The user (the password comes from PGPASSWORD or the config file).
    #[arg(long)]
    redshift_user: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TablesAction {
    Create,
    Drop,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum TransformArg {
    /// Build the star schema in memory and append it (DuckDB's default).
    Memory,
    /// Stage only; the sink builds the star schema with the shared SQL.
    Sql,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Rejected records allowed before the run commits nothing (as Redshift's MAXERROR).
    #[arg(long, default_value_t = 0)]
    max_errors: u64,
    /// Which plays become songplays.
    #[arg(long, value_enum, default_value_t = Songplays::Matched)]
    songplays: Songplays,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Rows per decoded batch (the tables are the same for any size).
    #[arg(long, default_value_t = sparkify_core::reader::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Also write the run summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Where the star schema is built (PostgreSQL and Redshift always use SQL).
    #[arg(long, value_enum, default_value_t = TransformArg::Memory)]
    transform: TransformArg,
    /// Print every SQL statement the load would run, in order, without connecting.
    #[arg(long)]
    dry_run: bool,
    /// S3 GETs (and uploads) at a time.
    #[arg(long, default_value_t = 64)]
    s3_concurrency: usize,
    /// Send S3 requests unsigned, for public buckets.
    #[arg(long)]
    no_sign_request: bool,
    /// An S3-compatible endpoint (default: [s3] endpoint, else AWS_ENDPOINT_URL).
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// The S3 region (default: [s3] region, else the AWS chain, else us-east-1).
    #[arg(long)]
    s3_region: Option<String>,
    /// Parquet sink: also write staging_events and staging_songs.
    #[arg(long)]
    with_staging: bool,
    /// Parquet sink: the codec.
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd)]
    compression: CompressionArg,
    /// Redshift: what COPY reads, json (the input in S3) or parquet (the parsed staging tables,
    /// uploaded to --staging-prefix). Default: [redshift] staging, else json.
    #[arg(long)]
    staging: Option<String>,
    /// Redshift Parquet staging: where the parts go (default: [s3] staging_prefix).
    #[arg(long)]
    staging_prefix: Option<String>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompressionArg {
    Zstd,
    Snappy,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Songplays {
    /// Only plays whose song is known.
    Matched,
    /// Every play, unknown songs with NULL ids.
    All,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

fn config(flags: Settings) -> Result<config::Config, Failure> {
    let explicit = flags.config.is_some();
    let path = flags
        .config
        .unwrap_or_else(|| PathBuf::from("sparkify.toml"));
    let mut config = config::Config::load(&path, explicit).map_err(|error| Failure {
        code: etl::USAGE,
        error,
    })?;
    let r = &mut config.redshift;
    r.host = flags.redshift_host.or(r.host.take());
    r.port = flags.redshift_port.or(r.port);
    r.database = flags.redshift_database.or(r.database.take());
    r.user = flags.redshift_user.or(r.user.take());
    Ok(config)
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    let (songs, events, sink, common) = match cli.command {
        Command::Gen {
            out,
            songs,
            days,
            users,
            events_per_day,
            match_fraction,
            seed,
            gzip,
        } => {
            if !(0.0..=1.0).contains(&match_fraction) {
                return Err(Failure {
                    code: etl::USAGE,
                    error: anyhow::anyhow!("--match-fraction must be between 0 and 1"),
                });
            }
            let started = std::time::Instant::now();
            let opts = sparkify_core::generate::GenOptions {
                out,
                songs,
                days,
                users,
                events_per_day,
                seed,
                match_fraction,
                gzip,
            };
            let r = sparkify_core::generate::generate(&opts).map_err(|e| Failure {
                code: etl::SOURCE_OR_SINK,
                error: e.into(),
            })?;
            println!(
                "{} song files, {} log files ({} events, {} plays), {} bytes in {:.2} s",
                r.song_files,
                r.log_files,
                r.events,
                r.plays,
                r.bytes,
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Command::Tables {
            action,
            sink,
            dry_run,
            settings,
        } => {
            let config = config(settings)?;
            let opts = sinks::SinkOptions {
                mode: sparkify_core::model::SongplaysMode::Matched,
                sql_transform: false,
                dry_run,
                config: &config,
                s3_songs: None,
                s3_events: None,
                s3: &s3::LazyS3::new(sparkify_s3::S3Options::default()),
                with_staging: false,
                compression: sparkify_sink_parquet::Compression::default(),
                staging: None,
                staging_prefix: None,
                concurrency: 1,
            };
            let sink = sinks::parse(&sink, opts)?;
            let statements = sink
                .tables_sql(matches!(action, TablesAction::Create))
                .map_err(|error| Failure {
                    code: etl::USAGE,
                    error,
                })?;
            if dry_run {
                for s in &statements {
                    println!("{s};\n");
                }
                return Ok(());
            }
            sink.execute(&statements).map_err(|error| Failure {
                code: etl::SOURCE_OR_SINK,
                error,
            })?;
            println!(
                "{} tables {} in {}",
                sparkify_core::table::ALL_TABLES.len(),
                match action {
                    TablesAction::Create => "created",
                    TablesAction::Drop => "dropped",
                },
                sink.describe()
            );
            return Ok(());
        }
        Command::Run {
            fixtures,
            sink,
            common,
        } => {
            let root = fixtures_root(fixtures)?;
            let path = |sub: &str| root.join(sub).display().to_string();
            (
                vec![path("song_data")],
                vec![path("log_data")],
                sink,
                common,
            )
        }
        Command::Etl {
            songs,
            events,
            sink,
            common,
        } => (songs, events, sink, common),
    };
    let config = config(common.settings)?;
    let s3_opts = sparkify_s3::S3Options {
        endpoint_url: common.s3_endpoint.or(config.s3.endpoint.clone()),
        region: common.s3_region.or(config.s3.region.clone()),
        no_sign_request: common.no_sign_request,
        ..sparkify_s3::S3Options::default()
    };
    etl::run(EtlArgs {
        songs,
        events,
        sink,
        max_errors: common.max_errors,
        songplays: match common.songplays {
            Songplays::Matched => sparkify_core::model::SongplaysMode::Matched,
            Songplays::All => sparkify_core::model::SongplaysMode::All,
        },
        threads: common.threads,
        batch_size: common.batch_size,
        summary_json: common.summary_json,
        sql_transform: common.transform == TransformArg::Sql,
        dry_run: common.dry_run,
        config,
        s3: s3::LazyS3::new(s3_opts),
        s3_concurrency: common.s3_concurrency.max(1),
        with_staging: common.with_staging,
        compression: match common.compression {
            CompressionArg::Zstd => sparkify_sink_parquet::Compression::Zstd,
            CompressionArg::Snappy => sparkify_sink_parquet::Compression::Snappy,
        },
        staging: common.staging,
        staging_prefix: common.staging_prefix,
    })
}

/// `--fixtures`, else `./fixtures/sparkify` (run from a checkout's root).
///
/// Never a path compiled into the binary: a binary built in one checkout and run from
/// another (or copied elsewhere) would quietly read the first one's data.
fn fixtures_root(flag: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(root) = flag {
        return Ok(root);
    }
    let here = PathBuf::from("fixtures/sparkify");
    if here.is_dir() {
        return Ok(here);
    }
    Err(Failure {
        code: etl::USAGE,
        error: anyhow::anyhow!(
            "no ./fixtures/sparkify here: run from the repository's root, or pass --fixtures DIR"
        ),
    })
}
