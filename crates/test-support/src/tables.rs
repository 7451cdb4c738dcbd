//! Tables compared as text, after DataFusion's `assert_batches_eq!`: a failing test shows
//! both tables, ready to paste.

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;

/// `batch` as an aligned text table.
pub fn pretty(batch: &RecordBatch) -> String {
    pretty_format_batches(std::slice::from_ref(batch))
        .map(|t| t.to_string())
        .unwrap_or_else(|e| format!("<cannot print: {e}>"))
}

/// Rows as text, as `sparkify_core::text::rows` gives them, printed as a table under
/// `columns` for a failure message.
pub fn pretty_rows(columns: &[&str], rows: &[Vec<Option<String>>]) -> String {
    let mut table = comfy_table::Table::new();
    table.set_header(columns.to_vec());
    for row in rows {
        table.add_row(row.iter().map(|v| v.as_deref().unwrap_or("NULL")));
    }
    table.to_string()
}

/// Asserts that two record batches, or two lists of text rows under column names, are equal;
/// on a mismatch it prints both as tables.
///
/// ```ignore
/// assert_tables_eq!(got_batch, want_batch, "dm_users");
/// assert_tables_eq!(columns = ["user_id", "level"]; got_rows, want_rows, "dm_users");
/// ```
#[macro_export]
macro_rules! assert_tables_eq {
    (columns = $cols:expr; $got:expr, $want:expr) => {
        $crate::assert_tables_eq!(columns = $cols; $got, $want, "")
    };
    (columns = $cols:expr; $got:expr, $want:expr, $($what:tt)+) => {{
        let (got, want) = (&$got, &$want);
        if got != want {
            let columns: &[&str] = &$cols;
            panic!(
                "tables differ: {}\n--- got ({} rows)\n{}\n--- want ({} rows)\n{}",
                format!($($what)+),
                got.len(),
                $crate::tables::pretty_rows(columns, got),
                want.len(),
                $crate::tables::pretty_rows(columns, want),
            );
        }
    }};
    ($got:expr, $want:expr) => {
        $crate::assert_tables_eq!($got, $want, "")
    };
    ($got:expr, $want:expr, $($what:tt)+) => {{
        let (got, want) = (&$got, &$want);
        if got != want {
            panic!(
                "tables differ: {}\n--- got ({} rows)\n{}\n--- want ({} rows)\n{}",
                format!($($what)+),
                got.num_rows(),
                $crate::tables::pretty(got),
                want.num_rows(),
                $crate::tables::pretty(want),
            );
        }
    }};
}
