//! sparkify-read: Sparkify's JSON into Arrow, in parallel. [`source`] finds the inputs (a
//! folder, a file, a glob or an `s3://` prefix, listed and fetched through a [`source::Remote`]
//! that `sparkify-s3` implements) and reads them through one scheduler ([`source::stream`]):
//! small inputs grouped, large ones cut at line starts, decoded on rayon's workers by
//! [`reader`] (simd-json, shaped like arrow-json's reader) and given back in input order
//! under a bound on the bytes in flight. Every record becomes a row or a [`Reject`] naming its
//! file, line and field.
//!
//! ```no_run
//! use sparkify_read::source::{self, ReadOptions};
//! use sparkify_read::table::STAGING_EVENTS;
//!
//! let opts = ReadOptions::default();
//! let events = source::read_path("fixtures/sparkify/log_data", &STAGING_EVENTS.input_schema(), &opts)?;
//! assert_eq!(events.records, events.batch.num_rows() as u64 + events.rejects.len() as u64);
//! # Ok::<(), sparkify_read::Error>(())
//! ```

pub mod reader;
pub mod source;

pub use sparkify_model::{Reject, drift, reject};
pub use sparkify_table::{Error, Result, error, table, text, time};
