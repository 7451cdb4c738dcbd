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
//! use sparkify_s3::{FetchLimits, S3, S3Options, S3Url};
//!
//! let s3 = S3::connect(&S3Options { no_sign_request: true, ..S3Options::default() })?;
//! let url = S3Url::parse("s3://udacity-dend/song_data")?;
//! let objects = s3.list(&url)?;
//! for fetched in s3.fetch(objects, FetchLimits::new(64)) {
//!     let fetched = fetched?;
//!     println!("{} {} bytes", fetched.url.clone(), fetched.into_bytes()?.len());
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
use sparkify_core::source::{Blob, BlobData, BoxError, InputFile, Listed, Location, Remote};
use tokio::runtime::Runtime;

/// What can go wrong talking to S3. Messages name the bucket or object, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The core's: a malformed `s3://` URL, or a fetched object's bytes that could not be
    /// read.
    #[error(transparent)]
    Core(#[from] sparkify_core::Error),
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
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the S3 runtime")]
    Runtime(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// S3 requests (GETs, uploads) at a time, unless told otherwise: `--s3-concurrency`'s default
/// and every config's.
pub const DEFAULT_CONCURRENCY: usize = 64;

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
/// [`S3::fetch`] within `limits`.
#[derive(Debug, Clone)]
pub struct Source {
    pub s3: Arc<S3>,
    pub limits: FetchLimits,
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
        Box::new(self.s3.fetch(objects, self.limits).map(move |f| {
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

/// An object, as [`S3::fetch`] gives it.
#[derive(Debug)]
pub struct Fetched {
    pub url: S3Url,
    /// Size according to the listing.
    pub size: u64,
    /// Whole when it fits one part ([`BlobData::Bytes`]), else read range by range
    /// ([`BlobData::Stream`]).
    pub body: BlobData,
}

impl Fetched {
    /// All of its bytes (the rest of its ranges fetched as they are read).
    pub fn into_bytes(self) -> Result<Vec<u8>> {
        Ok(self.body.into_bytes(&self.url.to_string())?)
    }
}

/// How [`S3::fetch`] fetches: `concurrency` GETs at a time; an object larger than
/// `part_bytes` in ranges of that size; and at most `held_bytes` of fetched bytes (whole
/// objects and ranges) waiting for the caller at once, whatever the objects' number and
/// size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    pub concurrency: usize,
    pub part_bytes: u64,
    pub held_bytes: u64,
}

impl FetchLimits {
    /// `concurrency` GETs at a time, parts of 8 MiB, 64 MiB held.
    pub fn new(concurrency: usize) -> Self {
        FetchLimits {
            concurrency,
            part_bytes: 8 << 20,
            held_bytes: 64 << 20,
        }
    }
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

    /// Fetches `objects` within `limits` and yields them in the order given: an object that
    /// fits a part whole, a larger one as a reader of its ranges (`If-Match` its listed ETag,
    /// so that the ranges are of one version), fetched ahead as far as the limits allow.
    /// Memory holds at most `held_bytes` fetched and not yet taken, however many objects
    /// there are and however large; dropping the iterator stops the fetching.
    pub fn fetch(&self, objects: Vec<Object>, limits: FetchLimits) -> FetchIter {
        let concurrency = limits.concurrency.max(1);
        let held = limits.held_bytes.clamp(1, u64::from(u32::MAX));
        // A part never needs more than the whole budget, or it would wait for ever.
        let part = limits.part_bytes.clamp(1, held);
        let (tx, rx) = tokio::sync::mpsc::channel(concurrency);
        let budget = Arc::new(tokio::sync::Semaphore::new(held as usize));
        let counted = Arc::new(HeldBytes::default());
        let client = self.client.clone();
        let (attempts, read_timeout) = (self.max_attempts, self.read_timeout);
        let pieces: Vec<PieceOf> = objects
            .into_iter()
            .enumerate()
            .flat_map(|(index, o)| PieceOf::cut(index, o, part))
            .collect();
        let held_bytes = Arc::clone(&counted);
        self.rt.spawn(async move {
            // In order: each piece takes its share of the budget before its GET starts, so
            // the caller, who takes them in the same order, never waits on one that waits
            // for budget held by the ones after it.
            for piece in pieces {
                let want = u32::try_from(piece.len.clamp(1, held)).unwrap_or(u32::MAX);
                let Ok(permit) = Arc::clone(&budget).acquire_many_owned(want).await else {
                    break;
                };
                let (client, held) = (client.clone(), Arc::clone(&held_bytes));
                let fetching = tokio::spawn(async move {
                    let data = get(&client, &piece, attempts, read_timeout).await?;
                    Ok(Piece {
                        object: piece.object,
                        url: piece.url,
                        size: piece.size,
                        last: piece.last,
                        _held: Held::new(held, data.len() as u64),
                        data,
                        _permit: permit,
                    })
                });
                if tx.send(fetching).await.is_err() {
                    break;
                }
            }
        });
        FetchIter {
            pieces: Arc::new(std::sync::Mutex::new(Pieces {
                rx,
                rt: Arc::clone(&self.rt),
                next_object: 0,
                reading: false,
            })),
            held: counted,
        }
    }

    /// Fetches one object.
    pub fn get(&self, url: &S3Url) -> Result<Vec<u8>> {
        let whole = PieceOf {
            object: 0,
            url: url.clone(),
            size: 0,
            range: None,
            etag: None,
            len: 0,
            last: true,
        };
        self.rt.block_on(get(
            &self.client,
            &whole,
            self.max_attempts,
            self.read_timeout,
        ))
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

/// One GET of an object or of a range of it. The SDK retries the request itself (and a
/// response that stays silent past the read timeout); a body that breaks off or stalls
/// midway is fetched again, up to `attempts` times in all.
async fn get(
    client: &aws_sdk_s3::Client,
    piece: &PieceOf,
    attempts: u32,
    read_timeout: Duration,
) -> Result<Vec<u8>> {
    let url = &piece.url;
    let mut attempt = 1;
    loop {
        let mut request = client.get_object().bucket(&url.bucket).key(&url.key);
        if let Some((first, last)) = piece.range {
            request = request
                .range(format!("bytes={first}-{last}"))
                .set_if_match(piece.etag.clone());
        }
        let resp = request
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(s) if s.is_no_such_key() => Error::Request {
                    op: "fetching",
                    url: url.to_string(),
                    message: "the object does not exist (deleted after the listing?)".into(),
                },
                _ if e.raw_response().map(|r| r.status().as_u16()) == Some(412) => Error::Request {
                    op: "fetching",
                    url: url.to_string(),
                    message:
                        "the object changed after the listing (its ETag is not the listed one)"
                            .into(),
                },
                _ => request_error("fetching", url, e),
            })?;
        match (read_body(resp.body, read_timeout).await, piece.range) {
            (Ok(body), Some((first, last))) if body.len() as u64 != piece.len => {
                return Err(Error::Request {
                    op: "fetching",
                    url: url.to_string(),
                    message: format!(
                        "bytes {first}-{last} came back as {} bytes: the object changed after \
                         the listing ({} bytes)",
                        body.len(),
                        piece.size
                    ),
                });
            }
            (Ok(body), _) => return Ok(body),
            (Err(e), _) if attempt < attempts => {
                tracing::warn!(url = %url, attempt, error = %e, "body broke off; fetching again");
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
                attempt += 1;
            }
            (Err(e), _) => {
                return Err(Error::Request {
                    op: "fetching",
                    url: url.to_string(),
                    message: format!("{e} ({attempts} attempts)"),
                });
            }
        }
    }
}

/// One GET to make: a whole object, or one range of a larger one.
#[derive(Debug, Clone)]
struct PieceOf {
    /// The object's place in the fetch.
    object: usize,
    url: S3Url,
    /// The object's size, as listed.
    size: u64,
    /// First and last byte, for a range.
    range: Option<(u64, u64)>,
    /// The listed ETag, which each range must still have.
    etag: Option<String>,
    /// Bytes expected (the listed size for a whole object).
    len: u64,
    /// Whether it is the object's last piece.
    last: bool,
}

impl PieceOf {
    /// `o` whole when it is at most `part` bytes, else in ranges of `part` bytes.
    fn cut(object: usize, o: Object, part: u64) -> Vec<PieceOf> {
        if o.size <= part {
            return vec![PieceOf {
                object,
                size: o.size,
                range: None,
                etag: None,
                len: o.size,
                last: true,
                url: o.url,
            }];
        }
        let n = o.size.div_ceil(part);
        (0..n)
            .map(|k| {
                let first = k * part;
                let last = (first + part).min(o.size) - 1;
                PieceOf {
                    object,
                    url: o.url.clone(),
                    size: o.size,
                    range: Some((first, last)),
                    etag: o.etag.clone(),
                    len: last - first + 1,
                    last: k + 1 == n,
                }
            })
            .collect()
    }
}

/// A piece fetched, holding its share of the budget until it is dropped.
struct Piece {
    object: usize,
    url: S3Url,
    size: u64,
    last: bool,
    data: Vec<u8>,
    _held: Held,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl fmt::Debug for Piece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Piece")
            .field("object", &self.object)
            .field("url", &self.url)
            .field("bytes", &self.data.len())
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

/// Bytes of pieces fetched and not yet dropped: now, and the most at once.
#[derive(Debug, Default)]
struct HeldBytes {
    now: std::sync::atomic::AtomicU64,
    peak: std::sync::atomic::AtomicU64,
}

/// A fetched piece's bytes, counted in [`HeldBytes`] from its fetch until it is dropped.
#[derive(Debug)]
struct Held {
    bytes: u64,
    count: Arc<HeldBytes>,
}

impl Held {
    fn new(count: Arc<HeldBytes>, bytes: u64) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let now = count.now.fetch_add(bytes, SeqCst) + bytes;
        count.peak.fetch_max(now, SeqCst);
        Held { bytes, count }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.count
            .now
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::SeqCst);
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
    pieces: Arc<std::sync::Mutex<Pieces>>,
    held: Arc<HeldBytes>,
}

/// The pieces as they come, in order, shared by the iterator and the reader of a large
/// object.
#[derive(Debug)]
struct Pieces {
    rx: tokio::sync::mpsc::Receiver<tokio::task::JoinHandle<Result<Piece>>>,
    rt: Arc<Runtime>,
    /// The object whose first piece comes next (the pieces of a reader dropped before its
    /// end are passed over).
    next_object: usize,
    /// Whether a [`RangeReader`] is still to be read to its end or dropped: until it is, the
    /// next object cannot come (its pieces come after the reader's).
    reading: bool,
}

impl Pieces {
    /// The next piece, fetched; `None` once every object was given.
    fn next(&mut self) -> Option<Result<Piece>> {
        let fetching = self.rx.blocking_recv()?;
        Some(match self.rt.block_on(fetching) {
            Ok(piece) => piece,
            Err(e) => Err(Error::Request {
                op: "fetching",
                url: String::from("an object"),
                message: format!("the fetching task failed: {e}"),
            }),
        })
    }
}

impl FetchIter {
    /// The most bytes fetched and not yet handed over at once, so far (a range counts until
    /// its reader moves on to the next): at most [`FetchLimits::held_bytes`].
    pub fn held_peak(&self) -> u64 {
        self.held.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The pieces, for the iterator or a reader.
fn lock(pieces: &std::sync::Mutex<Pieces>) -> std::sync::MutexGuard<'_, Pieces> {
    pieces
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Iterator for FetchIter {
    type Item = Result<Fetched>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut pieces = lock(&self.pieces);
        if pieces.reading {
            return Some(Err(Error::Request {
                op: "fetching",
                url: String::from("the next object"),
                message: "the object before it is still being read: read it to its end or \
                          drop it first"
                    .into(),
            }));
        }
        let piece = loop {
            match pieces.next()? {
                Err(e) => return Some(Err(e)),
                // What is left of an object whose reader stopped early.
                Ok(p) if p.object < pieces.next_object => continue,
                Ok(p) => break p,
            }
        };
        pieces.next_object = piece.object + 1;
        let (url, size) = (piece.url.clone(), piece.size);
        let body = if piece.last {
            BlobData::Bytes(piece.data)
        } else {
            pieces.reading = true;
            BlobData::Stream {
                len: size,
                reader: Box::new(RangeReader {
                    pieces: Arc::clone(&self.pieces),
                    piece: Some(piece),
                    at: 0,
                    ended: false,
                }),
            }
        };
        Some(Ok(Fetched { url, size, body }))
    }
}

/// A large object's bytes, range after range, each fetched ahead within the limits. The
/// next object comes once it is read to its end or dropped.
#[derive(Debug)]
struct RangeReader {
    pieces: Arc<std::sync::Mutex<Pieces>>,
    /// The range being read; `None` after the last.
    piece: Option<Piece>,
    at: usize,
    /// Whether it has let the next object come (read to its end, or dropped): only once, as
    /// a later object's reader may be open by the time this one is dropped.
    ended: bool,
}

impl RangeReader {
    /// Lets the next object come.
    fn done(&mut self) {
        if !self.ended {
            self.ended = true;
            lock(&self.pieces).reading = false;
        }
    }
}

impl Drop for RangeReader {
    fn drop(&mut self) {
        self.done();
    }
}

impl std::io::Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(piece) = &self.piece else {
                return Ok(0);
            };
            if self.at < piece.data.len() {
                let n = buf.len().min(piece.data.len() - self.at);
                buf[..n].copy_from_slice(&piece.data[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            if piece.last {
                self.piece = None;
                self.done();
                return Ok(0);
            }
            let object = piece.object;
            // Dropped first: its share of the budget is free before the next one is awaited.
            self.piece = None;
            let next = lock(&self.pieces).next();
            match next {
                Some(Ok(p)) if p.object == object => {
                    self.piece = Some(p);
                    self.at = 0;
                }
                Some(Ok(p)) => {
                    return Err(std::io::Error::other(format!(
                        "{}: a range of another object came ({})",
                        p.url, p.object
                    )));
                }
                Some(Err(e)) => {
                    return Err(std::io::Error::other(sparkify_core::error::chain(&e)));
                }
                None => {
                    return Err(std::io::Error::other(
                        "the fetching stopped before the object's last range",
                    ));
                }
            }
        }
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
