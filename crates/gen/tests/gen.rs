//! The generator: deterministic for a seed, in the real layout, and read back cleanly.
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::path::{Path, PathBuf};

use sparkify_core::model::{self, SongplaysMode};
use sparkify_core::source::{self, ReadOptions, ReadOutput};
use sparkify_core::table::{STAGING_EVENTS, STAGING_SONGS, TableDef};

fn read_dir(dir: &Path, table: &TableDef, opts: &ReadOptions) -> ReadOutput {
    source::read_path(dir.to_str().unwrap(), &table.input_schema(), opts).unwrap()
}

fn gen_opts(out: &Path, seed: u64, match_fraction: f64) -> sparkify_gen::GenOptions {
    sparkify_gen::GenOptions {
        out: out.to_owned(),
        songs: 3000,
        days: 5,
        users: 60,
        events_per_day: 3000,
        seed,
        match_fraction,
        gzip: false,
    }
}

fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let found = source::discover(dir.to_str().unwrap()).unwrap();
    found
        .files
        .iter()
        .map(|f| {
            (
                f.path().unwrap().strip_prefix(dir).unwrap().to_owned(),
                std::fs::read(f.path().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn generator_is_deterministic_loads_cleanly_and_matches_as_asked() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let report = sparkify_gen::generate(&gen_opts(a.path(), 42, 0.4)).unwrap();
    sparkify_gen::generate(&gen_opts(b.path(), 42, 0.4)).unwrap();
    sparkify_gen::generate(&gen_opts(c.path(), 43, 0.4)).unwrap();
    let ta = tree(a.path());
    assert!(ta == tree(b.path()), "same seed, different output");
    assert!(ta != tree(c.path()), "different seeds, same output");
    assert_eq!(
        (report.song_files, report.log_files, report.events),
        (3000, 5, 15000)
    );

    // One file per song: no two songs share an id (and so a path).
    let song_files = ta
        .iter()
        .filter(|(p, _)| p.starts_with("song_data"))
        .count();
    assert_eq!(song_files, 3000);

    // The real layout: song_data/X/Y/Z/TRXYZ….json and log_data/YYYY/MM/YYYY-MM-DD-events.json.
    for (path, _) in &ta {
        let p = path.to_str().unwrap();
        let ok = if let Some(rest) = p.strip_prefix("song_data/") {
            let parts: Vec<&str> = rest.split('/').collect();
            parts.len() == 4
                && parts[3].starts_with(&format!("TR{}{}{}", parts[0], parts[1], parts[2]))
                && parts[3].ends_with(".json")
        } else {
            p.starts_with("log_data/2018/11/2018-11-0") && p.ends_with("-events.json")
        };
        assert!(ok, "unexpected path {p}");
    }

    let opts = ReadOptions::default();
    let events = read_dir(&a.path().join("log_data"), &STAGING_EVENTS, &opts);
    let songs = read_dir(&a.path().join("song_data"), &STAGING_SONGS, &opts);
    assert!(
        events.rejects.is_empty() && songs.rejects.is_empty(),
        "{:?}",
        events.rejects.first()
    );
    assert_eq!(events.batch.num_rows(), 15000);
    assert_eq!(songs.batch.num_rows(), 3000);
    let matched = model::build(&events.batch, &songs.batch, SongplaysMode::Matched).unwrap();
    let all = model::build(&events.batch, &songs.batch, SongplaysMode::All).unwrap();
    assert_eq!(all.ft_songplays.num_rows(), report.plays);
    let fraction = matched.ft_songplays.num_rows() as f64 / report.plays as f64;
    assert!((fraction - 0.4).abs() < 0.03, "matched fraction {fraction}");
    assert!(matched.dm_users.num_rows() > 30);
    assert_eq!(matched.dm_songs.num_rows(), 3000);
}
