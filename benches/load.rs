//! Criterion benchmark of loading DuckDB: the real data's tables through the Arrow appender,
//! in one transaction, into a fresh file each time.
//!
//! `cargo bench --workspace --bench load`

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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
    let events = read("log_data", STAGING_EVENTS.schema());
    let songs = read("song_data", STAGING_SONGS.schema());
    let star = model::build(&events.batch, &songs.batch, SongplaysMode::Matched).expect("model");
    let errors = rejects_batch(&[], 0);
    let tables = Tables {
        staging_events: &events.batch,
        staging_songs: &songs.batch,
        star: &star,
        load_errors: &errors,
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
