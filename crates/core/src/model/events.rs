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

use arrow::array::{AsArray, Int64Builder, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, TimestampMillisecondType};

use super::{
    F64, SongplaysMode, Songs, StarSchema, Times, artists, asc, column, desc, dim_songs, ints, opt,
    strings, strip_quotes, timestamps,
};
use crate::error::Result;
use crate::table::{DM_USERS, FT_SONGPLAYS, STAGING_EVENTS};

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
        use std::hash::BuildHasher;
        let Some(s) = s else { return NONE };
        let Strings {
            bytes,
            ends,
            table,
            hasher,
        } = self;
        let hash = hasher.hash_one(s);
        let found = table.find(hash, |e| {
            e.hash == hash && e.len as usize == s.len() && bytes[e.start..][..s.len()] == *s
        });
        if let Some(e) = found {
            return e.id;
        }
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

    /// Every text, in the order of their ids.
    fn texts(&self) -> impl Iterator<Item = &str> {
        (0..self.ends.len() as u32).map(|id| self.text(id))
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
    /// The play with its text ids mapped by `remap`.
    fn remapped(&self, remap: &[u32]) -> Play {
        Play {
            level: mapped(remap, self.level),
            location: mapped(remap, self.location),
            agent: mapped(remap, self.agent),
            song: mapped(remap, self.song),
            artist: mapped(remap, self.artist),
            ..*self
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
    plays: Plays,
    events: u64,
}

/// The plays in chunks of [`Plays::CHUNK`]: they grow without copying what they hold (a
/// vector doubling holds the old and the new buffer at once), and builders merge by taking
/// each other's chunks. Past [`Plays::HELD`] full chunks, the full ones are written to a
/// temporary file (unnamed, in `TMPDIR`) and read back by [`Plays::for_each`] once the
/// input is through: memory holds a few chunks a builder while the events stream, whatever
/// their number.
#[derive(Debug, Clone, Default)]
struct Plays {
    chunks: Vec<Vec<Play>>,
    spilled: Vec<Spilled>,
    /// Where this builder writes its chunks, once it has.
    file: Option<Arc<std::fs::File>>,
    written: u64,
}

/// Plays written to a file: `plays` of them from `start`, their text ids mapped by `remap`
/// (when they came from a merged builder) to the ids of the builder that holds them now.
#[derive(Debug, Clone)]
struct Spilled {
    file: Arc<std::fs::File>,
    start: u64,
    plays: usize,
    remap: Option<Arc<[u32]>>,
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
        use std::io::Write;
        let file = match &self.file {
            Some(file) => Arc::clone(file),
            None => {
                let file = Arc::new(tempfile::tempfile().map_err(spill_error)?);
                self.file = Some(Arc::clone(&file));
                file
            }
        };
        let plays: usize = self.chunks.iter().map(Vec::len).sum();
        let mut bytes = Vec::with_capacity(plays * Self::BYTES);
        for p in self.chunks.drain(..).flatten() {
            encode(&p, &mut bytes);
        }
        (&*file).write_all(&bytes).map_err(spill_error)?;
        self.spilled.push(Spilled {
            file,
            start: self.written,
            plays,
            remap: None,
        });
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn len(&self) -> usize {
        let spilled: usize = self.spilled.iter().map(|s| s.plays).sum();
        spilled + self.chunks.iter().map(Vec::len).sum::<usize>()
    }

    /// Takes in `other`'s plays, whose text ids `remap` maps to this builder's.
    fn merge(&mut self, other: Plays, remap: &Arc<[u32]>) {
        for mut chunk in other.chunks {
            for p in &mut chunk {
                *p = p.remapped(remap);
            }
            self.chunks.push(chunk);
        }
        self.spilled.extend(other.spilled.into_iter().map(|s| {
            let remap = match &s.remap {
                // Ids of a builder merged into `other` before: mapped twice.
                Some(before) => before.iter().map(|&id| mapped(remap, id)).collect(),
                None => Arc::clone(remap),
            };
            Spilled {
                remap: Some(remap),
                ..s
            }
        }));
    }

    /// Calls `f` with every play, in the order they were held: the ones written out read
    /// back a chunk at a time through one buffer, their ids mapped.
    fn for_each(&self, mut f: impl FnMut(Play)) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let mut bytes = vec![0; Self::CHUNK * Self::BYTES];
        for s in &self.spilled {
            let mut left = s.plays;
            let mut at = s.start;
            while left > 0 {
                let n = left.min(Self::CHUNK);
                let block = &mut bytes[..n * Self::BYTES];
                s.file.read_exact_at(block, at).map_err(spill_error)?;
                for b in block.chunks_exact(Self::BYTES) {
                    f(match &s.remap {
                        Some(remap) => decode(b).remapped(remap),
                        None => decode(b),
                    });
                }
                at += block.len() as u64;
                left -= n;
            }
        }
        self.chunks.iter().flatten().for_each(|&p| f(p));
        Ok(())
    }
}

fn spill_error(source: std::io::Error) -> crate::Error {
    crate::Error::Io {
        path: "the plays written to a temporary file (TMPDIR)".into(),
        source,
    }
}

/// An interned id under `remap` (NULL stays NULL).
fn mapped(remap: &[u32], id: u32) -> u32 {
    if id == NONE { NONE } else { remap[id as usize] }
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
                // A play's song and artist seldom repeat the previous row's: looked up.
                song: interned.id(opt(&song, i)),
                artist: interned.id(opt(&artist, i)),
                flags: if row_user.is_some() { HAS_USER } else { 0 }
                    | if row_length.is_some() { HAS_LENGTH } else { 0 },
            })?;
        }
        self.events += b.num_rows() as u64;
        Ok(())
    }

    /// Takes in what `other` (a builder over the same songs) was pushed, as if it had been
    /// pushed here: builders filled in parallel are merged before [`StarBuilder::finish`].
    pub fn merge(&mut self, other: StarBuilder) {
        let remap: Arc<[u32]> = other
            .interned
            .texts()
            .map(|t| self.interned.id(Some(t)))
            .collect();
        let map = |id: u32| mapped(&remap, id);
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
        self.plays.merge(other.plays, &remap);
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
        let so = Songs::new(songs);
        // Song rows by (title, artist_name), both interned.
        let mut by_name: Map<(u32, u32), Vec<u32>> = Map::default();
        for i in 0..so.len {
            if let (Some(t), Some(a)) = (opt(&so.title, i), opt(&so.artist_name, i)) {
                let key = (interned.id(Some(t)), interned.id(Some(a)));
                by_name.entry(key).or_default().push(i as u32);
            }
        }
        let (mut plays, times) = gather(plays, &by_name, mode)?;
        // Per natural key the preferred play first (SPEC: the earliest ts, then the smaller
        // userId, level, location, userAgent, song, artist, length).
        plays.par_sort_unstable_by(|a, b| {
            (a.session, a.item)
                .cmp(&(b.session, b.item))
                .then_with(|| prefer_play(&interned, a, b))
        });
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
            dm_time: time(times),
        })
    }
}

/// The plays [`songplays`] needs, and the time of every play (for `dm_time`, built once the
/// plays are dropped: 8 bytes a play, not 56). With `--songplays all`, every play. Otherwise
/// only the plays of the natural keys that one of their plays matches a song by title and
/// artist: a key gives a row only when its preferred play matches, so the others give none
/// (at 1000x, 322K plays of 6.4M: 18 MB, not 360). Two passes: the plays that match, and
/// their keys; then the other plays of those keys.
fn gather(
    plays: Plays,
    by_name: &Map<(u32, u32), Vec<u32>>,
    mode: SongplaysMode,
) -> Result<(Vec<Play>, Vec<i64>)> {
    let mut times = Vec::with_capacity(plays.len());
    let mut kept = Vec::new();
    if mode == SongplaysMode::All {
        kept.reserve_exact(plays.len());
        plays.for_each(|p| {
            times.push(p.ts);
            kept.push(p);
        })?;
        return Ok((kept, times));
    }
    let matches = |p: &Play| by_name.contains_key(&(p.song, p.artist));
    let mut keys: Map<(i32, i32), ()> = Map::default();
    plays.for_each(|p| {
        times.push(p.ts);
        if matches(&p) {
            keys.insert((p.session, p.item), ());
            kept.push(p);
        }
    })?;
    if !keys.is_empty() {
        plays.for_each(|p| {
            if !matches(&p) && keys.contains_key(&(p.session, p.item)) {
                kept.push(p);
            }
        })?;
    }
    Ok((kept, times))
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
    fn plays_written_out_and_merged_come_back_as_they_were_with_their_ids_mapped() {
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
        let (mut a, mut b) = (Plays::default(), Plays::default());
        for i in 0..n {
            a.push(play(i)).unwrap();
            b.push(play(i)).unwrap();
        }
        assert!(!a.spilled.is_empty() && a.chunks.len() <= Plays::HELD + 1);
        assert_eq!(a.len(), n);
        // b into c, then c into a: b's plays, written out and held, are mapped twice.
        // A remap as merging makes one: every id of the merged builder to one of this one's.
        let remap: Arc<[u32]> = (0..300u32).map(|id| (id + 100) % 300).collect();
        let mut c = Plays::default();
        c.merge(b, &remap);
        a.merge(c, &remap);
        let bytes = |plays: &mut dyn Iterator<Item = Play>| {
            let mut out: Vec<Vec<u8>> = plays
                .map(|p| {
                    let mut b = Vec::new();
                    encode(&p, &mut b);
                    b
                })
                .collect();
            out.sort_unstable();
            out
        };
        let twice: Vec<u32> = (0..20u32).map(|id| id + 200).collect();
        let want = bytes(
            &mut (0..n)
                .map(play)
                .chain((0..n).map(|i| play(i).remapped(&twice))),
        );
        let mut back = Vec::new();
        a.for_each(|p| back.push(p)).unwrap();
        assert_eq!(bytes(&mut back.into_iter()), want);
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
        assert_eq!(s.texts().count(), words.len());
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
        assert_eq!(s.texts().count(), 2);
        assert_eq!(asc(s.get(b), s.get(a)), Ordering::Less);
        assert_eq!(asc(s.get(a), s.get(NONE)), Ordering::Less, "NULL last");
    }
}
