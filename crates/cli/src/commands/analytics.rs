//! `sparkify analytics`: the analytics team's questions ([`sparkify_core::analytics`]) on any
//! SQL sink, as tables, CSV or JSON, or as an HTML page ([`crate::report`]).

use sparkify_core::analytics::{QUESTIONS, REJECTS_BY_REASON, answers};
use sparkify_core::table::LOAD_ERRORS;

use crate::args::AnalyticsArgs;
use crate::exit::Failure;
use crate::sink::AnySink;
use crate::{output, report, settings, sink};

pub fn analytics(args: AnalyticsArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let settings = settings::sql_sink(&target.sink, &target.config, &target.redshift)?;
    let mut sink = sink::build(settings);
    let results = QUESTIONS
        .iter()
        .map(|q| sink.query(q.sql))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let answers = answers(results);
    let Some(path) = &args.html else {
        println!(
            "{}",
            output::answers(&answers, target.format).trim_end_matches('\n')
        );
        return Ok(());
    };
    let page = report::render(&answers, &extras(sink.as_mut())?);
    std::fs::write(path, page)
        .map_err(|e| Failure::Usage(format!("--html {}: {e}", path.display())))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The row count of every table the sink holds, and its rejects by reason.
fn extras(sink: &mut dyn AnySink) -> anyhow::Result<report::Extras> {
    let present = sink::tables_present(sink)?;
    if present.is_empty() {
        return Err(Failure::Usage(format!(
            "{} holds none of sparkify's tables",
            sink.describe()
        ))
        .into());
    }
    let counts = sink::row_counts(sink, &present)?;
    let rejects = if present.iter().any(|t| t.name == LOAD_ERRORS.name) {
        Some(sink.query(REJECTS_BY_REASON)?.counts())
    } else {
        None
    };
    Ok(report::Extras {
        sink: sink.describe(),
        counts,
        rejects,
    })
}
