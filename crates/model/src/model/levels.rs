//! The events `dm_users_history` is made of: every event with a user, a level and a time, as
//! a builder is pushed them. A run of levels starts at an event whose place among its user's
//! events is known only once every event is in, so every event is kept until then; past
//! [`Levels::HELD`] of them a builder writes them to a temporary file (unnamed, in `TMPDIR`),
//! [`Levels::BUCKETS`] parts by user, and the runs are found a part at a time. Memory holds a
//! part, not the input: at 2.2 GB of events, 4.8 million events were 150 MiB here, and twice
//! that while the builders' vectors were gathered into one.

use std::cmp::Ordering;

use rayon::prelude::*;

use super::asc;
use crate::error::Result;
use crate::spill::Scratch;

/// An event's place in its user's level history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LevelEvent {
    pub user: i32,
    pub ts: i64,
    pub item: Option<i32>,
    pub session: Option<i32>,
    /// The level's text id, in the ids of the builder that was pushed the event.
    pub level: u32,
}

/// A run of one user's consecutive events at one level: (user, level, valid from, valid to),
/// `to` being the next run's start, `None` for the user's last run.
pub(super) type Run = (i32, u32, i64, Option<i64>);

/// A builder's level events: held in memory, and past [`Levels::HELD`] written out by user.
#[derive(Debug, Clone)]
pub(super) struct Levels {
    held: Vec<LevelEvent>,
    file: Scratch,
    /// Per part ([`bucket`]), where its written events are: (offset, events).
    parts: Vec<Vec<(u64, usize)>>,
    /// The level ids of the written events, each once, in order.
    ids: Vec<u32>,
}

impl Default for Levels {
    fn default() -> Self {
        Levels {
            held: Vec::new(),
            file: Scratch::new("the level history's events"),
            parts: vec![Vec::new(); Self::BUCKETS],
            ids: Vec::new(),
        }
    }
}

impl Levels {
    /// Events held before they are written out (8 MiB).
    const HELD: usize = 1 << 18;
    /// The parts written events are split into, by user.
    pub(super) const BUCKETS: usize = 64;
    /// The bytes an event takes in the file.
    const BYTES: usize = 25;

    pub(super) fn push(&mut self, e: LevelEvent) -> Result<()> {
        self.held.push(e);
        if self.held.len() >= Self::HELD {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes the events held to the file, grouped by part.
    fn spill(&mut self) -> Result<()> {
        self.held.sort_unstable_by_key(|e| bucket(e.user));
        let mut bytes = Vec::with_capacity(self.held.len() * Self::BYTES);
        let mut runs = Vec::new();
        for part in self.held.chunk_by(|a, b| bucket(a.user) == bucket(b.user)) {
            runs.push((bucket(part[0].user), bytes.len() as u64, part.len()));
            for e in part {
                encode(e, &mut bytes);
            }
        }
        let start = self.file.append(&bytes)?;
        for (p, at, events) in runs {
            self.parts[p].push((start + at, events));
        }
        self.ids.extend(self.held.iter().map(|e| e.level));
        self.ids.sort_unstable();
        self.ids.dedup();
        self.held.clear();
        Ok(())
    }

    /// Once every event is pushed: when some were written out, the ones still held are
    /// written too, so that each part is read from the file alone (not found again among
    /// the held events for each of the parts).
    pub(super) fn finish(&mut self) -> Result<()> {
        match self.spilled() && !self.held.is_empty() {
            true => self.spill(),
            false => Ok(()),
        }
    }

    /// The level ids of the events: the written ones' each once, the held ones' as often as
    /// they come.
    pub(super) fn level_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids
            .iter()
            .copied()
            .chain(self.held.iter().map(|e| e.level))
    }

    /// How many events part `part` holds (all of them with `None`).
    fn count(&self, part: Option<usize>) -> usize {
        let written: usize = self.written(part).map(|r| r.1).sum();
        let held = match part {
            Some(p) => self.held.iter().filter(|e| bucket(e.user) == p).count(),
            None => self.held.len(),
        };
        written + held
    }

    fn spilled(&self) -> bool {
        self.file.used()
    }

    /// Where the written events of part `part` (of every part with `None`) are.
    fn written(&self, part: Option<usize>) -> impl Iterator<Item = &(u64, usize)> {
        let parts = match part {
            Some(p) => std::slice::from_ref(&self.parts[p]),
            None => &self.parts[..],
        };
        parts.iter().flatten()
    }

    /// Calls `f` with every event of part `part` (all of them with `None`).
    fn for_each(&self, part: Option<usize>, mut f: impl FnMut(LevelEvent)) -> Result<()> {
        let mut bytes = Vec::new();
        for &(at, events) in self.written(part) {
            bytes.resize(events * Self::BYTES, 0);
            self.file.read_at(&mut bytes, at)?;
            bytes.chunks_exact(Self::BYTES).for_each(|b| f(decode(b)));
        }
        let in_part = |e: &LevelEvent| part.is_none_or(|p| bucket(e.user) == p);
        self.held.iter().filter(|e| in_part(e)).for_each(|&e| f(e));
        Ok(())
    }
}

/// The part of [`Levels::BUCKETS`] a user's events are written to (Fibonacci hashing: ids
/// in sequence spread over every part).
fn bucket(user: i32) -> usize {
    ((user as u32).wrapping_mul(0x9E37_79B9) >> (32 - Levels::BUCKETS.trailing_zeros())) as usize
}

/// The runs of every user's events in `levels` (each with the table that takes its builder's
/// level ids into the ids `text` reads), in no particular order: each user's events in
/// SPEC's order (ts, itemInSession, sessionId, ascending, NULLs last; then level, by bytes,
/// so that the order is total), a run per stretch of consecutive events at one level. When
/// no builder wrote events out, they are sorted at once; otherwise a part at a time, the parts
/// in parallel.
pub(super) fn runs<'a>(
    levels: &[(&Levels, &[u32])],
    text: &(dyn Fn(u32) -> &'a str + Sync),
) -> Result<Vec<Run>> {
    let part = |p: Option<usize>| -> Result<Vec<Run>> {
        let mut events = Vec::with_capacity(levels.iter().map(|(l, _)| l.count(p)).sum());
        for (l, to) in levels {
            l.for_each(p, |e| {
                events.push(LevelEvent {
                    level: to[e.level as usize],
                    ..e
                })
            })?;
        }
        Ok(runs_of(events, text))
    };
    if !levels.iter().any(|(l, _)| l.spilled()) {
        return part(None);
    }
    let parts: Vec<Vec<Run>> = (0..Levels::BUCKETS)
        .into_par_iter()
        .map(|p| part(Some(p)))
        .collect::<Result<_>>()?;
    Ok(parts.concat())
}

/// The runs of `events`, which hold every event of each of their users.
fn runs_of<'a>(mut events: Vec<LevelEvent>, text: &(dyn Fn(u32) -> &'a str + Sync)) -> Vec<Run> {
    events.par_sort_unstable_by(|a, b| {
        (a.user, a.ts)
            .cmp(&(b.user, b.ts))
            .then_with(|| asc(a.item, b.item))
            .then_with(|| asc(a.session, b.session))
            .then_with(|| text(a.level).cmp(text(b.level)))
    });
    // (user, level, valid from) of each run's first event.
    let mut starts: Vec<(i32, u32, i64)> = Vec::new();
    for e in &events {
        if starts
            .last()
            .is_none_or(|&(u, l, _)| (u, l) != (e.user, e.level))
        {
            starts.push((e.user, e.level, e.ts));
        }
    }
    (0..starts.len())
        .map(|i| {
            let (user, level, from) = starts[i];
            let to = starts.get(i + 1).filter(|n| n.0 == user).map(|n| n.2);
            (user, level, from, to)
        })
        .collect()
}

/// An event as [`Levels::BYTES`] bytes, little-endian: the options' presence in the last.
fn encode(e: &LevelEvent, out: &mut Vec<u8>) {
    out.extend_from_slice(&e.ts.to_le_bytes());
    for v in [e.user, e.item.unwrap_or(0), e.session.unwrap_or(0)] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&e.level.to_le_bytes());
    out.push(u8::from(e.item.is_some()) | (u8::from(e.session.is_some()) << 1));
}

/// [`encode`] undone.
fn decode(b: &[u8]) -> LevelEvent {
    let word = |at: usize| -> [u8; 4] { [b[at], b[at + 1], b[at + 2], b[at + 3]] };
    let mut ts = [0; 8];
    ts.copy_from_slice(&b[..8]);
    let flags = b[24];
    LevelEvent {
        ts: i64::from_le_bytes(ts),
        user: i32::from_le_bytes(word(8)),
        item: (flags & 1 != 0).then(|| i32::from_le_bytes(word(12))),
        session: (flags & 2 != 0).then(|| i32::from_le_bytes(word(16))),
        level: u32::from_le_bytes(word(20)),
    }
}

/// Orders runs as a table without a key is compared: by column, NULL last.
pub(super) fn in_column_order<'a>(
    text: &(dyn Fn(u32) -> &'a str + Sync),
) -> impl Fn(&Run, &Run) -> Ordering + '_ {
    move |a, b| {
        a.0.cmp(&b.0)
            .then_with(|| text(a.1).cmp(text(b.1)))
            .then_with(|| a.2.cmp(&b.2))
            .then_with(|| asc(a.3, b.3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEVELS: [&str; 3] = ["free", "paid", "paid+"];

    /// Events of a few users in a scrambled order, levels changing now and then, some with
    /// the same time, some without item or session.
    fn events(n: usize) -> Vec<LevelEvent> {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|_| {
                let r = next();
                LevelEvent {
                    user: (r % 300) as i32 - 5,
                    ts: ((r >> 9) % 5_000) as i64,
                    item: ((r >> 30) & 7 != 0).then_some(((r >> 33) % 4) as i32),
                    session: ((r >> 36) & 7 != 0).then_some(((r >> 40) % 3) as i32),
                    level: if (r >> 44) & 15 == 0 {
                        2
                    } else {
                        ((r >> 48) & 1) as u32
                    },
                }
            })
            .collect()
    }

    fn text(id: u32) -> &'static str {
        LEVELS[id as usize]
    }

    fn sorted(mut runs: Vec<Run>) -> Vec<Run> {
        runs.sort_unstable_by(in_column_order(&text));
        runs
    }

    #[test]
    fn an_event_written_out_comes_back_as_it_was() {
        for e in events(1000) {
            let mut bytes = Vec::new();
            encode(&e, &mut bytes);
            assert_eq!(bytes.len(), Levels::BYTES);
            assert_eq!(decode(&bytes), e);
        }
    }

    #[test]
    fn events_written_out_by_user_give_the_runs_of_events_held_in_memory() {
        let all = events(Levels::HELD * 2 + 4321);
        let expected = sorted(runs_of(all.clone(), &text));
        assert!(
            expected.len() > 1_000,
            "levels change: {} runs",
            expected.len()
        );

        // Two builders, one of them past its bound twice, with level ids of their own: the
        // second builder's ids are the first's reversed.
        let (mut one, mut two) = (Levels::default(), Levels::default());
        let (to_one, to_two): (&[u32], &[u32]) = (&[0, 1, 2], &[2, 1, 0]);
        for (i, e) in all.into_iter().enumerate() {
            match i % 7 {
                0 => two.push(LevelEvent {
                    level: to_two[e.level as usize],
                    ..e
                }),
                _ => one.push(e),
            }
            .unwrap();
        }
        one.finish().unwrap();
        two.finish().unwrap();
        assert!(
            one.spilled() && one.held.is_empty(),
            "what was held is written out too"
        );
        assert!(
            !two.spilled() && !two.held.is_empty(),
            "nothing written: all held"
        );
        assert_eq!(one.level_ids().collect::<Vec<_>>()[..3], [0, 1, 2]);
        let got = runs(&[(&one, to_one), (&two, to_two)], &text).unwrap();
        assert_eq!(sorted(got), expected);
    }

    #[test]
    fn every_user_has_one_part() {
        let parts: std::collections::HashSet<usize> = (-1000..1000).map(bucket).collect();
        assert_eq!(
            parts.len(),
            Levels::BUCKETS,
            "ids in sequence fill every part"
        );
        assert!(parts.iter().all(|&p| p < Levels::BUCKETS));
    }
}
