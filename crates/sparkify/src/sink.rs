//! Where the tables go: a sink named in a word ([`SinkSpec`], what `--sink` parses into), the
//! config each sink crate builds its sink from ([`SinkConfig`]), and any sink behind one
//! object-safe face ([`AnySink`]) whose errors name the sink.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sparkify_core::sink::{Closing, QueryResult, Staging, TablesAction};
use sparkify_core::source::Location;
use sparkify_core::sql::Dialect;
use sparkify_core::table::{SINK_TABLES, TableDef};
use sparkify_core::{Load, Sink};

use crate::error::{Error, Result, SinkError};

pub use sparkify_sink_duckdb::{DuckDbConfig, OnWait, Transform, Waiting};
pub use sparkify_sink_parquet::{Compression, ParquetConfig};
pub use sparkify_sink_redshift::{PgUrl, WarehouseConfig};

/// A sink as a user names it: `duckdb:PATH`, `postgres://user@host:port/db`, `redshift`,
/// `parquet:DIR` or `parquet:s3://bucket/prefix`. Parsed once; the settings around it (the
/// config file, the flags) make it a [`SinkConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// A DuckDB file.
    DuckDb(PathBuf),
    /// A PostgreSQL database, by its URL (the password from `PGPASSWORD` when it has none).
    Postgres(PgUrl),
    /// The Redshift cluster or workgroup of the config file.
    Redshift,
    /// A Parquet lake in a folder or under an S3 prefix.
    Parquet(Location),
}

impl FromStr for SinkSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        if let Some(path) = spec.strip_prefix("duckdb:").filter(|p| !p.is_empty()) {
            return Ok(SinkSpec::DuckDb(path.into()));
        }
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            return spec
                .parse()
                .map(SinkSpec::Postgres)
                .map_err(|e: sparkify_sink_redshift::Error| e.to_string());
        }
        if spec == "redshift" {
            return Ok(SinkSpec::Redshift);
        }
        if let Some(out) = spec.strip_prefix("parquet:").filter(|p| !p.is_empty()) {
            return Location::parse(out)
                .map(SinkSpec::Parquet)
                .map_err(|e| e.to_string());
        }
        Err(format!(
            "unknown sink {spec:?}: expected duckdb:PATH, postgres://user@host:port/db, redshift, \
             parquet:DIR or parquet:s3://bucket/prefix"
        ))
    }
}

impl fmt::Display for SinkSpec {
    /// As it was given; a PostgreSQL URL is shown without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkSpec::DuckDb(path) => write!(f, "duckdb:{}", path.display()),
            SinkSpec::Postgres(url) => write!(f, "{url}"),
            SinkSpec::Redshift => f.write_str("redshift"),
            SinkSpec::Parquet(Location::Path(path)) => write!(f, "parquet:{}", path.display()),
            SinkSpec::Parquet(Location::S3(url)) => write!(f, "parquet:{url}"),
        }
    }
}

/// Everything a sink is built from, one config type a sink crate.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// A DuckDB file.
    DuckDb(DuckDbConfig),
    /// PostgreSQL or Redshift.
    Warehouse(Box<WarehouseConfig>),
    /// A Parquet lake.
    Parquet(ParquetConfig),
}

impl SinkConfig {
    /// The sink as it describes itself in messages (no secrets); nothing is connected.
    pub fn describe(&self) -> String {
        self.clone().build().describe()
    }

    /// The sink; nothing is opened or connected yet.
    pub fn build(self) -> Box<dyn AnySink> {
        match self {
            SinkConfig::DuckDb(config) => Box::new(config.build()),
            SinkConfig::Warehouse(config) => Box::new(config.build()),
            SinkConfig::Parquet(config) => Box::new(config.build()),
        }
    }
}

impl From<DuckDbConfig> for SinkConfig {
    fn from(config: DuckDbConfig) -> Self {
        SinkConfig::DuckDb(config)
    }
}

impl From<WarehouseConfig> for SinkConfig {
    fn from(config: WarehouseConfig) -> Self {
        SinkConfig::Warehouse(Box::new(config))
    }
}

impl From<ParquetConfig> for SinkConfig {
    fn from(config: ParquetConfig) -> Self {
        SinkConfig::Parquet(config)
    }
}

/// [`Sink`] with its error made the engine's, each message naming the sink.
pub trait AnySink {
    /// A short description for messages, with no secrets in it.
    fn describe(&self) -> String;
    /// The SQL the sink speaks (`None`: it runs none).
    fn dialect(&self) -> Option<Dialect>;
    /// Where its staging tables come from.
    fn staging(&self) -> Staging;
    /// Whether it builds the star schema itself, in SQL, on every load.
    fn builds_star(&self) -> bool;
    /// Every statement a load runs, in order; connects to nothing.
    fn plan(&self) -> Result<Vec<String>>;
    /// The statements that create or drop every table; connects to nothing.
    fn tables_sql(&self, action: TablesAction) -> Result<Vec<String>>;
    /// Runs `statements` in one transaction.
    fn execute(&mut self, statements: &[String]) -> Result<()>;
    /// Checks that the sink can be reached and written.
    fn check(&mut self) -> Result<()>;
    /// Replaces the sink's tables with `load`'s, all or nothing.
    fn load(&mut self, load: Load<'_>) -> Result<()>;
    /// What the next load does before its COMMIT: its checks and its run history row.
    fn close_with(&mut self, closing: Closing);
    /// Runs one query and returns its last result set.
    fn query(&mut self, sql: &str) -> Result<QueryResult>;
}

impl<S> AnySink for S
where
    S: Sink,
    S::Error: Into<SinkError>,
{
    fn describe(&self) -> String {
        Sink::describe(self)
    }

    fn dialect(&self) -> Option<Dialect> {
        Sink::dialect(self)
    }

    fn staging(&self) -> Staging {
        Sink::staging(self)
    }

    fn builds_star(&self) -> bool {
        Sink::builds_star(self)
    }

    fn plan(&self) -> Result<Vec<String>> {
        Sink::plan(self).map_err(|e| Error::Plan(Box::new(e.into())))
    }

    fn tables_sql(&self, action: TablesAction) -> Result<Vec<String>> {
        Sink::tables_sql(self, action).map_err(|e| Error::Plan(Box::new(e.into())))
    }

    fn execute(&mut self, statements: &[String]) -> Result<()> {
        Sink::execute(self, statements)
            .map_err(|e| Error::sink(format!("sink {}", Sink::describe(self)), e))
    }

    fn check(&mut self) -> Result<()> {
        Sink::check(self).map_err(|e| Error::sink(format!("sink {}", Sink::describe(self)), e))
    }

    fn close_with(&mut self, closing: Closing) {
        Sink::close_with(self, closing)
    }

    fn load(&mut self, load: Load<'_>) -> Result<()> {
        Sink::load(self, load)
            .map_err(|e| Error::sink(format!("loading {}", Sink::describe(self)), e))
    }

    fn query(&mut self, sql: &str) -> Result<QueryResult> {
        Sink::query(self, sql)
            .map_err(|e| Error::sink(format!("querying {}", Sink::describe(self)), e))
    }
}

/// Whether `sink` holds `table`.
pub fn holds(sink: &mut dyn AnySink, table: &TableDef) -> Result<bool> {
    let found = sink.query(&sparkify_core::sql::tables_present())?;
    Ok(found
        .rows
        .iter()
        .any(|r| r.first().and_then(|v| v.as_deref()) == Some(table.name)))
}

/// Which of sparkify's tables `sink` holds, in [`SINK_TABLES`] order.
pub fn tables_present(sink: &mut dyn AnySink) -> Result<Vec<&'static TableDef>> {
    let found = sink.query(&sparkify_core::sql::tables_present())?;
    Ok(SINK_TABLES
        .iter()
        .copied()
        .filter(|t| {
            found
                .rows
                .iter()
                .any(|r| r.first().and_then(|v| v.as_deref()) == Some(t.name))
        })
        .collect())
}

/// Rows per table of `tables` as `sink` holds them, in the order of `tables` (one query; a
/// table the result leaves out counts 0).
pub fn row_counts(
    sink: &mut dyn AnySink,
    tables: &[&'static TableDef],
) -> Result<Vec<(String, u64)>> {
    let counts = sink
        .query(&sparkify_core::sql::count_rows(tables))?
        .counts();
    Ok(tables
        .iter()
        .map(|t| {
            let n = counts
                .iter()
                .find(|(name, _)| name == t.name)
                .map_or(0, |(_, n)| *n);
            (t.name.to_owned(), n)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_is_parsed_once_into_its_kind() {
        assert_eq!(
            "duckdb:out.duckdb".parse(),
            Ok(SinkSpec::DuckDb("out.duckdb".into()))
        );
        assert_eq!("redshift".parse(), Ok(SinkSpec::Redshift));
        assert!(matches!(
            "postgresql://u@h:5/db".parse::<SinkSpec>(),
            Ok(SinkSpec::Postgres(_))
        ));
        assert!(matches!(
            "parquet:lake".parse::<SinkSpec>(),
            Ok(SinkSpec::Parquet(Location::Path(_)))
        ));
        for bad in ["duckdb:", "parquet:", "mysql://x", "Redshift"] {
            let error = bad.parse::<SinkSpec>().unwrap_err();
            assert!(error.contains("unknown sink"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_postgres_sink_is_shown_without_its_password() {
        let spec: SinkSpec = "postgres://ann:s3cret@db.example:5432/dw".parse().unwrap();
        assert_eq!(spec.to_string(), "postgres://ann@db.example:5432/dw");
        let spec: SinkSpec = "postgres://ann@db.example/dw".parse().unwrap();
        assert_eq!(spec.to_string(), "postgres://ann@db.example/dw");
        // Parsed where it is given: a URL the driver cannot read is refused there.
        let bad = "postgres://ann:s3cret@db.example:port/dw".parse::<SinkSpec>();
        let said = bad.unwrap_err();
        assert!(said.contains("bad connection settings"), "{said}");
        assert!(!said.contains("s3cret"), "{said}");
    }
}
