//! `sparkify etl`: find the input, read it in parallel, build the star schema, load the sink.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sparkify_core::Load;
use sparkify_core::ledger::{self, Kind, Ledger, Split};
use sparkify_core::pipeline::{self, Against, Pipeline};
use sparkify_core::sink::Staging;
use sparkify_core::source::{
    self, Discovery, FileRead, Input, InputFile, ReadOptions, ReadOutput, Remote, StreamInput,
};
use sparkify_core::table::{ETL_FILES, SINK_TABLES, STAGING_EVENTS, STAGING_SONGS};
use sparkify_s3::{FetchLimits, S3, S3Options, Source};

use crate::args::EtlArgs;
use crate::exit::Failure;
use crate::settings::LoadSettings;
use crate::sink::{self, AnySink};
use crate::summary::{S3Counts, Summary};

pub fn etl(args: EtlArgs) -> anyhow::Result<()> {
    load(LoadSettings::resolve(
        args.songs,
        args.events,
        &args.sink,
        args.load,
    )?)
}

/// One load, as `settings` say.
pub fn load(s: LoadSettings) -> anyhow::Result<()> {
    let started = Instant::now();
    let run_started_at = chrono::Utc::now().timestamp_millis();
    let parquet = matches!(s.sink, crate::settings::SinkSettings::Parquet(_));
    let mut sink = sink::build(s.sink.clone());
    if s.dry_run {
        if s.incremental {
            // A dry run connects to nothing, so it cannot read the ledger the plan depends on.
            println!(
                "-- --incremental: which files are parsed and which rows go depends on the \
                 sink's etl_files, read when the load runs; shown here is a full load\n"
            );
        }
        for statement in sink.plan()? {
            println!("{statement};\n");
        }
        return Ok(());
    }
    if let Some(path) = &s.summary_json {
        writable(path)?;
    }
    if s.incremental && parquet {
        return Err(Failure::Usage(format!(
            "--incremental: {} is a Parquet lake, replaced whole on every load; \
             load DuckDB, PostgreSQL or Redshift incrementally",
            sink.describe()
        ))
        .into());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(s.threads.unwrap_or(0))
        .build()
        .map_err(|e| Failure::Usage(format!("--threads: {e}")))?;
    if sink.staging() == Staging::InWarehouse {
        if s.incremental {
            return Err(Failure::Usage(
                "--incremental: with COPY from the JSON, Redshift reads every file itself; \
                 set copy_from = \"parquet\" under [redshift] to load incrementally"
                    .into(),
            )
            .into());
        }
        sink.check()?;
        return load_in_warehouse(sink.as_mut(), &s, started);
    }
    for (what, inputs) in [("--songs", &s.songs), ("--events", &s.events)] {
        if inputs.is_empty() {
            let error = format!("{what} is required for {}", sink.describe());
            return Err(Failure::Usage(error).into());
        }
    }
    sink.check()?;

    // Walking thousands of song files takes seconds on a cold cache: a spinner says so.
    let finding = Progress::spinner("finding the input files");
    let found = pool.install(|| find_inputs(&s.songs, &s.events, &s.s3, s.s3_concurrency));
    finding.finish();
    let found = found?;
    let held = match s.incremental {
        true => held_ledger(sink.as_mut())?,
        false => None,
    };
    let (song_split, event_split) = match &held {
        Some(l) => (
            ledger::split(l, Kind::Songs, &found.songs.files, s.prune),
            ledger::split(l, Kind::Events, &found.events.files, s.prune),
        ),
        None => (everything(&found.songs), everything(&found.events)),
    };
    for gone in song_split.vanished.iter().chain(&event_split.vanished) {
        let fate = if s.prune {
            "its rows are removed (--prune)"
        } else {
            "its rows stay (--prune removes them)"
        };
        eprintln!(
            "vanished: {} ({} rows, {} rejects loaded before) is no longer in the input; {fate}",
            gone.path, gone.rows_staged, gone.rejects
        );
    }
    let mut remove = song_split.remove;
    remove.extend(event_split.remove);
    let mut summary = Summary {
        records_read: 0,
        files_read: 0,
        files_skipped: found.songs.skipped.len() + found.events.skipped.len(),
        files_already_loaded: song_split.unchanged + event_split.unchanged,
        files_vanished: song_split.vanished.len() + event_split.vanished.len(),
        incremental: held.is_some(),
        s3: None,
        bytes_read: 0,
        rows: Vec::new(),
        rejects: None,
        committed: false,
        up_to_date: false,
        sink: sink.describe(),
        seconds: 0.0,
        flow: None,
    };
    if held.is_some()
        && song_split.read.is_empty()
        && event_split.read.is_empty()
        && remove.is_empty()
    {
        // Nothing new, changed or pruned: the tables already say what a load would.
        summary.up_to_date = true;
        summary.rows = sink_rows(sink.as_mut())?;
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(finish(&summary, &s)?);
    }

    let (songs, events) = (&song_split.read, &event_split.read);
    let progress = Progress::new(bytes(songs) + bytes(events));
    let opts = ReadOptions {
        batch_size: s.batch_size,
        on_file: Some(progress.on_file()),
        ..ReadOptions::default()
    };
    let remote = found.s3.as_ref().map(|r| r as &dyn Remote);
    let against = held.map(|ledger| Against { ledger, remove });
    let first_id = against.as_ref().map_or(1, |a| a.ledger.next_id());
    // An incremental load's star schema is rebuilt in the sink, over every staged row, as
    // is every load's by a sink that builds it in SQL.
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
    let inputs: Box<dyn Iterator<Item = sparkify_core::Result<StreamInput<'_>>> + Send> =
        match remote {
            Some(remote) if !found.events.is_local() => Box::new(remote.fetch(events).map(|b| {
                b.map(StreamInput::Fetched)
                    .map_err(sparkify_core::Error::Fetch)
            })),
            _ => Box::new(events.iter().map(|f| Ok(StreamInput::File(f)))),
        };
    let options = pipeline::Options {
        mode: s.mode,
        max_errors: s.max_errors,
        first_id,
        song_files: songs.len(),
        started_at_ms: run_started_at,
        // The rejects held in memory: a quarter of the bound on the events in flight.
        rejects_held: usize::try_from(s.in_flight / 4).unwrap_or(usize::MAX),
    };
    let (loaded, mut run) = std::thread::scope(|scope| {
        // The songs are read whole on the same workers while the events stream.
        let (songs_read, songs_out) = std::sync::mpsc::channel();
        let (opts_songs, pool) = (&opts, &pool);
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
            inputs,
            STAGING_EVENTS.input_schema(),
            opts.clone(),
            s.in_flight,
            pool,
            push,
        );
        let mut pipeline = Pipeline::new(parts, songs_out, model, against, options)
            .with_phases(progress.on_phase());
        let loaded = sink.load(Load::Streamed(&mut pipeline));
        if pipeline.overflowed() {
            // The sink has rolled back; the rest of the input is read for its rejects.
            pipeline.read_on();
        }
        pipeline.stop_reading();
        (loaded, pipeline)
    });
    progress.finish();
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
    summary.flow = Some(run.flow());
    summary.rows = run
        .rows()
        .iter()
        .map(|(t, n)| ((*t).to_owned(), *n))
        .collect();
    summary.print_rejects();
    summary.committed = loaded.is_ok();
    if loaded.is_ok() && in_sink {
        // The star's rows, and an incremental load's whole tables, are the sink's to count.
        summary.rows = sink_rows(sink.as_mut())?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    finish(&summary, &s)?;
    if run.overflowed() {
        return Err(Failure::TooManyRejects {
            rejected: summary.rejected(),
            max: s.max_errors,
        }
        .into());
    }
    loaded
}

fn bytes(files: &[InputFile]) -> u64 {
    files.iter().map(|f| f.len).sum()
}

/// Every file found, to read (a full load).
fn everything(found: &Discovery) -> Split {
    Split {
        read: found.files.clone(),
        ..Split::default()
    }
}

/// The ledger `sink` holds; `None` (and a full load) when it has none yet.
fn held_ledger(sink: &mut dyn AnySink) -> anyhow::Result<Option<Ledger>> {
    let present = sink::tables_present(sink)?;
    if !present.iter().any(|t| t.name == ETL_FILES.name) {
        eprintln!(
            "--incremental: {} holds no etl_files yet, so this load is a full one",
            sink.describe()
        );
        return Ok(None);
    }
    let held = sink.query(ledger::SELECT)?;
    Ok(Some(Ledger::from_rows(&held.rows)?))
}

/// Rows per table as the sink holds them after an incremental load.
fn sink_rows(sink: &mut dyn AnySink) -> anyhow::Result<Vec<(String, usize)>> {
    Ok(sink::row_counts(sink, &SINK_TABLES)?
        .into_iter()
        .map(|(name, n)| (name, n as usize))
        .collect())
}

/// The songs and the events, read whole (`sparkify verify` compares a sink with them).
pub struct Read {
    pub songs_out: ReadOutput,
    pub events_out: ReadOutput,
}

/// The files `--songs` and `--events` name, and the S3 client that lists and fetches them.
pub struct Found {
    pub songs: Discovery,
    pub events: Discovery,
    s3: Option<Source>,
}

/// Finds the song files and event logs (listing `s3://` inputs).
pub fn find_inputs(
    song_inputs: &[Input],
    event_inputs: &[Input],
    s3_options: &S3Options,
    s3_concurrency: usize,
) -> anyhow::Result<Found> {
    let s3 = song_inputs
        .iter()
        .chain(event_inputs)
        .any(Input::is_s3)
        .then(|| -> anyhow::Result<Source> {
            Ok(Source {
                s3: Arc::new(S3::connect(s3_options)?),
                limits: FetchLimits::new(s3_concurrency),
            })
        })
        .transpose()?;
    let remote = s3.as_ref().map(|r| r as &dyn Remote);
    let songs = find("--songs", song_inputs, remote)?;
    let events = find("--events", event_inputs, remote)?;
    Ok(Found { songs, events, s3 })
}

/// Finds and reads the song files and event logs in parallel on `pool`, with a progress bar
/// on a terminal.
pub fn read_inputs(
    song_inputs: &[Input],
    event_inputs: &[Input],
    s3_options: &S3Options,
    s3_concurrency: usize,
    batch_size: usize,
    pool: &rayon::ThreadPool,
) -> anyhow::Result<Read> {
    let found =
        pool.install(|| find_inputs(song_inputs, event_inputs, s3_options, s3_concurrency))?;
    let (songs, events) = (&found.songs.files, &found.events.files);
    let started = Instant::now();
    let remote = found.s3.as_ref().map(|r| r as &dyn Remote);
    let progress = Progress::new(bytes(songs) + bytes(events));
    progress.bar.set_message("reading");
    let opts = ReadOptions {
        batch_size,
        on_file: Some(progress.on_file()),
        ..ReadOptions::default()
    };
    let read = || -> anyhow::Result<(ReadOutput, ReadOutput)> {
        let (songs_schema, events_schema) =
            (STAGING_SONGS.input_schema(), STAGING_EVENTS.input_schema());
        if found.songs.is_local() && found.events.is_local() {
            // Both tables at once: the pool shares its workers between them.
            let (s, e) = pool.install(|| {
                rayon::join(
                    || source::read_files(songs, &songs_schema, &opts),
                    || source::read_files(events, &events_schema, &opts),
                )
            });
            return Ok((s?, e?));
        }
        // One after the other, each at full concurrency; nothing more is fetched once one fails.
        let s = source::read(songs, &songs_schema, &opts, pool, remote)?;
        let e = source::read(events, &events_schema, &opts, pool, remote)?;
        Ok((s, e))
    };
    let read = read();
    progress.finish();
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "read");
    let (songs_out, events_out) = read?;
    Ok(Read {
        songs_out,
        events_out,
    })
}

/// The files of one table's inputs; for `s3://` ones, says what the listing found.
fn find(what: &str, inputs: &[Input], remote: Option<&dyn Remote>) -> anyhow::Result<Discovery> {
    let found = source::discover_all(inputs, remote)?;
    if !found.is_local() {
        let shown: Vec<String> = inputs.iter().map(Input::to_string).collect();
        eprintln!(
            "{what}: listed {} objects ({} bytes) under {}",
            found.files.len(),
            found.bytes(),
            shown.join(" ")
        );
    }
    Ok(found)
}

/// Redshift with JSON COPY: the cluster reads the input from S3 itself; nothing is read here.
fn load_in_warehouse(
    sink: &mut dyn AnySink,
    s: &LoadSettings,
    started: Instant,
) -> anyhow::Result<()> {
    let loaded = sink.load(Load::InWarehouse);
    let summary = Summary {
        records_read: 0,
        files_read: 0,
        files_skipped: 0,
        files_already_loaded: 0,
        files_vanished: 0,
        incremental: false,
        s3: None,
        bytes_read: 0,
        rows: Vec::new(),
        rejects: None,
        committed: loaded.is_ok(),
        up_to_date: false,
        sink: sink.describe(),
        seconds: started.elapsed().as_secs_f64(),
        flow: None,
    };
    finish(&summary, s)?;
    loaded
}

/// Fails with bad usage unless `--summary-json`'s `path` can be written. The summary is
/// written when the run ends, after its COMMIT: a path found wrong only then was a committed
/// load that exited 2. Checked by opening it (and, when there is no such file, creating it and
/// removing it again, so that a run that fails before its summary leaves none).
fn writable(path: &std::path::Path) -> Result<(), Failure> {
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

/// Prints the summary and writes `--summary-json`.
fn finish(summary: &Summary, s: &LoadSettings) -> Result<(), Failure> {
    summary
        .finish(s.summary_json.as_deref())
        .map_err(|e| Failure::Usage(crate::exit::message(&e)))
}

/// What a person sees on a terminal while a load runs: the bytes read (reading and loading
/// go together, so this is the load's progress too), then each phase after the last byte.
/// Nothing when stderr is not a terminal.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new(total: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} {bytes}/{total_bytes} ({bytes_per_sec}) {wide_bar}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message("reading and loading");
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress { bar }
    }

    /// A spinner saying what the run does, with the time it has taken, until
    /// [`Progress::finish`].
    fn spinner(what: &str) -> Self {
        let bar = match std::io::stderr().is_terminal() {
            true => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            false => ProgressBar::hidden(),
        };
        Progress::spinning(&bar);
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress { bar }
    }

    fn spinning(bar: &ProgressBar) {
        if !bar.is_hidden() {
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
        }
    }

    /// Counts a file read, from any worker.
    fn on_file(&self) -> Arc<dyn Fn(u64) + Send + Sync> {
        let bar = self.bar.clone();
        Arc::new(move |n| bar.inc(n))
    }

    /// The phase after the reading, e.g. "committing", with the time it has taken so far.
    fn on_phase(&self) -> pipeline::OnPhase {
        let bar = self.bar.clone();
        Arc::new(move |phase: &str| {
            Progress::spinning(&bar);
            bar.set_message(phase.to_owned());
        })
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
