//! One run: find the input, read it in parallel, build the star schema, load the sink.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sparkify_core::Load;
use sparkify_core::model::{self, SongplaysMode};
use sparkify_core::reject::rejects_batch;
use sparkify_core::source::{self, Discovery, ReadOptions, ReadOutput};
use sparkify_core::table::{STAGING_EVENTS, STAGING_SONGS};

use sparkify_core::source::Blob;
use sparkify_sink_parquet::Compression;

use crate::config::Config;
use crate::s3::{LazyS3, Listing};
use crate::sinks::{self, AnySink, SinkOptions};
use crate::summary::{S3Counts, Summary};

/// An error with the exit status it ends the process with.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub const USAGE: u8 = 2;
pub const TOO_MANY_REJECTS: u8 = 3;
pub const SOURCE_OR_SINK: u8 = 4;

trait OrExit<T> {
    fn or_exit(self, code: u8) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> OrExit<T> for Result<T, E> {
    fn or_exit(self, code: u8) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            code,
            error: e.into(),
        })
    }
}

#[derive(Debug)]
pub struct EtlArgs {
    pub songs: Vec<String>,
    pub events: Vec<String>,
    pub sink: String,
    pub max_errors: u64,
    pub songplays: SongplaysMode,
    pub threads: Option<usize>,
    pub batch_size: usize,
    pub summary_json: Option<PathBuf>,
    pub sql_transform: bool,
    pub dry_run: bool,
    pub config: Config,
    pub s3: LazyS3,
    /// S3 requests at a time.
    pub s3_concurrency: usize,
    /// Parquet sink: also write the staging tables; the codec.
    pub with_staging: bool,
    pub compression: Compression,
    /// Redshift: `json` or `parquet`, and where Parquet staging uploads.
    pub staging: Option<String>,
    pub staging_prefix: Option<String>,
}

/// The inputs of one table: files on disk, or objects in S3.
enum Inputs {
    Local(Discovery),
    S3(Listing),
}

impl Inputs {
    fn find(what: &str, specs: &[String], s3: &LazyS3) -> Result<Inputs, Failure> {
        let remote = specs.iter().filter(|s| s.starts_with("s3://")).count();
        if remote == 0 {
            return discover_all(specs).map(Inputs::Local);
        }
        if remote < specs.len() {
            return Err(Failure {
                code: USAGE,
                error: anyhow!("{what}: all s3:// or all local, not both"),
            });
        }
        let listing = crate::s3::list(&*s3.get()?, specs)?;
        let bytes: u64 = listing.objects.iter().map(|o| o.size).sum();
        eprintln!(
            "{what}: listed {} objects ({bytes} bytes) under {}",
            listing.objects.len(),
            specs.join(" ")
        );
        Ok(Inputs::S3(listing))
    }

    fn bytes(&self) -> u64 {
        match self {
            Inputs::Local(d) => d.files.iter().map(|f| f.len).sum(),
            Inputs::S3(l) => l.objects.iter().map(|o| o.size).sum(),
        }
    }

    fn skipped(&self) -> usize {
        match self {
            Inputs::Local(d) => d.skipped.len(),
            Inputs::S3(l) => l.skipped,
        }
    }

    fn listed(&self) -> usize {
        match self {
            Inputs::Local(_) => 0,
            Inputs::S3(l) => l.objects.len(),
        }
    }

    /// Reads them: files on the pool; objects fetched `concurrency` at a time, each group
    /// decoded on the pool while the next downloads.
    fn read(
        &self,
        schema: &arrow::datatypes::SchemaRef,
        opts: &ReadOptions,
        pool: &rayon::ThreadPool,
        s3: &LazyS3,
        concurrency: usize,
    ) -> Result<ReadOutput, Failure> {
        match self {
            Inputs::Local(d) => pool
                .install(|| source::read_files(&d.files, schema, opts))
                .or_exit(SOURCE_OR_SINK),
            Inputs::S3(l) => {
                let fetched = s3.get()?.fetch(l.objects.clone(), concurrency).map(|f| {
                    f.map(|f| Blob {
                        name: f.url.to_string(),
                        data: f.body,
                    })
                });
                source::read_stream(fetched, schema, opts, pool).or_exit(SOURCE_OR_SINK)
            }
        }
    }
}

fn single_s3(specs: &[String]) -> Option<&str> {
    match specs {
        [one] if one.starts_with("s3://") => Some(one.as_str()),
        _ => None,
    }
}

fn discover_all(specs: &[String]) -> Result<Discovery, Failure> {
    let mut all = Discovery::default();
    for spec in specs {
        let found = source::discover(spec).map_err(|e| Failure {
            code: match e {
                sparkify_core::Error::NoInput(_) | sparkify_core::Error::Pattern { .. } => USAGE,
                _ => SOURCE_OR_SINK,
            },
            error: e.into(),
        })?;
        all.files.extend(found.files);
        all.skipped.extend(found.skipped);
    }
    all.files.sort_by(|a, b| a.path.cmp(&b.path));
    all.files.dedup();
    Ok(all)
}

pub fn run(args: EtlArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let run_started_at = chrono::Utc::now().timestamp_millis();
    let mut sink = sinks::parse(
        &args.sink,
        SinkOptions {
            mode: args.songplays,
            sql_transform: args.sql_transform,
            dry_run: args.dry_run,
            config: &args.config,
            s3_songs: single_s3(&args.songs),
            s3_events: single_s3(&args.events),
            s3: &args.s3,
            with_staging: args.with_staging,
            compression: args.compression,
            staging: args.staging.as_deref(),
            staging_prefix: args.staging_prefix.as_deref(),
            concurrency: args.s3_concurrency,
        },
    )?;
    if args.dry_run {
        for statement in sink.plan_text() {
            println!("{statement};\n");
        }
        return Ok(());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .or_exit(USAGE)?;
    if sink.stages_from_s3() {
        sink.check().or_exit(SOURCE_OR_SINK)?;
        return load_from_s3(&mut sink, &args, started, run_started_at);
    }
    for (what, specs) in [("--songs", &args.songs), ("--events", &args.events)] {
        if specs.is_empty() {
            return Err(Failure {
                code: USAGE,
                error: anyhow!("{what} is required for {}", sink.describe()),
            });
        }
    }
    sink.check().or_exit(SOURCE_OR_SINK)?;

    let songs = Inputs::find("--songs", &args.songs, &args.s3)?;
    let events = Inputs::find("--events", &args.events, &args.s3)?;
    let progress = progress_bar(songs.bytes() + events.bytes());
    let bar = progress.clone();
    let opts = ReadOptions {
        batch_size: args.batch_size.max(1),
        on_file: Some(Arc::new(move |n| bar.inc(n))),
        ..ReadOptions::default()
    };
    let read = || -> Result<(ReadOutput, ReadOutput), Failure> {
        if let (Inputs::Local(s), Inputs::Local(e)) = (&songs, &events) {
            let (s, e) = pool.install(|| {
                rayon::join(
                    || source::read_files(&s.files, &STAGING_SONGS.schema(), &opts),
                    || source::read_files(&e.files, &STAGING_EVENTS.schema(), &opts),
                )
            });
            return Ok((s.or_exit(SOURCE_OR_SINK)?, e.or_exit(SOURCE_OR_SINK)?));
        }
        // One after the other, each at full concurrency; nothing more is fetched once one fails.
        let c = args.s3_concurrency;
        let s = songs.read(&STAGING_SONGS.schema(), &opts, &pool, &args.s3, c)?;
        let e = events.read(&STAGING_EVENTS.schema(), &opts, &pool, &args.s3, c)?;
        Ok((s, e))
    };
    let read = read();
    progress.finish_and_clear();
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "read");
    let (songs_out, events_out) = read?;
    let s3_counts = (songs.listed() + events.listed() > 0).then(|| {
        let fetched = |i: &Inputs, o: &ReadOutput| match i {
            Inputs::S3(_) => (o.files_read, o.bytes_read),
            Inputs::Local(_) => (0, 0),
        };
        let (sf, sb) = fetched(&songs, &songs_out);
        let (ef, eb) = fetched(&events, &events_out);
        S3Counts {
            objects_listed: songs.listed() + events.listed(),
            objects_fetched: sf + ef,
            bytes_fetched: sb + eb,
        }
    });

    let rejects: Vec<_> = songs_out
        .rejects
        .iter()
        .chain(&events_out.rejects)
        .cloned()
        .collect();
    let mut summary = Summary {
        files_read: songs_out.files_read + events_out.files_read,
        files_skipped: songs.skipped() + events.skipped(),
        s3: s3_counts,
        bytes_read: songs_out.bytes_read + events_out.bytes_read,
        rows: Vec::new(),
        rejects,
        committed: false,
        sink: sink.describe(),
        seconds: 0.0,
    };
    for r in &summary.rejects {
        eprintln!("reject: {r}");
    }
    let rejected = summary.rejects.len();
    if rejected as u64 > args.max_errors {
        summary.seconds = started.elapsed().as_secs_f64();
        summary
            .finish(args.summary_json.as_deref())
            .or_exit(USAGE)?;
        return Err(Failure {
            code: TOO_MANY_REJECTS,
            error: anyhow!(
                "{rejected} rejected records, more than --max-errors {}: nothing was committed",
                args.max_errors
            ),
        });
    }

    let star = pool
        .install(|| model::build(&events_out.batch, &songs_out.batch, args.songplays))
        .or_exit(SOURCE_OR_SINK)?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "model built");
    let load_errors = rejects_batch(&summary.rejects, run_started_at);
    let load = Load {
        staging_events: &events_out.batch,
        staging_songs: &songs_out.batch,
        star: &star,
        load_errors: &load_errors,
    };
    summary.rows = load
        .tables()
        .iter()
        .map(|(t, b)| (t.name.to_owned(), b.num_rows()))
        .collect();
    let loaded = sink.load(&load);
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "sink done");
    summary.committed = loaded.is_ok();
    summary.seconds = started.elapsed().as_secs_f64();
    summary
        .finish(args.summary_json.as_deref())
        .or_exit(USAGE)?;
    loaded.or_exit(SOURCE_OR_SINK)
}

/// Redshift: the cluster reads the input from S3 itself; nothing is read here.
fn load_from_s3(
    sink: &mut AnySink,
    args: &EtlArgs,
    started: Instant,
    run_started_at: i64,
) -> Result<(), Failure> {
    let empty =
        |t: &sparkify_core::table::TableDef| arrow::array::RecordBatch::new_empty(t.schema());
    let events = empty(&STAGING_EVENTS);
    let songs = empty(&STAGING_SONGS);
    let star = model::build(&events, &songs, args.songplays).or_exit(SOURCE_OR_SINK)?;
    let load_errors = rejects_batch(&[], run_started_at);
    let loaded = sink.load(&Load {
        staging_events: &events,
        staging_songs: &songs,
        star: &star,
        load_errors: &load_errors,
    });
    let summary = Summary {
        files_read: 0,
        files_skipped: 0,
        s3: None,
        bytes_read: 0,
        rows: Vec::new(),
        rejects: Vec::new(),
        committed: loaded.is_ok(),
        sink: sink.describe(),
        seconds: started.elapsed().as_secs_f64(),
    };
    summary
        .finish(args.summary_json.as_deref())
        .or_exit(USAGE)?;
    loaded.or_exit(SOURCE_OR_SINK)
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
