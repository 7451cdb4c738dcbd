//! The S3 client against a real S3-compatible server (moto on 127.0.0.1).
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::sync::Arc;

use sparkify_core::source::{Input, discover_all};
use sparkify_s3::{Body, Object, S3Url, Source};
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
        concurrency: 8,
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
            .fetch(listed.clone(), concurrency)
            .map(|f| f.unwrap().body)
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
    let got: Vec<_> = s3.fetch(objects, 4).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].as_ref().unwrap().body, b"{}");
    let err = got[1].as_ref().unwrap_err().to_string();
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
