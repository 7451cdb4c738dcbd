//! Values as text, the way PostgreSQL and DuckDB print them, so that tables from different
//! sinks (and the in-memory model) can be compared row by row.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMillisecondType,
};

/// Every row of `batch` as text; `None` for NULL.
pub fn rows(batch: &RecordBatch) -> Vec<Vec<Option<String>>> {
    (0..batch.num_rows())
        .map(|row| {
            batch
                .columns()
                .iter()
                .map(|c| value(c.as_ref(), row))
                .collect()
        })
        .collect()
}

/// One value as text: integers in decimal, doubles in their shortest exact form, timestamps
/// as `YYYY-MM-DD HH:MM:SS[.fff]` with trailing zeros of the fraction dropped.
pub fn value(array: &dyn Array, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).to_owned(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Float64 => double(array.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(TimeUnit::Millisecond, None) => {
            crate::time::text(array.as_primitive::<TimestampMillisecondType>().value(row))
        }
        other => format!("<{other}>"),
    })
}

/// A double as PostgreSQL prints it (shortest text that reads back exactly).
pub fn double(v: f64) -> String {
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_postgres() {
        assert_eq!(double(213.9424), "213.9424");
    }
}
