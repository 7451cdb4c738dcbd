//! `sparkify sql "SELECT …"`: one query on any SQL sink, printed as a table, CSV or JSON.

use crate::args::SqlArgs;
use crate::{output, settings};

pub fn sql(args: SqlArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let sink = settings::sql_sink(&target.sink, &target.config, &target.redshift)?;
    let result = sparkify::query::sql(sink, &args.query);
    crate::progress::done_waiting();
    let result = result?;
    println!(
        "{}",
        output::result(&result, target.format).trim_end_matches('\n')
    );
    Ok(())
}
