//! Asking a loaded sink: one query ([`sql`]), the analytics team's questions
//! ([`analytics`], with what a report shows beside them, [`overview`]), and every table
//! created or dropped ([`tables`]).

use sparkify_core::analytics::{Answer, QUESTIONS, REJECTS_BY_REASON, answers};
use sparkify_core::sink::{QueryResult, TablesAction};
use sparkify_core::table::LOAD_ERRORS;

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
