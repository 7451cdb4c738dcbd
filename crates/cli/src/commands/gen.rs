//! `sparkify gen`: a realistic data set of any size in the real layout.

use std::time::Instant;

use crate::args::GenArgs;
use crate::exit::Failure;

pub fn generate(args: GenArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.match_fraction) {
        return Err(Failure::Usage("--match-fraction must be between 0 and 1".into()).into());
    }
    let started = Instant::now();
    let report = sparkify_gen::generate(&sparkify_gen::GenOptions {
        out: args.out,
        songs: args.songs,
        days: args.days,
        users: args.users,
        events_per_day: args.events_per_day,
        seed: args.seed,
        match_fraction: args.match_fraction,
        gzip: args.gzip,
    })?;
    println!(
        "{} song files, {} log files ({} events, {} plays), {} bytes in {:.2} s",
        report.song_files,
        report.log_files,
        report.events,
        report.plays,
        report.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
