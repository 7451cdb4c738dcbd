//! Decoding inputs held in memory: small ones one after another with one decoder, a large one
//! split in chunks at line starts and decoded in parallel.

use std::io::Read;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::reader::{Decoder, ReaderBuilder};
use crate::reject::Reject;
use crate::source::{FileRead, ReadOptions};

/// What one piece of work decodes to: its batches and rejects, in input order, and how many
/// records the decoder saw (each one a row or a reject).
#[derive(Debug, Default)]
pub(super) struct Part {
    pub batches: Vec<RecordBatch>,
    pub rejects: Vec<Reject>,
    pub records: u64,
    /// The files it decoded, with the rows and rejects of each.
    pub files: Vec<FileRead>,
}

/// The parts' batches and rejects, each in the parts' order.
fn flatten(parts: Vec<Part>) -> Part {
    let mut out = Part::default();
    for part in parts {
        out.batches.extend(part.batches);
        out.rejects.extend(part.rejects);
        out.records += part.records;
        out.files.extend(part.files);
    }
    out
}

/// Decodes small inputs (each file with its bytes) one after another with one decoder.
pub(super) fn decode_group<B: AsRef<[u8]>>(
    inputs: impl Iterator<Item = Result<(FileRead, B)>>,
    schema: &SchemaRef,
    opts: &ReadOptions,
) -> Result<Part> {
    let mut decoder = ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(opts.batch_size)
        .with_drift(opts.drift.clone())
        .with_max_text(opts.max_text_bytes)
        .build_decoder()?;
    let mut batches = Vec::new();
    let mut files = Vec::new();
    // The decoder's counts when the file being decoded started.
    let mut open: Option<(FileRead, u64, usize)> = None;
    for input in inputs {
        let (file, data) = input?;
        decoder.next_stream(Arc::from(file.name.as_str()), &mut batches)?;
        files.extend(
            open.take()
                .map(|f| close(f, decoder.records(), decoder.rejected())),
        );
        let size = file.size;
        open = Some((file, decoder.records(), decoder.rejected()));
        feed(&mut decoder, data.as_ref(), &mut batches)?;
        if let Some(cb) = &opts.on_file {
            cb(size);
        }
    }
    let mut part = finish(decoder, batches)?;
    files.extend(open.map(|f| close(f, part.records, part.rejects.len())));
    part.files = files;
    Ok(part)
}

/// A file's rows and rejects: what the decoder counted (`records`, `rejected`) since the file
/// started, once its stream ended (its last record is counted then).
fn close(
    (mut file, start, start_rejected): (FileRead, u64, usize),
    records: u64,
    rejected: usize,
) -> FileRead {
    file.rejects = (rejected - start_rejected) as u64;
    file.rows = records - start - file.rejects;
    file
}

/// Decodes all of `data`, flushing each batch as it fills.
fn feed(decoder: &mut Decoder, data: &[u8], batches: &mut Vec<RecordBatch>) -> Result<()> {
    let mut pos = 0;
    while pos < data.len() {
        pos += decoder.decode(&data[pos..])?;
        if decoder.is_full() {
            batches.extend(decoder.flush()?);
        }
    }
    Ok(())
}

/// Ends the decoder's input and returns every batch and reject it holds.
pub(super) fn finish(mut decoder: Decoder, mut batches: Vec<RecordBatch>) -> Result<Part> {
    decoder.finish();
    while let Some(batch) = decoder.flush()? {
        batches.push(batch);
    }
    Ok(Part {
        batches,
        rejects: decoder.take_rejects(),
        records: decoder.records(),
        files: Vec::new(),
    })
}

/// `raw` decompressed when `name` ends `.gz`, else as it is.
pub(super) fn unzip(name: &str, raw: Vec<u8>) -> Result<Vec<u8>> {
    if !name.ends_with(".gz") {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 6);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|source| Error::Io {
            path: name.to_owned(),
            source,
        })?;
    Ok(out)
}

/// Decodes a whole stream held in memory: a large one whose first value is an object is
/// split at lines that start with `{`, and the pieces decoded in parallel.
pub fn decode_bytes(
    data: &[u8],
    source: &str,
    schema: &SchemaRef,
    opts: &ReadOptions,
) -> Result<(Vec<RecordBatch>, Vec<Reject>)> {
    let part = decode_part(data, source, schema, opts)?;
    Ok((part.batches, part.rejects))
}

pub(super) fn decode_part(
    data: &[u8],
    source: &str,
    schema: &SchemaRef,
    opts: &ReadOptions,
) -> Result<Part> {
    let source: Arc<str> = Arc::from(source);
    let builder = ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(opts.batch_size)
        .with_drift(opts.drift.clone())
        .with_max_text(opts.max_text_bytes)
        .with_source(Arc::clone(&source));
    let starts = chunk_starts(data, opts.chunk_size);
    if starts.len() == 1 {
        return decode_all(builder.build_decoder()?, data);
    }
    let mut bounds: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    bounds.push((*starts.last().unwrap_or(&0), data.len()));
    let lines: Vec<u64> = bounds
        .par_iter()
        .map(|&(a, b)| memchr::memchr_iter(b'\n', &data[a..b]).count() as u64)
        .collect();
    let mut first_line = 1;
    let mut origins = Vec::with_capacity(bounds.len());
    for (&(a, b), n) in bounds.iter().zip(&lines) {
        origins.push((a, b, first_line));
        first_line += n;
    }
    let parts: Vec<Part> = origins
        .par_iter()
        .map(|&(a, b, line)| {
            let decoder = builder
                .clone()
                .with_origin(line, a as u64)
                .build_decoder()?;
            // Only the first piece may begin with a byte order mark.
            decode_all(decoder, &data[a..b])
        })
        .collect::<Result<_>>()?;
    Ok(flatten(parts))
}

/// Where to split `data` for parallel decoding: always 0, then after the first newline past
/// each multiple of `chunk_size` that is followed by `{`. A stream that opens with anything but
/// an object (a top-level array, say) is not split.
fn chunk_starts(data: &[u8], chunk_size: usize) -> Vec<usize> {
    let mut starts = vec![0];
    let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let first = body.iter().find(|b| !crate::reader::is_ws(**b));
    if data.len() <= chunk_size || first != Some(&b'{') {
        return starts;
    }
    let finder = memchr::memmem::Finder::new(b"\n{");
    let mut from = chunk_size;
    while from < data.len() {
        match finder.find(&data[from..]) {
            Some(i) => {
                let start = from + i + 1;
                starts.push(start);
                from = start + chunk_size;
            }
            None => break,
        }
    }
    starts
}

pub(super) fn decode_all(mut decoder: Decoder, data: &[u8]) -> Result<Part> {
    let mut batches = Vec::new();
    feed(&mut decoder, data, &mut batches)?;
    finish(decoder, batches)
}
