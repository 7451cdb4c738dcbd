//! `sparkify sql "SELECT …"`: one query on any SQL sink (the seed's `cluster_connect.py`).

use crate::args::SqlArgs;
use crate::{output, settings, sink};

pub fn sql(args: SqlArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let settings = settings::sql_sink(&target.sink, &target.config, &target.redshift)?;
    let mut sink = sink::build(settings);
    let result = sink.query(&args.query)?;
    println!(
        "{}",
        output::result(&result, target.format).trim_end_matches('\n')
    );
    Ok(())
}
