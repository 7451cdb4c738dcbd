//! `sparkify`: Sparkify's JSON from folders, files, globs or S3 into a star schema in DuckDB,
//! PostgreSQL, Redshift or a Parquet lake.
//!
//! ```text
//! sparkify run                                   # the real fixtures into ./sparkify.duckdb
//! sparkify etl --songs DIR --events DIR --sink duckdb:out.duckdb --max-errors 10
//! ```
//!
//! This is the only crate that prints or exits. `main` parses ([`args`]), hands each
//! subcommand to its module ([`commands`]), and turns what went wrong into an exit status
//! ([`exit`]); [`settings`] resolves flags, environment and `sparkify.toml` once.

mod args;
mod commands;
mod exit;
mod layers;
mod load;
mod log;
mod output;
mod progress;
mod report;
mod settings;
mod summary;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::ExitStatus;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitStatus::Usage.into()
            } else {
                ExitStatus::Success.into()
            };
        }
    };
    log::set(cli.log_format);
    // A JSON log is JSON objects only: tracing's lines only when RUST_LOG asks for them.
    let quiet = if log::json() { "off" } else { "warn" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours on a terminal only: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(quiet)),
        )
        .init();
    let done = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Etl(args) => commands::etl::etl(args),
        Command::Gen(args) => commands::r#gen::generate(args),
        Command::Tables(args) => commands::tables::tables(args),
        Command::Sql(args) => commands::sql::sql(args),
        Command::Analytics(args) => commands::analytics::analytics(args),
        Command::Verify(args) => commands::verify::verify(args),
        Command::Init(args) => commands::init::init(args),
        Command::Config(args) => commands::config::config(args),
        Command::Cluster(args) => commands::cluster::cluster(args),
        Command::Runs(args) => commands::runs::runs(args),
        Command::Check(args) => commands::check::check(args),
    };
    // A wait's spinner still turning ends before anything else is said.
    progress::done_waiting();
    match done {
        Ok(()) => ExitStatus::Success.into(),
        Err(error) => {
            let status = exit::status_of(&error);
            let (message, hint) = (exit::message(&error), exit::hint(&error));
            if log::json() {
                log::event(
                    "error",
                    serde_json::json!({ "message": message, "hint": hint, "exit": status as u8 }),
                );
            } else {
                log::line(&format!("error: {message}"));
                if let Some(hint) = hint {
                    log::line(&format!("hint: {hint}"));
                }
            }
            status.into()
        }
    }
}
