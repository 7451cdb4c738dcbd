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

mod scan;

use duckdb::Connection;
use sparkify_core::ledger;
use sparkify_core::model::SongplaysMode;
use sparkify_core::sink::{self, QueryResult, TablesAction};
use sparkify_core::sql::{self, Dialect};
use sparkify_core::table::{SINK_TABLES, STAR_TABLES, TableDef};
use sparkify_core::{Load, Sink, Tables};

/// What can go wrong loading DuckDB.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

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

/// A DuckDB database file.
#[derive(Debug, Clone)]
pub struct DuckDbSink {
    path: PathBuf,
    transform: Transform,
    lock_timeout: std::time::Duration,
}

impl DuckDbSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DuckDbSink {
            path: path.into(),
            transform: Transform::Memory,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
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

    /// Opens the file; while another process holds it, tries again every 200 ms until
    /// the lock timeout.
    fn open(&self) -> Result<Connection> {
        let started = std::time::Instant::now();
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
                    tracing::info!(path = %self.path.display(), "waiting for another process to let go of the file");
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        }
    }

    /// A connection ready for [`append_steps`]: rows go in through a table function DuckDB
    /// scans with all its threads, and with the insertion order free it appends (and
    /// compresses) in parallel too. A table's rows have no order in SQL; every reader here
    /// sorts.
    fn open_for_inserts(&self) -> Result<Connection> {
        let conn = self.open()?;
        conn.register_table_function::<scan::BatchScan>(scan::FUNCTION)
            .map_err(self.sql_error("registering the batch scan"))?;
        conn.execute_batch("SET preserve_insertion_order = false")
            .map_err(self.sql_error("SET preserve_insertion_order = false"))?;
        Ok(conn)
    }

    /// Checks that every table's key is unique, naming the first value held twice, then
    /// declares the keys. (DuckDB reports a duplicate in a key added after the rows only at
    /// COMMIT, and without the table's name.)
    fn add_keys(&self, tx: &duckdb::Transaction<'_>) -> Result<()> {
        let Some(check) = sql::duplicate_keys(&SINK_TABLES) else {
            return Ok(());
        };
        let mut stmt = tx.prepare(&check).map_err(self.sql_error(check.clone()))?;
        let found: Vec<(String, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(Iterator::collect)
            .map_err(self.sql_error(check.clone()))?;
        // The first table, in load order, that holds a duplicate.
        if let Some((table, value, count)) = SINK_TABLES.iter().find_map(|t| {
            let (_, value, count) = found.iter().find(|(name, ..)| name == t.name)?;
            Some((t, value.clone(), *count))
        }) {
            return Err(Error::DuplicateKey {
                path: self.path.display().to_string(),
                table: table.name,
                key: table.primary_key.join(", "),
                value,
                count,
            });
        }
        for add in SINK_TABLES.iter().filter_map(|t| sql::add_primary_key(t)) {
            tx.execute_batch(&add).map_err(self.sql_error(add))?;
        }
        Ok(())
    }

    /// Counts the tables the run parsed, inside the load's transaction, against the run's rows.
    fn reconcile(&self, tx: &duckdb::Transaction<'_>, tables: &Tables<'_>) -> Result<()> {
        let expected = sink::staged_counts(tables);
        let count = sql::count_rows(&expected.iter().map(|(t, _)| *t).collect::<Vec<_>>());
        let mut stmt = tx.prepare(&count).map_err(self.sql_error(count.clone()))?;
        let counted: Vec<(String, u64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.unsigned_abs())))
            .and_then(Iterator::collect)
            .map_err(self.sql_error(count.clone()))?;
        Ok(sink::reconcile(&expected, &counted)?)
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
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.sql_error(sql))? {
            let values = (0..columns.len())
                .map(|i| row.get::<_, duckdb::types::Value>(i).map(text))
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

    /// Every statement a load runs, in order (appends shown as comments), for `--dry-run`.
    fn plan(&self) -> Result<Vec<String>> {
        let mut out = vec!["BEGIN".to_owned()];
        for table in SINK_TABLES {
            out.push(sql::drop_table(table));
            out.push(sql::create_table_unkeyed(table, &Dialect::DuckDb));
            if appends(self.transform, table) {
                out.extend(append_steps(table).into_iter().map(|step| match step {
                    Step::Sql(s) => s,
                    Step::Insert(s) => format!("-- {s}: the run's rows (parallel Arrow scan)"),
                }));
            }
        }
        if let Transform::Sql(mode) = self.transform {
            out.extend(sql::transforms(&Dialect::DuckDb, mode));
        }
        out.push(format!(
            "-- fails the load unless each count equals the run's:\n{}",
            sql::count_rows(&sink::COUNTED)
        ));
        if let Some(check) = sql::duplicate_keys(&SINK_TABLES) {
            out.push(format!("-- fails the load if it returns a row:\n{check}"));
        }
        out.extend(SINK_TABLES.iter().filter_map(|t| sql::add_primary_key(t)));
        out.push("COMMIT".to_owned());
        Ok(out)
    }

    fn tables_sql(&self, action: TablesAction) -> Result<Vec<String>> {
        Ok(sql::tables_sql(action, &Dialect::DuckDb))
    }

    /// Runs `statements` in one transaction.
    fn execute(&mut self, statements: &[String]) -> Result<()> {
        let mut conn = self.open()?;
        let tx = conn.transaction().map_err(self.sql_error("BEGIN"))?;
        for s in statements {
            tx.execute_batch(s).map_err(self.sql_error(s.clone()))?;
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

    fn load(&mut self, load: Load<'_>) -> Result<()> {
        let Load::Parsed(tables) = load else {
            return Err(Error::NothingParsed {
                path: self.path.display().to_string(),
            });
        };
        let transform = match (tables.increment, tables.star, self.transform) {
            (Some(increment), _, _) => Transform::Sql(increment.mode),
            (None, None, Transform::Memory) => {
                return Err(Error::NothingParsed {
                    path: self.path.display().to_string(),
                });
            }
            (None, _, transform) => transform,
        };
        let mut conn = self.open_for_inserts()?;
        let tx = conn.transaction().map_err(self.sql_error("BEGIN"))?;
        let setup = match tables.increment {
            Some(increment) => {
                let create = sql::prepare_increment(&Dialect::DuckDb);
                for s in &create {
                    tx.execute_batch(s).map_err(self.sql_error(s.clone()))?;
                }
                self.check_ledger(&tx, increment.digest)?;
                ledger::increment_sql(increment, &Dialect::DuckDb)
            }
            None => SINK_TABLES
                .iter()
                .flat_map(|t| {
                    [
                        sql::drop_table(t),
                        sql::create_table_unkeyed(t, &Dialect::DuckDb),
                    ]
                })
                .collect(),
        };
        for s in setup {
            tx.execute_batch(&s).map_err(self.sql_error(s))?;
        }
        for (table, batch) in tables.all() {
            if batch.num_rows() == 0 || !appends(transform, table) {
                continue;
            }
            let appending = std::time::Instant::now();
            let context = || format!("appending {} rows to {}", batch.num_rows(), table.name);
            let registered = scan::Registration::new(sparkify_core::time::to_micros(batch)?);
            for step in append_steps(table) {
                match step {
                    Step::Sql(s) => tx.execute_batch(&s).map_err(self.sql_error(s))?,
                    Step::Insert(s) => {
                        tx.execute(&s, [registered.0])
                            .map_err(self.sql_error(context()))?;
                    }
                }
            }
            tracing::debug!(
                table = table.name,
                rows = batch.num_rows(),
                seconds = appending.elapsed().as_secs_f64(),
                "appended"
            );
        }
        if let Transform::Sql(mode) = transform {
            for statement in sql::transforms(&Dialect::DuckDb, mode) {
                tx.execute_batch(&statement)
                    .map_err(self.sql_error(statement.clone()))?;
            }
        }
        self.reconcile(&tx, &tables)?;
        let keying = std::time::Instant::now();
        if tables.increment.is_none() {
            // An incremental load's tables were created with their keys.
            self.add_keys(&tx)?;
        }
        tracing::debug!(
            seconds = keying.elapsed().as_secs_f64(),
            "keys checked and added"
        );
        // Dropping the transaction without commit rolls everything back.
        let committing = std::time::Instant::now();
        tx.commit().map_err(self.sql_error("COMMIT"))?;
        tracing::debug!(seconds = committing.elapsed().as_secs_f64(), "commit");
        tracing::info!(path = %self.path.display(), "committed");
        Ok(())
    }
}

/// Whether a load with `transform` appends `table`'s rows (the SQL transform builds the star).
fn appends(transform: Transform, table: &TableDef) -> bool {
    transform == Transform::Memory || !STAR_TABLES.iter().any(|t| t.name == table.name)
}

/// DuckDB's memory limit while it appends a table with no key. Under its default (80% of the
/// RAM) DuckDB kept the blocks it had already written cached: about 250 MiB through a 355 MB
/// event load, the largest part of the run's peak. Capped, it evicts them, at the same speed.
/// The cap leaves each thread far more than the row groups it fills (2 threads needed 16 MiB
/// for that load; 8 MiB ran out). The primary keys' ART indexes, which cannot spill, are built
/// after it, under the default.
fn append_memory_limit() -> String {
    format!("{}MiB", (64 * scan::cores()).max(256))
}

/// One statement of a table's append.
enum Step {
    /// Runs as it is.
    Sql(String),
    /// Inserts the batch registered with [`scan::Registration`], whose token is its parameter.
    Insert(String),
}

/// How a load appends `table`'s rows: under [`append_memory_limit`], then the limit back to
/// DuckDB's default. Every table is created without its key (it is added once all rows are
/// in), so there is no index to keep in memory and everything written can be evicted.
fn append_steps(table: &TableDef) -> Vec<Step> {
    vec![
        Step::Sql(format!("SET memory_limit = '{}'", append_memory_limit())),
        Step::Insert(format!(
            "INSERT INTO {} SELECT * FROM {}(?)",
            table.name,
            scan::FUNCTION
        )),
        Step::Sql("RESET memory_limit".to_owned()),
    ]
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
    fn the_lock_holder_is_read_from_duckdbs_message() {
        let msg = "IO Error: Could not set lock on file \"/tmp/x.duckdb\": Conflicting lock is \
                   held in /usr/local/bin/sparkify (PID 4242) by user root. See also https://x";
        assert_eq!(lock_holder(msg), " (PID 4242, /usr/local/bin/sparkify)");
        assert_eq!(lock_holder("IO Error: something else"), "");
    }
}
