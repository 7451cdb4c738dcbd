//! The S3 client against a real S3-compatible server (moto on 127.0.0.1).
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::sync::Arc;

use sparkify_core::source::{BlobData, Input, discover_all};
use sparkify_s3::{Body, FetchLimits, Object, S3Url, Source};
use sparkify_test_support::moto;

#[test]
fn listing_pages_sorts_as_paths_and_fetch_keeps_that_order() {
    let moto = moto::Moto::shared();
    let bucket = moto.bucket("order");
    let s3 = moto.s3();
    // 1,203 keys: two pages of ListObjectsV2 (1,000 a page), and keys whose byte order differs
    // from their path order ("a-b/…" sorts before "a/…" by bytes, after it by path).
    let mut keys: Vec<String> = (0..1200).map(|i| format!("p/n/{i:05}.json")).collect();
    keys.extend(["p/a/x.json", "p/a-b/y.json", "p/folder/"].map(String::from));
    let uploads = keys
        .iter()
        .map(|k| {
            (
                Body::Bytes(k.as_bytes().to_vec()),
                S3Url::parse(&format!("s3://{bucket}/{k}")).unwrap(),
            )
        })
        .collect();
    s3.put_many(uploads, 32).unwrap();
    let prefix = S3Url::parse(&format!("s3://{bucket}/p/")).unwrap();
    assert_eq!(
        s3.list(&prefix).unwrap().len(),
        1202,
        "the folder marker is left out"
    );
    // The inputs, as the reader sees them: in path order.
    let source = Source {
        s3: Arc::clone(&s3),
        limits: FetchLimits::new(8),
    };
    let found = discover_all(&[Input::S3(prefix)], Some(&source)).unwrap();
    let listed: Vec<Object> = found
        .files
        .iter()
        .map(|f| Object {
            url: S3Url::parse(&f.name()).unwrap(),
            size: f.len,
            etag: f.version.clone(),
        })
        .collect();
    assert_eq!(listed.len(), 1202);
    assert_eq!(listed[0].url.key, "p/a/x.json");
    assert_eq!(listed[1].url.key, "p/a-b/y.json");
    for concurrency in [1, 7, 64] {
        let bodies: Vec<Vec<u8>> = s3
            .fetch(listed.clone(), FetchLimits::new(concurrency))
            .map(|f| f.unwrap().into_bytes().unwrap())
            .collect();
        let want: Vec<Vec<u8>> = listed
            .iter()
            .map(|o| o.url.key.as_bytes().to_vec())
            .collect();
        assert_eq!(bodies, want, "concurrency {concurrency}");
    }
}

#[test]
fn an_object_that_vanished_after_the_listing_is_an_error_naming_it() {
    let moto = moto::Moto::shared();
    let bucket = moto.bucket("vanish");
    let s3 = moto.s3();
    let here = S3Url::parse(&format!("s3://{bucket}/here.json")).unwrap();
    s3.put(&here, b"{}".to_vec()).unwrap();
    let gone = S3Url::parse(&format!("s3://{bucket}/gone.json")).unwrap();
    let objects = vec![
        Object {
            url: here.clone(),
            size: 2,
            etag: None,
        },
        Object {
            url: gone.clone(),
            size: 2,
            etag: None,
        },
    ];
    let mut got: Vec<_> = s3.fetch(objects, FetchLimits::new(4)).collect();
    assert_eq!(got.len(), 2);
    let first = got.remove(0).unwrap().into_bytes().unwrap();
    assert_eq!(first, b"{}");
    let err = got[0].as_ref().unwrap_err().to_string();
    assert_eq!(
        err,
        format!("fetching {gone} failed: the object does not exist (deleted after the listing?)")
    );
}

#[test]
fn a_missing_bucket_and_an_empty_prefix_are_errors() {
    let moto = moto::Moto::shared();
    let s3 = moto.s3();
    let err = s3
        .list(&S3Url::parse("s3://never-made/x").unwrap())
        .unwrap_err();
    assert!(matches!(err, sparkify_s3::Error::NoBucket { .. }), "{err}");
    let bucket = moto.bucket("empty");
    let err = s3
        .list(&S3Url::parse(&format!("s3://{bucket}/nothing/")).unwrap())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no objects under s3://{bucket}/nothing/")
    );
}

/// A slow reader of `body`: 8 KiB at a time, a pause after each.
fn read_slowly(mut body: impl std::io::Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8 << 10];
    loop {
        let n = body.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn large_objects_come_range_by_range_within_the_bytes_held() {
    let moto = moto::Moto::shared();
    let bucket = moto.bucket("ranges");
    let s3 = moto.s3();
    // Three objects: one of 1 MiB and 3 bytes, one of 10 bytes, one of 300,000 bytes.
    let bodies: Vec<Vec<u8>> = [(1 << 20) + 3, 10, 300_000]
        .iter()
        .enumerate()
        .map(|(i, &len)| (0..len).map(|b| (b * 7 + i) as u8).collect())
        .collect();
    let uploads = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let url = S3Url::parse(&format!("s3://{bucket}/big/{i}.json")).unwrap();
            (Body::Bytes(b.clone()), url)
        })
        .collect();
    s3.put_many(uploads, 4).unwrap();
    let listed = s3
        .list(&S3Url::parse(&format!("s3://{bucket}/big/")).unwrap())
        .unwrap();
    assert_eq!(listed.len(), 3);
    // Ranges of 100 KiB, at most 300 KiB held.
    let limits = FetchLimits {
        concurrency: 8,
        part_bytes: 100 << 10,
        held_bytes: 300 << 10,
    };
    let mut fetch = s3.fetch(listed, limits);
    let mut got = Vec::new();
    for fetched in fetch.by_ref() {
        let fetched = fetched.unwrap();
        let ranges = matches!(fetched.body, BlobData::Stream { .. });
        // Whole when it fits a part, else a reader of its ranges.
        assert_eq!(ranges, fetched.size > 100 << 10, "{}", fetched.url);
        got.push(match fetched.body {
            BlobData::Bytes(b) => b,
            BlobData::Stream { reader, .. } => read_slowly(reader),
        });
    }
    assert_eq!(got, bodies);
    // The reader was slow: without the budget, the ranges fetched ahead were held at once
    // (946,179 bytes when tried).
    let peak = fetch.held_peak();
    assert!(peak <= 300 << 10, "{peak} bytes held at once");
    assert!(peak > 0);
}

#[test]
fn an_object_changed_after_the_listing_fails_its_ranges_naming_it() {
    let moto = moto::Moto::shared();
    let bucket = moto.bucket("changed");
    let s3 = moto.s3();
    let url = S3Url::parse(&format!("s3://{bucket}/log.json")).unwrap();
    s3.put(&url, vec![b'a'; 50_000]).unwrap();
    let listed = s3.list(&url).unwrap();
    // Rewritten, same size, between the listing and the fetch.
    s3.put(&url, vec![b'b'; 50_000]).unwrap();
    let limits = FetchLimits {
        concurrency: 2,
        part_bytes: 16 << 10,
        held_bytes: 64 << 10,
    };
    let err = s3
        .fetch(listed, limits)
        .next()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "fetching {url} failed: the object changed after the listing (its ETag is not the \
             listed one)"
        )
    );
}

#[test]
fn event_logs_streamed_range_by_range_read_as_the_files_do() {
    use sparkify_core::source::{self, ReadOptions, StreamInput};
    use sparkify_core::table::STAGING_EVENTS;

    let moto = moto::Moto::shared();
    let bucket = moto.bucket("logs-in-ranges");
    let s3 = moto.s3();
    let local = source::discover(
        sparkify_test_support::fixtures::sparkify()
            .join("log_data")
            .to_str()
            .unwrap(),
    )
    .unwrap();
    let uploads = local
        .files
        .iter()
        .map(|f| {
            let path = f.path().unwrap().to_path_buf();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let url = S3Url::parse(&format!("s3://{bucket}/log_data/{name}")).unwrap();
            (Body::File(path), url)
        })
        .collect();
    s3.put_many(uploads, 8).unwrap();
    // The logs are 120-180 KB each: in ranges of 32 KiB, at most 128 KiB held, read by the
    // stream in windows of 16 KiB chunks.
    let source = Source {
        s3,
        limits: FetchLimits {
            concurrency: 8,
            part_bytes: 32 << 10,
            held_bytes: 128 << 10,
        },
    };
    let prefix = S3Url::parse(&format!("s3://{bucket}/log_data")).unwrap();
    let found = discover_all(&[Input::S3(prefix)], Some(&source)).unwrap();
    assert_eq!(found.files.len(), local.files.len());
    let schema = STAGING_EVENTS.input_schema();
    let opts = ReadOptions {
        chunk_size: 16 << 10,
        ..ReadOptions::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let want = source::read(&local.files, &schema, &opts, &pool, None).unwrap();
    let parts = std::thread::scope(|scope| {
        let inputs = sparkify_core::source::Remote::fetch(&source, &found.files).map(|b| {
            b.map(StreamInput::Fetched)
                .map_err(sparkify_core::Error::Fetch)
        });
        let mut parts = source::stream(
            scope,
            inputs,
            schema.clone(),
            opts.clone(),
            1 << 20,
            &pool,
            Arc::new(|_: &[arrow::array::RecordBatch]| Ok(())),
        );
        std::iter::from_fn(|| parts.next())
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    });
    let batches: Vec<_> = parts.iter().flat_map(|p| p.batches.clone()).collect();
    let got = arrow::compute::concat_batches(&schema, &batches).unwrap();
    assert_eq!(got, want.batch);
    let rejects: Vec<_> = parts.iter().flat_map(|p| p.rejects.clone()).collect();
    assert_eq!(rejects.len(), want.rejects.len());
    // Each file as stored: the same size and checksum as on disk.
    let files: Vec<_> = parts.iter().flat_map(|p| p.files.clone()).collect();
    let stored = |f: &sparkify_core::source::FileRead| (f.size, f.checksum, f.rows);
    assert_eq!(
        files.iter().map(stored).collect::<Vec<_>>(),
        want.files.iter().map(stored).collect::<Vec<_>>()
    );

    // Read whole, as the songs are: each object read before the next is asked for, while
    // the ones before it are decoded on the pool.
    let whole = source::read(&found.files, &schema, &opts, &pool, Some(&source)).unwrap();
    assert_eq!(whole.batch, want.batch);
    assert_eq!(
        whole.files.iter().map(stored).collect::<Vec<_>>(),
        want.files.iter().map(stored).collect::<Vec<_>>()
    );
}
