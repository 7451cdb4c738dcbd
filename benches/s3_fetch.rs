//! Objects per second fetching the 14,896 real song files from a local S3 endpoint (moto, on
//! 127.0.0.1), at concurrency 1, 16 and 64: the ordered, bounded fetch stream sparkify reads
//! `s3://` inputs with. Not criterion: one pass at concurrency 1 takes tens of seconds.
//!
//! moto answers from one Python process (about 350 requests/s here, however many arrive at
//! once) and from 127.0.0.1 with no round trip, so it shows the client's overhead but not what
//! concurrency buys against real S3, where each GET waits tens of milliseconds for its first
//! byte. With `SPARKIFY_BENCH_LATENCY_MS=N`, the fetches go through `latency_proxy.py`, which
//! adds N ms before each response.
//!
//! ```text
//! cargo bench --workspace --bench s3_fetch                                # needs moto_server
//! SPARKIFY_BENCH_LATENCY_MS=20 cargo bench --workspace --bench s3_fetch   # and python3
//! ```
#![allow(clippy::unwrap_used)]

use sparkify_test_support::moto;

use std::time::Instant;

/// Stops the proxy when the bench ends.
struct Proxy(std::process::Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("s3_fetch: bench");
        return;
    }
    let started = Instant::now();
    let moto = moto::Moto::shared();
    let bucket = moto.fixtures();
    println!(
        "moto_server started and the fixtures uploaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _proxy;
    let s3 = match std::env::var("SPARKIFY_BENCH_LATENCY_MS") {
        Ok(ms) => {
            let port = sparkify_test_support::ports::free_port();
            let upstream = moto.endpoint.rsplit(':').next().unwrap().to_owned();
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../benches/latency_proxy.py"
            );
            _proxy = Proxy(
                std::process::Command::new("python3")
                    .args([script, &port.to_string(), &upstream, &ms])
                    .spawn()
                    .unwrap(),
            );
            assert!(
                moto::answers_http(port, std::time::Duration::from_secs(30)),
                "latency_proxy.py did not start"
            );
            println!("through latency_proxy.py: {ms} ms before each response");
            std::sync::Arc::new(
                sparkify_s3::S3::connect(&moto::options(&format!("http://127.0.0.1:{port}")))
                    .unwrap(),
            )
        }
        Err(_) => moto.s3(),
    };
    let url = sparkify_s3::S3Url::parse(&format!("s3://{bucket}/song_data")).unwrap();
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
        for fetched in s3.fetch(objects.clone(), sparkify_s3::FetchLimits::new(concurrency)) {
            got += fetched.unwrap().into_bytes().unwrap().len() as u64;
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
