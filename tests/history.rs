//! A run's story: the run history (`etl_runs`, `sparkify runs`, the run id on `load_errors`
//! and `etl_files`), the built-in checks (`sparkify check`, each rule broken on its own in a
//! loaded sink) and `etl --check`, which commits nothing when a check fails; in DuckDB and in
//! a real PostgreSQL server.
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::path::{Path, PathBuf};
use std::process::Output;

use sparkify_test_support::cli::{self, etl_args, text};
use sparkify_test_support::fixtures::repo;
use sparkify_test_support::pg;

fn sparkify(dir: &Path, args: &[&str]) -> Output {
    cli::run(env!("CARGO_BIN_EXE_sparkify"), dir, args, &[])
}

fn songs() -> PathBuf {
    repo().join("fixtures/sparkify/song_data")
}

/// The real logs' 30 days, in order.
fn days() -> Vec<PathBuf> {
    let mut days: Vec<PathBuf> =
        std::fs::read_dir(repo().join("fixtures/sparkify/log_data/2018/11"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    days.sort();
    assert_eq!(days.len(), 30);
    days
}

/// A folder of logs holding `days`.
fn logs_of(dir: &Path, name: &str, days: &[PathBuf]) -> PathBuf {
    let logs = dir.join(name);
    std::fs::create_dir_all(&logs).unwrap();
    for day in days {
        std::fs::copy(day, logs.join(day.file_name().unwrap())).unwrap();
    }
    logs
}

/// `etl` of the real songs and `logs` into `sink` with `extra` flags: its exit code, its
/// summary, and what it said.
fn etl(dir: &Path, sink: &str, logs: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let json = dir.join("summary.json");
    let _ = std::fs::remove_file(&json);
    let songs = songs();
    let mut args = etl_args(
        &songs,
        logs,
        sink,
        &["--summary-json", json.to_str().unwrap()],
    );
    args.extend_from_slice(extra);
    let out = sparkify(dir, &args);
    let summary = std::fs::read_to_string(&json)
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or_default();
    (out.status.code().unwrap(), summary, text(&out))
}

/// `sparkify runs` on `sink`, as JSON rows.
fn runs(dir: &Path, sink: &str) -> Vec<serde_json::Value> {
    let out = sparkify(dir, &["runs", "--sink", sink, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

/// A JSON value (text or number, as each sink prints it) as an integer.
fn int(v: &serde_json::Value) -> i64 {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap(),
        v => v.as_i64().unwrap(),
    }
}

/// `sparkify sql` on `sink`: the rows as CSV, the header left out.
fn sql(dir: &Path, sink: &str, query: &str) -> Vec<String> {
    cli::sql_rows(env!("CARGO_BIN_EXE_sparkify"), dir, sink, query, &[])
}

/// Two loads (20 days, then 10 more incrementally) leave two runs whose counts are the loads',
/// and the rows each load wrote carry its run id; a load that fails leaves none, and its
/// summary says why.
fn two_loads_then_a_failed_one(dir: &Path, sink: &str) {
    let days = days();
    let logs = logs_of(dir, "logs", &days[..20]);
    let (code, first, said) = etl(dir, sink, &logs, &["--incremental"]);
    assert_eq!(code, 0, "{said}");
    logs_of(dir, "logs", &days[20..]);
    let (code, second, said) = etl(dir, sink, &logs, &["--incremental"]);
    assert_eq!(code, 0, "{said}");
    let ids: Vec<&str> = [&first, &second]
        .iter()
        .map(|s| s["run_id"].as_str().unwrap())
        .collect();
    assert!(ids[0] < ids[1], "{ids:?}");
    assert_eq!(second["checks"], "not_run");

    let history = runs(dir, sink);
    assert_eq!(history.len(), 2, "{history:#?}");
    let (a, b) = (&history[0], &history[1]);
    assert_eq!(
        (a["run_id"].as_str(), b["run_id"].as_str()),
        (Some(ids[0]), Some(ids[1]))
    );
    // The first found no ledger: a full load of every file.
    assert_eq!(
        (a["mode"].as_str(), b["mode"].as_str()),
        (Some("full"), Some("incremental"))
    );
    assert_eq!(int(&a["files_new"]), 14_896 + 20);
    assert_eq!(
        [
            &b["files_new"],
            &b["files_changed"],
            &b["files_unchanged"],
            &b["files_vanished"]
        ]
        .map(int),
        [10, 0, 14_896 + 20, 0]
    );
    assert_eq!(int(&b["ft_songplays"]), 333, "{b}");
    assert_eq!(int(&b["staging_events"]), 8056, "{b}");
    assert_eq!(int(&b["dm_time"]), 6813, "{b}");
    assert!(int(&a["staging_events"]) < 8056, "{a}");
    assert_eq!((int(&a["rejects"]), int(&b["rejects"])), (0, 0));
    assert_eq!(b["checks"], "not run");
    assert_eq!(b["sink"].as_str(), second["sink"].as_str());
    let command = b["command"].as_str().unwrap();
    assert!(
        command.contains("etl --songs") && command.contains("--incremental"),
        "{command}"
    );
    assert!(!command.contains("secret"), "{command}");
    // Each load's files carry its run id.
    let files = sql(
        dir,
        sink,
        "SELECT run_id, COUNT(*) FROM etl_files GROUP BY run_id ORDER BY run_id",
    );
    assert_eq!(
        files,
        [
            format!("{},{}", ids[0], 14_896 + 20),
            format!("{},10", ids[1])
        ]
    );

    // A load with a bad record and no --max-errors fails: no run row, and its summary says why.
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("bad.json"),
        "{\"ts\": \"yesterday\", \"page\": \"NextSong\"}\n",
    )
    .unwrap();
    let (code, failed, said) = etl(dir, sink, &bad, &["--incremental"]);
    assert_eq!(code, 3, "{said}");
    assert_eq!(failed["committed"], false);
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("more than --max-errors 0"),
        "{failed}"
    );
    assert!(failed["run_id"].is_string(), "{failed}");
    assert_eq!(runs(dir, sink).len(), 2, "a failed load adds no run");
}

#[test]
fn runs_list_each_committed_load_in_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No history yet: said so, as bad usage.
    let out = sparkify(d, &["runs", "--sink", "duckdb:none.duckdb"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("holds no run history"),
        "{}",
        text(&out)
    );
    two_loads_then_a_failed_one(d, "duckdb:dw.duckdb");
    // A person's view: a table with one line a run.
    let out = sparkify(d, &["runs", "--sink", "duckdb:dw.duckdb"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    let lines = |word: &str| shown.lines().filter(|l| l.contains(word)).count();
    assert_eq!((lines(" full "), lines(" incremental ")), (1, 1), "{shown}");
    // A full load keeps the history: a third row.
    let (code, _, said) = etl(d, "duckdb:dw.duckdb", &logs_of(d, "logs", &[]), &[]);
    assert_eq!(code, 0, "{said}");
    assert_eq!(runs(d, "duckdb:dw.duckdb").len(), 3);

    // A sink loaded before the run history (no run_id columns, no etl_runs) takes an
    // incremental load: its rows keep a NULL run id, the new ones carry the run's.
    let old = d.join("old.duckdb");
    std::fs::copy(d.join("dw.duckdb"), &old).unwrap();
    let without_run_id = |t: &str| {
        let columns: Vec<&str> = match t {
            "etl_files" => vec![
                "file_id",
                "kind",
                "path",
                "size",
                "version",
                "checksum",
                "rows_staged",
                "rejects",
                "loaded_at",
            ],
            _ => vec![
                "source",
                "line",
                "byte_offset",
                "column_name",
                "reason",
                // Before the column was renamed (RAW is a Redshift reserved word).
                "raw_text AS raw",
                "run_started_at",
            ],
        };
        format!(
            "CREATE TABLE old_{t} AS SELECT {} FROM {t}; DROP TABLE {t}; \
             ALTER TABLE old_{t} RENAME TO {t};",
            columns.join(", ")
        )
    };
    duckdb::Connection::open(&old)
        .unwrap()
        .execute_batch(&format!(
            "{} {} DROP TABLE etl_runs;",
            without_run_id("etl_files"),
            without_run_id("load_errors")
        ))
        .unwrap();
    let logs = logs_of(d, "logs", &[]);
    std::fs::write(
        logs.join("extra.json"),
        premium_event().replace("premium", "paid"),
    )
    .unwrap();
    let sink = format!("duckdb:{}", old.display());
    let (code, summary, said) = etl(d, &sink, &logs, &["--incremental"]);
    assert_eq!(code, 0, "{said}");
    // Its load_errors' `raw`, a Redshift reserved word, is `raw_text` now.
    assert_eq!(
        sql(
            d,
            &sink,
            "SELECT column_name FROM information_schema.columns \
             WHERE table_name = 'load_errors' AND column_name LIKE 'raw%'"
        ),
        ["raw_text"]
    );
    let history = runs(d, &sink);
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(int(&history[0]["files_new"]), 1);
    assert_eq!(
        sql(
            d,
            &sink,
            "SELECT COUNT(*), COUNT(run_id), MAX(run_id) FROM etl_files"
        ),
        [format!(
            "{},1,{}",
            14_896 + 30 + 1,
            summary["run_id"].as_str().unwrap()
        )]
    );
}

#[test]
fn runs_list_each_committed_load_in_postgres_and_checks_run_there() {
    let server = pg::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    two_loads_then_a_failed_one(dir.path(), &url);
    let out = sparkify(dir.path(), &["check", "--sink", &url, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let outcomes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcomes.len(), 15, "{outcomes:#?}");
    assert!(
        outcomes.iter().all(|o| o["result"] == "ok"),
        "{outcomes:#?}"
    );

    // etl --check over data that breaks a rule: exit 4, nothing committed, no run row.
    let logs = dir.path().join("logs");
    std::fs::write(logs.join("premium.json"), premium_event()).unwrap();
    let (code, summary, said) = etl(dir.path(), &url, &logs, &["--incremental", "--check"]);
    assert_eq!(code, 4, "{said}");
    assert!(
        said.contains("accepted_values:dm_users.level") && said.contains("9999: premium"),
        "{said}"
    );
    assert_eq!(summary["checks"], "failed", "{summary}");
    assert_eq!(runs(dir.path(), &url).len(), 2);
    assert_eq!(
        sql(
            dir.path(),
            &url,
            "SELECT COUNT(*) FROM dm_users WHERE user_id = 9999"
        ),
        ["0"]
    );
    // The same load with the checks passing commits, and says so in its run.
    std::fs::remove_file(logs.join("premium.json")).unwrap();
    std::fs::write(
        logs.join("extra.json"),
        premium_event().replace("premium", "paid"),
    )
    .unwrap();
    let (code, summary, said) = etl(dir.path(), &url, &logs, &["--incremental", "--check"]);
    assert_eq!(code, 0, "{said}");
    assert_eq!(summary["checks"], "passed", "{summary}");
    let history = runs(dir.path(), &url);
    assert_eq!(
        (history.len(), &history[2]["checks"]),
        (3, &"passed".into())
    );
    // Schema drift, in PostgreSQL's schema_drift.
    with_mood(&logs, "2018-11-05-events.json", 3);
    let (code, _, said) = etl(dir.path(), &url, &logs, &["--incremental"]);
    assert_eq!(code, 0, "{said}");
    assert_eq!(
        sql(
            dir.path(),
            &url,
            "SELECT field, json_type, drift, first_line, records FROM schema_drift"
        ),
        ["mood,string,new_field,3,1"]
    );
}

/// One event of a user the real data does not have, 9999, at the level `premium`.
fn premium_event() -> String {
    "{\"artist\":null,\"auth\":\"Logged In\",\"firstName\":\"Pat\",\"gender\":\"F\",\
     \"itemInSession\":0,\"lastName\":\"Doe\",\"length\":null,\"level\":\"premium\",\
     \"location\":\"Nowhere\",\"method\":\"GET\",\"page\":\"Home\",\"registration\":1540991795796.0,\
     \"sessionId\":99999,\"song\":null,\"status\":200,\"ts\":1543537327796,\
     \"userAgent\":\"curl\",\"userId\":\"9999\"}\n"
        .to_owned()
}

/// `sparkify check` on `db` with `extra` flags: its exit code and what it printed.
fn check(dir: &Path, db: &Path, extra: &[&str]) -> (i32, String) {
    let sink = format!("duckdb:{}", db.display());
    let mut args = vec!["check", "--sink", &sink];
    args.extend_from_slice(extra);
    let out = sparkify(dir, &args);
    (out.status.code().unwrap(), text(&out))
}

#[test]
fn each_check_fails_on_its_own_broken_rule_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let logs = repo().join("fixtures/sparkify/log_data");
    let (code, _, said) = etl(d, "duckdb:good.duckdb", &logs, &[]);
    assert_eq!(code, 0, "{said}");
    let good = d.join("good.duckdb");
    // The newest play is 2018-11-30 (UTC): fresh on 1 December, 26 hours after.
    let fresh = ["--max-age", "26h", "--as-of", "2018-12-01"];
    let (code, said) = check(d, &good, &fresh);
    assert_eq!(code, 0, "{said}");
    assert_eq!(said.matches(" ok ").count(), 16, "{said}");

    let user: i64 = first(&good, "SELECT MIN(user_id) FROM ft_songplays");
    let time: String = first(
        &good,
        "SELECT CAST(MIN(start_time) AS VARCHAR) FROM dm_time",
    );
    let song: String = first(&good, "SELECT MIN(song_id) FROM ft_songplays");
    let artist: String = first(&good, "SELECT MIN(artist_id) FROM ft_songplays");
    let played: String = first(
        &good,
        "SELECT CAST(MIN(start_time) AS VARCHAR) FROM ft_songplays",
    );
    let play: String = first(
        &good,
        "SELECT CAST(session_id AS VARCHAR) || ', ' || CAST(item_in_session AS VARCHAR) \
         FROM ft_songplays ORDER BY session_id, item_in_session LIMIT 1",
    );
    let broken = [
        (
            "relationship:ft_songplays.user_id",
            format!("DELETE FROM dm_users WHERE user_id = {user}"),
            user.to_string(),
        ),
        (
            "accepted_values:dm_users.level",
            format!("UPDATE dm_users SET level = 'premium' WHERE user_id = {user}"),
            format!("{user}: premium"),
        ),
        (
            "accepted_values:dm_users.gender",
            format!("UPDATE dm_users SET gender = 'X' WHERE user_id = {user}"),
            format!("{user}: X"),
        ),
        (
            "unique_key:dm_time",
            format!("INSERT INTO dm_time SELECT * FROM dm_time WHERE start_time = '{time}'"),
            time.clone(),
        ),
        (
            "accepted_values:dm_time.hour",
            "UPDATE dm_time SET hour = 24 WHERE start_time = (SELECT MIN(start_time) FROM dm_time)"
                .into(),
            ": 24".into(),
        ),
        (
            "row_conservation",
            "DELETE FROM staging_events WHERE ts = (SELECT MIN(ts) FROM staging_events)".into(),
            "etl_files says 8056".into(),
        ),
        (
            "relationship:ft_songplays.song_id",
            format!("DELETE FROM dm_songs WHERE song_id = '{song}'"),
            song.clone(),
        ),
        (
            "relationship:ft_songplays.artist_id",
            format!("DELETE FROM dm_artists WHERE artist_id = '{artist}'"),
            artist.clone(),
        ),
        (
            "relationship:ft_songplays.start_time",
            format!("DELETE FROM dm_time WHERE start_time = '{played}'"),
            played.clone(),
        ),
        (
            "unique_key:ft_songplays",
            format!(
                "INSERT INTO ft_songplays SELECT * FROM ft_songplays \
                 WHERE CAST(session_id AS VARCHAR) || ', ' || CAST(item_in_session AS VARCHAR) = '{play}'"
            ),
            play.clone(),
        ),
        (
            "accepted_values:ft_songplays.level",
            format!(
                "UPDATE ft_songplays SET level = 'premium' \
                 WHERE CAST(session_id AS VARCHAR) || ', ' || CAST(item_in_session AS VARCHAR) = '{play}'"
            ),
            format!("{play}: premium"),
        ),
        (
            "accepted_values:dm_time.weekday",
            "UPDATE dm_time SET weekday = 0 WHERE start_time = (SELECT MAX(start_time) FROM dm_time)"
                .into(),
            ": 0".into(),
        ),
    ];
    // The dimensions whose key DuckDB declares: made without it, then given a second row.
    let unkeyed = |table: &str, key: &str, value: &str| {
        format!(
            "CREATE TABLE copy AS SELECT * FROM {table}; DROP TABLE {table}; \
             ALTER TABLE copy RENAME TO {table}; \
             INSERT INTO {table} SELECT * FROM {table} WHERE {key} = '{value}'"
        )
    };
    let user_text = user.to_string();
    let broken: Vec<(&str, String, String)> = broken
        .into_iter()
        .chain([
            (
                "unique_key:dm_users",
                unkeyed("dm_users", "user_id", &user_text),
                user_text.clone(),
            ),
            (
                "unique_key:dm_songs",
                unkeyed("dm_songs", "song_id", &song),
                song.clone(),
            ),
            (
                "unique_key:dm_artists",
                unkeyed("dm_artists", "artist_id", &artist),
                artist.clone(),
            ),
        ])
        .collect();
    for (i, (name, tamper, key)) in broken.iter().enumerate() {
        let db = d.join(format!("broken{i}.duckdb"));
        std::fs::copy(&good, &db).unwrap();
        duckdb::Connection::open(&db)
            .unwrap()
            .execute_batch(tamper)
            .unwrap();
        let (code, said) = check(d, &db, &[]);
        assert_eq!(code, 1, "{name}: {said}");
        let failed: Vec<&str> = said.lines().filter(|l| l.contains("FAILED")).collect();
        assert_eq!(failed.len(), 1, "{name} alone fails: {said}");
        assert!(
            failed[0].contains(name) && failed[0].contains(key.as_str()),
            "{name}: {said}"
        );
        assert!(
            said.contains(&format!(
                "error: duckdb:{}: 1 of 15 checks failed: {name}",
                db.display()
            )),
            "{said}"
        );
    }
    // Freshness: measured from a later day, the same tables are stale.
    let (code, said) = check(
        d,
        &good,
        &[
            "--max-age",
            "26h",
            "--as-of",
            "2018-12-03",
            "--format",
            "csv",
        ],
    );
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("freshness:ft_songplays") && said.contains("newest play 2018-11-30"),
        "{said}"
    );

    // Every play kept: a NULL song is not a missing one when told so.
    let (code, _, said) = etl(d, "duckdb:all.duckdb", &logs, &["--songplays", "all"]);
    assert_eq!(code, 0, "{said}");
    let all = d.join("all.duckdb");
    let (code, said) = check(d, &all, &["--songplays", "all"]);
    assert_eq!(code, 0, "{said}");
    let (code, said) = check(d, &all, &[]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("relationship:ft_songplays.song_id") && said.contains("NULL"),
        "{said}"
    );
}

fn first<T: duckdb::types::FromSql>(db: &Path, query: &str) -> T {
    duckdb::Connection::open(db)
        .unwrap()
        .query_row(query, [], |r| r.get(0))
        .unwrap()
}

#[test]
fn etl_check_commits_nothing_when_a_check_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let logs = logs_of(d, "logs", &days());
    let (code, _, said) = etl(d, "duckdb:dw.duckdb", &logs, &["--check"]);
    assert_eq!(code, 0, "{said}");
    let db = d.join("dw.duckdb");
    let before: i64 = first(&db, "SELECT COUNT(*) FROM dm_users");
    std::fs::write(logs.join("premium.json"), premium_event()).unwrap();
    let (code, summary, said) = etl(d, "duckdb:dw.duckdb", &logs, &["--check"]);
    assert_eq!(code, 4, "{said}");
    assert!(
        said.contains("1 check failed: accepted_values:dm_users.level"),
        "{said}"
    );
    assert!(said.contains("9999: premium"), "{said}");
    assert_eq!(summary["checks"], "failed", "{summary}");
    assert_eq!(summary["committed"], false, "{summary}");
    assert_eq!(first::<i64>(&db, "SELECT COUNT(*) FROM dm_users"), before);
    assert_eq!(runs(d, "duckdb:dw.duckdb").len(), 1);
    // Freshness before the COMMIT: the real data is years old.
    let (code, _, said) = etl(
        d,
        "duckdb:fresh.duckdb",
        &logs,
        &["--check", "--max-age", "26h"],
    );
    assert_eq!(code, 4, "{said}");
    assert!(said.contains("freshness:ft_songplays"), "{said}");
    // --max-age alone is a check without --check: bad usage.
    let (code, _, said) = etl(d, "duckdb:fresh.duckdb", &logs, &["--max-age", "26h"]);
    assert_eq!(code, 2, "{said}");
    // The dry run shows the checks and the run's row before the COMMIT.
    let out = sparkify(
        d,
        &[
            "etl",
            "--songs",
            "x",
            "--events",
            "y",
            "--sink",
            "duckdb:dw.duckdb",
            "--check",
            "--dry-run",
        ],
    );
    let plan = String::from_utf8_lossy(&out.stdout);
    let at = |s: &str| plan.find(s).unwrap_or_else(|| panic!("{s} not in {plan}"));
    assert!(at("-- check unique_key:dm_users") < at("INSERT INTO etl_runs"));
    assert!(at("INSERT INTO etl_runs") < at("COMMIT;"));
}

/// `logs` with one more field, `"mood": "happy"`, in the record on line `line` of `day`;
/// the day's path.
fn with_mood(logs: &Path, day: &str, line: usize) -> PathBuf {
    let path = logs.join(day);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| match i + 1 == line {
            true => l.replacen('{', "{\"mood\":\"happy\",", 1),
            false => l.to_owned(),
        })
        .collect();
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    path
}

#[test]
fn a_new_field_is_reported_with_its_file_and_line_and_fail_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let logs = logs_of(d, "logs", &days());
    let (code, _, said) = etl(d, "duckdb:dw.duckdb", &logs, &[]);
    assert_eq!(code, 0, "{said}");
    assert!(
        !said.contains("warning"),
        "the real data holds no drift: {said}"
    );
    let db = d.join("dw.duckdb");
    let before: i64 = first(&db, "SELECT COUNT(*) FROM staging_events");
    let mood = with_mood(&logs, "2018-11-05-events.json", 3);
    let at = format!("{}:3", mood.display());

    // --on-new-field fail: nothing committed, exit 2, the field, its file and line named.
    let (code, summary, said) = etl(d, "duckdb:dw.duckdb", &logs, &["--on-new-field", "fail"]);
    assert_eq!(code, 2, "{said}");
    assert!(
        said.contains(&format!("new fields in the input: field `mood` of staging_events, first at {at}, in 1 record (string)")),
        "{said}"
    );
    assert_eq!(summary["committed"], false);
    assert_eq!(
        first::<i64>(&db, "SELECT COUNT(*) FROM staging_events"),
        before
    );
    assert_eq!(runs(d, "duckdb:dw.duckdb").len(), 1);

    // warn (the default): loaded without it, said, in the summary and in schema_drift.
    let (code, summary, said) = etl(d, "duckdb:dw.duckdb", &logs, &[]);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains(&format!("warning: new field `mood` of staging_events, first at {at}, in 1 record (string): not loaded")),
        "{said}"
    );
    cli::assert_summary_valid(&d.join("summary.json"));
    let drift = &summary["schema_drift"];
    assert_eq!(
        drift,
        &serde_json::json!([{
            "table": "staging_events", "field": "mood", "json_type": "string",
            "kind": "new_field", "first_source": mood.display().to_string(),
            "first_line": 3, "records": 1
        }]),
        "{summary}"
    );
    let run = summary["run_id"].as_str().unwrap();
    assert_eq!(
        sql(
            d,
            "duckdb:dw.duckdb",
            "SELECT run_id, table_name, field, json_type, drift, first_line, records FROM schema_drift"
        ),
        [format!("{run},staging_events,mood,string,new_field,3,1")]
    );
    // ignore: loaded, nothing said, still recorded.
    let (code, _, said) = etl(d, "duckdb:dw.duckdb", &logs, &["--on-new-field", "ignore"]);
    assert_eq!(code, 0, "{said}");
    assert!(!said.contains("mood"), "{said}");
    assert_eq!(
        sql(d, "duckdb:dw.duckdb", "SELECT COUNT(*) FROM schema_drift"),
        ["2"]
    );

    // A value of a type its column cannot take: a reject, and drift of another type.
    let day = logs.join("2018-11-06-events.json");
    let text = std::fs::read_to_string(&day).unwrap();
    let ts = text.lines().next().unwrap();
    let bad = ts.replacen("\"ts\":", "\"ts\":\"yesterday\",\"was\":", 1);
    std::fs::write(&day, text.replacen(ts, &bad, 1)).unwrap();
    let (code, summary, said) = etl(d, "duckdb:dw.duckdb", &logs, &["--max-errors", "1"]);
    assert_eq!(code, 0, "{said}");
    let kinds: Vec<(&str, &str, &str)> = summary["schema_drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap(),
                e["json_type"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("mood", "string", "new_field"),
            ("ts", "string", "other_type"),
            ("was", "number", "new_field")
        ],
        "{summary}"
    );
    assert!(
        said.contains("field `ts` of staging_events, first at"),
        "{said}"
    );
    assert!(
        said.contains("holds a string, which its column cannot take"),
        "{said}"
    );
}

#[test]
fn a_parquet_lake_is_checked_in_memory_and_keeps_no_history() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let logs = logs_of(d, "logs", &days());
    let (code, _, said) = etl(d, "parquet:lake", &logs, &[]);
    assert_eq!(code, 0, "{said}");
    let out = sparkify(d, &["check", "--sink", "parquet:lake", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let outcomes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    // Every check but row conservation: a lake keeps no etl_files.
    assert_eq!(outcomes.len(), 14, "{outcomes:#?}");
    assert!(
        outcomes.iter().all(|o| o["result"] == "ok"),
        "{outcomes:#?}"
    );
    std::fs::write(logs.join("premium.json"), premium_event()).unwrap();
    let (code, _, said) = etl(d, "parquet:bad", &logs, &[]);
    assert_eq!(code, 0, "{said}");
    let out = sparkify(d, &["check", "--sink", "parquet:bad"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out)
            .contains("error: parquet:bad: 1 of 14 checks failed: accepted_values:dm_users.level"),
        "{}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("9999: premium"));
    // --check before a lake is in place needs SQL the lake does not run.
    let (code, _, said) = etl(d, "parquet:lake", &logs, &["--check"]);
    assert_eq!(code, 2, "{said}");
}
