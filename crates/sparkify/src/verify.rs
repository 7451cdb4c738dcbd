//! [`verify`]: every table's row count and content fingerprint
//! ([`sparkify_core::fingerprint`]) in each copy, computed inside a database, read from a
//! Parquet lake, or recomputed from the input ([`Copy::Source`]), compared with the first
//! copy. Where a table differs, its rows' keys and hashes are fetched from the two copies and
//! compared ([`Difference`]).

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use sparkify_core::Tables;
use sparkify_core::fingerprint::{self, Fingerprint, RowDiff};
use sparkify_core::model::{self, SongplaysMode};
use sparkify_core::reject::rejects_batch;
use sparkify_core::sink::QueryResult;
use sparkify_core::source::{Input, Location};
use sparkify_core::sql::Dialect;
use sparkify_core::table::{ALL_TABLES, STAGING_TABLES, TableDef};
use sparkify_s3::S3Options;

use crate::error::{Error, Result};
use crate::progress::{Observer, Tell};
use crate::read::Inputs;
use crate::sink::{self, AnySink, SinkConfig};

/// A copy of the tables to compare.
#[derive(Debug, Clone)]
pub enum Copy {
    /// A sink: a database (fingerprinted inside it) or a Parquet lake in a folder (read here).
    Sink(SinkConfig),
    /// The tables recomputed in memory from the input, as a load builds them.
    Source {
        /// The song files.
        songs: Vec<Input>,
        /// The event logs.
        events: Vec<Input>,
        /// Which plays became songplays in the load being verified.
        mode: SongplaysMode,
        /// How `s3://` inputs are reached.
        s3: S3Options,
        /// S3 GETs at a time.
        s3_concurrency: usize,
    },
}

/// What [`verify`] found.
#[derive(Debug)]
pub struct Verification {
    /// A row a table, a column a copy: each cell the table's rows and fingerprint, `absent`,
    /// or `not written` (a lake's staging tables); a cell that differs from the reference
    /// ends in `≠`.
    pub table: QueryResult,
    /// Each table that differs from the reference, with the keys that do.
    pub differences: Vec<Difference>,
}

impl Verification {
    /// Whether every copy agrees.
    pub fn agrees(&self) -> bool {
        self.differences.is_empty()
    }

    /// The tables that differ, each once.
    pub fn differing_tables(&self) -> Vec<&'static str> {
        let mut tables: Vec<&str> = self.differences.iter().map(|d| d.table).collect();
        tables.dedup();
        tables
    }
}

/// One table of one copy that differs from the reference copy.
#[derive(Debug)]
pub struct Difference {
    /// The table.
    pub table: &'static str,
    /// The copy that differs, and the reference, by name.
    pub copy: String,
    /// The copy it was compared with.
    pub reference: String,
    /// The keys missing, extra and changed in `copy`.
    pub rows: RowDiff,
}

/// Compares `copies` (two or more; the first is the reference), telling `observer` of the
/// reading when a copy is the source.
pub fn verify(copies: Vec<Copy>, observer: Option<Observer>) -> Result<Verification> {
    if copies.len() < 2 {
        return Err(Error::Usage(
            "verify compares two copies or more: give --sink twice, or --sink with --source".into(),
        ));
    }
    let tell = Tell::new(observer);
    let mut targets = copies
        .into_iter()
        .map(|copy| match copy {
            Copy::Sink(config) => target(config),
            Copy::Source {
                songs,
                events,
                mode,
                s3,
                s3_concurrency,
            } => {
                let inputs = Inputs {
                    songs: &songs,
                    events: &events,
                    s3: &s3,
                    s3_concurrency,
                };
                source(&inputs, mode, &tell)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let mut found = Vec::new();
    for t in &mut targets {
        found.push(t.fingerprints()?);
    }
    let (table, differing) = compare(&targets, &found);
    let mut differences = Vec::new();
    for (table, i, reference) in differing {
        let theirs = targets[i].row_hashes(table)?;
        let ours = targets[reference].row_hashes(table)?;
        differences.push(Difference {
            table: table.name,
            copy: targets[i].name.clone(),
            reference: targets[reference].name.clone(),
            rows: fingerprint::diff(table, &ours, &theirs),
        });
    }
    Ok(Verification { table, differences })
}

/// One copy of the tables.
struct Target {
    name: String,
    copy: Held,
}

enum Held {
    /// A database: everything is computed in it.
    Sql {
        sink: Box<dyn AnySink>,
        dialect: Dialect,
    },
    /// Tables held here: a Parquet lake read back, or the tables recomputed from the input.
    /// `skipped` are the tables this copy was made without (a lake's staging tables).
    Batches {
        tables: BTreeMap<&'static str, RecordBatch>,
        skipped: Vec<&'static str>,
    },
}

/// A table in one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Fingerprint(Fingerprint),
    Absent,
    /// Not written to this copy by design; left out of the comparison.
    Skipped,
}

impl Target {
    fn fingerprints(&mut self) -> Result<BTreeMap<&'static str, Found>> {
        let mut out = BTreeMap::new();
        match &mut self.copy {
            Held::Sql { sink, dialect } => {
                let present = sink::tables_present(sink.as_mut())?;
                let sums = if present.is_empty() {
                    BTreeMap::new()
                } else {
                    let result = sink.query(&fingerprint::fingerprints_sql(dialect, &present))?;
                    fingerprint::parse_fingerprints(&result)
                        .map_err(|e| Error::Unreadable(format!("{}: {e}", self.name)))?
                };
                for t in ALL_TABLES {
                    let found = sums
                        .get(t.name)
                        .map_or(Found::Absent, |f| Found::Fingerprint(*f));
                    out.insert(t.name, found);
                }
            }
            Held::Batches { tables, skipped } => {
                for t in ALL_TABLES {
                    let found = match tables.get(t.name) {
                        Some(batch) => Found::Fingerprint(fingerprint::of_batch(t, batch)?),
                        None if skipped.contains(&t.name) => Found::Skipped,
                        None => Found::Absent,
                    };
                    out.insert(t.name, found);
                }
            }
        }
        Ok(out)
    }

    fn row_hashes(&mut self, table: &TableDef) -> Result<Vec<(String, String)>> {
        match &mut self.copy {
            Held::Sql { sink, dialect } => {
                let result = sink.query(&fingerprint::row_hashes_sql(dialect, table))?;
                Ok(result
                    .rows
                    .into_iter()
                    .map(|mut r| {
                        let hash = r.pop().flatten().unwrap_or_default();
                        let key = r.pop().flatten().unwrap_or_default();
                        (key, hash)
                    })
                    .collect())
            }
            Held::Batches { tables, .. } => match tables.get(table.name) {
                Some(batch) => Ok(fingerprint::row_hashes(table, batch)?),
                None => Ok(Vec::new()),
            },
        }
    }
}

/// The comparison table, and every (table, copy, reference copy) that differs.
type Compared = (QueryResult, Vec<(&'static TableDef, usize, usize)>);

fn compare(targets: &[Target], found: &[BTreeMap<&'static str, Found>]) -> Compared {
    let mut columns = vec!["table".to_owned()];
    columns.extend(targets.iter().map(|t| t.name.clone()));
    let mut rows = Vec::new();
    let mut differing = Vec::new();
    for table in ALL_TABLES {
        let of = |i: usize| found[i].get(table.name).copied().unwrap_or(Found::Absent);
        // The reference is the first copy that holds the table.
        let reference = (0..targets.len()).find(|&i| matches!(of(i), Found::Fingerprint(_)));
        let mut row = vec![Some(table.name.to_owned())];
        for i in 0..targets.len() {
            let same = reference.is_none_or(|r| r == i || of(i) == of(r));
            let cell = match of(i) {
                Found::Fingerprint(f) => format!("{} rows {f}", f.rows),
                Found::Absent => "absent".to_owned(),
                Found::Skipped => "not written".to_owned(),
            };
            if of(i) == Found::Skipped || same {
                row.push(Some(cell));
            } else {
                row.push(Some(format!("{cell} ≠")));
                if let Some(r) = reference {
                    differing.push((table, i, r));
                }
            }
        }
        rows.push(row);
    }
    (QueryResult { columns, rows }, differing)
}

/// A sink, a DuckDB file or a Parquet lake in a folder, as a copy to compare.
fn target(config: SinkConfig) -> Result<Target> {
    match config {
        SinkConfig::Parquet(config) => {
            let name = SinkConfig::Parquet(config.clone()).describe();
            let Location::Path(dir) = &config.location else {
                return Err(Error::Usage(format!(
                    "verify reads a Parquet lake from a folder; {name} is in S3 (copy it to a folder first)"
                )));
            };
            if !dir.is_dir() {
                return Err(Error::Usage(format!("{name}: no such folder")));
            }
            let mut tables = BTreeMap::new();
            let mut skipped = Vec::new();
            for t in ALL_TABLES {
                match sparkify_parquet::read_table(dir, t)? {
                    Some(batch) => {
                        tables.insert(t.name, batch);
                    }
                    None if STAGING_TABLES.iter().any(|s| s.name == t.name) => {
                        skipped.push(t.name);
                    }
                    None => {}
                }
            }
            Ok(Target {
                name,
                copy: Held::Batches { tables, skipped },
            })
        }
        config => {
            if let SinkConfig::DuckDb(duckdb) = &config
                && !duckdb.path.is_file()
            {
                return Err(Error::Usage(format!(
                    "duckdb:{}: no such DuckDB file",
                    duckdb.path.display()
                )));
            }
            let sink = config.build();
            let dialect = sink
                .dialect()
                .ok_or_else(|| Error::Usage(format!("{} runs no SQL", sink.describe())))?;
            Ok(Target {
                name: sink.describe(),
                copy: Held::Sql { sink, dialect },
            })
        }
    }
}

/// The tables recomputed from the input, as a load builds them.
fn source(inputs: &Inputs<'_>, mode: SongplaysMode, tell: &Tell) -> Result<Target> {
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .map_err(|e| Error::Usage(format!("threads: {e}")))?;
    let (songs, events) = inputs.read(sparkify_core::reader::DEFAULT_BATCH_SIZE, &pool, tell)?;
    let star = pool.install(|| model::build(&events.batch, &songs.batch, mode))?;
    let rejects: Vec<_> = songs
        .rejects
        .iter()
        .chain(&events.rejects)
        .cloned()
        .collect();
    let load_errors = rejects_batch(&rejects, &sparkify_core::history::RunStamp::now());
    // Fingerprints leave out the files' ids, and verify compares no ledger.
    let etl_files = RecordBatch::new_empty(sparkify_core::table::ETL_FILES.schema());
    let tables = Tables {
        staging_events: &events.batch,
        staging_songs: &songs.batch,
        star: Some(&star),
        load_errors: &load_errors,
        etl_files: &etl_files,
        increment: None,
    };
    Ok(Target {
        name: "source".to_owned(),
        copy: Held::Batches {
            tables: tables
                .all()
                .into_iter()
                .map(|(t, rows)| Ok((t.name, rows.to_batch()?)))
                .collect::<sparkify_core::Result<_>>()?,
            skipped: Vec::new(),
        },
    })
}
