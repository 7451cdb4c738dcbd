//! sparkify-core: reads Sparkify's JSON (song files and event logs) into Arrow in parallel,
//! builds the star schema in memory, and defines the [`Sink`] contract the sinks implement,
//! the tables they write ([`table`]) and the SQL they share ([`sql`]). It knows no sink, no
//! SQL driver and no async runtime: `s3://` inputs are listed and fetched through the
//! [`source::Remote`] that `sparkify-s3` implements.
//!
//! ```no_run
//! use sparkify_core::{model, source, table};
//!
//! let opts = source::ReadOptions::default();
//! let songs = source::read_path("fixtures/sparkify/song_data", &table::STAGING_SONGS.input_schema(), &opts)?;
//! let events = source::read_path("fixtures/sparkify/log_data", &table::STAGING_EVENTS.input_schema(), &opts)?;
//! let star = model::build(&events.batch, &songs.batch, model::SongplaysMode::Matched)?;
//! assert_eq!(star.ft_songplays.num_rows(), 333);
//! # Ok::<(), sparkify_core::Error>(())
//! ```

pub mod analytics;
pub mod checks;
pub mod drift;
pub mod error;
pub mod fingerprint;
pub mod history;
pub mod ledger;
pub mod model;
pub mod pipeline;
pub mod reader;
pub mod reject;
pub mod sink;
pub mod source;
pub mod spill;
pub mod sql;
pub mod table;
pub mod text;
pub mod time;

pub use error::{Error, Result};
pub use reject::Reject;
pub use sink::{Load, Sink, Tables};
