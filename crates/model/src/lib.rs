//! sparkify-model: the star schema, built from the staging tables twice over, held equal by
//! tests: in memory ([`model`], SPEC's dedup and matching rules on Arrow batches) and as the
//! SQL every warehouse runs ([`sql`]: DDL, transforms, incremental maintenance, one text per
//! dialect family). Around it, what a load records: the records it could not load
//! ([`reject`], spilled out of memory past their bound by [`spill`]), its row in the run
//! history ([`history`]), schema drift ([`drift`]), the checks before COMMIT ([`checks`]),
//! content fingerprints for `verify` ([`fingerprint`]) and the analytics questions
//! ([`analytics`]). It reads no input and knows no sink.
//!
//! ```
//! use sparkify_model::sql::{self, Dialect};
//! use sparkify_model::table::DM_USERS;
//!
//! let ddl = sql::create_table_if_missing(&DM_USERS, &Dialect::Postgres);
//! assert!(ddl.starts_with("CREATE TABLE IF NOT EXISTS dm_users"));
//! ```

pub mod analytics;
pub mod checks;
pub mod drift;
pub mod fingerprint;
pub mod history;
pub mod model;
pub mod reject;
pub mod spill;
pub mod sql;

pub use reject::Reject;
pub use sparkify_table::{Error, Result, error, table, text, time};
