//! The warehouse sink against a real PostgreSQL server the test starts, and the Redshift SQL
//! checked exactly (no cluster can run here).
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use sparkify_core::model::{self, SongplaysMode};
use sparkify_core::reject::rejects_batch;
use sparkify_core::sink::TablesAction;
use sparkify_core::table::{ALL_TABLES, STAGING_EVENTS, SqlType, TableDef};
use sparkify_core::{Reject, Sink, text};
use sparkify_sink_redshift::upload::{self, UploadOptions};
use sparkify_sink_redshift::{
    CopySettings, QueryResult, RedshiftSection, WarehouseConfig, WarehouseSink,
};
use sparkify_test_support::assert_tables_eq;
use sparkify_test_support::fixtures::{Staged, load, staged};
use sparkify_test_support::moto;
use sparkify_test_support::pg::PgServer;

fn sink(pg: &PgServer, mode: SongplaysMode) -> WarehouseSink {
    WarehouseSink::new(WarehouseConfig::postgres(pg.url().parse().unwrap(), mode))
}

/// A table from the server, rows in key order (text keys by bytes); a table without a key
/// by every column.
fn server_rows(sink: &WarehouseSink, table: &TableDef) -> Vec<Vec<Option<String>>> {
    let cols: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let key: &[&str] = match table.primary_key {
        [] => &cols,
        key => key,
    };
    let order: Vec<String> = key
        .iter()
        .map(|k| {
            let text = table
                .columns
                .iter()
                .any(|c| c.name == *k && c.ty == SqlType::Text);
            if text {
                format!("{k} COLLATE \"C\"")
            } else {
                (*k).to_owned()
            }
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        cols.join(", "),
        table.name,
        order.join(", ")
    );
    sink.query(&sql).unwrap().rows
}

fn count(sink: &WarehouseSink, table: &str) -> i64 {
    let r = sink
        .query(&format!("SELECT count(*) FROM {table}"))
        .unwrap();
    r.rows[0][0].as_deref().unwrap().parse().unwrap()
}

#[test]
fn postgres_builds_the_same_star_schema_as_the_in_memory_model() {
    let pg = PgServer::start();
    let s = staged();
    let rejects = vec![Reject {
        source: Arc::from("log_data/bad.json"),
        line: 7,
        byte_offset: 1234,
        column: Some("sessionId".into()),
        reason: "expected an integer, found string \"abc\"".into(),
        raw: r#"{"sessionId":"abc","note":"it's a \ backslash"}"#.into(),
    }];
    let errors = rejects_batch(
        &rejects,
        &sparkify_core::history::RunStamp::at(1_700_000_000_123),
    );
    for mode in [SongplaysMode::Matched, SongplaysMode::All] {
        let star = model::build(&s.events, &s.songs, mode).unwrap();
        let mut sink = sink(&pg, mode);
        sink.check().unwrap();
        // Twice: a second load of the same data gives the same tables.
        for _ in 0..2 {
            sink.load(load(&s, &star, &errors)).unwrap();
            for (table, rows) in star.tables() {
                let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
                assert_tables_eq!(
                    columns = columns;
                    server_rows(&sink, table),
                    text::rows(&rows.to_batch().unwrap()),
                    "{} ({mode:?})",
                    table.name
                );
            }
        }
        let expected_plays = if mode == SongplaysMode::Matched {
            333
        } else {
            6820
        };
        for (table, rows) in [
            ("staging_events", 8056),
            ("staging_songs", 14896),
            ("ft_songplays", expected_plays),
            ("dm_users", 97),
            ("dm_songs", 14896),
            ("dm_artists", 9553),
            ("dm_time", 6813),
            ("load_errors", 1),
        ] {
            assert_eq!(count(&sink, table), rows, "{table}");
        }
        let le = sink.query("SELECT source, line, byte_offset, column_name, raw_text, run_started_at FROM load_errors").unwrap();
        assert_eq!(
            le.rows[0],
            [
                Some("log_data/bad.json".into()),
                Some("7".into()),
                Some("1234".into()),
                Some("sessionId".into()),
                Some(rejects[0].raw.clone()),
                Some("2023-11-14 22:13:20.123".into())
            ]
        );
    }
    let sink = sink(&pg, SongplaysMode::Matched);
    let top = sink
        .query(
            "SELECT s.title, a.name, count(*) FROM ft_songplays p JOIN dm_songs s USING (song_id)
             JOIN dm_artists a ON a.artist_id = p.artist_id GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 1",
        )
        .unwrap();
    assert_eq!(
        top.rows[0],
        [
            Some("You're The One".into()),
            Some("Dwight Yoakam".into()),
            Some("37".into())
        ]
    );
}

#[test]
fn tables_create_and_drop() {
    let pg = PgServer::start();
    let mut sink = sink(&pg, SongplaysMode::Matched);
    sink.execute(&sink.tables_sql(TablesAction::Create).unwrap())
        .unwrap();
    let names = sink
        .query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
        .unwrap();
    // Every table, the run history and the schema drift included.
    let mut expected: Vec<Option<String>> = sparkify_core::table::SINK_TABLES
        .iter()
        .chain([
            &&sparkify_core::table::ETL_RUNS,
            &&sparkify_core::table::SCHEMA_DRIFT,
        ])
        .map(|t| Some(t.name.to_owned()))
        .collect();
    expected.sort();
    assert_eq!(
        names
            .rows
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect::<Vec<_>>(),
        expected
    );
    // Staging columns keep the JSON key names, folded to lower case as Redshift does.
    let cols = sink.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'staging_events' AND column_name = 'iteminsession'").unwrap();
    assert_eq!(cols.rows.len(), 1);
    sink.execute(&sink.tables_sql(TablesAction::Drop).unwrap())
        .unwrap();
    let left = sink
        .query("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        .unwrap();
    assert_eq!(left.rows[0][0].as_deref(), Some("0"));
}

#[test]
fn killing_the_backend_during_the_transform_leaves_the_previous_tables() {
    let pg = PgServer::start();
    let s = staged();
    let star = model::build(&s.events, &s.songs, SongplaysMode::Matched).unwrap();
    let errors = rejects_batch(&[], &sparkify_core::history::RunStamp::at(0));
    let mut good = sink(&pg, SongplaysMode::Matched);
    good.load(load(&s, &star, &errors)).unwrap();
    let before = every_table(&pg);

    // Many copies of the logs make the transform run long enough to be caught in the act.
    let copies: Vec<RecordBatch> = (0..40).map(|_| s.events.clone()).collect();
    let big = Staged {
        events: concat_batches(&STAGING_EVENTS.schema(), &copies).unwrap(),
        songs: s.songs.clone(),
        etl_files: s.etl_files.clone(),
    };
    let url = pg.url();
    let loader = std::thread::spawn(move || {
        let mut victim = WarehouseSink::new(WarehouseConfig::postgres(
            url.parse().unwrap(),
            SongplaysMode::Matched,
        ));
        let star = model::build(&big.events, &big.songs, SongplaysMode::Matched).unwrap();
        victim.load(load(
            &big,
            &star,
            &rejects_batch(&[], &sparkify_core::history::RunStamp::at(0)),
        ))
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let killed = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let rows = client
                .query(
                    "SELECT pid, query FROM pg_stat_activity WHERE application_name = 'sparkify'
                     AND state = 'active' AND query LIKE 'INSERT INTO%' AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap();
            if let Some(row) = rows.first() {
                let pid: i32 = row.get(0);
                let query: String = row.get(1);
                client.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap();
                return Some(query);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    });
    let result = loader.join().unwrap();
    let query = killed.expect("the transform was never seen running");
    assert!(query.starts_with("INSERT INTO"), "{query}");
    // As a person reads it: the error and its causes.
    let err = sparkify_core::error::chain(&result.expect_err("the killed load must fail"));
    assert!(
        err.contains("INSERT INTO"),
        "the error names the statement: {err}"
    );
    assert!(err.contains("failed:"), "{err}");

    let after = every_table(&pg);
    assert!(before == after, "the previous tables changed");
    assert_eq!(
        count(&sink(&pg, SongplaysMode::Matched), "staging_events"),
        8056
    );
}

/// Every table's rows, in a stable order, for before/after comparisons.
fn every_table(pg: &PgServer) -> Vec<QueryResult> {
    let sink = sink(pg, SongplaysMode::Matched);
    ALL_TABLES
        .iter()
        .map(|t| {
            sink.query(&format!("SELECT * FROM {} ORDER BY 1, 2, 3", t.name))
                .unwrap()
        })
        .collect()
}

fn redshift_copy() -> CopySettings {
    CopySettings {
        copy_from: None,
        events: Some("s3://udacity-dend/log_data".into()),
        songs: Some("s3://udacity-dend/song_data".into()),
        jsonpaths: Some("s3://udacity-dend/log_json_path.json".into()),
        iam_role: Some("arn:aws:iam::123456789012:role/dwhRole".into()),
        region: Some("us-west-2".into()),
        upload_prefix: None,
        serverless: false,
    }
}

fn redshift(copy: CopySettings) -> WarehouseSink {
    WarehouseSink::new(WarehouseConfig::redshift(
        &RedshiftSection::default(),
        copy,
        SongplaysMode::Matched,
    ))
}

#[test]
fn redshift_statements_are_exactly_these() {
    let sink = redshift(redshift_copy());
    insta::assert_snapshot!("redshift_load_plan", sink.plan().unwrap().join(";\n\n"));
    insta::assert_snapshot!(
        "redshift_stl_load_errors",
        sparkify_sink_redshift::skipped_query(false, Some(41))
    );
    insta::assert_snapshot!(
        "redshift_serverless_load_errors",
        sparkify_sink_redshift::skipped_query(true, Some(41))
    );
    let pg = WarehouseSink::new(WarehouseConfig::postgres(
        "postgres://nobody@127.0.0.1:1/nowhere".parse().unwrap(),
        SongplaysMode::All,
    ));
    insta::assert_snapshot!("postgres_load_plan", pg.plan().unwrap().join(";\n\n"));
    let parquet = redshift(CopySettings {
        copy_from: Some("parquet".into()),
        upload_prefix: Some("s3://sparkify-staging/run/".into()),
        ..redshift_copy()
    });
    insta::assert_snapshot!(
        "redshift_parquet_load_plan",
        parquet.plan().unwrap().join(";\n\n")
    );
}

#[test]
fn parquet_staging_uploads_parts_a_manifest_and_nothing_stale() {
    let moto = moto::Moto::shared();
    let bucket = moto.bucket("redshift-staging");
    let s3 = moto.s3();
    let prefix = sparkify_s3::S3Url::parse(&format!("s3://{bucket}/staging")).unwrap();
    let s = staged();
    // Small parts: several, a multiple of the slices.
    let small = UploadOptions {
        part_bytes: 256 << 10,
        slices: 2,
        concurrency: 8,
    };
    let staged = upload::upload_table(&s3, &prefix, &STAGING_EVENTS, &s.events, &small).unwrap();
    assert_eq!(staged.rows, 8056);
    assert!(
        staged.parts.len() >= 2 && staged.parts.len().is_multiple_of(2),
        "{}",
        staged.parts.len()
    );
    assert_eq!(
        staged.manifest.to_string(),
        format!("s3://{bucket}/staging/staging_events.manifest")
    );

    // Each part, fetched, as long as its listing says, decoded; all of them in one batch.
    let read_back = |parts: &[(sparkify_s3::S3Url, u64)]| {
        let mut batches = Vec::new();
        for (url, len) in parts {
            let body = s3.get(url).unwrap();
            assert_eq!(body.len() as u64, *len, "{url}");
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::from(body),
            )
            .unwrap()
            .build()
            .unwrap();
            batches.extend(reader.map(|b| b.unwrap()));
        }
        concat_batches(&batches[0].schema(), &batches).unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&s3.get(&staged.manifest).unwrap()).unwrap();
    let entries: Vec<(sparkify_s3::S3Url, u64)> = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            assert_eq!(entry["mandatory"], serde_json::Value::Bool(true));
            let url = sparkify_s3::S3Url::parse(entry["url"].as_str().unwrap()).unwrap();
            (url, entry["meta"]["content_length"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(entries, staged.parts);
    // The parts, in manifest order, are the staging table, timestamps in microseconds.
    let want = sparkify_parquet::for_parquet(&s.events).unwrap();
    assert_eq!(read_back(&entries).columns(), want.columns());

    // A second run with one part leaves only that part.
    let one = upload::upload_table(
        &s3,
        &prefix,
        &STAGING_EVENTS,
        &s.events,
        &UploadOptions::default(),
    )
    .unwrap();
    assert_eq!(one.parts.len(), 1);
    let left = s3.list(&prefix.join("staging_events/")).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");

    // As a stream gives them: 100 rows at a time, uploaded a chunk at a time as they fill,
    // still a multiple of the slices, the same rows in the same order.
    let mut uploader = upload::Uploader::new(&s3, &prefix, &STAGING_EVENTS, &small);
    for start in (0..s.events.num_rows()).step_by(100) {
        let len = 100.min(s.events.num_rows() - start);
        uploader.push(vec![s.events.slice(start, len)]).unwrap();
    }
    let streamed = uploader.finish().unwrap();
    assert_eq!(streamed.rows, 8056);
    assert!(
        streamed.parts.len() > 2 && streamed.parts.len().is_multiple_of(2),
        "{}",
        streamed.parts.len()
    );
    assert_eq!(read_back(&streamed.parts).columns(), want.columns());
    let left = s3.list(&prefix.join("staging_events/")).unwrap();
    assert_eq!(left.len(), streamed.parts.len(), "{left:?}");
}

/// A Redshift load with the Parquet upload writes its parts and manifests in a folder of its
/// own under the prefix, leaves another load's folder alone, and deletes its own once it has
/// failed. PostgreSQL stands in for the cluster: the test holds a lock on `staging_events`, so
/// the load waits at its first statement, after the upload, for as long as the test looks;
/// then PostgreSQL refuses Redshift's `SORTKEY` and the load fails.
#[test]
fn a_parquet_load_uploads_into_its_own_folder_and_removes_it_after_a_failure() {
    let pg = PgServer::start();
    let moto = moto::Moto::shared();
    let bucket = moto.bucket("redshift-own-folder");
    let s3 = moto.s3();
    let prefix = sparkify_s3::S3Url::parse(&format!("s3://{bucket}/stage")).unwrap();
    // Another load's files, uploaded and not yet copied.
    let theirs = [
        ("stage/load-1-1/staging_events.manifest", b"{}".as_slice()),
        (
            "stage/load-1-1/staging_events/part-00000.parquet",
            b"theirs",
        ),
    ];
    for (key, body) in theirs {
        s3.put(&prefix.with_key(key), body.to_vec()).unwrap();
    }
    let objects = |under: &sparkify_s3::S3Url| -> Vec<String> {
        let mut keys: Vec<String> = s3
            .list_or_empty(under)
            .unwrap()
            .into_iter()
            .map(|o| o.url.key)
            .collect();
        keys.sort();
        keys
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect = || {
        let (client, conn) = rt
            .block_on(tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls))
            .unwrap();
        rt.spawn(conn);
        client
    };
    // One session holds the lock; another watches (a transaction sees one snapshot of
    // pg_stat_activity).
    let (holder, watcher) = (connect(), connect());
    // Committed first, so that the load's DROP sees the table and waits for it.
    rt.block_on(holder.batch_execute("CREATE TABLE staging_events (x INTEGER)"))
        .unwrap();
    rt.block_on(holder.batch_execute("BEGIN; LOCK TABLE staging_events"))
        .unwrap();

    let mut config = WarehouseConfig::redshift(
        &RedshiftSection::default(),
        CopySettings {
            copy_from: Some("parquet".into()),
            upload_prefix: Some(prefix.to_string()),
            ..redshift_copy()
        },
        SongplaysMode::Matched,
    );
    config.connection = sparkify_sink_redshift::Connection::Url(pg.url().parse().unwrap());
    let mut sink = WarehouseSink::new(config).with_s3(s3.clone());
    let loader = std::thread::spawn(move || {
        let s = staged();
        let star = model::build(&s.events, &s.songs, SongplaysMode::Matched).unwrap();
        sink.load(load(
            &s,
            &star,
            &rejects_batch(&[], &sparkify_core::history::RunStamp::at(0)),
        ))
        .map_err(|e| e.to_string())
    });

    // The load waits for the lock once everything is uploaded.
    let deadline = Instant::now() + Duration::from_secs(120);
    let waiting = loop {
        let rows = rt
            .block_on(watcher.query(
                "SELECT query FROM pg_stat_activity WHERE application_name = 'sparkify' \
                 AND wait_event_type = 'Lock'",
                &[],
            ))
            .unwrap();
        if let Some(row) = rows.first() {
            break row.get::<_, String>(0);
        }
        assert!(
            Instant::now() < deadline,
            "the load never waited for the lock"
        );
        if loader.is_finished() {
            panic!("the load ended before it waited: {:?}", loader.join());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        waiting.starts_with("DROP TABLE IF EXISTS staging_events"),
        "{waiting}"
    );
    let during = objects(&prefix.join(""));
    let ours: Vec<&String> = during
        .iter()
        .filter(|k| !k.starts_with("stage/load-1-1/"))
        .collect();
    let folder = ours
        .first()
        .and_then(|k| k.strip_prefix("stage/load-"))
        .and_then(|rest| rest.split_once('/'))
        .map(|(run, _)| format!("stage/load-{run}/"))
        .unwrap_or_else(|| panic!("nothing uploaded under a load folder: {during:?}"));
    assert!(ours.iter().all(|k| k.starts_with(&folder)), "{during:?}");
    for name in ["staging_events", "staging_songs"] {
        let manifest = format!("{folder}{name}.manifest");
        assert!(ours.contains(&&manifest), "{manifest} not in {during:?}");
        let body = s3.get(&prefix.with_key(&manifest)).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for entry in manifest["entries"].as_array().unwrap() {
            let url = entry["url"].as_str().unwrap();
            let part = format!("s3://{bucket}/{folder}{name}/part-");
            assert!(url.starts_with(&part), "{url}");
        }
    }

    rt.block_on(holder.batch_execute("ROLLBACK")).unwrap();
    let err = loader
        .join()
        .unwrap()
        .expect_err("PostgreSQL refuses SORTKEY");
    assert!(err.contains("SORTKEY"), "{err}");
    // Only the other load's files are left, as they were.
    let left = objects(&prefix.join(""));
    assert_eq!(left, theirs.map(|(k, _)| k.to_owned()).to_vec());
    for (key, body) in theirs {
        assert_eq!(s3.get(&prefix.with_key(key)).unwrap(), body);
    }
}

#[test]
fn quotes_in_the_iam_role_and_s3_paths_are_escaped() {
    let copy = CopySettings {
        events: Some("s3://bucket/o'brien/log_data".into()),
        iam_role: Some("arn:aws:iam::1:role/it's\\x".into()),
        ..redshift_copy()
    }
    .resolve()
    .unwrap();
    let events = sparkify_sink_redshift::copy_events_sql(&copy);
    assert!(
        events.starts_with("COPY staging_events (artist, auth, firstName, gender, itemInSession, lastName, length, level, location, method, page, registration, sessionId, song, status, ts, userAgent, userId) FROM 's3://bucket/o''brien/log_data'\n"),
        "{events}"
    );
    assert!(
        events.contains("\nIAM_ROLE 'arn:aws:iam::1:role/it''s\\\\x'\n"),
        "{events}"
    );
    let songs = sparkify_sink_redshift::copy_songs_sql(&copy);
    assert!(
        songs.contains("IAM_ROLE 'arn:aws:iam::1:role/it''s\\\\x'"),
        "{songs}"
    );
    // No literal ends early: every quote in the statement is doubled or a delimiter.
    for sql in [&events, &songs] {
        assert_eq!(sql.matches('\'').count() % 2, 0, "{sql}");
    }
}

#[test]
fn an_incremental_load_stops_when_another_load_changed_the_ledger_since_it_was_read() {
    let pg = PgServer::start();
    let s = staged();
    let star = model::build(&s.events, &s.songs, SongplaysMode::Matched).unwrap();
    let errors = rejects_batch(&[], &sparkify_core::history::RunStamp::at(0));
    let mut good = sink(&pg, SongplaysMode::Matched);
    good.load(load(&s, &star, &errors)).unwrap();
    let before = every_table(&pg);

    // The run read a ledger other than the one the database holds now.
    let stale = sparkify_test_support::fixtures::StaleIncrement::default();
    let err = good.load(stale.load()).unwrap_err().to_string();
    assert!(err.contains("another load changed etl_files"), "{err}");
    assert!(every_table(&pg) == before, "the previous tables changed");
}

/// An incremental load that removes the rows of one log file (`events`) and one song file
/// (`songs`), as the ledger has them.
fn removing(events: &str, songs: &str) -> sparkify_core::ledger::Increment {
    use sparkify_core::ledger::{Entry, Increment, Kind};
    let entry = |file_id, kind, path: &str| Entry {
        file_id,
        kind,
        path: path.into(),
        size: 1,
        version: None,
        rows_staged: 1,
        rejects: 0,
    };
    Increment {
        remove: vec![entry(3, Kind::Events, events), entry(7, Kind::Songs, songs)],
        digest: 42,
        kept: vec![],
        mode: SongplaysMode::Matched,
        first_new_id: 8,
        rebuild: false,
    }
}

#[test]
fn an_incremental_redshift_plan_is_exactly_this_and_escapes_every_path() {
    use sparkify_core::sql::{Dialect, RedshiftKeys};
    use sparkify_sink_redshift::plan::{Known, load_plan};
    let copy = CopySettings {
        copy_from: Some("parquet".into()),
        upload_prefix: Some("s3://sparkify-staging/run/".into()),
        ..redshift_copy()
    }
    .resolve()
    .unwrap();
    let increment = removing(
        "s3://logs/o'brien\\x;$$ DROP TABLE dm_users; --.json",
        "s3://songs/$tag$'; SELECT 1; $tag$.json",
    );
    let steps = load_plan(
        &Dialect::Redshift(RedshiftKeys::default()),
        Some(&copy),
        &Known::default(),
        SongplaysMode::Matched,
        std::time::Duration::from_secs(600),
        Some(&increment),
        None,
    );
    let text: Vec<String> = steps.iter().map(|s| s.text()).collect();
    insta::assert_snapshot!("redshift_incremental_plan", text.join(";\n\n"));
    // Quotes doubled and backslashes too (Redshift reads `\` as an escape in literals).
    assert!(
        text.contains(
            &"DELETE FROM load_errors WHERE source IN ('s3://logs/o''brien\\\\x;$$ DROP TABLE \
              dm_users; --.json', 's3://songs/$tag$''; SELECT 1; $tag$.json')"
                .to_owned()
        ),
        "{text:#?}"
    );
}

/// Every statement sparkify sends Redshift, by where it comes from: the loads (COPY from
/// JSON, provisioned and Serverless, matched plays and all; the Parquet upload; an
/// incremental load), `tables create` and `drop`, the analytics questions, `verify`'s
/// fingerprints and row hashes, the load-error queries, and the counts a run reads.
fn redshift_statements() -> Vec<(String, String)> {
    use sparkify_core::analytics::{QUESTIONS, REJECTS_BY_REASON};
    use sparkify_core::fingerprint::{fingerprints_sql, row_hashes_sql};
    use sparkify_core::sql::{self, Dialect, RedshiftKeys};
    use sparkify_sink_redshift::plan::{Known, load_plan};
    let mut out = Vec::new();
    let mut add = |from: &str, statements: Vec<String>| {
        out.extend(statements.into_iter().map(|s| (from.to_owned(), s)));
    };
    let parquet = CopySettings {
        copy_from: Some("parquet".into()),
        upload_prefix: Some("s3://sparkify-staging/run/".into()),
        ..redshift_copy()
    };
    let serverless = CopySettings {
        serverless: true,
        ..redshift_copy()
    };
    for (from, copy, mode) in [
        ("COPY from JSON", redshift_copy(), SongplaysMode::Matched),
        (
            "COPY from JSON, every play",
            redshift_copy(),
            SongplaysMode::All,
        ),
        ("Serverless", serverless.clone(), SongplaysMode::Matched),
        (
            "the Parquet upload",
            parquet.clone(),
            SongplaysMode::Matched,
        ),
    ] {
        let sink = WarehouseSink::new(WarehouseConfig::redshift(
            &RedshiftSection::default(),
            copy,
            mode,
        ));
        add(from, sink.plan().unwrap());
        add(
            "tables create",
            sink.tables_sql(TablesAction::Create).unwrap(),
        );
        add("tables drop", sink.tables_sql(TablesAction::Drop).unwrap());
    }
    for (from, copy) in [
        ("COPY from JSON, --max-errors 10 --check", redshift_copy()),
        ("Serverless, --max-errors 10 --check", serverless),
    ] {
        add(from, closed_plan(copy, 10));
    }
    let dialect = Dialect::Redshift(RedshiftKeys::default());
    let increment = removing("s3://logs/a.json", "s3://songs/b.json");
    let steps = load_plan(
        &dialect,
        Some(&parquet.resolve().unwrap()),
        &Known::default(),
        SongplaysMode::Matched,
        Duration::from_secs(600),
        Some(&increment),
        None,
    );
    add(
        "an incremental load",
        steps.iter().map(|s| s.text()).collect(),
    );
    // The widening before it: what it reads, and what it runs for a column too narrow.
    let mut widths = sparkify_core::sql::Widths::default();
    widths.note("staging_events", "firstName", 1000);
    add(
        "the widening",
        std::iter::once(sparkify_sink_redshift::plan::widths_held_sql())
            .chain(
                sparkify_sink_redshift::plan::widen_sql(
                    &[("staging_events".into(), "firstname".into(), 256)],
                    &widths,
                )
                .unwrap(),
            )
            .collect(),
    );
    add(
        "analytics",
        QUESTIONS.iter().map(|q| q.sql.to_owned()).collect(),
    );
    // A load's closing steps: every check (matched plays and all, with freshness), then its
    // row in the run history.
    for mode in [SongplaysMode::Matched, SongplaysMode::All] {
        let options = sparkify_core::checks::CheckOptions {
            mode,
            max_age: Some(Duration::from_secs(26 * 3600)),
            as_of_ms: Some(1_543_622_400_000),
        };
        let checks = sparkify_core::checks::checks(&options, &dialect);
        add("checks", checks.into_iter().map(|c| c.sql).collect());
    }
    let run = sparkify_core::history::RunRecord {
        stamp: sparkify_core::history::RunStamp::at(1_543_622_400_000),
        command: "sparkify etl --sink redshift --check".into(),
        sink: "redshift".into(),
        incremental: false,
        files: sparkify_core::history::FileCounts::default(),
    };
    add(
        "the run history",
        sparkify_core::history::record_sql(&run, 1_543_622_401_000, true, &dialect, &[]),
    );
    add(
        "the run history with the reconciliation's counts",
        sparkify_core::history::record_sql(
            &run,
            1_543_622_401_000,
            true,
            &dialect,
            &[("staging_events".into(), 8056), ("dm_time".into(), 6813)],
        ),
    );
    let drifted = sparkify_core::drift::Drift {
        table: "staging_events",
        field: "mood".into(),
        json_type: "string",
        kind: sparkify_core::drift::DriftKind::NewField,
        first_source: "s3://logs/o'brien.json".into(),
        first_line: 3,
        records: 1,
    };
    add(
        "schema drift",
        sparkify_core::drift::record_sql(&[drifted], &run.stamp.id, &dialect),
    );
    add("runs", vec![sparkify_core::history::select_runs()]);
    add("analytics --html", vec![REJECTS_BY_REASON.to_owned()]);
    add("verify", vec![fingerprints_sql(&dialect, &ALL_TABLES)]);
    add(
        "verify",
        ALL_TABLES
            .iter()
            .map(|t| row_hashes_sql(&dialect, t))
            .collect(),
    );
    add(
        "the load errors",
        vec![
            sparkify_sink_redshift::skipped_query(false, Some(41)),
            sparkify_sink_redshift::skipped_query(true, Some(41)),
            sparkify_sink_redshift::plan::last_error_id_query(false).to_owned(),
            sparkify_sink_redshift::plan::last_error_id_query(true).to_owned(),
            sparkify_sink_redshift::plan::lock_table_sql(),
            format!("LOCK {}", sparkify_sink_redshift::plan::LOCK_TABLE),
            sparkify_core::sql::renamed_probe(),
        ],
    );
    add(
        "counts",
        vec![
            sql::tables_present(),
            sql::count_rows(&sparkify_core::table::SINK_TABLES),
        ],
    );
    out
}

/// A statement as SQL: its comment lines (what `--dry-run` says of it) left out.
fn without_comments(statement: &str) -> String {
    statement
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why Redshift's grammar (sqlparser's `RedshiftSqlDialect`) refuses `statement`, if it does.
/// sqlparser lacks three forms Redshift documents and sparkify uses, `IDENTITY(seed, step)`
/// on a column, the table attribute `ENCODE AUTO` after the keys, and COPY's `MAXERROR n`
/// on a line of its own: they are taken out before parsing, and only in those exact forms.
fn refused(statement: &str) -> Option<String> {
    let sql = without_comments(statement)
        .replace("BIGINT IDENTITY(0,1)", "BIGINT")
        .replace(")\nENCODE AUTO", ")");
    let sql: Vec<&str> = sql
        .lines()
        .filter(|l| {
            l.strip_prefix("MAXERROR ")
                .is_none_or(|n| n.parse::<u32>().is_err())
        })
        .collect();
    let sql = sql.join("\n");
    let dialect = sqlparser::dialect::RedshiftSqlDialect {};
    sqlparser::parser::Parser::parse_sql(&dialect, &sql)
        .err()
        .map(|e| e.to_string())
}

/// What in `statement` Redshift refuses, or what breaks its transaction: PostgreSQL's
/// advisory locks and `lock_timeout`, `TRUNCATE` (it commits), `COPY … FROM STDIN`,
/// `DISTINCT ON`, `ON CONFLICT`, `RETURNING`, and a `TEXT` column (Redshift makes it
/// `VARCHAR(256)`).
fn unsupported(statement: &str) -> Option<&'static str> {
    let sql = without_comments(statement).to_uppercase();
    let words: Vec<&str> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let has = |phrase: &[&str]| words.windows(phrase.len()).any(|w| w == phrase);
    let creates = words.starts_with(&["CREATE", "TABLE"]);
    [
        (
            words.iter().any(|w| w.starts_with("PG_ADVISORY")),
            "an advisory lock",
        ),
        (has(&["LOCK_TIMEOUT"]), "lock_timeout"),
        (has(&["TRUNCATE"]), "TRUNCATE, which commits"),
        (has(&["FROM", "STDIN"]), "COPY FROM STDIN"),
        (has(&["DISTINCT", "ON"]), "DISTINCT ON"),
        (has(&["ON", "CONFLICT"]), "ON CONFLICT"),
        (has(&["RETURNING"]), "RETURNING"),
        (creates && has(&["TEXT"]), "a TEXT column"),
    ]
    .into_iter()
    .find_map(|(found, what)| found.then_some(what))
}

#[test]
fn every_redshift_statement_parses_in_redshifts_grammar_and_uses_nothing_redshift_refuses() {
    let statements = redshift_statements();
    assert!(statements.len() > 100, "{}", statements.len());
    let mut wrong = Vec::new();
    for (from, statement) in &statements {
        if without_comments(statement).trim().is_empty() {
            // Rows sent as they are (`-- INSERT INTO … VALUES …: the run's rows`): no text.
            continue;
        }
        if let Some(why) = refused(statement) {
            wrong.push(format!(
                "{from}: refused by the grammar ({why}):\n{statement}"
            ));
        }
        if let Some(what) = unsupported(statement) {
            wrong.push(format!("{from}: uses {what}:\n{statement}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    // Both checks bite: a broken statement, and what PostgreSQL takes and Redshift does not.
    assert!(
        refused("CREATE TABLE dm_users (user_id INTEGER NOT NULL,, level VARCHAR(4))").is_some()
    );
    assert!(refused("SELEC user_id FROM dm_users").is_some());
    assert_eq!(
        unsupported("INSERT INTO dm_users SELECT 1 ON CONFLICT DO NOTHING"),
        Some("ON CONFLICT")
    );
    assert_eq!(
        unsupported("CREATE TABLE t (a TEXT)"),
        Some("a TEXT column")
    );
    assert_eq!(
        unsupported("SELECT pg_advisory_xact_lock(1, 2)"),
        Some("an advisory lock")
    );
    // PostgreSQL's plan, which takes its lock and copies from STDIN, is told apart.
    let pg = WarehouseSink::new(WarehouseConfig::postgres(
        "postgres://nobody@127.0.0.1:1/nowhere".parse().unwrap(),
        SongplaysMode::Matched,
    ));
    let pg_plan = pg.plan().unwrap();
    assert!(pg_plan.iter().any(|s| unsupported(s).is_some()));
}

#[test]
fn a_parquet_load_sizes_its_staging_columns_and_an_incremental_one_widens_them_first() {
    use sparkify_core::sql::{Dialect, RedshiftKeys};
    use sparkify_sink_redshift::plan::{Known, Step, load_plan};
    let copy = CopySettings {
        copy_from: Some("parquet".into()),
        upload_prefix: Some("s3://sparkify-staging/run/".into()),
        ..redshift_copy()
    }
    .resolve()
    .unwrap();
    let mut known = Known::default();
    known.widths.note("staging_events", "firstName", 31);
    let dialect = Dialect::Redshift(RedshiftKeys::default());
    let plan = |increment: Option<&sparkify_core::ledger::Increment>| {
        load_plan(
            &dialect,
            Some(&copy),
            &known,
            SongplaysMode::Matched,
            Duration::from_secs(600),
            increment,
            None,
        )
    };
    let full = plan(None);
    let text: Vec<String> = full.iter().map(Step::text).collect();
    let staging = text
        .iter()
        .find(|s| s.starts_with("CREATE TABLE staging_events"))
        .unwrap();
    assert!(staging.contains("    firstName VARCHAR(64),"), "{staging}");
    // The star is made once the staging tables hold the rows it is sized from.
    let at = |f: &dyn Fn(&Step) -> bool| full.iter().position(f).unwrap();
    let copied = at(&|s| matches!(s, Step::CopyS3 { table, .. } if table.name == "staging_songs"));
    let star = at(&|s| matches!(s, Step::CreateStar { .. }));
    assert!(copied < star, "{text:#?}");
    assert!(
        !text[..star]
            .iter()
            .any(|s| s.contains("CREATE TABLE dm_users"))
    );
    // Widening runs before the transaction, as Redshift asks.
    let increment = removing("s3://logs/a.json", "s3://songs/b.json");
    let steps = plan(Some(&increment));
    assert!(matches!(steps[0], Step::Widen(_)), "{:?}", steps[0]);
    let begin = steps
        .iter()
        .position(|s| matches!(s, Step::Sql(s) if s == "BEGIN"))
        .unwrap();
    assert!(
        steps[1..begin]
            .iter()
            .all(|s| matches!(s, Step::Sql(s) if s.starts_with("CREATE TABLE IF NOT EXISTS etl_load_lock"))),
        "{:?}",
        &steps[..=begin]
    );
    assert!(matches!(steps[begin + 1], Step::LockTable));
}

/// The plan of a Redshift load with `copy` as `sparkify etl --max-errors N --check` makes it.
fn closed_plan(copy: CopySettings, max_errors: u64) -> Vec<String> {
    use sparkify_core::Sink;
    let mut sink = WarehouseSink::new(WarehouseConfig::redshift(
        &RedshiftSection::default(),
        copy,
        SongplaysMode::Matched,
    ));
    sink.close_with(sparkify_core::sink::Closing {
        run: sparkify_core::history::RunRecord {
            stamp: sparkify_core::history::RunStamp::at(1_543_622_400_000),
            command: "sparkify etl --sink redshift --max-errors 10 --check".into(),
            sink: "redshift".into(),
            incremental: false,
            files: sparkify_core::history::FileCounts::default(),
        },
        checks: Some(sparkify_core::checks::CheckOptions::default()),
        max_errors,
        drift: Vec::new(),
    });
    sink.plan().unwrap()
}

#[test]
fn max_errors_lets_copy_from_json_skip_bad_records_and_keeps_each_in_load_errors() {
    let plan = closed_plan(redshift_copy(), 10).join(";\n\n");
    // A COPY fails at MAXERROR errors or more: 11 lets the 10 allowed through.
    assert!(
        plan.contains("TIMEFORMAT 'epochmillisecs'\nMAXERROR 11\nCOMPUPDATE OFF"),
        "{plan}"
    );
    assert!(
        plan.contains("FORMAT AS JSON 'auto'\nMAXERROR 11\nCOMPUPDATE OFF"),
        "{plan}"
    );
    // After each COPY, what it skipped, read back with the record's text: the session's rows
    // after the id it had before the COPY (not pg_last_copy_id(), put back by a rollback).
    assert_eq!(
        plan.matches("FROM stl_load_errors\nWHERE session = pg_backend_pid() AND query >")
            .count(),
        2,
        "{plan}"
    );
    assert!(!plan.contains("pg_last_copy_id"), "{plan}");
    assert!(plan.contains("TRIM(raw_line)"), "{plan}");
    let serverless = closed_plan(
        CopySettings {
            serverless: true,
            ..redshift_copy()
        },
        10,
    )
    .join(";\n\n");
    // Before each COPY the session's last id there, after it the rows after that id.
    assert_eq!(serverless.matches("FROM sys_load_error_detail").count(), 4);
    assert_eq!(
        serverless
            .matches("WHERE session_id = pg_backend_pid() AND query_id >")
            .count(),
        2,
        "{serverless}"
    );
    assert!(!serverless.contains("column_value"), "{serverless}");
    // None allowed: no MAXERROR (Redshift's default, 0), and nothing read back.
    let strict = closed_plan(redshift_copy(), 0).join(";\n\n");
    assert!(
        !strict.contains("MAXERROR") && !strict.contains("stl_load_errors"),
        "{strict}"
    );
    // Redshift's limit.
    assert!(
        closed_plan(redshift_copy(), 1_000_000)
            .join("\n")
            .contains("MAXERROR 100000")
    );
}
