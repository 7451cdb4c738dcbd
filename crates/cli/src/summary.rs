//! The end-of-run report: a table on stdout, and the same as JSON for scripts.

use std::io::Write;
use std::path::Path;

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use serde::{Serialize, Serializer, ser::Error as _};
use sparkify_core::model::Kept;
use sparkify_core::reject::read_back;

/// What a run did.
#[derive(Debug)]
pub struct Summary {
    /// Every input record: each one a staged row or a reject.
    pub records_read: u64,
    pub files_read: usize,
    pub files_skipped: usize,
    /// `--incremental`: files not parsed, as the sink already holds them as they are; files
    /// the sink holds that are no longer in the input.
    pub files_already_loaded: usize,
    pub files_vanished: usize,
    /// Whether the load added to what the sink held (rows are then the sink's, after it).
    pub incremental: bool,
    /// What came from S3, when anything did.
    pub s3: Option<S3Counts>,
    pub bytes_read: u64,
    /// Rows per table, in report order (empty when nothing was built).
    pub rows: Vec<(String, usize)>,
    /// The run's rejects, as its `load_errors` table (read back a batch at a time where they
    /// spilled); `None` when nothing was read.
    pub rejects: Option<Kept>,
    pub committed: bool,
    /// `--incremental` found nothing new, changed or pruned, and loaded nothing.
    pub up_to_date: bool,
    pub sink: String,
    pub seconds: f64,
    /// How the events flowed through the `--in-flight` bound, when they were streamed.
    pub flow: Option<sparkify_core::source::Flow>,
}

/// Objects listed under the `s3://` inputs, and fetched (with their bytes as stored).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct S3Counts {
    pub objects_listed: usize,
    pub objects_fetched: usize,
    pub bytes_fetched: u64,
}

#[derive(Serialize)]
struct JsonReject {
    source: String,
    line: u64,
    byte_offset: u64,
    column: Option<String>,
    reason: String,
}

impl From<sparkify_core::Reject> for JsonReject {
    fn from(r: sparkify_core::Reject) -> Self {
        JsonReject {
            source: r.source.to_string(),
            line: r.line,
            byte_offset: r.byte_offset,
            column: r.column,
            reason: r.reason,
        }
    }
}

/// `reject_details`: each reject written as it is read back, none held.
struct JsonRejects<'a>(Option<&'a Kept>);

impl Serialize for JsonRejects<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rows = self.0.map(Kept::rows);
        let mut rejects = rows.into_iter().flat_map(read_back);
        let mut failed = None;
        let details = std::iter::from_fn(|| match rejects.next()? {
            Ok(r) => Some(r),
            Err(e) => {
                failed = Some(e);
                None
            }
        });
        let out = serializer.collect_seq(details.map(JsonReject::from))?;
        match failed {
            Some(e) => Err(S::Error::custom(format!("reading the rejects back: {e}"))),
            None => Ok(out),
        }
    }
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    records_read: u64,
    files_read: usize,
    files_skipped: usize,
    incremental: bool,
    files_already_loaded: usize,
    files_vanished: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    s3: Option<S3Counts>,
    bytes_read: u64,
    rows: serde_json::Map<String, serde_json::Value>,
    rejects: usize,
    /// Whether the rejects outgrew what a run holds of them (a quarter of `--in-flight`) and
    /// waited for the load in a temporary file.
    rejects_spilled: bool,
    reject_details: JsonRejects<'a>,
    committed: bool,
    up_to_date: bool,
    sink: &'a str,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<sparkify_core::source::Flow>,
}

impl Summary {
    /// How many records were rejected.
    pub fn rejected(&self) -> usize {
        self.rejects.as_ref().map_or(0, |k| k.rows().num_rows())
    }

    /// Prints each reject on stderr, songs first, then the events in input order. A reject
    /// that cannot be read back from where it spilled ends the list with a line saying so,
    /// and does not fail the run: its load has committed or not already.
    pub fn print_rejects(&self) {
        let rows = self.rejects.as_ref().map(Kept::rows);
        let mut err = std::io::BufWriter::new(std::io::stderr().lock());
        for r in rows.into_iter().flat_map(read_back) {
            // As `eprintln!` would, but a line at a time through one buffer; a closed stderr
            // does not fail the run.
            let _ = match r {
                Ok(r) => writeln!(err, "reject: {r}"),
                Err(e) => {
                    let _ = writeln!(err, "rejects: the rest could not be read back: {e}");
                    break;
                }
            };
        }
        let _ = err.flush();
    }

    /// Prints the table and writes the JSON file, if one was asked for.
    pub fn finish(&self, json: Option<&Path>) -> anyhow::Result<()> {
        println!("{}", self.table());
        if let Some(path) = json {
            // Written as it is made: `reject_details` is read back from where the rejects
            // spilled, never held whole.
            let written = std::fs::File::create(path)
                .map_err(anyhow::Error::from)
                .and_then(|file| {
                    let mut out = std::io::BufWriter::new(file);
                    serde_json::to_writer_pretty(&mut out, &self.json())?;
                    out.write_all(b"\n")?;
                    Ok(out.flush()?)
                });
            written
                .map_err(|e| anyhow::anyhow!("writing --summary-json {}: {e}", path.display()))?;
        }
        Ok(())
    }

    fn table(&self) -> Table {
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_header(vec!["table", "rows"]);
        for (name, rows) in &self.rows {
            table.add_row(vec![
                Cell::new(name),
                Cell::new(rows).set_alignment(CellAlignment::Right),
            ]);
        }
        let status = if self.committed {
            "committed"
        } else if self.up_to_date {
            "up to date: nothing to load"
        } else {
            "nothing committed"
        };
        let mut lines = vec![
            ("rejects", self.rejected().to_string()),
            ("records read", self.records_read.to_string()),
            ("files read", self.files_read.to_string()),
            ("files skipped", self.files_skipped.to_string()),
            ("bytes read", self.bytes_read.to_string()),
        ];
        if self.incremental {
            lines.push((
                "files already loaded",
                self.files_already_loaded.to_string(),
            ));
            lines.push(("files vanished", self.files_vanished.to_string()));
        }
        if let Some(s3) = &self.s3 {
            lines.push((
                "s3 objects listed / fetched",
                format!("{} / {}", s3.objects_listed, s3.objects_fetched),
            ));
        }
        lines.push(("sink", format!("{} ({status})", self.sink)));
        lines.push(("seconds", format!("{:.3}", self.seconds)));
        for (k, v) in lines {
            table.add_row(vec![
                Cell::new(k),
                Cell::new(v).set_alignment(CellAlignment::Right),
            ]);
        }
        table
    }

    fn json(&self) -> JsonSummary<'_> {
        JsonSummary {
            records_read: self.records_read,
            files_read: self.files_read,
            files_skipped: self.files_skipped,
            incremental: self.incremental,
            files_already_loaded: self.files_already_loaded,
            files_vanished: self.files_vanished,
            s3: self.s3,
            bytes_read: self.bytes_read,
            rows: self
                .rows
                .iter()
                .map(|(name, n)| (name.clone(), serde_json::Value::from(*n)))
                .collect(),
            rejects: self.rejected(),
            rejects_spilled: matches!(self.rejects, Some(Kept::Spilled(_))),
            reject_details: JsonRejects(self.rejects.as_ref()),
            committed: self.committed,
            up_to_date: self.up_to_date,
            sink: &self.sink,
            seconds: self.seconds,
            in_flight: self.flow,
        }
    }
}
