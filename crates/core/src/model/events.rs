//! The events' side of the star schema as a running state: batches of `staging_events` are
//! pushed as they are decoded, in any order and of any size, and the state keeps only what
//! the tables need: per user the preferred event so far, and per play its natural key, time,
//! the columns its dedup order compares. Text is interned (each distinct string once), so a
//! play costs 56 bytes whatever its strings' lengths. The songs are the lookup side, given to
//! [`StarBuilder::finish`]: only the plays kept are matched, and the songs can be read while
//! the events are.

use rayon::prelude::*;

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Int32Array, Int64Builder, RecordBatch, TimestampMillisecondArray,
};
use arrow::datatypes::{Float64Type, Int32Type, TimestampMillisecondType};
use chrono::{Datelike, Timelike};

use super::{
    F64, SongplaysMode, Songs, StarSchema, artists, asc, column, desc, dim_songs, ints, opt,
    strings, strip_quotes, timestamps,
};
use crate::error::Result;
use crate::table::{DM_TIME, DM_USERS, FT_SONGPLAYS, STAGING_EVENTS};

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The id of a NULL text.
const NONE: u32 = u32::MAX;

/// Text interned: each distinct string stored once and named by a number; compared by its
/// bytes, NULL last, as the dedup orders compare text.
#[derive(Debug, Default, Clone)]
struct Strings {
    ids: Map<Box<str>, u32>,
    texts: Vec<Box<str>>,
}

impl Strings {
    fn id(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return NONE };
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.texts.len()).expect("fewer than 4 billion distinct interned");
        self.texts.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    /// [`Strings::id`], first checking `last`, the id this column had on the previous row
    /// (a user's level, location and agent repeat row after row).
    fn id_after(&mut self, s: Option<&str>, last: &mut u32) -> u32 {
        if let Some(text) = s
            && *last != NONE
            && *self.texts[*last as usize] == *text
        {
            return *last;
        }
        *last = self.id(s);
        *last
    }

    fn get(&self, id: u32) -> Option<&str> {
        (id != NONE).then(|| &*self.texts[id as usize])
    }
}

/// A user's preferred event so far.
#[derive(Debug, Clone, Copy)]
struct UserPick {
    ts: Option<i64>,
    item: Option<i32>,
    session: Option<i32>,
    level: u32,
    first_name: u32,
    last_name: u32,
    gender: u32,
}

impl UserPick {
    fn view<'a>(&self, interned: &'a Strings) -> UserView<'a> {
        UserView {
            ts: self.ts,
            item: self.item,
            session: self.session,
            texts: [
                interned.get(self.level),
                interned.get(self.first_name),
                interned.get(self.last_name),
                interned.get(self.gender),
            ],
        }
    }
}

/// What a user's events are ordered by: ts, itemInSession, sessionId, then level, firstName,
/// lastName, gender.
struct UserView<'a> {
    ts: Option<i64>,
    item: Option<i32>,
    session: Option<i32>,
    texts: [Option<&'a str>; 4],
}

/// SPEC: the latest event (ts, itemInSession, sessionId, all descending), then level,
/// firstName, lastName, gender ascending. `Less`: `a` is preferred.
fn prefer_user(a: &UserView<'_>, b: &UserView<'_>) -> Ordering {
    desc(a.ts, b.ts)
        .then_with(|| desc(a.item, b.item))
        .then_with(|| desc(a.session, b.session))
        .then_with(|| {
            a.texts
                .iter()
                .zip(&b.texts)
                .map(|(x, y)| asc(*x, *y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
}

/// One play (a `NextSong` event with ts, sessionId and itemInSession).
#[derive(Debug, Clone, Copy)]
struct Play {
    ts: i64,
    length: f64,
    session: i32,
    item: i32,
    user: i32,
    level: u32,
    location: u32,
    agent: u32,
    song: u32,
    artist: u32,
    /// [`HAS_USER`], [`HAS_LENGTH`].
    flags: u8,
}

const HAS_USER: u8 = 1;
const HAS_LENGTH: u8 = 2;

impl Play {
    fn user(&self) -> Option<i32> {
        (self.flags & HAS_USER != 0).then_some(self.user)
    }

    fn length(&self) -> Option<F64> {
        (self.flags & HAS_LENGTH != 0).then_some(F64(self.length))
    }
}

/// The star schema built from events pushed batch by batch; see the module's notes.
#[derive(Debug, Clone)]
pub struct StarBuilder {
    mode: SongplaysMode,
    interned: Strings,
    users: Map<i32, UserPick>,
    plays: Plays,
    events: u64,
}

/// The plays in chunks of [`Plays::CHUNK`]: they grow without copying what they hold (a
/// vector doubling holds the old and the new buffer at once), and builders merge by taking
/// each other's chunks.
#[derive(Debug, Clone, Default)]
struct Plays {
    chunks: Vec<Vec<Play>>,
}

impl Plays {
    /// Plays a chunk holds: 3.5 MiB.
    const CHUNK: usize = 1 << 16;

    fn push(&mut self, play: Play) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < Self::CHUNK => chunk.push(play),
            _ => {
                let mut chunk = Vec::with_capacity(Self::CHUNK);
                chunk.push(play);
                self.chunks.push(chunk);
            }
        }
    }

    fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// Every play in one vector, each chunk freed once moved: the plays are held about once,
    /// not twice, on the way.
    fn into_vec(self) -> Vec<Play> {
        let mut all = Vec::with_capacity(self.len());
        for chunk in self.chunks {
            all.extend(chunk);
        }
        all
    }
}

/// Column indexes of the previous row's ids, for [`Strings::id_after`].
#[derive(Default)]
struct LastIds {
    level: u32,
    location: u32,
    agent: u32,
    song: u32,
    artist: u32,
    first_name: u32,
    last_name: u32,
    gender: u32,
}

impl StarBuilder {
    /// An empty builder; `mode` says which plays become songplays.
    pub fn new(mode: SongplaysMode) -> Self {
        StarBuilder {
            mode,
            interned: Strings::default(),
            users: Map::default(),
            plays: Plays::default(),
            events: 0,
        }
    }

    /// Events pushed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Takes in a batch of `staging_events` (with or without its lineage column).
    pub fn push(&mut self, b: &RecordBatch) -> Result<()> {
        let t = &STAGING_EVENTS;
        let artist = column(b, t, "artist").as_string::<i32>();
        let first_name = column(b, t, "firstName").as_string::<i32>();
        let gender = column(b, t, "gender").as_string::<i32>();
        let item = column(b, t, "itemInSession").as_primitive::<Int32Type>();
        let last_name = column(b, t, "lastName").as_string::<i32>();
        let length = column(b, t, "length").as_primitive::<Float64Type>();
        let level = column(b, t, "level").as_string::<i32>();
        let location = column(b, t, "location").as_string::<i32>();
        let page = column(b, t, "page").as_string::<i32>();
        let session = column(b, t, "sessionId").as_primitive::<Int32Type>();
        let song = column(b, t, "song").as_string::<i32>();
        let ts = column(b, t, "ts").as_primitive::<TimestampMillisecondType>();
        let agent = column(b, t, "userAgent").as_string::<i32>();
        let user = column(b, t, "userId").as_primitive::<Int32Type>();

        let StarBuilder {
            interned,
            users,
            plays,
            ..
        } = self;
        let mut last = LastIds {
            level: NONE,
            location: NONE,
            agent: NONE,
            song: NONE,
            artist: NONE,
            first_name: NONE,
            last_name: NONE,
            gender: NONE,
        };
        for i in 0..b.num_rows() {
            let (row_ts, row_item, row_session) = (opt(&ts, i), opt(&item, i), opt(&session, i));
            if let Some(u) = opt(&user, i) {
                let row = UserView {
                    ts: row_ts,
                    item: row_item,
                    session: row_session,
                    texts: [
                        opt(&level, i),
                        opt(&first_name, i),
                        opt(&last_name, i),
                        opt(&gender, i),
                    ],
                };
                let better = users
                    .get(&u)
                    .is_none_or(|c| prefer_user(&row, &c.view(interned)) == Ordering::Less);
                if better {
                    let pick = UserPick {
                        ts: row_ts,
                        item: row_item,
                        session: row_session,
                        level: interned.id_after(row.texts[0], &mut last.level),
                        first_name: interned.id_after(row.texts[1], &mut last.first_name),
                        last_name: interned.id_after(row.texts[2], &mut last.last_name),
                        gender: interned.id_after(row.texts[3], &mut last.gender),
                    };
                    users.insert(u, pick);
                }
            }
            let (Some(row_ts), Some(row_session), Some(row_item)) = (row_ts, row_session, row_item)
            else {
                continue;
            };
            if opt(&page, i) != Some("NextSong") {
                continue;
            }
            let row_length = opt(&length, i);
            let row_user = opt(&user, i);
            plays.push(Play {
                ts: row_ts,
                length: row_length.map_or(0.0, |l| l.0),
                session: row_session,
                item: row_item,
                user: row_user.unwrap_or(0),
                level: interned.id_after(opt(&level, i), &mut last.level),
                location: interned.id_after(opt(&location, i), &mut last.location),
                agent: interned.id_after(opt(&agent, i), &mut last.agent),
                song: interned.id_after(opt(&song, i), &mut last.song),
                artist: interned.id_after(opt(&artist, i), &mut last.artist),
                flags: if row_user.is_some() { HAS_USER } else { 0 }
                    | if row_length.is_some() { HAS_LENGTH } else { 0 },
            });
        }
        self.events += b.num_rows() as u64;
        Ok(())
    }

    /// Takes in what `other` (a builder over the same songs) was pushed, as if it had been
    /// pushed here: builders filled in parallel are merged before [`StarBuilder::finish`].
    pub fn merge(&mut self, other: StarBuilder) {
        let remap: Vec<u32> = other
            .interned
            .texts
            .iter()
            .map(|t| self.interned.id(Some(t)))
            .collect();
        let map = |id: u32| if id == NONE { NONE } else { remap[id as usize] };
        for (u, pick) in other.users {
            let pick = UserPick {
                level: map(pick.level),
                first_name: map(pick.first_name),
                last_name: map(pick.last_name),
                gender: map(pick.gender),
                ..pick
            };
            let better = self.users.get(&u).is_none_or(|c| {
                prefer_user(&pick.view(&self.interned), &c.view(&self.interned)) == Ordering::Less
            });
            if better {
                self.users.insert(u, pick);
            }
        }
        for mut chunk in other.plays.chunks {
            for p in &mut chunk {
                *p = Play {
                    level: map(p.level),
                    location: map(p.location),
                    agent: map(p.agent),
                    song: map(p.song),
                    artist: map(p.artist),
                    ..*p
                };
            }
            self.plays.chunks.push(chunk);
        }
        self.events += other.events;
    }

    /// The five tables, the plays matched against `songs` (a `staging_songs` batch).
    pub fn finish(self, songs: &RecordBatch) -> Result<StarSchema> {
        let StarBuilder {
            mode,
            mut interned,
            users,
            plays,
            ..
        } = self;
        let mut plays = plays.into_vec();
        let so = Songs::new(songs);
        // Song rows by (title, artist_name), both interned.
        let mut by_name: Map<(u32, u32), Vec<u32>> = Map::default();
        for i in 0..so.len {
            if let (Some(t), Some(a)) = (opt(&so.title, i), opt(&so.artist_name, i)) {
                let key = (interned.id(Some(t)), interned.id(Some(a)));
                by_name.entry(key).or_default().push(i as u32);
            }
        }
        // Per natural key the preferred play first (SPEC: the earliest ts, then the smaller
        // userId, level, location, userAgent, song, artist, length).
        plays.par_sort_unstable_by(|a, b| {
            (a.session, a.item)
                .cmp(&(b.session, b.item))
                .then_with(|| prefer_play(&interned, a, b))
        });
        // The plays go before dm_time is built: only their times are kept for it (8 bytes
        // a play, not 56), so the two are never held at once.
        let times: Vec<i64> = plays.par_iter().map(|p| p.ts).collect();
        let (ft_songplays, dm_users) = rayon::join(
            || songplays(&plays, &interned, &so, &by_name, mode),
            || users_batch(&users, &interned),
        );
        drop(plays);
        Ok(StarSchema {
            ft_songplays: ft_songplays?,
            dm_users: dm_users?,
            dm_songs: dim_songs(&so)?,
            dm_artists: artists(&so)?,
            dm_time: time(times)?,
        })
    }
}

fn prefer_play(s: &Strings, a: &Play, b: &Play) -> Ordering {
    a.ts.cmp(&b.ts)
        .then_with(|| asc(a.user(), b.user()))
        .then_with(|| asc(s.get(a.level), s.get(b.level)))
        .then_with(|| asc(s.get(a.location), s.get(b.location)))
        .then_with(|| asc(s.get(a.agent), s.get(b.agent)))
        .then_with(|| asc(s.get(a.song), s.get(b.song)))
        .then_with(|| asc(s.get(a.artist), s.get(b.artist)))
        .then_with(|| asc(a.length(), b.length()))
}

/// The song whose title and artist name are the play's: the duration closest to its length
/// first, then the smaller song_id, then the smaller artist_id.
fn find_song(
    so: &Songs<'_>,
    by_name: &Map<(u32, u32), Vec<u32>>,
    song: u32,
    artist: u32,
    length: Option<F64>,
) -> u32 {
    if song == NONE || artist == NONE {
        return NONE;
    }
    let Some(rows) = by_name.get(&(song, artist)) else {
        return NONE;
    };
    let distance =
        |s: usize| -> Option<F64> { Some(F64((opt(&so.duration, s)?.0 - length?.0).abs())) };
    rows.iter()
        .copied()
        .min_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            asc(distance(a), distance(b))
                .then_with(|| asc(opt(&so.song_id, a), opt(&so.song_id, b)))
                .then_with(|| asc(opt(&so.artist_id, a), opt(&so.artist_id, b)))
        })
        .unwrap_or(NONE)
}

/// One row per play kept: the first of each natural key in `plays` (sorted by key, then
/// preference), matched ones only unless `mode` says all, numbered in (ts, sessionId,
/// itemInSession) order.
fn songplays(
    plays: &[Play],
    interned: &Strings,
    so: &Songs<'_>,
    by_name: &Map<(u32, u32), Vec<u32>>,
    mode: SongplaysMode,
) -> Result<RecordBatch> {
    let mut kept: Vec<(&Play, u32)> = plays
        .chunk_by(|a, b| (a.session, a.item) == (b.session, b.item))
        .map(|group| {
            let p = &group[0];
            (p, find_song(so, by_name, p.song, p.artist, p.length()))
        })
        .filter(|(_, song)| *song != NONE || mode == SongplaysMode::All)
        .collect();
    kept.sort_unstable_by_key(|(p, _)| (p.ts, p.session, p.item));
    let mut id = Int64Builder::with_capacity(kept.len());
    for n in 0..kept.len() {
        id.append_value(n as i64);
    }
    let song_row = |s: u32| (s != NONE).then_some(s as usize);
    Ok(RecordBatch::try_new(
        FT_SONGPLAYS.schema(),
        vec![
            Arc::new(id.finish()),
            timestamps(kept.iter().map(|(p, _)| Some(p.ts))),
            ints(kept.iter().map(|(p, _)| p.user())),
            strings(kept.iter().map(|(p, _)| interned.get(p.level))),
            strings(
                kept.iter()
                    .map(|(_, s)| song_row(*s).and_then(|s| opt(&so.song_id, s))),
            ),
            strings(
                kept.iter()
                    .map(|(_, s)| song_row(*s).and_then(|s| opt(&so.artist_id, s))),
            ),
            ints(kept.iter().map(|(p, _)| Some(p.session))),
            ints(kept.iter().map(|(p, _)| Some(p.item))),
            strings(kept.iter().map(|(p, _)| interned.get(p.location))),
            strings(
                kept.iter()
                    .map(|(p, _)| interned.get(p.agent).map(strip_quotes)),
            ),
        ],
    )?)
}

/// One row per user, sorted by userId.
fn users_batch(users: &Map<i32, UserPick>, interned: &Strings) -> Result<RecordBatch> {
    let mut picked: Vec<(&i32, &UserPick)> = users.iter().collect();
    picked.sort_unstable_by_key(|(k, _)| **k);
    let text = |f: fn(&UserPick) -> u32| strings(picked.iter().map(|(_, u)| interned.get(f(u))));
    Ok(RecordBatch::try_new(
        DM_USERS.schema(),
        vec![
            ints(picked.iter().map(|(k, _)| Some(**k))),
            text(|u| u.first_name),
            text(|u| u.last_name),
            text(|u| u.gender),
            text(|u| u.level),
        ],
    )?)
}

/// One row per distinct time of the plays, `ts`, with ISO week and ISO weekday (1 = Monday).
/// Built column by column from the sorted times, which become the first column as they are.
fn time(mut ts: Vec<i64>) -> Result<RecordBatch> {
    ts.par_sort_unstable();
    ts.dedup();
    ts.shrink_to_fit();
    let part = |f: fn(&chrono::NaiveDateTime) -> i32| -> ArrayRef {
        let values: Vec<i32> = ts
            .par_iter()
            .map(|&ms| f(&crate::time::naive(ms).expect("the reader keeps timestamps in range")))
            .collect();
        Arc::new(Int32Array::from(values))
    };
    let columns = vec![
        part(|t| t.hour() as i32),
        part(|t| t.day() as i32),
        part(|t| t.iso_week().week() as i32),
        part(|t| t.month() as i32),
        part(|t| t.year()),
        part(|t| t.weekday().number_from_monday() as i32),
    ];
    let start_time: ArrayRef = Arc::new(TimestampMillisecondArray::from(ts));
    Ok(RecordBatch::try_new(
        DM_TIME.schema(),
        std::iter::once(start_time).chain(columns).collect(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_play_takes_56_bytes() {
        assert_eq!(std::mem::size_of::<Play>(), 56);
    }

    #[test]
    fn text_is_interned_once_and_compared_by_its_bytes() {
        let mut s = Strings::default();
        let mut last = NONE;
        let a = s.id_after(Some("b"), &mut last);
        assert_eq!(s.id_after(Some("b"), &mut last), a);
        let b = s.id(Some("a"));
        assert_eq!(s.id(Some("b")), a);
        assert_eq!(s.id(None), NONE);
        assert_eq!(s.texts.len(), 2);
        assert_eq!(asc(s.get(b), s.get(a)), Ordering::Less);
        assert_eq!(asc(s.get(a), s.get(NONE)), Ordering::Less, "NULL last");
    }
}
