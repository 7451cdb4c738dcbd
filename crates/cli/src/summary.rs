//! The end-of-run report: each reject on stderr, a table on stdout, and the same as JSON
//! for scripts (`--summary-json`, the shape [`Summary::write_json`] gives it).

use std::io::Write;
use std::path::Path;

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use sparkify::{OnNewField, Summary};
use sparkify_core::drift::{DriftKind, located};

/// Prints each reject on stderr, songs first, then the events in input order. A reject
/// that cannot be read back from where it spilled ends the list with a line saying so,
/// and does not fail the run: its load has committed or not already.
pub fn print_rejects(summary: &Summary) {
    let json = crate::log::json();
    let mut err = std::io::BufWriter::new(std::io::stderr().lock());
    for r in summary.rejects() {
        // As `eprintln!` would, but a line at a time through one buffer; a closed stderr
        // does not fail the run.
        let _ = match r {
            Ok(r) if json => writeln!(err, "{}", Summary::reject_line(r)),
            Ok(r) => writeln!(err, "reject: {r}"),
            Err(e) => {
                let message = format!(
                    "the rest could not be read back: {}",
                    sparkify_core::error::chain(&e)
                );
                let _ = err.flush();
                match json {
                    true => crate::log::warn(&message),
                    false => crate::log::line(&format!("rejects: {message}")),
                }
                break;
            }
        };
    }
    let _ = err.flush();
}

/// Warns of each field of the input that drifted from the staging schema: a new field (not
/// loaded) unless `--on-new-field ignore`, and a field of a type its column cannot take
/// (its records are rejects) always.
pub fn print_drift(summary: &Summary, on_new_field: OnNewField) {
    for d in &summary.drift {
        match d.kind {
            DriftKind::NewField if on_new_field == OnNewField::Ignore => {}
            DriftKind::NewField => crate::log::warn(&format!(
                "new {} ({}): not loaded, the staging table has no such column \
                 (--on-new-field fail refuses such input)",
                located(d),
                d.json_type
            )),
            DriftKind::OtherType => crate::log::warn(&format!(
                "{} holds a {}, which its column cannot take: each such record is a reject",
                located(d),
                d.json_type
            )),
        }
    }
}

/// Prints the table and writes the JSON file, if one was asked for.
pub fn finish(summary: &Summary, json: Option<&Path>) -> anyhow::Result<()> {
    println!("{}", table(summary));
    if crate::log::json() {
        crate::log::line(&summary.json_line());
    }
    if let Some(path) = json {
        // Written as it is made: `reject_details` is read back from where the rejects
        // spilled, never held whole.
        let written = std::fs::File::create(path)
            .map_err(anyhow::Error::from)
            .and_then(|file| Ok(summary.write_json(file)?));
        written.map_err(|e| anyhow::anyhow!("writing --summary-json {}: {e}", path.display()))?;
    }
    Ok(())
}

fn table(summary: &Summary) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_header(vec!["table", "rows"]);
    for (name, rows) in &summary.rows {
        table.add_row(vec![
            Cell::new(name),
            Cell::new(rows).set_alignment(CellAlignment::Right),
        ]);
    }
    let status = if summary.committed {
        "committed"
    } else if summary.up_to_date {
        "up to date: nothing to load"
    } else {
        "nothing committed"
    };
    let mut lines = vec![
        ("rejects", summary.rejected().to_string()),
        ("records read", summary.records_read.to_string()),
        ("files read", summary.files_read.to_string()),
        ("files skipped", summary.files_skipped.to_string()),
        ("bytes read", summary.bytes_read.to_string()),
    ];
    if summary.incremental {
        lines.push((
            "files already loaded",
            summary.files_already_loaded.to_string(),
        ));
        lines.push(("files vanished", summary.files_vanished.to_string()));
    }
    if let Some(s3) = &summary.s3 {
        lines.push((
            "s3 objects listed / fetched",
            format!("{} / {}", s3.objects_listed, s3.objects_fetched),
        ));
    }
    if !summary.drift.is_empty() {
        lines.push(("fields drifted", summary.drift.len().to_string()));
    }
    lines.push(("sink", format!("{} ({status})", summary.sink)));
    if let Some(id) = &summary.run_id {
        lines.push(("run", id.clone()));
    }
    lines.push(("seconds", format!("{:.3}", summary.seconds)));
    for (k, v) in lines {
        table.add_row(vec![
            Cell::new(k),
            Cell::new(v).set_alignment(CellAlignment::Right),
        ]);
    }
    table
}
