//! Criterion benchmarks of the reader and the model on the real fixtures.
//!
//! `cargo bench -p sparkify-core --bench reader`

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sparkify_core::model::{self, SongplaysMode};
use sparkify_core::source::{self, ReadOptions};
use sparkify_core::table::{STAGING_EVENTS, STAGING_SONGS};

fn fixtures(sub: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/sparkify")
        .join(sub)
        .display()
        .to_string()
}

fn bench(c: &mut Criterion) {
    let opts = ReadOptions::default();
    let songs = source::discover(&fixtures("song_data")).expect("song fixtures");
    let events = source::discover(&fixtures("log_data")).expect("log fixtures");
    let song_bytes: u64 = songs.files.iter().map(|f| f.len).sum();
    let event_bytes: u64 = events.files.iter().map(|f| f.len).sum();

    let pool = rayon::ThreadPoolBuilder::new().build().expect("threads");
    let mut g = c.benchmark_group("read");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(song_bytes));
    g.bench_function("song files (14,896 files, from disk)", |b| {
        b.iter(|| {
            source::read(
                black_box(&songs.files),
                &STAGING_SONGS.input_schema(),
                &opts,
                &pool,
                None,
            )
            .expect("read")
        })
    });
    g.throughput(Throughput::Bytes(event_bytes));
    g.bench_function("event logs (30 files, from disk)", |b| {
        b.iter(|| {
            source::read(
                black_box(&events.files),
                &STAGING_EVENTS.input_schema(),
                &opts,
                &pool,
                None,
            )
            .expect("read")
        })
    });
    // The logs concatenated 40 times in memory (~150 MB): decoding alone, split in chunks.
    let mut big = Vec::new();
    for _ in 0..40 {
        for f in &events.files {
            big.extend(std::fs::read(f.path().expect("a local file")).expect("log file"));
            big.push(b'\n');
        }
    }
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("events decode (in memory, x40)", |b| {
        b.iter(|| {
            source::decode_bytes(
                black_box(&big),
                "big.json",
                &STAGING_EVENTS.input_schema(),
                &opts,
            )
            .expect("decode")
        })
    });
    g.finish();

    let s = source::read(
        &songs.files,
        &STAGING_SONGS.input_schema(),
        &opts,
        &pool,
        None,
    )
    .expect("read");
    let e = source::read(
        &events.files,
        &STAGING_EVENTS.input_schema(),
        &opts,
        &pool,
        None,
    )
    .expect("read");
    let mut g = c.benchmark_group("model");
    g.throughput(Throughput::Bytes(song_bytes + event_bytes));
    g.bench_function("star schema from staging", |b| {
        b.iter(|| {
            model::build(black_box(&e.batch), &s.batch, SongplaysMode::Matched).expect("model")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
