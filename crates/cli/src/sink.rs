//! A sink of any kind behind one object-safe face, built from its settings.

use anyhow::Context;
use sparkify_core::sink::{QueryResult, Staging, TablesAction};
use sparkify_core::sql::Dialect;
use sparkify_core::table::{SINK_TABLES, TableDef};
use sparkify_core::{Load, Sink};
use sparkify_sink_duckdb::DuckDbSink;
use sparkify_sink_parquet::ParquetSink;
use sparkify_sink_redshift::WarehouseSink;

use crate::settings::SinkSettings;

/// [`Sink`] with its error erased into `anyhow`, each message naming the sink.
pub trait AnySink {
    fn describe(&self) -> String;
    fn dialect(&self) -> Option<Dialect>;
    fn staging(&self) -> Staging;
    fn builds_star(&self) -> bool;
    fn plan(&self) -> anyhow::Result<Vec<String>>;
    fn tables_sql(&self, action: TablesAction) -> anyhow::Result<Vec<String>>;
    fn execute(&mut self, statements: &[String]) -> anyhow::Result<()>;
    fn check(&mut self) -> anyhow::Result<()>;
    fn load(&mut self, load: Load<'_>) -> anyhow::Result<()>;
    fn query(&mut self, sql: &str) -> anyhow::Result<QueryResult>;
}

impl<S: Sink> AnySink for S {
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

    fn plan(&self) -> anyhow::Result<Vec<String>> {
        Ok(Sink::plan(self)?)
    }

    fn tables_sql(&self, action: TablesAction) -> anyhow::Result<Vec<String>> {
        Ok(Sink::tables_sql(self, action)?)
    }

    fn execute(&mut self, statements: &[String]) -> anyhow::Result<()> {
        let what = Sink::describe(self);
        Sink::execute(self, statements).with_context(|| format!("sink {what}"))
    }

    fn check(&mut self) -> anyhow::Result<()> {
        let what = Sink::describe(self);
        Sink::check(self).with_context(|| format!("sink {what}"))
    }

    fn load(&mut self, load: Load<'_>) -> anyhow::Result<()> {
        let what = Sink::describe(self);
        Sink::load(self, load).with_context(|| format!("loading {what}"))
    }

    fn query(&mut self, sql: &str) -> anyhow::Result<QueryResult> {
        let what = Sink::describe(self);
        Sink::query(self, sql).with_context(|| format!("querying {what}"))
    }
}

/// The sink `settings` describe; nothing is opened or connected yet.
pub fn build(settings: SinkSettings) -> Box<dyn AnySink> {
    match settings {
        SinkSettings::DuckDb {
            path,
            transform,
            lock_timeout,
        } => Box::new(
            DuckDbSink::new(path)
                .with_transform(transform)
                .with_lock_timeout(lock_timeout),
        ),
        SinkSettings::Warehouse(config) => Box::new(WarehouseSink::new(*config)),
        SinkSettings::Parquet(config) => Box::new(ParquetSink::new(config)),
    }
}

/// Which of sparkify's tables `sink` holds, in [`SINK_TABLES`] order.
pub fn tables_present(sink: &mut dyn AnySink) -> anyhow::Result<Vec<&'static TableDef>> {
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
) -> anyhow::Result<Vec<(String, u64)>> {
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
