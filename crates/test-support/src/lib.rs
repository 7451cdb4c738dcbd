//! sparkify-test-support: what the integration tests of every crate share, so that none of
//! them reaches into another's `tests/` folder. Real services, never mocks: a temporary
//! PostgreSQL server ([`pg::PgServer`]), moto's S3 server ([`moto::Moto`]), free loopback
//! ports, the fixtures read into staging batches, and [`assert_tables_eq!`].
//!
//! A missing PostgreSQL or `moto_server` is a failure, never a skip: `scripts/test.sh`
//! installs both.
//!
//! ```no_run
//! use sparkify_test_support::pg::PgServer;
//!
//! let pg = PgServer::start();
//! println!("{}", pg.url());
//! ```
#![allow(clippy::unwrap_used)] // test support panics on what it does not expect
#![allow(missing_debug_implementations)]

pub mod cli;
pub mod fixtures;
pub mod moto;
pub mod pg;
pub mod ports;
pub mod redshift;
pub mod serverless;
pub mod stall;
pub mod tables;
