//! Timestamps, in one place: the core keeps `ts` as epoch milliseconds (Arrow
//! `Timestamp(Millisecond)`, UTC, no zone); DuckDB and Parquet store microseconds; SQL text and
//! cross-sink comparisons print `YYYY-MM-DD HH:MM:SS[.fff]`.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::error::ArrowError;
use chrono::{DateTime, NaiveDateTime};

/// Epoch milliseconds as a UTC date and time without zone; `None` out of chrono's range.
pub fn naive(ms: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_millis(ms).map(|t| t.naive_utc())
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM:SS[.fff]`, trailing zeros of the fraction dropped:
/// what PostgreSQL and DuckDB print, and what a SQL `TIMESTAMP '…'` literal reads back exactly.
pub fn text(ms: i64) -> String {
    let Some(t) = naive(ms) else {
        return format!("<{ms} ms>");
    };
    let base = t.format("%Y-%m-%d %H:%M:%S").to_string();
    match ms.rem_euclid(1000) {
        0 => base,
        frac => format!("{base}.{}", format!("{frac:03}").trim_end_matches('0')),
    }
}

/// Epoch microseconds as [`text`] prints milliseconds, with up to six fraction digits.
pub fn text_micros(us: i64) -> String {
    let frac = us.rem_euclid(1_000_000);
    let seconds = text(us.div_euclid(1_000_000) * 1000);
    if frac == 0 {
        return seconds;
    }
    format!("{seconds}.{}", format!("{frac:06}").trim_end_matches('0'))
}

/// Epoch microseconds as ISO 8601 in UTC with all six fraction digits and `Z`
/// (`2018-11-01T21:01:46.796000Z`): the canonical form of `sparkify verify`.
pub fn iso_micros(us: i64) -> String {
    match DateTime::from_timestamp_micros(us) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => format!("<{us} us>"),
    }
}

/// The value at `row` of a timestamp column of any unit, as epoch microseconds (`None` for
/// NULL, another type, or a value out of range).
pub fn micros_at(array: &dyn arrow::array::Array, row: usize) -> Option<i64> {
    use arrow::array::AsArray;
    use arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .checked_mul(1_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .checked_mul(1000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Some(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Some(
            array
                .as_primitive::<TimestampNanosecondType>()
                .value(row)
                .div_euclid(1000),
        ),
        _ => None,
    }
}

/// `batch` with every timestamp column widened to microseconds (DuckDB's `TIMESTAMP`,
/// Parquet's `TIMESTAMP(MICROS)`), every other column shared as it is.
pub fn to_micros(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if matches!(field.data_type(), DataType::Timestamp(..)) {
            fields.push(Field::new(
                field.name(),
                micros.clone(),
                field.is_nullable(),
            ));
            columns.push(cast(column, &micros)?);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use arrow::array::{Array, AsArray, Int32Array, TimestampMillisecondArray};
    use arrow::datatypes::TimestampMicrosecondType;

    #[test]
    fn timestamps_print_like_postgres() {
        assert_eq!(text(1541106106796), "2018-11-01 21:01:46.796");
        assert_eq!(text(1541106106790), "2018-11-01 21:01:46.79");
        assert_eq!(text(1541106106000), "2018-11-01 21:01:46");
        assert_eq!(text_micros(1541106106796120), "2018-11-01 21:01:46.79612");
        assert_eq!(text_micros(1541106106000000), "2018-11-01 21:01:46");
        assert_eq!(iso_micros(1541106106796000), "2018-11-01T21:01:46.796000Z");
        assert_eq!(iso_micros(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn widening_keeps_every_millisecond_and_other_columns() {
        let batch = RecordBatch::try_from_iter([
            (
                "ts",
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(1541106106796),
                    None,
                ])) as ArrayRef,
            ),
            ("n", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef),
        ])
        .unwrap();
        let wide = to_micros(&batch).unwrap();
        let ts = wide.column(0).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1541106106796000);
        assert!(ts.is_null(1));
        assert!(Arc::ptr_eq(wide.column(1), batch.column(1)));
    }
}
