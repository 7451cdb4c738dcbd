//! The real fixtures: where they are, and read into staging batches as the sinks' tests need
//! them.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use sparkify_core::model::StarSchema;
use sparkify_core::source::{self, ReadOptions, ReadOutput};
use sparkify_core::table::{STAGING_EVENTS, STAGING_SONGS, TableDef};
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
    source::read_path(path.to_str().expect("a UTF-8 path"), &table.schema(), opts)
        .expect("the fixtures read")
}

/// The real fixtures' staging tables.
#[derive(Debug)]
pub struct Staged {
    pub events: RecordBatch,
    pub songs: RecordBatch,
}

/// `fixtures/sparkify` read with the default options.
pub fn staged() -> Staged {
    let opts = ReadOptions::default();
    Staged {
        events: read(&sparkify().join("log_data"), &STAGING_EVENTS, &opts).batch,
        songs: read(&sparkify().join("song_data"), &STAGING_SONGS, &opts).batch,
    }
}

/// One run's load of `s`, `star` and the `load_errors` batch.
pub fn load<'a>(s: &'a Staged, star: &'a StarSchema, errors: &'a RecordBatch) -> Load<'a> {
    Load::Parsed(Tables {
        staging_events: &s.events,
        staging_songs: &s.songs,
        star,
        load_errors: errors,
    })
}
