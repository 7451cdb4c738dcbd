//! Criterion benchmark of loading DuckDB: the real data's tables through the Arrow appender,
//! in one transaction, into a fresh file each time.
//!
//! `cargo bench --workspace --bench load`

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sparkify_core::ledger::{self, Kind};
use sparkify_core::model::{self, SongplaysMode};
use sparkify_core::reject::rejects_batch;
use sparkify_core::source::{self, ReadOptions};
use sparkify_core::table::{STAGING_EVENTS, STAGING_SONGS};
use sparkify_core::{Load, Sink, Tables};
use sparkify_sink_duckdb::DuckDbSink;

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sparkify");
    let opts = ReadOptions::default();
    let read = |sub: &str, schema| {
        source::read_path(root.join(sub).to_str().expect("utf-8 path"), &schema, &opts)
            .expect("fixtures")
    };
    let events = read("log_data", STAGING_EVENTS.input_schema());
    let songs = read("song_data", STAGING_SONGS.input_schema());
    let star = model::build(&events.batch, &songs.batch, SongplaysMode::Matched).expect("model");
    let errors = rejects_batch(&[], &sparkify_core::history::RunStamp::at(0));
    let run = [
        (Kind::Songs, songs.files.as_slice()),
        (Kind::Events, events.files.as_slice()),
    ];
    let first_event = 1 + songs.files.len() as i32;
    let staged_songs = ledger::tag(&STAGING_SONGS, &songs.batch, &songs.files, 1).expect("tag");
    let staged_events =
        ledger::tag(&STAGING_EVENTS, &events.batch, &events.files, first_event).expect("tag");
    let etl_files =
        ledger::ledger_batch(&run, 1, &sparkify_core::history::RunStamp::at(0)).expect("ledger");
    let tables = Tables {
        staging_events: &staged_events,
        staging_songs: &staged_songs,
        star: Some(&star),
        load_errors: &errors,
        etl_files: &etl_files,
        increment: None,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut g = c.benchmark_group("duckdb");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(events.bytes_read + songs.bytes_read));
    let mut n = 0;
    g.bench_function("load all tables (real data)", |b| {
        b.iter(|| {
            n += 1;
            let mut sink = DuckDbSink::new(dir.path().join(format!("b{n}.duckdb")));
            sink.load(Load::Parsed(tables)).expect("load");
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
