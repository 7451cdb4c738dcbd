//! End-to-end tests of the `sparkify` binary: the one cargo built for this test run.
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use duckdb::Connection;
use sparkify_sink_redshift::{Flavor, Target, WarehouseSink};

#[path = "../crates/sink-redshift/tests/support/mod.rs"]
mod pg;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn sparkify(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparkify"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let out = sparkify(
        dir.path(),
        &["run", "--summary-json", json.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
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
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.duckdb");
    let fx = repo().join("fixtures");
    let json = dir.path().join("s.json");
    let out = sparkify(
        dir.path(),
        &[
            "etl",
            "--songs",
            fx.join("bad/numbers_in_text.json").to_str().unwrap(),
            "--events",
            fx.join("bad").to_str().unwrap(),
            "--sink",
            &format!("duckdb:{}", db.display()),
            "--max-errors",
            "100",
            "--summary-json",
            json.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rejects = summary["rejects"].as_i64().unwrap();
    assert_eq!(rejects, 10, "{summary:#}");
    assert_eq!(summary["files_skipped"], 1);
    assert_eq!(count(&db, "load_errors"), rejects);
    let conn = Connection::open(&db).unwrap();
    let (line, column, reason): (i64, String, String) = conn
        .query_row(
            "SELECT line, column_name, reason FROM load_errors WHERE source LIKE '%out_of_range.json'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((line, column.as_str()), (2, "itemInSession"));
    assert!(reason.contains("out of range"), "{reason}");
    // The good records of the bad files loaded (numbers_in_text.json is a valid object too).
    assert_eq!(count(&db, "staging_events"), 26);
}

#[test]
fn bad_usage_exits_2_and_sink_failure_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let fx = repo().join("fixtures/sparkify");
    let songs = fx.join("song_data/A/A/A");
    let events = fx.join("log_data");
    let run = |sink: &str, songs: &str| {
        sparkify(
            dir.path(),
            &[
                "etl",
                "--songs",
                songs,
                "--events",
                events.to_str().unwrap(),
                "--sink",
                sink,
            ],
        )
    };

    let out = run("mysql:nowhere", songs.to_str().unwrap());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown sink"));

    let out = run("duckdb:x.duckdb", "/no/such/folder");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/folder"));

    let out = sparkify(dir.path(), &["etl", "--songs"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let out = run("duckdb:/no/such/dir/x.duckdb", songs.to_str().unwrap());
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/dir/x.duckdb"));
}

#[test]
fn songplays_all_keeps_unmatched_plays_and_threads_do_not_matter() {
    let dir = tempfile::tempdir().unwrap();
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
    let sink = WarehouseSink::new(
        Some(Target::from_url(url).unwrap()),
        Flavor::Postgres,
        Default::default(),
    );
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
    let etl = |sink: &str, extra: &[&str]| {
        let mut args = vec![
            "etl",
            "--songs",
            songs.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--sink",
            sink,
        ];
        args.extend_from_slice(extra);
        sparkify(dir.path(), &args)
    };
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
    assert!(stdout.contains("COPY staging_events FROM 's3://udacity-dend/log_data'\nIAM_ROLE 'arn:aws:iam::123456789012:role/dwh''Role'"), "{stdout}");
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
