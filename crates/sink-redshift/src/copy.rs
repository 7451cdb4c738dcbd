//! `COPY … FROM STDIN (FORMAT binary)` of an Arrow batch: no text escaping to get wrong, and
//! numbers and timestamps travel exactly.

use std::error::Error as StdError;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use bytes::BytesMut;
use chrono::NaiveDateTime;
use sparkify_core::table::{SqlType, TableDef};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::plan::copy_in_sql;
use crate::{Error, Result};

/// One value of a row, typed as its column.
#[derive(Debug)]
enum Value<'a> {
    Text(Option<&'a str>),
    Int(Option<i32>),
    BigInt(Option<i64>),
    Double(Option<f64>),
    Timestamp(Option<NaiveDateTime>),
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Text(v) => v.to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::BigInt(v) => v.to_sql(ty, out),
            Value::Double(v) => v.to_sql(ty, out),
            Value::Timestamp(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::TEXT,
            Type::INT4,
            Type::INT8,
            Type::FLOAT8,
            Type::TIMESTAMP,
        ]
        .contains(ty)
    }

    to_sql_checked!();
}

fn pg_type(ty: SqlType) -> Type {
    match ty {
        SqlType::Text => Type::TEXT,
        SqlType::Integer => Type::INT4,
        SqlType::BigInt => Type::INT8,
        SqlType::Double => Type::FLOAT8,
        SqlType::Timestamp => Type::TIMESTAMP,
    }
}

fn value<'a>(batch: &'a RecordBatch, col: usize, ty: SqlType, row: usize) -> Value<'a> {
    let a = batch.column(col);
    let valid = a.is_valid(row);
    match ty {
        SqlType::Text => Value::Text(valid.then(|| a.as_string::<i32>().value(row))),
        SqlType::Integer => Value::Int(valid.then(|| a.as_primitive::<Int32Type>().value(row))),
        SqlType::BigInt => Value::BigInt(valid.then(|| a.as_primitive::<Int64Type>().value(row))),
        SqlType::Double => Value::Double(valid.then(|| a.as_primitive::<Float64Type>().value(row))),
        SqlType::Timestamp => Value::Timestamp(
            valid
                .then(|| a.as_primitive::<TimestampMillisecondType>().value(row))
                .and_then(sparkify_core::time::naive),
        ),
    }
}

/// Streams `batch` into `table`, checking the server took every row.
pub(crate) async fn copy_in(client: &Client, table: &TableDef, batch: &RecordBatch) -> Result<()> {
    let sql = copy_in_sql(table);
    let err = |source| Error::Sql {
        statement: sql.clone(),
        source,
    };
    let sink = client.copy_in(&sql).await.map_err(err)?;
    let types: Vec<Type> = table.columns.iter().map(|c| pg_type(c.ty)).collect();
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for row in 0..batch.num_rows() {
        let values: Vec<Value<'_>> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| value(batch, i, c.ty, row))
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        writer.as_mut().write(&refs).await.map_err(err)?;
    }
    let n = writer.finish().await.map_err(err)?;
    if n != batch.num_rows() as u64 {
        return Err(Error::CopyCount {
            table: table.name.to_owned(),
            expected: batch.num_rows() as u64,
            got: n,
        });
    }
    Ok(())
}
