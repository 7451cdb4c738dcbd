//! sparkify-table: the tables sparkify writes, at the bottom of the engine. Every table's
//! columns, SQL types and keys ([`table`]), timestamps as the engine keeps them ([`time`]),
//! values as text the way the databases print them ([`text`]), and the engine's one error
//! type ([`Error`]). It depends on no other sparkify crate.
//!
//! ```
//! use sparkify_table::table::{FT_SONGPLAYS, STAR_TABLES};
//!
//! assert_eq!(STAR_TABLES[0].name, FT_SONGPLAYS.name);
//! assert_eq!(FT_SONGPLAYS.primary_key, ["songplay_id"]);
//! ```

pub mod error;
pub mod table;
pub mod text;
pub mod time;

pub use error::{Error, Result};
