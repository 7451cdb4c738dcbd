//! `sparkify check`: the built-in checks ([`sparkify::query::check`]) on a loaded sink, each
//! with its outcome and first offending keys, as a table, CSV or JSON; exit 1 when one fails.

use sparkify::CheckOptions;
use sparkify_core::sink::QueryResult;

use crate::args::CheckArgs;
use crate::exit::Failure;
use crate::{output, settings};

pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let sink = settings::sql_sink(&target.sink, &target.config, &target.redshift)?;
    let options = CheckOptions {
        mode: settings::songplays_mode(args.songplays),
        max_age: args.freshness.max_age,
        as_of_ms: args.freshness.as_of,
    };
    let checked = sparkify::query::check(sink, &options);
    crate::progress::done_waiting();
    let checked = checked?;
    let table = QueryResult {
        columns: ["check", "rule", "result", "failing", "offending (first 5)"]
            .map(String::from)
            .to_vec(),
        rows: checked
            .outcomes
            .iter()
            .map(|o| {
                vec![
                    Some(o.name.clone()),
                    Some(o.rule.clone()),
                    Some(if o.passed() { "ok" } else { "FAILED" }.to_owned()),
                    Some(o.failing.to_string()),
                    Some(o.keys.join("; ")),
                ]
            })
            .collect(),
    };
    println!(
        "{}",
        output::result(&table, target.format).trim_end_matches('\n')
    );
    let failed: Vec<&str> = checked
        .outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| o.name.as_str())
        .collect();
    if !failed.is_empty() {
        return Err(Failure::Differs(format!(
            "{}: {} of {} checks failed: {}",
            checked.sink,
            failed.len(),
            checked.outcomes.len(),
            failed.join(", ")
        ))
        .into());
    }
    Ok(())
}
