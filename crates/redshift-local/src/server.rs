//! The server: each client connection gets a connection of its own to PostgreSQL, and every
//! statement goes through the rules on the way; `COPY` from S3 is run here and its rows sent
//! to PostgreSQL by `COPY … FROM STDIN`; the load-error views are kept here and shown to the
//! statements that read them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use sparkify_s3::{FetchLimits, S3, S3Options, S3Url};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::copy::{self, ColType, Column, Copy, Format, LoadError, Mapping};
use crate::rules::{self, Action, Refusal, TableMeta, page, pg_ident, pg_literal};
use crate::wire::{self, Fields, Message};
use crate::{Config, Error};

/// What every session shares: where PostgreSQL is, S3, the ids and the load-error views.
pub(crate) struct Shared {
    pub backend: (String, u16),
    pub serverless: bool,
    pub s3_options: S3Options,
    pub s3: Mutex<Option<Arc<S3>>>,
    /// `stl_load_errors.query`, `pg_last_copy_id()`.
    next_query: AtomicI64,
    /// The SYS views' `query_id`: a number of another kind ("System tables and views
    /// reference": the SYS views' query identifiers differ from the STL views').
    next_query_id: AtomicI64,
    next_xid: AtomicI64,
    errors: Mutex<Vec<ErrorRow>>,
    history: Mutex<Vec<HistoryRow>>,
}

impl Shared {
    pub(crate) fn new(config: &Config) -> Result<Shared, Error> {
        let pg: tokio_postgres::Config = config
            .postgres
            .parse()
            .map_err(|e| Error::Config(format!("--postgres: {e}")))?;
        let host = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        Ok(Shared {
            backend: (host, port),
            serverless: config.serverless,
            s3_options: S3Options {
                endpoint_url: config.s3_endpoint.clone(),
                region: Some(config.region.clone()),
                // A local endpoint (moto) takes any keys; the AWS chain otherwise.
                static_keys: (config.s3_endpoint.is_some()
                    && std::env::var_os("AWS_ACCESS_KEY_ID").is_none())
                .then(|| sparkify_s3::StaticKeys {
                    access_key_id: "local".into(),
                    secret_access_key: "local".into(),
                }),
                ..S3Options::default()
            },
            s3: Mutex::new(None),
            next_query: AtomicI64::new(1_000),
            next_query_id: AtomicI64::new(7_000_001),
            next_xid: AtomicI64::new(500),
            errors: Mutex::new(Vec::new()),
            history: Mutex::new(Vec::new()),
        })
    }

    fn s3(&self) -> Result<Arc<S3>, String> {
        let mut s3 = self
            .s3
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s3) = &*s3 {
            return Ok(Arc::clone(s3));
        }
        let client = Arc::new(S3::connect(&self.s3_options).map_err(|e| e.to_string())?);
        *s3 = Some(Arc::clone(&client));
        Ok(client)
    }
}

impl Drop for Shared {
    /// The S3 client owns a runtime, which may not be dropped on one of the server's
    /// workers (the last session may end there): it goes on a thread of its own.
    fn drop(&mut self) {
        let s3 = self
            .s3
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(s3) = s3 {
            let _ = std::thread::Builder::new().spawn(move || drop(s3));
        }
    }
}

/// A row of `stl_load_errors` and `sys_load_error_detail`.
#[derive(Debug, Clone)]
struct ErrorRow {
    query: i64,
    query_id: i64,
    xid: i64,
    session: i32,
    table_id: i64,
    database: String,
    start: String,
    error: LoadError,
}

/// A row of `sys_load_history`.
#[derive(Debug, Clone)]
struct HistoryRow {
    query_id: i64,
    xid: i64,
    session: i32,
    database: String,
    status: &'static str,
    table: String,
    start: String,
    source: String,
    format: &'static str,
    rows: i64,
    errors: i64,
    files: i64,
    bytes: i64,
}

/// The statements that make the catalog objects the stand-in needs, run once at start.
pub(crate) const BOOTSTRAP: &str = r#"
CREATE SCHEMA IF NOT EXISTS rs_catalog;
CREATE TABLE IF NOT EXISTS rs_catalog.table_meta (
    relid oid PRIMARY KEY, diststyle text NOT NULL, distkey text, sortkind text NOT NULL,
    sortkey text[] NOT NULL, encode_auto boolean NOT NULL);
CREATE TABLE IF NOT EXISTS rs_catalog.column_meta (
    relid oid, attname text, encoding text, PRIMARY KEY (relid, attname));
CREATE OR REPLACE FUNCTION rs_catalog.refuse(code text, message text, detail text)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, DETAIL = detail;
END $$;
-- Redshift's functions that PostgreSQL lacks, as Redshift documents them.
-- STRTOL(string, base): the BIGINT the string is in that base ("STRTOL function").
CREATE OR REPLACE FUNCTION rs_catalog.strtol(s text, base integer)
    RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    r numeric := 0;
    t text := lower(btrim(s));
    neg boolean := false;
    c text;
    d integer;
BEGIN
    IF s IS NULL OR base IS NULL THEN RETURN NULL; END IF;
    IF left(t, 1) = '-' THEN neg := true; t := substr(t, 2); END IF;
    IF base = 16 AND left(t, 2) = '0x' THEN t := substr(t, 3); END IF;
    FOREACH c IN ARRAY regexp_split_to_array(t, '') LOOP
        d := position(c IN '0123456789abcdefghijklmnopqrstuvwxyz') - 1;
        IF d < 0 OR d >= base THEN
            RAISE EXCEPTION USING ERRCODE = '22P02',
                MESSAGE = format('invalid input for STRTOL: %s in base %s', s, base);
        END IF;
        r := r * base + d;
    END LOOP;
    IF neg THEN r := -r; END IF;
    RETURN r::bigint;
END $$;
CREATE OR REPLACE VIEW rs_catalog.pg_table_def AS
SELECT n.nspname::text AS schemaname, c.relname::text AS tablename, a.attname::text AS "column",
       format_type(a.atttypid, a.atttypmod) AS type,
       COALESCE(lower(cm.encoding), CASE WHEN tm.encode_auto THEN 'auto' ELSE 'none' END) AS encoding,
       COALESCE(tm.distkey = a.attname::text, false) AS distkey,
       COALESCE(array_position(tm.sortkey, a.attname::text), 0) AS sortkey,
       a.attnotnull AS notnull
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN rs_catalog.table_meta tm ON tm.relid = c.oid
LEFT JOIN rs_catalog.column_meta cm ON cm.relid = c.oid AND cm.attname = a.attname::text
WHERE a.attnum > 0 AND NOT a.attisdropped;
CREATE OR REPLACE VIEW rs_catalog.svv_table_info AS
SELECT current_database()::text AS database, n.nspname::text AS schema, c.oid::bigint AS table_id,
       c.relname::text AS "table",
       CASE WHEN tm.encode_auto THEN 'Y, AUTO(ENCODE)' ELSE 'N' END AS encoded,
       CASE WHEN tm.diststyle = 'KEY' THEN 'KEY(' || tm.distkey || ')' ELSE tm.diststyle END AS diststyle,
       tm.sortkey[1] AS sortkey1,
       COALESCE(array_length(tm.sortkey, 1), 0) AS sortkey_num,
       CASE WHEN EXISTS (SELECT 1 FROM pg_statistic s WHERE s.starelid = c.oid) THEN 0 ELSE 100 END AS stats_off
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN rs_catalog.table_meta tm ON tm.relid = c.oid;
"#;

/// What PostgreSQL answered to one statement.
#[derive(Debug, Default)]
struct Answer {
    messages: Vec<Message>,
    error: Option<Fields>,
    rows: Vec<Vec<Option<String>>>,
}

/// A client's session.
struct Session {
    shared: Arc<Shared>,
    br: OwnedReadHalf,
    bw: OwnedWriteHalf,
    /// The transaction status of PostgreSQL's last `ReadyForQuery`.
    status: u8,
    /// `pg_last_copy_id()` and `pg_last_copy_count()`.
    last_copy: (i64, i64),
    /// Their values when the transaction began: a rolled back transaction puts them back
    /// ("PG_LAST_COPY_ID": "If the COPY transaction is rolled back, the COPY ID is not
    /// updated").
    at_begin: (i64, i64),
    pid: i32,
    database: String,
    /// Extended-protocol messages went since the last `ReadyForQuery`.
    extended: bool,
}

/// Serves one client connection until it ends.
pub(crate) async fn serve(shared: Arc<Shared>, client: TcpStream) -> std::io::Result<()> {
    let (mut cr, mut cw) = client.into_split();
    let mut startup = wire::read_startup(&mut cr).await?;
    loop {
        let code = u32::from_be_bytes([startup[0], startup[1], startup[2], startup[3]]);
        match code {
            // TLS and GSS encryption: refused; the client goes on in the clear.
            80_877_103 | 80_877_104 => {
                use tokio::io::AsyncWriteExt;
                cw.write_all(b"N").await?;
                startup = wire::read_startup(&mut cr).await?;
            }
            // A cancel request: to PostgreSQL as it is (the key is PostgreSQL's).
            80_877_102 => {
                use tokio::io::AsyncWriteExt;
                let mut backend =
                    TcpStream::connect((shared.backend.0.as_str(), shared.backend.1)).await?;
                let mut raw = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
                raw.extend_from_slice(&startup);
                backend.write_all(&raw).await?;
                return Ok(());
            }
            196_608 => break,
            other => {
                return Err(std::io::Error::other(format!(
                    "unknown startup code {other}"
                )));
            }
        }
    }
    let database = startup_param(&startup, "database")
        .or_else(|| startup_param(&startup, "user"))
        .unwrap_or_default();
    let backend = TcpStream::connect((shared.backend.0.as_str(), shared.backend.1)).await?;
    backend.set_nodelay(true)?;
    let (mut br, mut bw) = backend.into_split();
    {
        use tokio::io::AsyncWriteExt;
        let mut raw = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
        raw.extend_from_slice(&startup);
        bw.write_all(&raw).await?;
    }
    // Authentication and the server's parameters, passed through.
    let mut pid = 0;
    let mut held: Vec<Message> = Vec::new();
    loop {
        let Some(m) = wire::read(&mut br).await? else {
            return Ok(());
        };
        match m.tag {
            b'R' => {
                wire::write(&mut cw, std::slice::from_ref(&m)).await?;
                let kind = u32::from_be_bytes([m.body[0], m.body[1], m.body[2], m.body[3]]);
                if !matches!(kind, 0 | 12) {
                    let Some(reply) = wire::read(&mut cr).await? else {
                        return Ok(());
                    };
                    wire::write(&mut bw, &[reply]).await?;
                }
            }
            b'E' => {
                wire::write(&mut cw, &[m]).await?;
                return Ok(());
            }
            b'K' => {
                pid = i32::from_be_bytes([m.body[0], m.body[1], m.body[2], m.body[3]]);
                held.push(m);
            }
            b'Z' => break,
            _ => held.push(m),
        }
    }
    let mut session = Session {
        shared,
        br,
        bw,
        status: b'I',
        last_copy: (-1, 0),
        at_begin: (-1, 0),
        pid,
        database,
        extended: false,
    };
    // Every transaction is serializable ("Serializable isolation"); the stand-in's views are
    // found after the user's schemas.
    let setup = session
        .run(
            "SET default_transaction_isolation = 'serializable'; \
             SET search_path = \"$user\", public, rs_catalog",
        )
        .await?;
    if let Some(e) = setup.error {
        wire::write(&mut cw, &[e.message(b'E')]).await?;
        return Ok(());
    }
    held.push(wire::ready(b'I'));
    wire::write(&mut cw, &held).await?;
    session.relay(cr, cw).await
}

fn startup_param(startup: &[u8], name: &str) -> Option<String> {
    let mut parts = startup[4..].split(|&b| b == 0);
    while let Some(k) = parts.next() {
        let v = parts.next()?;
        if k == name.as_bytes() {
            return Some(String::from_utf8_lossy(v).into_owned());
        }
    }
    None
}

/// The first word of a statement, upper case.
fn first_word(sql: &str) -> String {
    sql.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_uppercase()
}

fn now_text() -> String {
    chrono::Utc::now()
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

impl Session {
    async fn relay(
        &mut self,
        mut cr: OwnedReadHalf,
        mut cw: OwnedWriteHalf,
    ) -> std::io::Result<()> {
        loop {
            let Some(m) = wire::read(&mut cr).await? else {
                return Ok(());
            };
            match m.tag {
                b'Q' => {
                    let sql = m.sql().unwrap_or("").to_owned();
                    let out = self.simple(&sql).await?;
                    wire::write(&mut cw, &out).await?;
                }
                b'P' => {
                    let sql = m.sql().unwrap_or("").to_owned();
                    let sql = self.parse(&sql).await?;
                    self.extended = true;
                    wire::write(&mut self.bw, &[m.with_sql(&sql)]).await?;
                }
                b'S' => {
                    wire::write(&mut self.bw, &[m]).await?;
                    let mut out = Vec::new();
                    loop {
                        let Some(r) = wire::read(&mut self.br).await? else {
                            return Ok(());
                        };
                        let done = r.tag == b'Z';
                        if done {
                            self.status = r.body.first().copied().unwrap_or(b'I');
                        }
                        out.push(self.translate(r));
                        if done {
                            break;
                        }
                    }
                    self.extended = false;
                    wire::write(&mut cw, &out).await?;
                }
                b'X' => {
                    let _ = wire::write(&mut self.bw, &[m]).await;
                    return Ok(());
                }
                // COPY FROM STDIN is refused before it starts: no copy data can come.
                b'd' | b'c' | b'f' => {}
                _ => {
                    self.extended = true;
                    wire::write(&mut self.bw, &[m]).await?;
                }
            }
        }
    }

    /// Sends `sql` to PostgreSQL (simple protocol) and reads its answer to the end.
    async fn run(&mut self, sql: &str) -> std::io::Result<Answer> {
        wire::write(&mut self.bw, &[wire::query(sql)]).await?;
        self.answer().await
    }

    async fn answer(&mut self) -> std::io::Result<Answer> {
        let mut answer = Answer::default();
        loop {
            let Some(m) = wire::read(&mut self.br).await? else {
                return Err(std::io::Error::other("PostgreSQL closed the connection"));
            };
            match m.tag {
                b'Z' => {
                    self.status = m.body.first().copied().unwrap_or(b'I');
                    return Ok(answer);
                }
                b'E' => answer.error = Some(Fields::parse(&m.body)),
                b'D' => answer.rows.push(data_row(&m.body)),
                _ => {}
            }
            answer.messages.push(m);
        }
    }

    /// A simple query: each statement in turn, through the rules; the first error ends it.
    async fn simple(&mut self, sql: &str) -> std::io::Result<Vec<Message>> {
        let mut out = Vec::new();
        let statements = match crate::lex::statements(sql) {
            Ok(s) => s,
            Err(u) => {
                let f = Fields::new("ERROR", "42601", &format!("unterminated {}", u.what));
                out.push(f.message(b'E'));
                out.push(wire::ready(self.status));
                return Ok(out);
            }
        };
        if statements.is_empty() {
            out.push(Message::new(b'I', Vec::new()));
        }
        for statement in statements {
            let before = self.status;
            let ok = self.statement(statement, &mut out).await?;
            self.transaction(before, statement);
            if !ok {
                break;
            }
        }
        out.push(wire::ready(self.status));
        Ok(out)
    }

    /// Notes a transaction begun or ended by `statement`.
    fn transaction(&mut self, before: u8, statement: &str) {
        match (before, self.status) {
            (b'I', b'T' | b'E') => self.at_begin = self.last_copy,
            (b'T' | b'E', b'I') => {
                let word = first_word(statement);
                let rolled_back = before == b'E' || word == "ROLLBACK" || word == "ABORT";
                if rolled_back {
                    self.last_copy = self.at_begin;
                }
            }
            _ => {}
        }
    }

    /// One statement; `false` when it failed.
    async fn statement(&mut self, sql: &str, out: &mut Vec<Message>) -> std::io::Result<bool> {
        let action = match rules::check(sql) {
            Ok(a) => a,
            Err(refusal) => return self.refuse(&refusal, "", out).await,
        };
        match action {
            Action::Run(sql) => {
                let sql = self.prepare(&sql).await?;
                self.forward(&sql, out).await
            }
            Action::Create { sql, meta } => {
                if !self.forward(&sql, out).await? {
                    return Ok(false);
                }
                self.record(&meta).await?;
                Ok(true)
            }
            Action::Truncate(sql) => {
                if !self.forward(&sql, out).await? {
                    return Ok(false);
                }
                // TRUNCATE commits the transaction it runs in ("TRUNCATE").
                if self.status == b'T' {
                    self.run("COMMIT").await?;
                }
                Ok(true)
            }
            Action::AlterType {
                table,
                column,
                width,
            } => self.alter_type(&table, &column, width, out).await,
            Action::CopyS3(sql) => self.copy(&sql, out).await,
        }
    }

    /// A `Parse`'s statement as PostgreSQL gets it: through the rules; a refused one becomes a
    /// call that fails with the refusal when it runs.
    async fn parse(&mut self, sql: &str) -> std::io::Result<String> {
        let refused = |r: &Refusal| {
            format!(
                "SELECT rs_catalog.refuse({}, {}, '')",
                pg_literal(r.code),
                pg_literal(&r.message)
            )
        };
        Ok(match rules::check(sql) {
            Ok(Action::Run(sql)) => {
                if self.extended {
                    self.values(&sql)
                } else {
                    self.prepare(&sql).await?
                }
            }
            Ok(Action::Create { sql, .. }) | Ok(Action::Truncate(sql)) => sql,
            Ok(Action::AlterType { .. } | Action::CopyS3(_)) => refused(&Refusal::new(
                "0A000",
                "the local Redshift runs ALTER COLUMN TYPE and COPY by the simple query protocol only",
                page::ALTER_TABLE,
            )),
            Err(r) => refused(&r),
        })
    }

    /// The session's values in place of `pg_last_copy_id()` and `pg_last_copy_count()`.
    fn values(&self, sql: &str) -> String {
        rules::replace_calls(
            sql,
            &[
                ("pg_last_copy_id", self.last_copy.0.to_string()),
                (
                    "pg_last_copy_count",
                    format!("CAST({} AS BIGINT)", self.last_copy.1),
                ),
            ],
        )
    }

    /// `sql` with the session's values, the load-error views it reads made current first.
    async fn prepare(&mut self, sql: &str) -> std::io::Result<String> {
        let mut views: Vec<&str> = vec!["sys_load_error_detail", "sys_load_history"];
        // Serverless has the SYS views only ("STL_LOAD_ERRORS": provisioned clusters only).
        if !self.shared.serverless {
            views.push("stl_load_errors");
        }
        let named = rules::names_any(sql, &views);
        if !named.is_empty() && self.status != b'E' {
            for view in named {
                let statements = self.view_rows(&view);
                let status = self.status;
                let answer = self.run(&statements).await?;
                if let Some(e) = answer.error {
                    tracing::warn!(view, error = ?e, "the load-error view could not be made");
                }
                self.status = status;
            }
        }
        Ok(self.values(sql))
    }

    /// The statements that make `view` a temporary table of its current rows.
    fn view_rows(&self, view: &str) -> String {
        let lit = |s: &str| pg_literal(s);
        let errors = self
            .shared
            .errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        let history = self
            .shared
            .history
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default();
        let (columns, rows): (&str, Vec<String>) = match view {
            "stl_load_errors" => (
                "userid integer, slice integer, tbl integer, starttime timestamp, session integer, \
                 query integer, filename char(256), line_number bigint, colname char(127), \
                 type char(10), col_length char(10), position integer, raw_line char(1024), \
                 raw_field_value char(1024), err_code integer, err_reason char(100), \
                 is_partial integer, start_offset bigint, copy_job_id bigint",
                errors
                    .iter()
                    .map(|r| {
                        let e = &r.error;
                        format!(
                            "(100, 0, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 0, 0, 0)",
                            r.table_id,
                            lit(&r.start),
                            r.session,
                            r.query,
                            lit(&e.file),
                            e.line,
                            lit(&e.column),
                            lit(&e.col_type),
                            lit(&e.col_length),
                            e.position,
                            // Multibyte characters are replaced with a period ("STL_LOAD_ERRORS").
                            lit(&e.raw_line.chars().map(|c| if c.is_ascii() { c } else { '.' }).collect::<String>()),
                            lit(&e.raw_field_value),
                            e.code,
                            lit(&e.reason.chars().take(100).collect::<String>()),
                        )
                    })
                    .collect(),
            ),
            "sys_load_error_detail" => (
                "user_id integer, query_id bigint, transaction_id bigint, session_id integer, \
                 database_name char(64), table_id integer, start_time timestamp, \
                 file_name char(256), line_number bigint, column_name char(127), \
                 column_type char(10), column_length char(10), position integer, \
                 error_code integer, error_message char(512)",
                errors
                    .iter()
                    .map(|r| {
                        let e = &r.error;
                        format!(
                            "(100, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                            r.query_id,
                            r.xid,
                            r.session,
                            lit(&r.database),
                            r.table_id,
                            lit(&r.start),
                            lit(&e.file),
                            e.line,
                            lit(&e.column),
                            lit(&e.col_type),
                            lit(&e.col_length),
                            e.position,
                            e.code,
                            lit(&e.reason),
                        )
                    })
                    .collect(),
            ),
            _ => (
                "user_id integer, query_id bigint, transaction_id bigint, session_id integer, \
                 database_name text, status text, table_name text, start_time timestamp, \
                 end_time timestamp, duration bigint, data_source text, file_format text, \
                 loaded_rows bigint, loaded_bytes bigint, source_file_count integer, \
                 source_file_bytes bigint, file_count_scanned integer, file_bytes_scanned bigint, \
                 error_count bigint, copy_job_id bigint",
                history
                    .iter()
                    .map(|h| {
                        format!(
                            "(100, {}, {}, {}, {}, {}, {}, {}, {}, 0, {}, {}, {}, {}, {}, {}, {}, {}, {}, 0)",
                            h.query_id,
                            h.xid,
                            h.session,
                            lit(&h.database),
                            lit(h.status),
                            lit(&h.table),
                            lit(&h.start),
                            lit(&h.start),
                            lit(&h.source),
                            lit(h.format),
                            h.rows,
                            h.bytes,
                            h.files,
                            h.bytes,
                            h.files,
                            h.bytes,
                            h.errors,
                        )
                    })
                    .collect(),
            ),
        };
        let mut sql = format!(
            "CREATE TEMP TABLE IF NOT EXISTS {view} ({columns}); DELETE FROM pg_temp.{view};"
        );
        for chunk in rows.chunks(500) {
            sql.push_str(&format!(
                " INSERT INTO pg_temp.{view} VALUES {};",
                chunk.join(", ")
            ));
        }
        sql
    }

    /// Runs `sql` and passes on what PostgreSQL answered (but its `ReadyForQuery`).
    async fn forward(&mut self, sql: &str, out: &mut Vec<Message>) -> std::io::Result<bool> {
        let answer = self.run(sql).await?;
        let ok = answer.error.is_none();
        out.extend(answer.messages.into_iter().map(|m| self.translate(m)));
        Ok(ok)
    }

    /// Fails the statement with `refusal`, as Redshift would: by PostgreSQL, so that a
    /// transaction block is aborted as Redshift's is.
    async fn refuse(
        &mut self,
        refusal: &Refusal,
        detail: &str,
        out: &mut Vec<Message>,
    ) -> std::io::Result<bool> {
        tracing::debug!(code = refusal.code, message = %refusal.message, page = refusal.page, "refused");
        let sql = format!(
            "SELECT rs_catalog.refuse({}, {}, {})",
            pg_literal(refusal.code),
            pg_literal(&refusal.message),
            pg_literal(detail)
        );
        let answer = self.run(&sql).await?;
        match answer.error {
            Some(mut f) => {
                f.remove(b'W');
                f.remove(b'P');
                if detail.is_empty() {
                    f.remove(b'D');
                }
                f.set(
                    b'H',
                    format!(
                        "Amazon Redshift Database Developer Guide: \"{}\"",
                        refusal.page
                    ),
                );
                out.push(f.message(b'E'));
            }
            None => {
                // Not refused? Say so rather than let it pass.
                let f = Fields::new("ERROR", refusal.code, &refusal.message);
                out.push(f.message(b'E'));
            }
        }
        Ok(false)
    }

    /// PostgreSQL's errors as Redshift says them.
    fn translate(&self, m: Message) -> Message {
        if m.tag != b'E' {
            return m;
        }
        let mut f = Fields::parse(&m.body);
        match f.get(b'C') {
            // "Serializable isolation": error 1023.
            Some("40001") => {
                let xid = self.shared.next_xid.fetch_add(1, Ordering::SeqCst);
                f.set(b'C', "XX000");
                f.set(b'M', "1023");
                f.remove(b'H');
                f.set(
                    b'D',
                    format!(
                        "Serializable isolation violation on table - {}, transactions forming the \
                         cycle are: {}, {} (pid:{})",
                        0,
                        xid,
                        xid + 1,
                        self.pid
                    ),
                );
            }
            // A value longer than its VARCHAR's bytes ("Character types").
            Some("23514") => {
                if let Some(n) = f.get(b'n').and_then(rules::byte_check_width) {
                    f.set(b'C', "22001");
                    f.set(
                        b'M',
                        format!("value too long for type character varying({n})"),
                    );
                    f.remove(b'D');
                }
            }
            _ => {}
        }
        f.remove(b'W');
        f.message(b'E')
    }

    /// The keys and encodings of a table just made, into the stand-in's catalog.
    async fn record(&mut self, meta: &TableMeta) -> std::io::Result<()> {
        let table = pg_literal(&pg_ident(&meta.table));
        let sortkey = if meta.sortkey.is_empty() {
            "ARRAY[]::text[]".to_owned()
        } else {
            format!(
                "ARRAY[{}]",
                meta.sortkey
                    .iter()
                    .map(|s| pg_literal(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        // A table made again under an old one's id takes its place; IF NOT EXISTS keeps the
        // table there was, and its keys.
        let conflict = match meta.if_not_exists {
            true => "DO NOTHING",
            false => {
                "DO UPDATE SET diststyle = EXCLUDED.diststyle, distkey = EXCLUDED.distkey, \
                 sortkind = EXCLUDED.sortkind, sortkey = EXCLUDED.sortkey, \
                 encode_auto = EXCLUDED.encode_auto"
            }
        };
        let mut sql = format!(
            "INSERT INTO rs_catalog.table_meta VALUES (to_regclass({table})::oid, {}, {}, {}, {sortkey}, {}) \
             ON CONFLICT (relid) {conflict};",
            pg_literal(&meta.diststyle),
            meta.distkey.as_deref().map_or("NULL".into(), pg_literal),
            pg_literal(&meta.sortkind),
            meta.encode_auto
        );
        for (column, encoding) in &meta.encodings {
            sql.push_str(&format!(
                " INSERT INTO rs_catalog.column_meta VALUES (to_regclass({table})::oid, {}, {}) \
                 ON CONFLICT DO NOTHING;",
                pg_literal(column),
                pg_literal(encoding)
            ));
        }
        let answer = self.run(&sql).await?;
        if let Some(e) = answer.error {
            tracing::warn!(table = meta.table, error = ?e, "keys not recorded");
        }
        Ok(())
    }

    /// `ALTER TABLE … ALTER COLUMN … TYPE VARCHAR(n)`, held to "ALTER TABLE"'s limits.
    async fn alter_type(
        &mut self,
        table: &str,
        column: &str,
        width: u32,
        out: &mut Vec<Message>,
    ) -> std::io::Result<bool> {
        let refuse = |message: String| Refusal::new("0A000", message, page::ALTER_TABLE);
        if self.status != b'I' {
            let r = Refusal::new(
                "25001",
                "ALTER TABLE ALTER COLUMN cannot run inside a transaction block",
                page::ALTER_TABLE,
            );
            return self.refuse(&r, "", out).await;
        }
        let t = pg_literal(&pg_ident(table));
        let c = pg_literal(column);
        let facts = self
            .run(&format!(
                "SELECT t.typname, a.atttypmod, a.atthasdef, \
                 EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = a.attrelid \
                         AND k.contype IN ('p', 'u', 'f') AND a.attnum = ANY (k.conkey)), \
                 (SELECT upper(encoding) FROM rs_catalog.column_meta m WHERE m.relid = a.attrelid AND m.attname = a.attname::text) \
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = to_regclass({t}) AND a.attname = {c} AND NOT a.attisdropped"
            ))
            .await?;
        let Some(row) = facts.rows.into_iter().next() else {
            let r = Refusal::new(
                "42703",
                format!("column \"{column}\" of relation \"{table}\" does not exist"),
                page::ALTER_TABLE,
            );
            return self.refuse(&r, "", out).await;
        };
        let v = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let old: u32 = v(1).parse::<i64>().map_or(0, |m| (m - 4).max(0) as u32);
        let problem = if v(0) != "varchar" {
            Some(format!(
                "column \"{column}\" is not a VARCHAR: only a VARCHAR's size can be altered"
            ))
        } else if v(3) == "t" {
            Some(format!(
                "cannot alter column \"{column}\": it has a UNIQUE, PRIMARY KEY or FOREIGN KEY constraint"
            ))
        } else if v(2) == "t" {
            Some(format!(
                "cannot alter column \"{column}\": it has a default value"
            ))
        } else if ["BYTEDICT", "RUNLENGTH", "TEXT255", "TEXT32K"].contains(&v(4).as_str()) {
            Some(format!(
                "cannot alter column \"{column}\": its encoding is {}",
                v(4)
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            return self.refuse(&refuse(p), "", out).await;
        }
        if width < old {
            let longest = self
                .run(&format!(
                    "SELECT COALESCE(MAX(octet_length({})), 0) FROM {}",
                    pg_ident(column),
                    pg_ident(table)
                ))
                .await?;
            let longest: u32 = longest
                .rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if longest > width {
                let r = refuse(format!(
                    "cannot decrease the size of column \"{column}\" to {width}, less than its longest value ({longest} bytes)"
                ));
                return self.refuse(&r, "", out).await;
            }
        }
        let sql = format!(
            "ALTER TABLE {tbl} DROP CONSTRAINT IF EXISTS {old_check}, ALTER COLUMN {col} TYPE VARCHAR({width}), \
             ADD {check}",
            tbl = pg_ident(table),
            old_check = pg_ident(&rules::byte_check_name(column, old)),
            col = pg_ident(column),
            check = rules::byte_check(column, width).trim_start(),
        );
        let answer = self.run(&sql).await?;
        let ok = answer.error.is_none();
        for m in answer.messages {
            if m.tag == b'C' {
                out.push(wire::complete("ALTER TABLE"));
            } else {
                out.push(self.translate(m));
            }
        }
        Ok(ok)
    }

    /// The columns of `table` PostgreSQL has, in order (`None` when there is no such table).
    async fn columns(&mut self, table: &str) -> std::io::Result<Option<(i64, Vec<Column>)>> {
        let t = pg_literal(&pg_ident(table));
        let answer = self
            .run(&format!(
                "SELECT to_regclass({t})::oid::bigint, a.attname, t.typname, a.atttypmod, a.attnotnull, a.attidentity <> '' \
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = to_regclass({t}) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
            ))
            .await?;
        if answer.rows.is_empty() {
            return Ok(None);
        }
        let mut oid = 0;
        let columns = answer
            .rows
            .into_iter()
            .map(|r| {
                let v = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                oid = v(0).parse().unwrap_or(0);
                Column {
                    name: v(1),
                    ty: ColType::from_pg(&v(2), v(3).parse().unwrap_or(-1)),
                    not_null: v(4) == "t",
                    identity: v(5) == "t",
                }
            })
            .collect();
        Ok(Some((oid, columns)))
    }

    /// `COPY … FROM 's3://…'`.
    async fn copy(&mut self, sql: &str, out: &mut Vec<Message>) -> std::io::Result<bool> {
        let copy = match copy::parse(sql) {
            Ok(c) => c,
            Err(r) => return self.refuse(&r, "", out).await,
        };
        if self.status == b'E' {
            return self.forward("SELECT 1", out).await;
        }
        let Some((table_id, all)) = self.columns(&copy.table).await? else {
            let r = Refusal::new(
                "42P01",
                format!("relation \"{}\" does not exist", copy.table),
                page::COPY,
            );
            return self.refuse(&r, "", out).await;
        };
        let columns: Vec<Column> = match &copy.columns {
            Some(names) => {
                let mut chosen = Vec::new();
                for n in names {
                    match all.iter().find(|c| &c.name == n) {
                        Some(c) => chosen.push(c.clone()),
                        None => {
                            let r = Refusal::new(
                                "42703",
                                format!(
                                    "column \"{n}\" of relation \"{}\" does not exist",
                                    copy.table
                                ),
                                page::COPY,
                            );
                            return self.refuse(&r, "", out).await;
                        }
                    }
                }
                chosen
            }
            // An IDENTITY column is left to make its values ("COPY", EXPLICIT_IDS).
            None if copy.format != Format::Parquet => {
                all.iter().filter(|c| !c.identity).cloned().collect()
            }
            None => all.clone(),
        };
        if columns.is_empty() {
            let r = Refusal::new("42601", "COPY has no column to load", page::COPY);
            return self.refuse(&r, "", out).await;
        }
        // Reading S3 and the input happens before the load begins: a failure here leaves
        // pg_last_copy_id() as it was ("PG_LAST_COPY_ID").
        let shared = Arc::clone(&self.shared);
        let read = {
            let copy = copy.clone();
            let columns = columns.clone();
            tokio::task::spawn_blocking(move || read_input(&shared, &copy, &columns))
                .await
                .map_err(std::io::Error::other)?
        };
        let input = match read {
            Ok(i) => i,
            Err(message) => {
                let r = Refusal::new("XX000", message, page::COPY);
                return self.refuse(&r, "", out).await;
            }
        };
        // The load begins: the COPY has its ids.
        let query = self.shared.next_query.fetch_add(1, Ordering::SeqCst);
        let query_id = self.shared.next_query_id.fetch_add(3, Ordering::SeqCst);
        let xid = self.shared.next_xid.fetch_add(1, Ordering::SeqCst);
        self.last_copy = (query, 0);
        let start = now_text();
        let errors = input.errors.len() as u64;
        let error_rows: Vec<ErrorRow> = input
            .errors
            .iter()
            .map(|e| ErrorRow {
                query,
                query_id,
                xid,
                session: self.pid,
                table_id,
                database: self.database.clone(),
                start: start.clone(),
                error: e.clone(),
            })
            .collect();
        if let Ok(mut all) = self.shared.errors.lock() {
            all.extend(error_rows);
        }
        let mut history = HistoryRow {
            query_id,
            xid,
            session: self.pid,
            database: self.database.clone(),
            status: "aborted",
            table: copy.table.clone(),
            start,
            source: copy.from.clone(),
            format: if copy.format == Format::Parquet {
                "parquet"
            } else {
                "json"
            },
            rows: 0,
            errors: errors as i64,
            files: input.files,
            bytes: input.bytes,
        };
        // "If the load returns the error_count number of errors or greater, the load fails";
        // 0 and 1 fail at the first ("COPY: Data load parameters").
        if errors > 0 && errors >= copy.max_error.max(1) {
            self.push_history(history);
            let table_view = if self.shared.serverless {
                "sys_load_error_detail"
            } else {
                "stl_load_errors"
            };
            let r = Refusal::new(
                "XX000",
                format!(
                    "Load into table '{}' failed.  Check '{table_view}' system table for details.",
                    copy.table
                ),
                page::COPY_PARAMETERS,
            );
            let first = &input.errors[0];
            let detail = format!(
                "error: {}\ncode: {}\ncontext: {}\nquery: {query}\nlocation: {}:{}\n",
                first.reason, first.code, first.raw_field_value, first.file, first.line
            );
            return self.refuse(&r, &detail, out).await;
        }
        // The rows, to PostgreSQL.
        let names: Vec<String> = columns.iter().map(|c| pg_ident(&c.name)).collect();
        wire::write(
            &mut self.bw,
            &[wire::query(&format!(
                "COPY {} ({}) FROM STDIN",
                pg_ident(&copy.table),
                names.join(", ")
            ))],
        )
        .await?;
        let mut answer = Answer::default();
        let mut sent = false;
        loop {
            let Some(m) = wire::read(&mut self.br).await? else {
                return Err(std::io::Error::other("PostgreSQL closed the connection"));
            };
            match m.tag {
                b'G' if !sent => {
                    sent = true;
                    let mut messages: Vec<Message> = input
                        .lines
                        .chunks(64 << 10)
                        .map(|c| Message::new(b'd', c.to_vec()))
                        .collect();
                    messages.push(Message::new(b'c', Vec::new()));
                    for batch in messages.chunks(64) {
                        wire::write(&mut self.bw, batch).await?;
                    }
                }
                b'Z' => {
                    self.status = m.body.first().copied().unwrap_or(b'I');
                    break;
                }
                b'E' => {
                    answer.error = Some(Fields::parse(&m.body));
                    answer.messages.push(m);
                }
                _ => {}
            }
        }
        if answer.error.is_some() {
            self.push_history(history);
            out.extend(answer.messages.into_iter().map(|m| self.translate(m)));
            return Ok(false);
        }
        history.status = "completed";
        history.rows = input.rows as i64;
        self.push_history(history);
        self.last_copy = (query, input.rows as i64);
        // Statistics: STATUPDATE ON, or by default when the table was empty ("COPY",
        // STATUPDATE).
        if copy.statupdate.unwrap_or(true) {
            let status = self.status;
            self.run(&format!("ANALYZE {}", pg_ident(&copy.table)))
                .await?;
            self.status = status;
        }
        let info = |message: String| Fields::new("INFO", "00000", &message).message(b'N');
        out.push(info(format!(
            "Load into table '{}' completed, {} record(s) loaded successfully.",
            copy.table, input.rows
        )));
        if errors > 0 {
            let table_view = if self.shared.serverless {
                "sys_load_error_detail"
            } else {
                "stl_load_errors"
            };
            out.push(info(format!(
                "Load into table '{}' completed, {errors} record(s) could not be loaded.  Check '{table_view}' system table for details.",
                copy.table
            )));
        }
        out.push(wire::complete("COPY"));
        Ok(true)
    }

    fn push_history(&self, row: HistoryRow) {
        if let Ok(mut h) = self.shared.history.lock() {
            h.push(row);
        }
    }
}

/// A `DataRow`'s values as text.
fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        at += 4;
        if len < 0 {
            out.push(None);
        } else {
            let len = len as usize;
            out.push(Some(
                String::from_utf8_lossy(&body[at..at + len]).into_owned(),
            ));
            at += len;
        }
    }
    out
}

/// What a COPY read: the rows as `COPY` text, its load errors, and how much it read.
struct Input {
    lines: Vec<u8>,
    rows: u64,
    errors: Vec<LoadError>,
    files: i64,
    bytes: i64,
}

/// Lists (or takes from the manifest) and reads the COPY's objects.
fn read_input(shared: &Shared, copy: &Copy, columns: &[Column]) -> Result<Input, String> {
    let s3 = shared.s3()?;
    let url = |u: &str| S3Url::parse(u).map_err(|e| format!("Invalid S3 location '{u}': {e}"));
    let from = url(&copy.from)?;
    let parquet = copy.format == Format::Parquet;
    let objects = if copy.manifest {
        let data = s3
            .get(&from)
            .map_err(|e| format!("Problem reading manifest file - S3ServiceException: {e}"))?;
        let entries = copy::manifest(&data, parquet)?;
        let listed: Vec<sparkify_s3::Object> = entries
            .iter()
            .map(|(u, _)| url(u))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|u| sparkify_s3::Object {
                url: u,
                size: 0,
                etag: None,
            })
            .collect();
        // A mandatory file that is missing fails the COPY ("Using a manifest…").
        for ((u, mandatory), o) in entries.iter().zip(&listed) {
            if *mandatory && s3.list(&o.url).is_err() {
                return Err(format!(
                    "Manifest file is not in correct format or mandatory file {u} not found"
                ));
            }
        }
        listed
    } else {
        // A prefix: every object whose key begins with it ("COPY", FROM).
        s3.list(&from)
            .map_err(|e| format!("The specified S3 prefix '{}' does not exist: {e}", from))?
    };
    let mapping_paths;
    let mapping = match &copy.format {
        Format::JsonAuto { ignorecase } => Mapping::Auto {
            ignorecase: *ignorecase,
        },
        Format::JsonPaths(p) => {
            let data = s3
                .get(&url(p)?)
                .map_err(|e| format!("Unable to read the JSONPaths file {p}: {e}"))?;
            match copy::jsonpaths(&data)? {
                Some(paths) => {
                    if paths.len() != columns.len() {
                        return Err(format!(
                            "Number of jsonpaths and the number of columns should match. JSONPath size: {}, Number of columns in table or column list: {}",
                            paths.len(),
                            columns.len()
                        ));
                    }
                    mapping_paths = paths;
                    Mapping::Paths(&mapping_paths)
                }
                None => Mapping::Auto { ignorecase: false },
            }
        }
        Format::Parquet => Mapping::Auto { ignorecase: false },
    };
    let mut input = Input {
        lines: Vec::new(),
        rows: 0,
        errors: Vec::new(),
        files: 0,
        bytes: 0,
    };
    for fetched in s3.fetch(objects, FetchLimits::new(16)) {
        let fetched = fetched.map_err(|e| format!("S3ServiceException: {e}"))?;
        let name = fetched.url.to_string();
        let data = fetched
            .into_bytes()
            .map_err(|e| format!("S3ServiceException: {e}"))?;
        input.files += 1;
        input.bytes += data.len() as i64;
        let decoded = if parquet {
            crate::parquet::decode(&name, data, columns)?
        } else {
            copy::decode_json(&name, &data, columns, &mapping, copy.timeformat)
        };
        input.lines.extend_from_slice(&decoded.lines);
        input.rows += decoded.rows;
        input.errors.extend(decoded.errors);
    }
    Ok(input)
}
