//! One load as `etl` and `run` ask for it: the engine runs it ([`sparkify::Etl`]), and this
//! shows it: its progress, its rejects, its summary (and `--summary-json`), or its plan.

use std::path::Path;

use sparkify::Etl;

use crate::exit::Failure;
use crate::progress::Progress;
use crate::settings::LoadSettings;
use crate::summary;

/// One load, as `settings` say.
pub fn load(s: LoadSettings) -> anyhow::Result<()> {
    let etl = Etl::new(s.sink)
        .songs(s.songs)
        .events(s.events)
        .options(s.options.clone())
        .on_event(Progress::observer());
    if s.dry_run {
        if s.options.incremental {
            // A dry run connects to nothing, so it cannot read the ledger the plan depends on.
            println!(
                "-- --incremental: which files are parsed and which rows go depends on the \
                 sink's etl_files, read when the load runs; shown here is a full load\n"
            );
        }
        for statement in etl.plan()? {
            println!("{statement};\n");
        }
        return Ok(());
    }
    if let Some(path) = &s.summary_json {
        writable(path)?;
    }
    let done = etl.run();
    let shown = match &done {
        Ok(summary) => Some(summary),
        Err(error) => error.summary(),
    };
    if let Some(shown) = shown {
        summary::print_rejects(shown);
        summary::print_drift(shown, s.options.on_new_field);
        summary::finish(shown, s.summary_json.as_deref())
            .map_err(|e| Failure::Usage(crate::exit::message(&e)))?;
    }
    done?;
    Ok(())
}

/// Fails with bad usage unless `--summary-json`'s `path` can be written. The summary is
/// written when the run ends, after its COMMIT: a path found wrong only then was a committed
/// load that exited 2. Checked by opening it (and, when there is no such file, creating it and
/// removing it again, so that a run that fails before its summary leaves none).
fn writable(path: &Path) -> Result<(), Failure> {
    let usage =
        |e: std::io::Error| Failure::Usage(format!("--summary-json {}: {e}", path.display()));
    match std::fs::OpenOptions::new().append(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::File::create_new(path).map_err(usage)?;
            std::fs::remove_file(path).map_err(usage)
        }
        Err(e) => Err(usage(e)),
    }
}
