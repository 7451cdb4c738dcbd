//! End-to-end tests of the `sparkify` binary: the one cargo built for this test run.
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::path::Path;
use std::process::{Command, Output};

use duckdb::Connection;
use serde_json::json;
use sparkify_core::model::SongplaysMode;
use sparkify_sink_redshift::{WarehouseConfig, WarehouseSink};
use sparkify_test_support::cli::{self, assert_summary_valid, etl_args, text};
use sparkify_test_support::fixtures::repo;
use sparkify_test_support::{moto, pg};

/// A folder that looks like a checkout's root to `sparkify run`: `fixtures` links to the
/// repository's, so the run finds `./fixtures/sparkify` and writes its output here.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("fixtures"), dir.path().join("fixtures")).unwrap();
    dir
}

fn sparkify(dir: &Path, args: &[&str]) -> Output {
    cli::run(env!("CARGO_BIN_EXE_sparkify"), dir, args, &[])
}

/// `sparkify` with `env` added to its environment (an S3 endpoint and credentials).
fn sparkify_env(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    cli::run(env!("CARGO_BIN_EXE_sparkify"), dir, args, env)
}

fn count(db: &Path, table: &str) -> i64 {
    let conn = Connection::open(db).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Every table's rows as text, sorted: what "unchanged" is checked against.
fn dump(db: &Path) -> String {
    let conn = Connection::open(db).unwrap();
    let mut out = String::new();
    for t in [
        "staging_events",
        "staging_songs",
        "ft_songplays",
        "dm_users",
        "dm_songs",
        "dm_artists",
        "dm_time",
        "load_errors",
    ] {
        let sql = format!(
            "SELECT string_agg(CAST(x AS VARCHAR), chr(10) ORDER BY CAST(x AS VARCHAR)) FROM {t} AS x"
        );
        let s: Option<String> = conn.query_row(&sql, [], |r| r.get(0)).unwrap();
        out += &format!("{t}\n{}\n", s.unwrap_or_default());
    }
    out
}

#[test]
fn run_loads_the_real_data_into_sparkify_duckdb() {
    let dir = checkout();
    let json = dir.path().join("summary.json");
    let out = sparkify(
        dir.path(),
        &["run", "--summary-json", json.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_summary_valid(&json);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (table, rows) in [
        ("ft_songplays", "333"),
        ("dm_users", "97"),
        ("dm_artists", "9553"),
        ("dm_time", "6813"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(table) && l.contains(rows)),
            "{table} {rows}:\n{stdout}"
        );
    }
    assert!(stdout.contains("seconds"), "{stdout}");

    let db = dir.path().join("sparkify.duckdb");
    for (table, rows) in [
        ("staging_events", 8056),
        ("staging_songs", 14896),
        ("ft_songplays", 333),
        ("dm_users", 97),
        ("dm_songs", 14896),
        ("dm_artists", 9553),
        ("dm_time", 6813),
        ("load_errors", 0),
    ] {
        assert_eq!(count(&db, table), rows, "{table}");
    }
    let conn = Connection::open(&db).unwrap();
    let (title, artist, plays): (String, String, i64) = conn
        .query_row(
            "SELECT s.title, a.name, count(*) AS n FROM ft_songplays p
             JOIN dm_songs s USING (song_id) JOIN dm_artists a ON a.artist_id = p.artist_id
             GROUP BY 1, 2 ORDER BY n DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (title.as_str(), artist.as_str(), plays),
        ("You're The One", "Dwight Yoakam", 37)
    );
    // Millisecond precision survives the load.
    let ms: i64 = conn
        .query_row(
            "SELECT CAST(epoch_ms(min(start_time)) AS BIGINT) FROM dm_time",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ms % 1000, 796);

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(summary["files_read"], 14926);
    assert_eq!(summary["bytes_read"], 3716227 + 3755598);
    assert_eq!(summary["rows"]["ft_songplays"], 333);
    assert_eq!(summary["rows"]["dm_users"], 97);
    assert_eq!(summary["rejects"], 0);
    assert!(summary["seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn output_opens_in_duckdbs_python_package_with_the_seeds_table_names() {
    let dir = checkout();
    let out = sparkify(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let script = "import duckdb, sys\n\
        c = duckdb.connect(sys.argv[1], read_only=True)\n\
        for t in ['staging_events','staging_songs','ft_songplays','dm_users','dm_songs','dm_artists','dm_time']:\n\
        \x20   print(t, c.execute(f'SELECT count(*) FROM {t}').fetchone()[0])\n";
    let py = Command::new(std::env::var("SPARKIFY_PYTHON").unwrap_or_else(|_| "python3".into()))
        .args([
            "-c",
            script,
            dir.path().join("sparkify.duckdb").to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs");
    assert!(py.status.success(), "{}", text(&py));
    let got = String::from_utf8_lossy(&py.stdout);
    assert!(
        got.contains("ft_songplays 333") && got.contains("dm_users 97"),
        "{got}"
    );
}

#[test]
fn too_many_rejects_exit_3_and_leave_the_previous_load_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.duckdb");
    let sink = format!("duckdb:{}", db.display());
    let fx = repo().join("fixtures");
    let songs = fx.join("sparkify/song_data/A/A");
    let good = sparkify(
        dir.path(),
        &[
            "etl",
            "--songs",
            songs.to_str().unwrap(),
            "--events",
            fx.join("sparkify/log_data").to_str().unwrap(),
            "--sink",
            &sink,
        ],
    );
    assert_eq!(good.status.code(), Some(0), "{}", text(&good));
    let before = dump(&db);

    let bad = sparkify(
        dir.path(),
        &[
            "etl",
            "--songs",
            songs.to_str().unwrap(),
            "--events",
            fx.join("bad").to_str().unwrap(),
            "--sink",
            &sink,
            "--max-errors",
            "0",
        ],
    );
    assert_eq!(bad.status.code(), Some(3), "{}", text(&bad));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("not_json.json:2 (byte "), "{stderr}");
    assert!(
        stderr.contains("wrong_type.json:2 (byte ") && stderr.contains("field `sessionId`"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was committed"), "{stderr}");
    assert_eq!(dump(&db), before);
}

#[test]
fn rejects_within_max_errors_load_with_load_errors() {
    // PostgreSQL too: its text refuses what DuckDB's takes (a NUL character), so a record
    // holding one must be a reject there like anywhere, not a failed COPY.
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures");
    let json = dir.path().join("s.json");
    let sql = |sink: &str, query: &str| -> Vec<serde_json::Value> {
        let out = stdout_of(
            dir.path(),
            &["sql", "--sink", sink, "--format", "json", query],
        );
        serde_json::from_str(&out).unwrap()
    };
    for sink in [
        format!("duckdb:{}", dir.path().join("out.duckdb").display()),
        server.url(),
    ] {
        let out = sparkify(
            dir.path(),
            &[
                "etl",
                "--songs",
                fx.join("bad/numbers_in_text.json").to_str().unwrap(),
                "--events",
                fx.join("bad").to_str().unwrap(),
                "--sink",
                &sink,
                "--max-errors",
                "100",
                "--summary-json",
                json.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{sink}: {}", text(&out));
        assert_summary_valid(&json);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let rejects = summary["rejects"].as_i64().unwrap();
        assert_eq!(rejects, 11, "{sink}: {summary:#}");
        // Every record read is a staged row or a reject.
        let staged = summary["rows"]["staging_events"].as_i64().unwrap()
            + summary["rows"]["staging_songs"].as_i64().unwrap();
        assert_eq!(
            summary["records_read"].as_i64(),
            Some(staged + rejects),
            "{sink}: {summary:#}"
        );
        assert_eq!(summary["files_skipped"], 1);
        let stored = sql(
            &sink,
            "SELECT source, line, column_name, reason FROM load_errors ORDER BY source, line",
        );
        assert_eq!(stored.len() as i64, rejects, "{sink}: {stored:#?}");
        let named = |file: &str| {
            stored
                .iter()
                .find(|r| r["source"].as_str().unwrap().ends_with(file))
                .unwrap_or_else(|| panic!("{sink}: no reject of {file}: {stored:#?}"))
        };
        let r = named("out_of_range.json");
        assert_eq!(
            (&r["line"], &r["column_name"]),
            (&json!(2), &json!("itemInSession"))
        );
        assert!(
            r["reason"].as_str().unwrap().contains("out of range"),
            "{r}"
        );
        let r = named("nul_text.json");
        assert_eq!(
            (&r["line"], &r["column_name"]),
            (&json!(2), &json!("artist"))
        );
        assert!(
            r["reason"].as_str().unwrap().contains("NUL character"),
            "{r}"
        );
        // The good records of the bad files loaded (numbers_in_text.json is a valid object too).
        let staged = sql(&sink, "SELECT count(*) AS n FROM staging_events");
        assert_eq!(staged[0]["n"], json!(28), "{sink}");
    }
}

#[test]
fn bad_usage_exits_2_and_sink_failure_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures/sparkify");
    let songs = fx.join("song_data/A/A/A");
    let events = fx.join("log_data");
    let run_with = |sink: &str, songs: &Path, more: &[&str]| {
        sparkify(dir.path(), &etl_args(songs, &events, sink, more))
    };
    let run = |sink: &str, songs: &Path| run_with(sink, songs, &[]);

    let out = run("mysql:nowhere", &songs);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown sink"));
    // A PostgreSQL URL is parsed where it is given, and its password not repeated.
    let out = run("postgres://ann:Sentinel-Bad-Url@db.example:port/dw", &songs);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("invalid value for '--sink <SINK>': bad connection settings"),
        "{said}"
    );
    assert!(!said.contains("Sentinel"), "{said}");

    let out = run("duckdb:x.duckdb", Path::new("/no/such/folder"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/folder"));

    let out = sparkify(dir.path(), &["etl", "--songs"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // `run` outside a checkout, without --fixtures: a usage error that says what to do.
    let out = sparkify(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fixtures DIR"));
    assert!(!dir.path().join("sparkify.duckdb").exists());

    let out = run("duckdb:/no/such/dir/x.duckdb", &songs);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/dir/x.duckdb"));

    // A summary that cannot be written is bad usage found before anything loads.
    let out = run_with(
        "duckdb:s.duckdb",
        &songs,
        &["--summary-json", "/no/such/dir/s.json"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--summary-json /no/such/dir/s.json"));
    assert!(!dir.path().join("s.duckdb").exists());
    // A run that fails before its summary leaves no summary file behind.
    let out = run_with(
        "duckdb:s.duckdb",
        Path::new("/no/such/folder"),
        &["--summary-json", "s.json"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!dir.path().join("s.json").exists());
}

#[test]
fn songplays_all_keeps_unmatched_plays_and_threads_do_not_matter() {
    let dir = checkout();
    let one = sparkify(
        dir.path(),
        &[
            "run",
            "--songplays",
            "all",
            "--threads",
            "1",
            "--sink",
            "duckdb:one.duckdb",
        ],
    );
    assert_eq!(one.status.code(), Some(0), "{}", text(&one));
    let four = sparkify(
        dir.path(),
        &[
            "run",
            "--songplays",
            "all",
            "--threads",
            "4",
            "--batch-size",
            "3",
            "--sink",
            "duckdb:four.duckdb",
        ],
    );
    assert_eq!(four.status.code(), Some(0), "{}", text(&four));
    let a = dir.path().join("one.duckdb");
    assert_eq!(count(&a, "ft_songplays"), 6820);
    let without_runtime = |d: String| {
        d.lines()
            .filter(|l| !l.contains("run_started_at"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_runtime(dump(&a)),
        without_runtime(dump(&dir.path().join("four.duckdb")))
    );
}

fn pg_count(url: &str, table: &str) -> i64 {
    let sink = WarehouseSink::new(WarehouseConfig::postgres(
        url.parse().unwrap(),
        SongplaysMode::Matched,
    ));
    let r = sink
        .query(&format!("SELECT count(*) FROM {table}"))
        .unwrap();
    r.rows[0][0].as_deref().unwrap().parse().unwrap()
}

#[test]
fn etl_into_postgres_and_into_duckdb_with_sql_transforms() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures/sparkify");
    let (songs, events) = (fx.join("song_data"), fx.join("log_data"));
    let etl =
        |sink: &str, extra: &[&str]| sparkify(dir.path(), &etl_args(&songs, &events, sink, extra));
    let url = server.url();
    let out = etl(&url, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("committed"),
        "{}",
        text(&out)
    );
    let out = etl("duckdb:sql.duckdb", &["--transform", "sql"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let db = dir.path().join("sql.duckdb");
    for (table, rows) in [
        ("ft_songplays", 333),
        ("dm_users", 97),
        ("dm_songs", 14896),
        ("dm_artists", 9553),
        ("dm_time", 6813),
        ("staging_events", 8056),
    ] {
        assert_eq!(pg_count(&url, table), rows, "postgres {table}");
        assert_eq!(count(&db, table), rows, "duckdb --transform sql {table}");
    }
    // tables drop, then create: empty tables, all there.
    let out = sparkify(dir.path(), &["tables", "drop", "--sink", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = sparkify(dir.path(), &["tables", "create", "--sink", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(pg_count(&url, "ft_songplays"), 0);
}

/// DuckDB's dry run prints the steps a load walks: the steps a load logs, in order, are the
/// statements its dry run printed.
#[test]
fn a_duckdb_load_walks_the_steps_its_dry_run_printed() {
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures/sparkify");
    let (songs, events) = (fx.join("song_data"), fx.join("log_data"));
    let args = |extra: &'static str| -> Vec<&str> {
        let mut out = vec![
            "etl",
            "--songs",
            songs.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--sink",
            "duckdb:dw.duckdb",
            "--check",
        ];
        out.extend(Some(extra).filter(|e| !e.is_empty()));
        out
    };
    let plan = sparkify(dir.path(), &args("--dry-run"));
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    let load = sparkify_env(
        dir.path(),
        &args(""),
        &[("RUST_LOG", "sparkify_sink_duckdb=debug".to_owned())],
    );
    assert_eq!(load.status.code(), Some(0), "{}", text(&load));
    let log = String::from_utf8_lossy(&load.stderr);
    let walked: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once(" running step=").map(|(_, step)| step))
        .collect();
    // Every table dropped and created, the appends, the reset, the count, the keys, the
    // checks and the run's row.
    assert!(walked.len() > 30, "{walked:#?}");
    let mut at = plan.find("BEGIN;").expect("BEGIN first");
    for step in &walked {
        let found = plan[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step} walked but not in the dry run after {at}:\n{plan}"));
        at += found + step.len();
    }
    assert!(
        plan[at..].trim_end().ends_with("COMMIT;"),
        "{}",
        &plan[at..]
    );
    for step in [
        "-- INSERT INTO staging_events SELECT * FROM sparkify_stream(?)",
        "-- INSERT INTO ft_songplays",
        "RESET memory_limit",
        "-- fails the load unless each count equals the run's:",
        "-- check unique_key:dm_users",
        "ALTER TABLE dm_users ADD PRIMARY KEY",
    ] {
        assert!(
            walked.iter().any(|w| w.starts_with(step)),
            "{step} not walked: {walked:#?}"
        );
    }
    assert_eq!(count(&dir.path().join("dw.duckdb"), "ft_songplays"), 333);
}

#[test]
fn dry_run_prints_every_statement_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures/sparkify");
    let out = sparkify(
        dir.path(),
        &[
            "etl",
            "--songs",
            fx.join("song_data").to_str().unwrap(),
            "--events",
            fx.join("log_data").to_str().unwrap(),
            "--sink",
            "postgres://nobody@127.0.0.1:1/nowhere",
            "--dry-run",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let order = [
        "BEGIN;",
        "CREATE TABLE staging_events",
        "COPY staging_events (",
        "INSERT INTO ft_songplays",
        "COPY load_errors (",
        "COMMIT;",
    ];
    let mut at = 0;
    for s in order {
        let found = stdout[at..]
            .find(s)
            .unwrap_or_else(|| panic!("{s} missing or out of order:\n{stdout}"));
        at += found;
    }

    let config = dir.path().join("sparkify.toml");
    std::fs::write(
        &config,
        "[redshift]\nhost = \"example.redshift.amazonaws.com\"\ndatabase = \"dev\"\nuser = \"awsuser\"\npassword = \"hunter2\"\n\
         [s3]\nevents = \"s3://udacity-dend/log_data\"\nsongs = \"s3://udacity-dend/song_data\"\n\
         jsonpaths = \"s3://udacity-dend/log_json_path.json\"\nregion = \"us-west-2\"\n\
         [iam]\nrole_arn = \"arn:aws:iam::123456789012:role/dwh'Role\"\n",
    )
    .unwrap();
    let out = sparkify(dir.path(), &["etl", "--sink", "redshift", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("COPY staging_events (artist, auth, firstName,"),
        "{stdout}"
    );
    assert!(stdout.contains("userAgent, userId) FROM 's3://udacity-dend/log_data'\nIAM_ROLE 'arn:aws:iam::123456789012:role/dwh''Role'"), "{stdout}");
    assert!(
        stdout.contains("DISTSTYLE KEY DISTKEY (song_id)"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"));
    let out = sparkify(
        dir.path(),
        &["tables", "create", "--sink", "redshift", "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("songplay_id BIGINT IDENTITY(0,1) NOT NULL")
    );
}

#[test]
fn passwords_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures/sparkify");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://sparkify:hunter2@127.0.0.1:{port}/db");
    let out = Command::new(env!("CARGO_BIN_EXE_sparkify"))
        .args([
            "etl",
            "--songs",
            fx.join("song_data/A/A/A").to_str().unwrap(),
            "--events",
            fx.join("log_data").to_str().unwrap(),
            "--sink",
            &url,
        ])
        .env("PGPASSWORD", "s3cr3t-env")
        .env("RUST_LOG", "trace")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    cli::assert_said_once(&String::from_utf8_lossy(&out.stderr));
    let all = text(&out);
    assert!(
        all.contains(&format!("sparkify@127.0.0.1:{port}/db")),
        "{all}"
    );
    assert!(
        !all.contains("hunter2") && !all.contains("s3cr3t-env"),
        "{all}"
    );
}

/// The real fixtures from disk into `db`.
fn local_run(dir: &Path, db: &Path) {
    let fx = repo().join("fixtures/sparkify");
    let out = sparkify(
        dir,
        &[
            "etl",
            "--songs",
            fx.join("song_data").to_str().unwrap(),
            "--events",
            fx.join("log_data").to_str().unwrap(),
            "--sink",
            &format!("duckdb:{}", db.display()),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn s3_input_gives_the_same_tables_as_the_local_run() {
    let moto = moto::Moto::shared();
    let fixtures = moto.fixtures();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local.duckdb");
    local_run(dir.path(), &local);
    let remote = dir.path().join("s3.duckdb");
    let json = dir.path().join("summary.json");
    let out = sparkify_env(
        dir.path(),
        &[
            "etl",
            "--songs",
            &format!("s3://{}/song_data", fixtures),
            "--events",
            &format!("s3://{}/log_data/", fixtures),
            "--sink",
            &format!("duckdb:{}", remote.display()),
            "--s3-concurrency",
            "16",
            "--summary-json",
            json.to_str().unwrap(),
        ],
        &moto.env(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(dump(&remote), dump(&local));
    assert_eq!(count(&remote, "ft_songplays"), 333);
    assert_eq!(count(&remote, "dm_songs"), 14896);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--songs: listed 14896 objects"), "{stderr}");
    assert_summary_valid(&json);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(summary["s3"]["objects_listed"], 14926);
    assert_eq!(summary["s3"]["objects_fetched"], 14926);
    assert_eq!(summary["s3"]["bytes_fetched"], 3716227 + 3755598);
    assert_eq!(summary["files_read"], 14926);
}

#[test]
fn a_large_s3_object_comes_in_ranges_and_gives_the_tables_of_the_file() {
    let moto = moto::Moto::shared();
    let bucket = moto.bucket("big-object");
    let s3 = moto.s3();
    let dir = tempfile::tempdir().unwrap();
    // The real logs five times over in one file: 18.8 MB, read from S3 in three 8 MiB ranges.
    let mut logs: Vec<_> = std::fs::read_dir(repo().join("fixtures/sparkify/log_data/2018/11"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    logs.sort();
    assert_eq!(logs.len(), 30);
    let mut big = Vec::new();
    for _ in 0..5 {
        for log in &logs {
            big.extend(std::fs::read(log).unwrap());
        }
    }
    assert!(big.len() > 16 << 20, "{}", big.len());
    let local = dir.path().join("big");
    std::fs::create_dir(&local).unwrap();
    std::fs::write(local.join("events.json"), &big).unwrap();
    let url = sparkify_s3::S3Url::parse(&format!("s3://{bucket}/big/events.json")).unwrap();
    s3.put(&url, big.clone()).unwrap();
    let songs = repo().join("fixtures/sparkify/song_data");
    let load = |events: &str, tag: &str| -> (std::path::PathBuf, serde_json::Value) {
        let db = dir.path().join(format!("{tag}.duckdb"));
        let json = dir.path().join(format!("{tag}.json"));
        let out = sparkify_env(
            dir.path(),
            &etl_args(
                &songs,
                Path::new(events),
                &format!("duckdb:{}", db.display()),
                &["--summary-json", json.to_str().unwrap()],
            ),
            &moto.env(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        (
            db,
            serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap(),
        )
    };
    let (from_s3, summary) = load(&format!("s3://{bucket}/big/"), "s3");
    let (from_disk, _) = load(local.to_str().unwrap(), "disk");
    assert_eq!(dump(&from_s3), dump(&from_disk));
    assert_eq!(count(&from_s3, "staging_events"), 5 * 8056);
    assert_eq!(summary["s3"]["bytes_fetched"], big.len());
}

#[test]
fn rejects_from_s3_name_the_key_and_match_the_local_ones() {
    let moto = moto::Moto::shared();
    let bucket = moto.bucket("bad-input");
    let s3 = moto.s3();
    let bad = repo().join("fixtures/bad");
    for name in [
        "not_json.json",
        "wrong_type.json",
        "gzipped.json.gz",
        "README.txt",
    ] {
        let url = sparkify_s3::S3Url::parse(&format!("s3://{bucket}/events/{name}")).unwrap();
        s3.put(&url, std::fs::read(bad.join(name)).unwrap())
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let songs = repo().join("fixtures/sparkify/song_data");
    let run = |events: &str, tag: &str| -> serde_json::Value {
        let json = dir.path().join(format!("{tag}.json"));
        let out = sparkify_env(
            dir.path(),
            &[
                "etl",
                "--songs",
                songs.to_str().unwrap(),
                "--events",
                events,
                "--sink",
                &format!(
                    "duckdb:{}",
                    dir.path().join(format!("{tag}.duckdb")).display()
                ),
                "--max-errors",
                "100",
                "--summary-json",
                json.to_str().unwrap(),
            ],
            &moto.env(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
    };
    let remote = run(&format!("s3://{bucket}/events"), "s3");
    let local = local_of(&bad, dir.path());
    let remote_rejects = remote["reject_details"].as_array().unwrap();
    assert!(!remote_rejects.is_empty());
    for r in remote_rejects {
        let source = r["source"].as_str().unwrap();
        assert!(
            source.starts_with(&format!("s3://{bucket}/events/")),
            "{source}"
        );
    }
    // The same rejects (file name, line, field, reason) as the same files from disk.
    let strip = |v: &serde_json::Value| -> Vec<(String, u64, String, String)> {
        v["reject_details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let source = r["source"].as_str().unwrap();
                let name = source.rsplit('/').next().unwrap().to_owned();
                (
                    name,
                    r["line"].as_u64().unwrap(),
                    r["column"].to_string(),
                    r["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&remote), strip(&local));
    assert_eq!(remote["rows"], local["rows"]);
    assert_eq!(
        remote["s3"]["objects_listed"], 3,
        "README.txt is not JSON by name"
    );
    assert_eq!(remote["files_skipped"], 1);
}

/// The summary of the three bad files read from disk, in name order.
fn local_of(bad: &Path, dir: &Path) -> serde_json::Value {
    let json = dir.join("local-ordered.json");
    let songs = repo().join("fixtures/sparkify/song_data");
    let mut args = vec![
        "etl".to_owned(),
        "--songs".into(),
        songs.display().to_string(),
        "--events".into(),
    ];
    for n in ["gzipped.json.gz", "not_json.json", "wrong_type.json"] {
        args.push(bad.join(n).display().to_string());
    }
    args.extend([
        "--sink".into(),
        format!("duckdb:{}", dir.join("ordered.duckdb").display()),
        "--max-errors".into(),
        "100".into(),
        "--summary-json".into(),
        json.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sparkify(dir, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[test]
fn s3_faults_exit_4_name_the_place_and_commit_nothing() {
    let moto = moto::Moto::shared();
    let fixtures = moto.fixtures();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kept.duckdb");
    local_run(dir.path(), &db);
    let before = dump(&db);
    let sink = format!("duckdb:{}", db.display());
    let songs = format!("s3://{}/song_data", fixtures);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut refused = moto.env();
    refused[0].1 = format!("http://127.0.0.1:{closed}");
    for (events, env, expect) in [
        (
            "s3://no-such-bucket/log_data".to_owned(),
            moto.env(),
            "bucket \"no-such-bucket\" does not exist".to_owned(),
        ),
        (
            format!("s3://{}/no_such_prefix/", fixtures),
            moto.env(),
            format!("no objects under s3://{}/no_such_prefix/", fixtures),
        ),
        (
            format!("s3://{}/log_data", fixtures),
            refused,
            format!("listing s3://{}/song_data failed", fixtures),
        ),
    ] {
        let out = sparkify_env(
            dir.path(),
            &[
                "etl", "--songs", &songs, "--events", &events, "--sink", &sink,
            ],
            &env,
        );
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&expect), "{expect}:\n{}", text(&out));
        assert_eq!(dump(&db), before, "nothing was committed");
    }
}

#[test]
fn parquet_sink_from_s3_to_a_folder_and_to_s3() {
    let moto = moto::Moto::shared();
    let fixtures = moto.fixtures();
    let bucket = moto.bucket("lake-out");
    let dir = tempfile::tempdir().unwrap();
    // One song folder (a key prefix, not a whole "folder"): dm_songs makes a partition per
    // (year, artist), and thousands of tiny objects would only time moto.
    let songs = format!("s3://{}/song_data/A/A/A", fixtures);
    let events = format!("s3://{}/log_data", fixtures);
    for sink in [
        format!("parquet:{}", dir.path().join("lake").display()),
        format!("parquet:s3://{bucket}/lake"),
    ] {
        let out = sparkify_env(
            dir.path(),
            &[
                "etl",
                "--songs",
                &songs,
                "--events",
                &events,
                "--sink",
                &sink,
                "--with-staging",
                "--compression",
                "snappy",
                "--songplays",
                "all",
            ],
            &moto.env(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let lake = dir.path().join("lake");
    assert!(lake.join("_SUCCESS").is_file());
    assert!(
        lake.join("ft_songplays/year=2018/month=11/part-00000.parquet")
            .is_file()
    );
    assert!(lake.join("staging_events/part-00000.parquet").is_file());
    let s3 = moto.s3();
    let lake_url = sparkify_s3::S3Url::parse(&format!("s3://{bucket}/lake/")).unwrap();
    let keys: Vec<String> = s3
        .list(&lake_url)
        .unwrap()
        .into_iter()
        .map(|o| o.url.key)
        .collect();
    assert!(keys.contains(&"lake/_SUCCESS".to_owned()));
    assert!(keys.contains(&"lake/ft_songplays/year=2018/month=11/part-00000.parquet".to_owned()));
    // The same files, byte for byte, as the folder.
    let mut local = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(format!("lake/{}", p.strip_prefix(root).unwrap().display()));
            }
        }
    }
    walk(&lake, &lake, &mut local);
    local.sort();
    let mut remote = keys.clone();
    remote.sort();
    assert_eq!(remote, local);
    let part = "ft_songplays/year=2018/month=11/part-00000.parquet";
    assert_eq!(
        s3.get(&lake_url.join(part)).unwrap(),
        std::fs::read(lake.join(part)).unwrap()
    );
}

#[test]
fn redshift_parquet_staging_dry_run_needs_no_json_settings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sparkify.toml"),
        "[redshift]\nstaging = \"parquet\"\n[s3]\nstaging_prefix = \"s3://stage-bucket/sparkify\"\n\
         [iam]\nrole_arn = \"arn:aws:iam::123456789012:role/dwhRole\"\n",
    )
    .unwrap();
    let out = sparkify(dir.path(), &["etl", "--sink", "redshift", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "COPY staging_events FROM 's3://stage-bucket/sparkify/load-<run>/staging_events.manifest'\n\
             IAM_ROLE 'arn:aws:iam::123456789012:role/dwhRole'\nFORMAT AS PARQUET\nMANIFEST"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("REGION"), "{stdout}");
}

#[test]
fn redshift_ddl_needs_no_configuration_and_missing_settings_are_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for action in ["create", "drop"] {
        let out = sparkify(
            dir.path(),
            &["tables", action, "--sink", "redshift", "--dry-run"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("DROP TABLE IF EXISTS ft_songplays;"),
            "{stdout}"
        );
        assert_eq!(
            stdout.contains("songplay_id BIGINT IDENTITY(0,1) NOT NULL"),
            action == "create",
            "{stdout}"
        );
    }

    // A load's plan does need COPY's settings: every missing one is named in one message.
    let out = sparkify(dir.path(), &["etl", "--sink", "redshift", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for setting in [
        "[s3] events",
        "[s3] songs",
        "[s3] jsonpaths",
        "[s3] region",
        "[iam] role_arn",
    ] {
        assert!(stderr.contains(setting), "{setting} not named: {stderr}");
    }
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // Connecting needs the cluster's endpoint: named at once too, before anything is read.
    std::fs::write(
        dir.path().join("sparkify.toml"),
        "[redshift]\ncopy_from = \"parquet\"\n[s3]\nupload_prefix = \"s3://b/stage\"\n\
         [iam]\nrole_arn = \"arn:aws:iam::1:role/r\"\n",
    )
    .unwrap();
    let out = sparkify(dir.path(), &["tables", "create", "--sink", "redshift"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for setting in ["[redshift] host", "[redshift] database", "[redshift] user"] {
        assert!(stderr.contains(setting), "{setting} not named: {stderr}");
    }
}

/// `sparkify` with `args`, which must succeed; its stdout.
fn stdout_of(dir: &Path, args: &[&str]) -> String {
    let out = sparkify(dir, args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn analytics_give_the_same_answers_on_every_sink() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures/sparkify");
    let (songs, events) = (fx.join("song_data"), fx.join("log_data"));
    let url = server.url();
    let sinks = [
        ("duckdb:memory.duckdb", vec![]),
        ("duckdb:sql.duckdb", vec!["--transform", "sql"]),
        (url.as_str(), vec![]),
    ];
    let mut json = Vec::new();
    for (sink, extra) in &sinks {
        let mut args = vec![
            "etl",
            "--songs",
            songs.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--sink",
            sink,
        ];
        args.extend(extra);
        stdout_of(dir.path(), &args);
        json.push(stdout_of(
            dir.path(),
            &["analytics", "--sink", sink, "--format", "json"],
        ));
    }
    assert_eq!(json[0], json[1], "DuckDB: memory and SQL transforms differ");
    assert_eq!(json[0], json[2], "DuckDB and PostgreSQL differ");

    let doc: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
    let top = &doc["top_songs"][0];
    assert_eq!(top["title"], "You're The One");
    assert_eq!(top["artist"], "Dwight Yoakam");
    assert_eq!(top["plays"], 37);
    assert_eq!(doc["top_songs"].as_array().unwrap().len(), 10);
    let users = doc["users_by_level"].as_array().unwrap();
    let count = |level: &str| {
        users
            .iter()
            .find(|u| u["level"] == level)
            .map(|u| u["users"].as_u64().unwrap())
            .unwrap()
    };
    assert_eq!(count("free") + count("paid"), 97);
    let ratio = &doc["free_vs_paid"][0];
    assert_eq!(
        (ratio["free"].as_u64(), ratio["paid"].as_u64()),
        (Some(count("free")), Some(count("paid")))
    );
    let expected = format!("{:.2}", count("free") as f64 / count("paid") as f64);
    assert_eq!(ratio["ratio"].to_string(), expected);
    let sum = |key: &str| -> u64 {
        doc[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["plays"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("plays_by_weekday"), 333);
    assert_eq!(sum("plays_by_hour"), 333);
    assert_eq!(doc["plays_by_hour"].as_array().unwrap().len(), 24);
    // Busiest weekday first, ties by weekday.
    let weekdays: Vec<(u64, u64)> = doc["plays_by_weekday"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["plays"].as_u64().unwrap(), r["weekday"].as_u64().unwrap()))
        .collect();
    let mut sorted = weekdays.clone();
    sorted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert_eq!(weekdays, sorted);

    insta::assert_snapshot!("analytics_json", json[0]);
    insta::assert_snapshot!(
        "analytics_table",
        stdout_of(dir.path(), &["analytics", "--sink", "duckdb:memory.duckdb"])
    );
    insta::assert_snapshot!(
        "analytics_csv",
        stdout_of(
            dir.path(),
            &[
                "analytics",
                "--sink",
                "duckdb:memory.duckdb",
                "--format",
                "csv"
            ]
        )
    );

    // `sql` on either database, and a statement the database refuses: its message, exit 4.
    for sink in ["duckdb:memory.duckdb", url.as_str()] {
        let csv = stdout_of(
            dir.path(),
            &[
                "sql",
                "SELECT level, count(*) AS users FROM dm_users GROUP BY level ORDER BY level",
                "--sink",
                sink,
                "--format",
                "csv",
            ],
        );
        assert_eq!(
            csv,
            format!(
                "level,users\nfree,{}\npaid,{}\n",
                count("free"),
                count("paid")
            )
        );
        let out = sparkify(dir.path(), &["sql", "SELEC 1", "--sink", sink]);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(stderr.contains("syntax error"), "{stderr}");
    }
}

/// Runs `sql` on a DuckDB file with DuckDB's own Python package.
fn duckdb_py(db: &Path, sql: &str) {
    let script = "import duckdb, sys\n\
        c = duckdb.connect(sys.argv[1])\n\
        c.execute(sys.argv[2])\n\
        c.close()\n";
    let py = Command::new(std::env::var("SPARKIFY_PYTHON").unwrap_or_else(|_| "python3".into()))
        .args(["-c", script, db.to_str().unwrap(), sql])
        .output()
        .expect("python3 runs");
    assert!(py.status.success(), "{sql}\n{}", text(&py));
}

#[test]
fn verify_agrees_across_every_sink_and_names_each_tampered_row() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures/sparkify");
    let generated = dir.path().join("gen");
    stdout_of(
        dir.path(),
        &[
            "gen",
            "--out",
            generated.to_str().unwrap(),
            "--songs",
            "300",
            "--days",
            "3",
            "--users",
            "30",
            "--match-fraction",
            "0.3",
        ],
    );
    let url = server.url();
    for data in [fx.as_path(), generated.as_path()] {
        let (songs, events) = (data.join("song_data"), data.join("log_data"));
        let inputs = [
            "--songs",
            songs.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ];
        for (sink, extra) in [
            ("duckdb:memory.duckdb", None),
            ("duckdb:sql.duckdb", Some("--transform=sql")),
            (url.as_str(), None),
            ("parquet:lake", Some("--with-staging-tables")),
            ("parquet:star-only", None),
        ] {
            let mut args = vec!["etl", "--sink", sink];
            args.extend(inputs);
            args.extend(extra);
            stdout_of(dir.path(), &args);
        }
        let mut args = vec!["verify", "--source"];
        args.extend(inputs);
        for sink in [
            "duckdb:memory.duckdb",
            "duckdb:sql.duckdb",
            &url,
            "parquet:lake",
            "parquet:star-only",
        ] {
            args.extend(["--sink", sink]);
        }
        let out = sparkify(dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(!table.contains('≠'), "{table}");
        // The star-only lake was written without staging tables: not compared, and said so.
        assert_eq!(table.matches("not written").count(), 2, "{table}");
        if data == fx.as_path() {
            assert!(
                table.contains("333 rows") && table.contains("8056 rows"),
                "{table}"
            );
        }
    }

    // Tampered through each database's own client, one change at a time, each undone after.
    let verify = |sink: &str| {
        sparkify(
            dir.path(),
            &["verify", "--sink", "parquet:lake", "--sink", sink],
        )
    };
    let differs = |sink: &str, table: &str, line: &str| {
        let out = verify(sink);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("{table} in ")),
            "{table}: {}",
            text(&out)
        );
        assert!(stdout.contains(line), "{line}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("differ in {table}")), "{stderr}");
    };
    let first = |sql: &str| server.psql(sql).trim().to_owned();
    let user = first("SELECT min(user_id) FROM dm_users");
    let row = first(&format!(
        "SELECT first_name FROM dm_users WHERE user_id = {user}"
    ));
    server.psql(&format!("DELETE FROM dm_users WHERE user_id = {user}"));
    differs(&url, "dm_users", &format!("1 missing: user_id={user}"));
    server.psql(&format!(
        "INSERT INTO dm_users SELECT user_id, first_name, last_name, gender, level FROM \
         (SELECT DISTINCT ON (\"userid\") \"userid\" AS user_id, firstname AS first_name, \
         lastname AS last_name, gender, level FROM staging_events WHERE \"userid\" = {user} \
         ORDER BY \"userid\", ts DESC) AS latest"
    ));
    assert_eq!(
        first(&format!(
            "SELECT first_name FROM dm_users WHERE user_id = {user}"
        )),
        row
    );
    assert_eq!(verify(&url).status.code(), Some(0), "the row put back");

    let song = first("SELECT min(song_id) FROM dm_songs");
    server.psql(&format!(
        "UPDATE dm_songs SET duration = duration + 0.000001 WHERE song_id = '{song}'"
    ));
    differs(&url, "dm_songs", &format!("1 changed: song_id={song}"));
    server.psql(&format!(
        "UPDATE dm_songs SET duration = duration - 0.000001 WHERE song_id = '{song}'"
    ));

    let db = dir.path().join("sql.duckdb");
    duckdb_py(
        &db,
        "INSERT INTO ft_songplays SELECT songplay_id + 1000000, start_time, user_id, level, \
         song_id, artist_id, session_id + 1000000, item_in_session, location, user_agent \
         FROM ft_songplays ORDER BY session_id, item_in_session LIMIT 1",
    );
    differs(
        "duckdb:sql.duckdb",
        "ft_songplays",
        "1 extra: session_id=100",
    );
    duckdb_py(&db, "DELETE FROM ft_songplays WHERE session_id >= 1000000");
    duckdb_py(&db, "UPDATE staging_events SET song = NULL WHERE song = ''");
    duckdb_py(
        &db,
        "UPDATE staging_events SET song = '' WHERE rowid = (SELECT min(rowid) FROM staging_events WHERE song IS NULL)",
    );
    let out = verify("duckdb:sql.duckdb");
    assert_eq!(
        out.status.code(),
        Some(1),
        "NULL and '' are not the same: {}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("staging_events in "));
}

#[test]
fn verify_compares_doubles_and_timestamps_exactly_across_engines() {
    // Values DuckDB and PostgreSQL print differently (`1.0` and `1`; `1500000000000000.0`
    // and `1.5e+15`; `nan` and `NaN`; `-0.0` and `-0`), and timestamps to the microsecond.
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.duckdb");
    let url = server.url();
    for sink in ["duckdb:t.duckdb", url.as_str()] {
        stdout_of(dir.path(), &["tables", "create", "--sink", sink]);
    }
    let doubles = [
        "1.0",
        "100",
        "0.1",
        "0.30000000000000004",
        "1e15",
        "1.5e15",
        "1234567890123456.7",
        "1e16",
        "1e22",
        "0.0001",
        "1e-5",
        "4.35e-10",
        "-0.0",
        "5e-324",
        "1.7976931348623157e308",
        "NaN",
        "Infinity",
        "-Infinity",
        "-84.39111",
    ];
    let rows: Vec<String> = doubles
        .iter()
        .enumerate()
        .map(|(i, d)| format!("('AR{i:02}', 'n', NULL, CAST('{d}' AS DOUBLE PRECISION), {i}.5)"))
        .collect();
    let insert = format!("INSERT INTO dm_artists VALUES {}", rows.join(", "));
    let times = "INSERT INTO dm_time VALUES (TIMESTAMP '2018-11-01 21:01:46.796123', 21, 1, 44, 11, 2018, 4), \
                 (TIMESTAMP '1970-01-01 00:00:00', 0, 1, 1, 1, 1970, 4)";
    server.psql(&insert);
    server.psql(times);
    duckdb_py(&db, &insert.replace("DOUBLE PRECISION", "DOUBLE"));
    duckdb_py(&db, times);
    let out = sparkify(
        dir.path(),
        &["verify", "--sink", "duckdb:t.duckdb", "--sink", &url],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("19 rows"),
        "{}",
        text(&out)
    );
    // One microsecond, or the last bit of a double, is a difference.
    server.psql(
        "UPDATE dm_time SET start_time = start_time + INTERVAL '1 microsecond' WHERE year = 2018",
    );
    server.psql("UPDATE dm_artists SET latitude = 0.3000000000000001 WHERE artist_id = 'AR03'");
    let out = sparkify(
        dir.path(),
        &["verify", "--sink", "duckdb:t.duckdb", "--sink", &url],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 changed: artist_id=AR03"), "{stdout}");
    assert!(
        stdout.contains("start_time=2018-11-01T21:01:46.796123Z")
            && stdout.contains("start_time=2018-11-01T21:01:46.796124Z"),
        "{stdout}"
    );
}

#[test]
fn a_load_that_loses_rows_in_the_sink_fails_reconciliation_and_commits_nothing() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures/sparkify");
    let (songs, events) = (fx.join("song_data"), fx.join("log_data"));
    let url = server.url();
    let etl = || {
        sparkify(
            dir.path(),
            &[
                "etl",
                "--songs",
                songs.to_str().unwrap(),
                "--events",
                events.to_str().unwrap(),
                "--sink",
                &url,
            ],
        )
    };
    let out = etl();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A fault inside the database, after COPY has counted its rows: the transforms' insert
    // into ft_songplays deletes one session from staging_events (a statement trigger, added
    // to every ft_songplays table created from now on).
    server.psql(
        "CREATE FUNCTION lose_session() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN DELETE FROM staging_events WHERE sessionid = 23; RETURN NULL; END $$; \
         CREATE FUNCTION add_fault() RETURNS event_trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() \
           WHERE object_identity = 'public.ft_songplays') THEN \
           CREATE TRIGGER lose AFTER INSERT ON ft_songplays FOR EACH STATEMENT \
           EXECUTE FUNCTION lose_session(); END IF; END $$; \
         CREATE EVENT TRIGGER fault ON ddl_command_end WHEN TAG IN ('CREATE TABLE') \
           EXECUTE FUNCTION add_fault();",
    );
    let out = etl();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reconciliation: staging_events holds")
            && stderr.contains("but the run staged 8056; nothing was committed"),
        "{stderr}"
    );
    assert_eq!(
        pg_count(&url, "staging_events"),
        8056,
        "the previous load stays"
    );
}

/// Chromium, headless, on `page`, with `args` (`--dump-dom`, `--screenshot=…`); its stdout.
fn chromium(page: &Path, args: &[&str]) -> String {
    let exe = std::env::var("SPARKIFY_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1200,3400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (scripts/test.sh installs the Debian package)");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn analytics_html_report_renders_in_chromium_with_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures");
    let songs = fx.join("sparkify/song_data");
    let (events, bad) = (fx.join("sparkify/log_data"), fx.join("bad"));
    stdout_of(
        dir.path(),
        &[
            "etl",
            "--songs",
            songs.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            bad.to_str().unwrap(),
            "--sink",
            "duckdb:out.duckdb",
            "--max-errors",
            "100",
        ],
    );
    let json = stdout_of(
        dir.path(),
        &[
            "analytics",
            "--sink",
            "duckdb:out.duckdb",
            "--format",
            "json",
        ],
    );
    let answers: serde_json::Value = serde_json::from_str(&json).unwrap();
    let out = sparkify(
        dir.path(),
        &[
            "analytics",
            "--sink",
            "duckdb:out.duckdb",
            "--html",
            "report.html",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty(), "the page is written, not printed");
    let page = dir.path().join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("http") && !html.contains("<script"),
        "self-contained"
    );

    let dom = chromium(&page, &["--dump-dom"]);
    let top = &answers["top_songs"][0];
    assert_eq!(top["title"], "You're The One");
    let bar = format!(
        "data-label=\"{} — {}\" data-value=\"{}\"",
        top["title"].as_str().unwrap(),
        top["artist"].as_str().unwrap(),
        top["plays"]
    );
    assert!(dom.contains(&bar), "{bar} not in the DOM");
    assert!(dom.contains("<td>You're The One</td>"), "the table");
    let hours = dom
        .split("data-chart=\"plays_by_hour\"")
        .nth(1)
        .and_then(|s| s.split("</svg>").next())
        .unwrap();
    assert_eq!(hours.matches("<rect class=\"bar\"").count(), 24);
    for row in answers["plays_by_hour"].as_array().unwrap() {
        let bar = format!(
            "data-label=\"{}\" data-value=\"{}\"",
            row["hour"], row["plays"]
        );
        assert!(hours.contains(&bar), "{bar}");
    }
    let ratio = &answers["free_vs_paid"][0];
    assert!(dom.contains(&format!("<td class=\"n\">{}</td>", ratio["ratio"])));
    // The level history's weeks: a bar of upgrades a week, and each week's paid share.
    let changes = dom
        .split("data-chart=\"level_changes_by_week\"")
        .nth(1)
        .unwrap()
        .split("</svg>")
        .next()
        .unwrap();
    for row in answers["level_changes_by_week"].as_array().unwrap() {
        let bar = format!(
            "data-label=\"{} week {}\" data-value=\"{}\"",
            row["year"], row["week"], row["upgrades"]
        );
        assert!(changes.contains(&bar), "{bar}");
    }
    let shares = dom.split("id=\"paid_share_by_week\"").nth(1).unwrap();
    for row in answers["paid_share_by_week"].as_array().unwrap() {
        let cell = format!(
            "<td class=\"n\">{:.2}</td>",
            row["paid_share"].as_f64().unwrap()
        );
        assert!(shares.contains(&cell), "{cell}");
    }
    // The run's row counts and its rejects (the bad fixtures: 11 rejected records).
    let counts = dom.split("id=\"row_counts\"").nth(1).unwrap();
    assert!(counts.contains("<td>dm_time</td>"), "{counts}");
    assert!(dom.contains("11 rejected records."), "the rejects section");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("analytics-report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&page, &[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{}",
        png.len()
    );
}

/// `sparkify etl` of the real fixtures into `sink`, with `extra` flags, as a child process.
fn etl_child(dir: &Path, sink: &str, extra: &[&str]) -> std::process::Child {
    let fx = repo().join("fixtures/sparkify");
    Command::new(env!("CARGO_BIN_EXE_sparkify"))
        .args(["etl", "--songs"])
        .arg(fx.join("song_data"))
        .arg("--events")
        .arg(fx.join("log_data"))
        .args(["--sink", sink])
        .args(extra)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn two_loads_at_once_take_turns_and_leave_one_whole_load() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    // The reference: one clean load.
    let out = etl_child(dir.path(), "duckdb:clean.duckdb", &[])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let clean = dump(&dir.path().join("clean.duckdb"));
    for round in 0..10 {
        for sink in ["duckdb:both.duckdb", url.as_str()] {
            let a = etl_child(dir.path(), sink, &[]);
            let b = etl_child(dir.path(), sink, &[]);
            for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "round {round}, {sink}: {}",
                    text(&out)
                );
            }
        }
        assert_eq!(
            dump(&dir.path().join("both.duckdb")),
            clean,
            "round {round}"
        );
        for (table, rows) in [
            ("staging_events", 8056),
            ("ft_songplays", 333),
            ("dm_users", 97),
        ] {
            assert_eq!(pg_count(&url, table), rows, "round {round}");
        }
    }
}

#[test]
fn a_load_that_waits_too_long_for_another_fails_in_words() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    // PostgreSQL: another session holds sparkify's load lock for 4 s.
    let holder = std::thread::scope(|s| {
        let held = s.spawn(|| {
            server.psql(
                "SELECT pg_advisory_lock(1936747366, hashtext(current_schema())); \
                 SELECT pg_sleep(4)",
            )
        });
        std::thread::sleep(std::time::Duration::from_millis(800));
        let out = etl_child(dir.path(), &url, &["--lock-timeout", "1"])
            .wait_with_output()
            .unwrap();
        held.join().unwrap();
        out
    });
    assert_eq!(holder.status.code(), Some(4), "{}", text(&holder));
    let stderr = String::from_utf8_lossy(&holder.stderr);
    cli::assert_said_once(&stderr);
    // Said at once, before the wait: who holds the lock, and since when.
    let said = stderr
        .lines()
        .find(|l| l.starts_with("waiting for postgres://"))
        .unwrap_or_else(|| panic!("no word of the wait: {stderr}"));
    assert!(
        said.contains(": another load holds its lock (PID ")
            && said.contains(", application psql) since 20")
            && said.contains(" UTC; waiting up to 1 s (--lock-timeout)"),
        "{said}"
    );
    assert!(
        stderr.contains("another load into this database holds sparkify's load lock (PID")
            && stderr.contains("application psql")
            && stderr.contains("gave up after 1 s (--lock-timeout)"),
        "{stderr}"
    );
    // DuckDB: another process (DuckDB's Python package) has the file open for 4 s.
    let db = dir.path().join("held.duckdb");
    let mut py = hold_duckdb(&db, 4);
    let sink = format!("duckdb:{}", db.display());
    let out = etl_child(dir.path(), &sink, &["--lock-timeout", "1"])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    cli::assert_said_once(&stderr);
    assert!(
        stderr.contains("is in use by another process (PID") && stderr.contains("waited 1 s"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("IO Error"),
        "DuckDB's raw text is not the message: {stderr}"
    );
    // With time enough, the load waits for the file, then loads.
    let out = etl_child(dir.path(), &sink, &["--lock-timeout", "30"])
        .wait_with_output()
        .unwrap();
    py.wait().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count(&db, "ft_songplays"), 333);
}

#[test]
fn a_stalled_s3_endpoint_fails_in_time_naming_the_key_and_commits_nothing() {
    use sparkify_test_support::stall::{Stall, StallProxy};
    let moto = moto::Moto::shared();
    let fixtures = moto.fixtures();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.duckdb");
    local_run(dir.path(), &db);
    let before = dump(&db);
    // Object GETs (the SDK marks them `x-id=GetObject`) stall; listings pass.
    let proxy = StallProxy::start(&moto.endpoint, "x-id=GetObject");
    let env: Vec<(&str, String)> = moto
        .env()
        .into_iter()
        .map(|(k, v)| match k {
            "AWS_ENDPOINT_URL" => (k, proxy.endpoint.clone()),
            _ => (k, v),
        })
        .collect();
    let events = repo().join("fixtures/sparkify/log_data");
    for (stall, says) in [
        (Stall::Silent, "fetching s3://"),
        (
            Stall::MidBody,
            "the body stalled: no data for 1 s after 10 bytes",
        ),
    ] {
        proxy.set(stall);
        let started = std::time::Instant::now();
        let out = sparkify_env(
            dir.path(),
            &[
                "etl",
                "--songs",
                &format!("s3://{fixtures}/song_data/A/A/"),
                "--events",
                events.to_str().unwrap(),
                "--sink",
                &format!("duckdb:{}", db.display()),
                "--s3-read-timeout",
                "1",
                "--s3-connect-timeout",
                "1",
                "--s3-attempts",
                "2",
            ],
            &env,
        );
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(4), "{stall:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stall:?}: {stderr}");
        assert!(
            stderr.contains(&format!("s3://{fixtures}/song_data/A/A/")) && stderr.contains(".json"),
            "the key is named: {stderr}"
        );
        // Two attempts of a second each, and backoff: nowhere near a hang.
        assert!(took.as_secs() < 60, "{stall:?} took {took:?}");
        assert_eq!(dump(&db), before, "{stall:?}: nothing committed");
    }
    // The same run through the proxy, passing, loads.
    proxy.set(Stall::Pass);
    let out = sparkify_env(
        dir.path(),
        &[
            "etl",
            "--songs",
            &format!("s3://{fixtures}/song_data/A/A/"),
            "--events",
            events.to_str().unwrap(),
            "--sink",
            &format!("duckdb:{}", db.display()),
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Starts a load of one day of events (other tables than the full load's) into `sink` and
/// kills it with SIGKILL when its debug log shows `marker` (`None`: 100 ms after the start,
/// while it reads); whether the load got as far as the end of its sink step (`sink done`,
/// logged after COMMIT returned), from everything it logged.
fn kill_load_at(dir: &Path, sink: &str, marker: Option<&str>) -> bool {
    let fx = repo().join("fixtures/sparkify");
    let (songs, events) = (
        fx.join("song_data"),
        fx.join("log_data/2018/11/2018-11-01-events.json"),
    );
    let args = [
        "etl",
        "--songs",
        songs.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--sink",
        sink,
    ];
    kill_at(dir, &args, marker)
}

/// `sparkify args…` killed with SIGKILL when its debug log shows `marker` (`None`: 100 ms
/// after the start); whether it logged `sink done` (after COMMIT returned) before it died.
fn kill_at(dir: &Path, args: &[&str], marker: Option<&str>) -> bool {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparkify"))
        .args(args)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut done = false;
    match marker {
        None => std::thread::sleep(std::time::Duration::from_millis(100)),
        Some(marker) => {
            for line in lines.by_ref() {
                let line = line.unwrap_or_default();
                done |= line.contains("sink done");
                if line.contains(marker) {
                    break;
                }
            }
        }
    }
    let _ = child.kill();
    for line in lines {
        done |= line.unwrap_or_default().contains("sink done");
    }
    child.wait().unwrap();
    done
}

#[test]
fn a_load_killed_at_any_phase_leaves_the_previous_tables_whole() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let db = dir.path().join("k.duckdb");
    let duck = format!("duckdb:{}", db.display());
    let full = |sink: &str| {
        let out = etl_child(dir.path(), sink, &[]).wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    };
    // What a whole one-day load gives, to tell "the new load, whole" from a mix.
    let day = dir.path().join("day.duckdb");
    assert!(kill_load_at(
        dir.path(),
        &format!("duckdb:{}", day.display()),
        Some("no such line")
    ));
    let one_day = dump(&day);

    full(&duck);
    let good = dump(&db);
    for marker in [None, Some("appended"), Some("keys checked and added")] {
        let killed = kill_load_at(dir.path(), &duck, marker);
        let now = dump(&db);
        // Killed before COMMIT: the previous load. Killed as it commits (or too late): the
        // previous load or the new one, whole. Never a mix.
        let before_commit = marker != Some("keys checked and added");
        if killed && before_commit {
            assert_eq!(now, good, "DuckDB, killed at {marker:?}");
        } else {
            assert!(
                now == good || now == one_day,
                "DuckDB, killed at {marker:?}"
            );
        }
        full(&duck);
        assert_eq!(dump(&db), good, "DuckDB: the next run after {marker:?}");
    }

    full(&url);
    let counts = |url: &str| -> Vec<i64> {
        [
            "staging_events",
            "staging_songs",
            "ft_songplays",
            "dm_users",
            "dm_time",
            "load_errors",
        ]
        .iter()
        .map(|t| pg_count(url, t))
        .collect()
    };
    let good = counts(&url);
    let new_whole: Vec<i64> = [
        "staging_events",
        "staging_songs",
        "ft_songplays",
        "dm_users",
        "dm_time",
        "load_errors",
    ]
    .iter()
    .map(|t| count(&day, t))
    .collect();
    for marker in [
        None,
        Some("COPY staging_events"),
        Some("INSERT INTO dm_users"),
        Some("COMMIT"),
    ] {
        let killed = kill_load_at(dir.path(), &url, marker);
        let now = counts(&url);
        if killed && marker != Some("COMMIT") {
            assert_eq!(now, good, "PostgreSQL, killed at {marker:?}");
        } else {
            assert!(
                now == good || now == new_whole,
                "PostgreSQL, killed at {marker:?}: {now:?}"
            );
        }
        full(&url);
        assert_eq!(
            counts(&url),
            good,
            "PostgreSQL: the next run after {marker:?}"
        );
    }
}

/// `etl --incremental` of `songs` and `events` into `sink`, with `extra` flags: its summary.
fn incremental(
    dir: &Path,
    sink: &str,
    songs: &Path,
    events: &Path,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec!["--incremental"];
    args.extend_from_slice(extra);
    etl_summary(dir, sink, songs, events, &args)
}

/// `etl` of `songs` and `events` into `sink`, with `extra` flags, which must succeed: its
/// summary, with its stderr under `stderr`.
fn etl_summary(
    dir: &Path,
    sink: &str,
    songs: &Path,
    events: &Path,
    extra: &[&str],
) -> serde_json::Value {
    let json = dir.join("summary.json");
    let mut args = etl_args(
        songs,
        events,
        sink,
        &["--summary-json", json.to_str().unwrap()],
    );
    args.extend_from_slice(extra);
    let out = sparkify(dir, &args);
    assert_eq!(out.status.code(), Some(0), "{sink}: {}", text(&out));
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    summary["stderr"] = String::from_utf8_lossy(&out.stderr).into_owned().into();
    summary
}

/// `verify` of `a` against `b`: whether every table agrees.
fn agree(dir: &Path, a: &str, b: &str) -> Result<(), String> {
    let out = sparkify(dir, &["verify", "--sink", a, "--sink", b]);
    match out.status.code() {
        Some(0) => Ok(()),
        _ => Err(text(&out)),
    }
}

#[test]
fn incremental_loads_equal_a_full_load_and_replace_a_changed_files_rows() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fx = repo().join("fixtures/sparkify");
    let songs = fx.join("song_data");
    let mut days: Vec<_> = walk(&fx.join("log_data"));
    days.sort();
    assert_eq!(days.len(), 30);
    let url = server.url();
    for (i, sink) in ["duckdb:inc.duckdb".to_owned(), url.clone()]
        .iter()
        .enumerate()
    {
        let logs = d.join(format!("logs{i}"));
        std::fs::create_dir(&logs).unwrap();
        // Three groups of days, one load each.
        for (group, files) in days.chunks(10).enumerate() {
            for f in files {
                std::fs::copy(f, logs.join(f.file_name().unwrap())).unwrap();
            }
            let s = incremental(d, sink, &songs, &logs, &[]);
            let read = s["files_read"].as_u64().unwrap();
            if group == 0 {
                assert_eq!(read, 14_896 + 10, "{s}");
                assert!(
                    s["stderr"]
                        .as_str()
                        .unwrap()
                        .contains("holds no etl_files yet"),
                    "{s}"
                );
            } else {
                assert_eq!(read, 10, "only the new days are parsed: {s}");
                assert_eq!(s["files_already_loaded"], 14_896 + 10 * group as u64, "{s}");
            }
        }
        agrees_with_a_full_load(d, &songs, &logs, sink, &format!("full{i}"));
        let s = incremental(d, sink, &songs, &logs, &[]);
        assert_eq!(
            (&s["files_read"], &s["up_to_date"], &s["committed"]),
            (&0.into(), &true.into(), &false.into()),
            "a fourth run parses nothing: {s}"
        );
        assert_eq!(s["rows"]["staging_events"], 8056, "{s}");

        // One user's level changes in the last day's log.
        let last = logs.join(days[29].file_name().unwrap());
        let log = std::fs::read_to_string(&last).unwrap();
        let final_line: serde_json::Value =
            serde_json::from_str(log.lines().last().unwrap()).unwrap();
        let user = final_line["userId"].as_str().unwrap().to_owned();
        let new = match final_line["level"].as_str().unwrap() {
            "free" => "paid",
            _ => "free",
        };
        let edited = with_level(&log, &user, new);
        std::fs::write(&last, edited.join("\n") + "\n").unwrap();
        let s = incremental(d, sink, &songs, &logs, &[]);
        assert_eq!(s["files_read"], 1, "{s}");
        assert_eq!(
            s["rows"]["staging_events"], 8056,
            "the file's old rows were replaced: {s}"
        );
        let level = stdout_of(
            d,
            &[
                "sql",
                "--sink",
                sink,
                "--format",
                "csv",
                &format!("SELECT level FROM dm_users WHERE user_id = {user}"),
            ],
        );
        assert!(level.contains(new), "user {user} is {new} now: {level}");
        agrees_with_a_full_load(d, &songs, &logs, sink, &format!("edited{i}"));

        // A day that vanished from the input stays until --prune.
        let gone = logs.join(days[0].file_name().unwrap());
        std::fs::remove_file(&gone).unwrap();
        let s = incremental(d, sink, &songs, &logs, &[]);
        assert_eq!(
            (&s["files_vanished"], &s["rows"]["staging_events"]),
            (&1.into(), &8056.into()),
            "{s}"
        );
        assert!(
            s["stderr"]
                .as_str()
                .unwrap()
                .contains("--prune removes them"),
            "{s}"
        );
        let s = incremental(d, sink, &songs, &logs, &["--prune"]);
        assert_eq!(s["committed"], true, "{s}");
        agrees_with_a_full_load(d, &songs, &logs, sink, &format!("pruned{i}"));
        assert!(s["rows"]["staging_events"].as_u64().unwrap() < 8056, "{s}");
    }
}

/// Days added between days already loaded, then a day in the middle changed: each user's
/// history goes on from the run in effect at their first changed event (added or removed),
/// with the later events already held, and every table still equals a full load of the same
/// files (DuckDB and PostgreSQL).
#[test]
fn days_added_or_changed_between_loaded_days_equal_a_full_load() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fx = repo().join("fixtures/sparkify");
    let songs = fx.join("song_data");
    let mut days: Vec<_> = walk(&fx.join("log_data"));
    days.sort();
    let (even, odd): (Vec<_>, Vec<_>) = days.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let url = server.url();
    for (i, sink) in ["duckdb:between.duckdb".to_owned(), url.clone()]
        .iter()
        .enumerate()
    {
        let logs = d.join(format!("between{i}"));
        std::fs::create_dir(&logs).unwrap();
        let add = |files: &[(usize, &std::path::PathBuf)]| {
            for (_, f) in files {
                std::fs::copy(f, logs.join(f.file_name().unwrap())).unwrap();
            }
        };
        add(&even);
        incremental(d, sink, &songs, &logs, &[]);
        // The odd days in three loads, each between days already held.
        for (step, files) in odd.chunks(5).enumerate() {
            add(files);
            let s = incremental(d, sink, &songs, &logs, &[]);
            assert_eq!(s["files_read"], files.len(), "{s}");
            agrees_with_a_full_load(d, &songs, &logs, sink, &format!("between-full{i}-{step}"));
        }
        // A middle day changed: one user's events of that day at the other level than their
        // last before it, so a run starts at their first event of the day; then that event
        // removed, so the user's first removed event comes before their first added one.
        let middle = logs.join(days[15].file_name().unwrap());
        let (user, level) = first_user_with_a_level_before(&middle, &days[..15]);
        let flipped = if level == "free" { "paid" } else { "free" };
        let edited = with_level(&std::fs::read_to_string(&middle).unwrap(), &user, flipped);
        let tag = user_tag(&user);
        let first = edited.iter().position(|l| l.ends_with(&tag)).unwrap();
        let without_first: Vec<&String> = edited
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != first)
            .map(|(_, l)| l)
            .collect();
        for (step, lines) in [
            ("changed", edited.iter().collect::<Vec<_>>()),
            ("its-first-event-removed", without_first),
        ] {
            let text: Vec<&str> = lines.iter().map(|l| l.as_str()).collect();
            std::fs::write(&middle, text.join("\n") + "\n").unwrap();
            let s = incremental(d, sink, &songs, &logs, &[]);
            assert_eq!(s["files_read"], 1, "{s}");
            agrees_with_a_full_load(d, &songs, &logs, sink, &format!("between-{step}{i}"));
        }
        // The last day removed: its users' latest events go with it.
        std::fs::remove_file(logs.join(days[29].file_name().unwrap())).unwrap();
        let s = incremental(d, sink, &songs, &logs, &["--prune"]);
        assert_eq!(s["committed"], true, "{s}");
        agrees_with_a_full_load(d, &songs, &logs, sink, &format!("between-pruned{i}"));
    }
}

/// `sink` against a full load of `songs` and `events` into a new DuckDB file, `NAME.duckdb`
/// (the reference of an incremental load): panics, naming `name`, unless every table agrees.
fn agrees_with_a_full_load(dir: &Path, songs: &Path, events: &Path, sink: &str, name: &str) {
    let reference = format!("duckdb:{name}.duckdb");
    stdout_of(dir, &etl_args(songs, events, &reference, &[]));
    agree(dir, &reference, sink).unwrap_or_else(|e| panic!("{sink} against {name}: {e}"));
}

/// The end of `user`'s lines in a real log (their `userId` is the last field).
fn user_tag(user: &str) -> String {
    format!("\"userId\":\"{user}\"}}")
}

/// `log`'s lines, every event of `user` at `level`.
fn with_level(log: &str, user: &str, level: &str) -> Vec<String> {
    let (tag, to) = (user_tag(user), format!("\"level\":\"{level}\""));
    log.lines()
        .map(|l| match l.ends_with(&tag) {
            true => l
                .replace("\"level\":\"free\"", &to)
                .replace("\"level\":\"paid\"", &to),
            false => l.to_owned(),
        })
        .collect()
}

/// The first user of `day`'s log with an event in `earlier` days: their id and the level of
/// their last event there (by ts).
fn first_user_with_a_level_before(day: &Path, earlier: &[std::path::PathBuf]) -> (String, String) {
    let events = |path: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let before: Vec<serde_json::Value> = earlier.iter().flat_map(|f| events(f)).collect();
    events(day)
        .iter()
        .filter_map(|e| e["userId"].as_str().filter(|u| !u.is_empty()))
        .find_map(|user| {
            let last = before
                .iter()
                .filter(|e| e["userId"] == user && e["level"].is_string())
                .max_by_key(|e| e["ts"].as_i64().unwrap())?;
            Some((user.to_owned(), last["level"].as_str()?.to_owned()))
        })
        .unwrap()
}

#[test]
fn incremental_maintenance_moves_a_plays_song_and_removes_a_user_and_time_no_play_needs() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fx = repo().join("fixtures/sparkify");
    let url = server.url();
    for (i, sink) in ["duckdb:maint.duckdb", url.as_str()]
        .into_iter()
        .enumerate()
    {
        let songs = d.join(format!("songs{i}"));
        let logs = d.join(format!("logs{i}"));
        copy_tree(&fx.join("song_data"), &songs);
        copy_tree(&fx.join("log_data"), &logs);
        let reference =
            |name: &str| agrees_with_a_full_load(d, &songs, &logs, sink, &format!("{name}{i}"));
        incremental(d, sink, &songs, &logs, &[]);
        let ask = |sql: &str| {
            stdout_of(d, &["sql", sql, "--sink", sink, "--format", "csv"])
                .lines()
                .nth(1)
                .unwrap_or_default()
                .to_owned()
        };
        // A matched play: its song, artist and length, its key and its song now.
        let play = ask(
            "SELECT e.song, e.artist, e.length, e.sessionId, e.itemInSession, f.song_id \
             FROM staging_events AS e JOIN ft_songplays AS f \
             ON f.session_id = e.sessionId AND f.item_in_session = e.itemInSession \
             ORDER BY e.ts, e.sessionId, e.itemInSession LIMIT 1",
        );
        let mut reader = csv_fields(&play);
        let (title, artist, length) = (reader.remove(0), reader.remove(0), reader.remove(0));
        let (session, item, before) = (reader.remove(0), reader.remove(0), reader.remove(0));
        let song_of_play = || {
            ask(&format!(
                "SELECT song_id FROM ft_songplays WHERE session_id = {session} \
                 AND item_in_session = {item}"
            ))
        };
        // A new song file of that title and artist, as long as the play: the match moves.
        let closer = songs.join("A/Z/Z/TR0000000000000001.json");
        std::fs::write(
            &closer,
            serde_json::json!({
                "artist_id": "AR0000000000000001", "artist_latitude": null,
                "artist_location": "", "artist_longitude": null, "artist_name": artist,
                "duration": length.parse::<f64>().unwrap(), "num_songs": 1,
                "song_id": "SO0000000000000001", "title": title, "year": 2001
            })
            .to_string(),
        )
        .unwrap();
        let s = incremental(d, sink, &songs, &logs, &[]);
        assert_eq!(s["files_read"], 1, "{s}");
        assert_eq!(
            song_of_play(),
            "SO0000000000000001",
            "{sink}: the play moved"
        );
        assert_eq!(
            ask("SELECT COUNT(*) FROM dm_artists WHERE artist_id = 'AR0000000000000001'"),
            "1"
        );
        reference("moved");
        // The song file gone (--prune): the play is back on its song, the artist gone.
        std::fs::remove_file(&closer).unwrap();
        incremental(d, sink, &songs, &logs, &["--prune"]);
        assert_eq!(song_of_play(), before, "{sink}: the play moved back");
        assert_eq!(
            ask("SELECT COUNT(*) FROM dm_artists WHERE artist_id = 'AR0000000000000001'"),
            "0"
        );
        reference("moved-back");

        // A day with one play of a new user at a new time, then that day removed: the user
        // and the time go with it.
        let day = logs.join("2018/11/2018-12-01-events.json");
        let first = std::fs::read_to_string(logs.join("2018/11/2018-11-05-events.json")).unwrap();
        let mut event: serde_json::Value =
            serde_json::from_str(first.lines().next().unwrap()).unwrap();
        event["userId"] = "9999".into();
        event["sessionId"] = 99_999.into();
        event["ts"] = 1_543_622_400_000_i64.into();
        std::fs::write(&day, format!("{event}\n")).unwrap();
        incremental(d, sink, &songs, &logs, &[]);
        let user = "SELECT COUNT(*) FROM dm_users WHERE user_id = 9999";
        let time =
            "SELECT COUNT(*) FROM dm_time WHERE start_time = TIMESTAMP '2018-12-01 00:00:00'";
        assert_eq!((ask(user), ask(time)), ("1".into(), "1".into()), "{sink}");
        reference("added-user");
        std::fs::remove_file(&day).unwrap();
        incremental(d, sink, &songs, &logs, &["--prune"]);
        assert_eq!((ask(user), ask(time)), ("0".into(), "0".into()), "{sink}");
        reference("removed-user");
        // --rebuild gives the same tables.
        incremental(d, sink, &songs, &logs, &["--rebuild"]);
        std::fs::write(&day, format!("{event}\n")).unwrap();
        incremental(d, sink, &songs, &logs, &["--rebuild"]);
        reference("rebuilt");
    }
}

/// The fields of one CSV line (quoted fields unquoted).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let (mut quoted, mut chars) = (false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

/// `from` copied into `to`, folders and all.
fn copy_tree(from: &Path, to: &Path) {
    for f in walk(from) {
        let target = to.join(f.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&f, &target).unwrap();
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_parquet_load_killed_at_any_phase_leaves_the_previous_lake_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let full = |sink: &str| {
        let out = etl_child(d, sink, &["--with-staging-tables"])
            .wait_with_output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    };
    // A whole one-day lake, to tell "the new load, whole" from a mix.
    assert!(kill_load_at(d, "parquet:day", Some("no such line")));
    full("parquet:good");
    full("parquet:lake");
    for marker in [None, Some("written"), Some("swapping the new output in")] {
        kill_load_at(d, "parquet:lake", marker);
        let as_before = agree(d, "parquet:lake", "parquet:good");
        if marker == Some("swapping the new output in") {
            // Killed as the folders are exchanged: the previous lake or the new one, whole.
            assert!(
                as_before.is_ok() || agree(d, "parquet:lake", "parquet:day").is_ok(),
                "killed at {marker:?}: {as_before:?}"
            );
        } else {
            as_before.unwrap();
        }
        full("parquet:lake");
        agree(d, "parquet:lake", "parquet:good").unwrap();
    }
}

#[test]
fn secrets_never_appear_in_logs_errors_dry_runs_summaries_or_settings() {
    let server = pg::PgServer::start();
    server.add_password_user("keeper", "Sentinel-Url-1");
    let moto = moto::Moto::shared();
    let fixtures = moto.fixtures();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secrets = [
        "Sentinel-Url-1",
        "Sentinel-PgPassword-2",
        "SentinelSecretAccessKey3",
        "SentinelSessionToken4",
        "Sentinel-File-5",
        "Sentinel-Wrong-6",
    ];
    std::fs::write(
        d.join("sparkify.toml"),
        "[redshift]\nhost = \"example.redshift.amazonaws.com\"\ndatabase = \"dev\"\nuser = \"awsuser\"\n\
         password = \"Sentinel-File-5\"\n\
         [s3]\nevents = \"s3://b/log_data\"\nsongs = \"s3://b/song_data\"\n\
         jsonpaths = \"s3://b/log_json_path.json\"\nregion = \"us-west-2\"\n\
         [iam]\nrole_arn = \"arn:aws:iam::123456789012:role/dwhRole\"\n",
    )
    .unwrap();
    let mut env = moto.env();
    env.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    env.extend([
        (
            "AWS_SECRET_ACCESS_KEY",
            "SentinelSecretAccessKey3".to_owned(),
        ),
        ("AWS_SESSION_TOKEN", "SentinelSessionToken4".to_owned()),
        ("PGPASSWORD", "Sentinel-PgPassword-2".to_owned()),
        ("RUST_LOG", "trace".to_owned()),
        ("NO_COLOR", "1".to_owned()),
    ]);
    let port = server
        .url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let good = format!("postgres://keeper:Sentinel-Url-1@127.0.0.1:{port}/postgres");
    let wrong = format!("postgres://keeper:Sentinel-Wrong-6@127.0.0.1:{port}/postgres");
    let json = d.join("summary.json");
    let songs = format!("s3://{fixtures}/song_data/A/A/A/");
    let events = format!("s3://{fixtures}/log_data/2018/11/2018-11-01");
    let load = |sink: &str, extra: &[&str]| {
        let mut args = vec![
            "etl",
            "--songs",
            &songs,
            "--events",
            &events,
            "--sink",
            sink,
            "--summary-json",
            json.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        sparkify_env(d, &args, &env)
    };
    let runs = [
        // S3 in, PostgreSQL out, logged at trace: the SDK's requests and the load's steps.
        (load(&good, &[]), Some(0)),
        // A password the server refuses: the error.
        (load(&wrong, &[]), Some(4)),
        // The plans.
        (load(&good, &["--dry-run"]), Some(0)),
        (
            sparkify_env(d, &["etl", "--sink", "redshift", "--dry-run"], &env),
            Some(0),
        ),
        (load("redshift", &["--dry-run"]), Some(0)),
        // Queries, the settings as resolved, and a failed query.
        (
            sparkify_env(
                d,
                &[
                    "sql",
                    "--sink",
                    &good,
                    "SELECT count(*) FROM staging_events",
                ],
                &env,
            ),
            Some(0),
        ),
        (
            sparkify_env(d, &["sql", "--sink", &good, "SELECT nonsense"], &env),
            Some(4),
        ),
        (sparkify_env(d, &["config", "show"], &env), Some(0)),
        (
            sparkify_env(d, &["analytics", "--sink", &good, "--format", "json"], &env),
            Some(0),
        ),
    ];
    let summary = std::fs::read_to_string(&json).unwrap();
    for (out, code) in &runs {
        let all = text(out);
        assert_eq!(out.status.code(), *code, "{all}");
        for secret in secrets {
            assert!(!all.contains(secret), "{secret} printed:\n{all}");
            assert!(!summary.contains(secret), "{secret} in the summary");
        }
    }
    // The first run logged at trace level, and signed its S3 requests with the sentinel keys.
    let first = text(&runs[0].0);
    assert!(
        first.contains("TRACE") && first.contains(fixtures),
        "{first}"
    );
    assert!(first.contains("keeper@127.0.0.1"), "{first}");
}

/// A tmpfs of `size` mounted at `at` (this test runs as root, as CI does), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount a tmpfs: {}", text(&out));
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_load_onto_a_full_disk_fails_in_words_and_leaves_the_previous_output() {
    // Mounting needs root; CI runs as root.
    let root = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        eprintln!("not root: cannot mount the small filesystem this test fills");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The small loads fit; the whole data set does not: its DuckDB file alone is 7 MB, its
    // lake 12,625 files (a tmpfs block each).
    let duck = Tmpfs::mount(&dir.path().join("duck"), "4m");
    let lake = Tmpfs::mount(&dir.path().join("lake"), "8m");
    let fx = repo().join("fixtures/sparkify");
    let small = |at: &Path, sink: &str| {
        stdout_of(
            at,
            &[
                "etl",
                "--songs",
                fx.join("song_data/A/A").to_str().unwrap(),
                "--events",
                fx.join("log_data/2018/11/2018-11-01-events.json")
                    .to_str()
                    .unwrap(),
                "--sink",
                sink,
                "--with-staging-tables",
            ],
        );
    };
    small(&duck.0, "duckdb:x.duckdb");
    let before = dump(&duck.0.join("x.duckdb"));
    small(&lake.0, "parquet:lake");
    small(dir.path(), "parquet:ref");
    for (at, sink) in [(&duck.0, "duckdb:x.duckdb"), (&lake.0, "parquet:lake")] {
        let out = etl_child(at, sink, &["--with-staging-tables"])
            .wait_with_output()
            .unwrap();
        let all = text(&out);
        assert_eq!(out.status.code(), Some(4), "{all}");
        assert!(all.contains("No space left on device"), "{all}");
        assert!(all.contains("hint: the disk is full"), "{all}");
    }
    assert_eq!(dump(&duck.0.join("x.duckdb")), before);
    let reference = format!("parquet:{}", dir.path().join("ref").display());
    agree(&lake.0, "parquet:lake", &reference).unwrap();
    let d = lake.0.clone();
    // Nothing of the failed lake is left beside the old one.
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".lake"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_incremental_load_replaces_the_rejects_of_a_file_whose_name_is_sql() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fx = repo().join("fixtures/sparkify");
    let songs = fx.join("song_data/A/A/A");
    let logs = d.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let day = std::fs::read_to_string(fx.join("log_data/2018/11/2018-11-01-events.json")).unwrap();
    let good = day.lines().next().unwrap();
    let file = logs.join("o'brien\\x;$$ DROP TABLE dm_users; --.json");
    for sink in ["duckdb:weird.duckdb".to_owned(), server.url()] {
        std::fs::write(&file, format!("{good}\n{{\"ts\": \"soon\"}}\n")).unwrap();
        let s = incremental(d, &sink, &songs, &logs, &["--max-errors", "5"]);
        assert_eq!(s["rows"]["load_errors"], 1, "{s}");
        assert_eq!(
            s["reject_details"][0]["source"],
            file.to_str().unwrap(),
            "{s}"
        );
        std::fs::write(&file, format!("{good}\n{good}\n")).unwrap();
        let s = incremental(d, &sink, &songs, &logs, &["--max-errors", "5"]);
        assert_eq!(s["files_read"], 1, "{s}");
        assert_eq!(
            (
                &s["rows"]["load_errors"],
                &s["rows"]["staging_events"],
                &s["rows"]["dm_users"]
            ),
            (&0.into(), &2.into(), &1.into()),
            "the file's reject went with its old rows: {s}"
        );
    }
}

#[test]
fn an_incremental_load_killed_at_any_phase_leaves_the_previous_tables_whole() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fx = repo().join("fixtures/sparkify");
    let songs = fx.join("song_data/A");
    let mut days = walk(&fx.join("log_data"));
    days.sort();
    let logs = d.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let put = |files: &[std::path::PathBuf]| {
        for f in files {
            std::fs::copy(f, logs.join(f.file_name().unwrap())).unwrap();
        }
    };
    let full = |name: &str| {
        let sink = format!("duckdb:{name}");
        let args = ["etl", "--songs", songs.to_str().unwrap(), "--events"];
        let mut args = args.to_vec();
        args.extend([logs.to_str().unwrap(), "--sink", &sink]);
        stdout_of(d, &args);
        sink
    };
    put(&days[..10]);
    let ten = full("ten.duckdb");
    put(&days[10..]);
    let thirty = full("thirty.duckdb");
    let url = server.url();
    let duckdb_phases = [None, Some("appended"), Some("keys checked and added")];
    let pg_phases = [
        None,
        Some("DELETE FROM staging_events"),
        Some("COPY staging_events"),
        Some("INSERT INTO dm_users"),
        Some("COMMIT"),
    ];
    let runs: [(&str, &[Option<&str>]); 2] =
        [("duckdb:k.duckdb", &duckdb_phases), (&url, &pg_phases)];
    for (sink, phases) in runs {
        for marker in phases {
            // The previous load: the first ten days (the days after them pruned).
            for f in &days[10..] {
                let _ = std::fs::remove_file(logs.join(f.file_name().unwrap()));
            }
            incremental(d, sink, &songs, &logs, &["--prune"]);
            agree(d, sink, &ten).unwrap();
            // One day changed and twenty added, killed at `marker`.
            let first = logs.join(days[0].file_name().unwrap());
            let text = std::fs::read_to_string(&days[0]).unwrap();
            std::fs::write(&first, text.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap();
            put(&days[10..]);
            let args = [
                "etl",
                "--incremental",
                "--songs",
                songs.to_str().unwrap(),
                "--events",
                logs.to_str().unwrap(),
                "--sink",
                sink,
            ];
            let done = kill_at(d, &args, *marker);
            std::fs::copy(&days[0], &first).unwrap();
            let as_before = agree(d, sink, &ten);
            if !done && *marker != Some("COMMIT") && *marker != Some("keys checked and added") {
                as_before.unwrap_or_else(|e| panic!("{sink}, killed at {marker:?}: {e}"));
            } else if as_before.is_err() {
                // Killed as it committed: the new load, whole (its first day one line short).
                let s = incremental(d, sink, &songs, &logs, &[]);
                assert_eq!(s["files_read"], 1, "{sink} after {marker:?}: {s}");
            }
            // The next run completes, and equals a full load.
            incremental(d, sink, &songs, &logs, &[]);
            agree(d, sink, &thirty).unwrap_or_else(|e| panic!("{sink} after {marker:?}: {e}"));
        }
    }
}

/// `sparkify gen` into `dir/name`: `days` day logs of `per_day` events each. Its song and
/// log folders.
fn generated(
    dir: &Path,
    name: &str,
    days: &str,
    per_day: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = dir.join(name);
    let made = sparkify(
        dir,
        &[
            "gen",
            "--out",
            out.to_str().unwrap(),
            "--songs",
            "300",
            "--days",
            days,
            "--users",
            "40",
            "--events-per-day",
            per_day,
            "--match-fraction",
            "0.2",
            "--seed",
            "14",
        ],
    );
    assert_eq!(made.status.code(), Some(0), "{}", text(&made));
    (out.join("song_data"), out.join("log_data"))
}

#[test]
fn a_streamed_load_is_the_same_for_any_in_flight_bound_batch_size_and_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Three day logs of about 6 MB: each is read in chunks (of 4 MiB), as well as grouped.
    let (songs, events) = generated(d, "data", "3", "12000");
    let runs: [(&str, &[&str]); 3] = [
        ("default", &[]),
        (
            "one",
            &["--in-flight", "1", "--threads", "1", "--batch-size", "1000"],
        ),
        (
            "tight",
            &[
                "--in-flight",
                "5MiB",
                "--threads",
                "3",
                "--batch-size",
                "77",
            ],
        ),
    ];
    let etl = |sink: &str, extra: &[&str]| etl_summary(d, sink, &songs, &events, extra);
    let mut dumps = Vec::new();
    for (name, extra) in runs {
        let flow = etl(&format!("duckdb:{name}.duckdb"), extra)["in_flight"].clone();
        let (bound, peak, parts, largest) = (
            flow["bound"].as_u64().unwrap(),
            flow["peak_bytes"].as_u64().unwrap(),
            flow["peak_parts"].as_u64().unwrap(),
            flow["largest_part"].as_u64().unwrap(),
        );
        // The pipeline's own accounting: never more in flight than the bound, but for the
        // one part that is always let through.
        assert!(peak <= bound.max(largest), "{name}: {flow}");
        assert!(
            flow["parts"].as_u64().unwrap() >= 6,
            "{name}: chunked, {flow}"
        );
        match name {
            "one" => assert_eq!(parts, 1, "{flow}"),
            "tight" => assert!(peak <= 5 << 20, "{flow}"),
            _ => assert_eq!(bound, 64 << 20),
        }
        let db = d.join(format!("{name}.duckdb"));
        dumps.push(
            dump(&db)
                .lines()
                .filter(|l| !l.contains("run_started_at"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        // Against the star schema rebuilt in memory from a whole read of the same input.
        let verify = sparkify(
            d,
            &[
                "verify",
                "--sink",
                &format!("duckdb:{name}.duckdb"),
                "--source",
                "--songs",
                songs.to_str().unwrap(),
                "--events",
                events.to_str().unwrap(),
            ],
        );
        assert_eq!(verify.status.code(), Some(0), "{name}: {}", text(&verify));
    }
    assert!(dumps[0].contains("staging_events"));
    assert_eq!(dumps[0], dumps[1]);
    assert_eq!(dumps[0], dumps[2]);

    // PostgreSQL (COPY fed as the parts come) and a lake with its staging tables (written
    // part by part), each under the tightest bound, hold what DuckDB holds, table by table.
    let server = pg::PgServer::start();
    let one = runs[1].1;
    let mut lake_args = one.to_vec();
    lake_args.push("--with-staging-tables");
    for (sink, extra) in [
        (server.url().as_str(), one),
        ("parquet:lake", lake_args.as_slice()),
    ] {
        let flow = etl(sink, extra)["in_flight"].clone();
        assert_eq!(flow["peak_parts"].as_u64(), Some(1), "{sink}: {flow}");
    }
    let verify = sparkify(
        d,
        &[
            "verify",
            "--sink",
            "duckdb:default.duckdb",
            "--sink",
            &server.url(),
            "--sink",
            "parquet:lake",
        ],
    );
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let table = String::from_utf8_lossy(&verify.stdout);
    assert!(
        !table.contains("not written") && table.contains("staging_events"),
        "{table}"
    );
}

#[test]
fn too_many_rejects_late_in_the_stream_commit_nothing_in_any_sink() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (songs, events) = generated(d, "data", "4", "3000");
    let sinks = [
        "duckdb:out.duckdb".to_owned(),
        server.url(),
        format!("parquet:{}", d.join("lake").display()),
    ];
    for sink in &sinks {
        let load = |max_errors: &str| {
            sparkify(
                d,
                &[
                    "etl",
                    "--songs",
                    songs.to_str().unwrap(),
                    "--events",
                    events.to_str().unwrap(),
                    "--sink",
                    sink,
                    "--max-errors",
                    max_errors,
                    "--in-flight",
                    "1",
                ],
            )
        };
        let good = load("0");
        assert_eq!(good.status.code(), Some(0), "{sink}: {}", text(&good));
        // The same load into a lake of its own, to compare the sink with after the failure.
        let reference = format!("parquet:{}", d.join("reference").display());
        let _ = std::fs::remove_dir_all(d.join("reference"));
        let copy = sparkify(
            d,
            &[
                "etl",
                "--songs",
                songs.to_str().unwrap(),
                "--events",
                events.to_str().unwrap(),
                "--sink",
                &reference,
            ],
        );
        assert_eq!(copy.status.code(), Some(0), "{}", text(&copy));

        // Two bad records at the very end of the last day: found after the other days' rows
        // went to the sink.
        let mut days: Vec<_> = walk(&events);
        days.sort();
        let last = days.last().unwrap().clone();
        let original = std::fs::read(&last).unwrap();
        let mut bad = original.clone();
        bad.extend_from_slice(b"{\"ts\": \"yesterday\"}\nnot json\n");
        std::fs::write(&last, &bad).unwrap();
        let over = load("1");
        std::fs::write(&last, &original).unwrap();
        assert_eq!(over.status.code(), Some(3), "{sink}: {}", text(&over));
        let stderr = String::from_utf8_lossy(&over.stderr);
        assert!(stderr.contains("nothing was committed"), "{sink}: {stderr}");
        assert!(stderr.contains("field `ts`"), "{sink}: {stderr}");
        agree(d, sink, &reference).unwrap_or_else(|e| panic!("{sink} changed: {e}"));

        // Two bad records opening the first day stop the load at its first part; the rest
        // is still read, so the one at the end of the last day is reported too.
        let first = days.first().unwrap().clone();
        let first_original = std::fs::read(&first).unwrap();
        let mut early = b"not json\n{\"ts\": \"yesterday\"}\n".to_vec();
        early.extend_from_slice(&first_original);
        std::fs::write(&first, &early).unwrap();
        let mut late = original.clone();
        late.extend_from_slice(b"{\"itemInSession\": \"first\"}\n");
        std::fs::write(&last, &late).unwrap();
        let over = load("1");
        std::fs::write(&first, &first_original).unwrap();
        std::fs::write(&last, &original).unwrap();
        assert_eq!(over.status.code(), Some(3), "{sink}: {}", text(&over));
        let stderr = String::from_utf8_lossy(&over.stderr);
        let last_line = original.iter().filter(|&&b| b == b'\n').count() + 1;
        for reject in [
            format!("{}:1 (byte 0)", first.display()),
            format!("{}:2 (byte 9): field `ts`", first.display()),
            format!("{}:{last_line} ", last.display()),
        ] {
            assert!(stderr.contains(&reject), "{sink}: no {reject} in {stderr}");
        }
        assert!(
            stderr.contains("3 rejected records, more than --max-errors 1"),
            "{sink}: {stderr}"
        );
        agree(d, sink, &reference).unwrap_or_else(|e| panic!("{sink} changed: {e}"));
    }
}

#[test]
fn rejects_past_their_bound_wait_in_a_temporary_file_and_load_whole_in_every_sink() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (songs, events) = generated(d, "data", "3", "6000");
    // A bad song (songs are read whole, and their rejects come first), and after every tenth
    // play a bad record of about 700 bytes: 1800 of them, 1.3 MB of rejects, in 8.5 MB of
    // logs that stream in three parts or more.
    std::fs::write(songs.join("bad_song.json"), "{not json").unwrap();
    let mut bad = 0;
    for day in walk(&events) {
        let text = std::fs::read_to_string(&day).unwrap();
        let mut out = String::new();
        for (i, line) in text.lines().enumerate() {
            out += line;
            out.push('\n');
            if i % 10 == 9 {
                let pad = "x".repeat(690);
                out += &match bad % 2 {
                    0 => format!("{{\"ts\": \"{pad}\"}}\n"),
                    _ => format!("not json {pad}\n"),
                };
                bad += 1;
            }
        }
        std::fs::write(&day, out).unwrap();
    }
    assert_eq!(bad, 1800);
    let lake = format!("parquet:{}", d.join("lake").display());
    // A quarter of --in-flight, 64 KiB, is what the run holds of its rejects.
    let tight = ["--max-errors", "5000", "--in-flight", "256KiB"];
    let held = etl_summary(d, "duckdb:held.duckdb", &songs, &events, &tight[..2]);
    assert_eq!(held["rejects_spilled"], json!(false), "{held:#}");
    let details = &held["reject_details"];
    assert_eq!(held["rejects"], json!(1801));
    assert_eq!(details.as_array().unwrap().len(), 1801);
    // Songs first, then the events in input order.
    assert!(
        details[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("bad_song.json")
    );
    let order: Vec<(String, u64)> = details.as_array().unwrap()[1..]
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_owned(),
                r["line"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    for sink in ["duckdb:spilled.duckdb", &server.url(), &lake] {
        let spilled = etl_summary(d, sink, &songs, &events, &tight);
        assert_eq!(
            spilled["rejects_spilled"],
            json!(true),
            "{sink}: {spilled:#}"
        );
        let parts = spilled["in_flight"]["parts"].as_u64().unwrap();
        assert!(parts >= 3, "{sink}: {spilled:#}");
        assert_eq!(spilled["rejects"], json!(1801), "{sink}");
        assert_eq!(&spilled["reject_details"], details, "{sink}");
        assert_eq!(spilled["rows"]["load_errors"], json!(1801), "{sink}");
        let printed = spilled["stderr"]
            .as_str()
            .unwrap()
            .matches("reject: ")
            .count();
        assert_eq!(printed, 1801, "{sink}");
    }
    assert_eq!(count(&d.join("spilled.duckdb"), "load_errors"), 1801);
    // Every table, load_errors' raw text too, is the same in each sink as in the load that
    // held its rejects.
    let verify = sparkify(
        d,
        &[
            "verify",
            "--sink",
            "duckdb:held.duckdb",
            "--sink",
            "duckdb:spilled.duckdb",
            "--sink",
            &server.url(),
            "--sink",
            &lake,
        ],
    );
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));

    // Over --max-errors: nothing is committed, and every reject is still reported, read
    // back from where they spilled.
    let mut over = tight;
    over[1] = "10";
    let out = sparkify(
        d,
        &etl_args(&songs, &events, "duckdb:spilled.duckdb", &over),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("reject: ").count(), 1801, "{stderr}");
    assert!(
        stderr.contains("1801 rejected records, more than --max-errors 10"),
        "{stderr}"
    );
    assert_eq!(count(&d.join("spilled.duckdb"), "load_errors"), 1801);

    // Nowhere to write them: the load fails in words, the reason said once, and leaves the
    // previous tables.
    let tmp = ("TMPDIR", d.join("missing").display().to_string());
    let args = etl_args(&songs, &events, "duckdb:spilled.duckdb", &tight);
    let out = sparkify_env(d, &args, &[tmp]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(
        error.contains(&format!(
            "a temporary file in {}",
            d.join("missing").display()
        )),
        "{error}"
    );
    assert_eq!(error.matches("(os error 2)").count(), 1, "{error}");
    assert_eq!(count(&d.join("spilled.duckdb"), "load_errors"), 1801);
}

/// The process allocates through jemalloc, `malloc` itself replaced, so DuckDB's C++ does too,
/// with the options `.cargo/config.toml` builds in (docs/performance.md): jemalloc reads
/// `MALLOC_CONF` only when it is `malloc` (a build that left glibc's in place would read
/// `_RJEM_MALLOC_CONF`), and glibc knows no such variable. The options are built in for Linux
/// with glibc on x86-64 and ARM64 only.
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[test]
fn the_process_allocates_through_jemalloc_in_place_of_malloc() {
    let dir = tempfile::tempdir().unwrap();
    let conf = ("MALLOC_CONF", "stats_print:true".to_string());
    let out = sparkify_env(dir.path(), &["--version"], &[conf]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Begin jemalloc statistics"), "{stderr}");
    for built_in in [
        r#"config.malloc_conf: "percpu_arena:percpu,thp:always,metadata_thp:always,background_thread:true,dirty_decay_ms:1000""#,
        r#"opt.percpu_arena: "percpu""#,
        r#"opt.thp: "always""#,
        "opt.background_thread: true",
        "opt.dirty_decay_ms: 1000",
    ] {
        assert!(stderr.contains(built_in), "{built_in} in {stderr}");
    }
}

/// Every line of stderr, each parsed as one JSON object.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{}", text(out)))
        })
        .collect()
}

#[test]
fn a_json_log_is_one_object_a_line_from_the_first_phase_to_the_summary_or_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures");
    let db = dir.path().join("j.duckdb");
    let sink = format!("duckdb:{}", db.display());
    // A plain-text password in the config file: a warning, as JSON too.
    std::fs::write(
        dir.path().join("sparkify.toml"),
        "[redshift]\npassword = \"never-shown\"\n",
    )
    .unwrap();
    let args = |max_errors: &'static str| {
        vec![
            "etl".to_owned(),
            "--songs".into(),
            fx.join("sparkify/song_data/A/A").display().to_string(),
            "--events".into(),
            fx.join("bad").display().to_string(),
            "--sink".into(),
            sink.clone(),
            "--max-errors".into(),
            max_errors.into(),
            "--log-format".into(),
            "json".into(),
        ]
    };
    let run = |max_errors| {
        let args = args(max_errors);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sparkify(dir.path(), &args)
    };
    let out = run("100");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = json_lines(&out);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert!(!text(&out).contains("never-shown"));
    assert_eq!(events[0], "warning", "{events:?}");
    assert_eq!(
        lines[1],
        serde_json::json!({ "event": "started", "phase": "discover" })
    );
    let finished = |phase: &str| {
        lines
            .iter()
            .find(|l| l["event"] == "finished" && l["phase"] == phase)
            .unwrap_or_else(|| panic!("no finished {phase}: {lines:?}"))
    };
    assert!(finished("load")["seconds"].as_f64().unwrap() > 0.0);
    assert!(finished("checking keys and committing")["seconds"].is_number());
    let to_read = lines.iter().find(|l| l["event"] == "to_read").unwrap();
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary", "{lines:?}");
    assert_eq!(to_read["bytes"], summary["bytes_read"]);
    assert_eq!(summary["committed"], true);
    assert!(summary.get("reject_details").is_none());
    let rejects: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["event"] == "reject").collect();
    assert_eq!(rejects.len() as u64, summary["rejects"].as_u64().unwrap());
    assert!(
        rejects
            .iter()
            .any(|r| r["source"].as_str().unwrap().ends_with("not_json.json") && r["line"] == 2),
        "{rejects:?}"
    );
    assert_eq!(
        summary["rows"]["staging_songs"].as_u64().unwrap(),
        count(&db, "staging_songs") as u64
    );

    // A load that fails ends with the error, its exit status and nothing after it.
    let out = run("0");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let lines = json_lines(&out);
    let error = lines.last().unwrap();
    assert_eq!(error["event"], "error", "{lines:?}");
    assert_eq!(error["exit"], 3);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("more than --max-errors 0"),
        "{error}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "summary" && l["committed"] == false)
    );
}

/// A tmux server of the test's own, killed when the test ends.
struct Tmux(String);

impl Tmux {
    fn start(command: &str) -> Tmux {
        // A server a test: tests run at once in this process.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("sparkify-e2e-{}-{n}", std::process::id());
        let ok = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", "140", "-y", "24"])
            .arg(command)
            .status()
            .expect("tmux runs (scripts/test.sh installs it)");
        assert!(ok.success());
        Tmux(socket)
    }

    /// The screen as a person sees it now.
    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.0, "capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen once it shows `text`, within `seconds`.
    fn wait_for(&self, text: &str, seconds: u64) -> String {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let screen = self.screen();
            if screen.contains(text) || std::time::Instant::now() > until {
                return screen;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .status();
    }
}

#[test]
fn a_terminal_shows_the_load_as_it_goes_and_clears_it_at_the_end() {
    use sparkify_test_support::stall::{Stall, StallProxy};
    let moto = moto::Moto::shared();
    let fixtures = moto.fixtures();
    let dir = tempfile::tempdir().unwrap();
    // The event logs' GETs stall, so the load stays in its reading for a few seconds.
    let proxy = StallProxy::start(&moto.endpoint, "x-id=GetObject");
    proxy.set(Stall::Silent);
    let env: Vec<String> = moto
        .env()
        .into_iter()
        .map(|(k, v)| match k {
            "AWS_ENDPOINT_URL" => format!("{k}={}", proxy.endpoint),
            _ => format!("{k}={v}"),
        })
        .collect();
    let command = format!(
        "cd {} && env {} {} etl --songs {} --events s3://{fixtures}/log_data/ --sink duckdb:t.duckdb \
         --s3-read-timeout 4 --s3-attempts 1; echo exit $?; sleep 60",
        dir.path().display(),
        env.join(" "),
        env!("CARGO_BIN_EXE_sparkify"),
        repo().join("fixtures/sparkify/song_data/A/A").display(),
    );
    let tmux = Tmux::start(&command);
    let screen = tmux.wait_for("reading and loading", 20);
    assert!(screen.contains("reading and loading"), "{screen}");
    // The bytes read of the bytes to read, as the bar counts them.
    assert!(screen.contains("B/") && screen.contains("iB"), "{screen}");
    let screen = tmux.wait_for("exit ", 30);
    assert!(screen.contains("exit 4"), "{screen}");
    assert!(screen.contains("error: "), "{screen}");
    assert!(
        !screen.contains("reading and loading"),
        "the bar is cleared at the end: {screen}"
    );
}

/// DuckDB's Python package holding `db` open for `seconds`; returns once it has it.
fn hold_duckdb(db: &Path, seconds: u32) -> std::process::Child {
    let script = format!(
        "import duckdb, sys, time\nc = duckdb.connect(sys.argv[1])\nprint('open', flush=True)\n\
         time.sleep({seconds})\n"
    );
    let mut py =
        Command::new(std::env::var("SPARKIFY_PYTHON").unwrap_or_else(|_| "python3".into()))
            .args(["-c", &script, db.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(py.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "open\n");
    py
}

#[test]
fn a_query_that_waits_for_another_process_says_who_holds_the_file_and_since_when() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("held.duckdb");
    let sink = format!("duckdb:{}", db.display());
    let mut held = hold_duckdb(&db, 3);
    let out = sparkify(dir.path(), &["sql", "SELECT 42 AS answer", "--sink", &sink]);
    held.wait().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = stderr
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "waiting for {sink}: another process has it open (PID "
            ))
        })
        .unwrap_or_else(|| panic!("no word of the wait: {stderr}"));
    assert!(said.contains(&format!("PID {}", held.id())), "{said}");
    assert!(
        said.contains(" since 20") && said.contains(" UTC;"),
        "{said}"
    );
    assert!(
        said.contains("waiting up to 600 s (--lock-timeout)"),
        "{said}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("42"));

    // As an event of a JSON log.
    let mut held = hold_duckdb(&db, 2);
    let out = sparkify(
        dir.path(),
        &["sql", "SELECT 1", "--sink", &sink, "--log-format", "json"],
    );
    held.wait().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = json_lines(&out);
    let waiting = lines
        .iter()
        .find(|l| l["event"] == "waiting")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(
        waiting["holder"]
            .as_str()
            .unwrap()
            .starts_with(&format!("PID {}", held.id())),
        "{waiting}"
    );
    assert!(
        waiting["since"].as_str().unwrap().ends_with(" UTC"),
        "{waiting}"
    );
    assert_eq!(waiting["timeout_seconds"], 600);
}

#[test]
fn a_terminal_shows_a_spinner_while_a_query_waits_for_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("held.duckdb");
    let mut held = hold_duckdb(&db, 4);
    let command = format!(
        "{} sql 'SELECT 42 AS answer' --sink duckdb:{}; echo exit $?; sleep 60",
        env!("CARGO_BIN_EXE_sparkify"),
        db.display()
    );
    let tmux = Tmux::start(&command);
    let screen = tmux.wait_for("waiting for the file (", 10);
    assert!(
        screen.contains("another process has it open (PID"),
        "{screen}"
    );
    assert!(screen.contains("waiting for the file ("), "{screen}");
    held.wait().unwrap();
    let screen = tmux.wait_for("exit ", 20);
    assert!(
        screen.contains("exit 0") && screen.contains("42"),
        "{screen}"
    );
    assert!(
        !screen.contains("waiting for the file ("),
        "the spinner is cleared once the file is had: {screen}"
    );
}
