//! `sparkify_batch(token)`: a table function that hands DuckDB Arrow batches of one schema, scanned by
//! as many of DuckDB's threads as it likes, so `INSERT INTO t SELECT * FROM sparkify_batch(?)`
//! appends in parallel (duckdb-rs's own `arrow()` scan is single-threaded). The batch is
//! registered in a process-wide map for as long as its [`Registration`] lives.
//! Each call of the scan gives DuckDB up to one vector of one batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use arrow::array::RecordBatch;
use duckdb::core::{DataChunkHandle, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::arrow::{record_batch_to_duckdb_data_chunk, to_duckdb_logical_type_for_field};
use duckdb::vtab::{BindInfo, InitInfo, TableFunctionInfo, VTab};

/// DuckDB's `STANDARD_VECTOR_SIZE`: the most rows one output chunk holds.
const VECTOR_SIZE: usize = 2048;

pub(crate) const FUNCTION: &str = "sparkify_batch";

static BATCHES: LazyLock<Mutex<HashMap<u64, Arc<[RecordBatch]>>>> = LazyLock::new(Default::default);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Batches registered for [`BatchScan`]; dropping it unregisters them.
#[derive(Debug)]
pub(crate) struct Registration(pub(crate) u64);

impl Registration {
    /// Registers `batches`, which are of one schema and not empty.
    pub(crate) fn new(batches: Vec<RecordBatch>) -> Self {
        let token = NEXT.fetch_add(1, Ordering::Relaxed);
        BATCHES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, batches.into());
        Registration(token)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        BATCHES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// The machine's cores: the threads a scan may use, and what the sink's memory cap scales with.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) struct BatchScan;

pub(crate) struct Bind {
    batches: Arc<[RecordBatch]>,
    /// Every vector the scan gives: (batch, first row, rows).
    vectors: Vec<(usize, usize, usize)>,
}

pub(crate) struct Init {
    next: AtomicUsize,
}

impl VTab for BatchScan {
    type BindData = Bind;
    type InitData = Init;

    fn bind(bind: &BindInfo) -> Result<Bind, Box<dyn std::error::Error>> {
        let token = bind.get_parameter(0).to_uint64();
        let batches = BATCHES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&token)
            .cloned()
            .ok_or_else(|| format!("no batch registered as {token}"))?;
        let first = batches.first().ok_or("no batches to scan")?;
        for field in first.schema().fields() {
            bind.add_result_column(field.name(), to_duckdb_logical_type_for_field(field)?);
        }
        let vectors = batches
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| {
                (0..batch.num_rows())
                    .step_by(VECTOR_SIZE)
                    .map(move |start| (b, start, VECTOR_SIZE.min(batch.num_rows() - start)))
            })
            .collect();
        Ok(Bind { batches, vectors })
    }

    fn init(init: &InitInfo) -> Result<Init, Box<dyn std::error::Error>> {
        init.set_max_threads(cores() as u64);
        Ok(Init {
            next: AtomicUsize::new(0),
        })
    }

    fn func(
        func: &TableFunctionInfo<Self>,
        output: &mut DataChunkHandle,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let bind = func.get_bind_data();
        let next = func.get_init_data().next.fetch_add(1, Ordering::Relaxed);
        let Some(&(b, start, len)) = bind.vectors.get(next) else {
            output.set_len(0);
            return Ok(());
        };
        record_batch_to_duckdb_data_chunk(&bind.batches[b].slice(start, len), output)?;
        Ok(())
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(vec![LogicalTypeHandle::from(LogicalTypeId::UBigint)])
    }
}

/// `sparkify_stream(token)`: the batches sent to a [`Feed`]'s sender, as they come, scanned by
/// as many of DuckDB's threads as it likes; the scan ends once the sender is dropped. One
/// `INSERT … SELECT * FROM sparkify_stream(?)` then appends a whole stream while it is read.
pub(crate) const STREAM_FUNCTION: &str = "sparkify_stream";

static FEEDS: LazyLock<Mutex<HashMap<u64, Arc<Feed>>>> = LazyLock::new(Default::default);

/// The receiving end of a stream, and the batch being cut into vectors.
pub(crate) struct Feed {
    schema: arrow::datatypes::SchemaRef,
    state: Mutex<FeedState>,
}

struct FeedState {
    rx: std::sync::mpsc::Receiver<RecordBatch>,
    batch: Option<RecordBatch>,
    offset: usize,
}

/// A stream registered for [`StreamScan`]; dropping it unregisters it (a sender blocked on
/// a full channel then fails instead of waiting for ever).
#[derive(Debug)]
pub(crate) struct FeedRegistration(pub(crate) u64);

impl FeedRegistration {
    /// A stream of batches of `schema`: at most `bound` of them wait in the channel.
    pub(crate) fn new(
        schema: arrow::datatypes::SchemaRef,
        bound: usize,
    ) -> (Self, std::sync::mpsc::SyncSender<RecordBatch>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(bound);
        let token = NEXT.fetch_add(1, Ordering::Relaxed);
        let feed = Feed {
            schema,
            state: Mutex::new(FeedState {
                rx,
                batch: None,
                offset: 0,
            }),
        };
        FEEDS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, Arc::new(feed));
        (FeedRegistration(token), tx)
    }
}

impl Drop for FeedRegistration {
    fn drop(&mut self) {
        FEEDS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

pub(crate) struct StreamScan;

impl VTab for StreamScan {
    type BindData = Arc<Feed>;
    type InitData = ();

    fn bind(bind: &BindInfo) -> Result<Arc<Feed>, Box<dyn std::error::Error>> {
        let token = bind.get_parameter(0).to_uint64();
        let feed = FEEDS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&token)
            .cloned()
            .ok_or_else(|| format!("no stream registered as {token}"))?;
        for field in feed.schema.fields() {
            bind.add_result_column(field.name(), to_duckdb_logical_type_for_field(field)?);
        }
        Ok(feed)
    }

    fn init(init: &InitInfo) -> Result<(), Box<dyn std::error::Error>> {
        init.set_max_threads(cores() as u64);
        Ok(())
    }

    fn func(
        func: &TableFunctionInfo<Self>,
        output: &mut DataChunkHandle,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let feed = func.get_bind_data();
        let slice = {
            let mut state = feed.state.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                let offset = state.offset;
                if let Some(batch) = &state.batch
                    && offset < batch.num_rows()
                {
                    let len = VECTOR_SIZE.min(batch.num_rows() - offset);
                    let slice = batch.slice(offset, len);
                    state.offset += len;
                    break Some(slice);
                }
                // Waits for the next batch; none once the sender is gone.
                match state.rx.recv() {
                    Ok(batch) => {
                        state.batch = Some(batch);
                        state.offset = 0;
                    }
                    Err(_) => {
                        state.batch = None;
                        break None;
                    }
                }
            }
        };
        match slice {
            Some(slice) => record_batch_to_duckdb_data_chunk(&slice, output)?,
            None => output.set_len(0),
        }
        Ok(())
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(vec![LogicalTypeHandle::from(LogicalTypeId::UBigint)])
    }
}
