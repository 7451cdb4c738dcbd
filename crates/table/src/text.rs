//! Values as text, the way PostgreSQL and DuckDB print them, so that tables from different
//! sinks (and the in-memory model) can be compared row by row; and numbers with a unit, as
//! flags take them.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};

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
        // PostgreSQL's `t` and `f`.
        DataType::Boolean => match array.as_boolean().value(row) {
            true => "t".to_owned(),
            false => "f".to_owned(),
        },
        DataType::Timestamp(..) => match crate::time::micros_at(array, row) {
            Some(us) => crate::time::text_micros(us),
            None => "<out of range>".to_owned(),
        },
        other => format!("<{other}>"),
    })
}

/// A double as PostgreSQL (12 and later) prints it: the shortest digits that read back to the
/// same double, in positional notation for decimal exponents from -4 to 14 (`0.0001`,
/// `123.5`, `100`), else as `1.5e+15`, `1e-05` (two exponent digits at least); `-0`, `NaN`,
/// `Infinity` and `-Infinity` as such.
pub fn double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` is the shortest round-trip form too: `-1.2345e17`, `1e-5`.
    let scientific = format!("{v:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..15).contains(&exponent) {
        if exponent < 0 {
            let zeros = "0".repeat(exponent.unsigned_abs() as usize - 1);
            return format!("{sign}0.{zeros}{digits}");
        }
        let whole = exponent as usize + 1;
        if digits.len() <= whole {
            return format!("{sign}{digits}{}", "0".repeat(whole - digits.len()));
        }
        return format!("{sign}{}.{}", &digits[..whole], &digits[whole..]);
    }
    let (first, rest) = digits.split_at(1);
    let point = if rest.is_empty() { "" } else { "." };
    let exp_sign = if exponent < 0 { '-' } else { '+' };
    format!(
        "{sign}{first}{point}{rest}e{exp_sign}{:02}",
        exponent.unsigned_abs()
    )
}

/// A number and its unit as a flag takes them (`64MiB`, `26h`): the leading digits and the
/// rest, trimmed; `None` without a leading number.
pub fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    Some((number.parse().ok()?, unit.trim()))
}

/// A query's result, every value as text the way the database prints it (`None` for NULL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl QueryResult {
    /// The rows of a `(name, count)` query (`sql::count_rows` of sparkify-model).
    pub fn counts(&self) -> Vec<(String, u64)> {
        self.rows
            .iter()
            .filter_map(|r| {
                let name = r.first()?.clone()?;
                let n = r.get(1)?.as_deref()?.parse().ok()?;
                Some((name, n))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_postgres() {
        // What PostgreSQL 15 prints for each (`SELECT x::float8::text`).
        for (v, pg) in [
            (213.9424, "213.9424"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.0, "1"),
            (100.0, "100"),
            (1234567.0, "1234567"),
            (123456789012345.6, "123456789012345.6"),
            (1e15, "1e+15"),
            (1.5e15, "1.5e+15"),
            (1234567890123456.7, "1.2345678901234568e+15"),
            (1e16, "1e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e22, "1e+22"),
            (1e-4, "0.0001"),
            (0.00012345, "0.00012345"),
            (1e-5, "1e-05"),
            (4.35e-10, "4.35e-10"),
            (-84.39111, "-84.39111"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (-0.0, "-0"),
            (0.0, "0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(double(v), pg, "{v:e}");
        }
    }
}
