//! [`Etl`]: one load, from the input files to a committed sink. Discover the input, read the
//! sink's ledger (`--incremental`), stream the events through the model into the sink while
//! the songs are read, and commit; the [`Summary`] says what it did.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use sparkify_core::Load;
use sparkify_core::ledger::{self, Kind, Ledger, Split};
use sparkify_core::model::SongplaysMode;
use sparkify_core::pipeline::{self, Against, Pipeline};
use sparkify_core::sink::Staging;
use sparkify_core::source::{self, Discovery, FileRead, Input, ReadOptions};
use sparkify_core::sql::Dialect;
use sparkify_core::table::{
    ETL_FILES, ETL_RUNS, LOAD_ERRORS, SINK_TABLES, STAGING_EVENTS, STAGING_SONGS, STAGING_TABLES,
    TableDef,
};
use sparkify_s3::S3Options;

use crate::error::{Error, NotCommitted, Result};
use crate::progress::{Event, Observer, Phase, Tell};
use crate::read::{Inputs, bytes};
use crate::sink::{self, AnySink, SinkConfig};
use crate::summary::{Checks, S3Counts, Summary};
use sparkify_core::checks::CheckOptions;
use sparkify_core::drift::{DriftLog, OnNewField};
use sparkify_core::error::said_once;
use sparkify_core::history::{self, FileCounts, RunRecord, RunStamp, redact_command};
use sparkify_core::sink::Closing;

/// How a load reads, builds and reports; [`Etl`]'s setters fill it in.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rejected records allowed before the load commits nothing (Redshift's MAXERROR).
    pub max_errors: u64,
    /// Which plays become songplays.
    pub mode: SongplaysMode,
    /// Worker threads (`None`: one per core).
    pub threads: Option<usize>,
    /// Rows per decoded batch (the tables are the same for any size).
    pub batch_size: usize,
    /// The most input decoded and not yet loaded at once, in bytes.
    pub in_flight: u64,
    /// Parse only the files that are new or changed since the last load into the sink.
    pub incremental: bool,
    /// With `incremental`: remove the rows of files no longer in the input.
    pub prune: bool,
    /// With `incremental`: drop the star tables and build them again over every staged row,
    /// instead of maintaining the rows of what changed.
    pub rebuild: bool,
    /// How `s3://` inputs are reached.
    pub s3: S3Options,
    /// S3 GETs at a time.
    pub s3_concurrency: usize,
    /// Run the checks inside the load's transaction before its COMMIT, and commit nothing
    /// when one fails (`etl --check`).
    pub checks: Option<CheckOptions>,
    /// What the load does when the input holds a field the staging schema lacks: load and
    /// warn (the default), load and say nothing but in `schema_drift`, or commit nothing.
    pub on_new_field: OnNewField,
    /// The command line `etl_runs` records, its secrets removed
    /// ([`sparkify_core::history::redact_command`]); `None`: this process's.
    pub command: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_errors: 0,
            mode: SongplaysMode::Matched,
            threads: None,
            batch_size: sparkify_core::reader::DEFAULT_BATCH_SIZE,
            in_flight: sparkify_core::source::DEFAULT_IN_FLIGHT,
            incremental: false,
            prune: false,
            rebuild: false,
            s3: S3Options::default(),
            s3_concurrency: sparkify_s3::DEFAULT_CONCURRENCY,
            checks: None,
            on_new_field: OnNewField::Warn,
            command: None,
        }
    }
}

/// One load: song files and event logs into a sink.
///
/// ```no_run
/// use sparkify::{Etl, SinkConfig};
/// use sparkify::sink::DuckDbConfig;
///
/// let summary = Etl::new(SinkConfig::from(DuckDbConfig::new("out.duckdb")))
///     .songs(["fixtures/sparkify/song_data".parse()?])
///     .events(["fixtures/sparkify/log_data".parse()?])
///     .max_errors(10)
///     .run()?;
/// for (table, rows) in &summary.rows {
///     println!("{table}: {rows}");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Etl {
    songs: Vec<Input>,
    events: Vec<Input>,
    sink: SinkConfig,
    options: Options,
    tell: Tell,
}

impl Etl {
    /// A load into the sink `sink` builds, with no input yet and the default options.
    pub fn new(sink: impl Into<SinkConfig>) -> Self {
        Etl {
            songs: Vec::new(),
            events: Vec::new(),
            sink: sink.into(),
            options: Options::default(),
            tell: Tell::new(None),
        }
    }

    /// The song files: folders (walked recursively), files, globs or `s3://` prefixes.
    pub fn songs(mut self, inputs: impl IntoIterator<Item = Input>) -> Self {
        self.songs.extend(inputs);
        self
    }

    /// The event logs: folders (walked recursively), files, globs or `s3://` prefixes.
    pub fn events(mut self, inputs: impl IntoIterator<Item = Input>) -> Self {
        self.events.extend(inputs);
        self
    }

    /// Every option at once.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Rejected records allowed before the load commits nothing (default 0).
    pub fn max_errors(mut self, n: u64) -> Self {
        self.options.max_errors = n;
        self
    }

    /// Which plays become songplays (default: those whose song is known).
    pub fn songplays(mut self, mode: SongplaysMode) -> Self {
        self.options.mode = mode;
        self
    }

    /// Worker threads (default: one per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.options.threads = Some(n);
        self
    }

    /// The most input decoded and not yet loaded at once, in bytes (default 64 MiB).
    pub fn in_flight(mut self, bytes: u64) -> Self {
        self.options.in_flight = bytes;
        self
    }

    /// Parse only the files that are new or changed since the last load into the sink
    /// (by its `etl_files`); with `prune`, also remove the rows of files no longer in the
    /// input.
    pub fn incremental(mut self, prune: bool) -> Self {
        self.options.incremental = true;
        self.options.prune = prune;
        self
    }

    /// With [`Etl::incremental`]: drop the star tables and build them again over every
    /// staged row, as a full load does, instead of maintaining the rows of the keys that
    /// changed (the default; the tables are the same either way, but for `songplay_id`).
    pub fn rebuild(mut self) -> Self {
        self.options.rebuild = true;
        self
    }

    /// Runs the built-in checks ([`sparkify_core::checks`]) inside the load's transaction
    /// before its COMMIT; a failed check means nothing is committed ([`Error::summary`]
    /// says which).
    pub fn check(mut self, options: CheckOptions) -> Self {
        self.options.checks = Some(options);
        self
    }

    /// What the load does when the input holds a field the staging schema lacks (default:
    /// load it and report it, [`OnNewField::Warn`]; [`OnNewField::Fail`] commits nothing).
    pub fn on_new_field(mut self, action: OnNewField) -> Self {
        self.options.on_new_field = action;
        self
    }

    /// The command line the run history records for this load (default: this process's),
    /// its secrets removed.
    pub fn command(mut self, args: impl IntoIterator<Item = String>) -> Self {
        self.options.command = Some(redact_command(args));
        self
    }

    /// Hands every [`Event`] of the run to `observer`, from whichever thread it happens on.
    pub fn on_event(mut self, observer: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        let observer: Observer = Arc::new(observer);
        self.tell = Tell::new(Some(observer));
        self
    }

    /// Every statement the load would run, in order, without connecting to anything. An
    /// incremental load's statements depend on the sink's ledger; this is a full load's.
    pub fn plan(&self) -> Result<Vec<String>> {
        let mut sink = self.sink.clone().build();
        let closing = closing(
            &self.options,
            &*sink,
            RunStamp::now(),
            self.options.incremental,
            FileCounts::default(),
            Vec::new(),
        );
        sink.close_with(closing);
        sink.plan()
    }
}

/// What a load does before its COMMIT: its checks, and its row in `etl_runs`.
fn closing(
    options: &Options,
    sink: &dyn AnySink,
    stamp: RunStamp,
    incremental: bool,
    files: FileCounts,
    drift: Vec<Arc<DriftLog>>,
) -> Closing {
    let command = match &options.command {
        Some(command) => command.clone(),
        None => redact_command(std::env::args()),
    };
    Closing {
        run: RunRecord {
            stamp,
            command,
            sink: sink.describe(),
            incremental,
            files,
        },
        checks: options.checks,
        max_errors: options.max_errors,
        drift,
    }
}

impl Etl {
    /// Runs the load: the sink holds the new tables when it returns `Ok`, and what it held
    /// before when it returns an error. A load that ran and did not commit (too many
    /// rejects, a sink that failed) gives its [`Summary`] with the error
    /// ([`Error::summary`]).
    pub fn run(self) -> Result<Summary> {
        let started = Instant::now();
        let stamp = RunStamp::now();
        let s = &self.options;
        let tell = &self.tell;
        let parquet = matches!(self.sink, SinkConfig::Parquet(_));
        let mut sink = self.sink.build();
        if s.checks.is_some() && parquet {
            return Err(Error::Usage(format!(
                "--check: {} is a Parquet lake, which runs no SQL before it is in place; \
                 check a DuckDB, PostgreSQL or Redshift sink",
                sink.describe()
            )));
        }
        if s.incremental && parquet {
            return Err(Error::Usage(format!(
                "--incremental: {} is a Parquet lake, replaced whole on every load; \
                 load DuckDB, PostgreSQL or Redshift incrementally",
                sink.describe()
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(s.threads.unwrap_or(0))
            .build()
            .map_err(|e| Error::Usage(format!("--threads: {e}")))?;
        if sink.staging() == Staging::InWarehouse {
            if s.incremental {
                return Err(Error::Usage(
                    "--incremental: with COPY from the JSON, Redshift reads every file itself; \
                     set copy_from = \"parquet\" under [redshift] to load incrementally"
                        .into(),
                ));
            }
            sink.check()?;
            let closing = closing(
                &self.options,
                &*sink,
                stamp.clone(),
                false,
                FileCounts::default(),
                Vec::new(),
            );
            sink.close_with(closing);
            return in_warehouse(sink.as_mut(), started, stamp, s.checks.is_some(), tell);
        }
        for (what, inputs) in [("--songs", &self.songs), ("--events", &self.events)] {
            if inputs.is_empty() {
                let error = format!("{what} is required for {}", sink.describe());
                return Err(Error::Usage(error));
            }
        }
        sink.check()?;

        tell.start(Phase::Discover);
        let inputs = Inputs {
            songs: &self.songs,
            events: &self.events,
            s3: &s.s3,
            s3_concurrency: s.s3_concurrency,
        };
        let found = pool.install(|| inputs.find(tell));
        tell.finish();
        let found = found?;
        let held = match s.incremental {
            true => {
                tell.start(Phase::Ledger);
                let held = held_ledger(sink.as_mut(), tell);
                tell.finish();
                held?
            }
            false => None,
        };
        let held_some = held.is_some();
        let (song_split, event_split) = match &held {
            Some(l) => (
                ledger::split(l, Kind::Songs, &found.songs.files, s.prune),
                ledger::split(l, Kind::Events, &found.events.files, s.prune),
            ),
            None => (everything(&found.songs), everything(&found.events)),
        };
        for gone in song_split.vanished.iter().chain(&event_split.vanished) {
            tell.event(Event::Vanished {
                path: gone.path.to_string(),
                rows_staged: gone.rows_staged,
                rejects: gone.rejects,
                pruned: s.prune,
            });
        }
        let files = FileCounts {
            new: (song_split.read.len() + event_split.read.len()
                - song_split.changed()
                - event_split.changed()) as u64,
            changed: (song_split.changed() + event_split.changed()) as u64,
            unchanged: (song_split.unchanged + event_split.unchanged) as u64,
            vanished: (song_split.vanished.len() + event_split.vanished.len()) as u64,
        };
        let mut remove = song_split.remove;
        remove.extend(event_split.remove);
        let mut summary = Summary {
            files_skipped: found.songs.skipped.len() + found.events.skipped.len(),
            files_already_loaded: song_split.unchanged + event_split.unchanged,
            files_vanished: song_split.vanished.len() + event_split.vanished.len(),
            incremental: held.is_some(),
            sink: sink.describe(),
            ..Summary::default()
        };
        if held.is_some()
            && song_split.read.is_empty()
            && event_split.read.is_empty()
            && remove.is_empty()
        {
            // Nothing new, changed or pruned: the tables already say what a load would.
            summary.up_to_date = true;
            summary.rows = sink_rows(sink.as_mut(), None)?;
            summary.seconds = started.elapsed().as_secs_f64();
            return Ok(summary);
        }

        let (songs, events) = (&song_split.read, &event_split.read);
        tell.start(Phase::Load);
        tell.event(Event::ToRead {
            bytes: bytes(songs) + bytes(events),
        });
        let drift = [
            DriftLog::new(STAGING_SONGS.name),
            DriftLog::new(STAGING_EVENTS.name),
        ];
        let opts = ReadOptions {
            batch_size: s.batch_size.max(1),
            on_file: Some(tell.on_file()),
            drift: Some(Arc::clone(&drift[1])),
            // A longer text would fail the whole COPY: it is a reject here instead.
            max_text_bytes: matches!(sink.dialect(), Some(Dialect::Redshift(_)))
                .then_some(sparkify_core::sql::VARCHAR_MAX as usize),
            ..ReadOptions::default()
        };
        let opts_songs = ReadOptions {
            drift: Some(Arc::clone(&drift[0])),
            ..opts.clone()
        };
        let remote = found.remote();
        let against = held.map(|ledger| Against {
            ledger,
            remove,
            rebuild: s.rebuild,
        });
        let first_id = against.as_ref().map_or(1, |a| a.ledger.next_id());
        // An incremental load's star schema is the sink's to maintain (or rebuild), as is
        // every load's by a sink that builds it in SQL.
        let in_sink = against.is_some() || sink.builds_star();
        let (model, push): (_, source::OnPart) = match in_sink {
            false => {
                let model = pipeline::Model::new(s.mode);
                let pushing = Arc::clone(&model);
                let push = Arc::new(move |b: &[RecordBatch]| pushing.push(b));
                (Some(model), push)
            }
            true => (None, Arc::new(|_: &[RecordBatch]| Ok(()))),
        };
        let event_inputs = source::inputs(events, remote)?;
        let options = pipeline::Options {
            mode: s.mode,
            max_errors: s.max_errors,
            first_id,
            song_files: songs.len(),
            stamp: stamp.clone(),
            // The rejects held in memory: a quarter of the bound on the events in flight.
            rejects_held: usize::try_from(s.in_flight / 4).unwrap_or(usize::MAX),
            refuse_new_fields: match s.on_new_field {
                OnNewField::Fail => drift.to_vec(),
                OnNewField::Warn | OnNewField::Ignore => Vec::new(),
            },
        };
        let closing = closing(
            &self.options,
            &*sink,
            stamp.clone(),
            held_some,
            files,
            drift.to_vec(),
        );
        sink.close_with(closing);
        summary.run_id = Some(stamp.id.to_string());
        summary.checks = match s.checks {
            Some(_) => Checks::Passed,
            None => Checks::NotRun,
        };
        let (loaded, mut run) = std::thread::scope(|scope| {
            // The songs are read whole on the same workers while the events stream.
            let (songs_read, songs_out) = std::sync::mpsc::channel();
            let (opts_songs, pool) = (&opts_songs, &pool);
            scope.spawn(move || {
                let read = source::read(
                    songs,
                    &STAGING_SONGS.input_schema(),
                    opts_songs,
                    pool,
                    remote,
                );
                tracing::info!(seconds = started.elapsed().as_secs_f64(), "songs read");
                let _ = songs_read.send(read);
            });
            let parts = source::stream(
                scope,
                event_inputs,
                STAGING_EVENTS.input_schema(),
                opts.clone(),
                s.in_flight,
                pool,
                push,
            );
            let mut pipeline = Pipeline::new(parts, songs_out, model, against, options)
                .with_phases(tell.on_phase());
            let loaded = sink.load(Load::Streamed(&mut pipeline));
            if pipeline.overflowed() {
                // The sink has rolled back; the rest of the input is read for its rejects.
                pipeline.read_on();
            }
            pipeline.stop_reading();
            (loaded, pipeline)
        });
        tell.finish();
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "sink done");
        let (song_files, event_files) = run.files();
        let stored = |files: &[FileRead]| files.iter().map(|f| f.size).sum::<u64>();
        summary.records_read = run.records();
        summary.files_read = song_files.len() + event_files.len();
        summary.bytes_read = stored(song_files) + stored(event_files);
        summary.s3 = found.s3.is_some().then(|| {
            // What came from S3: the inputs given as s3:// URLs.
            let from_s3 = |found: &Discovery, read: &[FileRead]| match found.is_local() {
                true => (0, 0, 0),
                false => (found.files.len(), read.len(), stored(read)),
            };
            let (sl, sf, sb) = from_s3(&found.songs, song_files);
            let (el, ef, eb) = from_s3(&found.events, event_files);
            S3Counts {
                objects_listed: sl + el,
                objects_fetched: sf + ef,
                bytes_fetched: sb + eb,
            }
        });
        summary.rejects = Some(run.rejects()?);
        summary.drift = drift.iter().flat_map(|log| log.entries()).collect();
        summary.flow = Some(run.flow());
        summary.rows = run
            .rows()
            .iter()
            .map(|(t, n)| ((*t).to_owned(), *n))
            .collect();
        summary.committed = loaded.is_ok();
        tell.event(Event::Done {
            records: summary.records_read,
            rejected: summary.rejected(),
        });
        if loaded.is_ok() && in_sink {
            // The star's rows, and an incremental load's whole tables, are the sink's to count.
            summary.rows = sink_rows(sink.as_mut(), Some(&stamp))?;
        }
        summary.seconds = started.elapsed().as_secs_f64();
        if run.overflowed() {
            let error = Error::TooManyRejects {
                rejected: summary.rejected(),
                max: s.max_errors,
            };
            return Err(not_committed(summary, error));
        }
        match loaded {
            Ok(()) => Ok(summary),
            Err(error) => Err(not_committed(summary, error)),
        }
    }
}

/// A run that did not commit: its summary says why, and whether a check was the cause.
fn not_committed(mut summary: Summary, error: Error) -> Error {
    summary.committed = false;
    summary.error = Some(said_once(std::iter::successors(
        Some(&error as &(dyn std::error::Error + 'static)),
        |e| e.source(),
    )));
    if let Some(sparkify_core::Error::ChecksFailed(_)) = error.core() {
        summary.checks = Checks::Failed;
    }
    Error::NotCommitted(Box::new(NotCommitted { summary, error }))
}

/// Every file found, to read (a full load).
fn everything(found: &Discovery) -> Split {
    Split {
        read: found.files.clone(),
        ..Split::default()
    }
}

/// The ledger `sink` holds; `None` (and a full load) when it has none yet.
fn held_ledger(sink: &mut dyn AnySink, tell: &Tell) -> Result<Option<Ledger>> {
    let present = sink::tables_present(sink)?;
    if !present.iter().any(|t| t.name == ETL_FILES.name) {
        tell.event(Event::NoLedger {
            sink: sink.describe(),
        });
        return Ok(None);
    }
    let held = sink.query(ledger::SELECT)?;
    Ok(Some(Ledger::from_rows(&held.rows)?))
}

/// Rows per table as the sink holds them after a load that built them there. Those that
/// `run`'s row in `etl_runs` counted in the load's transaction are read back from it
/// (counting again reads every staged row on PostgreSQL); the others are counted, and all of
/// them when the sink holds no row of `run` (no run, or a load that has not committed).
fn sink_rows(sink: &mut dyn AnySink, run: Option<&RunStamp>) -> Result<Vec<(String, usize)>> {
    let recorded = match run {
        Some(run) if sink::holds(sink, &ETL_RUNS)? => {
            sink.query(&history::recorded_counts(run))?.counts()
        }
        _ => Vec::new(),
    };
    let mut rest: Vec<&'static TableDef> = SINK_TABLES
        .iter()
        .copied()
        .filter(|t| !recorded.iter().any(|(name, _)| name == t.name))
        .collect();
    // Counted in the order a load replaces the tables (the staging tables, `load_errors`,
    // `etl_files`, then the star's): a load begun since this one committed holds them in
    // that order, and a query taking them in another could deadlock with it.
    rest.sort_by_key(|t| match t.name {
        n if STAGING_TABLES.iter().any(|s| s.name == n) => 0,
        n if n == LOAD_ERRORS.name => 1,
        n if n == ETL_FILES.name => 2,
        _ => 3,
    });
    let counted = sink::row_counts(sink, &rest)?;
    Ok(SINK_TABLES
        .iter()
        .map(|t| {
            let n = recorded
                .iter()
                .chain(&counted)
                .find(|(name, _)| name == t.name)
                .map_or(0, |(_, n)| *n);
            (t.name.to_owned(), usize::try_from(n).unwrap_or(usize::MAX))
        })
        .collect())
}

/// Redshift with JSON COPY: the cluster reads the input from S3 itself; nothing is read here.
fn in_warehouse(
    sink: &mut dyn AnySink,
    started: Instant,
    stamp: RunStamp,
    checked: bool,
    tell: &Tell,
) -> Result<Summary> {
    tell.start(Phase::Load);
    let loaded = sink.load(Load::InWarehouse);
    tell.finish();
    // The warehouse's rows, its load_errors (the records COPY skipped) among them.
    let rows = match loaded {
        Ok(()) => sink_rows(sink, Some(&stamp))?,
        Err(_) => Vec::new(),
    };
    let summary = Summary {
        committed: loaded.is_ok(),
        rows,
        sink: sink.describe(),
        run_id: Some(stamp.id.to_string()),
        checks: match loaded.is_ok() && checked {
            true => Checks::Passed,
            false => Checks::NotRun,
        },
        seconds: started.elapsed().as_secs_f64(),
        ..Summary::default()
    };
    match loaded {
        Ok(()) => Ok(summary),
        Err(error) => Err(not_committed(summary, error)),
    }
}
