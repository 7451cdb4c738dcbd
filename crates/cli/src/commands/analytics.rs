//! `sparkify analytics`: the analytics team's questions ([`sparkify::query::analytics`]) on
//! any SQL sink, as tables, CSV or JSON, or as an HTML page ([`crate::report`]).

use crate::args::AnalyticsArgs;
use crate::exit::Failure;
use crate::{output, report, settings};

pub fn analytics(args: AnalyticsArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let sink = settings::sql_sink(&target.sink, &target.config, &target.redshift)?;
    let analytics = sparkify::query::analytics(sink.clone());
    crate::progress::done_waiting();
    let analytics = analytics?;
    let Some(path) = &args.html else {
        println!(
            "{}",
            output::answers(&analytics.answers, target.format).trim_end_matches('\n')
        );
        return Ok(());
    };
    let page = report::render(&analytics.answers, &sparkify::query::overview(sink)?);
    std::fs::write(path, page)
        .map_err(|e| Failure::Usage(format!("--html {}: {e}", path.display())))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
