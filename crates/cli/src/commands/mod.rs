//! One module a subcommand; each takes its settings and returns what went wrong, and `main`
//! picks the exit status.

pub mod analytics;
pub mod check;
pub mod cluster;
pub mod config;
pub mod etl;
pub mod r#gen;
pub mod init;
pub mod run;
pub mod runs;
pub mod sql;
pub mod tables;
pub mod verify;
