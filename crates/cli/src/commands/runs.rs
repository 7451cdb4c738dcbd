//! `sparkify runs`: the run history ([`sparkify::query::runs`]), a row per committed load,
//! as a table, CSV or JSON.

use crate::args::RunsArgs;
use crate::{output, settings};

pub fn runs(args: RunsArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let sink = settings::sql_sink(&target.sink, &target.config, &target.redshift)?;
    let runs = sparkify::query::runs(sink);
    crate::progress::done_waiting();
    println!(
        "{}",
        output::result(&runs?, target.format).trim_end_matches('\n')
    );
    Ok(())
}
