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

mod etl;
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
        /// Where the fixtures are (default: ./fixtures/sparkify, else the repository's).
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
        /// Song files: a folder (walked recursively), a file or a glob.
        #[arg(long, required = true, num_args = 1..)]
        songs: Vec<String>,
        /// Event logs: a folder (walked recursively), a file or a glob.
        #[arg(long, required = true, num_args = 1..)]
        events: Vec<String>,
        /// Where the tables go: duckdb:PATH.
        #[arg(long)]
        sink: String,
        #[command(flatten)]
        common: Common,
    },
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

fn dispatch(cli: Cli) -> Result<(), Failure> {
    let (songs, events, sink, common) = match cli.command {
        Command::Run {
            fixtures,
            sink,
            common,
        } => {
            let root = fixtures.unwrap_or_else(default_fixtures);
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
    })
}

/// `./fixtures/sparkify` when run from a checkout, else the one this binary was built from.
fn default_fixtures() -> PathBuf {
    let here = PathBuf::from("fixtures/sparkify");
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sparkify")
}
