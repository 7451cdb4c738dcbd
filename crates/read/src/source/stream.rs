//! Reading one table's inputs as a stream of parts in input order, with a bound on what is in
//! flight: a producer thread reads the inputs one after another (small ones gathered into
//! groups, a large one cut into chunks at lines that start with `{`, read window by window so
//! no input is ever held whole), hands each part to the rayon pool to decode, and waits
//! whenever the parts admitted and not yet taken back by the consumer would exceed the bound.
//! The consumer takes the parts in input order with [`Parts::next`]; taking the next one gives
//! the previous one's bytes back.
//!
//! In flight counts the input bytes (decompressed) of every part from the moment it is
//! admitted (before it is decoded) until the consumer asks for the part after it. One part is
//! always admitted, so a bound smaller than a part means exactly one part in flight at a time.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};
use crate::reader::ReaderBuilder;
use crate::reject::Reject;
use crate::source::decode::{Part, decode_all, decode_group, unzip};
use crate::source::{Blob, BlobData, FileRead, InputFile, ReadOptions};

/// What sees each decoded part's batches, on the worker that decoded it.
pub type OnPart = Arc<dyn Fn(&[RecordBatch]) -> Result<()> + Send + Sync>;

/// The in-flight bound unless told otherwise: 64 MiB of input.
pub const DEFAULT_IN_FLIGHT: u64 = 64 << 20;

/// One input of a stream: a file on disk, or bytes fetched.
#[derive(Debug)]
pub enum StreamInput<'a> {
    File(&'a InputFile),
    Fetched(Blob),
}

impl StreamInput<'_> {
    /// Its [`FileRead`] (checksum not yet known) and a reader of its bytes as stored.
    fn open(self) -> Result<(FileRead, Box<dyn Read + Send>)> {
        match self {
            StreamInput::File(f) => {
                let path = f.path().ok_or_else(|| {
                    Error::Schema(format!("{} is not a local file: fetch it first", f.name()))
                })?;
                let file =
                    std::fs::File::open(path).map_err(|e| super::discover::io_error(path, e))?;
                Ok((
                    FileRead::unread(f.name(), f.len, f.version.clone()),
                    Box::new(file),
                ))
            }
            StreamInput::Fetched(b) => {
                let len = b.data.len();
                let reader: Box<dyn Read + Send> = match b.data {
                    BlobData::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes)),
                    // A large object, read range by range as the windows take it.
                    BlobData::Stream { reader, .. } => reader,
                };
                Ok((FileRead::unread(b.name, len, b.version), reader))
            }
        }
    }
}

/// A reader that hashes the bytes it passes on (the checksum of a file as stored).
struct Hashing<R> {
    inner: R,
    hash: twox_hash::XxHash64,
}

impl<R: Read> Hashing<R> {
    /// Reads up to `limit` more bytes onto `data` (all that is left without one) and hashes
    /// them; returns how many. The file reads into `data`'s spare room as it is: a reader of
    /// its own would have the standard library zero that room before every read.
    fn append(&mut self, data: &mut Vec<u8>, limit: Option<u64>) -> std::io::Result<usize> {
        let start = data.len();
        let n = match limit {
            Some(limit) => (&mut self.inner).take(limit).read_to_end(data)?,
            None => self.inner.read_to_end(data)?,
        };
        self.hash.write(&data[start..]);
        Ok(n)
    }
}

/// One part, decoded, as the consumer gets it.
#[derive(Debug, Default)]
pub struct StreamPart {
    /// Its rows, in input order.
    pub batches: Vec<RecordBatch>,
    pub rejects: Vec<Reject>,
    /// Records decoded: each a row or a reject.
    pub records: u64,
    /// Whose rows they are, in order: (the input's position in the stream, rows).
    pub runs: Vec<(usize, u64)>,
    /// The inputs whose last rows are in this part, complete.
    pub files: Vec<FileRead>,
}

/// What went through a stream's bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Flow {
    /// The bound, in bytes.
    pub bound: u64,
    /// The most bytes in flight at once.
    pub peak_bytes: u64,
    /// The most parts in flight at once.
    pub peak_parts: usize,
    /// Parts decoded in all.
    pub parts: usize,
    /// The largest part, in bytes.
    pub largest_part: u64,
    /// Window buffers allocated to read large inputs in chunks; the other windows reused
    /// the buffers of windows already decoded.
    pub windows_allocated: usize,
}

/// A part decoded, with its input bytes and where its chunked file stands.
struct Decoded {
    part: Part,
    bytes: u64,
    /// The input (a large one cut in chunks) this part is a chunk of.
    chunk_of: Option<usize>,
    /// The inputs of a group, in order.
    group: Vec<usize>,
}

#[derive(Default)]
struct State {
    flow: Flow,
    in_flight: u64,
    parts_in_flight: usize,
    ready: BTreeMap<usize, Result<Decoded>>,
    /// Parts admitted and not yet decoded (nor seen by `on_part`): each holds its window.
    undecoded: usize,
    /// The number of parts, once the producer is done.
    produced: Option<usize>,
    cancelled: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Windows given back once decoded (a large input's chunks, a group's small inputs), for
    /// the next windows: a fresh buffer's pages fault in one by one (a third of a 100x run's
    /// page faults were that).
    spare: Mutex<Vec<Vec<u8>>>,
    /// The most spare windows kept: as many as the bound holds in flight, so a reader running
    /// ahead of the decoders takes spares too. They are never more than were in flight at once.
    spare_max: usize,
    /// The most parts admitted and not yet decoded ([`read_ahead`]).
    undecoded_max: usize,
}

/// How far past the chunk size a window reads to find a line that starts with `{`: a 64th
/// of it (64 KiB of 4 MiB: over a hundred lines of the logs), at least 4 KiB.
fn lookahead(chunk: usize) -> usize {
    (chunk / 64).max(4 << 10)
}

/// A window's room: a chunk, the look past it, and a byte to tell a chunk-sized input whole.
fn window_size(chunk: usize) -> usize {
    chunk + lookahead(chunk) + 1
}

/// The most parts admitted and not yet decoded (nor seen by `on_part`), for `threads`
/// decoders: one each, and one more ready for the first to finish. Decoded, a part waits for
/// the consumer under the bound; undecoded, it holds its window. A reader free to run ahead to
/// the bound (sixteen 4 MiB windows under the default 64 MiB) against two decoders took 25
/// windows through a 100x run: a third of its input read into fresh pages, which the kernel
/// cleared and faulted in one by one.
fn read_ahead(threads: usize) -> usize {
    threads + 1
}

/// Spare windows kept at least: the reader takes one per window and the decoders give one
/// back.
const SPARE_WINDOWS: usize = 2;

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `bytes` more fit the bound (or nothing is in flight) and the decoders have
    /// room for one more part; `false` once the consumer has gone.
    fn admit(&self, bytes: u64) -> bool {
        let mut s = self.lock();
        while !s.cancelled
            && s.parts_in_flight > 0
            && (s.in_flight + bytes > s.flow.bound || s.undecoded >= self.undecoded_max)
        {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        if s.cancelled {
            return false;
        }
        s.in_flight += bytes;
        s.parts_in_flight += 1;
        s.undecoded += 1;
        s.flow.peak_bytes = s.flow.peak_bytes.max(s.in_flight);
        s.flow.peak_parts = s.flow.peak_parts.max(s.parts_in_flight);
        s.flow.largest_part = s.flow.largest_part.max(bytes);
        s.flow.parts += 1;
        true
    }

    /// Hands the consumer part `index`: an input the producer failed to read.
    fn deliver(&self, index: usize, part: Result<Decoded>) {
        self.lock().ready.insert(index, part);
        self.changed.notify_all();
    }

    /// Hands the consumer part `index`, decoded (or failed to decode) on a worker.
    fn decoded(&self, index: usize, part: Result<Decoded>) {
        self.lock().undecoded -= 1;
        self.deliver(index, part);
    }

    fn done(&self, parts: usize) {
        self.lock().produced = Some(parts);
        self.changed.notify_all();
    }

    /// An empty window with room for `capacity` bytes: a spare one when there is one.
    fn window(&self, capacity: usize) -> Vec<u8> {
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if spare.is_none() {
            self.lock().flow.windows_allocated += 1;
        }
        let mut window = spare.unwrap_or_default();
        window.clear();
        window.reserve_exact(capacity);
        window
    }

    /// Keeps a decoded window's buffer for the next window, if few are kept and it holds a
    /// window without growing far past one (around a line longer than the look-ahead). A
    /// smaller buffer given back (a small `.gz` input's, decompressed) is not kept: taken as a
    /// window, it would be allocated again.
    fn recycle(&self, window: Vec<u8>, chunk: usize) {
        let fits = (window_size(chunk)..=2 * chunk + lookahead(chunk)).contains(&window.capacity());
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < self.spare_max && fits {
            spare.push(window);
        }
    }
}

/// The consumer's end of a stream; dropping it stops the producer.
pub struct Parts {
    shared: Arc<Shared>,
    next: usize,
    /// The bytes of the part last taken, given back when the next is asked for.
    holding: Option<u64>,
    /// Rows and rejects so far of the input being read in chunks.
    chunked: (u64, u64),
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("next", &self.next)
            .field("flow", &self.flow())
            .finish_non_exhaustive()
    }
}

impl Parts {
    /// What went through the bound so far.
    pub fn flow(&self) -> Flow {
        self.shared.lock().flow
    }

    /// Stops the reading: the producer reads no more input (the parts decoded already are
    /// dropped with `self`).
    pub fn cancel(&self) {
        self.shared.lock().cancelled = true;
        self.shared.changed.notify_all();
    }

    /// The next part in input order, `None` after the last; an error ends the stream.
    #[allow(clippy::should_implement_trait)] // it blocks and gives bytes back: not a plain iterator
    pub fn next(&mut self) -> Option<Result<StreamPart>> {
        let mut s = self.shared.lock();
        if let Some(bytes) = self.holding.take() {
            s.in_flight -= bytes;
            s.parts_in_flight -= 1;
            self.shared.changed.notify_all();
        }
        loop {
            if let Some(decoded) = s.ready.remove(&self.next) {
                self.next += 1;
                return Some(match decoded {
                    Ok(d) => {
                        self.holding = Some(d.bytes);
                        drop(s);
                        Ok(self.complete(d))
                    }
                    Err(e) => {
                        s.cancelled = true;
                        self.shared.changed.notify_all();
                        Err(e)
                    }
                });
            }
            if s.produced.is_some_and(|n| self.next >= n) {
                return None;
            }
            s = self
                .shared
                .changed
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The part with its runs, and its files' rows and rejects counted over their chunks.
    fn complete(&mut self, d: Decoded) -> StreamPart {
        let Decoded {
            part,
            chunk_of,
            group,
            ..
        } = d;
        let rows: u64 = part.batches.iter().map(|b| b.num_rows() as u64).sum();
        let mut files = part.files;
        let runs = match chunk_of {
            Some(input) => {
                self.chunked.0 += rows;
                self.chunked.1 += part.rejects.len() as u64;
                // The last chunk carries its file.
                for f in &mut files {
                    (f.rows, f.rejects) = std::mem::take(&mut self.chunked);
                }
                vec![(input, rows)]
            }
            None => group
                .iter()
                .zip(&files)
                .map(|(&input, f)| (input, f.rows))
                .collect(),
        };
        StreamPart {
            batches: part.batches,
            rejects: part.rejects,
            records: part.records,
            runs,
            files,
        }
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Streams `inputs` (in order) as parts of `schema`: a producer thread in `scope` reads them,
/// `pool` decodes them, and `on_part` sees each part's batches on the worker that decoded it
/// (in any order) before the consumer gets it. At most `bound` bytes are in flight (see the
/// module's notes).
pub fn stream<'scope, 'env, I>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    inputs: I,
    schema: SchemaRef,
    opts: ReadOptions,
    bound: u64,
    pool: &'env rayon::ThreadPool,
    on_part: OnPart,
) -> Parts
where
    I: Iterator<Item = Result<StreamInput<'env>>> + Send + 'scope,
{
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            flow: Flow {
                bound,
                ..Flow::default()
            },
            ..State::default()
        }),
        changed: Condvar::new(),
        spare: Mutex::default(),
        spare_max: usize::try_from(bound / window_size(opts.chunk_size) as u64)
            .unwrap_or(usize::MAX)
            .max(SPARE_WINDOWS),
        undecoded_max: read_ahead(pool.current_num_threads()),
    });
    let producer = Producer {
        shared: Arc::clone(&shared),
        schema,
        opts,
        on_part,
        index: 0,
        group: Vec::new(),
        group_data: Vec::new(),
    };
    scope.spawn(move || {
        let mut producer = producer;
        pool.in_place_scope(|s| producer.run(s, inputs));
    });
    Parts {
        shared,
        next: 0,
        holding: None,
        chunked: (0, 0),
    }
}

/// An input read whole, waiting in the open group: its position, what it is, where its
/// bytes are in the group's buffer.
type Held = (usize, FileRead, std::ops::Range<usize>);

struct Producer {
    shared: Arc<Shared>,
    schema: SchemaRef,
    opts: ReadOptions,
    on_part: OnPart,
    /// The next part's index.
    index: usize,
    group: Vec<Held>,
    /// The open group's inputs, one after another: a window's buffer, given back once the
    /// group is decoded (small files each read into a buffer of their own had the pages of
    /// every one of them mapped afresh).
    group_data: Vec<u8>,
}

/// A unit of decoding.
enum Work {
    Group {
        held: Vec<Held>,
        data: Vec<u8>,
    },
    Chunk {
        input: usize,
        name: Arc<str>,
        data: Vec<u8>,
        line: u64,
        offset: u64,
        /// On the last chunk: its file, whose rows the consumer counts over the chunks.
        last: Option<FileRead>,
    },
}

impl Producer {
    fn run<'env, I>(&mut self, scope: &rayon::Scope<'_>, inputs: I)
    where
        I: Iterator<Item = Result<StreamInput<'env>>>,
    {
        for (position, input) in inputs.enumerate() {
            let read = input.and_then(|input| self.read(scope, position, input));
            match read {
                Ok(true) => {}
                Ok(false) => return self.shared.done(self.index),
                Err(e) => {
                    self.shared.deliver(self.index, Err(e));
                    return self.shared.done(self.index + 1);
                }
            }
        }
        if !self.group.is_empty() && !self.flush_group(scope) {
            return self.shared.done(self.index);
        }
        self.shared.done(self.index);
    }

    /// Reads one input into the open group, or in chunks; `false` once the consumer is gone.
    fn read(
        &mut self,
        scope: &rayon::Scope<'_>,
        position: usize,
        input: StreamInput<'_>,
    ) -> Result<bool> {
        let chunk = self.opts.chunk_size;
        let (mut file, raw) = input.open()?;
        let mut hashing = Hashing {
            inner: raw,
            hash: twox_hash::XxHash64::with_seed(0),
        };
        let io = |name: &str| {
            let name = name.to_owned();
            move |source| Error::Io { path: name, source }
        };
        if file.name.ends_with(".gz") {
            // Decompressed whole: a gzip stream cannot be cut for parallel decoding.
            let mut stored = Vec::new();
            hashing.append(&mut stored, None).map_err(io(&file.name))?;
            file.checksum = hashing.hash.finish();
            let data = unzip(&file.name, stored)?;
            return self.whole(scope, position, file, data);
        }
        let window = window_size(chunk);
        let mut data = if file.size <= chunk as u64 {
            // Small by the listing: read straight into the open group.
            if !self.make_room(scope, file.size) {
                return Ok(false);
            }
            let start = self.group_data.len();
            hashing
                .append(&mut self.group_data, Some(chunk as u64 + 1))
                .map_err(io(&file.name))?;
            if self.group_data.len() - start <= chunk {
                file.checksum = hashing.hash.finish();
                self.group
                    .push((position, file, start..self.group_data.len()));
                return Ok(true);
            }
            // It grew since it was listed: read on as a large input, in a window of its own.
            let mut data = self.shared.window(window);
            data.extend_from_slice(&self.group_data[start..]);
            self.group_data.truncate(start);
            data
        } else {
            let mut data = self.shared.window(window);
            hashing
                .append(&mut data, Some(chunk as u64 + 1))
                .map_err(io(&file.name))?;
            if data.len() <= chunk {
                // It shrank since it was listed.
                file.checksum = hashing.hash.finish();
                return self.whole(scope, position, file, data);
            }
            data
        };
        if !self.group.is_empty() && !self.flush_group(scope) {
            return Ok(false);
        }
        let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&data);
        if body.iter().find(|b| !crate::reader::is_ws(**b)) != Some(&b'{') {
            // A top-level array, say: not cut, decoded whole.
            hashing.append(&mut data, None).map_err(io(&file.name))?;
            file.checksum = hashing.hash.finish();
            return self.whole(scope, position, file, data);
        }
        let name: Arc<str> = Arc::from(file.name.as_str());
        let finder = memchr::memmem::Finder::new(b"\n{");
        let (mut line, mut offset) = (1u64, 0u64);
        let mut eof = false;
        loop {
            // The chunk, and a look past it for the line to cut at.
            while !eof && data.len() < window - 1 {
                let want = window - 1 - data.len();
                eof = more(&mut hashing, &mut data, want, &file.name)?;
            }
            // The window is cut at the first line starting with `{` past `chunk` bytes; without
            // one yet, it grows.
            let cut = data
                .get(chunk..)
                .and_then(|tail| finder.find(tail))
                .map(|i| chunk + i + 1);
            if cut.is_none() && !eof {
                eof = more(&mut hashing, &mut data, chunk, &file.name)?;
                continue;
            }
            // The next window starts with what was read past the cut.
            let mut rest = Vec::new();
            if let Some(at) = cut {
                rest = self.shared.window(window);
                rest.extend_from_slice(&data[at..]);
                data.truncate(at);
            }
            let piece = std::mem::replace(&mut data, rest);
            let (lines, size) = (
                memchr::memchr_iter(b'\n', &piece).count() as u64,
                piece.len() as u64,
            );
            let last = cut.is_none().then(|| FileRead {
                checksum: hashing.hash.finish(),
                ..file.clone()
            });
            let work = Work::Chunk {
                input: position,
                name: Arc::clone(&name),
                data: piece,
                line,
                offset,
                last,
            };
            if !self.submit(scope, work, size) {
                return Ok(false);
            }
            if cut.is_none() {
                return Ok(true);
            }
            line += lines;
            offset += size;
        }
    }

    /// An input read whole into a buffer of its own: a small one copied into the open group,
    /// a large one sent as a group of its own.
    fn whole(
        &mut self,
        scope: &rayon::Scope<'_>,
        position: usize,
        file: FileRead,
        data: Vec<u8>,
    ) -> Result<bool> {
        let len = data.len();
        if len > self.opts.chunk_size {
            if !self.group.is_empty() && !self.flush_group(scope) {
                return Ok(false);
            }
            let work = Work::Group {
                held: vec![(position, file, 0..len)],
                data,
            };
            return Ok(self.submit(scope, work, len as u64));
        }
        if !self.make_room(scope, len as u64) {
            return Ok(false);
        }
        let start = self.group_data.len();
        self.group_data.extend_from_slice(&data);
        self.group
            .push((position, file, start..self.group_data.len()));
        self.shared.recycle(data, self.opts.chunk_size);
        Ok(true)
    }

    /// Readies the open group to take `len` more bytes: sends it first if they would not fit
    /// (or it holds 256 inputs already), and gives it a buffer when it has none; `false` once
    /// the consumer is gone.
    fn make_room(&mut self, scope: &rayon::Scope<'_>, len: u64) -> bool {
        if !self.group.is_empty()
            && (self.group_data.len() as u64 + len > self.opts.chunk_size as u64
                || self.group.len() >= 256)
            && !self.flush_group(scope)
        {
            return false;
        }
        if self.group_data.capacity() == 0 {
            self.group_data = self.shared.window(window_size(self.opts.chunk_size));
        }
        true
    }

    fn flush_group(&mut self, scope: &rayon::Scope<'_>) -> bool {
        let held = std::mem::take(&mut self.group);
        let data = std::mem::take(&mut self.group_data);
        let bytes = data.len() as u64;
        self.submit(scope, Work::Group { held, data }, bytes)
    }

    /// Admits `work` under the bound and decodes it on the pool; `false` once the consumer
    /// is gone.
    fn submit(&mut self, scope: &rayon::Scope<'_>, work: Work, bytes: u64) -> bool {
        if !self.shared.admit(bytes) {
            return false;
        }
        let index = self.index;
        self.index += 1;
        let (shared, schema, opts, on_part) = (
            Arc::clone(&self.shared),
            Arc::clone(&self.schema),
            self.opts.clone(),
            Arc::clone(&self.on_part),
        );
        scope.spawn(move |_| {
            let decoded = decode(work, &schema, &opts, bytes, &shared).and_then(|d| {
                on_part(&d.part.batches)?;
                Ok(d)
            });
            shared.decoded(index, decoded);
        });
        true
    }
}

/// Reads up to `n` more bytes of `reader` onto `data`; `true` at the end of the input.
fn more(reader: &mut Hashing<impl Read>, data: &mut Vec<u8>, n: usize, name: &str) -> Result<bool> {
    let read = reader
        .append(data, Some(n as u64))
        .map_err(|source| Error::Io {
            path: name.to_owned(),
            source,
        })?;
    Ok(read == 0)
}

fn decode(
    work: Work,
    schema: &SchemaRef,
    opts: &ReadOptions,
    bytes: u64,
    shared: &Shared,
) -> Result<Decoded> {
    match work {
        Work::Group { held, data } => {
            let group = held.iter().map(|(p, ..)| *p).collect();
            let inputs = held.into_iter().map(|(_, f, at)| Ok((f, &data[at])));
            let part = decode_group(inputs, schema, opts)?;
            shared.recycle(data, opts.chunk_size);
            Ok(Decoded {
                part,
                bytes,
                chunk_of: None,
                group,
            })
        }
        Work::Chunk {
            input,
            name,
            data,
            line,
            offset,
            last,
        } => {
            let decoder = ReaderBuilder::new(Arc::clone(schema))
                .with_batch_size(opts.batch_size)
                .with_drift(opts.drift.clone())
                .with_max_text(opts.max_text_bytes)
                .with_source(name)
                .with_origin(line, offset)
                .build_decoder()?;
            let mut part = decode_all(decoder, &data)?;
            shared.recycle(data, opts.chunk_size);
            if let (Some(file), Some(cb)) = (&last, &opts.on_file) {
                cb(file.size);
            }
            part.files = last.into_iter().collect();
            Ok(Decoded {
                part,
                bytes,
                chunk_of: Some(input),
                group: Vec::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

    use super::*;
    use crate::source::{discover, read};
    use crate::table::STAGING_EVENTS;
    use arrow::compute::concat_batches;

    /// Streams the files of `dir` and gathers what the consumer got.
    fn streamed(
        dir: &std::path::Path,
        chunk: usize,
        bound: u64,
    ) -> (RecordBatch, Vec<FileRead>, Flow) {
        streamed_files(
            &discover(dir.to_str().unwrap()).unwrap().files,
            chunk,
            bound,
            Arc::new(|_| Ok(())),
        )
    }

    /// Streams `files` as listed, `on_part` seeing each part, and gathers what the consumer
    /// got.
    fn streamed_files(
        files: &[InputFile],
        chunk: usize,
        bound: u64,
        on_part: OnPart,
    ) -> (RecordBatch, Vec<FileRead>, Flow) {
        let schema = STAGING_EVENTS.input_schema();
        let opts = ReadOptions {
            chunk_size: chunk,
            batch_size: 100,
            ..ReadOptions::default()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        std::thread::scope(|scope| {
            let inputs = files.iter().map(|f| Ok(StreamInput::File(f)));
            let mut parts = stream(
                scope,
                inputs,
                Arc::clone(&schema),
                opts,
                bound,
                &pool,
                on_part,
            );
            let (mut batches, mut read) = (Vec::new(), Vec::new());
            let mut rows_by_runs = 0;
            while let Some(part) = parts.next() {
                let part = part.unwrap();
                rows_by_runs += part.runs.iter().map(|r| r.1).sum::<u64>();
                batches.extend(part.batches);
                read.extend(part.files);
            }
            let batch = concat_batches(&schema, &batches).unwrap();
            assert_eq!(rows_by_runs, batch.num_rows() as u64);
            (batch, read, parts.flow())
        })
    }

    /// `files` read whole, gathered from the stream.
    fn read_whole(files: &[InputFile]) -> crate::source::ReadOutput {
        let schema = STAGING_EVENTS.input_schema();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        read(files, &schema, &ReadOptions::default(), &pool, None).unwrap()
    }

    fn log(dir: &std::path::Path, name: &str, lines: usize) {
        let mut text = String::new();
        for i in 0..lines {
            if i % 50 == 7 {
                text.push_str("{\"ts\": \"not a time\"}\n");
            } else {
                text.push_str(&format!(
                    "{{\"userId\":\"{}\",\"page\":\"NextSong\",\"ts\":{},\"sessionId\":{i},\"itemInSession\":0}}\n",
                    i % 13,
                    1_541_000_000_000i64 + i as i64
                ));
            }
        }
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn a_stream_gives_what_a_whole_read_gives_and_keeps_to_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        log(dir.path(), "a.json", 3000);
        log(dir.path(), "b.json", 5);
        log(dir.path(), "c.json", 40);
        log(dir.path(), "d.json", 2000);
        let whole = read_whole(&discover(dir.path().to_str().unwrap()).unwrap().files);
        for (chunk, bound) in [(4096, 1), (4096, 20_000), (1 << 20, 1 << 30), (700, 5000)] {
            let (batch, read, flow) = streamed(dir.path(), chunk, bound);
            assert_eq!(batch, whole.batch, "chunk {chunk}, bound {bound}");
            assert_eq!(read, whole.files, "chunk {chunk}, bound {bound}");
            if bound < flow.largest_part {
                assert_eq!(flow.peak_parts, 1, "{flow:?}");
            }
            assert!(flow.peak_bytes <= bound.max(flow.largest_part), "{flow:?}");
            if chunk == 4096 && bound == 1 {
                // One part at a time: a few window buffers serve every chunk of both files.
                assert!(flow.parts > 50, "{flow:?}");
                assert!(flow.windows_allocated <= 4, "{flow:?}");
            }
        }
    }

    #[test]
    fn a_reader_ahead_of_slow_decoders_holds_a_few_windows_whatever_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        log(dir.path(), "a.json", 6000);
        let files = discover(dir.path().to_str().unwrap()).unwrap().files;
        let whole = read_whole(&files);
        // The decoders take their time over each part; the bound would let every part wait.
        let slow: OnPart = Arc::new(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            Ok(())
        });
        let (batch, _, flow) = streamed_files(&files, 4096, 1 << 30, slow);
        assert_eq!(batch, whole.batch);
        assert!(flow.parts > 50, "{flow:?}");
        // Each part waiting to be decoded holds a window, and the reader fills one more and
        // starts the next: no more than that were ever needed.
        assert!(flow.windows_allocated <= read_ahead(2) + 2, "{flow:?}");
    }

    #[test]
    fn an_input_that_grew_or_shrank_since_it_was_listed_is_read_as_it_is_now() {
        let dir = tempfile::tempdir().unwrap();
        log(dir.path(), "a.json", 5);
        log(dir.path(), "b.json", 3000);
        log(dir.path(), "c.json", 40);
        log(dir.path(), "d.json", 7);
        let listed = discover(dir.path().to_str().unwrap()).unwrap().files;
        // a.json was small when listed and is now cut in chunks; b.json the other way round.
        log(dir.path(), "a.json", 3000);
        log(dir.path(), "b.json", 9);
        let whole = read_whole(&discover(dir.path().to_str().unwrap()).unwrap().files);
        for bound in [1, 1 << 30] {
            let (batch, read, _) = streamed_files(&listed, 4096, bound, Arc::new(|_| Ok(())));
            assert_eq!(batch, whole.batch, "bound {bound}");
            let rows = |files: &[FileRead]| -> Vec<(String, u64, u64, u64)> {
                let of = |f: &FileRead| (f.name.clone(), f.rows, f.rejects, f.checksum);
                files.iter().map(of).collect()
            };
            assert_eq!(rows(&read), rows(&whole.files), "bound {bound}");
        }
    }
}
