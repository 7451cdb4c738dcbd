//! A local S3-compatible server for the tests: moto's `moto_server` on a free loopback port,
//! one per test binary; the real fixtures are uploaded into the bucket [`FIXTURES`] by the
//! first test that asks for them.
//! A watchdog shell stops the server when the test process ends. A missing `moto_server` is
//! a failure, never a skip (scripts/test.sh installs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sparkify_s3::{Body, S3, S3Options, S3Url, StaticKeys};

/// The bucket holding `song_data/…` and `log_data/…` of fixtures/sparkify.
pub const FIXTURES: &str = "sparkify-fixtures";

pub struct Moto {
    pub endpoint: String,
    /// The watchdog shell; it outlives the test process by at most half a second.
    _watchdog: Child,
    s3: Arc<S3>,
    fixtures: OnceLock<()>,
    /// The server's output.
    log: PathBuf,
}

fn moto_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SPARKIFY_MOTO") {
        return PathBuf::from(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.exists())
        .expect(
            "no moto_server on PATH or in SPARKIFY_MOTO; scripts/test.sh installs it \
             (pip install 'moto[server]')",
        )
}

impl Moto {
    /// The test binary's server, started on first use.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(Moto::start)
    }

    fn start() -> Moto {
        let bin = moto_bin();
        let log = std::env::temp_dir().join(format!("sparkify-moto-{}.log", std::process::id()));
        let started = crate::ports::on_a_free_port(|port| {
            // The watchdog: runs the server, and stops it once this process is gone.
            let script = format!(
                "'{}' -H 127.0.0.1 -p {port} >'{}' 2>&1 & m=$!; trap 'kill $m' EXIT; \
                 while kill -0 {} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done",
                bin.display(),
                log.display(),
                std::process::id()
            );
            let mut watchdog = Command::new("sh")
                .args(["-c", &script])
                // AWS's managed policies (AmazonS3ReadOnlyAccess), which the cluster's role gets.
                .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sh runs");
            // Until moto answers; if it exits first (another process took the port), the
            // watchdog exits too, and we try another port.
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut up = false;
            while !up && Instant::now() < deadline && matches!(watchdog.try_wait(), Ok(None)) {
                up = answers_http(port, Duration::from_millis(200));
            }
            if up {
                return Some((port, watchdog));
            }
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            None
        });
        if let Some((port, watchdog)) = started {
            let endpoint = format!("http://127.0.0.1:{port}");
            let s3 = Arc::new(S3::connect(&options(&endpoint)).unwrap());
            return Moto {
                _watchdog: watchdog,
                endpoint,
                s3,
                fixtures: OnceLock::new(),
                log,
            };
        }
        panic!(
            "moto_server did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Uploads fixtures/sparkify into the bucket [`FIXTURES`] (once) and returns its name.
    pub fn fixtures(&self) -> &'static str {
        self.fixtures.get_or_init(|| self.upload_fixtures());
        FIXTURES
    }

    fn upload_fixtures(&self) {
        if let Err(e) = self.s3.create_bucket(FIXTURES) {
            self.fail(&format!("creating bucket {FIXTURES}: {e}"));
        }
        let root = crate::fixtures::sparkify();
        let mut uploads = Vec::new();
        for sub in ["song_data", "log_data"] {
            collect(&root, &root.join(sub), &mut uploads);
        }
        let uploads = uploads
            .into_iter()
            .map(|(path, key)| {
                (
                    Body::File(path),
                    S3Url::parse(&format!("s3://{FIXTURES}/{key}")).unwrap(),
                )
            })
            .collect();
        if let Err(e) = self.s3.put_many(uploads, 32) {
            self.fail(&format!("uploading the fixtures: {e}"));
        }
    }

    /// A client of this server.
    pub fn s3(&self) -> Arc<S3> {
        Arc::clone(&self.s3)
    }

    /// A new empty bucket.
    pub fn bucket(&self, name: &str) -> String {
        if let Err(e) = self.s3.create_bucket(name) {
            self.fail(&format!("creating bucket {name}: {e}"));
        }
        name.to_owned()
    }

    /// Panics with `what`, whether the server still answers, and its log.
    fn fail(&self, what: &str) -> ! {
        let port = self.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail = &log[log.floor_char_boundary(log.len().saturating_sub(4000))..];
        panic!(
            "{what}\nmoto_server answers now: {}\n--- the end of {}:\n{tail}",
            answers_http(port, Duration::from_secs(1)),
            self.log.display(),
        );
    }

    /// The environment a `sparkify` process needs to reach this server, with signed requests.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

/// Whether an HTTP server answers on 127.0.0.1:`port` within `timeout`.
///
/// A bare TCP connect proves only that something accepted on the port. CI once failed with
/// "connection refused" on the first request to moto after a bare connect had passed, and
/// moto's log shows it started after that request: most likely one of the test binary's
/// PostgreSQL servers, which start and stop beside moto on ports picked the same way, held
/// the port for a moment. A status line comes only from an HTTP server.
pub fn answers_http(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = [0u8; 5];
            if stream
                .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .and_then(|()| stream.read_exact(&mut head))
                .is_ok()
                && &head == b"HTTP/"
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Options for a client of `endpoint`.
pub fn options(endpoint: &str) -> S3Options {
    S3Options {
        endpoint_url: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        static_keys: Some(StaticKeys {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
        }),
        ..S3Options::default()
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let key = path
                .strip_prefix(root)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((path, key));
        }
    }
}
