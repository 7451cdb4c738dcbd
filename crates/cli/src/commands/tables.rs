//! `sparkify tables create|drop`: every table of a sink, dropped and created, or dropped.

use sparkify_core::sink::TablesAction;

use crate::args::{TablesActionArg, TablesArgs};
use crate::settings;

pub fn tables(args: TablesArgs) -> anyhow::Result<()> {
    let sink = settings::sql_sink(&args.sink, &args.config, &args.redshift)?;
    let described = sink.describe();
    let action = match args.action {
        TablesActionArg::Create => TablesAction::Create,
        TablesActionArg::Drop => TablesAction::Drop,
    };
    let statements = sparkify::query::tables(sink, action, args.dry_run)?;
    if args.dry_run {
        for s in &statements {
            println!("{s};\n");
        }
        return Ok(());
    }
    println!(
        "{} tables {} in {described}",
        sparkify_core::table::ALL_TABLES.len(),
        match action {
            TablesAction::Create => "created",
            TablesAction::Drop => "dropped",
        },
    );
    Ok(())
}
