//! The real fixtures: where they are, and read into staging batches as the sinks' tests need
//! them.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use sparkify_core::ledger::{self, Increment, Kind};
use sparkify_core::model::SongplaysMode;
use sparkify_core::model::StarSchema;
use sparkify_core::reject::rejects_batch;
use sparkify_core::source::{self, ReadOptions, ReadOutput};
use sparkify_core::table::{ETL_FILES, STAGING_EVENTS, STAGING_SONGS, TableDef};
use sparkify_core::{Load, Tables};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository's root")
}

/// `fixtures/`: the real data under `sparkify/`, crafted bad input under `bad/`.
pub fn fixtures() -> PathBuf {
    repo().join("fixtures")
}

/// `fixtures/sparkify`: the real public data.
pub fn sparkify() -> PathBuf {
    fixtures().join("sparkify")
}

/// Everything under `path` (a folder, file or glob) read as `table` with `opts`.
pub fn read(path: &Path, table: &TableDef, opts: &ReadOptions) -> ReadOutput {
    source::read_path(
        path.to_str().expect("a UTF-8 path"),
        &table.input_schema(),
        opts,
    )
    .expect("the fixtures read")
}

/// The real fixtures' staging tables, each row tagged with its file, and the files.
#[derive(Debug)]
pub struct Staged {
    pub events: RecordBatch,
    pub songs: RecordBatch,
    pub etl_files: RecordBatch,
}

/// `fixtures/sparkify` read with the default options, as a full load stages it (songs
/// numbered first).
pub fn staged() -> Staged {
    let opts = ReadOptions::default();
    let songs = read(&sparkify().join("song_data"), &STAGING_SONGS, &opts);
    let events = read(&sparkify().join("log_data"), &STAGING_EVENTS, &opts);
    let first_event = 1 + songs.files.len() as i32;
    Staged {
        events: ledger::tag(&STAGING_EVENTS, &events.batch, &events.files, first_event)
            .expect("the events tagged"),
        songs: ledger::tag(&STAGING_SONGS, &songs.batch, &songs.files, 1)
            .expect("the songs tagged"),
        etl_files: ledger::ledger_batch(
            &[(Kind::Songs, &songs.files), (Kind::Events, &events.files)],
            1,
            &sparkify_core::history::RunStamp::at(0),
        )
        .expect("the ledger"),
    }
}

/// One run's load of `s`, `star` and the `load_errors` batch.
pub fn load<'a>(s: &'a Staged, star: &'a StarSchema, errors: &'a RecordBatch) -> Load<'a> {
    Load::Parsed(Tables {
        staging_events: &s.events,
        staging_songs: &s.songs,
        star: Some(star),
        load_errors: errors,
        etl_files: &s.etl_files,
        increment: None,
    })
}

/// An incremental load of no files by a run that read another ledger than the sink holds
/// (its digest is 0): every sink must refuse it and keep its tables.
#[derive(Debug)]
pub struct StaleIncrement {
    events: RecordBatch,
    songs: RecordBatch,
    files: RecordBatch,
    errors: RecordBatch,
    increment: Increment,
}

impl Default for StaleIncrement {
    fn default() -> Self {
        StaleIncrement {
            events: RecordBatch::new_empty(STAGING_EVENTS.schema()),
            songs: RecordBatch::new_empty(STAGING_SONGS.schema()),
            files: RecordBatch::new_empty(ETL_FILES.schema()),
            errors: rejects_batch(&[], &sparkify_core::history::RunStamp::at(0)),
            increment: Increment {
                remove: vec![],
                digest: 0,
                kept: vec![],
                mode: SongplaysMode::Matched,
                first_new_id: 1,
                rebuild: false,
            },
        }
    }
}

impl StaleIncrement {
    pub fn load(&self) -> Load<'_> {
        Load::Parsed(Tables {
            staging_events: &self.events,
            staging_songs: &self.songs,
            star: None,
            load_errors: &self.errors,
            etl_files: &self.files,
            increment: Some(&self.increment),
        })
    }
}
