//! Objects per second fetching the 14,896 real song files from a local S3 endpoint (moto, on
//! 127.0.0.1), at concurrency 1, 16 and 64: the ordered, bounded fetch stream sparkify reads
//! `s3://` inputs with. Not criterion: one pass at concurrency 1 takes tens of seconds.
//!
//! ```text
//! cargo bench --workspace --bench s3_fetch            # needs moto_server (scripts/test.sh installs it)
//! ```
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/moto.rs"]
mod moto;

use std::time::Instant;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("s3_fetch: bench");
        return;
    }
    let started = Instant::now();
    let moto = moto::Moto::shared();
    println!(
        "moto_server started and the fixtures uploaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let s3 = moto.s3();
    let url = sparkify_s3::S3Url::parse(&format!("s3://{}/song_data", moto.fixtures())).unwrap();
    let t = Instant::now();
    let objects = s3.list(&url).unwrap();
    let bytes: u64 = objects.iter().map(|o| o.size).sum();
    println!(
        "listed {} objects ({bytes} bytes) in {:.2} s",
        objects.len(),
        t.elapsed().as_secs_f64()
    );
    println!("| concurrency | seconds | objects/s | MB/s |");
    println!("|---:|---:|---:|---:|");
    for concurrency in [1, 16, 64] {
        let t = Instant::now();
        let mut n = 0;
        let mut got = 0;
        for fetched in s3.fetch(objects.clone(), concurrency) {
            got += fetched.unwrap().body.len() as u64;
            n += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        assert_eq!((n, got), (objects.len(), bytes));
        println!(
            "| {concurrency} | {secs:.2} | {:.0} | {:.2} |",
            n as f64 / secs,
            got as f64 / secs / 1e6
        );
    }
}
