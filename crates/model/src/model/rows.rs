//! A table's rows as a sink takes them: a batch held whole, `dm_time` made a slice at a
//! time from its start times ([`Times`]) and `ft_songplays` from its plays ([`Songplays`]),
//! so that a load never holds either table whole, or a table spilled out of memory as it grew
//! ([`Spilled`]: the rejects), read back a batch at a time.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, TimestampMillisecondArray};
use arrow::buffer::ScalarBuffer;
use chrono::Datelike;

use crate::error::Result;
use crate::model::Songplays;
use crate::spill::Spilled;
use crate::table::DM_TIME;

/// `dm_time`'s rows as their start times, 8 bytes a row. The six other columns (32 bytes a
/// row in all) are worked out a slice at a time as a sink asks for them ([`Rows::batches`]):
/// at 1000x the table's 6.4 M rows held whole were 206 MB, the largest thing a load held once
/// its events were through.
#[derive(Debug, Clone)]
pub struct Times(ScalarBuffer<i64>);

impl Times {
    /// One row per time (milliseconds since 1970, UTC), in the order given.
    pub fn new(ms: impl Into<ScalarBuffer<i64>>) -> Self {
        Times(ms.into())
    }

    pub fn num_rows(&self) -> usize {
        self.0.len()
    }

    /// The `start_time` column, as it is held.
    pub fn start_time(&self) -> ArrayRef {
        Arc::new(TimestampMillisecondArray::new(self.0.clone(), None))
    }

    /// Rows `offset..offset + len` with their hour, day, ISO week, month, year and ISO weekday
    /// (1 = Monday). A day's date parts are worked out once, when its first time comes (chrono
    /// per time was 12% of a 100x star build, for 644K times on 30 days).
    pub fn slice(&self, offset: usize, len: usize) -> Result<RecordBatch> {
        const DAY_MS: i64 = 86_400_000;
        let ts = self.0.slice(offset, len);
        let mut hours = Vec::with_capacity(len);
        let mut dates: [Vec<i32>; 5] = std::array::from_fn(|_| Vec::with_capacity(len));
        let mut today: Option<(i64, [i32; 5])> = None;
        for &ms in ts.iter() {
            let day = ms.div_euclid(DAY_MS);
            let parts = match today {
                Some((at, parts)) if at == day => parts,
                _ => {
                    let t = crate::time::naive(day * DAY_MS)
                        .expect("the reader keeps timestamps in range");
                    let parts = [
                        t.day() as i32,
                        t.iso_week().week() as i32,
                        t.month() as i32,
                        t.year(),
                        t.weekday().number_from_monday() as i32,
                    ];
                    today = Some((day, parts));
                    parts
                }
            };
            hours.push((ms.rem_euclid(DAY_MS) / 3_600_000) as i32);
            for (column, part) in dates.iter_mut().zip(parts) {
                column.push(part);
            }
        }
        let start_time: ArrayRef = Arc::new(TimestampMillisecondArray::new(ts, None));
        let columns = std::iter::once(hours)
            .chain(dates)
            .map(|values| Arc::new(Int32Array::from(values)) as ArrayRef);
        Ok(RecordBatch::try_new(
            DM_TIME.schema(),
            std::iter::once(start_time).chain(columns).collect(),
        )?)
    }
}

/// A table's rows: a batch held whole, [`Times`], made as they are asked for, or a table
/// read back from where it spilled.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    Batch(&'a RecordBatch),
    Times(&'a Times),
    Songplays(&'a Songplays),
    Spilled(&'a Spilled),
}

/// A table a run keeps, held whole or spilled out of memory ([`crate::reject::RejectLog`]
/// spills the rejects once they grow past their bound); cheap to clone.
#[derive(Debug, Clone)]
pub enum Kept {
    Batch(RecordBatch),
    Spilled(Arc<Spilled>),
}

impl Kept {
    pub fn rows(&self) -> Rows<'_> {
        match self {
            Kept::Batch(b) => Rows::Batch(b),
            Kept::Spilled(s) => Rows::Spilled(s),
        }
    }
}

/// The rows a sink takes at once from a table made as it is asked for ([`Rows::batches`]):
/// 8 MB of `dm_time`.
pub const SLICE_ROWS: usize = 1 << 18;

/// The rows of `ft_songplays` made at once, at most, whatever a sink asks: a row with its
/// location and user agent is about 200 bytes, so 65,536 rows are about 13 MB (a sink holds a
/// few slices at once; with `SLICE_ROWS` of them, the 1000x `--songplays all` load peaked
/// 140 MiB higher).
pub const SONGPLAYS_SLICE_ROWS: usize = 1 << 16;

impl<'a> Rows<'a> {
    pub fn num_rows(self) -> usize {
        match self {
            Rows::Batch(b) => b.num_rows(),
            Rows::Times(t) => t.num_rows(),
            Rows::Songplays(p) => p.num_rows(),
            Rows::Spilled(s) => s.num_rows(),
        }
    }

    /// Rows `offset..offset + len`: a view of a batch held whole (no copy), made for `dm_time`
    /// and `ft_songplays`, read back for a spilled table.
    pub fn slice(self, offset: usize, len: usize) -> Result<RecordBatch> {
        match self {
            Rows::Batch(b) => Ok(b.slice(offset, len)),
            Rows::Times(t) => t.slice(offset, len),
            Rows::Songplays(p) => p.slice(offset, len),
            Rows::Spilled(s) => s.slice(offset, len),
        }
    }

    /// Every row in batches of at most `max_rows` rows (one batch when the table is held
    /// whole; `ft_songplays` in batches of [`SONGPLAYS_SLICE_ROWS`] at most), each made or read
    /// back only when the iterator comes to it; none for an empty table.
    pub fn batches(
        self,
        max_rows: usize,
    ) -> Box<dyn Iterator<Item = Result<RecordBatch>> + Send + 'a> {
        let rows = self.num_rows();
        let max_rows = max_rows.max(1);
        let step = match self {
            Rows::Batch(_) => rows.max(1),
            Rows::Times(_) => max_rows,
            Rows::Songplays(_) => max_rows.min(SONGPLAYS_SLICE_ROWS),
            Rows::Spilled(s) => {
                // Each batch as it was written (an empty one gives nothing), cut to `max_rows`.
                return Box::new(s.batches().flat_map(move |b| {
                    match b {
                        Ok(b) => cuts(b.num_rows(), max_rows)
                            .map(|(at, len)| Ok(b.slice(at, len)))
                            .collect::<Vec<_>>(),
                        Err(e) => vec![Err(e)],
                    }
                }));
            }
        };
        Box::new(cuts(rows, step).map(move |(at, len)| self.slice(at, len)))
    }

    /// Every row in one batch (`dm_time` or `ft_songplays` made whole).
    pub fn to_batch(self) -> Result<RecordBatch> {
        self.slice(0, self.num_rows())
    }

    /// The column `name`, whole; `dm_time`'s `start_time` as it is held, its other columns
    /// made whole; an `ft_songplays` column made alone; a spilled table's read back whole.
    pub fn column(self, name: &str) -> Result<Option<ArrayRef>> {
        match self {
            Rows::Batch(b) => Ok(b.column_by_name(name).cloned()),
            Rows::Times(t) if name == "start_time" => Ok(Some(t.start_time())),
            Rows::Songplays(p) => p.column(name),
            Rows::Times(_) | Rows::Spilled(_) => Ok(self.to_batch()?.column_by_name(name).cloned()),
        }
    }
}

/// `rows` rows cut into pieces of `step` rows (the last one shorter), as (offset, length).
fn cuts(rows: usize, step: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rows)
        .step_by(step)
        .map(move |at| (at, step.min(rows - at)))
}

impl<'a> From<&'a RecordBatch> for Rows<'a> {
    fn from(batch: &'a RecordBatch) -> Self {
        Rows::Batch(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Int32Type, TimestampMillisecondType};
    use chrono::Timelike;

    #[test]
    fn time_parts_worked_out_a_day_at_a_time_are_chronos_for_each_time() {
        // Times over years, before 1970, at midnight and a millisecond either side.
        let mut ts: Vec<i64> = (0..5000i64)
            .map(|i| (i * 7_919_993_i64).wrapping_mul(if i % 3 == 0 { -1 } else { 1 }) * 211)
            .collect();
        ts.extend([
            0,
            -1,
            1,
            86_400_000,
            86_399_999,
            -86_400_000,
            1_541_105_830_796,
        ]);
        ts.sort_unstable();
        ts.dedup();
        let times = Times::new(ts.clone());
        let batch = Rows::Times(&times).to_batch().unwrap();
        assert_eq!(batch.num_rows(), ts.len());
        let parts: Vec<&[i32]> = (1..=6)
            .map(|c| &batch.column(c).as_primitive::<Int32Type>().values()[..])
            .collect();
        let start = batch.column(0).as_primitive::<TimestampMillisecondType>();
        for (row, &ms) in ts.iter().enumerate() {
            assert_eq!(start.value(row), ms);
            let t = crate::time::naive(ms).unwrap();
            let want = [
                t.hour() as i32,
                t.day() as i32,
                t.iso_week().week() as i32,
                t.month() as i32,
                t.year(),
                t.weekday().number_from_monday() as i32,
            ];
            let got: Vec<i32> = parts.iter().map(|c| c[row]).collect();
            assert_eq!(got, want, "{ms}");
        }
    }

    #[test]
    fn times_taken_in_slices_are_the_table_made_whole() {
        let ts: Vec<i64> = (0..1000i64).map(|i| i * 3_600_007 - 86_400_000).collect();
        let times = Times::new(ts);
        let rows = Rows::Times(&times);
        let whole = rows.to_batch().unwrap();
        for max in [1, 7, 999, 1000, 5000] {
            let slices: Vec<RecordBatch> = rows.batches(max).collect::<Result<_>>().unwrap();
            assert_eq!(slices.len(), 1000usize.div_ceil(max), "at most {max} rows");
            assert!(slices.iter().all(|s| s.num_rows() <= max));
            let joined = arrow::compute::concat_batches(&whole.schema(), &slices).unwrap();
            assert_eq!(joined, whole, "at most {max} rows");
        }
        assert_eq!(
            rows.column("start_time").unwrap().unwrap().as_ref(),
            whole.column(0).as_ref()
        );
        assert_eq!(
            rows.column("weekday").unwrap().unwrap().as_ref(),
            whole.column(6).as_ref()
        );
        // A batch held whole is one batch, whatever the size asked; an empty table is none.
        assert_eq!(Rows::Batch(&whole).batches(7).count(), 1);
        let empty = Times::new(Vec::<i64>::new());
        assert_eq!(Rows::Times(&empty).batches(7).count(), 0);
        assert_eq!(Rows::Times(&empty).to_batch().unwrap().num_rows(), 0);
    }

    #[test]
    fn a_spilled_table_is_taken_in_batches_of_at_most_the_rows_asked() {
        let times = Times::new((0..50i64).map(|i| i * 3_600_000).collect::<Vec<_>>());
        let whole = Rows::Times(&times).to_batch().unwrap();
        let mut writer = crate::spill::SpillWriter::create(whole.schema()).unwrap();
        for (at, len) in [(0, 20), (20, 0), (20, 1), (21, 29)] {
            writer.write(&whole.slice(at, len)).unwrap();
        }
        let spilled = writer.finish().unwrap();
        let rows = Rows::Spilled(&spilled);
        assert_eq!(rows.num_rows(), 50);
        for max in [1, 7, 20, 64] {
            let batches: Vec<RecordBatch> = rows.batches(max).map(Result::unwrap).collect();
            assert!(
                batches.iter().all(|b| (1..=max).contains(&b.num_rows())),
                "{max}"
            );
            let joined = arrow::compute::concat_batches(&whole.schema(), &batches).unwrap();
            assert_eq!(joined, whole, "{max}");
        }
        assert_eq!(rows.to_batch().unwrap(), whole);
        assert_eq!(rows.slice(19, 3).unwrap(), whole.slice(19, 3));
        assert_eq!(
            rows.column("weekday").unwrap().unwrap().as_ref(),
            whole.column_by_name("weekday").unwrap().as_ref()
        );
    }
}
