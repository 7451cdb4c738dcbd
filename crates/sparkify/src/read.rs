//! Finding the input (folders, files, globs, `s3://` prefixes) and the S3 client that lists
//! and fetches it; and reading it whole, for `verify` against the source.

use std::sync::Arc;

use sparkify_core::source::{self, Discovery, Input, InputFile, ReadOptions, ReadOutput, Remote};
use sparkify_core::table::{STAGING_EVENTS, STAGING_SONGS};
use sparkify_s3::{FetchLimits, S3, S3Options, Source};

use crate::error::Result;
use crate::progress::{Event, Phase, Tell};

/// The files `--songs` and `--events` name, and the S3 client that lists and fetches them.
pub(crate) struct Found {
    pub songs: Discovery,
    pub events: Discovery,
    pub s3: Option<Source>,
}

impl Found {
    /// The S3 client, when an input is in S3.
    pub fn remote(&self) -> Option<&dyn Remote> {
        self.s3.as_ref().map(|r| r as &dyn Remote)
    }
}

/// Where the input is, and how `s3://` inputs are reached.
#[derive(Debug, Clone)]
pub(crate) struct Inputs<'a> {
    pub songs: &'a [Input],
    pub events: &'a [Input],
    pub s3: &'a S3Options,
    pub s3_concurrency: usize,
}

impl Inputs<'_> {
    /// Finds the song files and event logs (listing `s3://` inputs).
    pub fn find(&self, tell: &Tell) -> Result<Found> {
        let s3 = self
            .songs
            .iter()
            .chain(self.events)
            .any(Input::is_s3)
            .then(|| -> Result<Source> {
                Ok(Source {
                    s3: Arc::new(S3::connect(self.s3)?),
                    limits: FetchLimits::new(self.s3_concurrency.max(1)),
                })
            })
            .transpose()?;
        let remote = s3.as_ref().map(|r| r as &dyn Remote);
        let songs = find("--songs", self.songs, remote, tell)?;
        let events = find("--events", self.events, remote, tell)?;
        Ok(Found { songs, events, s3 })
    }

    /// Finds and reads the song files and event logs whole, in parallel on `pool`.
    pub fn read(
        &self,
        batch_size: usize,
        pool: &rayon::ThreadPool,
        tell: &Tell,
    ) -> Result<(ReadOutput, ReadOutput)> {
        tell.start(Phase::Discover);
        let found = pool.install(|| self.find(tell))?;
        let (songs, events) = (&found.songs.files, &found.events.files);
        tell.start(Phase::Read);
        tell.event(Event::ToRead {
            bytes: bytes(songs) + bytes(events),
        });
        let opts = ReadOptions {
            batch_size,
            on_file: Some(tell.on_file()),
            ..ReadOptions::default()
        };
        let (songs_schema, events_schema) =
            (STAGING_SONGS.input_schema(), STAGING_EVENTS.input_schema());
        let remote = found.remote();
        let read = if found.songs.is_local() && found.events.is_local() {
            // Both tables at once: the pool shares its workers between them.
            let (s, e) = std::thread::scope(|scope| {
                let songs = scope.spawn(|| source::read(songs, &songs_schema, &opts, pool, remote));
                let events = source::read(events, &events_schema, &opts, pool, remote);
                (
                    songs
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    events,
                )
            });
            (s?, e?)
        } else {
            // One after the other, each at full concurrency; nothing more is fetched once one
            // fails.
            let s = source::read(songs, &songs_schema, &opts, pool, remote)?;
            let e = source::read(events, &events_schema, &opts, pool, remote)?;
            (s, e)
        };
        tell.finish();
        Ok(read)
    }
}

/// The bytes of `files`, as listed.
pub(crate) fn bytes(files: &[InputFile]) -> u64 {
    files.iter().map(|f| f.len).sum()
}

/// The files of one table's inputs; for `s3://` ones, tells what the listing found.
fn find(
    what: &'static str,
    inputs: &[Input],
    remote: Option<&dyn Remote>,
    tell: &Tell,
) -> Result<Discovery> {
    let found = source::discover_all(inputs, remote)?;
    if !found.is_local() {
        tell.event(Event::Listed {
            what,
            objects: found.files.len(),
            bytes: found.bytes(),
            under: inputs.iter().map(Input::to_string).collect(),
        });
    }
    Ok(found)
}
