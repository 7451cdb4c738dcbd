//! `COPY … FORMAT AS PARQUET`: the file's columns by position, as many as the table's
//! ("COPY from columnar data formats": "The number of columns in the target table and the
//! number of columns in the data file must match"); any error fails the whole COPY.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::copy::{ColType, Column, Decoded, copy_text};

/// The rows of one Parquet file, as `COPY` text lines for `columns`.
pub fn decode(file: &str, data: Vec<u8>, columns: &[Column]) -> Result<Decoded, String> {
    let fail = |e: String| format!("Spectrum Scan Error: file {file}: {e}");
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(data))
        .map_err(|e| fail(e.to_string()))?
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut out = Decoded::default();
    for batch in reader {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        if batch.num_columns() != columns.len() {
            return Err(fail(format!(
                "the file has {} columns and the table (or column list) {}: they must match",
                batch.num_columns(),
                columns.len()
            )));
        }
        let mut texts: Vec<Vec<String>> = Vec::with_capacity(columns.len());
        for (column, array) in columns.iter().zip(batch.columns()) {
            texts.push(column_text(column, array.as_ref()).map_err(fail)?);
        }
        for row in 0..batch.num_rows() {
            let line: Vec<&str> = texts.iter().map(|c| c[row].as_str()).collect();
            out.lines.extend_from_slice(line.join("\t").as_bytes());
            out.lines.push(b'\n');
            out.rows += 1;
        }
    }
    Ok(out)
}

/// A column's values as `COPY` text; a type the column cannot take is an error.
fn column_text(column: &Column, array: &dyn Array) -> Result<Vec<String>, String> {
    let incompatible = || {
        format!(
            "incompatible Parquet schema for column '{}': column type {}, Parquet type {}",
            column.name,
            column.ty.name(),
            array.data_type()
        )
    };
    let n = array.len();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if array.is_null(i) {
            if column.not_null {
                return Err(format!(
                    "column '{}' is NOT NULL and the file has a null",
                    column.name
                ));
            }
            out.push(copy_text(None));
            continue;
        }
        let text = match (&column.ty, array.data_type()) {
            (ColType::Varchar(w) | ColType::Char(w), DataType::Utf8) => {
                let s = array.as_string::<i32>().value(i);
                if s.len() > *w as usize {
                    return Err(format!(
                        "String length exceeds DDL length: column '{}', {} bytes, VARCHAR({w})",
                        column.name,
                        s.len()
                    ));
                }
                copy_text(Some(s))
            }
            (ColType::SmallInt | ColType::Integer | ColType::BigInt, t) => {
                let v: i64 = match t {
                    DataType::Int8 => array.as_primitive::<Int8Type>().value(i).into(),
                    DataType::Int16 => array.as_primitive::<Int16Type>().value(i).into(),
                    DataType::Int32 => array.as_primitive::<Int32Type>().value(i).into(),
                    DataType::Int64 => array.as_primitive::<Int64Type>().value(i),
                    _ => return Err(incompatible()),
                };
                let fits = match column.ty {
                    ColType::SmallInt => i16::try_from(v).is_ok(),
                    ColType::Integer => i32::try_from(v).is_ok(),
                    _ => true,
                };
                if !fits {
                    return Err(format!(
                        "Integer value overflow in column '{}': {v}",
                        column.name
                    ));
                }
                v.to_string()
            }
            (ColType::Real | ColType::Double | ColType::Numeric, DataType::Float64) => {
                array.as_primitive::<Float64Type>().value(i).to_string()
            }
            (ColType::Real | ColType::Double | ColType::Numeric, DataType::Float32) => {
                array.as_primitive::<Float32Type>().value(i).to_string()
            }
            (ColType::Boolean, DataType::Boolean) => array.as_boolean().value(i).to_string(),
            (ColType::Timestamp | ColType::TimestampTz, DataType::Timestamp(unit, _)) => {
                let micros = match unit {
                    TimeUnit::Second => array
                        .as_primitive::<TimestampSecondType>()
                        .value(i)
                        .saturating_mul(1_000_000),
                    TimeUnit::Millisecond => array
                        .as_primitive::<TimestampMillisecondType>()
                        .value(i)
                        .saturating_mul(1_000),
                    TimeUnit::Microsecond => {
                        array.as_primitive::<TimestampMicrosecondType>().value(i)
                    }
                    TimeUnit::Nanosecond => {
                        array.as_primitive::<TimestampNanosecondType>().value(i) / 1_000
                    }
                };
                chrono::DateTime::from_timestamp_micros(micros)
                    .map(|d| d.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string())
                    .ok_or_else(incompatible)?
            }
            _ => return Err(incompatible()),
        };
        out.push(text);
    }
    Ok(out)
}
