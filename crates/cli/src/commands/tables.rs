//! `sparkify tables create|drop`: every table of a sink, dropped and created, or dropped.

use sparkify_core::sink::TablesAction;

use crate::args::{TablesActionArg, TablesArgs};
use crate::{settings, sink};

pub fn tables(args: TablesArgs) -> anyhow::Result<()> {
    let settings = settings::sql_sink(&args.sink, &args.config, &args.redshift)?;
    let mut sink = sink::build(settings);
    let action = match args.action {
        TablesActionArg::Create => TablesAction::Create,
        TablesActionArg::Drop => TablesAction::Drop,
    };
    let statements = sink.tables_sql(action)?;
    if args.dry_run {
        for s in &statements {
            println!("{s};\n");
        }
        return Ok(());
    }
    sink.execute(&statements)?;
    println!(
        "{} tables {} in {}",
        sparkify_core::table::ALL_TABLES.len(),
        match action {
            TablesAction::Create => "created",
            TablesAction::Drop => "dropped",
        },
        sink.describe()
    );
    Ok(())
}
