//! `sparkify analytics`: the analytics team's questions ([`sparkify_core::analytics`]) on any
//! SQL sink, as tables, CSV or JSON.

use sparkify_core::analytics::{QUESTIONS, answers};

use crate::args::AnalyticsArgs;
use crate::{output, settings, sink};

pub fn analytics(args: AnalyticsArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let settings = settings::sql_sink(&target.sink, &target.config, &target.redshift)?;
    let mut sink = sink::build(settings);
    let results = QUESTIONS
        .iter()
        .map(|q| sink.query(q.sql))
        .collect::<anyhow::Result<Vec<_>>>()?;
    println!(
        "{}",
        output::answers(&answers(results), target.format).trim_end_matches('\n')
    );
    Ok(())
}
