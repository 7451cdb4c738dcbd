//! `sparkify etl`: find the input, read it in parallel, build the star schema, load the sink.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sparkify_core::ledger::{self, Increment, Kind, Ledger, Split};
use sparkify_core::model;
use sparkify_core::reject::rejects_batch;
use sparkify_core::sink::Staging;
use sparkify_core::source::{self, Discovery, Input, InputFile, ReadOptions, ReadOutput, Remote};
use sparkify_core::table::{ETL_FILES, SINK_TABLES, STAGING_EVENTS, STAGING_SONGS};
use sparkify_core::{Load, Tables};
use sparkify_s3::{S3, S3Options, Source};

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

    let found = find_inputs(&s.songs, &s.events, &s.s3, s.s3_concurrency)?;
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
    let read = read_found(
        &found,
        &song_split.read,
        &event_split.read,
        s.batch_size,
        &pool,
    )?;
    read.songs_out.reconcile(STAGING_SONGS.name)?;
    read.events_out.reconcile(STAGING_EVENTS.name)?;
    let s3_counts = read.s3_counts();
    let Read {
        songs,
        events,
        songs_out,
        events_out,
        ..
    } = read;

    let rejects: Vec<_> = songs_out
        .rejects
        .iter()
        .chain(&events_out.rejects)
        .cloned()
        .collect();
    let mut summary = Summary {
        records_read: songs_out.records + events_out.records,
        files_read: songs_out.files_read + events_out.files_read,
        files_skipped: songs.skipped.len() + events.skipped.len(),
        files_already_loaded: song_split.unchanged + event_split.unchanged,
        files_vanished: song_split.vanished.len() + event_split.vanished.len(),
        incremental: held.is_some(),
        s3: s3_counts,
        bytes_read: songs_out.bytes_read + events_out.bytes_read,
        rows: Vec::new(),
        rejects,
        committed: false,
        up_to_date: false,
        sink: sink.describe(),
        seconds: 0.0,
    };
    for r in &summary.rejects {
        eprintln!("reject: {r}");
    }
    let rejected = summary.rejects.len();
    if rejected as u64 > s.max_errors {
        summary.seconds = started.elapsed().as_secs_f64();
        finish(&summary, &s)?;
        return Err(Failure::TooManyRejects {
            rejected,
            max: s.max_errors,
        }
        .into());
    }

    let mut remove = song_split.remove;
    remove.extend(event_split.remove);
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
    let first_id = held.as_ref().map_or(1, Ledger::next_id);
    let first_event = first_id + songs_out.files.len() as i32;
    let staging_songs = ledger::tag(&STAGING_SONGS, &songs_out.batch, &songs_out.files, first_id)?;
    let staging_events = ledger::tag(
        &STAGING_EVENTS,
        &events_out.batch,
        &events_out.files,
        first_event,
    )?;
    let run_files = [
        (Kind::Songs, songs_out.files.as_slice()),
        (Kind::Events, events_out.files.as_slice()),
    ];
    let etl_files = ledger::ledger_batch(&run_files, first_id, run_started_at)?;
    let increment = held
        .as_ref()
        .map(|l| Increment::new(l, remove, &run_files, s.mode));
    // An incremental load's star schema is rebuilt in the sink, over every staged row.
    let star = match increment {
        Some(_) => None,
        None => Some(pool.install(|| model::build(&events_out.batch, &songs_out.batch, s.mode))?),
    };
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "model built");
    let load_errors = rejects_batch(&summary.rejects, run_started_at);
    let tables = Tables {
        staging_events: &staging_events,
        staging_songs: &staging_songs,
        star: star.as_ref(),
        load_errors: &load_errors,
        etl_files: &etl_files,
        increment: increment.as_ref(),
    };
    summary.rows = tables
        .all()
        .iter()
        .map(|(t, b)| (t.name.to_owned(), b.num_rows()))
        .collect();
    let loaded = sink.load(Load::Parsed(tables));
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "sink done");
    summary.committed = loaded.is_ok();
    if loaded.is_ok() && increment.is_some() {
        summary.rows = sink_rows(sink.as_mut())?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    finish(&summary, &s)?;
    loaded
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

/// What `--songs` and `--events` found, and read.
pub struct Read {
    pub songs: Discovery,
    pub events: Discovery,
    pub songs_out: ReadOutput,
    pub events_out: ReadOutput,
    /// Whether any input is in S3.
    pub s3: bool,
}

impl Read {
    /// What the run listed and fetched from S3, when it read from there.
    fn s3_counts(&self) -> Option<S3Counts> {
        let fetched = |d: &Discovery, o: &ReadOutput| {
            if d.is_local() {
                (0, 0, 0)
            } else {
                (d.files.len(), o.files_read, o.bytes_read)
            }
        };
        let (sl, sf, sb) = fetched(&self.songs, &self.songs_out);
        let (el, ef, eb) = fetched(&self.events, &self.events_out);
        self.s3.then_some(S3Counts {
            objects_listed: sl + el,
            objects_fetched: sf + ef,
            bytes_fetched: sb + eb,
        })
    }
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
                concurrency: s3_concurrency,
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
    let found = find_inputs(song_inputs, event_inputs, s3_options, s3_concurrency)?;
    let (songs, events) = (found.songs.files.clone(), found.events.files.clone());
    read_found(&found, &songs, &events, batch_size, pool)
}

/// Reads `songs` and `events`, files `found` holds, in parallel on `pool`, with a progress
/// bar on a terminal.
pub fn read_found(
    found: &Found,
    songs: &[InputFile],
    events: &[InputFile],
    batch_size: usize,
    pool: &rayon::ThreadPool,
) -> anyhow::Result<Read> {
    let started = Instant::now();
    let remote = found.s3.as_ref().map(|r| r as &dyn Remote);
    let bytes = |files: &[InputFile]| files.iter().map(|f| f.len).sum::<u64>();
    let progress = progress_bar(bytes(songs) + bytes(events));
    let bar = progress.clone();
    let opts = ReadOptions {
        batch_size,
        on_file: Some(Arc::new(move |n| bar.inc(n))),
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
    progress.finish_and_clear();
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "read");
    let (songs_out, events_out) = read?;
    Ok(Read {
        songs: found.songs.clone(),
        events: found.events.clone(),
        songs_out,
        events_out,
        s3: found.s3.is_some(),
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
        rejects: Vec::new(),
        committed: loaded.is_ok(),
        up_to_date: false,
        sink: sink.describe(),
        seconds: started.elapsed().as_secs_f64(),
    };
    finish(&summary, s)?;
    loaded
}

/// Prints the summary and writes `--summary-json`.
fn finish(summary: &Summary, s: &LoadSettings) -> Result<(), Failure> {
    summary
        .finish(s.summary_json.as_deref())
        .map_err(|e| Failure::Usage(format!("{e:#}")))
}

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} reading {bytes}/{total_bytes} ({bytes_per_sec}) {wide_bar}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
