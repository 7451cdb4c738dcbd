//! `sparkify verify`: the copies compared by the engine ([`sparkify::verify()`]), its table
//! printed, and for each table that differs up to five keys missing, extra or changed.

use sparkify::SongplaysMode;
use sparkify::verify::Copy;
use sparkify_core::fingerprint::RowDiff;

use crate::args::{Songplays, VerifyArgs};
use crate::exit::Failure;
use crate::progress::Progress;
use crate::{output, settings};

/// Keys shown per kind of difference.
const SAMPLES: usize = 5;

pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let mut copies = Vec::new();
    if args.source {
        copies.push(Copy::Source {
            songs: args.songs.clone(),
            events: args.events.clone(),
            mode: match args.songplays {
                Songplays::Matched => SongplaysMode::Matched,
                Songplays::All => SongplaysMode::All,
            },
            s3: settings::s3_settings(&args.config, &args.s3)?,
            s3_concurrency: args.s3.s3_concurrency.max(1),
        });
    }
    for spec in &args.sinks {
        copies.push(Copy::Sink(settings::sql_sink(
            spec,
            &args.config,
            &args.redshift,
        )?));
    }
    let observer: sparkify::progress::Observer = std::sync::Arc::new(Progress::observer());
    let found = sparkify::verify(copies, Some(observer))?;
    println!(
        "{}",
        output::result(&found.table, args.format).trim_end_matches('\n')
    );
    if found.agrees() {
        return Ok(());
    }
    for d in &found.differences {
        println!("\n{} in {} against {}:", d.table, d.copy, d.reference);
        print_keys("missing", &d.rows.missing);
        print_keys("extra", &d.rows.extra);
        print_keys("changed", &d.rows.changed);
        if d.rows == RowDiff::default() {
            println!(
                "  the same rows, but the fingerprints differ (a database with another canonical form?)"
            );
        }
    }
    let tables = found.differing_tables();
    Err(Failure::Differs(format!("the copies differ in {}", tables.join(", "))).into())
}

fn print_keys(what: &str, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    let more = keys.len().saturating_sub(SAMPLES);
    let shown: Vec<&str> = keys.iter().take(SAMPLES).map(String::as_str).collect();
    let more = if more > 0 {
        format!(" (and {more} more)")
    } else {
        String::new()
    };
    println!("  {} {what}: {}{more}", keys.len(), shown.join("; "));
}
