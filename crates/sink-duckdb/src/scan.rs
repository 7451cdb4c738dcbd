//! `sparkify_batch(token)`: a table function that hands DuckDB one Arrow batch, scanned by
//! as many of DuckDB's threads as it likes, so `INSERT INTO t SELECT * FROM sparkify_batch(?)`
//! appends in parallel (duckdb-rs's own `arrow()` scan is single-threaded). The batch is
//! registered in a process-wide map for as long as its [`Registration`] lives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use arrow::array::RecordBatch;
use duckdb::core::{DataChunkHandle, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::arrow::{record_batch_to_duckdb_data_chunk, to_duckdb_logical_type_for_field};
use duckdb::vtab::{BindInfo, InitInfo, TableFunctionInfo, VTab};

/// DuckDB's `STANDARD_VECTOR_SIZE`: the most rows one output chunk holds.
const VECTOR_SIZE: usize = 2048;

pub(crate) const FUNCTION: &str = "sparkify_batch";

static BATCHES: LazyLock<Mutex<HashMap<u64, RecordBatch>>> = LazyLock::new(Default::default);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A batch registered for [`BatchScan`]; dropping it unregisters the batch.
#[derive(Debug)]
pub(crate) struct Registration(pub(crate) u64);

impl Registration {
    pub(crate) fn new(batch: RecordBatch) -> Self {
        let token = NEXT.fetch_add(1, Ordering::Relaxed);
        BATCHES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, batch);
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
    batch: RecordBatch,
}

pub(crate) struct Init {
    next: AtomicUsize,
}

impl VTab for BatchScan {
    type BindData = Bind;
    type InitData = Init;

    fn bind(bind: &BindInfo) -> Result<Bind, Box<dyn std::error::Error>> {
        let token = bind.get_parameter(0).to_uint64();
        let batch = BATCHES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&token)
            .cloned()
            .ok_or_else(|| format!("no batch registered as {token}"))?;
        for field in batch.schema().fields() {
            bind.add_result_column(field.name(), to_duckdb_logical_type_for_field(field)?);
        }
        Ok(Bind { batch })
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
        let batch = &func.get_bind_data().batch;
        let rows = batch.num_rows();
        let start = func
            .get_init_data()
            .next
            .fetch_add(VECTOR_SIZE, Ordering::Relaxed);
        if start >= rows {
            output.set_len(0);
            return Ok(());
        }
        let len = VECTOR_SIZE.min(rows - start);
        record_batch_to_duckdb_data_chunk(&batch.slice(start, len), output)?;
        Ok(())
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(vec![LogicalTypeHandle::from(LogicalTypeId::UBigint)])
    }
}
