//! A load as a stream ([`Staged`]): the events part by part as the reader decodes them, each
//! part tagged with its files' `etl_file_id` and already pushed into the star schema's running
//! state ([`Model`]) by the worker that decoded it; then the songs, read whole meanwhile on
//! the same workers (they are the lookup side, matched against the plays kept at the end).
//! Once both are through, [`Staged::finish`] builds the star, the rejects and the ledger.
//! Memory holds the songs, the parts in flight (bounded by [`crate::source::stream`]), the
//! running state and the rejects up to their bound (the rest wait in a temporary file:
//! [`RejectLog`]), whatever the events' size.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::RecordBatch;

use crate::error::{Error, Result};
use crate::ledger::{self, Entry, Increment, Kind, Ledger};
use crate::model::{Kept, SongplaysMode, StarBuilder, StarSchema};
use crate::reject::{Reject, RejectLog};
use crate::sink::{self, Finished, Staged};
use crate::source::{self, FileRead, Flow, Parts, ReadOutput};
use crate::table::{STAGING_EVENTS, STAGING_SONGS, TableDef};

/// What hears of each phase after the staging rows (for a progress display).
pub type OnPhase = Arc<dyn Fn(&str) + Send + Sync>;

/// How a pipeline builds what it gives.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: SongplaysMode,
    /// More rejects than this stop the load.
    pub max_errors: u64,
    /// The first `etl_file_id` of the run: the songs', then the events'.
    pub first_id: i32,
    /// How many song files the run reads (the events' ids follow theirs).
    pub song_files: usize,
    /// The run's id and start: `run_id` and `run_started_at` of the rejects, `run_id` and
    /// `loaded_at` of the ledger.
    pub stamp: crate::history::RunStamp,
    /// Bytes of rejects held in memory; more are written to a temporary file until the load
    /// takes them.
    pub rejects_held: usize,
    /// `--on-new-field fail`: the drift logs of the run's input; a new field in any of them
    /// stops the load before the sink builds or commits anything more. Empty: allowed.
    pub refuse_new_fields: Vec<Arc<crate::drift::DriftLog>>,
}

/// An incremental load's starting point: the ledger the run read, and the entries it removes.
#[derive(Debug, Clone)]
pub struct Against {
    pub ledger: Ledger,
    pub remove: Vec<Entry>,
    /// The star rebuilt over every staged row rather than maintained (`--rebuild`).
    pub rebuild: bool,
}

/// The star schema's running state, as builders the workers push parts into side by side:
/// a worker takes an idle builder (or a new one), pushes, and puts it back;
/// [`Model::finish`] finishes them together.
#[derive(Debug)]
pub struct Model {
    mode: SongplaysMode,
    idle: Mutex<Vec<StarBuilder>>,
}

impl Model {
    pub fn new(mode: SongplaysMode) -> Arc<Self> {
        Arc::new(Model {
            mode,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Pushes `batches` into an idle builder.
    pub fn push(&self, batches: &[RecordBatch]) -> Result<()> {
        let taken = self.idle().pop();
        let mut builder = taken.unwrap_or_else(|| StarBuilder::new(self.mode));
        let pushed = batches.iter().try_for_each(|b| builder.push(b));
        self.idle().push(builder);
        pushed
    }

    /// The star schema of everything pushed, the plays matched against `songs`.
    pub fn finish(&self, songs: &RecordBatch) -> Result<StarSchema> {
        StarBuilder::finish_all(std::mem::take(&mut *self.idle()), songs)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<StarBuilder>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The songs as read whole, once they are.
#[derive(Debug)]
struct Songs {
    /// As read (what the star's songs come from).
    batch: RecordBatch,
    files: Vec<FileRead>,
    records: u64,
    rejects: Vec<Reject>,
}

impl From<ReadOutput> for Songs {
    fn from(read: ReadOutput) -> Self {
        Songs {
            batch: read.batch,
            files: read.files,
            records: read.records,
            rejects: read.rejects,
        }
    }
}

/// The stream of one load; see the module's notes.
pub struct Pipeline {
    opts: Options,
    parts: Parts,
    /// Where the songs arrive from, until they have.
    pending_songs: Option<Receiver<Result<ReadOutput>>>,
    songs: Option<Songs>,
    /// `None` when the sink builds the star (an incremental load, or a sink that builds it in
    /// SQL).
    model: Option<Arc<Model>>,
    /// Built from the `Against` the pipeline was made with.
    increment: Option<Increment>,
    event_files: Vec<FileRead>,
    event_records: u64,
    event_rows: u64,
    /// The events' rejects (the songs' are read whole, with the songs).
    rejects: RejectLog,
    overflow: bool,
    /// Rows of each table given to the sink, once finished.
    given: Vec<(&'static str, usize)>,
    on_phase: Option<OnPhase>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("parts", &self.parts)
            .field("event_rows", &self.event_rows)
            .field("songs", &self.songs.is_some())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline that gives the events of `parts`, then the songs that `songs` brings (read
    /// whole meanwhile, `song_files` of them). `model` is the running state the event parts
    /// are pushed into (`None` when the sink builds the star: always with `against`, whose
    /// star is rebuilt over every staged row).
    pub fn new(
        parts: Parts,
        songs: Receiver<Result<ReadOutput>>,
        model: Option<Arc<Model>>,
        against: Option<Against>,
        opts: Options,
    ) -> Self {
        let increment = against.map(|a| Increment::new(&a.ledger, a.remove, opts.mode, a.rebuild));
        let rejects = RejectLog::new(opts.stamp.clone(), opts.rejects_held);
        Pipeline {
            opts,
            parts,
            pending_songs: Some(songs),
            songs: None,
            model,
            increment,
            event_files: Vec::new(),
            event_records: 0,
            event_rows: 0,
            rejects,
            overflow: false,
            given: Vec::new(),
            on_phase: None,
        }
    }

    /// Calls `on_phase` with each phase a sink reports after the staging rows.
    pub fn with_phases(mut self, on_phase: OnPhase) -> Self {
        self.on_phase = Some(on_phase);
        self
    }

    /// Every reject, songs first, then events in input order, as the `load_errors` table.
    /// Made once, when the load takes it or after the load: no reject is added after.
    pub fn rejects(&mut self) -> Result<Kept> {
        let songs = self.songs.as_ref().map_or(&[][..], |s| &s.rejects[..]);
        self.rejects.kept(songs)
    }

    fn rejected(&self) -> usize {
        self.songs.as_ref().map_or(0, |s| s.rejects.len()) + self.rejects.len()
    }

    /// Whether the load stopped for more rejects than `max_errors`.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// Records read so far (each a row or a reject).
    pub fn records(&self) -> u64 {
        self.songs.as_ref().map_or(0, |s| s.records) + self.event_records
    }

    /// The song files read (once they are), then the event files read so far.
    pub fn files(&self) -> (&[FileRead], &[FileRead]) {
        let songs = self.songs.as_ref().map_or(&[][..], |s| &s.files[..]);
        (songs, &self.event_files)
    }

    /// Rows per table given to the sink, in report order, once [`Staged::finish`] is done
    /// (empty before).
    pub fn rows(&self) -> &[(&'static str, usize)] {
        &self.given
    }

    /// What went through the events' bound.
    pub fn flow(&self) -> Flow {
        self.parts.flow()
    }

    /// A load stopped at more rejects than `max_errors` commits nothing; then this reads the
    /// rest of the input, sending it nowhere, so that every reject is reported, not only the
    /// ones found before the load stopped, and a user can mend them all in one go. A
    /// failure to read ends it: the rejects found so far are reported.
    pub fn read_on(&mut self) {
        while let Some(Ok(part)) = self.parts.next() {
            if self
                .count(part.records, &part.runs, part.files, part.rejects)
                .is_err()
            {
                break;
            }
        }
        if let Some(songs) = self.pending_songs.take()
            && let Ok(Ok(read)) = songs.recv()
        {
            self.songs = Some(Songs::from(read));
        }
    }

    /// Stops reading the input, once the load is over: a load that failed part way (the
    /// sink's error) leaves input unread, whose reader would otherwise wait for room in the
    /// bound for ever, and the run with it. [`Pipeline::read_on`] first, to report every
    /// reject.
    pub fn stop_reading(&self) {
        self.parts.cancel();
    }

    /// Counts an event part's records, rows, files and rejects (kept: see [`RejectLog`]).
    fn count(
        &mut self,
        records: u64,
        runs: &[(usize, u64)],
        files: Vec<FileRead>,
        rejects: Vec<Reject>,
    ) -> Result<()> {
        self.event_records += records;
        self.event_rows += runs.iter().map(|r| r.1).sum::<u64>();
        self.event_files.extend(files);
        self.rejects.push(rejects)
    }

    fn check_rejects(&mut self) -> Result<()> {
        if self.rejected() as u64 > self.opts.max_errors {
            self.overflow = true;
            return Err(Error::TooManyRejects {
                rejected: self.rejected(),
                max: self.opts.max_errors,
            });
        }
        Ok(())
    }

    /// The first `etl_file_id` of the events: after the songs'.
    fn first_event_id(&self) -> i32 {
        self.opts.first_id + self.opts.song_files as i32
    }

    /// An event part's batches, each with its rows' `etl_file_id`.
    fn tag(&self, batches: Vec<RecordBatch>, runs: &[(usize, u64)]) -> Result<Vec<RecordBatch>> {
        let first = self.first_event_id();
        let runs: Vec<(i32, u64)> = runs
            .iter()
            .map(|&(input, rows)| (first + input as i32, rows))
            .collect();
        ledger::tag_runs(&STAGING_EVENTS, batches, &runs)
    }

    /// The songs, once read: checked, kept, and given tagged.
    fn songs_arrived(
        &mut self,
        read: Result<ReadOutput>,
    ) -> Result<(&'static TableDef, Vec<RecordBatch>)> {
        let read = read?;
        read.reconcile(STAGING_SONGS.name)?;
        if read.files.len() != self.opts.song_files {
            return Err(Error::Ledger(format!(
                "staging_songs: {} files were to be read, {} were",
                self.opts.song_files,
                read.files.len()
            )));
        }
        let tagged = ledger::tag(&STAGING_SONGS, &read.batch, &read.files, self.opts.first_id)?;
        self.songs = Some(Songs::from(read));
        self.check_rejects()?;
        Ok((&STAGING_SONGS, vec![tagged]))
    }
}

impl Staged for Pipeline {
    fn increment(&self) -> Option<&Increment> {
        self.increment.as_ref()
    }

    fn next(&mut self) -> Option<Result<(&'static TableDef, Vec<RecordBatch>)>> {
        if self.overflow {
            return Some(self.check_rejects().map(|()| (&STAGING_EVENTS, Vec::new())));
        }
        let Some(part) = self.parts.next() else {
            let songs = self.pending_songs.take()?;
            let read = songs
                .recv()
                .unwrap_or_else(|_| Err(Error::Schema("the songs' reader stopped".into())));
            return Some(self.songs_arrived(read));
        };
        let part = match part {
            Ok(part) => part,
            Err(e) => return Some(Err(e)),
        };
        if let Err(e) = self
            .count(part.records, &part.runs, part.files, part.rejects)
            .and_then(|()| self.check_rejects())
        {
            return Some(Err(e));
        }
        Some(
            self.tag(part.batches, &part.runs)
                .map(|b| (&STAGING_EVENTS, b)),
        )
    }

    fn phase(&self, phase: &str) {
        if let Some(on_phase) = &self.on_phase {
            on_phase(phase);
        }
    }

    fn finish(&mut self) -> Result<Finished> {
        let drifted: Vec<crate::drift::Drift> = self
            .opts
            .refuse_new_fields
            .iter()
            .flat_map(|log| log.entries())
            .collect();
        crate::drift::refuse(&drifted)?;
        self.phase("building the star schema");
        let songs = self
            .songs
            .as_ref()
            .ok_or_else(|| Error::Schema("finish before the songs were given".into()))?;
        source::account(
            STAGING_EVENTS.name,
            self.event_records,
            self.event_rows,
            self.rejects.len() as u64,
        )?;
        let rows: u64 = self.event_files.iter().map(|f| f.rows).sum();
        if rows != self.event_rows {
            return Err(Error::Ledger(format!(
                "staging_events: the files read account for {rows} rows, the run staged {}",
                self.event_rows
            )));
        }
        let run = [
            (Kind::Songs, songs.files.as_slice()),
            (Kind::Events, self.event_files.as_slice()),
        ];
        let etl_files = ledger::ledger_batch(&run, self.opts.first_id, &self.opts.stamp)?;
        let load_errors = self.rejects.kept(&songs.rejects)?;
        let star = match &self.model {
            Some(model) => Some(model.finish(&songs.batch)?),
            None => None,
        };
        let song_rows = songs.batch.num_rows() as u64;
        let staged = sink::expected_counts(
            [
                self.event_rows,
                song_rows,
                load_errors.rows().num_rows() as u64,
                etl_files.num_rows() as u64,
            ],
            self.increment.as_ref(),
        );
        let finished = Finished {
            star,
            load_errors,
            etl_files,
            staged,
        };
        self.given = [
            (STAGING_EVENTS.name, self.event_rows as usize),
            (STAGING_SONGS.name, song_rows as usize),
        ]
        .into_iter()
        .chain(
            finished
                .tables()
                .iter()
                .map(|(t, b)| (t.name, b.num_rows())),
        )
        .collect();
        Ok(finished)
    }
}
