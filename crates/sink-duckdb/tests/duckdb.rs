//! The DuckDB sink: both ways of building the star schema agree, and a failed load leaves
//! the previous tables as they were.
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use duckdb::Connection;
use sparkify_core::model::{self, Rows, SLICE_ROWS, SongplaysMode, StarSchema, Times};
use sparkify_core::reject::rejects_batch;
use sparkify_core::sql::Dialect;
use sparkify_core::table::{ALL_TABLES, DM_TIME, SINK_TABLES, STAR_TABLES, TableDef};
use sparkify_core::{Sink, text};
use sparkify_sink_duckdb::{DuckDbSink, Transform};
use sparkify_test_support::assert_tables_eq;
use sparkify_test_support::fixtures::{load, staged};

/// A table's rows as text, in key order; timestamps printed like PostgreSQL's.
fn db_rows(db: &Path, table: &TableDef) -> Vec<Vec<Option<String>>> {
    let conn = Connection::open(db).unwrap();
    let cols: Vec<String> = table
        .columns
        .iter()
        .map(|c| match c.ty {
            sparkify_core::table::SqlType::Timestamp => {
                format!("CAST(epoch_ms({0}) AS BIGINT)", c.name)
            }
            sparkify_core::table::SqlType::Boolean => {
                format!("CASE WHEN {0} THEN 't' ELSE 'f' END", c.name)
            }
            _ => format!("CAST({0} AS VARCHAR)", c.name),
        })
        .collect();
    // A table without a key: by every column, typed (the model writes it in that order).
    let order = if table.primary_key.is_empty() {
        table
            .columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        table.primary_key.join(", ")
    };
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {order}",
        cols.join(", "),
        table.name
    );
    let mut stmt = conn.prepare(&sql).unwrap();
    let n = table.columns.len();
    let rows = stmt
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    if table.columns[i].ty == sparkify_core::table::SqlType::Timestamp {
                        r.get::<_, Option<i64>>(i)
                            .map(|v| v.map(sparkify_core::time::text))
                    } else {
                        r.get::<_, Option<String>>(i)
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Every primary key the file declares, as (table, columns), by table name.
fn db_keys(db: &Path) -> Vec<(String, String)> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT table_name, array_to_string(constraint_column_names, ', ') \
             FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' ORDER BY 1",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn sql_transform_in_duckdb_gives_the_in_memory_tables() {
    let s = staged();
    let dir = tempfile::tempdir().unwrap();
    let errors = rejects_batch(&[], &sparkify_core::history::RunStamp::at(0));
    for mode in [SongplaysMode::Matched, SongplaysMode::All] {
        let star = model::build(&s.events, &s.songs, mode).unwrap();
        // The SQL transforms inside DuckDB, and the in-memory path writing what it built.
        for (name, transform) in [("sql", Transform::Sql(mode)), ("memory", Transform::Memory)] {
            let db = dir.path().join(format!("{name}-{mode:?}.duckdb"));
            DuckDbSink::new(&db)
                .with_transform(transform)
                .load(load(&s, &star, &errors))
                .unwrap();
            for (table, batch) in star.whole().unwrap() {
                let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
                assert_tables_eq!(
                    columns = columns;
                    db_rows(&db, table),
                    text::rows(&batch),
                    "{} ({name}, {mode:?})",
                    table.name
                );
            }
            // The keys added after the rows are the ones DuckDB declares, and they hold.
            let mut declared: Vec<(String, String)> = SINK_TABLES
                .iter()
                .filter(|t| Dialect::DuckDb.declares_key(t))
                .map(|t| (t.name.to_owned(), t.primary_key.join(", ")))
                .collect();
            declared.sort();
            assert_eq!(db_keys(&db), declared, "{name}, {mode:?}");
            let again = Connection::open(&db)
                .unwrap()
                .execute_batch("INSERT INTO dm_users SELECT * FROM dm_users LIMIT 1")
                .unwrap_err()
                .to_string();
            assert!(again.contains("violates primary key"), "{again}");
        }
    }
}

#[test]
fn dm_time_is_appended_whole_from_its_slices() {
    // dm_time is made and appended SLICE_ROWS rows at a time: a table of three slices, the
    // last one short, and times over 19 days (a slice ends mid-day) go in once each.
    let s = staged();
    let star = model::build(&s.events, &s.songs, SongplaysMode::Matched).unwrap();
    let errors = rejects_batch(&[], &sparkify_core::history::RunStamp::at(0));
    let n = 2 * SLICE_ROWS + 12_345;
    let ms: Vec<i64> = (0..n as i64)
        .map(|i| 1_541_030_400_000 + i * 3_001)
        .collect();
    let big = StarSchema {
        dm_time: Times::new(ms),
        ..star
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.duckdb");
    DuckDbSink::new(&db).load(load(&s, &big, &errors)).unwrap();
    let columns: Vec<&str> = DM_TIME.columns.iter().map(|c| c.name).collect();
    let want = Rows::Times(&big.dm_time).to_batch().unwrap();
    assert_eq!(want.num_rows(), n);
    assert_tables_eq!(
        columns = columns;
        db_rows(&db, &DM_TIME),
        text::rows(&want),
        "dm_time"
    );
}

#[test]
fn a_failed_load_leaves_the_previous_tables() {
    let s = staged();
    let star = model::build(&s.events, &s.songs, SongplaysMode::Matched).unwrap();
    let errors = rejects_batch(&[], &sparkify_core::history::RunStamp::at(0));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.duckdb");
    let mut sink = DuckDbSink::new(&db);
    sink.load(load(&s, &star, &errors)).unwrap();
    let before: Vec<_> = ALL_TABLES.iter().map(|t| db_rows(&db, t)).collect();

    let twice = |b: &RecordBatch| concat_batches(&b.schema(), [b, b]).unwrap();
    // What a load of `broken` fails with; it leaves the previous tables.
    let mut fails = |broken: StarSchema| {
        let err = sink
            .load(load(&s, &broken, &errors))
            .unwrap_err()
            .to_string();
        let after: Vec<_> = ALL_TABLES.iter().map(|t| db_rows(&db, t)).collect();
        assert!(before == after, "the previous tables changed: {err}");
        err
    };

    // dm_users twice over: its primary key fails half-way through the load.
    let err = fails(StarSchema {
        dm_users: twice(&star.dm_users),
        ..star.clone()
    });
    let smallest = star
        .dm_users
        .column_by_name("user_id")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int32Type>()
        .iter()
        .flatten()
        .min()
        .unwrap();
    assert!(
        err.contains(&format!(
            "dm_users holds its primary key (user_id) = {smallest} 2 times"
        )),
        "{err}"
    );
    assert_eq!(STAR_TABLES.len(), 6);

    // dm_time, whose key DuckDB does not declare, twice over: the load's own check fails it.
    let start_time = star.dm_time.start_time();
    let ms = start_time
        .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
        .values();
    let err = fails(StarSchema {
        dm_time: Times::new([&ms[..], &ms[..]].concat()),
        ..star.clone()
    });
    assert!(
        err.contains("dm_time holds its primary key (start_time) = ") && err.contains(" 2 times"),
        "{err}"
    );
}

#[test]
fn a_query_may_give_a_column_of_type_null() {
    // `sparkify sql "SELECT NULL AS x"` panicked inside duckdb-rs reading such a column.
    let dir = tempfile::tempdir().unwrap();
    let mut sink = DuckDbSink::new(dir.path().join("q.duckdb"));
    let r = sink
        .query("SELECT NULL AS nothing, 1 AS one UNION ALL SELECT NULL, 2")
        .unwrap();
    assert_eq!(r.columns, ["nothing", "one"]);
    assert_eq!(
        r.rows,
        [[None, Some("1".to_owned())], [None, Some("2".to_owned())]]
    );
}

#[test]
fn plan_lists_every_statement() {
    let plan = DuckDbSink::new("x.duckdb")
        .with_transform(Transform::Sql(SongplaysMode::Matched))
        .plan()
        .unwrap();
    assert_eq!(plan.first().map(String::as_str), Some("BEGIN"));
    assert_eq!(plan.last().map(String::as_str), Some("COMMIT"));
    assert!(
        plan.iter()
            .any(|s| s.starts_with("INSERT INTO ft_songplays"))
    );
    // Only staging comes from the run's batches; the star schema is built by the SQL. The
    // events are scanned as they are read.
    let scans: Vec<&String> = plan
        .iter()
        .filter(|s| s.contains("FROM sparkify_batch") || s.contains("FROM sparkify_stream"))
        .collect();
    assert_eq!(scans.len(), 4, "{scans:?}");
    assert!(scans[0].starts_with("-- INSERT INTO staging_events SELECT * FROM sparkify_stream(?)"));
    assert!(scans[1].starts_with("-- INSERT INTO staging_songs "));
    assert!(scans[2].starts_with("-- INSERT INTO load_errors "));
    assert!(scans[3].starts_with("-- INSERT INTO etl_files "));
}

#[test]
fn tables_append_under_a_memory_cap_and_get_their_keys_after_all_rows() {
    for sink in [
        DuckDbSink::new("x.duckdb"),
        DuckDbSink::new("x.duckdb").with_transform(Transform::Sql(SongplaysMode::Matched)),
    ] {
        let plan = sink.plan().unwrap();
        let at = |prefix: &str| {
            plan.iter()
                .position(|s| s.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {plan:#?}"))
        };
        // No table is created with its key, so no append maintains an index: every append
        // runs under the cap.
        assert!(
            !plan
                .iter()
                .any(|s| s.starts_with("CREATE TABLE") && s.contains("PRIMARY KEY")),
            "{plan:#?}"
        );
        // One cap over every append (set once: each SET and RESET evicts), reset before the
        // keys are checked and built.
        let appends: Vec<usize> = plan
            .iter()
            .enumerate()
            .filter(|(_, s)| s.starts_with("-- INSERT INTO "))
            .map(|(i, _)| i)
            .collect();
        assert!(appends.len() >= 4, "{plan:#?}");
        let (first, last) = (appends[0], *appends.last().unwrap());
        assert_eq!(last - first + 1, appends.len(), "{plan:#?}");
        assert!(
            plan[first - 1].starts_with("SET memory_limit = '"),
            "{plan:#?}"
        );
        assert_eq!(plan[last + 1], "RESET memory_limit");
        let caps = plan
            .iter()
            .filter(|s| s.starts_with("SET memory_limit"))
            .count();
        assert_eq!(caps, 1, "{plan:#?}");
        // The keys come after every row is in (appends and SQL transforms), after one check
        // of them all, then the commit.
        let keys: Vec<usize> = plan
            .iter()
            .enumerate()
            .filter(|(_, s)| s.contains("ADD PRIMARY KEY"))
            .map(|(i, _)| i)
            .collect();
        // The keys DuckDB declares: three of the star tables' (not the fact's, dm_time's or
        // the keyless history's) and the ledger's.
        let declared = SINK_TABLES
            .iter()
            .filter(|t| Dialect::DuckDb.declares_key(t));
        assert_eq!(keys.len(), declared.count(), "{plan:#?}");
        assert_eq!(keys.len(), 4, "{plan:#?}");
        assert_eq!(keys.last().unwrap() - keys[0] + 1, keys.len(), "{plan:#?}");
        let last_insert = plan
            .iter()
            .rposition(|s| s.contains("INSERT INTO"))
            .unwrap();
        let check = &plan[keys[0] - 1];
        assert!(keys[0] - 1 > last_insert, "{plan:#?}");
        assert!(
            check.starts_with("-- fails the load if it returns a row:\n(SELECT"),
            "{plan:#?}"
        );
        for &k in &keys {
            let table = plan[k].split(' ').nth(2).unwrap();
            assert!(check.contains(&format!("FROM {table} GROUP BY")), "{check}");
        }
        assert_eq!(*keys.last().unwrap() + 1, at("COMMIT"));
    }

    let plan = DuckDbSink::new("x.duckdb").plan().unwrap();
    let events = plan
        .iter()
        .position(|s| s.starts_with("-- INSERT INTO staging_events "))
        .unwrap();
    // DuckDB takes the cap as written (128 MiB, or 64 MiB a core), and the reset undoes it.
    let conn = Connection::open_in_memory().unwrap();
    let limit = || -> String {
        conn.query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0))
            .unwrap()
    };
    let default = limit();
    conn.execute_batch(&plan[events - 1]).unwrap();
    let capped = limit();
    let (number, unit) = capped.split_once(' ').unwrap();
    let mib = number.parse::<f64>().unwrap() * if unit == "GiB" { 1024.0 } else { 1.0 };
    assert!(unit == "MiB" || unit == "GiB", "{capped}");
    assert!(mib >= 128.0, "{capped}");
    let reset = plan.iter().position(|s| s == "RESET memory_limit").unwrap();
    conn.execute_batch(&plan[reset]).unwrap();
    assert_eq!(limit(), default);
}

#[test]
fn an_incremental_load_stops_when_another_load_changed_the_ledger_since_it_was_read() {
    let s = staged();
    let star = model::build(&s.events, &s.songs, SongplaysMode::Matched).unwrap();
    let errors = rejects_batch(&[], &sparkify_core::history::RunStamp::at(0));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.duckdb");
    let mut sink = DuckDbSink::new(&db);
    sink.load(load(&s, &star, &errors)).unwrap();
    let before: Vec<_> = ALL_TABLES.iter().map(|t| db_rows(&db, t)).collect();

    // The run read a ledger other than the one the file holds now.
    let stale = sparkify_test_support::fixtures::StaleIncrement::default();
    let err = sink.load(stale.load()).unwrap_err().to_string();
    assert!(err.contains("another load changed etl_files"), "{err}");
    let after: Vec<_> = ALL_TABLES.iter().map(|t| db_rows(&db, t)).collect();
    assert!(before == after, "the previous tables changed");
}
