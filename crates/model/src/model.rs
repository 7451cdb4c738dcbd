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
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int32Builder, RecordBatch, StringArray,
    StringBuilder, TimestampMillisecondArray, TimestampMillisecondBuilder,
};
use arrow::datatypes::{Float64Type, Int32Type};

use crate::error::Result;

mod events;
mod levels;
mod rows;

use crate::table::{
    DM_ARTISTS, DM_SONGS, DM_TIME, DM_USERS, DM_USERS_HISTORY, FT_SONGPLAYS, STAGING_SONGS,
    TableDef,
};
pub use events::{Songplays, StarBuilder};
pub use rows::{Kept, Rows, SLICE_ROWS, SONGPLAYS_SLICE_ROWS, Times};

/// Which plays become rows of `ft_songplays`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SongplaysMode {
    /// Only plays whose song was found (the seed's `song_id IS NOT NULL`).
    #[default]
    Matched,
    /// Every play; unmatched ones with NULL song and artist ids.
    All,
}

/// The six tables of the star schema.
#[derive(Debug, Clone)]
pub struct StarSchema {
    /// Made a slice at a time as a sink takes it.
    pub ft_songplays: Songplays,
    pub dm_users: RecordBatch,
    pub dm_songs: RecordBatch,
    pub dm_artists: RecordBatch,
    /// Made a slice at a time as a sink takes it.
    pub dm_time: Times,
    pub dm_users_history: RecordBatch,
}

impl StarSchema {
    /// The tables with their definitions, fact first.
    pub fn tables(&self) -> [(&'static TableDef, Rows<'_>); 6] {
        [
            (&FT_SONGPLAYS, Rows::Songplays(&self.ft_songplays)),
            (&DM_USERS, Rows::Batch(&self.dm_users)),
            (&DM_SONGS, Rows::Batch(&self.dm_songs)),
            (&DM_ARTISTS, Rows::Batch(&self.dm_artists)),
            (&DM_TIME, Rows::Times(&self.dm_time)),
            (&DM_USERS_HISTORY, Rows::Batch(&self.dm_users_history)),
        ]
    }

    /// The tables each in one batch, `dm_time` made whole: to compare or print them.
    pub fn whole(&self) -> Result<Vec<(&'static TableDef, RecordBatch)>> {
        self.tables()
            .into_iter()
            .map(|(table, rows)| Ok((table, rows.to_batch()?)))
            .collect()
    }
}

/// Builds the star schema from `staging_events` and `staging_songs` batches: the events
/// pushed through a [`StarBuilder`] in one go.
pub fn build(events: &RecordBatch, songs: &RecordBatch, mode: SongplaysMode) -> Result<StarSchema> {
    let mut builder = StarBuilder::new(mode);
    builder.push(events)?;
    builder.finish(songs)
}

fn column<'a>(batch: &'a RecordBatch, table: &TableDef, name: &str) -> &'a ArrayRef {
    let idx = table
        .index_of(name)
        .expect("column names come from the table definitions");
    batch.column(idx)
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

/// A user agent without the literal double quotes eventsim wraps it in.
pub fn strip_quotes(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(s)
}
