//! The real fixtures read into staging batches, shared by the sinks' integration tests.

use std::path::Path;

use arrow::array::RecordBatch;
use sparkify_core::Load;
use sparkify_core::model::StarSchema;
use sparkify_core::source::{self, ReadOptions};
use sparkify_core::table::{STAGING_EVENTS, STAGING_SONGS, TableDef};

pub struct Staged {
    pub events: RecordBatch,
    pub songs: RecordBatch,
}

/// `fixtures/sparkify` read with the default options.
pub fn staged() -> Staged {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sparkify");
    let read = |sub: &str, t: &TableDef| {
        source::read_path(
            root.join(sub).to_str().unwrap(),
            &t.schema(),
            &ReadOptions::default(),
        )
        .unwrap()
        .batch
    };
    Staged {
        events: read("log_data", &STAGING_EVENTS),
        songs: read("song_data", &STAGING_SONGS),
    }
}

/// One run's load of `s`, `star` and the `load_errors` batch.
pub fn load<'a>(s: &'a Staged, star: &'a StarSchema, errors: &'a RecordBatch) -> Load<'a> {
    Load {
        staging_events: &s.events,
        staging_songs: &s.songs,
        star,
        load_errors: errors,
    }
}
