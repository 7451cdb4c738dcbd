//! sparkify-core: the [`Sink`] contract every sink implements ([`sink`]), the ledger of the
//! input files a sink holds ([`ledger`]: what an incremental load parses and removes), and the
//! streamed load ([`pipeline`]) that joins the reader, the model and a sink. The engine's
//! other layers are crates of their own, each depending only on those below it, and are
//! re-exported here so that a sink needs this one crate:
//!
//! - `sparkify-table`: the tables, their columns and types, values as text, the error type
//!   ([`table`], [`time`], [`text`], [`error`]);
//! - `sparkify-model`: the star schema in memory and in SQL, rejects, history, drift, checks,
//!   fingerprints, analytics ([`model`], [`sql`], [`reject`], [`spill`], [`history`],
//!   [`drift`], [`checks`], [`fingerprint`], [`analytics`]);
//! - `sparkify-read`: JSON into Arrow through one scheduler ([`source`], [`reader`]).
//!
//! It knows no sink, no SQL driver and no async runtime: `s3://` inputs are listed and
//! fetched through the [`source::Remote`] that `sparkify-s3` implements.
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

pub mod ledger;
pub mod pipeline;
pub mod sink;

pub use sink::{Load, Sink, Tables};
pub use sparkify_model::{
    Reject, analytics, checks, drift, fingerprint, history, model, reject, spill, sql,
};
pub use sparkify_read::{reader, source};
pub use sparkify_table::{Error, Result, error, table, text, time};
