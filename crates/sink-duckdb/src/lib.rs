//! sparkify-sink-duckdb: loads a run's tables into a DuckDB file, each batch handed over as a
//! table function DuckDB scans and inserts with all its threads, all in one transaction,
//! replacing what the file held before.
//!
//! ```no_run
//! use sparkify_core::Sink;
//! use sparkify_sink_duckdb::DuckDbSink;
//!
//! let mut sink = DuckDbSink::new("sparkify.duckdb");
//! sink.check()?;
//! # Ok::<(), sparkify_sink_duckdb::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

mod plan;
mod scan;

use arrow::array::RecordBatch;
use duckdb::Connection;
use sparkify_core::checks;
use sparkify_core::ledger;
use sparkify_core::model::{Rows, SLICE_ROWS, SongplaysMode};
use sparkify_core::sink::{self, Closing, Finished, QueryResult, Staged, TablesAction};

use sparkify_core::sql::{self, Dialect};
use sparkify_core::table::{
    DM_TIME, FT_SONGPLAYS, LOAD_ERRORS, SINK_TABLES, STAR_TABLES, TableDef,
};
use sparkify_core::{Load, Sink};

use crate::plan::Step;

/// What can go wrong loading DuckDB.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input failed, or brought too many rejects, while a streamed load was read;
    /// nothing was committed.
    #[error(transparent)]
    Core(#[from] sparkify_core::Error),
    #[error(transparent)]
    Unreconciled(#[from] sparkify_core::sink::Unreconciled),
    /// The database file could not be opened or created (the cause follows in the chain).
    #[error("cannot open DuckDB database {path}")]
    Open {
        path: String,
        #[source]
        source: duckdb::Error,
    },
    /// Another process holds the file: DuckDB lets one process write a file at a time.
    #[error(
        "DuckDB {path} is in use by another process{holder}: another load or query has it \
         open; waited {waited} s (--lock-timeout). Try again when it is done, or load another file"
    )]
    Locked {
        path: String,
        /// ` (PID 1234, /usr/local/bin/sparkify)`, as DuckDB reports it; else empty.
        holder: String,
        waited: u64,
    },
    /// A table holds a primary key value more than once; nothing of the run was committed.
    #[error(
        "DuckDB {path}: {table} holds its primary key ({key}) = {value} {count} times; \
         nothing was committed"
    )]
    DuplicateKey {
        path: String,
        table: &'static str,
        key: String,
        value: String,
        count: i64,
    },
    /// The load brought no parsed tables: DuckDB cannot read the input itself.
    #[error("DuckDB {path}: a load needs the parsed tables")]
    NothingParsed { path: String },
    /// The stream gave rows of a staging table after that table was appended.
    #[error("DuckDB {path}: rows of {table} came after that table was appended")]
    OutOfOrder { path: String, table: &'static str },
    /// Another load changed the file between this run's reading of `etl_files` and its load.
    #[error(
        "DuckDB {path}: another load changed etl_files since this incremental run read it; \
         nothing was committed. Run it again"
    )]
    LedgerChanged { path: String },
    /// A batch could not be converted for DuckDB.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// A statement or an append failed; nothing of the run was committed (the database's
    /// message follows in the chain).
    #[error("DuckDB {path}: {context}")]
    Sql {
        path: String,
        context: String,
        #[source]
        source: duckdb::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the star schema is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transform {
    /// The core builds it in memory and the sink appends the batches (the default).
    #[default]
    Memory,
    /// The sink stages only, and DuckDB builds it with the shared SQL transforms.
    Sql(SongplaysMode),
}

/// How long an open retries a file that is "not a valid DuckDB database file": the state of
/// a file another process has just created and not yet written its header to (two loads
/// into a new file at once). A file that stays invalid is reported after this.
const CREATION_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// How long a load waits for another process to let go of the file, by default.
pub use sparkify_core::sink::DEFAULT_LOCK_TIMEOUT;

/// Who holds the lock, from DuckDB's message (`Conflicting lock is held in /bin/x (PID 12)`):
/// ` (PID 12, /bin/x)`, or empty.
fn lock_holder(message: &str) -> String {
    let Some(rest) = message.split("Conflicting lock is held in ").nth(1) else {
        return String::new();
    };
    let Some((program, rest)) = rest.split_once(" (PID ") else {
        return String::new();
    };
    let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
    format!(" (PID {pid}, {program})")
}

/// What a DuckDB sink is built from: the file, where the star schema is built, how long a
/// load waits for another process's lock, and who hears of the wait when it begins.
#[derive(Debug, Clone)]
pub struct DuckDbConfig {
    pub path: PathBuf,
    pub transform: Transform,
    pub lock_timeout: std::time::Duration,
    pub on_wait: Option<OnWait>,
}

pub use sparkify_core::sink::{OnWait, Waiting};

impl DuckDbConfig {
    /// The file at `path`, the star built in memory, the default lock timeout.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DuckDbConfig {
            path: path.into(),
            transform: Transform::Memory,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            on_wait: None,
        }
    }

    /// The sink; nothing is opened yet.
    pub fn build(self) -> DuckDbSink {
        DuckDbSink {
            path: self.path,
            transform: self.transform,
            lock_timeout: self.lock_timeout,
            on_wait: self.on_wait,
            closing: None,
            opened: Arc::default(),
        }
    }
}

/// The PID in DuckDB's lock message (`… (PID 12) …`).
fn lock_pid(message: &str) -> Option<u32> {
    let rest = message.split(" (PID ").nth(1)?;
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// When process `pid` started: its start in clock ticks after boot (`/proc/PID/stat`, the
/// 22nd field) and the boot time (`btime` of `/proc/stat`). `None` where there is no `/proc`.
fn process_started(pid: u32) -> Option<std::time::SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the fields count after it.
    let after_name = stat.rsplit_once(')')?.1;
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // The kernel's USER_HZ, which /proc reports in: 100 on every Linux sparkify runs on.
    let hz = 100;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(boot * 1000 + ticks * 1000 / hz))
}

/// A DuckDB database file.
#[derive(Debug, Clone)]
pub struct DuckDbSink {
    path: PathBuf,
    transform: Transform,
    lock_timeout: std::time::Duration,
    on_wait: Option<OnWait>,
    /// What the next load does before its COMMIT.
    closing: Option<Closing>,
    /// The database once opened: the file is opened once for the sink's life (it holds the
    /// file's lock until then), and each query or load is a connection to it. An
    /// incremental load reads the ledger, loads and reads its run row back; opening a
    /// warehouse of 60 days took 12 ms each time.
    opened: Arc<Mutex<Opened>>,
}

/// The sink's database, opened at its first use.
#[derive(Debug, Default)]
struct Opened {
    db: Option<Connection>,
    /// Whether the batch scans are registered in it.
    scans: bool,
}

impl DuckDbSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DuckDbConfig::new(path).build()
    }

    /// Builds the star schema in SQL inside DuckDB instead of appending the core's tables.
    pub fn with_transform(mut self, transform: Transform) -> Self {
        self.transform = transform;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to this long for another process to let go of the file (default 600 s).
    pub fn with_lock_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// A connection to the database, opened at the sink's first use ([`Self::open_file`]).
    fn open(&self) -> Result<Connection> {
        self.connect(false)
    }

    /// A connection to the database, opened at the sink's first use; with `scans`, the batch
    /// scans registered in it.
    fn connect(&self, scans: bool) -> Result<Connection> {
        let mut guard = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        let opened = &mut *guard;
        if opened.db.is_none() {
            opened.db = Some(self.open_file()?);
        }
        let db = opened.db.as_ref().expect("opened above");
        if scans && !opened.scans {
            db.register_table_function::<scan::BatchScan>(scan::FUNCTION)
                .map_err(self.sql_error("registering the batch scan"))?;
            db.register_table_function::<scan::StreamScan>(scan::STREAM_FUNCTION)
                .map_err(self.sql_error("registering the stream scan"))?;
            opened.scans = true;
        }
        db.try_clone()
            .map_err(self.sql_error("connecting to the database"))
    }

    /// Opens the file; while another process holds it, tries again every 200 ms until
    /// the lock timeout.
    fn open_file(&self) -> Result<Connection> {
        let started = std::time::Instant::now();
        let mut told = false;
        loop {
            match Connection::open(&self.path) {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    let text = e.to_string();
                    // Another process is creating the file and has not written its header
                    // yet: once it has, the file is locked, and this waits as for a lock.
                    let being_created = text.contains("is not a valid DuckDB database file")
                        && started.elapsed() < CREATION_GRACE;
                    if being_created {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        continue;
                    }
                    if !text.contains("Could not set lock on file") {
                        return Err(Error::Open {
                            path: self.path.display().to_string(),
                            source: e,
                        });
                    }
                    if started.elapsed() >= self.lock_timeout {
                        return Err(Error::Locked {
                            path: self.path.display().to_string(),
                            holder: lock_holder(&text),
                            waited: started.elapsed().as_secs(),
                        });
                    }
                    if !told {
                        told = true;
                        if let Some(OnWait(on_wait)) = &self.on_wait {
                            on_wait(&Waiting {
                                sink: format!("duckdb:{}", self.path.display()),
                                reason: "another process has it open".into(),
                                waiting_for: "the file".into(),
                                holder: lock_holder(&text),
                                since: lock_pid(&text).and_then(process_started),
                                timeout: self.lock_timeout,
                            });
                        }
                    }
                    tracing::info!(path = %self.path.display(), "waiting for another process to let go of the file");
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        }
    }

    /// A connection ready for [`append_steps`]: rows go in through a table function DuckDB
    /// scans with all its threads, and with the insertion order free it appends (and
    /// compresses) in parallel too. A table's rows have no order in SQL; every reader here
    /// sorts. The load's COMMIT writes its tables into the file itself ([`LOAD_SETTINGS`]).
    fn open_for_inserts(&self) -> Result<Connection> {
        let conn = self.connect(true)?;
        for setting in LOAD_SETTINGS {
            conn.execute_batch(setting)
                .map_err(self.sql_error(setting))?;
        }
        Ok(conn)
    }

    /// Checks that the key of each of `tables` is unique (with `changed`, at the keys a
    /// maintenance made: [`plan::duplicates`]), naming the first value held twice
    /// (DuckDB would report a duplicate in a key added after the rows only at COMMIT, without
    /// the table's name, and declares no key for some tables: [`Dialect::declares_key`]).
    fn check_keys(
        &self,
        tx: &duckdb::Transaction<'_>,
        tables: &[&TableDef],
        changed: bool,
    ) -> Result<()> {
        let Some(check) = plan::duplicates(tables, changed) else {
            return Ok(());
        };
        let mut stmt = tx.prepare(&check).map_err(self.sql_error(check.clone()))?;
        let found: Vec<(String, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(Iterator::collect)
            .map_err(self.sql_error(check.clone()))?;
        // The first table, in load order, that holds a duplicate.
        match tables.iter().find_map(|t| {
            let (_, value, count) = found.iter().find(|(name, ..)| name == t.name)?;
            Some((t, value.clone(), *count))
        }) {
            Some((table, value, count)) => Err(self.duplicate(table, value, count)),
            None => Ok(()),
        }
    }

    fn duplicate(&self, table: &TableDef, value: String, count: i64) -> Error {
        Error::DuplicateKey {
            path: self.path.display().to_string(),
            table: table.name,
            key: table.primary_key.join(", "),
            value,
            count,
        }
    }

    /// Counts the tables the run parsed, inside the load's transaction, against the run's rows.
    fn reconcile(
        &self,
        tx: &duckdb::Transaction<'_>,
        expected: &[(&'static TableDef, u64)],
    ) -> Result<()> {
        let count = sql::count_rows(&expected.iter().map(|(t, _)| *t).collect::<Vec<_>>());
        let mut stmt = tx.prepare(&count).map_err(self.sql_error(count.clone()))?;
        let counted: Vec<(String, u64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.unsigned_abs())))
            .and_then(Iterator::collect)
            .map_err(self.sql_error(count.clone()))?;
        Ok(sink::reconcile(expected, &counted)?)
    }

    /// Goes on only if `etl_files` is still what the run read (under the file's lock).
    fn check_ledger(&self, tx: &duckdb::Transaction<'_>, digest: u64) -> Result<()> {
        if ledger::digest(&self.query_on(tx, ledger::SELECT)?.rows) != digest {
            return Err(Error::LedgerChanged {
                path: self.path.display().to_string(),
            });
        }
        Ok(())
    }

    /// One query on `conn`, every value as text.
    fn query_on(&self, conn: &Connection, sql: &str) -> Result<QueryResult> {
        let mut stmt = conn.prepare(sql).map_err(self.sql_error(sql))?;
        let mut rows = stmt.query([]).map_err(self.sql_error(sql))?;
        let columns = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
        // A column of type NULL (`SELECT NULL AS x`): duckdb-rs panics on reading its values.
        let null_typed: Vec<bool> = (0..columns.len())
            .map(|i| {
                rows.as_ref()
                    .is_some_and(|s| s.column_type(i) == arrow::datatypes::DataType::Null)
            })
            .collect();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.sql_error(sql))? {
            let values = (0..columns.len())
                .map(|i| match null_typed[i] {
                    true => Ok(None),
                    false => row.get::<_, duckdb::types::Value>(i).map(text),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sql_error(sql))?;
            out.push(values);
        }
        Ok(QueryResult { columns, rows: out })
    }

    fn sql_error(&self, context: impl Into<String>) -> impl FnOnce(duckdb::Error) -> Error {
        let path = self.path.display().to_string();
        let context = context.into();
        move |source| Error::Sql {
            path,
            context,
            source,
        }
    }
}

impl Sink for DuckDbSink {
    type Error = Error;

    fn dialect(&self) -> Option<Dialect> {
        Some(Dialect::DuckDb)
    }

    fn describe(&self) -> String {
        format!("duckdb:{}", self.path.display())
    }

    /// Every step a load runs, in order (appends shown as comments), for `--dry-run`: the
    /// steps a load walks (`plan::steps`).
    fn plan(&self) -> Result<Vec<String>> {
        Ok(plan::steps(self.transform, None, self.closing.as_ref())
            .iter()
            .map(Step::text)
            .collect())
    }

    fn tables_sql(&self, action: TablesAction) -> Result<Vec<String>> {
        Ok(sql::tables_sql(action, &Dialect::DuckDb))
    }

    /// Runs `statements` in one transaction.
    fn execute(&mut self, statements: &[String]) -> Result<()> {
        let mut conn = self.open()?;
        let tx = conn.transaction().map_err(self.sql_error("BEGIN"))?;
        for s in statements {
            self.run(&tx, s)?;
        }
        tx.commit().map_err(self.sql_error("COMMIT"))
    }

    fn query(&mut self, sql: &str) -> Result<QueryResult> {
        let conn = self.open()?;
        self.query_on(&conn, sql)
    }

    fn check(&mut self) -> Result<()> {
        let conn = self.open()?;
        conn.execute_batch("SELECT 1")
            .map_err(self.sql_error("checking the connection"))
    }

    fn builds_star(&self) -> bool {
        matches!(self.transform, Transform::Sql(_))
    }

    fn close_with(&mut self, closing: Closing) {
        self.closing = Some(closing);
    }

    fn load(&mut self, load: Load<'_>) -> Result<()> {
        load.with_staged(|staged| match staged {
            Some(staged) => self.load_stream(staged),
            None => Err(Error::NothingParsed {
                path: self.path.display().to_string(),
            }),
        })
    }
}

impl DuckDbSink {
    /// A load as it is read: the steps of [`plan::steps`] walked in one transaction, the
    /// staging rows appended part by part as the reader gives them (an incremental load's
    /// replaced files removed first), then what was built from them.
    fn load_stream(&self, staged: &mut (dyn Staged + Send)) -> Result<()> {
        let increment = staged.increment().cloned();
        let transform = match &increment {
            Some(increment) => Transform::Sql(increment.mode),
            None => self.transform,
        };
        let steps = plan::steps(transform, increment.as_ref(), self.closing.as_ref());
        let mut conn = self.open_for_inserts()?;
        let mut walk = Walk {
            stream: Stream {
                staged,
                pending: None,
            },
            finished: None,
        };
        let (Some((Step::Begin, steps)), true) = (
            steps.split_first(),
            matches!(steps.last(), Some(Step::Commit)),
        ) else {
            unreachable!("a load's plan begins with BEGIN and ends with COMMIT")
        };
        let tx = conn.transaction().map_err(self.sql_error("BEGIN"))?;
        for step in &steps[..steps.len() - 1] {
            tracing::debug!(step = %step.text().lines().next().unwrap_or(""), "running");
            // On a failure the transaction is dropped without its COMMIT: everything rolls
            // back.
            self.run_step(&tx, step, &mut walk)?;
        }
        let committing = std::time::Instant::now();
        tx.commit().map_err(self.sql_error("COMMIT"))?;
        tracing::debug!(seconds = committing.elapsed().as_secs_f64(), "commit");
        tracing::info!(path = %self.path.display(), "committed");
        Ok(())
    }

    /// Runs one step of a load in `tx`.
    fn run_step(
        &self,
        tx: &duckdb::Transaction<'_>,
        step: &Step<'_>,
        walk: &mut Walk<'_>,
    ) -> Result<()> {
        match step {
            // The walk opens and commits the transaction; the keys were checked on the rows.
            Step::Begin | Step::Commit | Step::KeysChecked(_) => Ok(()),
            Step::Sql(s) => self.run(tx, s),
            Step::Rename => {
                let found = self.query_on(tx, &sql::renamed_probe())?;
                for s in sql::renames(&found.rows) {
                    self.run(tx, &s)?;
                }
                Ok(())
            }
            Step::CheckLedger { digest } => self.check_ledger(tx, *digest),
            Step::AppendRead(table) => self.append_read(tx, table, &mut walk.stream),
            Step::AppendStaged { table, star } => {
                while let Some(batches) = walk.stream.next_of(table)? {
                    self.append(tx, table, batches)?;
                }
                if let Some(Ok((late, _))) = walk.stream.take() {
                    return Err(Error::OutOfOrder {
                        path: self.path.display().to_string(),
                        table: late.name,
                    });
                }
                // While the star schema is built, DuckDB need not keep the blocks it has
                // written cached: a lower cap evicts them (they are on disk), and the cap
                // comes back for the appends that follow.
                self.run(tx, &format!("SET memory_limit = '{IDLE_MEMORY_LIMIT}'"))?;
                let finished = walk.stream.staged.finish()?;
                self.run(tx, &limit_appends())?;
                walk.stream.staged.phase("loading the star schema");
                if *star && finished.star.is_none() {
                    return Err(Error::NothingParsed {
                        path: self.path.display().to_string(),
                    });
                }
                walk.finished = Some(finished);
                Ok(())
            }
            Step::AppendBuilt { table, check_key } => {
                let Some(rows) = walk.finished()?.rows(table) else {
                    return Ok(());
                };
                // A full load's tables are the whole tables: the keys DuckDB does not declare
                // are checked on them here, in one pass when in order, instead of by a GROUP
                // BY over the stored rows (at 1000x: 0.8 s and +250 MB for dm_time's 6.4 M
                // times).
                if *check_key && let Some((value, count)) = sql::duplicate_key_in(table, rows)? {
                    return Err(self.duplicate(table, value, count as i64));
                }
                match made(table) {
                    true => self.append_made(tx, table, rows),
                    false => self.append(tx, table, vec![rows.to_batch()?]),
                }
            }
            Step::ResetLimit => {
                // DuckDB holds the star now; its keys and COMMIT need the memory more.
                if let Some(finished) = &mut walk.finished {
                    finished.star = None;
                }
                self.run(tx, RESET_LIMIT)?;
                walk.stream.staged.phase("checking keys and committing");
                Ok(())
            }
            Step::Reconcile => {
                let expected = walk.finished()?.staged.clone();
                self.reconcile(tx, &expected)
            }
            Step::CheckKeys { tables, changed } => {
                let keying = std::time::Instant::now();
                self.check_keys(tx, tables, *changed)?;
                tracing::debug!(seconds = keying.elapsed().as_secs_f64(), "keys checked");
                Ok(())
            }
            Step::Checks(checks) => {
                let outcomes = checks::run(checks, |sql| self.query_on(tx, sql).map(|r| r.rows))?;
                Ok(checks::passed(outcomes)?)
            }
            Step::RecordRun(closing) => {
                // DuckDB counts a table's rows from its metadata: the row counts them again.
                for statement in closing.record(&Dialect::DuckDb, &[]) {
                    self.run(tx, &statement)?;
                }
                Ok(())
            }
        }
    }

    /// Appends the parts of `stream` that are `table`'s (`staging_events`) as they come, in
    /// one parallel insert that scans them as they come ([`Self::feed`]).
    fn append_read(
        &self,
        tx: &duckdb::Transaction<'_>,
        table: &'static TableDef,
        stream: &mut Stream<'_>,
    ) -> Result<()> {
        let appending = std::time::Instant::now();
        let context = format!("appending the events to {} as they are read", table.name);
        let rows = self.feed(tx, table, &context, |feed| {
            let mut rows = 0;
            while let Some(batches) = stream.next_of(table)? {
                for batch in batches.iter().filter(|b| b.num_rows() > 0) {
                    rows += batch.num_rows() as u64;
                    if !feed.send(batch)? {
                        return Ok(rows);
                    }
                }
            }
            Ok(rows)
        })?;
        tracing::debug!(
            table = table.name,
            rows,
            seconds = appending.elapsed().as_secs_f64(),
            "appended as read"
        );
        Ok(())
    }

    /// Appends rows made or read back as they are asked for ([`made`]) [`SLICE_ROWS`] at a
    /// time, in one parallel insert that scans each slice while the next is made: the table is
    /// never held whole.
    fn append_made(
        &self,
        tx: &duckdb::Transaction<'_>,
        table: &'static TableDef,
        rows: Rows<'_>,
    ) -> Result<()> {
        let appending = std::time::Instant::now();
        let context = format!("appending {} rows to {}", rows.num_rows(), table.name);
        self.feed(tx, table, &context, |feed| {
            for batch in rows.batches(SLICE_ROWS) {
                if !feed.send(&batch?)? {
                    break;
                }
            }
            Ok(())
        })?;
        tracing::debug!(
            table = table.name,
            rows = rows.num_rows(),
            seconds = appending.elapsed().as_secs_f64(),
            "appended as made"
        );
        Ok(())
    }

    /// Appends to `table`, in one parallel insert ([`insert_fed`]), the batches `produce`
    /// sends as it makes them, on a thread of its own; returns what `produce` returns. A
    /// failed insert stops scanning and `produce`'s next send says so: `produce` then
    /// returns, and the insert's error is the one reported unless `produce` failed first (an
    /// input failed, too many rejects: that is why the scan ended early).
    fn feed<T: Send>(
        &self,
        tx: &duckdb::Transaction<'_>,
        table: &'static TableDef,
        context: &str,
        produce: impl FnOnce(&Feeder) -> Result<T> + Send,
    ) -> Result<T> {
        let empty = RecordBatch::new_empty(table.schema());
        let schema = sparkify_core::time::to_micros(&empty)?.schema();
        // Two batches wait for the scan at most, beyond what `produce` holds.
        let (registration, sender) = scan::FeedRegistration::new(schema, 2);
        let (inserted, fed) = std::thread::scope(|scope| {
            let feeder = scope.spawn(move || produce(&Feeder(sender)));
            let inserted = tx
                .execute(&insert_fed(table), [registration.0])
                .map_err(self.sql_error(context));
            // A feeder waiting on the scan fails its send now, and stops.
            drop(registration);
            let fed = feeder
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (inserted, fed)
        });
        let out = fed?;
        inserted?;
        Ok(out)
    }

    /// Runs `statement` in `tx`, an error naming it.
    fn run(&self, tx: &duckdb::Transaction<'_>, statement: &str) -> Result<()> {
        tx.execute_batch(statement)
            .map_err(self.sql_error(statement))
    }

    /// Appends `batches` (of one table) in one parallel insert.
    fn append(
        &self,
        tx: &duckdb::Transaction<'_>,
        table: &TableDef,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let batches: Vec<RecordBatch> = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(sparkify_core::time::to_micros)
            .collect::<Result<_, _>>()?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(());
        }
        let appending = std::time::Instant::now();
        let registered = scan::Registration::new(batches);
        let context = format!("appending {rows} rows to {}", table.name);
        tx.execute(&insert(table), [registered.0])
            .map_err(self.sql_error(context))?;
        tracing::debug!(
            table = table.name,
            rows,
            seconds = appending.elapsed().as_secs_f64(),
            "appended"
        );
        Ok(())
    }
}

/// Runs `queries` over `tables` held here (a Parquet lake read back, say), in a DuckDB
/// database of their own, in memory, that nothing else sees; each query's result, in order.
/// `sparkify check` over a lake runs its SQL this way.
pub fn query_in_memory(
    tables: Vec<(&'static TableDef, RecordBatch)>,
    queries: &[String],
) -> Result<Vec<QueryResult>> {
    let sink = DuckDbSink::new(":memory:");
    let conn = Connection::open_in_memory().map_err(|source| Error::Open {
        path: ":memory:".into(),
        source,
    })?;
    conn.register_table_function::<scan::BatchScan>(scan::FUNCTION)
        .map_err(sink.sql_error("registering the batch scan"))?;
    for (table, batch) in tables {
        let ddl = sql::create_table_unkeyed(table, &Dialect::DuckDb);
        conn.execute_batch(&ddl)
            .map_err(sink.sql_error(ddl.clone()))?;
        if batch.num_rows() == 0 {
            continue;
        }
        let registered = scan::Registration::new(vec![sparkify_core::time::to_micros(&batch)?]);
        conn.execute(&insert(table), [registered.0])
            .map_err(sink.sql_error(format!("appending to {}", table.name)))?;
    }
    queries.iter().map(|q| sink.query_on(&conn, q)).collect()
}

/// The keys a full load adds once its rows are in (its tables are created without them): the
/// ones DuckDB declares ([`Dialect::declares_key`]).
fn keys_to_add() -> Vec<String> {
    SINK_TABLES
        .iter()
        .filter_map(|t| sql::add_primary_key(t, &Dialect::DuckDb))
        .collect()
}

/// A full load's setup: every table dropped and created without its key.
fn replace_all() -> Vec<String> {
    SINK_TABLES
        .iter()
        .flat_map(|t| {
            [
                sql::drop_table(t),
                sql::create_table_unkeyed(t, &Dialect::DuckDb),
            ]
        })
        .collect()
}

/// What a streamed load gives at a time: a staging table's next rows.
type Part = sparkify_core::Result<(&'static TableDef, Vec<RecordBatch>)>;

/// The staging rows of a load as it walks its steps: the parts as the stream gives them, one
/// taken for another table than the one asked for kept for the next.
struct Stream<'s> {
    staged: &'s mut (dyn Staged + Send),
    pending: Option<Part>,
}

impl Stream<'_> {
    /// The stream's next part, the one put back first.
    fn take(&mut self) -> Option<Part> {
        self.pending.take().or_else(|| self.staged.next())
    }

    /// The next rows of `table`; `None` once the stream has gone past it (blocks until the
    /// reader has them).
    fn next_of(&mut self, table: &TableDef) -> Result<Option<Vec<RecordBatch>>> {
        match self.take() {
            Some(Ok((t, batches))) if t.name == table.name => Ok(Some(batches)),
            Some(Err(e)) => Err(e.into()),
            other => {
                self.pending = other;
                Ok(None)
            }
        }
    }
}

/// Where a load's walk is: its stream, and what the reading built once it finished.
struct Walk<'s> {
    stream: Stream<'s>,
    finished: Option<Finished>,
}

impl Walk<'_> {
    fn finished(&self) -> Result<&Finished> {
        self.finished.as_ref().ok_or_else(|| {
            Error::Core(sparkify_core::Error::Schema(
                "a load's plan appends what the reading built before the reading finished".into(),
            ))
        })
    }
}

/// Whether a load checks `table`'s key on the rows it appends, not in SQL: a full load's table
/// whose rows it appends (they are then the whole table) and whose key DuckDB does not declare.
fn checked_on_batches(transform: Transform, full: bool, table: &TableDef) -> bool {
    full && appends(transform, table)
        && !table.primary_key.is_empty()
        && !Dialect::DuckDb.declares_key(table)
}

/// Whether a load appends `table`'s rows as they are made or read back
/// ([`DuckDbSink::append_made`]), never whole: `dm_time`'s ([`sparkify_core::model::Times`]),
/// `ft_songplays`' ([`sparkify_core::model::Songplays`]) and `load_errors`' (which spill out
/// of memory past their bound); every other table's rows are appended as they are held.
fn made(table: &TableDef) -> bool {
    [&DM_TIME, &FT_SONGPLAYS, &LOAD_ERRORS]
        .iter()
        .any(|t| t.name == table.name)
}

/// Whether a load with `transform` appends `table`'s rows (the SQL transform builds the star).
fn appends(transform: Transform, table: &TableDef) -> bool {
    transform == Transform::Memory || !STAR_TABLES.iter().any(|t| t.name == table.name)
}

/// DuckDB's memory limit while it appends a table with no key. Under its default (80% of the
/// RAM) DuckDB kept the blocks it had already written cached: about 250 MiB through a 355 MB
/// event load, the largest part of the run's peak. Capped, it evicts them, at the same speed.
/// The cap leaves each thread far more than the row groups it fills (2 threads needed 16 MiB
/// for that load; 8 MiB ran out). A floor of 256 MiB was filled by a 1000x load and no faster
/// than 128: peaks of 628-639 MB against 538-547 (100x: 444-473 against 401-414). The primary
/// keys' ART indexes, which cannot spill, are built after it, under the default.
fn append_memory_limit() -> String {
    format!("{}MiB", (64 * scan::cores()).max(128))
}

/// The settings of a load's connection. The insertion order is free, so that DuckDB appends
/// in parallel. A checkpoint threshold of zero makes a COMMIT whose changes DuckDB estimates
/// at 100 kB or more (`auto_checkpoint_skip_wal_threshold`) a checkpoint that writes them into
/// the file, without writing them to the WAL first. Under the default threshold (16 MiB) the
/// tables of fewer rows than a row group (every table but the largest: 15.6 MB of WAL at
/// 100x) went into the WAL at COMMIT, and closing the database checkpointed them again.
const LOAD_SETTINGS: [&str; 2] = [
    "SET preserve_insertion_order = false",
    "SET checkpoint_threshold = '0b'",
];

/// DuckDB's memory limit while a streamed load builds its star schema: what it has written
/// stays on disk rather than in its cache.
const IDLE_MEMORY_LIMIT: &str = "32MiB";

/// `SET memory_limit` for the appends (see [`append_memory_limit`]); `RESET memory_limit`
/// follows them, before the keys are checked and added.
fn limit_appends() -> String {
    format!("SET memory_limit = '{}'", append_memory_limit())
}

const RESET_LIMIT: &str = "RESET memory_limit";

/// How a load appends rows to `table`: the rows registered with [`scan::Registration`] (whose
/// token is the parameter), scanned in parallel. Every table is created without its key (it is
/// added once all rows are in), so there is no index to keep in memory and everything written
/// can be evicted.
fn insert(table: &TableDef) -> String {
    insert_from(table, scan::FUNCTION)
}

/// How a load appends rows that come as they are read or made ([`DuckDbSink::feed`]): one
/// insert scanning them as they come.
fn insert_fed(table: &TableDef) -> String {
    insert_from(table, scan::STREAM_FUNCTION)
}

/// What [`DuckDbSink::feed`]'s producer sends batches by.
struct Feeder(std::sync::mpsc::SyncSender<RecordBatch>);

impl Feeder {
    /// Sends `batch` (timestamps in milliseconds) to the insert; `false` once the insert has
    /// stopped scanning.
    fn send(&self, batch: &RecordBatch) -> Result<bool> {
        let batch = sparkify_core::time::to_micros(batch)?;
        Ok(self.0.send(batch).is_ok())
    }
}

fn insert_from(table: &TableDef, function: &str) -> String {
    format!("INSERT INTO {} SELECT * FROM {function}(?)", table.name)
}

/// A DuckDB value as text the way PostgreSQL prints the same value (`None` for NULL): numbers
/// in decimal, doubles in their shortest exact form, timestamps as
/// [`sparkify_core::time::text`] (to the microsecond when there are microseconds).
fn text(value: duckdb::types::Value) -> Option<String> {
    use duckdb::types::Value as V;
    Some(match value {
        V::Null => return None,
        V::Boolean(b) => if b { "t" } else { "f" }.to_owned(),
        V::TinyInt(v) => v.to_string(),
        V::SmallInt(v) => v.to_string(),
        V::Int(v) => v.to_string(),
        V::BigInt(v) => v.to_string(),
        V::HugeInt(v) => v.to_string(),
        V::UTinyInt(v) => v.to_string(),
        V::USmallInt(v) => v.to_string(),
        V::UInt(v) => v.to_string(),
        V::UBigInt(v) => v.to_string(),
        V::Float(v) => sparkify_core::text::double(f64::from(v)),
        V::Double(v) => sparkify_core::text::double(v),
        V::Decimal(d) => d.to_string(),
        V::Text(s) | V::Enum(s) => s,
        V::Timestamp(unit, v) => sparkify_core::time::text_micros(unit.to_micros(v)),
        other => format!("{other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_commits_into_the_file_without_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let sink = DuckDbSink::new(dir.path().join("x.duckdb"));
        let conn = sink.open_for_inserts().unwrap();
        let setting = |name: &str| -> String {
            conn.query_row(
                &format!("SELECT current_setting('{name}')::VARCHAR"),
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(setting("checkpoint_threshold"), "0 bytes");
        assert_eq!(setting("preserve_insertion_order"), "false");
    }

    #[test]
    fn the_lock_holder_is_read_from_duckdbs_message() {
        let msg = "IO Error: Could not set lock on file \"/tmp/x.duckdb\": Conflicting lock is \
                   held in /usr/local/bin/sparkify (PID 4242) by user root. See also https://x";
        assert_eq!(lock_holder(msg), " (PID 4242, /usr/local/bin/sparkify)");
        assert_eq!(lock_holder("IO Error: something else"), "");
    }
}
