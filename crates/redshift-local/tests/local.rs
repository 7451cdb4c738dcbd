//! Each rule of the local Redshift, biting: a real PostgreSQL behind it, moto's S3 for COPY.
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::sync::Arc;

use sparkify_s3::S3Url;
use sparkify_test_support::moto::Moto;
use sparkify_test_support::redshift::LocalRedshift;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const ROLE: &str = "arn:aws:iam::123456789012:role/dwhRole";

struct Db {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Db {
    fn connect(rs: &LocalRedshift) -> Db {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&rs.url(), NoTls).await.unwrap();
            tokio::spawn(conn);
            client
        });
        Db { rt, client }
    }

    fn exec(&self, sql: &str) -> Result<(), (String, String)> {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .map_err(|e| match e.as_db_error() {
                Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
                None => ("?".into(), e.to_string()),
            })
    }

    fn ok(&self, sql: &str) {
        if let Err(e) = self.exec(sql) {
            panic!("{sql}: {e:?}");
        }
    }

    /// The error `sql` gets: (SQLSTATE, message).
    fn refused(&self, sql: &str) -> (String, String) {
        self.exec(sql).expect_err(sql)
    }

    fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let messages = self
            .rt
            .block_on(self.client.simple_query(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    }

    fn one(&self, sql: &str) -> String {
        self.rows(sql)[0][0].clone().unwrap_or_default()
    }
}

fn put(moto: &Moto, url: &str, body: &[u8]) {
    moto.s3()
        .put(&S3Url::parse(url).unwrap(), body.to_vec())
        .unwrap();
}

fn bucket(moto: &Moto, name: &str) -> String {
    static MADE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap();
    if !made.iter().any(|b| b == name) {
        moto.bucket(name);
        made.push(name.to_owned());
    }
    name.to_owned()
}

#[test]
fn a_reserved_word_is_refused_unquoted_with_redshifts_message() {
    let moto = Moto::shared();
    let rs = LocalRedshift::start(moto, false);
    let db = Db::connect(&rs);
    let (code, message) =
        db.refused("CREATE TABLE load_errors (source VARCHAR(16), raw VARCHAR(2048))");
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("42601", "syntax error at or near \"raw\"")
    );
    // PostgreSQL itself would have taken it.
    rs.pg
        .psql("CREATE TABLE pg_takes_it (raw VARCHAR(10)); DROP TABLE pg_takes_it");
    db.ok("CREATE TABLE load_errors (source VARCHAR(16), \"raw\" VARCHAR(2048), raw_text VARCHAR(16))");
    db.refused("SELECT open FROM load_errors");
    let long = "x".repeat(128);
    db.refused(&format!("CREATE TABLE {long} (a INTEGER)"));
}

#[test]
fn varchar_counts_bytes_and_a_value_one_byte_too_long_is_refused() {
    let rs = LocalRedshift::start(Moto::shared(), false);
    let db = Db::connect(&rs);
    db.ok("CREATE TABLE names (name VARCHAR(3), note TEXT)");
    db.ok("INSERT INTO names (name) VALUES ('éa')");
    let (code, message) = db.refused("INSERT INTO names (name) VALUES ('éé')");
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("22001", "value too long for type character varying(3)")
    );
    // TEXT is VARCHAR(256).
    assert_eq!(
        db.one("SELECT type FROM pg_table_def WHERE tablename = 'names' AND \"column\" = 'note'"),
        "character varying(256)"
    );
    db.refused(&format!(
        "INSERT INTO names (note) VALUES ('{}')",
        "a".repeat(257)
    ));
    assert_eq!(
        db.refused("CREATE TABLE wide (a VARCHAR(65536))").0,
        "22023"
    );
    db.refused("CREATE TABLE j (a JSONB)");
    db.refused("CREATE TABLE s (a SERIAL)");
    db.refused("CREATE TABLE arr (a INTEGER[])");
    db.refused("CREATE INDEX i ON names (name)");
    db.refused("INSERT INTO names (name) VALUES ('a') RETURNING name");
    db.refused("SELECT DISTINCT ON (name) name FROM names");
    db.refused("SELECT pg_advisory_xact_lock(1, 2)");
    db.refused("SET lock_timeout = '1s'");
}

#[test]
fn identity_keys_and_encodings_are_taken_and_recorded() {
    let rs = LocalRedshift::start(Moto::shared(), false);
    let db = Db::connect(&rs);
    db.ok(
        "CREATE TABLE plays (id BIGINT IDENTITY(0,1) NOT NULL, song_id VARCHAR(32) NOT NULL, ts TIMESTAMP, PRIMARY KEY (id)) \
         DISTSTYLE KEY DISTKEY (song_id) SORTKEY (ts) ENCODE AUTO",
    );
    db.ok("INSERT INTO plays (song_id, ts) VALUES ('a', TIMESTAMP '2018-11-01 00:00:00'), ('b', NULL)");
    assert_eq!(db.one("SELECT MIN(id) || '-' || MAX(id) FROM plays"), "0-1");
    assert_eq!(
        db.rows("SELECT \"column\", distkey, sortkey, encoding FROM pg_table_def WHERE tablename = 'plays' ORDER BY 1"),
        [
            ["id", "f", "0", "auto"].map(|s| Some(s.to_owned())).to_vec(),
            ["song_id", "t", "0", "auto"].map(|s| Some(s.to_owned())).to_vec(),
            ["ts", "f", "1", "auto"].map(|s| Some(s.to_owned())).to_vec(),
        ]
    );
    assert_eq!(
        db.one("SELECT diststyle FROM svv_table_info WHERE \"table\" = 'plays'"),
        "KEY(song_id)"
    );
    db.refused("CREATE TABLE two (a INTEGER DISTKEY, b INTEGER) DISTKEY (b)");
    db.refused("CREATE TABLE missing (a INTEGER) SORTKEY (b)");
    db.refused("CREATE TABLE nokey (a INTEGER) DISTSTYLE KEY");
    db.refused("CREATE TABLE textid (a VARCHAR(3) IDENTITY(0,1))");
}

#[test]
fn alter_column_type_is_refused_in_a_transaction_and_on_a_key_and_widens_otherwise() {
    let rs = LocalRedshift::start(Moto::shared(), false);
    let db = Db::connect(&rs);
    db.ok("CREATE TABLE songs (song_id VARCHAR(4) NOT NULL, title VARCHAR(4), year INTEGER, PRIMARY KEY (song_id))");
    db.ok("BEGIN");
    let (code, message) = db.refused("ALTER TABLE songs ALTER COLUMN title TYPE VARCHAR(16)");
    assert_eq!(code, "25001", "{message}");
    db.ok("ROLLBACK");
    let (_, message) = db.refused("ALTER TABLE songs ALTER COLUMN song_id TYPE VARCHAR(16)");
    assert!(message.contains("PRIMARY KEY"), "{message}");
    db.refused("ALTER TABLE songs ALTER COLUMN year TYPE BIGINT");
    db.ok("ALTER TABLE songs ALTER COLUMN title TYPE VARCHAR(16)");
    db.ok("INSERT INTO songs VALUES ('s1', 'éééééééé', 2000)");
    db.refused("INSERT INTO songs VALUES ('s2', 'éééééééé1', 2000)");
    db.refused("ALTER TABLE songs ALTER COLUMN title TYPE VARCHAR(8)");
}

#[test]
fn truncate_commits_the_transaction_it_runs_in() {
    let rs = LocalRedshift::start(Moto::shared(), false);
    let db = Db::connect(&rs);
    db.ok("CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1)");
    db.ok("BEGIN; CREATE TABLE b (x INTEGER); TRUNCATE a");
    db.ok("ROLLBACK");
    // b was committed by the TRUNCATE, and a stays empty.
    assert_eq!(db.one("SELECT COUNT(*) FROM b"), "0");
    assert_eq!(db.one("SELECT COUNT(*) FROM a"), "0");
}

#[test]
fn a_write_skew_between_two_transactions_fails_with_error_1023() {
    let rs = LocalRedshift::start(Moto::shared(), false);
    let (one, two) = (Db::connect(&rs), Db::connect(&rs));
    one.ok("CREATE TABLE p (x INTEGER); CREATE TABLE q (x INTEGER)");
    one.ok("BEGIN; SELECT COUNT(*) FROM p; INSERT INTO q VALUES (1)");
    two.ok("BEGIN; SELECT COUNT(*) FROM q; INSERT INTO p VALUES (1)");
    one.ok("COMMIT");
    let (code, message) = two.refused("COMMIT");
    assert_eq!((code.as_str(), message.as_str()), ("XX000", "1023"));
    // LOCK, always in the same order, is the remedy ("Serializable isolation").
    one.ok("BEGIN; LOCK p, q");
    one.ok("COMMIT");
}

const EVENTS: &[u8] = b"{\"userId\": \"7\", \"name\": \"ab\", \"ts\": 1541105830796}
{\"userId\": \"x\", \"name\": \"cd\", \"ts\": 1541105830797}
{\"userId\": \"\", \"name\": \"toolong\", \"ts\": 1541105830798}
{\"userId\": 9, \"name\": 4.6, \"ts\": 1541105830799}
";

fn events_table(db: &Db) {
    db.ok("CREATE TABLE ev (userid INTEGER, name VARCHAR(4), ts TIMESTAMP)");
}

#[test]
fn copy_from_json_skips_under_maxerror_and_fails_at_it() {
    let moto = Moto::shared();
    let b = bucket(moto, "rs-local-json");
    put(moto, &format!("s3://{b}/ev/2018-11-01.json"), EVENTS);
    put(
        moto,
        &format!("s3://{b}/paths.json"),
        b"{\"jsonpaths\": [\"$['userId']\", \"$['name']\", \"$['ts']\"]}",
    );
    let rs = LocalRedshift::start(moto, false);
    let db = Db::connect(&rs);
    events_table(&db);
    let copy = |extra: &str| {
        format!(
            "COPY ev FROM 's3://{b}/ev/' IAM_ROLE '{ROLE}' FORMAT AS JSON 's3://{b}/paths.json' TIMEFORMAT 'epochmillisecs' {extra}"
        )
    };
    // Two bad records: MAXERROR 2 fails ("the error_count number of errors or greater").
    let (code, message) = db.refused(&copy("MAXERROR 2"));
    assert_eq!(code, "XX000");
    assert_eq!(
        message,
        "Load into table 'ev' failed.  Check 'stl_load_errors' system table for details."
    );
    let failed = db.one("SELECT pg_last_copy_id()");
    assert_eq!(db.one("SELECT pg_last_copy_count()"), "0");
    assert_eq!(
        db.one(&format!(
            "SELECT COUNT(*) FROM stl_load_errors WHERE query = {failed}"
        )),
        "2"
    );
    db.ok(&copy("MAXERROR 3"));
    assert_eq!(db.one("SELECT pg_last_copy_count()"), "2");
    assert_eq!(
        db.rows("SELECT TRIM(filename), line_number, TRIM(colname), err_code, TRIM(err_reason) FROM stl_load_errors WHERE query = pg_last_copy_id() ORDER BY line_number"),
        vec![
            vec![Some(format!("s3://{b}/ev/2018-11-01.json")), Some("2".into()), Some("userid".into()), Some("1207".into()), Some("Invalid digit, Value 'x', Pos 0, Type: Integer".into())],
            vec![Some(format!("s3://{b}/ev/2018-11-01.json")), Some("3".into()), Some("name".into()), Some("1204".into()), Some("String length exceeds DDL length".into())],
        ]
    );
    // "" is NULL for a number; a number keeps its text in a text column.
    assert_eq!(
        db.rows("SELECT userid, name, ts FROM ev ORDER BY ts"),
        vec![
            vec![
                Some("7".into()),
                Some("ab".into()),
                Some("2018-11-01 20:57:10.796".into())
            ],
            vec![
                Some("9".into()),
                Some("4.6".into()),
                Some("2018-11-01 20:57:10.799".into())
            ],
        ]
    );
    // 'auto' matches lower-case keys only; 'auto ignorecase' any case.
    db.ok("CREATE TABLE ev2 (userid INTEGER, ts TIMESTAMP)");
    db.ok(&format!("COPY ev2 FROM 's3://{b}/ev/' IAM_ROLE '{ROLE}' FORMAT AS JSON 'auto' TIMEFORMAT 'epochmillisecs' MAXERROR 10"));
    assert_eq!(db.one("SELECT COUNT(userid) FROM ev2"), "0");
    db.ok(&format!("COPY ev2 FROM 's3://{b}/ev/' IAM_ROLE '{ROLE}' FORMAT AS JSON 'auto ignorecase' TIMEFORMAT 'epochmillisecs' MAXERROR 10"));
    assert_eq!(db.one("SELECT COUNT(userid) FROM ev2"), "2");
    // Bad parameters fail before the load begins, and leave the copy id alone.
    let id = db.one("SELECT pg_last_copy_id()");
    for bad in [
        format!(
            "COPY ev FROM 's3://{b}/ev/' IAM_ROLE '{ROLE}' FORMAT AS JSON 'auto' MAXERROR 100001"
        ),
        format!("COPY ev FROM 's3://{b}/ev/' FORMAT AS JSON 'auto'"),
        format!(
            "COPY ev FROM 's3://{b}/ev/' IAM_ROLE '{ROLE}' FORMAT AS JSON 'auto' TIMEFORMAT 'EPOCHMILLISECS'"
        ),
        format!("COPY ev FROM 's3://{b}/nothing-here/' IAM_ROLE '{ROLE}' FORMAT AS JSON 'auto'"),
        format!(
            "COPY ev FROM 's3://{b}/ev/' IAM_ROLE '{ROLE}' FORMAT AS PARQUET REGION 'us-east-1'"
        ),
        "COPY ev FROM STDIN".to_owned(),
    ] {
        db.refused(&bad);
    }
    assert_eq!(db.one("SELECT pg_last_copy_id()"), id);
}

#[test]
fn a_copy_rolled_back_leaves_the_copy_id_of_before_its_transaction() {
    let moto = Moto::shared();
    let b = bucket(moto, "rs-local-rollback");
    put(moto, &format!("s3://{b}/ev/a.json"), EVENTS);
    let rs = LocalRedshift::start(moto, false);
    let db = Db::connect(&rs);
    events_table(&db);
    let copy = |maxerror: u32| {
        format!(
            "COPY ev FROM 's3://{b}/ev/' IAM_ROLE '{ROLE}' FORMAT AS JSON 'auto ignorecase' TIMEFORMAT 'epochmillisecs' MAXERROR {maxerror}"
        )
    };
    assert_eq!(db.one("SELECT pg_last_copy_id()"), "-1");
    db.ok("BEGIN");
    db.ok(&copy(10));
    let skipping = db.one("SELECT pg_last_copy_id()");
    db.refused(&copy(1));
    db.ok("ROLLBACK");
    // Neither COPY of the rolled back transaction is the session's last any more: a reader
    // of stl_load_errors WHERE query = pg_last_copy_id() finds no row of either.
    assert_eq!(db.one("SELECT pg_last_copy_id()"), "-1");
    assert_ne!(skipping, "-1");
    assert_eq!(
        db.one("SELECT COUNT(*) FROM stl_load_errors WHERE query = pg_last_copy_id()"),
        "0"
    );
    // Outside a transaction block, a COPY failing on its data updates it.
    db.refused(&copy(1));
    assert_ne!(db.one("SELECT pg_last_copy_id()"), "-1");
}

#[test]
fn serverless_has_only_the_sys_views_whose_query_id_is_not_the_copy_id() {
    let moto = Moto::shared();
    let b = bucket(moto, "rs-local-serverless");
    put(moto, &format!("s3://{b}/ev/a.json"), EVENTS);
    let rs = LocalRedshift::start(moto, true);
    let db = Db::connect(&rs);
    events_table(&db);
    let (_, message) = db.refused(&format!(
        "COPY ev FROM 's3://{b}/ev/' IAM_ROLE '{ROLE}' FORMAT AS JSON 'auto ignorecase' TIMEFORMAT 'epochmillisecs'"
    ));
    assert_eq!(
        message,
        "Load into table 'ev' failed.  Check 'sys_load_error_detail' system table for details."
    );
    assert_eq!(
        db.refused("SELECT COUNT(*) FROM stl_load_errors").0,
        "42P01"
    );
    assert_eq!(
        db.one("SELECT COUNT(*) FROM sys_load_error_detail WHERE query_id = pg_last_copy_id()"),
        "0"
    );
    assert_eq!(
        db.one("SELECT COUNT(*) FROM sys_load_error_detail WHERE session_id = pg_backend_pid()"),
        "2"
    );
    // No column_value in sys_load_error_detail (its documented columns).
    assert_eq!(
        db.refused("SELECT column_value FROM sys_load_error_detail")
            .0,
        "42703"
    );
    assert_eq!(
        db.one("SELECT status FROM sys_load_history WHERE table_name = 'ev'"),
        "aborted"
    );
}

#[test]
fn copy_from_parquet_by_manifest_takes_columns_by_position_and_counts_them() {
    use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
    let moto = Moto::shared();
    let b = bucket(moto, "rs-local-parquet");
    let batch = RecordBatch::try_from_iter([
        (
            "a",
            Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
        ),
        (
            "b",
            Arc::new(StringArray::from(vec![Some("é"), Some("x"), None])) as ArrayRef,
        ),
    ])
    .unwrap();
    let mut file = Vec::new();
    {
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    put(moto, &format!("s3://{b}/p/part-0.parquet"), &file);
    let manifest = format!(
        "{{\"entries\": [{{\"url\": \"s3://{b}/p/part-0.parquet\", \"mandatory\": true, \"meta\": {{\"content_length\": {}}}}}]}}",
        file.len()
    );
    put(moto, &format!("s3://{b}/p/manifest"), manifest.as_bytes());
    put(
        moto,
        &format!("s3://{b}/p/no-length"),
        format!(
            "{{\"entries\": [{{\"url\": \"s3://{b}/p/part-0.parquet\", \"mandatory\": true}}]}}"
        )
        .as_bytes(),
    );
    let rs = LocalRedshift::start(moto, false);
    let db = Db::connect(&rs);
    db.ok("CREATE TABLE two (n INTEGER, s VARCHAR(2)); CREATE TABLE three (n INTEGER, s VARCHAR(2), x INTEGER); CREATE TABLE narrow (n INTEGER, s VARCHAR(1))");
    let copy = |table: &str, manifest: &str| {
        format!(
            "COPY {table} FROM 's3://{b}/p/{manifest}' IAM_ROLE '{ROLE}' FORMAT AS PARQUET MANIFEST"
        )
    };
    db.ok(&copy("two", "manifest"));
    assert_eq!(db.one("SELECT pg_last_copy_count()"), "3");
    assert_eq!(db.one("SELECT COUNT(*) || ':' || SUM(n) FROM two"), "3:4");
    db.refused(&copy("three", "manifest"));
    db.refused(&copy("narrow", "manifest"));
    db.refused(&copy("two", "no-length"));
    db.refused(&format!("COPY two FROM 's3://{b}/p/manifest' IAM_ROLE '{ROLE}' FORMAT AS PARQUET MANIFEST MAXERROR 3"));
}
