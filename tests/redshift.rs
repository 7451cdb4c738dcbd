//! The whole Redshift path of the `sparkify` binary against the strict local Redshift
//! (`sparkify-redshift-local`, in front of a temporary PostgreSQL) with moto's S3: what a
//! real cluster would refuse is refused here first.
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::path::Path;
use std::process::Output;

use sparkify_s3::S3Url;
use sparkify_test_support::cli::{self, text};
use sparkify_test_support::fixtures;
use sparkify_test_support::moto::Moto;
use sparkify_test_support::redshift::LocalRedshift;

const ROLE: &str = "arn:aws:iam::123456789012:role/dwhRole";

fn sparkify(dir: &Path, args: &[&str]) -> Output {
    let env = Moto::shared().env();
    cli::run(env!("CARGO_BIN_EXE_sparkify"), dir, args, &env)
}

/// The fixtures' bucket with the JSONPaths file beside the logs.
fn fixtures_bucket() -> &'static str {
    let moto = Moto::shared();
    let bucket = moto.fixtures();
    let paths = std::fs::read(fixtures::sparkify().join("log_json_path.json")).unwrap();
    moto.s3()
        .put(
            &S3Url::parse(&format!("s3://{bucket}/log_json_path.json")).unwrap(),
            paths,
        )
        .unwrap();
    bucket
}

/// A folder with a `sparkify.toml` for `rs`, its inputs under `events` and `songs` of
/// `bucket`, staging by `copy_from`.
fn config(
    rs: &LocalRedshift,
    bucket: &str,
    events: &str,
    songs: &str,
    copy_from: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let upload = match copy_from {
        "parquet" => format!("upload_prefix = \"s3://{bucket}/staging\"\n"),
        _ => String::new(),
    };
    std::fs::write(
        dir.path().join("sparkify.toml"),
        format!(
            "{}copy_from = \"{copy_from}\"\n\n[s3]\nevents = \"s3://{bucket}/{events}\"\n\
             songs = \"s3://{bucket}/{songs}\"\njsonpaths = \"s3://{bucket}/log_json_path.json\"\n\
             region = \"us-east-1\"\n{upload}\n[iam]\nrole_arn = \"{ROLE}\"\n",
            rs.toml_section()
        ),
    )
    .unwrap();
    dir
}

/// The rows of `query` on the sink, as CSV lines without the header.
fn sql(dir: &Path, sink: &str, query: &str) -> Vec<String> {
    cli::sql_rows(
        env!("CARGO_BIN_EXE_sparkify"),
        dir,
        sink,
        query,
        &Moto::shared().env(),
    )
}

/// `etl --sink SINK --songs s3://BUCKET/SONGS --events s3://BUCKET/EVENTS` and `extra`.
fn etl_s3(sink: &str, bucket: &str, songs: &str, events: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["etl", "--sink", sink, "--songs"]
        .map(str::to_owned)
        .to_vec();
    args.push(format!("s3://{bucket}/{songs}"));
    args.push("--events".into());
    args.push(format!("s3://{bucket}/{events}"));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

/// A DuckDB load of the same input, from the same bucket: what the warehouse must equal.
fn duckdb_reference(dir: &Path, bucket: &str, events: &str, songs: &str, extra: &[&str]) {
    let args = etl_s3("duckdb:reference.duckdb", bucket, songs, events, extra);
    let out = sparkify(dir, &strs(&args));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

fn verify(dir: &Path) {
    let out = sparkify(
        dir,
        &[
            "verify",
            "--sink",
            "duckdb:reference.duckdb",
            "--sink",
            "redshift",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "verify: {}", text(&out));
}

#[test]
fn a_full_load_by_copy_from_json_gives_the_real_datas_tables_provisioned_and_serverless() {
    let bucket = fixtures_bucket();
    for serverless in [false, true] {
        let rs = LocalRedshift::start(Moto::shared(), serverless);
        let dir = config(&rs, bucket, "log_data", "song_data", "json");
        let d = dir.path();
        let out = sparkify(
            d,
            &[
                "etl",
                "--sink",
                "redshift",
                "--summary-json",
                "summary.json",
                "--check",
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "serverless {serverless}: {}",
            text(&out)
        );
        let rows = &summary(d)["rows"];
        for (table, n) in [
            ("staging_events", 8_056),
            ("staging_songs", 14_896),
            ("ft_songplays", 333),
            ("dm_users", 97),
            ("dm_songs", 14_896),
            ("dm_artists", 9_553),
            ("dm_time", 6_813),
        ] {
            assert_eq!(rows[table], n, "{table}, serverless {serverless}: {rows}");
        }
        // The keys and encodings Redshift was given, as its catalog shows them.
        assert_eq!(
            sql(
                d,
                "redshift",
                "SELECT diststyle, sortkey1 FROM svv_table_info WHERE \"table\" = 'ft_songplays'"
            ),
            ["KEY(song_id),song_id"]
        );
        duckdb_reference(d, bucket, "log_data", "song_data", &[]);
        verify(d);
        // The run history, the checks and the analytics, on Redshift.
        let out = sparkify(d, &["runs", "--sink", "redshift", "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(runs.len(), 1, "{runs:#?}");
        let out = sparkify(d, &["check", "--sink", "redshift"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let out = sparkify(d, &["analytics", "--sink", "redshift", "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("You're The One") && said.contains("Dwight Yoakam"),
            "{said}"
        );
        // The DDL alone, too.
        for action in ["drop", "create"] {
            let out = sparkify(d, &["tables", action, "--sink", "redshift"]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "tables {action}: {}",
                text(&out)
            );
        }
        assert_eq!(sql(d, "redshift", "SELECT COUNT(*) FROM dm_songs"), ["0"]);
    }
}

/// The real logs with bad records in one day: a `ts` that is no epoch time and a `userId`
/// that is no number.
fn bad_logs(bucket: &str) -> &'static str {
    let moto = Moto::shared();
    let day = fixtures::sparkify().join("log_data/2018/11/2018-11-05-events.json");
    let text = std::fs::read_to_string(day).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[6] = lines[6].replacen("\"ts\":", "\"ts\":\"yesterday\",\"was\":", 1);
    lines[9] = lines[9].replacen("\"userId\":\"", "\"userId\":\"u", 1);
    let put = |key: &str, body: Vec<u8>| {
        moto.s3()
            .put(
                &S3Url::parse(&format!("s3://{bucket}/{key}")).unwrap(),
                body,
            )
            .unwrap();
    };
    put(
        "bad_log_data/2018-11-05-events.json",
        (lines.join("\n") + "\n").into_bytes(),
    );
    for other in ["2018-11-06-events.json", "2018-11-07-events.json"] {
        let path = fixtures::sparkify().join("log_data/2018/11").join(other);
        put(
            &format!("bad_log_data/{other}"),
            std::fs::read(path).unwrap(),
        );
    }
    "bad_log_data"
}

#[test]
fn bad_records_in_the_s3_input_land_in_load_errors_within_max_errors_and_fail_beyond() {
    let bucket = fixtures_bucket();
    let logs = bad_logs(bucket);
    let rs = LocalRedshift::start(Moto::shared(), false);
    let dir = config(&rs, bucket, logs, "song_data/A/A", "json");
    let d = dir.path();
    // Two bad records: --max-errors 1 commits nothing, exit 3, both named.
    let out = sparkify(d, &["etl", "--sink", "redshift", "--max-errors", "1"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("2018-11-05-events.json:7") && said.contains("2018-11-05-events.json:10"),
        "{said}"
    );
    // --max-errors 2 allows exactly two.
    let out = sparkify(
        d,
        &[
            "etl",
            "--sink",
            "redshift",
            "--max-errors",
            "2",
            "--summary-json",
            "summary.json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        sql(
            d,
            "redshift",
            "SELECT source, line, column_name FROM load_errors ORDER BY line"
        ),
        [
            format!("s3://{bucket}/{logs}/2018-11-05-events.json,7,ts"),
            format!("s3://{bucket}/{logs}/2018-11-05-events.json,10,userid"),
        ]
    );
    // Serverless: the same, from sys_load_error_detail.
    let rs = LocalRedshift::start(Moto::shared(), true);
    let dir = config(&rs, bucket, logs, "song_data/A/A", "json");
    let d = dir.path();
    let out = sparkify(d, &["etl", "--sink", "redshift", "--max-errors", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        sql(
            d,
            "redshift",
            "SELECT COUNT(*) FROM load_errors WHERE line IN (7, 10)"
        ),
        ["2"]
    );
    let out = sparkify(d, &["etl", "--sink", "redshift"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    // By the Parquet upload the parser finds them: the same rejects in every sink, and
    // DuckDB, PostgreSQL and the local Redshift equal, load_errors included.
    let rs = LocalRedshift::start(Moto::shared(), false);
    let dir = config(&rs, bucket, logs, "song_data/A/A", "parquet");
    let d = dir.path();
    let pg = sparkify_test_support::pg::PgServer::start();
    let pg_url = pg.url();
    for sink in ["redshift", pg_url.as_str()] {
        let load = etl_s3(sink, bucket, "song_data/A/A", logs, &["--max-errors", "2"]);
        let out = sparkify(d, &strs(&load));
        assert_eq!(out.status.code(), Some(0), "{sink}: {}", text(&out));
    }
    duckdb_reference(d, bucket, logs, "song_data/A/A", &["--max-errors", "2"]);
    assert_eq!(
        sql(d, "redshift", "SELECT COUNT(*) FROM load_errors"),
        ["2"]
    );
    let out = sparkify(
        d,
        &[
            "verify",
            "--sink",
            "duckdb:reference.duckdb",
            "--sink",
            "redshift",
            "--sink",
            &pg_url,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "verify: {}", text(&out));
}

#[test]
fn a_load_by_copy_from_the_parquet_upload_and_an_incremental_one_that_widens_equal_duckdb() {
    let bucket = fixtures_bucket();
    let moto = Moto::shared();
    let rs = LocalRedshift::start(moto, false);
    // The first days, then one more with a longer name: the incremental load widens.
    let root = fixtures::sparkify().join("log_data/2018/11");
    let days: Vec<String> = ["2018-11-01-events.json", "2018-11-02-events.json"]
        .map(|d| std::fs::read_to_string(root.join(d)).unwrap())
        .to_vec();
    let put = |key: &str, body: String| {
        moto.s3()
            .put(
                &S3Url::parse(&format!("s3://{bucket}/{key}")).unwrap(),
                body.into_bytes(),
            )
            .unwrap();
    };
    put("grow_log_data/2018-11-01-events.json", days[0].clone());
    let dir = config(&rs, bucket, "grow_log_data", "song_data/A/B", "parquet");
    let d = dir.path();
    let load = etl_s3(
        "redshift",
        bucket,
        "song_data/A/B",
        "grow_log_data",
        &["--incremental"],
    );
    let load = strs(&load);
    let out = sparkify(d, &load);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A warehouse loaded before load_errors.raw (a Redshift reserved word) was renamed: the
    // next load renames it.
    rs.pg
        .psql("ALTER TABLE load_errors RENAME COLUMN raw_text TO raw");
    let long_name = "W".repeat(100);
    put(
        "grow_log_data/2018-11-02-events.json",
        days[1].replacen(
            "\"firstName\":\"",
            &format!("\"firstName\":\"{long_name}"),
            1,
        ),
    );
    let out = sparkify(d, &load);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        sql(
            d,
            "redshift",
            "SELECT character_maximum_length FROM information_schema.columns WHERE table_name = 'staging_events' AND column_name = 'firstname'"
        ),
        ["256"]
    );
    assert_eq!(
        sql(
            d,
            "redshift",
            "SELECT column_name FROM information_schema.columns \
             WHERE table_name = 'load_errors' AND column_name LIKE 'raw%'"
        ),
        ["raw_text"]
    );
    duckdb_reference(d, bucket, "grow_log_data", "song_data/A/B", &[]);
    verify(d);
}

#[test]
fn two_loads_at_once_take_turns_and_a_killed_load_leaves_the_previous_tables() {
    let bucket = fixtures_bucket();
    let moto = Moto::shared();
    let rs = LocalRedshift::start(moto, false);
    let root = fixtures::sparkify().join("log_data/2018/11");
    let put = |day: &str| {
        let url = S3Url::parse(&format!("s3://{bucket}/turns_log_data/{day}")).unwrap();
        moto.s3()
            .put(&url, std::fs::read(root.join(day)).unwrap())
            .unwrap();
    };
    put("2018-11-01-events.json");
    let dir = config(&rs, bucket, "turns_log_data", "song_data/A/A", "parquet");
    let d = dir.path();
    let daily = etl_s3(
        "redshift",
        bucket,
        "song_data/A/A",
        "turns_log_data",
        &["--incremental"],
    );
    let daily = strs(&daily);
    let out = sparkify(d, &daily);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A new day, and two daily loads of it at once: they take turns at the lock table, and
    // the second, whose plan was made from the ledger before the first committed, stops in
    // words (or, when they did not overlap, finds the day loaded); never with Redshift's
    // serializable isolation error.
    put("2018-11-02-events.json");
    let spawn = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sparkify"))
            .args(args)
            .envs(Moto::shared().env())
            .current_dir(d)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(&daily), spawn(&daily));
    let mut committed = 0;
    for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        let said = text(&out);
        assert!(
            !said.contains("1023") && !said.contains("erializable"),
            "{said}"
        );
        match out.status.code() {
            Some(0) => committed += 1,
            Some(4) => assert!(said.contains("another load changed etl_files"), "{said}"),
            _ => panic!("{said}"),
        }
    }
    assert!(committed >= 1);
    assert_eq!(
        sql(d, "redshift", "SELECT COUNT(*) FROM etl_runs"),
        [(1 + committed).to_string()]
    );
    let lines = |day: &str| {
        std::fs::read_to_string(root.join(day))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    assert_eq!(
        sql(d, "redshift", "SELECT COUNT(*) FROM staging_events"),
        [(lines("2018-11-01-events.json") + lines("2018-11-02-events.json")).to_string()]
    );
    let full = etl_s3("redshift", bucket, "song_data/A/A", "turns_log_data", &[]);
    let full = strs(&full);
    // A load whose backend is killed while it makes the star (the staging tables copied):
    // held at dm_time's DROP by a reader's lock, then killed. The last load's tables stay.
    let counts = sql(
        d,
        "redshift",
        "SELECT (SELECT COUNT(*) FROM ft_songplays), (SELECT COUNT(*) FROM staging_songs)",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (reader, conn) = rt
        .block_on(tokio_postgres::connect(&rs.pg.url(), tokio_postgres::NoTls))
        .unwrap();
    rt.spawn(conn);
    rt.block_on(reader.batch_execute("BEGIN; LOCK TABLE dm_time IN ACCESS SHARE MODE"))
        .unwrap();
    let mut load = spawn(&full);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut killed = None;
    while killed.is_none() && std::time::Instant::now() < deadline {
        // Another session: a transaction sees the activity of its start only.
        let pid = rs.pg.psql(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'DROP TABLE IF EXISTS dm_time%' \
             AND wait_event_type = 'Lock'",
        );
        if let Some(pid) = pid.lines().next() {
            rs.pg.psql(&format!("SELECT pg_terminate_backend({pid})"));
            killed = Some(pid.to_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    rt.block_on(reader.batch_execute("COMMIT")).unwrap();
    let out = load.wait_with_output_or_kill();
    assert!(
        killed.is_some(),
        "the load never reached the star: {}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert_eq!(
        sql(
            d,
            "redshift",
            "SELECT (SELECT COUNT(*) FROM ft_songplays), (SELECT COUNT(*) FROM staging_songs)"
        ),
        counts
    );
    assert_eq!(
        sql(d, "redshift", "SELECT COUNT(*) FROM etl_runs"),
        [(1 + committed).to_string()]
    );
}

trait WaitOrKill {
    fn wait_with_output_or_kill(&mut self) -> Output;
}

impl WaitOrKill for std::process::Child {
    fn wait_with_output_or_kill(&mut self) -> Output {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.kill();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        use std::io::Read;
        if let Some(mut s) = self.stdout.take() {
            let _ = s.read_to_end(&mut stdout);
        }
        if let Some(mut s) = self.stderr.take() {
            let _ = s.read_to_end(&mut stderr);
        }
        Output {
            status: self.wait().unwrap(),
            stdout,
            stderr,
        }
    }
}

#[test]
fn the_smoke_script_loads_analyses_and_verifies_end_to_end_against_local_stand_ins() {
    let bucket = fixtures_bucket();
    let moto = Moto::shared();
    let rs = LocalRedshift::start(moto, true);
    let stub = sparkify_test_support::serverless::ServerlessStub::start();
    let dir = tempfile::tempdir().unwrap();
    let script = fixtures::repo().join("scripts/redshift-smoke.sh");
    let mut env = moto.env();
    env.push(stub.env());
    env.extend([
        ("SPARKIFY", env!("CARGO_BIN_EXE_sparkify").to_owned()),
        ("SPARKIFY_REDSHIFT_HOST", "127.0.0.1".to_owned()),
        ("SPARKIFY_REDSHIFT_PORT", rs.port.to_string()),
        ("SPARKIFY_REDSHIFT_TLS", "false".to_owned()),
        ("SPARKIFY_REDSHIFT_DATABASE", "postgres".to_owned()),
        ("SPARKIFY_REDSHIFT_USER", "postgres".to_owned()),
    ]);
    let out = std::process::Command::new("bash")
        .arg(&script)
        .args([
            "--yes",
            "--workgroup",
            "smoke-local",
            "--cidr",
            "192.0.2.7/32",
            "--poll",
            "1",
            "--bucket",
            bucket,
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(stub.refused(), Vec::<String>::new(), "{said}");
    for want in [
        "workgroup smoke-local: created",
        "analytics: the same on Redshift and DuckDB",
        "workgroup smoke-local: gone",
    ] {
        assert!(said.contains(want), "{want}: {said}");
    }
}
