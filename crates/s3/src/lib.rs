//! sparkify-s3: the little of S3 sparkify needs, behind a blocking API: list a prefix, fetch
//! its objects with bounded concurrency as an ordered stream (tokio does the I/O on its own
//! threads; the caller's thread, usually feeding rayon, pulls), upload, copy and delete.
//!
//! Credentials come from the standard AWS chain (or none, for public buckets). An endpoint
//! override (`AWS_ENDPOINT_URL`, or [`S3Options::endpoint_url`]) switches to path-style
//! addressing, which is what S3-compatible servers such as moto and MinIO expect. Throttling
//! and 5xx responses are retried with exponential backoff by the SDK's standard retry
//! strategy; a failure after the retries is an error naming the object's `s3://` URL.
//!
//! ```no_run
//! use sparkify_s3::{S3, S3Options, S3Url};
//!
//! let s3 = S3::connect(&S3Options { no_sign_request: true, ..S3Options::default() })?;
//! let url = S3Url::parse("s3://udacity-dend/song_data")?;
//! let objects = s3.list(&url)?;
//! for fetched in s3.fetch(objects, 64) {
//!     let fetched = fetched?;
//!     println!("{} {} bytes", fetched.url, fetched.body.len());
//! }
//! # Ok::<(), sparkify_s3::Error>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use futures_util::StreamExt;
use sparkify_core::source::{Blob, BoxError, InputFile, Listed, Location, Remote};
use tokio::runtime::Runtime;

/// What can go wrong talking to S3. Messages name the bucket or object, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed `s3://` URL.
    #[error(transparent)]
    Url(#[from] sparkify_core::Error),
    #[error("bucket {bucket:?} does not exist (or is not visible with these credentials)")]
    NoBucket { bucket: String },
    #[error("no objects under {url}")]
    NoObjects { url: String },
    #[error("{op} {url} failed: {message}")]
    Request {
        op: &'static str,
        url: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the S3 runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use sparkify_core::source::S3Url;

/// `[s3]` of `sparkify.toml`: where things lie in S3, and how to reach it.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// The event logs, the song files and the logs' JSONPaths file (Redshift's JSON COPY,
    /// and the defaults of `--events` / `--songs` for it).
    pub events: Option<String>,
    pub songs: Option<String>,
    pub jsonpaths: Option<String>,
    pub region: Option<String>,
    /// An S3-compatible endpoint (else `AWS_ENDPOINT_URL`); path-style addressing with it.
    pub endpoint: Option<String>,
    /// Seconds to wait for a connection ([`S3Options::connect_timeout`]).
    pub connect_timeout: Option<u64>,
    /// Seconds a response may keep silent ([`S3Options::read_timeout`]).
    pub read_timeout: Option<u64>,
    /// Attempts per request, the first included ([`S3Options::max_attempts`]).
    pub attempts: Option<u32>,
    /// Where Redshift's Parquet upload puts its parts. Formerly `staging_prefix`.
    #[serde(alias = "staging_prefix")]
    pub upload_prefix: Option<String>,
}

/// `[aws]` of `sparkify.toml`: the region and profile every AWS client of a run uses. The
/// keys are never here: the standard AWS credential chain is their only source.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    pub region: Option<String>,
    pub profile: Option<String>,
}

/// `s3://` inputs for the core's reader: listed with [`S3::list`], fetched with
/// [`S3::fetch`], `concurrency` GETs at a time.
#[derive(Debug, Clone)]
pub struct Source {
    pub s3: Arc<S3>,
    pub concurrency: usize,
}

impl Remote for Source {
    fn list(&self, url: &S3Url) -> std::result::Result<Vec<Listed>, BoxError> {
        Ok(self
            .s3
            .list(url)?
            .into_iter()
            .map(|o| (o.url, o.size, o.etag))
            .collect())
    }

    fn fetch(
        &self,
        files: &[InputFile],
    ) -> Box<dyn Iterator<Item = std::result::Result<Blob, BoxError>> + Send + '_> {
        let objects = files
            .iter()
            .filter_map(|f| match &f.location {
                Location::S3(url) => Some(Object {
                    url: url.clone(),
                    size: f.len,
                    etag: f.version.clone(),
                }),
                Location::Path(_) => None,
            })
            .collect();
        // Fetched in the order given: each object's ETag, from the listing, goes with it.
        let mut versions = files
            .iter()
            .filter(|f| !f.is_local())
            .map(|f| f.version.clone())
            .collect::<Vec<_>>()
            .into_iter();
        Box::new(self.s3.fetch(objects, self.concurrency).map(move |f| {
            let version = versions.next().flatten();
            f.map(|f| Blob {
                name: f.url.to_string(),
                data: f.body,
                version,
            })
            .map_err(BoxError::from)
        }))
    }
}

/// How to reach S3.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// An S3-compatible endpoint; `AWS_ENDPOINT_URL` is used when this is unset. Either one
    /// turns on path-style addressing.
    pub endpoint_url: Option<String>,
    /// The region; the standard chain (`AWS_REGION`, profile) otherwise, then `us-east-1`.
    pub region: Option<String>,
    /// Send requests unsigned (public buckets), with no credentials looked up.
    pub no_sign_request: bool,
    /// Fixed keys instead of the standard chain (tests, scripts). Never printed.
    pub static_keys: Option<StaticKeys>,
    /// Attempts per request, the first included (throttling, 5xx, dropped connections).
    pub max_attempts: u32,
    /// Connect timeout per attempt.
    pub connect_timeout: Duration,
    /// How long a response may keep silent: before its first byte, and between two pieces
    /// of a body. A stalled attempt is tried again, up to `max_attempts` in all.
    pub read_timeout: Duration,
    /// A named profile of the AWS config files (`[aws] profile`); `AWS_PROFILE` otherwise.
    pub profile: Option<String>,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint_url: None,
            region: None,
            no_sign_request: false,
            static_keys: None,
            max_attempts: 5,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            profile: None,
        }
    }
}

/// An access key pair. Its `Debug` shows the key id only.
#[derive(Clone)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<secret>")
            .finish()
    }
}

/// A client connected on first use, so that a run that never touches S3 never builds one.
#[derive(Debug)]
pub struct LazyS3 {
    opts: S3Options,
    cell: std::sync::OnceLock<Arc<S3>>,
}

impl LazyS3 {
    pub fn new(opts: S3Options) -> Self {
        LazyS3 {
            opts,
            cell: std::sync::OnceLock::new(),
        }
    }

    /// A client already connected.
    pub fn connected(s3: Arc<S3>) -> Self {
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(s3);
        LazyS3 {
            opts: S3Options::default(),
            cell,
        }
    }

    /// The client, connecting it the first time.
    pub fn get(&self) -> Result<Arc<S3>> {
        if let Some(s3) = self.cell.get() {
            return Ok(Arc::clone(s3));
        }
        let s3 = Arc::new(S3::connect(&self.opts)?);
        Ok(Arc::clone(self.cell.get_or_init(|| s3)))
    }
}

/// What to upload: bytes in memory, or a local file read when its turn comes.
#[derive(Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    File(std::path::PathBuf),
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub url: S3Url,
    pub size: u64,
    /// The object's ETag as S3 lists it (quotes included), when known.
    pub etag: Option<String>,
}

/// An object's bytes, as fetched.
#[derive(Debug)]
pub struct Fetched {
    pub url: S3Url,
    /// Size according to the listing.
    pub size: u64,
    pub body: Vec<u8>,
}

/// A connected S3 client with its own small tokio runtime; every method blocks.
pub struct S3 {
    rt: Arc<Runtime>,
    client: aws_sdk_s3::Client,
    max_attempts: u32,
    read_timeout: Duration,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3").finish_non_exhaustive()
    }
}

fn request_error<E, R>(op: &'static str, url: &S3Url, e: SdkError<E, R>) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: fmt::Debug,
{
    Error::Request {
        op,
        url: url.to_string(),
        message: DisplayErrorContext(&e).to_string(),
    }
}

/// The endpoint every AWS client of a run uses: `opts`', else `service_variable`
/// (`AWS_ENDPOINT_URL_S3`), else `AWS_ENDPOINT_URL`.
pub fn endpoint_url(opts: &S3Options, service_variable: &str) -> Option<String> {
    opts.endpoint_url.clone().or_else(|| {
        [service_variable, "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
    })
}

/// The one AWS configuration loader (S3 here; IAM, Redshift and EC2 in `sparkify-cluster`):
/// rustls on ring, the region from `opts`, else the standard chain, else `us-east-1`; the
/// profile from `opts`, else `AWS_PROFILE`; credentials from the standard chain (environment,
/// profile, SSO, IMDS) unless `opts` says otherwise; `opts`' endpoint, else `AWS_ENDPOINT_URL`
/// (the SDK reads it); retries with backoff and a connect timeout.
pub async fn sdk_config(opts: &S3Options) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let region = aws_config::meta::region::RegionProviderChain::first_try(
        opts.region.clone().map(Region::new),
    )
    .or_default_provider()
    .or_else(Region::from_static("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(region)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(opts.max_attempts.max(1))
                .with_initial_backoff(Duration::from_millis(100)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(opts.connect_timeout)
                .read_timeout(opts.read_timeout)
                .build(),
        );
    if let Some(profile) = &opts.profile {
        loader = loader.profile_name(profile);
    }
    if opts.no_sign_request {
        loader = loader.no_credentials();
    } else if let Some(keys) = &opts.static_keys {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            &keys.access_key_id,
            &keys.secret_access_key,
            None,
            None,
            "sparkify-static",
        ));
    }
    if let Some(endpoint) = &opts.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

impl S3 {
    /// Loads the configuration (credentials are resolved lazily, on the first request).
    pub fn connect(opts: &S3Options) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sparkify-s3")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let endpoint = endpoint_url(opts, "AWS_ENDPOINT_URL_S3");
        let opts = S3Options {
            endpoint_url: endpoint.clone(),
            ..opts.clone()
        };
        let client = rt.block_on(async {
            let shared = sdk_config(&opts).await;
            let conf = aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(endpoint.is_some())
                // S3-compatible servers differ in which checksums they know; S3 needs none.
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
                .build();
            aws_sdk_s3::Client::from_conf(conf)
        });
        Ok(S3 {
            rt: Arc::new(rt),
            client,
            max_attempts: opts.max_attempts.max(1),
            read_timeout: opts.read_timeout,
        })
    }

    /// Every object under `url`'s prefix (all pages of `ListObjectsV2`), in S3's order (by
    /// key bytes; `sparkify_core::source::discover_all` puts inputs in path order). Keys that
    /// end in `/` (folder markers) are left out. An empty listing is [`Error::NoObjects`].
    pub fn list(&self, url: &S3Url) -> Result<Vec<Object>> {
        let objects = self.rt.block_on(async {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&url.bucket)
                .prefix(&url.key)
                .into_paginator()
                .send();
            let mut objects = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| match e.as_service_error() {
                    Some(s) if s.is_no_such_bucket() => Error::NoBucket {
                        bucket: url.bucket.clone(),
                    },
                    _ if e.code() == Some("NoSuchBucket") => Error::NoBucket {
                        bucket: url.bucket.clone(),
                    },
                    _ => request_error("listing", url, e),
                })?;
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    if key.ends_with('/') {
                        continue;
                    }
                    objects.push(Object {
                        url: url.with_key(key),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        etag: o.e_tag().map(str::to_owned),
                    });
                }
            }
            Ok::<_, Error>(objects)
        })?;
        if objects.is_empty() {
            return Err(Error::NoObjects {
                url: url.to_string(),
            });
        }
        Ok(objects)
    }

    /// Fetches `objects`, at most `concurrency` GETs at a time, and yields them in the order
    /// given. At most about `2 × concurrency` bodies are held at once, however many objects
    /// there are; dropping the iterator stops the fetching.
    pub fn fetch(&self, objects: Vec<Object>, concurrency: usize) -> FetchIter {
        let concurrency = concurrency.max(1);
        let (tx, rx) = tokio::sync::mpsc::channel(concurrency);
        let client = self.client.clone();
        let (attempts, read_timeout) = (self.max_attempts, self.read_timeout);
        self.rt.spawn(async move {
            let mut bodies = futures_util::stream::iter(objects)
                .map(|o| get(&client, o.url, o.size, attempts, read_timeout))
                .buffered(concurrency);
            while let Some(item) = bodies.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        FetchIter {
            rx,
            _rt: Arc::clone(&self.rt),
        }
    }

    /// Fetches one object.
    pub fn get(&self, url: &S3Url) -> Result<Vec<u8>> {
        self.rt
            .block_on(get(
                &self.client,
                url.clone(),
                0,
                self.max_attempts,
                self.read_timeout,
            ))
            .map(|f| f.body)
    }

    /// Uploads `body` to `url`.
    pub fn put(&self, url: &S3Url, body: Vec<u8>) -> Result<()> {
        self.rt.block_on(put(&self.client, url, body))
    }

    /// Uploads each `(body, url)`, `concurrency` at a time.
    pub fn put_many(&self, uploads: Vec<(Body, S3Url)>, concurrency: usize) -> Result<()> {
        let client = &self.client;
        self.rt.block_on(all(
            uploads.into_iter().map(|(body, url)| async move {
                let body = match body {
                    Body::Bytes(b) => b,
                    Body::File(path) => {
                        tokio::fs::read(&path).await.map_err(|source| Error::Io {
                            path: path.display().to_string(),
                            source,
                        })?
                    }
                };
                put(client, &url, body).await
            }),
            concurrency,
        ))
    }

    /// Server-side copies each `(from, to)` (same or other bucket), `concurrency` at a time.
    pub fn copy_objects(&self, pairs: Vec<(S3Url, S3Url)>, concurrency: usize) -> Result<()> {
        let client = &self.client;
        self.rt.block_on(all(
            pairs.into_iter().map(|(from, to)| async move {
                client
                    .copy_object()
                    .copy_source(format!("{}/{}", from.bucket, encode_key(&from.key)))
                    .bucket(&to.bucket)
                    .key(&to.key)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| request_error("copying to", &to, e))
            }),
            concurrency,
        ))
    }

    /// Deletes `keys` of `bucket` (1,000 per request). Keys that do not exist are no error.
    pub fn delete(&self, bucket: &str, keys: Vec<String>) -> Result<()> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let url = S3Url {
            bucket: bucket.to_owned(),
            key: String::new(),
        };
        let invalid = |e: aws_sdk_s3::error::BuildError| Error::Request {
            op: "deleting from",
            url: url.to_string(),
            message: e.to_string(),
        };
        self.rt.block_on(async {
            for chunk in keys.chunks(1000) {
                let ids = chunk
                    .iter()
                    .map(|k| ObjectIdentifier::builder().key(k).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid)?;
                let delete = Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(invalid)?;
                let out = self
                    .client
                    .delete_objects()
                    .bucket(bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| request_error("deleting from", &url, e))?;
                if let Some(err) = out.errors().first() {
                    return Err(Error::Request {
                        op: "deleting",
                        url: url.with_key(err.key().unwrap_or("")).to_string(),
                        message: err.message().unwrap_or("unknown error").to_owned(),
                    });
                }
            }
            Ok(())
        })
    }

    /// Like [`S3::list`], but an empty prefix is an empty list.
    pub fn list_or_empty(&self, url: &S3Url) -> Result<Vec<Object>> {
        match self.list(url) {
            Err(Error::NoObjects { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Deletes every object under `prefix` whose key `keep` does not hold: what a previous
    /// run left that this one did not write.
    pub fn delete_stale(&self, prefix: &S3Url, keep: &HashSet<&str>) -> Result<()> {
        let stale = self
            .list_or_empty(prefix)?
            .into_iter()
            .map(|o| o.url.key)
            .filter(|k| !keep.contains(k.as_str()))
            .collect();
        self.delete(&prefix.bucket, stale)
    }

    /// Creates `bucket` (for tests and benchmarks against a local endpoint).
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.rt.block_on(async {
            self.client
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    request_error(
                        "creating bucket",
                        &S3Url {
                            bucket: bucket.to_owned(),
                            key: String::new(),
                        },
                        e,
                    )
                })
        })
    }
}

/// Runs `requests`, `concurrency` at a time, until all succeed or one fails.
async fn all<F>(requests: impl Iterator<Item = F>, concurrency: usize) -> Result<()>
where
    F: std::future::Future<Output = Result<()>>,
{
    let mut running = futures_util::stream::iter(requests).buffer_unordered(concurrency.max(1));
    while let Some(done) = running.next().await {
        done?;
    }
    Ok(())
}

/// Percent-encodes a key for `x-amz-copy-source` (everything but unreserved characters and `/`).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn put(client: &aws_sdk_s3::Client, url: &S3Url, body: Vec<u8>) -> Result<()> {
    client
        .put_object()
        .bucket(&url.bucket)
        .key(&url.key)
        .body(ByteStream::from(body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| request_error("uploading", url, e))
}

/// One GET. The SDK retries the request itself (and a response that stays silent past the
/// read timeout); a body that breaks off or stalls midway is fetched again, up to `attempts`
/// times in all.
async fn get(
    client: &aws_sdk_s3::Client,
    url: S3Url,
    size: u64,
    attempts: u32,
    read_timeout: Duration,
) -> Result<Fetched> {
    let mut attempt = 1;
    loop {
        let resp = client
            .get_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(s) if s.is_no_such_key() => Error::Request {
                    op: "fetching",
                    url: url.to_string(),
                    message: "the object does not exist (deleted after the listing?)".into(),
                },
                _ => request_error("fetching", &url, e),
            })?;
        match read_body(resp.body, read_timeout).await {
            Ok(body) => return Ok(Fetched { body, size, url }),
            Err(e) if attempt < attempts => {
                tracing::warn!(url = %url, attempt, error = %e, "body broke off; fetching again");
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
                attempt += 1;
            }
            Err(e) => {
                return Err(Error::Request {
                    op: "fetching",
                    url: url.to_string(),
                    message: format!("{e} ({attempts} attempts)"),
                });
            }
        }
    }
}

/// A body, piece by piece, each piece within `timeout` of the last.
async fn read_body(
    mut body: ByteStream,
    timeout: Duration,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(timeout, body.next()).await {
            Err(_) => {
                return Err(format!(
                    "the body stalled: no data for {} s after {} bytes (read timeout)",
                    timeout.as_secs_f64(),
                    out.len()
                ));
            }
            Ok(None) => return Ok(out),
            Ok(Some(Ok(piece))) => out.extend_from_slice(&piece),
            Ok(Some(Err(e))) => return Err(e.to_string()),
        }
    }
}

/// The objects of [`S3::fetch`], in order.
#[derive(Debug)]
pub struct FetchIter {
    rx: tokio::sync::mpsc::Receiver<Result<Fetched>>,
    _rt: Arc<Runtime>,
}

impl Iterator for FetchIter {
    type Item = Result<Fetched>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.blocking_recv()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_is_percent_encoded() {
        assert_eq!(encode_key("a b/c+d=é"), "a%20b/c%2Bd%3D%C3%A9");
    }
}
