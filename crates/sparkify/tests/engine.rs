//! The engine as a library user calls it: the real fixtures loaded into DuckDB through
//! [`Etl`], the phases a load goes through told by its events, a load that rejects too much,
//! `verify` against the source, the questions asked, and the example program run.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use sparkify::sink::DuckDbConfig;
use sparkify::verify::Copy;
use sparkify::{Class, Etl, Event, Input, Phase, SinkConfig, SongplaysMode};
use sparkify_test_support::fixtures;

fn input(path: &Path) -> Input {
    path.display().to_string().parse().unwrap()
}

fn duckdb(path: &Path) -> SinkConfig {
    DuckDbConfig::new(path).into()
}

/// A load of the real data, with every event it tells.
fn load(etl: Etl) -> (sparkify::Result<sparkify::Summary>, Vec<Event>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let told = Arc::clone(&events);
    let done = etl
        .on_event(move |e| told.lock().unwrap().push(e.clone()))
        .run();
    let events = events.lock().unwrap().clone();
    (done, events)
}

/// The phases started, in order.
fn phases(events: &[Event]) -> Vec<Phase> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Started { phase } => Some(phase.clone()),
            _ => None,
        })
        .collect()
}

fn rows(summary: &sparkify::Summary) -> Vec<(&str, usize)> {
    summary.rows.iter().map(|(t, n)| (t.as_str(), *n)).collect()
}

#[test]
fn a_load_of_the_real_data_tells_its_phases_and_counts_what_spec_says() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.duckdb");
    let real = fixtures::sparkify();
    let (done, events) = load(
        Etl::new(duckdb(&out))
            .songs([input(&real.join("song_data"))])
            .events([input(&real.join("log_data"))]),
    );
    let summary = done.unwrap();
    assert!(summary.committed);
    let counts = rows(&summary);
    for expected in [
        ("staging_events", 8056),
        ("staging_songs", 14896),
        ("ft_songplays", 333),
        ("dm_users", 97),
        ("dm_songs", 14896),
        ("dm_artists", 9553),
        ("dm_time", 6813),
    ] {
        assert!(counts.contains(&expected), "{expected:?} in {counts:?}");
    }
    assert_eq!(summary.records_read, 8056 + 14896);
    assert_eq!(
        phases(&events),
        [
            Phase::Discover,
            Phase::Load,
            Phase::Sink("building the star schema".into()),
            Phase::Sink("loading the star schema".into()),
            Phase::Sink("checking keys and committing".into()),
        ]
    );
    // Every phase started is finished, in the same order.
    let finished: Vec<Phase> = events
        .iter()
        .filter_map(|e| match e {
            Event::Finished { phase, .. } => Some(phase.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(finished, phases(&events));
    // The bytes told as read are the bytes the summary counts, and all that was to read.
    let read: u64 = events
        .iter()
        .filter_map(|e| match e {
            Event::Read { bytes } => Some(*bytes),
            _ => None,
        })
        .sum();
    let to_read: u64 = events
        .iter()
        .filter_map(|e| match e {
            Event::ToRead { bytes } => Some(*bytes),
            _ => None,
        })
        .sum();
    assert_eq!(read, summary.bytes_read);
    assert_eq!(to_read, summary.bytes_read);
    assert!(events.contains(&Event::Done {
        records: 8056 + 14896,
        rejected: 0
    }));

    // Again, incrementally: the ledger is read, nothing is new, nothing is loaded.
    let (again, events) = load(
        Etl::new(duckdb(&out))
            .songs([input(&real.join("song_data"))])
            .events([input(&real.join("log_data"))])
            .incremental(false),
    );
    let again = again.unwrap();
    assert!(again.up_to_date && !again.committed);
    assert_eq!(phases(&events), [Phase::Discover, Phase::Ledger]);
    assert_eq!(rows(&again), counts);

    // The copy agrees with the tables made from the source.
    let found = sparkify::verify(
        vec![
            Copy::Source {
                songs: vec![input(&real.join("song_data"))],
                events: vec![input(&real.join("log_data"))],
                mode: SongplaysMode::Matched,
                s3: Default::default(),
                s3_concurrency: 1,
            },
            Copy::Sink(duckdb(&out)),
        ],
        None,
    )
    .unwrap();
    assert!(found.agrees(), "{:?}", found.table);

    // The analytics questions, and a query.
    let answers = sparkify::query::analytics(duckdb(&out)).unwrap();
    let top = answers
        .answers
        .iter()
        .find(|a| a.key == "top_songs")
        .unwrap();
    assert_eq!(top.rows[0][1].as_deref(), Some("You're The One"));
    let result = sparkify::query::sql(duckdb(&out), "SELECT count(*) FROM dm_users").unwrap();
    assert_eq!(result.rows, [[Some("97".to_owned())]]);
}

#[test]
fn a_load_with_more_rejects_than_allowed_gives_its_summary_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad.duckdb");
    let real = fixtures::sparkify();
    let bad = fixtures::fixtures().join("bad");
    let (done, _) = load(
        Etl::new(duckdb(&out))
            .songs([input(&real.join("song_data/A/A/A"))])
            .events([input(&bad.join("not_json.json"))])
            .max_errors(0),
    );
    let error = done.unwrap_err();
    assert_eq!(error.class(), Class::TooManyRejects);
    let summary = error.summary().expect("the summary of a load that ran");
    assert!(!summary.committed);
    assert!(summary.rejected() > 0);
    let reject = summary.rejects().next().unwrap().unwrap();
    assert!(
        reject.source.to_string().ends_with("not_json.json"),
        "{reject}"
    );
    assert!(
        error.to_string().contains("more than --max-errors 0"),
        "{error}"
    );
}

#[test]
fn bad_usage_is_classed_as_usage() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sparkify::sink::ParquetConfig::new(sparkify_core::source::Location::Path(
        dir.path().join("lake"),
    ));
    let real = fixtures::sparkify();
    let error = Etl::new(lake)
        .songs([input(&real.join("song_data"))])
        .events([input(&real.join("log_data"))])
        .incremental(false)
        .run()
        .unwrap_err();
    assert_eq!(error.class(), Class::Usage, "{error}");
    let error = Etl::new(duckdb(&dir.path().join("x.duckdb")))
        .events([input(&real.join("log_data"))])
        .run()
        .unwrap_err();
    assert_eq!(error.class(), Class::Usage, "{error}");
    assert!(error.to_string().contains("--songs is required"), "{error}");
    let error = Etl::new(duckdb(&dir.path().join("x.duckdb")))
        .songs([input(&dir.path().join("nothing/here"))])
        .events([input(&real.join("log_data"))])
        .run()
        .unwrap_err();
    assert_eq!(error.class(), Class::Usage, "{error}");
}

/// `examples/load_folder.rs`, as `cargo test` builds it beside this test's binary.
#[test]
fn the_example_loads_the_real_data_and_prints_the_counts() {
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap().parent().unwrap().join("examples");
    let example = examples.join(format!("load_folder{}", std::env::consts::EXE_SUFFIX));
    assert!(
        example.is_file(),
        "{} (cargo test builds the examples)",
        example.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&example)
        .arg(fixtures::sparkify())
        .arg(dir.path().join("ex.duckdb"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "ft_songplays: 333",
        "dm_users: 97",
        "dm_artists: 9553",
        "rejects: 0",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} in:\n{stdout}");
    }
}
