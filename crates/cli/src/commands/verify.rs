//! `sparkify verify`: every table's row count and content fingerprint
//! ([`sparkify_core::fingerprint`]) in each sink (computed inside the database), in a Parquet
//! lake (read here), and with `--source` in the tables recomputed from the input; compared
//! with the first. Where a table differs, its rows' keys and hashes are fetched from the two
//! copies, and up to five keys missing, extra or changed are shown.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use sparkify_core::Tables;
use sparkify_core::fingerprint::{self, Fingerprint, RowDiff};
use sparkify_core::model::{self, SongplaysMode};
use sparkify_core::reject::rejects_batch;
use sparkify_core::sink::QueryResult;
use sparkify_core::source::Location;
use sparkify_core::sql::Dialect;
use sparkify_core::table::{ALL_TABLES, STAGING_TABLES, TableDef};

use crate::args::{Songplays, VerifyArgs};
use crate::exit::Failure;
use crate::settings::{self, SinkSettings};
use crate::sink::{self, AnySink};
use crate::{commands, output};

/// Keys shown per kind of difference.
const SAMPLES: usize = 5;

pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let mut targets = Vec::new();
    if args.source {
        targets.push(source(&args)?);
    }
    for spec in &args.sinks {
        targets.push(target(spec, &args)?);
    }
    if targets.len() < 2 {
        return Err(Failure::Usage(
            "verify compares two copies or more: give --sink twice, or --sink with --source".into(),
        )
        .into());
    }
    let mut found = Vec::new();
    for t in &mut targets {
        found.push(t.fingerprints()?);
    }
    let comparison = compare(&targets, &found);
    println!(
        "{}",
        output::result(&comparison.table, args.format).trim_end_matches('\n')
    );
    if comparison.differing.is_empty() {
        return Ok(());
    }
    for &(table, i, reference) in &comparison.differing {
        let theirs = targets[i].row_hashes(table)?;
        let ours = targets[reference].row_hashes(table)?;
        let diff = fingerprint::diff(table, &ours, &theirs);
        println!(
            "\n{} in {} against {}:",
            table.name, targets[i].name, targets[reference].name
        );
        print_keys("missing", &diff.missing);
        print_keys("extra", &diff.extra);
        print_keys("changed", &diff.changed);
        if diff == RowDiff::default() {
            println!(
                "  the same rows, but the fingerprints differ (a database with another canonical form?)"
            );
        }
    }
    let mut tables: Vec<&str> = comparison.differing.iter().map(|d| d.0.name).collect();
    tables.dedup();
    Err(Failure::Differs(format!("the copies differ in {}", tables.join(", "))).into())
}

fn print_keys(what: &str, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    let more = keys.len().saturating_sub(SAMPLES);
    let shown: Vec<&str> = keys.iter().take(SAMPLES).map(String::as_str).collect();
    let more = if more > 0 {
        format!(" (and {more} more)")
    } else {
        String::new()
    };
    println!("  {} {what}: {}{more}", keys.len(), shown.join("; "));
}

/// One copy of the tables.
struct Target {
    name: String,
    copy: Copy,
}

enum Copy {
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
    fn fingerprints(&mut self) -> anyhow::Result<BTreeMap<&'static str, Found>> {
        let mut out = BTreeMap::new();
        match &mut self.copy {
            Copy::Sql { sink, dialect } => {
                let present = sink::tables_present(sink.as_mut())?;
                let sums = if present.is_empty() {
                    BTreeMap::new()
                } else {
                    let result = sink.query(&fingerprint::fingerprints_sql(dialect, &present))?;
                    fingerprint::parse_fingerprints(&result)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", self.name))?
                };
                for t in ALL_TABLES {
                    let found = sums
                        .get(t.name)
                        .map_or(Found::Absent, |f| Found::Fingerprint(*f));
                    out.insert(t.name, found);
                }
            }
            Copy::Batches { tables, skipped } => {
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

    fn row_hashes(&mut self, table: &TableDef) -> anyhow::Result<Vec<(String, String)>> {
        match &mut self.copy {
            Copy::Sql { sink, dialect } => {
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
            Copy::Batches { tables, .. } => match tables.get(table.name) {
                Some(batch) => Ok(fingerprint::row_hashes(table, batch)?),
                None => Ok(Vec::new()),
            },
        }
    }
}

/// The comparison table, and every (table, copy, reference copy) that differs.
struct Comparison {
    table: QueryResult,
    differing: Vec<(&'static TableDef, usize, usize)>,
}

fn compare(targets: &[Target], found: &[BTreeMap<&'static str, Found>]) -> Comparison {
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
    Comparison {
        table: QueryResult { columns, rows },
        differing,
    }
}

/// A sink, a DuckDB file or a Parquet lake in a folder, as a copy to compare.
fn target(spec: &str, args: &VerifyArgs) -> anyhow::Result<Target> {
    let settings = settings::sql_sink(spec, &args.config, &args.redshift)?;
    match settings {
        SinkSettings::Parquet(config) => {
            let Location::Path(dir) = &config.location else {
                return Err(Failure::Usage(format!(
                    "verify reads a Parquet lake from a folder; {spec} is in S3 (copy it to a folder first)"
                ))
                .into());
            };
            if !dir.is_dir() {
                return Err(Failure::Usage(format!("{spec}: no such folder")).into());
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
                name: spec.to_owned(),
                copy: Copy::Batches { tables, skipped },
            })
        }
        settings => {
            if let SinkSettings::DuckDb { path, .. } = &settings
                && !path.is_file()
            {
                return Err(Failure::Usage(format!("{spec}: no such DuckDB file")).into());
            }
            let sink = sink::build(settings);
            let dialect = sink
                .dialect()
                .ok_or_else(|| Failure::Usage(format!("{spec} runs no SQL")))?;
            Ok(Target {
                name: sink.describe(),
                copy: Copy::Sql { sink, dialect },
            })
        }
    }
}

/// The tables recomputed from `--songs` and `--events`, as `etl` builds them.
fn source(args: &VerifyArgs) -> anyhow::Result<Target> {
    let s3 = settings::s3_settings(&args.config, &args.s3)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .map_err(|e| Failure::Usage(format!("threads: {e}")))?;
    let read = commands::etl::read_inputs(
        &args.songs,
        &args.events,
        &s3,
        args.s3.s3_concurrency.max(1),
        sparkify_core::reader::DEFAULT_BATCH_SIZE,
        &pool,
    )?;
    let mode = match args.songplays {
        Songplays::Matched => SongplaysMode::Matched,
        Songplays::All => SongplaysMode::All,
    };
    let star =
        pool.install(|| model::build(&read.events_out.batch, &read.songs_out.batch, mode))?;
    let rejects: Vec<_> = read
        .songs_out
        .rejects
        .iter()
        .chain(&read.events_out.rejects)
        .cloned()
        .collect();
    let load_errors = rejects_batch(&rejects, chrono::Utc::now().timestamp_millis());
    // Fingerprints leave out the files' ids, and verify compares no ledger.
    let etl_files = arrow::array::RecordBatch::new_empty(sparkify_core::table::ETL_FILES.schema());
    let tables = Tables {
        staging_events: &read.events_out.batch,
        staging_songs: &read.songs_out.batch,
        star: Some(&star),
        load_errors: &load_errors,
        etl_files: &etl_files,
        increment: None,
    };
    Ok(Target {
        name: "source".to_owned(),
        copy: Copy::Batches {
            tables: tables
                .all()
                .into_iter()
                .map(|(t, rows)| Ok((t.name, rows.to_batch()?)))
                .collect::<sparkify_core::Result<_>>()?,
            skipped: Vec::new(),
        },
    })
}
