//! Asking a loaded sink: one query ([`sql`]), the analytics team's questions
//! ([`analytics`], with what a report shows beside them, [`overview`]), and every table
//! created or dropped ([`tables`]).

use sparkify_core::analytics::{Answer, QUESTIONS, REJECTS_BY_REASON, answers};
use sparkify_core::checks::{Check, CheckOptions, Outcome, ROW_CONSERVATION};
use sparkify_core::sink::{QueryResult, TablesAction};
use sparkify_core::source::Location;
use sparkify_core::sql::Dialect;
use sparkify_core::table::{
    ETL_FILES, ETL_RUNS, LOAD_ERRORS, STAGING_EVENTS, STAGING_SONGS, STAR_TABLES,
};

use crate::error::{Error, Result};
use crate::sink::{self, SinkConfig};

/// Runs one query on the sink `config` builds, and returns its last result set.
pub fn sql(config: SinkConfig, query: &str) -> Result<QueryResult> {
    config.build().query(query)
}

/// Every table of the sink dropped and created ([`TablesAction::Create`]) or dropped, in one
/// transaction; with `dry_run`, only the statements, connecting to nothing.
pub fn tables(config: SinkConfig, action: TablesAction, dry_run: bool) -> Result<Vec<String>> {
    let mut sink = config.build();
    let statements = sink.tables_sql(action)?;
    if !dry_run {
        sink.execute(&statements)?;
    }
    Ok(statements)
}

/// The run history, oldest first: a row per committed load ([`sparkify_core::history`]).
/// A sink that holds none is a usage error.
pub fn runs(config: SinkConfig) -> Result<QueryResult> {
    let mut sink = config.build();
    if !sink::holds(sink.as_mut(), &ETL_RUNS)? {
        return Err(Error::Usage(format!(
            "{} holds no run history: no load has committed into it",
            sink.describe()
        )));
    }
    sink.query(&sparkify_core::history::select_runs())
}

/// Runs every check ([`sparkify_core::checks`]) on the sink; the outcomes in order, each
/// with its first offending keys. A sink without the star schema is a usage error.
pub fn check(config: SinkConfig, options: &CheckOptions) -> Result<Checked> {
    if let SinkConfig::Parquet(lake) = &config {
        return check_lake(lake, options);
    }
    let mut sink = config.build();
    let Some(dialect) = sink.dialect() else {
        return Err(Error::Usage(format!(
            "{} runs no SQL: check a DuckDB, PostgreSQL or Redshift sink",
            sink.describe()
        )));
    };
    let present = sink::tables_present(sink.as_mut())?;
    let missing: Vec<&str> = STAR_TABLES
        .iter()
        .chain([&&ETL_FILES, &&STAGING_EVENTS, &&STAGING_SONGS])
        .filter(|t| !present.iter().any(|p| p.name == t.name))
        .map(|t| t.name)
        .collect();
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "{} has no {}: load it first",
            sink.describe(),
            missing.join(", ")
        )));
    }
    let checks = sparkify_core::checks::checks(options, &dialect);
    let outcomes = sparkify_core::checks::run(&checks, |sql| sink.query(sql).map(|r| r.rows))?;
    Ok(Checked {
        sink: sink.describe(),
        outcomes,
    })
}

/// [`check`] over a Parquet lake in a folder: its star tables read back and checked in a
/// DuckDB of their own, in memory. A lake keeps no `etl_files`, so row conservation is not
/// checked there.
fn check_lake(lake: &crate::sink::ParquetConfig, options: &CheckOptions) -> Result<Checked> {
    let name = SinkConfig::Parquet(lake.clone()).describe();
    let Location::Path(dir) = &lake.location else {
        return Err(Error::Usage(format!(
            "check reads a Parquet lake from a folder; {name} is in S3 (copy it to a folder first)"
        )));
    };
    let mut tables = Vec::new();
    for table in STAR_TABLES {
        match sparkify_parquet::read_table(dir, table)? {
            Some(batch) => tables.push((table, batch)),
            None => {
                return Err(Error::Usage(format!(
                    "{name} has no {}: load it first",
                    table.name
                )));
            }
        }
    }
    let checks: Vec<Check> = sparkify_core::checks::checks(options, &Dialect::DuckDb)
        .into_iter()
        .filter(|c| c.name != ROW_CONSERVATION)
        .collect();
    let queries: Vec<String> = checks.iter().map(|c| c.sql.clone()).collect();
    let results = sparkify_sink_duckdb::query_in_memory(tables, &queries)
        .map_err(|e| Error::sink(format!("checking {name}"), e))?;
    let outcomes = checks
        .iter()
        .zip(&results)
        .map(|(c, r)| sparkify_core::checks::outcome(c, &r.rows))
        .collect();
    Ok(Checked {
        sink: name,
        outcomes,
    })
}

/// What [`check`] found.
#[derive(Debug)]
pub struct Checked {
    /// The sink checked, as it describes itself.
    pub sink: String,
    /// Every check's outcome, in order.
    pub outcomes: Vec<Outcome>,
}

impl Checked {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.outcomes.iter().all(Outcome::passed)
    }
}

/// The analytics questions ([`QUESTIONS`]) answered by the sink.
pub fn analytics(config: SinkConfig) -> Result<Analytics> {
    let mut sink = config.build();
    let results = QUESTIONS
        .iter()
        .map(|q| sink.query(q.sql))
        .collect::<Result<Vec<_>>>()?;
    Ok(Analytics {
        sink: sink.describe(),
        answers: answers(results),
    })
}

/// The answers of [`analytics`].
#[derive(Debug)]
pub struct Analytics {
    /// The sink asked, as it describes itself.
    pub sink: String,
    /// A table a question, in [`QUESTIONS`] order.
    pub answers: Vec<Answer>,
}

/// What a sink holds: every table present with its rows, and its rejects by reason.
#[derive(Debug)]
pub struct Overview {
    /// The sink, as it describes itself.
    pub sink: String,
    /// Every table present and its rows.
    pub counts: Vec<(String, u64)>,
    /// The rejects by reason, most first, when the sink holds `load_errors`.
    pub rejects: Option<Vec<(String, u64)>>,
}

/// The row count of every table the sink holds, and its rejects by reason; a sink with none
/// of sparkify's tables is a usage error.
pub fn overview(config: SinkConfig) -> Result<Overview> {
    let mut sink = config.build();
    let present = sink::tables_present(sink.as_mut())?;
    if present.is_empty() {
        return Err(Error::Usage(format!(
            "{} holds none of sparkify's tables",
            sink.describe()
        )));
    }
    let counts = sink::row_counts(sink.as_mut(), &present)?;
    let rejects = if present.iter().any(|t| t.name == LOAD_ERRORS.name) {
        Some(sink.query(REJECTS_BY_REASON)?.counts())
    } else {
        None
    };
    Ok(Overview {
        sink: sink.describe(),
        counts,
        rejects,
    })
}
