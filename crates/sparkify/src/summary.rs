//! What a load did ([`Summary`]), and the same as JSON for scripts ([`Summary::write_json`],
//! what `sparkify etl --summary-json` writes).

use std::io::Write;

use serde::{Serialize, Serializer, ser::Error as _};
use sparkify_core::model::Kept;
use sparkify_core::reject::read_back;

/// What became of a run's checks (`etl --check`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checks {
    /// None asked for.
    #[default]
    NotRun,
    /// Every check passed before the COMMIT.
    Passed,
    /// A check failed: nothing was committed.
    Failed,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Every input record: each one a staged row or a reject.
    pub records_read: u64,
    /// Input files read (parsed).
    pub files_read: usize,
    /// Files found and left out (not JSON by their name).
    pub files_skipped: usize,
    /// `--incremental`: files not parsed, as the sink already holds them as they are; files
    /// the sink holds that are no longer in the input.
    pub files_already_loaded: usize,
    /// Files the sink holds that are no longer in the input (`--incremental`).
    pub files_vanished: usize,
    /// Whether the load added to what the sink held (rows are then the sink's, after it).
    pub incremental: bool,
    /// What came from S3, when anything did.
    pub s3: Option<S3Counts>,
    /// The bytes of the files read, as stored.
    pub bytes_read: u64,
    /// Rows per table, in report order (empty when nothing was built).
    pub rows: Vec<(String, usize)>,
    /// The run's rejects, as its `load_errors` table (read back a batch at a time where they
    /// spilled); `None` when nothing was read.
    pub rejects: Option<Kept>,
    /// Whether the load committed.
    pub committed: bool,
    /// `--incremental` found nothing new, changed or pruned, and loaded nothing.
    pub up_to_date: bool,
    /// The sink, as it describes itself (no secrets).
    pub sink: String,
    /// The run's id: its row in `etl_runs` when it committed, and the `run_id` of its
    /// `load_errors` and `etl_files` rows. `None` when it loaded nothing (up to date).
    pub run_id: Option<String>,
    /// Whether the checks ran before the COMMIT (`etl --check`) and passed, failed, or did
    /// not run.
    pub checks: Checks,
    /// Why the run committed nothing, when it did not.
    pub error: Option<String>,
    /// The input's fields that drifted from the staging schema: new ones (not loaded) and
    /// values of a type their column cannot take (rejects), songs' first.
    pub drift: Vec<sparkify_core::drift::Drift>,
    /// The run's wall time.
    pub seconds: f64,
    /// How the events flowed through the `--in-flight` bound, when they were streamed.
    pub flow: Option<sparkify_core::source::Flow>,
}

/// Objects listed under the `s3://` inputs, and fetched (with their bytes as stored).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct S3Counts {
    /// Objects the listing found.
    pub objects_listed: usize,
    /// Objects fetched (read).
    pub objects_fetched: usize,
    /// Their bytes, as stored.
    pub bytes_fetched: u64,
}

#[derive(Serialize)]
struct JsonReject {
    /// `reject`, in a log of events.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
    source: String,
    line: u64,
    byte_offset: u64,
    column: Option<String>,
    reason: String,
}

impl From<sparkify_core::Reject> for JsonReject {
    fn from(r: sparkify_core::Reject) -> Self {
        JsonReject {
            event: None,
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
            Some(e) => Err(S::Error::custom(format!(
                "reading the rejects back: {}",
                sparkify_core::error::chain(&e)
            ))),
            None => Ok(out),
        }
    }
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    /// `summary`, in a log of events.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    reject_details: Option<JsonRejects<'a>>,
    committed: bool,
    up_to_date: bool,
    sink: &'a str,
    run_id: Option<&'a str>,
    checks: Checks,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    schema_drift: &'a [sparkify_core::drift::Drift],
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<sparkify_core::source::Flow>,
}

impl Summary {
    /// A reject as one line of a log of events: `"event": "reject"`, then the fields of an
    /// element of `reject_details`.
    pub fn reject_line(reject: sparkify_core::Reject) -> String {
        let line = JsonReject {
            event: Some("reject"),
            ..JsonReject::from(reject)
        };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// How many records were rejected.
    pub fn rejected(&self) -> usize {
        self.rejects.as_ref().map_or(0, |k| k.rows().num_rows())
    }

    /// The run's rejects, in order (songs first, then the events in input order), each
    /// read back from where it spilled.
    pub fn rejects(
        &self,
    ) -> impl Iterator<Item = sparkify_core::Result<sparkify_core::Reject>> + '_ {
        self.rejects
            .as_ref()
            .map(Kept::rows)
            .into_iter()
            .flat_map(read_back)
    }

    /// Writes the summary as pretty JSON, then a newline. `reject_details` is read back from
    /// where the rejects spilled as it is written, never held whole.
    pub fn write_json(&self, out: impl Write) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(out);
        serde_json::to_writer_pretty(&mut out, &self.json(false))?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// The summary as one line of a log of events: `"event": "summary"`, then the fields of
    /// [`Summary::write_json`] but `reject_details` (a log tells each reject on a line of its
    /// own).
    pub fn json_line(&self) -> String {
        serde_json::to_string(&self.json(true)).unwrap_or_default()
    }

    fn json(&self, as_event: bool) -> JsonSummary<'_> {
        JsonSummary {
            event: as_event.then_some("summary"),
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
            reject_details: (!as_event).then_some(JsonRejects(self.rejects.as_ref())),
            committed: self.committed,
            up_to_date: self.up_to_date,
            sink: &self.sink,
            run_id: self.run_id.as_deref(),
            checks: self.checks,
            error: self.error.as_deref(),
            schema_drift: &self.drift,
            seconds: self.seconds,
            in_flight: self.flow,
        }
    }
}
