//! The events' side of the star schema as a running state: batches of `staging_events` are
//! pushed as they are decoded, in any order and of any size, and the state keeps only what
//! the tables need: per user the preferred event so far and each event's level and place (for
//! the level history), and per play its natural key, time, the columns its dedup order
//! compares. Text is interned (each distinct string once), so a
//! play costs 56 bytes whatever its strings' lengths. The songs are the lookup side, given to
//! [`StarBuilder::finish`]: only the plays kept are matched, and the songs can be read while
//! the events are.

use rayon::prelude::*;

use std::cmp::Ordering;
use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray,
};
use arrow::datatypes::{Float64Type, Int32Type, TimestampMillisecondType};

use super::levels::{self, LevelEvent, Levels, Run};
use super::{
    F64, SongplaysMode, Songs, StarSchema, Times, artists, asc, column, desc, dim_songs, ints, opt,
    strings, strip_quotes, timestamps,
};
use crate::error::Result;
use crate::spill::Scratch;
use crate::table::{DM_USERS, DM_USERS_HISTORY, FT_SONGPLAYS, STAGING_EVENTS};

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The id of a NULL text.
const NONE: u32 = u32::MAX;

/// Text interned: each distinct string stored once and named by a number; compared by its
/// bytes, NULL last, as the dedup orders compare text. The texts sit one after another in one
/// buffer, and the table holds each one's hash, place and id: generated events have a few
/// hundred thousand distinct songs and artists, and a string and a map key of their own for
/// each made the interning a tenth of a load (two pointers chased for every lookup, two
/// allocations for every new text, all freed one by one at the end).
#[derive(Debug, Default, Clone)]
struct Strings {
    /// Every distinct text, one after another.
    bytes: String,
    /// Where the text of each id ends in `bytes` (it starts where the previous one ends).
    ends: Vec<usize>,
    /// Every text's id, with its hash and place, so that a lookup reads `bytes` only to
    /// compare the text of an entry whose hash is the one looked for.
    table: hashbrown::HashTable<Interned>,
    hasher: foldhash::fast::RandomState,
}

/// A text's entry in [`Strings`]' table.
#[derive(Debug, Clone, Copy)]
struct Interned {
    hash: u64,
    start: usize,
    /// A text's length: it came from an Arrow array, whose offsets are `i32`.
    len: u32,
    id: u32,
}

impl Strings {
    fn id(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return NONE };
        let hash = self.hasher.hash_one(s);
        if let Some(id) = self.lookup(hash, s) {
            return id;
        }
        let Strings {
            bytes, ends, table, ..
        } = self;
        let id = u32::try_from(ends.len())
            .ok()
            .filter(|&id| id != NONE)
            .expect("fewer than 4 billion distinct interned");
        let entry = Interned {
            hash,
            start: bytes.len(),
            len: u32::try_from(s.len()).expect("a text of an Arrow array is under 2 GiB"),
            id,
        };
        table.insert_unique(hash, entry, |e| e.hash);
        bytes.push_str(s);
        ends.push(bytes.len());
        id
    }

    /// The id of `s`, if it is interned.
    fn find(&self, s: &str) -> Option<u32> {
        self.lookup(self.hasher.hash_one(s), s)
    }

    /// The id of `s`, whose hash is `hash`, if it is interned.
    fn lookup(&self, hash: u64, s: &str) -> Option<u32> {
        let found = self.table.find(hash, |e| {
            e.hash == hash && e.len as usize == s.len() && self.bytes[e.start..][..s.len()] == *s
        });
        found.map(|e| e.id)
    }

    /// [`Strings::id`], first checking `last`, the id this column had on the previous row
    /// (a user's level, location and agent repeat row after row).
    fn id_after(&mut self, s: Option<&str>, last: &mut u32) -> u32 {
        if let Some(text) = s
            && *last != NONE
            && self.text(*last) == text
        {
            return *last;
        }
        *last = self.id(s);
        *last
    }

    fn text(&self, id: u32) -> &str {
        let start = id.checked_sub(1).map_or(0, |prev| self.ends[prev as usize]);
        &self.bytes[start..self.ends[id as usize]]
    }

    fn get(&self, id: u32) -> Option<&str> {
        (id != NONE).then(|| self.text(id))
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
    /// The play with each of its text ids as `f` maps it.
    fn with_ids(self, mut f: impl FnMut(u32) -> u32) -> Play {
        Play {
            level: f(self.level),
            location: f(self.location),
            agent: f(self.agent),
            song: f(self.song),
            artist: f(self.artist),
            ..self
        }
    }

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
    /// Every event with a user, level and time, for `dm_users_history`.
    levels: Levels,
    plays: Plays,
    events: u64,
}

/// The plays in chunks of [`Plays::CHUNK`]: they grow without copying what they hold (a
/// vector doubling holds the old and the new buffer at once). Past [`Plays::HELD`] full
/// chunks, the full ones are written to a temporary file (unnamed, in `TMPDIR`) and read back
/// by [`Plays::for_each`] once the input is through: memory holds a few chunks a builder
/// while the events stream, whatever their number.
#[derive(Debug, Clone)]
struct Plays {
    chunks: Vec<Vec<Play>>,
    /// The plays written out: (where they start, how many).
    spilled: Vec<(u64, usize)>,
    file: Scratch,
}

impl Default for Plays {
    fn default() -> Self {
        Plays {
            chunks: Vec::new(),
            spilled: Vec::new(),
            file: Scratch::new("the plays"),
        }
    }
}

impl Plays {
    /// Plays a chunk holds: 3.5 MiB.
    const CHUNK: usize = 1 << 16;
    /// Full chunks a builder holds before it writes them out (7 MiB).
    const HELD: usize = 2;
    /// The bytes a play takes in the file.
    const BYTES: usize = 49;

    fn push(&mut self, play: Play) -> Result<()> {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < Self::CHUNK => chunk.push(play),
            _ => {
                if self.chunks.len() >= Self::HELD {
                    self.spill()?;
                }
                let mut chunk = Vec::with_capacity(Self::CHUNK);
                chunk.push(play);
                self.chunks.push(chunk);
            }
        }
        Ok(())
    }

    /// Writes every chunk held to the file.
    fn spill(&mut self) -> Result<()> {
        let plays: usize = self.chunks.iter().map(Vec::len).sum();
        let mut bytes = Vec::with_capacity(plays * Self::BYTES);
        for p in self.chunks.drain(..).flatten() {
            encode(&p, &mut bytes);
        }
        let start = self.file.append(&bytes)?;
        self.spilled.push((start, plays));
        Ok(())
    }

    fn len(&self) -> usize {
        let spilled: usize = self.spilled.iter().map(|s| s.1).sum();
        spilled + self.chunks.iter().map(Vec::len).sum::<usize>()
    }

    /// Calls `f` with every play, in the order they were held: the ones written out read
    /// back a chunk at a time through one buffer.
    fn for_each(&self, mut f: impl FnMut(Play)) -> Result<()> {
        let mut bytes = vec![0; Self::CHUNK * Self::BYTES];
        for &(start, plays) in &self.spilled {
            let mut left = plays;
            let mut at = start;
            while left > 0 {
                let n = left.min(Self::CHUNK);
                let block = &mut bytes[..n * Self::BYTES];
                self.file.read_at(block, at)?;
                for b in block.chunks_exact(Self::BYTES) {
                    f(decode(b));
                }
                at += block.len() as u64;
                left -= n;
            }
        }
        self.chunks.iter().flatten().for_each(|&p| f(p));
        Ok(())
    }
}

/// A play as [`Plays::BYTES`] bytes, little-endian.
fn encode(p: &Play, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.ts.to_le_bytes());
    out.extend_from_slice(&p.length.to_le_bytes());
    for v in [p.session, p.item, p.user] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [p.level, p.location, p.agent, p.song, p.artist] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.push(p.flags);
}

/// [`encode`] undone.
fn decode(b: &[u8]) -> Play {
    let word = |at: usize| -> [u8; 4] { [b[at], b[at + 1], b[at + 2], b[at + 3]] };
    let long = |at: usize| -> [u8; 8] {
        let mut v = [0; 8];
        v.copy_from_slice(&b[at..at + 8]);
        v
    };
    Play {
        ts: i64::from_le_bytes(long(0)),
        length: f64::from_le_bytes(long(8)),
        session: i32::from_le_bytes(word(16)),
        item: i32::from_le_bytes(word(20)),
        user: i32::from_le_bytes(word(24)),
        level: u32::from_le_bytes(word(28)),
        location: u32::from_le_bytes(word(32)),
        agent: u32::from_le_bytes(word(36)),
        song: u32::from_le_bytes(word(40)),
        artist: u32::from_le_bytes(word(44)),
        flags: b[48],
    }
}

/// Column indexes of the previous row's ids, for [`Strings::id_after`].
#[derive(Default)]
struct LastIds {
    level: u32,
    location: u32,
    agent: u32,
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
            levels: Levels::default(),
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
            levels,
            plays,
            ..
        } = self;
        let mut last = LastIds {
            level: NONE,
            location: NONE,
            agent: NONE,
            first_name: NONE,
            last_name: NONE,
            gender: NONE,
        };
        for i in 0..b.num_rows() {
            let Some(u) = opt(&user, i) else { continue };
            if let (Some(t), Some(l)) = (opt(&ts, i), opt(&level, i)) {
                levels.push(LevelEvent {
                    user: u,
                    ts: t,
                    item: opt(&item, i),
                    session: opt(&session, i),
                    level: interned.id_after(Some(l), &mut last.level),
                })?;
            }
            let row = UserView {
                ts: opt(&ts, i),
                item: opt(&item, i),
                session: opt(&session, i),
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
                    ts: row.ts,
                    item: row.item,
                    session: row.session,
                    level: interned.id_after(row.texts[0], &mut last.level),
                    first_name: interned.id_after(row.texts[1], &mut last.first_name),
                    last_name: interned.id_after(row.texts[2], &mut last.last_name),
                    gender: interned.id_after(row.texts[3], &mut last.gender),
                };
                users.insert(u, pick);
            }
        }
        // The plays: `NextSong` events with ts, sessionId and itemInSession.
        let played: Vec<usize> = (0..b.num_rows())
            .filter(|&i| {
                opt(&page, i) == Some("NextSong")
                    && ts.is_valid(i)
                    && session.is_valid(i)
                    && item.is_valid(i)
            })
            .collect();
        // Their songs and artists, each column looked up in a loop of its own: generated
        // events have a few hundred thousand distinct ones, so most lookups miss the cache,
        // and a loop that only looks up has the processor wait for several misses at once.
        // (They seldom repeat the previous row's, so the check `id_after` makes is skipped.)
        let songs: Vec<u32> = played.iter().map(|&i| interned.id(opt(&song, i))).collect();
        let artists: Vec<u32> = played
            .iter()
            .map(|&i| interned.id(opt(&artist, i)))
            .collect();
        for ((&i, song), artist) in played.iter().zip(songs).zip(artists) {
            let row_length = opt(&length, i);
            let row_user = opt(&user, i);
            plays.push(Play {
                ts: ts.value(i),
                length: row_length.map_or(0.0, |l| l.0),
                session: session.value(i),
                item: item.value(i),
                user: row_user.unwrap_or(0),
                level: interned.id_after(opt(&level, i), &mut last.level),
                location: interned.id_after(opt(&location, i), &mut last.location),
                agent: interned.id_after(opt(&agent, i), &mut last.agent),
                song,
                artist,
                flags: if row_user.is_some() { HAS_USER } else { 0 }
                    | if row_length.is_some() { HAS_LENGTH } else { 0 },
            })?;
        }
        self.events += b.num_rows() as u64;
        Ok(())
    }

    /// The five tables of what this builder was pushed, the plays matched against `songs`
    /// (a `staging_songs` batch).
    pub fn finish(self, songs: &RecordBatch) -> Result<StarSchema> {
        Self::finish_all(vec![self], songs)
    }

    /// The five tables of what `builders` were pushed (builders a load's workers filled side
    /// by side, all made with the same mode), the plays matched against `songs` (a
    /// `staging_songs` batch). Each builder's plays are matched in its own ids, the builders
    /// in parallel (`matched_plays`); only the plays kept and the users are taken into one
    /// set of ids. No builder's texts are merged into another's: at 100x each holds about
    /// 200,000 distinct songs and artists, and merging them was a fifth of the star build.
    pub fn finish_all(mut builders: Vec<StarBuilder>, songs: &RecordBatch) -> Result<StarSchema> {
        // No builder, no plays: either mode gives the same tables.
        let mode = builders.first().map_or(SongplaysMode::Matched, |b| b.mode);
        let so = Songs::new(songs);
        for b in &mut builders {
            b.levels.finish()?;
        }
        let mut interned = Strings::default();
        let mut ids: Vec<Remap<'_>> = builders.iter().map(|b| Remap::new(&b.interned)).collect();
        // The level history first, so that the events it reads back and the plays' times
        // are not held at once: the level ids each builder's events name taken into
        // `interned`, then the runs found, in parallel.
        for (b, ids) in builders.iter().zip(&mut ids) {
            for id in b.levels.level_ids() {
                ids.map(&mut interned, id);
            }
        }
        let history = {
            let text = |id: u32| interned.text(id);
            let parts: Vec<(&Levels, &[u32])> = builders
                .iter()
                .zip(&ids)
                .map(|(b, ids)| (&b.levels, ids.to.as_slice()))
                .collect();
            levels::runs(&parts, &text)?
        };
        let (times, mut plays) = match mode {
            SongplaysMode::All => every_play(&builders, &mut ids, &mut interned)?,
            SongplaysMode::Matched => {
                let (times, kept) = matched_plays(&builders, &so)?;
                let mut plays = Vec::with_capacity(kept.iter().map(Vec::len).sum());
                for (kept, ids) in kept.into_iter().zip(&mut ids) {
                    plays.extend(
                        kept.into_iter()
                            .map(|p| p.with_ids(|id| ids.map(&mut interned, id))),
                    );
                }
                (times, plays)
            }
        };
        let mut users: Map<i32, UserPick> = Map::default();
        for (b, ids) in builders.iter().zip(&mut ids) {
            for (&u, pick) in &b.users {
                let pick = UserPick {
                    level: ids.map(&mut interned, pick.level),
                    first_name: ids.map(&mut interned, pick.first_name),
                    last_name: ids.map(&mut interned, pick.last_name),
                    gender: ids.map(&mut interned, pick.gender),
                    ..*pick
                };
                let better = users.get(&u).is_none_or(|c| {
                    prefer_user(&pick.view(&interned), &c.view(&interned)) == Ordering::Less
                });
                if better {
                    users.insert(u, pick);
                }
            }
        }
        drop(ids);
        drop(builders);
        let by_name = song_rows(&so, |t| Some(interned.id(Some(t))));
        // Per natural key the preferred play first (SPEC: the earliest ts, then the smaller
        // userId, level, location, userAgent, song, artist, length).
        plays.par_sort_unstable_by(|a, b| {
            (a.session, a.item)
                .cmp(&(b.session, b.item))
                .then_with(|| prefer_play(&interned, a, b))
        });
        let ((ft_songplays, (dm_users, dm_users_history)), dm_time) = rayon::join(
            || {
                let dm_users = users_batch(&users, &interned);
                let history = history_batch(history, &interned);
                (
                    songplays(plays, interned, &so, &by_name, mode),
                    (dm_users, history),
                )
            },
            || time(times),
        );
        Ok(StarSchema {
            ft_songplays,
            dm_users: dm_users?,
            dm_users_history: dm_users_history?,
            dm_songs: dim_songs(&so)?,
            dm_artists: artists(&so)?,
            dm_time,
        })
    }
}

/// One builder's text ids taken into another set of ids ([`StarBuilder::finish_all`]), each
/// distinct text looked up once.
struct Remap<'a> {
    from: &'a Strings,
    /// Per id of `from`, its id in the other set; [`NONE`] until it is looked up.
    to: Vec<u32>,
}

impl<'a> Remap<'a> {
    fn new(from: &'a Strings) -> Self {
        Remap {
            from,
            to: vec![NONE; from.ends.len()],
        }
    }

    fn map(&mut self, into: &mut Strings, id: u32) -> u32 {
        if id == NONE {
            return NONE;
        }
        let to = &mut self.to[id as usize];
        if *to == NONE {
            *to = into.id(Some(self.from.text(id)));
        }
        *to
    }
}

/// Song rows by (title, artist_name), in the ids `id` gives a text: `None` when the text has
/// none (a builder's ids name only the texts it was pushed, and no play of it has another).
fn song_rows(so: &Songs<'_>, mut id: impl FnMut(&str) -> Option<u32>) -> Map<(u32, u32), Vec<u32>> {
    let mut by_name: Map<(u32, u32), Vec<u32>> = Map::default();
    for i in 0..so.len {
        if let (Some(t), Some(a)) = (opt(&so.title, i), opt(&so.artist_name, i))
            && let (Some(t), Some(a)) = (id(t), id(a))
        {
            by_name.entry((t, a)).or_default().push(i as u32);
        }
    }
    by_name
}

/// With `--songplays all`: every play of `builders`, its ids taken into `interned`, and the
/// time of every play, in one pass over each builder, one builder after another (the plays
/// are all kept, so they are gathered into one vector as they come, not per builder first).
fn every_play(
    builders: &[StarBuilder],
    ids: &mut [Remap<'_>],
    interned: &mut Strings,
) -> Result<(Vec<i64>, Vec<Play>)> {
    let total = builders.iter().map(|b| b.plays.len()).sum();
    let (mut times, mut plays) = (Vec::with_capacity(total), Vec::with_capacity(total));
    for (b, ids) in builders.iter().zip(ids) {
        b.plays.for_each(|p| {
            times.push(p.ts);
            plays.push(p.with_ids(|id| ids.map(interned, id)));
        })?;
    }
    Ok((times, plays))
}

/// The plays [`songplays`] needs, per builder in its ids, and the time of every play (for
/// `dm_time`, built once the plays are dropped: 8 bytes a play, not 56): the plays of the
/// natural keys that one of their plays matches a song by title and artist. A key gives a
/// row only when its preferred play matches, so the others give none (at 1000x, 322K plays of
/// 6.4M: 18 MB, not 360). Two passes over each builder's plays, the builders in parallel:
/// the plays that match, and their keys; then the other plays of those keys, whichever
/// builder holds them.
fn matched_plays(builders: &[StarBuilder], so: &Songs<'_>) -> Result<(Vec<i64>, Vec<Vec<Play>>)> {
    // One vector for all the times, each builder writing its own part.
    let mut times = vec![0; builders.iter().map(|b| b.plays.len()).sum()];
    let mut parts = Vec::with_capacity(builders.len());
    let mut rest = times.as_mut_slice();
    for b in builders {
        let (part, after) = rest.split_at_mut(b.plays.len());
        parts.push(part);
        rest = after;
    }
    let firsts: Vec<_> = builders
        .par_iter()
        .zip(parts)
        .map(|(b, part)| {
            let by_name = song_rows(so, |t| b.interned.find(t));
            let matches = move |p: &Play| by_name.contains_key(&(p.song, p.artist));
            let mut kept = Vec::new();
            let mut at = 0;
            b.plays.for_each(|p| {
                part[at] = p.ts;
                at += 1;
                if matches(&p) {
                    kept.push(p);
                }
            })?;
            Ok((matches, kept))
        })
        .collect::<Result<_>>()?;
    let keys: Map<(i32, i32), ()> = firsts
        .iter()
        .flat_map(|(_, kept)| kept.iter().map(|p| ((p.session, p.item), ())))
        .collect();
    if keys.is_empty() {
        return Ok((times, firsts.into_iter().map(|(_, kept)| kept).collect()));
    }
    let kept = builders
        .par_iter()
        .zip(firsts)
        .map(|(b, (matches, mut kept))| {
            b.plays.for_each(|p| {
                if !matches(&p) && keys.contains_key(&(p.session, p.item)) {
                    kept.push(p);
                }
            })?;
            Ok(kept)
        })
        .collect::<Result<_>>()?;
    Ok((times, kept))
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

/// `ft_songplays` as the plays it keeps: the first play of each natural key in `plays`
/// (sorted by key, then preference), matched ones only unless `mode` says all, in
/// (ts, sessionId, itemInSession) order, which numbers them. The plays kept are moved to the
/// front of `plays` in place, each with the row of its song in `so` instead of its song's
/// text, so the table costs no more than the plays did.
fn songplays(
    mut plays: Vec<Play>,
    interned: Strings,
    so: &Songs<'_>,
    by_name: &Map<(u32, u32), Vec<u32>>,
    mode: SongplaysMode,
) -> Songplays {
    let (mut kept, mut at) = (0, 0);
    while at < plays.len() {
        let p = plays[at];
        let key = (p.session, p.item);
        at += plays[at..]
            .iter()
            .take_while(|q| (q.session, q.item) == key)
            .count();
        let song = find_song(so, by_name, p.song, p.artist, p.length());
        if song != NONE || mode == SongplaysMode::All {
            plays[kept] = Play { song, ..p };
            kept += 1;
        }
    }
    plays.truncate(kept);
    plays.shrink_to_fit();
    plays.par_sort_unstable_by_key(|p| (p.ts, p.session, p.item));
    Songplays(Arc::new(KeptPlays {
        plays,
        interned,
        song_id: so.song_id.clone(),
        artist_id: so.artist_id.clone(),
    }))
}

/// `ft_songplays`' rows as the plays they come from, 56 bytes a row, their texts interned;
/// its columns are made a slice at a time as a sink asks for them ([`super::Rows::batches`]).
/// With `--songplays all` at 1000x, the table's 6.9 M rows made whole were about 1.3 GB,
/// every row with its own copy of its location and user agent. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Songplays(Arc<KeptPlays>);

#[derive(Debug)]
struct KeptPlays {
    /// In (ts, sessionId, itemInSession) order; `song` is the row of the play's song in
    /// `song_id` and `artist_id` ([`NONE`] when it matched none).
    plays: Vec<Play>,
    interned: Strings,
    song_id: arrow::array::StringArray,
    artist_id: arrow::array::StringArray,
}

impl Songplays {
    pub fn num_rows(&self) -> usize {
        self.0.plays.len()
    }

    /// Rows `offset..offset + len`, numbered from `offset`.
    pub fn slice(&self, offset: usize, len: usize) -> Result<RecordBatch> {
        let columns = FT_SONGPLAYS
            .columns
            .iter()
            .map(|c| self.column_of(c.name, offset, len))
            .collect::<Result<_>>()?;
        Ok(RecordBatch::try_new(FT_SONGPLAYS.schema(), columns)?)
    }

    /// Every row in one batch.
    pub fn to_batch(&self) -> Result<RecordBatch> {
        self.slice(0, self.num_rows())
    }

    /// The column `name`, whole (alone: the key check reads `songplay_id` without the texts).
    pub fn column(&self, name: &str) -> Result<Option<ArrayRef>> {
        match FT_SONGPLAYS.index_of(name) {
            Some(_) => self.column_of(name, 0, self.num_rows()).map(Some),
            None => Ok(None),
        }
    }

    fn column_of(&self, name: &str, offset: usize, len: usize) -> Result<ArrayRef> {
        let k = &*self.0;
        let rows = &k.plays[offset..offset + len];
        let s = &k.interned;
        Ok(match name {
            "songplay_id" => Arc::new(arrow::array::Int64Array::from_iter_values(
                (offset..offset + len).map(|n| n as i64),
            )),
            "start_time" => timestamps(rows.iter().map(|p| Some(p.ts))),
            "user_id" => ints(rows.iter().map(Play::user)),
            "level" => strings(rows.iter().map(|p| s.get(p.level))),
            "song_id" => strings(rows.iter().map(|p| of_song(p, &k.song_id))),
            "artist_id" => strings(rows.iter().map(|p| of_song(p, &k.artist_id))),
            "session_id" => ints(rows.iter().map(|p| Some(p.session))),
            "item_in_session" => ints(rows.iter().map(|p| Some(p.item))),
            "location" => strings(rows.iter().map(|p| s.get(p.location))),
            "user_agent" => strings(rows.iter().map(|p| s.get(p.agent).map(strip_quotes))),
            other => {
                return Err(crate::Error::Schema(format!(
                    "ft_songplays has no column {other}"
                )));
            }
        })
    }
}

/// The value in `column` (of the songs) of a kept play's song; `None` when it matched none.
fn of_song<'a>(p: &Play, column: &'a arrow::array::StringArray) -> Option<&'a str> {
    (p.song != NONE)
        .then(|| opt(&column, p.song as usize))
        .flatten()
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

/// `dm_users_history`: a row per run of a user's consecutive events at one level
/// ([`levels::runs`]), valid from its first event's time to the next run's.
fn history_batch(mut rows: Vec<Run>, interned: &Strings) -> Result<RecordBatch> {
    // Written in column order, as a table without a key is compared (NULL last).
    rows.sort_unstable_by(levels::in_column_order(&|id| interned.text(id)));
    Ok(RecordBatch::try_new(
        DM_USERS_HISTORY.schema(),
        vec![
            ints(rows.iter().map(|r| Some(r.0))),
            strings(rows.iter().map(|r| interned.get(r.1))),
            Arc::new(TimestampMillisecondArray::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.3.is_none()).collect::<Vec<_>>(),
            )),
        ],
    )?)
}

/// `dm_time`: one row per distinct time of the plays, in order.
fn time(mut ts: Vec<i64>) -> Times {
    ts.par_sort_unstable();
    ts.dedup();
    ts.shrink_to_fit();
    Times::new(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_time_holds_each_time_of_the_plays_once_in_order() {
        let times = time(vec![7, -3, 7, 86_400_000, -3, 0]);
        let start = times.start_time();
        let ms = start.as_primitive::<TimestampMillisecondType>().values();
        assert_eq!(&ms[..], [-3, 0, 7, 86_400_000]);
    }

    #[test]
    fn a_play_takes_56_bytes() {
        assert_eq!(std::mem::size_of::<Play>(), 56);
    }

    #[test]
    fn plays_written_out_come_back_as_they_were_in_order() {
        let play = |i: usize| Play {
            ts: i as i64 * 1000 - 7,
            length: i as f64 / 3.0,
            session: (i % 97) as i32,
            item: i as i32,
            user: -(i as i32),
            level: (i % 5) as u32,
            location: NONE,
            agent: (i % 7) as u32,
            song: (i % 11) as u32,
            artist: if i.is_multiple_of(2) { NONE } else { 3 },
            flags: (i % 4) as u8,
        };
        let n = Plays::CHUNK * (Plays::HELD + 2) + 123;
        let mut plays = Plays::default();
        for i in 0..n {
            plays.push(play(i)).unwrap();
        }
        assert!(!plays.spilled.is_empty() && plays.chunks.len() <= Plays::HELD + 1);
        assert_eq!(plays.len(), n);
        let mut back = Vec::new();
        plays.for_each(|p| back.push(bytes_of(&p))).unwrap();
        let want: Vec<Vec<u8>> = (0..n).map(|i| bytes_of(&play(i))).collect();
        assert_eq!(back, want);
    }

    #[test]
    fn a_play_takes_its_ids_as_mapped_and_keeps_the_rest() {
        let p = Play {
            ts: 5,
            length: 1.5,
            session: 2,
            item: 3,
            user: 4,
            level: 0,
            location: 1,
            agent: NONE,
            song: 2,
            artist: 3,
            flags: HAS_USER,
        };
        let q = p.with_ids(|id| if id == NONE { NONE } else { id + 10 });
        assert_eq!(
            [q.level, q.location, q.agent, q.song, q.artist],
            [10, 11, NONE, 12, 13]
        );
        assert_eq!(bytes_of(&q)[..28], bytes_of(&p)[..28]);
        assert_eq!(q.flags, p.flags);
    }

    /// A play as it is written out.
    fn bytes_of(p: &Play) -> Vec<u8> {
        let mut b = Vec::new();
        encode(p, &mut b);
        b
    }

    #[test]
    fn texts_that_run_together_in_the_buffer_keep_their_own_ids() {
        let mut s = Strings::default();
        // "a" then "b" sit in the buffer as "ab": "ab" is a text of its own, as is "".
        let words: Vec<String> = ["a", "b", "ab", "", "ba", "abab"]
            .into_iter()
            .map(String::from)
            .chain((0..20_000).map(|i| format!("Demo Tape {i}")))
            .collect();
        let ids: Vec<u32> = words.iter().map(|w| s.id(Some(w))).collect();
        assert_eq!(ids, (0..words.len() as u32).collect::<Vec<_>>());
        for (w, &id) in words.iter().zip(&ids) {
            assert_eq!(s.get(id), Some(w.as_str()));
            assert_eq!(s.id(Some(w)), id, "{w:?} looked up again");
        }
        assert_eq!(s.ends.len(), words.len());
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
        assert_eq!(s.ends.len(), 2);
        assert_eq!(asc(s.get(b), s.get(a)), Ordering::Less);
        assert_eq!(asc(s.get(a), s.get(NONE)), Ordering::Less, "NULL last");
    }
}
