//! sparkify: Sparkify's JSON (song files and event logs, in folders, files, globs or S3)
//! into a star schema in DuckDB, PostgreSQL, Redshift or a Parquet lake. This is the engine;
//! the `sparkify` command is one client of it.
//!
//! A load is an [`Etl`]: the input, a sink ([`SinkConfig`]) and options; [`Etl::run`]
//! finds the input, reads the sink's ledger when the load is incremental, streams the events
//! through the model into the sink while the songs are read, commits, and returns a
//! [`Summary`]. Every input record is either loaded or a reject with its file, line and
//! field. What the run does meanwhile is a stream of [`Event`]s.
//!
//! ```no_run
//! use sparkify::{Etl, Event, SinkConfig};
//! use sparkify::sink::DuckDbConfig;
//!
//! let summary = Etl::new(SinkConfig::from(DuckDbConfig::new("sparkify.duckdb")))
//!     .songs(["fixtures/sparkify/song_data".parse()?])
//!     .events(["fixtures/sparkify/log_data".parse()?])
//!     .on_event(|event| {
//!         if let Event::Started { phase } = event {
//!             eprintln!("{phase}");
//!         }
//!     })
//!     .run()?;
//! assert!(summary.committed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Beside loads: [`verify()`] compares copies of the tables (sinks, and the input itself);
//! [`query::sql`], [`query::analytics`] and [`query::tables`] ask a loaded sink.
#![warn(missing_docs)]

pub mod error;
pub mod etl;
pub mod progress;
pub mod query;
mod read;
pub mod sink;
pub mod summary;
pub mod verify;

pub use error::{Class, Error, Result};
pub use etl::{Etl, Options};
pub use progress::{Event, Phase};
pub use sink::{AnySink, SinkConfig, SinkSpec};
pub use sparkify_core::checks::{CheckOptions, Outcome};
pub use sparkify_core::drift::{Drift, OnNewField};
pub use sparkify_core::model::SongplaysMode;
pub use sparkify_core::source::Input;
pub use summary::Summary;
pub use verify::{Verification, verify};
