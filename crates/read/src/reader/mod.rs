//! Reading JSON into Arrow, shaped like arrow-json's reader: a [`ReaderBuilder`], a push-based
//! [`Decoder`] (`decode` bytes, `flush` a batch) that is `Send` so one can live on each rayon
//! worker, and a [`Reader`] that iterates batches from any `Read`.
//!
//! A stream holds JSON values separated by whitespace: NDJSON, pretty-printed or concatenated
//! objects, or one top-level array of objects; a UTF-8 byte order mark, CRLF and blank lines
//! are fine. Each object becomes one row, decoded straight into the column builders from
//! simd-json's tape. Anything else becomes a [`Reject`] with its line, byte offset, field and
//! reason; a bad record never stops the read and never takes a good one with it.
//!
//! ```
//! use sparkify_read::reader::ReaderBuilder;
//! use sparkify_read::table::STAGING_SONGS;
//!
//! let json = br#"{"song_id":"SOABC","title":4.6,"year":"2004","duration":null}"#;
//! let mut reader = ReaderBuilder::new(STAGING_SONGS.input_schema()).build(&json[..]).unwrap();
//! let batch = reader.next().unwrap().unwrap();
//! assert_eq!(batch.num_rows(), 1);
//! assert!(reader.take_rejects().is_empty());
//! ```

mod scan;

use std::io::Read;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use simd_json::{Buffers, INPUT_PADDING, Node, StaticNode, Tape};

use crate::drift::{self, DriftKind, DriftLog, Found};
use crate::error::{Error, Result};
use crate::reject::Reject;
pub(crate) use scan::is_ws;
use scan::{raw_member, resync_point, value_end};

/// Rows per batch unless told otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 8192;
/// The most columns a schema may have (a row is converted on the stack before it is appended).
pub const MAX_COLUMNS: usize = 64;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Builds a [`Decoder`] or a [`Reader`] for one schema.
#[derive(Debug, Clone)]
pub struct ReaderBuilder {
    schema: SchemaRef,
    batch_size: usize,
    source: Arc<str>,
    line: u64,
    offset: u64,
    drift: Option<Arc<DriftLog>>,
    max_text: usize,
}

impl ReaderBuilder {
    /// A builder for `schema`, whose fields may be Utf8, Int32, Float64 or Timestamp(ms).
    pub fn new(schema: SchemaRef) -> Self {
        ReaderBuilder {
            schema,
            batch_size: DEFAULT_BATCH_SIZE,
            source: Arc::from("<input>"),
            line: 1,
            offset: 0,
            drift: None,
            max_text: usize::MAX,
        }
    }

    /// The most bytes a text value may take; a longer one makes its record a reject (a
    /// Redshift `VARCHAR` holds 65,535 bytes at most).
    pub fn with_max_text(mut self, bytes: Option<usize>) -> Self {
        self.max_text = bytes.unwrap_or(usize::MAX);
        self
    }

    /// Where the decoder notes the fields the schema lacks and the values of a type their
    /// column cannot take, each time it hands on its rejects ([`Decoder::take_rejects`]).
    pub fn with_drift(mut self, drift: Option<Arc<DriftLog>>) -> Self {
        self.drift = drift;
        self
    }

    /// The most rows a batch holds.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The name rejects carry: a file path or an S3 key.
    pub fn with_source(mut self, source: impl Into<Arc<str>>) -> Self {
        self.source = source.into();
        self
    }

    /// Where the first byte given to the decoder sits in its file (1-based line, byte offset),
    /// for decoders that start in the middle of a file.
    pub fn with_origin(mut self, line: u64, byte_offset: u64) -> Self {
        self.line = line;
        self.offset = byte_offset;
        self
    }

    /// A push-based decoder.
    pub fn build_decoder(self) -> Result<Decoder> {
        if self.schema.fields().len() > MAX_COLUMNS {
            return Err(Error::Schema(format!(
                "{} columns; the reader takes at most {MAX_COLUMNS}",
                self.schema.fields().len()
            )));
        }
        let mut kinds = Vec::new();
        let mut builders = Vec::new();
        for field in self.schema.fields() {
            let (kind, builder) = match field.data_type() {
                DataType::Utf8 => (Kind::Text, ColumnBuilder::Text(StringBuilder::new())),
                DataType::Int32 => (Kind::Int32, ColumnBuilder::Int32(Int32Builder::new())),
                DataType::Float64 => (Kind::Float64, ColumnBuilder::Float64(Float64Builder::new())),
                DataType::Timestamp(TimeUnit::Millisecond, None) => (
                    Kind::TimestampMs,
                    ColumnBuilder::Timestamp(TimestampMillisecondBuilder::new()),
                ),
                other => {
                    return Err(Error::Schema(format!(
                        "column `{}` has type {other}, which the reader does not decode",
                        field.name()
                    )));
                }
            };
            kinds.push(kind);
            builders.push(builder);
        }
        let names = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone().into_boxed_str())
            .collect();
        Ok(Decoder {
            columns: Columns {
                names,
                kinds,
                builders,
                hint: 0,
                unknown: Vec::new(),
                track: self.drift.is_some(),
                max_text: self.max_text,
            },
            schema: self.schema,
            batch_size: self.batch_size,
            rows: 0,
            records: 0,
            source: self.source,
            line: self.line,
            offset: self.offset,
            started: false,
            array: None,
            finished: false,
            pending: Vec::new(),
            scratch: Vec::new(),
            buffers: Buffers::default(),
            tape: None,
            rejects: Vec::new(),
            drift: self.drift,
            found: Found::default(),
        })
    }

    /// A reader of batches from `reader`.
    pub fn build<R: Read>(self, reader: R) -> Result<Reader<R>> {
        let source = Arc::clone(&self.source);
        Ok(Reader {
            decoder: self.build_decoder()?,
            reader,
            source,
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
            eof: false,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int32,
    Float64,
    TimestampMs,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Int32 => "an integer",
            Kind::Float64 => "a number",
            Kind::TimestampMs => "epoch milliseconds",
        }
    }
}

#[derive(Debug)]
enum ColumnBuilder {
    Text(StringBuilder),
    Int32(Int32Builder),
    Float64(Float64Builder),
    Timestamp(TimestampMillisecondBuilder),
}

/// A field converted to its column's type, not yet appended: a row is appended whole or not
/// at all.
#[derive(Debug, Clone, Copy)]
enum Cell<'a> {
    Null,
    Str(&'a str),
    Int(i64),
    Float(f64),
}

#[derive(Debug)]
struct Columns {
    names: Vec<Box<str>>,
    kinds: Vec<Kind>,
    builders: Vec<ColumnBuilder>,
    /// Where the next key is expected: keys usually come in the same order row after row.
    hint: usize,
    /// The row's fields the schema lacks, with their JSON types, when drift is tracked.
    unknown: Vec<(Box<str>, &'static str)>,
    track: bool,
    /// The most bytes a text value may take.
    max_text: usize,
}

/// Why a valid JSON value could not become a row.
struct FieldError {
    column: Option<String>,
    reason: String,
    /// The value's JSON type when its column takes another one.
    other_type: Option<&'static str>,
}

impl Columns {
    fn lookup(&mut self, key: &str) -> Option<usize> {
        let n = self.names.len();
        let mut idx = self.hint;
        for _ in 0..n {
            if idx >= n {
                idx = 0;
            }
            if same(self.names[idx].as_bytes(), key.as_bytes()) {
                self.hint = idx + 1;
                return Some(idx);
            }
            idx += 1;
        }
        None
    }

    /// Converts the object on `nodes` and appends it as one row; `raw` is its JSON text.
    fn append_row(&mut self, nodes: &[Node<'_>], raw: &[u8]) -> Result<(), FieldError> {
        let nul = may_hold_nul(raw);
        let len = match nodes.first() {
            Some(Node::Object { len, .. }) => *len,
            Some(other) => {
                return Err(FieldError {
                    column: None,
                    reason: format!("expected a JSON object, found {}", describe(other)),
                    other_type: None,
                });
            }
            None => {
                return Err(FieldError {
                    column: None,
                    reason: "empty value".into(),
                    other_type: None,
                });
            }
        };
        let ncols = self.names.len();
        let mut slots = [usize::MAX; MAX_COLUMNS];
        let mut idx = 1;
        for _ in 0..len {
            let Some(Node::String(key)) = nodes.get(idx) else {
                break;
            };
            let value = idx + 1;
            match self.lookup(key) {
                // A key given twice: the last one counts, as in most JSON readers.
                Some(col) => slots[col] = value,
                None if self.track => {
                    let json_type = nodes.get(value).map_or("null", drift::json_type);
                    self.unknown.push((Box::from(&**key), json_type));
                }
                None => {}
            }
            idx = value + node_span(&nodes[value]);
        }
        let mut cells = [Cell::Null; MAX_COLUMNS];
        for col in 0..ncols {
            let Some(node) = nodes.get(slots[col]) else {
                continue;
            };
            let kind = self.kinds[col];
            cells[col] = convert(node, kind, nul).map_err(|reason| FieldError {
                column: Some(self.names[col].to_string()),
                reason,
                other_type: other_type(kind, node),
            })?;
            if let Cell::Str(s) = cells[col]
                && s.len() > self.max_text
            {
                return Err(FieldError {
                    column: Some(self.names[col].to_string()),
                    reason: format!(
                        "a text of {} bytes, more than the {} a column holds here \
                         (Redshift's VARCHAR)",
                        s.len(),
                        self.max_text
                    ),
                    other_type: None,
                });
            }
            if let (
                Kind::Text,
                Node::Static(StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_)),
            ) = (kind, node)
            {
                // Text columns keep a number's text as written (`"title": 4.60` is "4.60").
                let text =
                    raw_member(raw, &self.names[col]).and_then(|t| std::str::from_utf8(t).ok());
                cells[col] = text.map_or(Cell::Null, Cell::Str);
            }
        }
        for (builder, cell) in self.builders.iter_mut().zip(&cells[..ncols]) {
            match (builder, *cell) {
                (ColumnBuilder::Text(b), Cell::Str(s)) => b.append_value(s),
                (ColumnBuilder::Int32(b), Cell::Int(v)) => b.append_value(v as i32),
                (ColumnBuilder::Float64(b), Cell::Float(v)) => b.append_value(v),
                (ColumnBuilder::Timestamp(b), Cell::Int(v)) => b.append_value(v),
                (ColumnBuilder::Text(b), _) => b.append_null(),
                (ColumnBuilder::Int32(b), _) => b.append_null(),
                (ColumnBuilder::Float64(b), _) => b.append_null(),
                (ColumnBuilder::Timestamp(b), _) => b.append_null(),
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        self.builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    ColumnBuilder::Text(b) => Arc::new(b.finish()),
                    ColumnBuilder::Int32(b) => Arc::new(b.finish()),
                    ColumnBuilder::Float64(b) => Arc::new(b.finish()),
                    ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
                }
            })
            .collect()
    }
}

/// Whether two keys are the same, compared in line: keys are short, and a call to `memcmp`
/// for each key of each record was 2–3% of an events load.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// How many tape nodes the value starting at `node` takes.
fn node_span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

fn describe(node: &Node<'_>) -> String {
    match node {
        Node::String(s) => {
            let mut shown: String = s.chars().take(40).collect();
            if shown.len() < s.len() {
                shown.push('…');
            }
            format!("string {shown:?}")
        }
        Node::Object { .. } => "an object".into(),
        Node::Array { .. } => "an array".into(),
        Node::Static(StaticNode::Bool(b)) => format!("boolean {b}"),
        Node::Static(StaticNode::Null) => "null".into(),
        Node::Static(StaticNode::I64(v)) => format!("number {v}"),
        Node::Static(StaticNode::U64(v)) => format!("number {v}"),
        Node::Static(StaticNode::F64(v)) => format!("number {v}"),
    }
}

/// The value's JSON type, when it is not one `kind`'s column takes: a text column takes
/// strings and numbers (kept as written), a numeric one numbers and numeric strings.
fn other_type(kind: Kind, node: &Node<'_>) -> Option<&'static str> {
    let json_type = drift::json_type(node);
    let taken = match kind {
        Kind::Text => matches!(json_type, "string" | "number"),
        Kind::Int32 | Kind::Float64 | Kind::TimestampMs => {
            json_type == "number"
                || matches!(node, Node::String(s) if s.trim().parse::<f64>().is_ok())
        }
    };
    (!taken).then_some(json_type)
}

fn wrong_type(kind: Kind, node: &Node<'_>) -> String {
    format!("expected {}, found {}", kind.describe(), describe(node))
}

/// The largest |epoch ms| a timestamp may have: years 1 to 9999 fit every sink.
const MAX_EPOCH_MS: i64 = 253_402_300_799_999;
const MIN_EPOCH_MS: i64 = -62_135_596_800_000;

/// Whether a string parsed from `raw` can hold a NUL character: only when `raw` has a NUL
/// byte or a backslash followed by `u0000` (the one escape of NUL), so that a record without
/// either, nearly every record, skips the search in each of its texts. A `\\u0000` (an
/// escaped backslash) answers yes too; its texts are then searched.
fn may_hold_nul(raw: &[u8]) -> bool {
    memchr::memchr2_iter(0, b'\\', raw).any(|i| raw[i] == 0 || raw[i + 1..].starts_with(b"u0000"))
}

/// `node` as a cell of `kind`; `nul`: whether a text may hold a NUL ([`may_hold_nul`]).
fn convert<'a>(node: &Node<'a>, kind: Kind, nul: bool) -> Result<Cell<'a>, String> {
    let integral = |node: &Node<'a>| -> Result<Option<i64>, String> {
        match node {
            Node::Static(StaticNode::I64(v)) => Ok(Some(*v)),
            Node::Static(StaticNode::U64(v)) => i64::try_from(*v)
                .map(Some)
                .map_err(|_| format!("{v} is out of range")),
            Node::Static(StaticNode::F64(v)) if v.fract() == 0.0 && v.abs() < 9.0e15 => {
                Ok(Some(*v as i64))
            }
            Node::String("") => Ok(None),
            Node::String(s) => match s.parse::<i64>() {
                Ok(v) => Ok(Some(v)),
                Err(_) => Err(wrong_type(kind, node)),
            },
            _ => Err(wrong_type(kind, node)),
        }
    };
    match (kind, node) {
        (_, Node::Static(StaticNode::Null)) => Ok(Cell::Null),
        // `\u0000` is valid JSON, but PostgreSQL's and Redshift's text cannot hold it: a
        // record every sink can store, or a reject in every sink (as for timestamps).
        (Kind::Text, Node::String(s)) if nul && memchr::memchr(0, s.as_bytes()).is_some() => Err(
            "text holds a NUL character (\\u0000), which PostgreSQL and Redshift \
                 cannot store"
                .into(),
        ),
        (Kind::Text, Node::String(s)) => Ok(Cell::Str(s)),
        // Replaced by the number's text as written by the caller, who has the raw JSON.
        (
            Kind::Text,
            Node::Static(StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_)),
        ) => Ok(Cell::Null),
        (Kind::Int32, _) => match integral(node)? {
            None => Ok(Cell::Null),
            Some(v) if i32::try_from(v).is_ok() => Ok(Cell::Int(v)),
            Some(v) => Err(format!("integer {v} is out of range for INTEGER")),
        },
        (Kind::TimestampMs, _) => match integral(node)? {
            None => Ok(Cell::Null),
            Some(v) if (MIN_EPOCH_MS..=MAX_EPOCH_MS).contains(&v) => Ok(Cell::Int(v)),
            Some(v) => Err(format!(
                "epoch milliseconds {v} are out of range for TIMESTAMP"
            )),
        },
        (Kind::Float64, Node::Static(StaticNode::I64(v))) => Ok(Cell::Float(*v as f64)),
        (Kind::Float64, Node::Static(StaticNode::U64(v))) => Ok(Cell::Float(*v as f64)),
        (Kind::Float64, Node::Static(StaticNode::F64(v))) => Ok(Cell::Float(*v)),
        (Kind::Float64, Node::String("")) => Ok(Cell::Null),
        (Kind::Float64, Node::String(s)) => match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Cell::Float(v)),
            _ => Err(wrong_type(kind, node)),
        },
        _ => Err(wrong_type(kind, node)),
    }
}

fn json_reason(err: &simd_json::Error) -> String {
    use simd_json::ErrorType;
    match err.error() {
        ErrorType::InvalidUtf8 => "invalid UTF-8".into(),
        ErrorType::Eof => "truncated JSON: the input ends inside the value".into(),
        ErrorType::TrailingData => "invalid JSON: unexpected text after the value".into(),
        _ => format!("invalid JSON: {err}"),
    }
}

/// Decodes JSON pushed to it in pieces of any size into batches of one schema.
pub struct Decoder {
    schema: SchemaRef,
    columns: Columns,
    batch_size: usize,
    rows: usize,
    /// Every record seen, whether it became a row or a reject (never reset).
    records: u64,
    source: Arc<str>,
    /// Line and byte offset of the first byte not yet consumed.
    line: u64,
    offset: u64,
    started: bool,
    /// The top-level array the stream is in, if any.
    array: Option<OpenArray>,
    finished: bool,
    /// Bytes taken from the caller but not yet decoded: the start of an incomplete value.
    pending: Vec<u8>,
    scratch: Vec<u8>,
    buffers: Buffers,
    tape: Option<Tape<'static>>,
    rejects: Vec<Reject>,
    /// Where drift goes, and what this decoder found since it last handed it on.
    drift: Option<Arc<DriftLog>>,
    found: Found,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("schema", &self.schema)
            .field("source", &self.source)
            .field("rows", &self.rows)
            .field("line", &self.line)
            .field("offset", &self.offset)
            .field("rejects", &self.rejects.len())
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// Decodes the complete values at the start of `buf` and keeps an incomplete tail for the
    /// next call. Returns how many bytes of `buf` it took: fewer than `buf.len()` when the
    /// batch is full, after which the caller calls [`Decoder::flush`] and passes the rest.
    pub fn decode(&mut self, buf: &[u8]) -> Result<usize> {
        if self.finished {
            return Err(Error::Schema("decode called after finish".into()));
        }
        if self.is_full() {
            return Ok(0);
        }
        if !self.pending.is_empty() {
            self.process_pending(false);
            if self.is_full() {
                return Ok(0);
            }
            self.pending.extend_from_slice(buf);
            self.process_pending(false);
            return Ok(buf.len());
        }
        let n = self.process(buf, false);
        if self.is_full() {
            return Ok(n);
        }
        self.pending.extend_from_slice(&buf[n..]);
        Ok(buf.len())
    }

    /// Marks the end of the input: what is still pending is decoded by the next flushes.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Whether a batch is full and must be flushed before more input is taken.
    pub fn is_full(&self) -> bool {
        self.rows >= self.batch_size
    }

    /// Every record decoded so far, as a row or a reject, over every stream: what a run
    /// reconciles its rows and rejects against.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The rejects found and not yet taken.
    pub fn rejected(&self) -> usize {
        self.rejects.len()
    }

    /// The rows decoded and not yet flushed.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no rows wait to be flushed.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The decoded rows as a batch, or `None` when there are none. After [`Decoder::finish`],
    /// call it until it returns `None`.
    pub fn flush(&mut self) -> Result<Option<RecordBatch>> {
        if self.finished && self.rows < self.batch_size && !self.pending.is_empty() {
            self.process_pending(true);
        }
        if self.finished && self.pending.is_empty() {
            self.close_array();
        }
        if self.rows == 0 {
            return Ok(None);
        }
        self.rows = 0;
        let arrays = self.columns.finish();
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            arrays,
        )?))
    }

    /// The rejects found so far, leaving none behind.
    pub fn take_rejects(&mut self) -> Vec<Reject> {
        if let Some(drift) = &self.drift
            && !self.found.is_empty()
        {
            drift.merge(&mut self.found);
        }
        std::mem::take(&mut self.rejects)
    }

    /// Ends the current stream (as [`Decoder::finish`] would) and readies the decoder for the
    /// next one, named `source`, keeping the rows decoded so far: many small files then fill
    /// one batch. Batches that fill up on the way are pushed to `full`.
    pub fn next_stream(&mut self, source: Arc<str>, full: &mut Vec<RecordBatch>) -> Result<()> {
        self.finished = true;
        while !self.pending.is_empty() {
            if self.is_full() {
                full.extend(self.flush()?);
            }
            self.process_pending(true);
        }
        if self.is_full() {
            full.extend(self.flush()?);
        }
        self.source = source;
        self.line = 1;
        self.offset = 0;
        self.close_array();
        self.started = false;
        self.finished = false;
        Ok(())
    }

    /// The schema of the batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process_pending(&mut self, is_final: bool) {
        let pending = std::mem::take(&mut self.pending);
        let n = self.process(&pending, is_final);
        self.pending = pending;
        self.pending.drain(..n);
    }

    /// Decodes values from `input` (which starts at `self.offset`) until the batch is full or
    /// only an incomplete value is left; returns the bytes consumed. With `is_final`, the end
    /// of `input` is the end of the stream.
    fn process(&mut self, input: &[u8], is_final: bool) -> usize {
        let mut pos = 0;
        if !self.started {
            if input.len() < BOM.len() && !is_final && BOM.starts_with(input) {
                return 0;
            }
            self.started = true;
            if input.starts_with(BOM) {
                pos = BOM.len();
            }
        }
        let mut line = self.line;
        while !self.is_full() {
            while pos < input.len() && is_ws(input[pos]) {
                line += u64::from(input[pos] == b'\n');
                pos += 1;
            }
            if pos >= input.len() {
                break;
            }
            let start = pos;
            let at = self.offset + start as u64;
            match (&mut self.array, input[pos]) {
                (Some(array), b',') => {
                    if array.expect != Expect::CommaOrEnd {
                        let reason =
                            "an empty element in the top-level array: `,` where a value belongs";
                        self.reject_syntax(line, at, reason, &input[pos..=pos]);
                    }
                    if let Some(array) = &mut self.array {
                        array.expect = Expect::Value;
                    }
                    pos += 1;
                    continue;
                }
                (Some(array), b']') => {
                    if array.expect == Expect::Value {
                        let reason = "a comma before the end of the top-level array";
                        self.reject_syntax(line, at, reason, &input[pos..=pos]);
                    }
                    self.array = None;
                    pos += 1;
                    continue;
                }
                (Some(_), _) => {}
                (None, b'[') => {
                    self.array = Some(OpenArray {
                        line,
                        at,
                        expect: Expect::FirstOrEnd,
                    });
                    pos += 1;
                    continue;
                }
                (None, b'{') => {
                    // The common case: one object on one line.
                    let Some(line_end) = memchr::memchr(b'\n', &input[pos..])
                        .map(|i| pos + i)
                        .or(is_final.then_some(input.len()))
                    else {
                        break;
                    };
                    let end = start + input[start..line_end].trim_ascii_end().len();
                    if input[end - 1] == b'}'
                        && self.parse_value(&input[start..end], line, at).is_ok()
                    {
                        pos = end;
                        continue;
                    }
                }
                _ => {}
            }
            let end = match value_end(input, pos) {
                Some(end) => end,
                None if !is_final => break,
                None => input.len(),
            };
            // An element of a top-level array, once taken: a comma must have come before it
            // unless it is the first.
            let missing_comma = matches!(
                self.array,
                Some(OpenArray {
                    expect: Expect::CommaOrEnd,
                    ..
                })
            );
            match self.parse_value(&input[start..end], line, at) {
                Ok(()) => {
                    self.element_taken(missing_comma, line, at);
                    line += count_lines(&input[start..end]);
                    pos = end;
                }
                Err(reason) => {
                    let resume = match resync_point(input, start) {
                        Some(resume) => resume,
                        None if !is_final => break,
                        None => input.len(),
                    };
                    self.element_taken(missing_comma, line, at);
                    let raw = &input[start..resume];
                    self.rejects
                        .push(Reject::new(&self.source, line, at, None, reason, raw));
                    self.records += 1;
                    line += count_lines(raw);
                    pos = resume;
                }
            }
        }
        self.offset += pos as u64;
        self.line = line;
        pos
    }

    /// Parses one JSON value. Invalid JSON is returned as the reason, to be rejected with the
    /// text up to the next record; a valid value becomes a row or a reject naming its field.
    fn parse_value(&mut self, raw: &[u8], line: u64, at: u64) -> Result<(), String> {
        self.scratch.clear();
        self.scratch.extend_from_slice(raw);
        self.scratch.resize(raw.len() + INPUT_PADDING, 0);
        let mut tape: Tape<'_> = self.tape.take().map_or_else(Tape::null, Tape::reset);
        let parsed =
            simd_json::fill_tape_padded(&mut self.scratch, raw.len(), &mut self.buffers, &mut tape);
        let result = match parsed {
            Err(err) => Err(json_reason(&err)),
            Ok(()) => {
                self.records += 1;
                match self.columns.append_row(&tape.0, raw) {
                    Ok(()) => self.rows += 1,
                    Err(e) => {
                        if let (Some(column), Some(json_type), true) =
                            (&e.column, e.other_type, self.columns.track)
                        {
                            let kind = DriftKind::OtherType;
                            self.found.note(column, json_type, kind, &self.source, line);
                        }
                        self.rejects.push(Reject::new(
                            &self.source,
                            line,
                            at,
                            e.column.as_deref(),
                            e.reason,
                            raw,
                        ))
                    }
                }
                for (field, json_type) in self.columns.unknown.drain(..) {
                    let kind = DriftKind::NewField;
                    self.found.note(&field, json_type, kind, &self.source, line);
                }
                Ok(())
            }
        };
        self.tape = Some(tape.reset());
        result
    }
}

/// A top-level array the stream opened: where, and what may come next.
#[derive(Debug, Clone, Copy)]
struct OpenArray {
    line: u64,
    at: u64,
    expect: Expect,
}

/// What JSON allows next in a top-level array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Just opened: a value, or `]`.
    FirstOrEnd,
    /// After a value: `,` or `]`.
    CommaOrEnd,
    /// After a comma: a value.
    Value,
}

impl Decoder {
    /// A break of the top-level array's syntax, as a reject of its own (counted as a record,
    /// so that the records read are still the rows and the rejects): the values around it
    /// are decoded as they are.
    fn reject_syntax(&mut self, line: u64, at: u64, reason: &str, raw: &[u8]) {
        self.rejects
            .push(Reject::new(&self.source, line, at, None, reason, raw));
        self.records += 1;
    }

    /// A value taken in a top-level array, if the stream is in one: a comma comes next (or
    /// the end), and one that was missing before it is a reject.
    fn element_taken(&mut self, missing_comma: bool, line: u64, at: u64) {
        let Some(array) = &mut self.array else {
            return;
        };
        array.expect = Expect::CommaOrEnd;
        if missing_comma {
            let reason = "a missing comma between two elements of the top-level array";
            self.reject_syntax(line, at, reason, b"");
        }
    }

    /// The end of a stream: a top-level array still open there (a truncated upload looks
    /// like this) is a reject naming where it was opened, so a cut file is never taken for a
    /// short one.
    fn close_array(&mut self) {
        if let Some(open) = self.array.take() {
            let reason = format!(
                "the top-level array opened at line {} (byte {}) is never closed: the input \
                 ends inside it (a truncated file?)",
                open.line, open.at
            );
            self.reject_syntax(self.line, self.offset, &reason, b"[");
        }
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// Iterates the batches of one stream, reading it in pieces.
#[derive(Debug)]
pub struct Reader<R> {
    decoder: Decoder,
    reader: R,
    source: Arc<str>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Reader<R> {
    /// The rejects found so far, leaving none behind.
    pub fn take_rejects(&mut self) -> Vec<Reject> {
        self.decoder.take_rejects()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.decoder.is_full() || self.eof {
                return self.decoder.flush();
            }
            if self.start == self.end {
                let n = self
                    .reader
                    .read(&mut self.buf)
                    .map_err(|source| Error::Io {
                        path: self.source.to_string(),
                        source,
                    })?;
                if n == 0 {
                    self.eof = true;
                    self.decoder.finish();
                    continue;
                }
                self.start = 0;
                self.end = n;
            }
            self.start += self.decoder.decode(&self.buf[self.start..self.end])?;
        }
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::{ReaderBuilder, may_hold_nul};
    use crate::table::STAGING_SONGS;
    use proptest::prelude::*;

    /// The rows and the rejects' reasons of `json`, pushed in pieces of `piece` bytes.
    #[test]
    fn a_text_longer_than_the_sink_holds_is_a_reject_naming_its_field() {
        let long = "é".repeat(40);
        let json =
            format!("{{\"title\": \"{long}\", \"song_id\": \"S1\"}}\n{{\"title\": \"short\"}}\n");
        let mut decoder = ReaderBuilder::new(STAGING_SONGS.input_schema())
            .with_max_text(Some(64))
            .build_decoder()
            .unwrap();
        decoder.decode(json.as_bytes()).unwrap();
        decoder.finish();
        let rows = decoder.flush().unwrap().map_or(0, |b| b.num_rows());
        let rejects = decoder.take_rejects();
        assert_eq!((rows, rejects.len()), (1, 1));
        assert_eq!(rejects[0].line, 1);
        assert_eq!(rejects[0].column.as_deref(), Some("title"));
        assert!(
            rejects[0]
                .reason
                .starts_with("a text of 80 bytes, more than the 64"),
            "{}",
            rejects[0].reason
        );
    }

    #[test]
    fn new_fields_and_other_types_are_noted_with_their_first_line() {
        let log = crate::drift::DriftLog::new("staging_songs");
        let json = b"{\"title\": \"a\", \"mood\": 1}\n{\"title\": {}}\n{\"mood\": 2, \"year\": \"1990\"}\n";
        let mut decoder = ReaderBuilder::new(STAGING_SONGS.input_schema())
            .with_source("s.json")
            .with_drift(Some(std::sync::Arc::clone(&log)))
            .build_decoder()
            .unwrap();
        decoder.decode(json).unwrap();
        decoder.finish();
        while decoder.flush().unwrap().is_some() {}
        assert_eq!(decoder.take_rejects().len(), 1);
        let seen: Vec<(String, &str, u64, u64)> = log
            .entries()
            .into_iter()
            .map(|d| {
                (
                    format!("{}:{:?}", d.field, d.kind),
                    d.json_type,
                    d.first_line,
                    d.records,
                )
            })
            .collect();
        // A numeric string in a number column is taken (SPEC), not drift.
        assert_eq!(
            seen,
            [
                ("mood:NewField".to_owned(), "number", 1, 2),
                ("title:OtherType".to_owned(), "object", 2, 1)
            ]
        );
    }

    fn decoded(json: &[u8], piece: usize) -> (usize, Vec<String>) {
        let mut decoder = ReaderBuilder::new(STAGING_SONGS.input_schema())
            .build_decoder()
            .unwrap();
        let mut rows = 0;
        for chunk in json.chunks(piece.max(1)) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let n = decoder.decode(rest).unwrap();
                rest = &rest[n..];
                if decoder.is_full() {
                    rows += decoder.flush().unwrap().map_or(0, |b| b.num_rows());
                }
            }
        }
        decoder.finish();
        while let Some(batch) = decoder.flush().unwrap() {
            rows += batch.num_rows();
        }
        let rejects: Vec<String> = decoder
            .take_rejects()
            .into_iter()
            .map(|r| r.reason)
            .collect();
        assert_eq!(decoder.records(), (rows + rejects.len()) as u64);
        (rows, rejects)
    }

    #[test]
    fn a_top_level_array_left_open_or_malformed_is_rejected() {
        let song = r#"{"song_id":"S1","title":"t"}"#;
        let never_closed = "is never closed";
        let cases: [(String, usize, &[&str]); 8] = [
            (format!("[{song}"), 1, &[never_closed]),
            (format!("[\n{song},\n{song}"), 2, &[never_closed]),
            ("[".into(), 0, &[never_closed]),
            ("[,".into(), 0, &["an empty element", never_closed]),
            (
                "[,]".into(),
                0,
                &["an empty element", "a comma before the end"],
            ),
            (format!("[{song},]"), 1, &["a comma before the end"]),
            (format!("[{song} {song}]"), 2, &["a missing comma"]),
            (format!("[{song},{song}]\n[]"), 2, &[]),
        ];
        for (json, rows, reasons) in &cases {
            for piece in [1, 3, 7, json.len()] {
                let (got_rows, got) = decoded(json.as_bytes(), piece);
                assert_eq!(got_rows, *rows, "{json} in pieces of {piece}");
                assert_eq!(got.len(), reasons.len(), "{json}: {got:?}");
                for (reason, expected) in got.iter().zip(reasons.iter()) {
                    assert!(reason.contains(expected), "{json}: {reason}");
                }
            }
        }
        let (_, got) = decoded(format!("\n[{song}").as_bytes(), 4);
        assert!(got[0].contains("opened at line 2 (byte 1)"), "{got:?}");
    }

    #[test]
    fn only_a_nul_byte_or_its_escape_may_give_a_nul() {
        assert!(!may_hold_nul(
            br#"{"userAgent":"\"Mozilla/5.0\"","artist":"A\\B"}"#
        ));
        assert!(!may_hold_nul(br#"{"artist":"u0000","song":"\u0001"}"#));
        assert!(may_hold_nul(br#"{"artist":"before\u0000after"}"#));
        assert!(may_hold_nul(b"{\"artist\":\"raw\0byte\"}"));
        // An escaped backslash before `u0000` is no NUL, but is searched all the same.
        assert!(may_hold_nul(br#"{"artist":"\\u0000"}"#));
        // A backslash at the very end does not read past the text.
        assert!(!may_hold_nul(b"\\"));
    }

    proptest! {
        /// Any object whose text holds a NUL, as serde_json writes it, may give one.
        #[test]
        fn every_text_with_a_nul_is_searched(before in ".*", after in ".*") {
            let text = format!("{before}\0{after}");
            let raw = serde_json::to_vec(&serde_json::json!({ "artist": text })).unwrap();
            prop_assert!(may_hold_nul(&raw));
        }
    }
}
