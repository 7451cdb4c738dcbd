//! The star schema, built in memory from the staging tables exactly as SPEC defines it.
//!
//! Every dedup rule is a total order (a "preference"): the row that sorts first wins, and ties
//! are broken down to the last column, so the result is the same whatever the thread count,
//! batch size or file order. The SQL transforms state the same orders as `ROW_NUMBER()`
//! windows; `docs/model.md` lists them.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int32Builder, Int64Builder, RecordBatch,
    StringArray, StringBuilder, TimestampMillisecondArray, TimestampMillisecondBuilder,
};
use arrow::datatypes::{Float64Type, Int32Type, TimestampMillisecondType};
use chrono::{Datelike, Timelike};

use crate::error::Result;
use crate::table::{
    DM_ARTISTS, DM_SONGS, DM_TIME, DM_USERS, FT_SONGPLAYS, STAGING_EVENTS, STAGING_SONGS, TableDef,
};

/// Which plays become rows of `ft_songplays`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SongplaysMode {
    /// Only plays whose song was found (the seed's `song_id IS NOT NULL`).
    #[default]
    Matched,
    /// Every play; unmatched ones with NULL song and artist ids.
    All,
}

/// The five tables of the star schema.
#[derive(Debug, Clone)]
pub struct StarSchema {
    pub ft_songplays: RecordBatch,
    pub dm_users: RecordBatch,
    pub dm_songs: RecordBatch,
    pub dm_artists: RecordBatch,
    pub dm_time: RecordBatch,
}

impl StarSchema {
    /// The tables with their definitions, fact first.
    pub fn tables(&self) -> [(&'static TableDef, &RecordBatch); 5] {
        [
            (&FT_SONGPLAYS, &self.ft_songplays),
            (&DM_USERS, &self.dm_users),
            (&DM_SONGS, &self.dm_songs),
            (&DM_ARTISTS, &self.dm_artists),
            (&DM_TIME, &self.dm_time),
        ]
    }
}

/// Builds the star schema from `staging_events` and `staging_songs` batches.
pub fn build(events: &RecordBatch, songs: &RecordBatch, mode: SongplaysMode) -> Result<StarSchema> {
    let ev = Events::new(events);
    let so = Songs::new(songs);
    // The three tables drawn from the events cost about the same; they build side by side on
    // the current rayon pool.
    let (ft_songplays, (dm_users, dm_time)) = rayon::join(
        || songplays(&ev, &so, mode),
        || rayon::join(|| users(&ev), || time(&ev)),
    );
    Ok(StarSchema {
        ft_songplays: ft_songplays?,
        dm_users: dm_users?,
        dm_songs: dim_songs(&so)?,
        dm_artists: artists(&so)?,
        dm_time: dm_time?,
    })
}

fn column<'a>(batch: &'a RecordBatch, table: &TableDef, name: &str) -> &'a ArrayRef {
    let idx = table
        .index_of(name)
        .expect("column names come from the table definitions");
    batch.column(idx)
}

struct Events<'a> {
    len: usize,
    artist: &'a StringArray,
    first_name: &'a StringArray,
    gender: &'a StringArray,
    item: &'a Int32Array,
    last_name: &'a StringArray,
    length: &'a Float64Array,
    level: &'a StringArray,
    location: &'a StringArray,
    page: &'a StringArray,
    session: &'a Int32Array,
    song: &'a StringArray,
    ts: &'a TimestampMillisecondArray,
    user_agent: &'a StringArray,
    user: &'a Int32Array,
}

impl<'a> Events<'a> {
    fn new(b: &'a RecordBatch) -> Self {
        let t = &STAGING_EVENTS;
        Events {
            len: b.num_rows(),
            artist: column(b, t, "artist").as_string(),
            first_name: column(b, t, "firstName").as_string(),
            gender: column(b, t, "gender").as_string(),
            item: column(b, t, "itemInSession").as_primitive::<Int32Type>(),
            last_name: column(b, t, "lastName").as_string(),
            length: column(b, t, "length").as_primitive::<Float64Type>(),
            level: column(b, t, "level").as_string(),
            location: column(b, t, "location").as_string(),
            page: column(b, t, "page").as_string(),
            session: column(b, t, "sessionId").as_primitive::<Int32Type>(),
            song: column(b, t, "song").as_string(),
            ts: column(b, t, "ts").as_primitive::<TimestampMillisecondType>(),
            user_agent: column(b, t, "userAgent").as_string(),
            user: column(b, t, "userId").as_primitive::<Int32Type>(),
        }
    }

    /// Rows that are song plays with the natural key and time a songplay needs.
    fn plays(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(|&i| {
            self.page.is_valid(i)
                && self.page.value(i) == "NextSong"
                && self.ts.is_valid(i)
                && self.session.is_valid(i)
                && self.item.is_valid(i)
        })
    }
}

struct Songs<'a> {
    len: usize,
    artist_id: &'a StringArray,
    latitude: &'a Float64Array,
    longitude: &'a Float64Array,
    location: &'a StringArray,
    artist_name: &'a StringArray,
    song_id: &'a StringArray,
    title: &'a StringArray,
    duration: &'a Float64Array,
    year: &'a Int32Array,
}

impl<'a> Songs<'a> {
    fn new(b: &'a RecordBatch) -> Self {
        let t = &STAGING_SONGS;
        Songs {
            len: b.num_rows(),
            artist_id: column(b, t, "artist_id").as_string(),
            latitude: column(b, t, "artist_latitude").as_primitive::<Float64Type>(),
            longitude: column(b, t, "artist_longitude").as_primitive::<Float64Type>(),
            location: column(b, t, "artist_location").as_string(),
            artist_name: column(b, t, "artist_name").as_string(),
            song_id: column(b, t, "song_id").as_string(),
            title: column(b, t, "title").as_string(),
            duration: column(b, t, "duration").as_primitive::<Float64Type>(),
            year: column(b, t, "year").as_primitive::<Int32Type>(),
        }
    }
}

fn opt<A: ArrayAccessor>(a: &A, i: usize) -> Option<A::Item> {
    a.is_valid(i).then(|| a.value(i))
}

trait ArrayAccessor: Array {
    type Item;
    fn value(&self, i: usize) -> Self::Item;
}

impl<'a> ArrayAccessor for &'a StringArray {
    type Item = &'a str;
    fn value(&self, i: usize) -> &'a str {
        StringArray::value(*self, i)
    }
}

impl ArrayAccessor for &Int32Array {
    type Item = i32;
    fn value(&self, i: usize) -> i32 {
        Int32Array::value(*self, i)
    }
}

impl ArrayAccessor for &TimestampMillisecondArray {
    type Item = i64;
    fn value(&self, i: usize) -> i64 {
        TimestampMillisecondArray::value(*self, i)
    }
}

impl ArrayAccessor for &Float64Array {
    type Item = F64;
    fn value(&self, i: usize) -> F64 {
        F64(Float64Array::value(*self, i))
    }
}

/// An f64 ordered by `total_cmp`, for sort keys.
#[derive(Debug, Clone, Copy)]
struct F64(f64);

impl PartialEq for F64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for F64 {}
impl PartialOrd for F64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for F64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// `ORDER BY x ASC NULLS LAST`: `Less` means `a` is preferred.
fn asc<T: Ord>(a: Option<T>, b: Option<T>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// `ORDER BY x DESC NULLS LAST`.
fn desc<T: Ord>(a: Option<T>, b: Option<T>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.cmp(&a),
        (a, b) => asc(a.map(|_| ()), b.map(|_| ())),
    }
}

/// The preferred row of each group: `key` gives a row's group (or `None` to leave it out),
/// `prefer` orders two rows of one group. Groups come back sorted by key.
fn pick<K: Ord + std::hash::Hash + Copy>(
    rows: impl Iterator<Item = usize>,
    key: impl Fn(usize) -> Option<K>,
    prefer: impl Fn(usize, usize) -> Ordering,
) -> Vec<(K, usize)> {
    let mut best: HashMap<K, usize> = HashMap::new();
    for i in rows {
        let Some(k) = key(i) else { continue };
        best.entry(k)
            .and_modify(|cur| {
                if prefer(i, *cur) == Ordering::Less {
                    *cur = i;
                }
            })
            .or_insert(i);
    }
    let mut out: Vec<(K, usize)> = best.into_iter().collect();
    out.sort_unstable_by_key(|a| a.0);
    out
}

fn strings<'a>(rows: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    let mut b = StringBuilder::new();
    for v in rows {
        b.append_option(v);
    }
    Arc::new(b.finish())
}

fn ints(rows: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    let mut b = Int32Builder::new();
    for v in rows {
        b.append_option(v);
    }
    Arc::new(b.finish())
}

fn floats(rows: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(rows.collect::<Float64Array>())
}

fn timestamps(rows: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    let mut b = TimestampMillisecondBuilder::new();
    for v in rows {
        b.append_option(v);
    }
    Arc::new(b.finish())
}

/// One row per user, attributes from the latest event: ts, then itemInSession, then
/// sessionId, all descending; then level, firstName, lastName, gender ascending.
fn users(ev: &Events<'_>) -> Result<RecordBatch> {
    let picked = pick(
        0..ev.len,
        |i| opt(&ev.user, i),
        |a, b| {
            desc(opt(&ev.ts, a), opt(&ev.ts, b))
                .then_with(|| desc(opt(&ev.item, a), opt(&ev.item, b)))
                .then_with(|| desc(opt(&ev.session, a), opt(&ev.session, b)))
                .then_with(|| asc(opt(&ev.level, a), opt(&ev.level, b)))
                .then_with(|| asc(opt(&ev.first_name, a), opt(&ev.first_name, b)))
                .then_with(|| asc(opt(&ev.last_name, a), opt(&ev.last_name, b)))
                .then_with(|| asc(opt(&ev.gender, a), opt(&ev.gender, b)))
        },
    );
    let rows = || picked.iter().map(|&(_, i)| i);
    Ok(RecordBatch::try_new(
        DM_USERS.schema(),
        vec![
            ints(picked.iter().map(|&(k, _)| Some(k))),
            strings(rows().map(|i| opt(&ev.first_name, i))),
            strings(rows().map(|i| opt(&ev.last_name, i))),
            strings(rows().map(|i| opt(&ev.gender, i))),
            strings(rows().map(|i| opt(&ev.level, i))),
        ],
    )?)
}

/// One row per song_id: year <> 0 first, then larger duration, smaller artist_id, smaller
/// title, larger year.
fn dim_songs(so: &Songs<'_>) -> Result<RecordBatch> {
    let has_year = |i| opt(&so.year, i).is_some_and(|y| y != 0);
    let picked = pick(
        0..so.len,
        |i| opt(&so.song_id, i),
        |a, b| {
            has_year(b)
                .cmp(&has_year(a))
                .then_with(|| desc(opt(&so.duration, a), opt(&so.duration, b)))
                .then_with(|| asc(opt(&so.artist_id, a), opt(&so.artist_id, b)))
                .then_with(|| asc(opt(&so.title, a), opt(&so.title, b)))
                .then_with(|| desc(opt(&so.year, a), opt(&so.year, b)))
        },
    );
    let rows = || picked.iter().map(|&(_, i)| i);
    Ok(RecordBatch::try_new(
        DM_SONGS.schema(),
        vec![
            strings(picked.iter().map(|&(k, _)| Some(k))),
            strings(rows().map(|i| opt(&so.title, i))),
            strings(rows().map(|i| opt(&so.artist_id, i))),
            ints(rows().map(|i| opt(&so.year, i))),
            floats(rows().map(|i| opt(&so.duration, i).map(|d| d.0))),
        ],
    )?)
}

/// One row per artist_id, whole from one song record: one with a latitude first, then a
/// non-empty location, the shortest name in characters, the smaller name, the smaller song_id;
/// then location, latitude, longitude ascending.
fn artists(so: &Songs<'_>) -> Result<RecordBatch> {
    let has_lat = |i| so.latitude.is_valid(i);
    let has_loc = |i| opt(&so.location, i).is_some_and(|l| !l.is_empty());
    let name_len = |i| opt(&so.artist_name, i).map(|n: &str| n.chars().count());
    let picked = pick(
        0..so.len,
        |i| opt(&so.artist_id, i),
        |a, b| {
            has_lat(b)
                .cmp(&has_lat(a))
                .then_with(|| has_loc(b).cmp(&has_loc(a)))
                .then_with(|| asc(name_len(a), name_len(b)))
                .then_with(|| asc(opt(&so.artist_name, a), opt(&so.artist_name, b)))
                .then_with(|| asc(opt(&so.song_id, a), opt(&so.song_id, b)))
                .then_with(|| asc(opt(&so.location, a), opt(&so.location, b)))
                .then_with(|| asc(opt(&so.latitude, a), opt(&so.latitude, b)))
                .then_with(|| asc(opt(&so.longitude, a), opt(&so.longitude, b)))
        },
    );
    let rows = || picked.iter().map(|&(_, i)| i);
    Ok(RecordBatch::try_new(
        DM_ARTISTS.schema(),
        vec![
            strings(picked.iter().map(|&(k, _)| Some(k))),
            strings(rows().map(|i| opt(&so.artist_name, i))),
            strings(rows().map(|i| opt(&so.location, i))),
            floats(rows().map(|i| opt(&so.latitude, i).map(|d| d.0))),
            floats(rows().map(|i| opt(&so.longitude, i).map(|d| d.0))),
        ],
    )?)
}

/// One row per distinct `ts` of the plays, with ISO week and ISO weekday (1 = Monday).
fn time(ev: &Events<'_>) -> Result<RecordBatch> {
    let mut ts: Vec<i64> = ev.plays().map(|i| ev.ts.value(i)).collect();
    ts.sort_unstable();
    ts.dedup();
    let parts: Vec<[i32; 6]> = ts
        .iter()
        .map(|&ms| {
            let t = crate::time::naive(ms).expect("the reader keeps timestamps in range");
            [
                t.hour() as i32,
                t.day() as i32,
                t.iso_week().week() as i32,
                t.month() as i32,
                t.year(),
                t.weekday().number_from_monday() as i32,
            ]
        })
        .collect();
    let part = |k: usize| ints(parts.iter().map(move |p| Some(p[k])));
    Ok(RecordBatch::try_new(
        DM_TIME.schema(),
        vec![
            timestamps(ts.iter().map(|&t| Some(t))),
            part(0),
            part(1),
            part(2),
            part(3),
            part(4),
            part(5),
        ],
    )?)
}

/// One row per play, deduplicated on (sessionId, itemInSession) preferring the earliest ts,
/// then the smaller userId, level, location, userAgent, song, artist, length. The song is the
/// song record whose title and artist name equal the play's, the duration closest to its
/// length first, then the smaller song_id, then the smaller artist_id.
fn songplays(ev: &Events<'_>, so: &Songs<'_>, mode: SongplaysMode) -> Result<RecordBatch> {
    let picked = pick(
        ev.plays(),
        |i| Some((ev.session.value(i), ev.item.value(i))),
        |a, b| {
            asc(opt(&ev.ts, a), opt(&ev.ts, b))
                .then_with(|| asc(opt(&ev.user, a), opt(&ev.user, b)))
                .then_with(|| asc(opt(&ev.level, a), opt(&ev.level, b)))
                .then_with(|| asc(opt(&ev.location, a), opt(&ev.location, b)))
                .then_with(|| asc(opt(&ev.user_agent, a), opt(&ev.user_agent, b)))
                .then_with(|| asc(opt(&ev.song, a), opt(&ev.song, b)))
                .then_with(|| asc(opt(&ev.artist, a), opt(&ev.artist, b)))
                .then_with(|| asc(opt(&ev.length, a), opt(&ev.length, b)))
        },
    );

    let mut by_name: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for i in 0..so.len {
        if let (Some(t), Some(a)) = (opt(&so.title, i), opt(&so.artist_name, i)) {
            by_name.entry((t, a)).or_default().push(i);
        }
    }
    let find_song = |i: usize| -> Option<usize> {
        let key = (opt(&ev.song, i)?, opt(&ev.artist, i)?);
        let length = opt(&ev.length, i);
        let distance =
            |s: usize| -> Option<F64> { Some(F64((opt(&so.duration, s)?.0 - length?.0).abs())) };
        by_name.get(&key)?.iter().copied().min_by(|&a, &b| {
            asc(distance(a), distance(b))
                .then_with(|| asc(opt(&so.song_id, a), opt(&so.song_id, b)))
                .then_with(|| asc(opt(&so.artist_id, a), opt(&so.artist_id, b)))
        })
    };

    let mut plays: Vec<(i64, i32, i32, usize, Option<usize>)> = picked
        .iter()
        .filter_map(|&((session, item), i)| {
            let song = find_song(i);
            (song.is_some() || mode == SongplaysMode::All)
                .then(|| (ev.ts.value(i), session, item, i, song))
        })
        .collect();
    plays.sort_unstable_by_key(|p| (p.0, p.1, p.2));

    let mut id = Int64Builder::with_capacity(plays.len());
    for n in 0..plays.len() {
        id.append_value(n as i64);
    }
    let ev_rows = || plays.iter().map(|p| p.3);
    let song_rows = || plays.iter().map(|p| p.4);
    Ok(RecordBatch::try_new(
        FT_SONGPLAYS.schema(),
        vec![
            Arc::new(id.finish()),
            timestamps(plays.iter().map(|p| Some(p.0))),
            ints(ev_rows().map(|i| opt(&ev.user, i))),
            strings(ev_rows().map(|i| opt(&ev.level, i))),
            strings(song_rows().map(|s| s.and_then(|s| opt(&so.song_id, s)))),
            strings(song_rows().map(|s| s.and_then(|s| opt(&so.artist_id, s)))),
            ints(plays.iter().map(|p| Some(p.1))),
            ints(plays.iter().map(|p| Some(p.2))),
            strings(ev_rows().map(|i| opt(&ev.location, i))),
            strings(ev_rows().map(|i| opt(&ev.user_agent, i).map(strip_quotes))),
        ],
    )?)
}

/// A user agent without the literal double quotes eventsim wraps it in.
pub fn strip_quotes(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(s)
}
