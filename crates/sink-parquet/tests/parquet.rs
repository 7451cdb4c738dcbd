//! The Parquet sink on the real fixtures: read back with the `parquet` crate, the files equal
//! the in-memory tables; the partition folders are as specified; timestamps are microseconds;
//! a rerun replaces the output, in a folder and under an S3 prefix (a real local S3 server).
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arrow::array::{Array, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{LogicalType, TimeUnit};
use sparkify_core::model::{self, SLICE_ROWS, SongplaysMode, StarSchema, Times};
use sparkify_core::reject::rejects_batch;
use sparkify_core::table::{ALL_TABLES, DM_SONGS, FT_SONGPLAYS, TableDef};
use sparkify_core::{Sink, Tables};
use sparkify_parquet::{NULL_PARTITION, Partition, for_parquet, partitioning};
use sparkify_sink_parquet::ParquetSink;
use sparkify_test_support::fixtures::{self as staged, Staged};
use sparkify_test_support::moto;

struct Run {
    staged: Staged,
    star: StarSchema,
    errors: RecordBatch,
}

fn run() -> Run {
    run_with(usize::MAX)
}

/// The real data with only the first `songs` song files.
fn run_with(songs: usize) -> Run {
    let mut staged = staged::staged();
    staged.songs = staged.songs.slice(0, songs.min(staged.songs.num_rows()));
    let star = model::build(&staged.events, &staged.songs, SongplaysMode::Matched).unwrap();
    Run {
        staged,
        star,
        errors: rejects_batch(&[], &sparkify_core::history::RunStamp::at(0)),
    }
}

impl Run {
    fn tables(&self) -> Tables<'_> {
        Tables {
            staging_events: &self.staged.events,
            staging_songs: &self.staged.songs,
            star: Some(&self.star),
            load_errors: &self.errors,
            etl_files: &self.staged.etl_files,
            increment: None,
        }
    }

    fn load(&self) -> sparkify_core::Load<'_> {
        sparkify_core::Load::Parsed(self.tables())
    }
}

/// Every row of `batch` as text, one string per value ("" for null).
fn rows(batch: &RecordBatch) -> Vec<Vec<String>> {
    let opts = FormatOptions::default();
    let fmts: Vec<_> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|r| {
            batch
                .columns()
                .iter()
                .zip(&fmts)
                .map(|(c, f)| {
                    if c.is_null(r) {
                        String::new()
                    } else {
                        f.value(r).to_string()
                    }
                })
                .collect()
        })
        .collect()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn unescape(v: &str) -> String {
    let mut out = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A table read back from `root`: every file's rows, with the partition columns put back
/// from the path in their place; and the partition folders seen.
fn read_back(root: &Path, table: &TableDef) -> (BTreeSet<Vec<String>>, BTreeSet<String>, usize) {
    let mut paths = Vec::new();
    files(&root.join(table.name), &mut paths);
    let parts = partitioning(table);
    let mut got = BTreeSet::new();
    let mut folders = BTreeSet::new();
    let mut n = 0;
    for path in paths {
        assert_eq!(path.extension().unwrap(), "parquet", "{}", path.display());
        let rel = path
            .parent()
            .unwrap()
            .strip_prefix(root.join(table.name))
            .unwrap();
        let values: Vec<(String, String)> = rel
            .components()
            .map(|c| {
                let s = c.as_os_str().to_str().unwrap();
                let (k, v) = s.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        folders.insert(rel.display().to_string());
        let keys: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
        let want: Vec<&str> = parts.iter().map(|p| p.key()).collect();
        assert_eq!(keys, want, "{}", path.display());
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
        // Timestamps are Parquet TIMESTAMP(MICROS).
        for col in builder.parquet_schema().columns() {
            if let Some(LogicalType::Timestamp(t)) = col.logical_type_ref() {
                let unit = &t.unit;
                assert!(
                    matches!(unit, TimeUnit::MICROS),
                    "{} {:?}",
                    col.name(),
                    unit
                );
            }
        }
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            for mut row in rows(&batch) {
                n += 1;
                let mut columns = Vec::new();
                for p in parts {
                    let v = &values.iter().find(|(k, _)| k == p.key()).unwrap().1;
                    let v = if v == NULL_PARTITION {
                        String::new()
                    } else {
                        unescape(v)
                    };
                    match p {
                        Partition::Column(c) => columns.push((table.index_of(c).unwrap(), v)),
                        Partition::Year(c) | Partition::Month(c) => {
                            // The folder agrees with the row's own timestamp.
                            let ts = &row[table.index_of(c).unwrap()];
                            let want = if matches!(p, Partition::Year(_)) {
                                ts[0..4].to_owned()
                            } else {
                                ts[5..7].trim_start_matches('0').to_owned()
                            };
                            assert_eq!(v, want, "{}", path.display());
                        }
                    }
                }
                // Back in their places, leftmost first.
                columns.sort();
                for (i, v) in columns {
                    row.insert(i, v);
                }
                got.insert(row);
            }
        }
    }
    (got, folders, n)
}

fn assert_equal_to_memory(root: &Path, tables: &Tables<'_>, staging: bool) {
    assert!(root.join("_SUCCESS").is_file());
    for (table, rows_of) in tables.all() {
        if table.name.starts_with("staging_") && !staging {
            assert!(!root.join(table.name).exists(), "{}", table.name);
            continue;
        }
        let batch = &rows_of.to_batch().unwrap();
        let want = rows(&for_parquet(batch).unwrap());
        let (got, folders, n) = read_back(root, table);
        assert_eq!(n, batch.num_rows(), "{}", table.name);
        let want: BTreeSet<Vec<String>> = want.into_iter().collect();
        assert_eq!(got, want, "{}", table.name);
        if table.name == FT_SONGPLAYS.name {
            assert_eq!(folders, BTreeSet::from(["year=2018/month=11".to_owned()]));
        }
        if table.name == DM_SONGS.name {
            // One folder per (year, artist_id) pair.
            let pairs: BTreeSet<(String, String)> = want_pairs(batch);
            assert_eq!(folders.len(), pairs.len());
            assert!(
                folders
                    .iter()
                    .all(|f| f.starts_with("year=") && f.contains("/artist_id="))
            );
        }
    }
}

fn want_pairs(songs: &RecordBatch) -> BTreeSet<(String, String)> {
    rows(songs)
        .into_iter()
        .map(|r| {
            (
                r[DM_SONGS.index_of("year").unwrap()].clone(),
                r[DM_SONGS.index_of("artist_id").unwrap()].clone(),
            )
        })
        .collect()
}

#[test]
fn parquet_in_a_folder_reads_back_as_the_tables() {
    let r = run();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    let mut sink = ParquetSink::dir(&out).with_staging_tables(true);
    sink.check().unwrap();
    sink.load(r.load()).unwrap();
    assert_equal_to_memory(&out, &r.tables(), true);
    assert!(
        out.join("ft_songplays/year=2018/month=11/part-00000.parquet")
            .is_file()
    );
    assert!(out.join("dm_users/part-00000.parquet").is_file());
    // Every table, the ledger of files and `_SUCCESS`.
    assert_eq!(
        ALL_TABLES.len() + 2,
        std::fs::read_dir(&out).unwrap().count()
    );
}

#[test]
fn dm_time_written_a_slice_at_a_time_reads_back_whole() {
    // dm_time is made and written SLICE_ROWS rows at a time: three slices, the last short,
    // times over 19 days (a slice ends mid-day).
    let mut r = run_with(500);
    let n = 2 * SLICE_ROWS + 12_345;
    let ms: Vec<i64> = (0..n as i64)
        .map(|i| 1_541_030_400_000 + i * 3_001)
        .collect();
    r.star.dm_time = Times::new(ms);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    ParquetSink::dir(&out).load(r.load()).unwrap();
    assert_equal_to_memory(&out, &r.tables(), false);
}

#[test]
fn a_rerun_replaces_the_folder_and_leaves_nothing_beside_it() {
    let r = run();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    ParquetSink::dir(&out)
        .with_staging_tables(true)
        .load(r.load())
        .unwrap();
    std::fs::write(out.join("dm_users/stale.parquet"), b"old").unwrap();
    ParquetSink::dir(&out)
        .with_compression(sparkify_sink_parquet::Compression::Snappy)
        .load(r.load())
        .unwrap();
    assert!(!out.join("dm_users/stale.parquet").exists());
    assert_equal_to_memory(&out, &r.tables(), false);
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside, vec!["lake".to_owned()]);
}

#[test]
fn parquet_under_an_s3_prefix_is_swapped_in_and_reads_back() {
    // 500 songs: dm_songs makes a partition per (year, artist), and thousands of tiny objects
    // would only time moto.
    let r = run_with(500);
    let moto = moto::Moto::shared();
    let bucket = moto.bucket("parquet-sink");
    let s3 = moto.s3();
    let url = sparkify_s3::S3Url::parse(&format!("s3://{bucket}/lake")).unwrap();
    let stale = url.join("ft_songplays/year=1999/month=1/part-00000.parquet");
    s3.put(&stale, b"old".to_vec()).unwrap();
    let neighbour = sparkify_s3::S3Url::parse(&format!("s3://{bucket}/lake-other/keep")).unwrap();
    s3.put(&neighbour, b"keep".to_vec()).unwrap();
    let mut sink = ParquetSink::s3(s3.clone(), url.clone());
    sink.check().unwrap();
    sink.load(r.load()).unwrap();

    // Download everything under the prefix and compare as for a folder.
    let dir = tempfile::tempdir().unwrap();
    let objects = s3.list(&url.join("")).unwrap();
    let mut fetched = 0;
    for o in &objects {
        let rel = o.url.key.strip_prefix("lake/").unwrap();
        assert!(!rel.starts_with("_tmp-"), "{rel} left behind");
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, s3.get(&o.url).unwrap()).unwrap();
        fetched += 1;
    }
    assert!(fetched > 10);
    assert_equal_to_memory(dir.path(), &r.tables(), false);
    assert!(
        !dir.path().join("ft_songplays/year=1999").exists(),
        "the stale partition was deleted"
    );
    assert_eq!(
        s3.get(&neighbour).unwrap(),
        b"keep",
        "a neighbouring prefix is left alone"
    );
}
