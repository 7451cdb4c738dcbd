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
    Bool(Option<bool>),
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
            Value::Bool(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::TEXT,
            Type::INT4,
            Type::INT8,
            Type::FLOAT8,
            Type::TIMESTAMP,
            Type::BOOL,
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
        SqlType::Boolean => Type::BOOL,
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
        SqlType::Boolean => Value::Bool(valid.then(|| a.as_boolean().value(row))),
    }
}

/// An error of `statement`, for `map_err`.
pub(crate) fn sql_error(statement: &str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let statement = statement.to_owned();
    move |source| Error::Sql { statement, source }
}

/// One `COPY … FROM STDIN` into a table, fed batch by batch; [`CopyIn::finish`] checks the
/// server took every row sent.
pub(crate) struct CopyIn {
    table: &'static TableDef,
    sql: String,
    writer: std::pin::Pin<Box<BinaryCopyInWriter>>,
    rows: u64,
}

impl CopyIn {
    pub(crate) async fn start(client: &Client, table: &'static TableDef) -> Result<Self> {
        let sql = copy_in_sql(table);
        let sink = client.copy_in(&sql).await.map_err(sql_error(&sql))?;
        let pg_types: Vec<Type> = table.columns.iter().map(|c| pg_type(c.ty)).collect();
        Ok(CopyIn {
            table,
            writer: Box::pin(BinaryCopyInWriter::new(sink, &pg_types)),
            sql,
            rows: 0,
        })
    }

    /// Sends `batch`'s rows (a batch of the table).
    pub(crate) async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        for row in 0..batch.num_rows() {
            let values: Vec<Value<'_>> = self
                .table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| value(batch, i, c.ty, row))
                .collect();
            let refs: Vec<&(dyn ToSql + Sync)> =
                values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            // The statement's text is copied only when a row fails, not for every row.
            let sql = &self.sql;
            self.writer
                .as_mut()
                .write(&refs)
                .await
                .map_err(|e| sql_error(sql)(e))?;
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Ends the COPY.
    pub(crate) async fn finish(mut self) -> Result<()> {
        let n = self
            .writer
            .as_mut()
            .finish()
            .await
            .map_err(sql_error(&self.sql))?;
        if n != self.rows {
            return Err(Error::CopyCount {
                table: self.table.name.to_owned(),
                expected: self.rows,
                got: n,
            });
        }
        Ok(())
    }
}
