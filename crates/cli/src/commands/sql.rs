//! `sparkify sql "SELECT …"`: one query on any SQL sink (the seed's `cluster_connect.py`).

use crate::args::SqlArgs;
use crate::{output, settings, sink};

pub fn sql(args: SqlArgs) -> anyhow::Result<()> {
    let mut sink = sink::build(settings::sql_sink(
        &args.sink,
        &args.config,
        &args.redshift,
    )?);
    let result = sink.query(&args.query)?;
    println!(
        "{}",
        output::result(&result, args.format).trim_end_matches('\n')
    );
    Ok(())
}
