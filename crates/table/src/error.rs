//! The engine's one error type.

use arrow::error::ArrowError;

/// What can go wrong reading, modelling or loading. Bad records are not errors: they are
/// rejects (`Reject` of sparkify-model).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// An input path or pattern names nothing.
    #[error("no input at {0}: no such file or folder, and no file matches it")]
    NoInput(String),
    /// An `s3://` URL without a bucket.
    #[error("bad S3 URL {0:?}: expected s3://bucket/prefix")]
    S3Url(String),
    /// Inputs of one table are partly local, partly in S3.
    #[error("the inputs of a table are all s3:// or all local, not both")]
    MixedInputs,
    /// `s3://` inputs with no way given to list or fetch them.
    #[error("s3:// inputs need an S3 client to list and fetch them")]
    NoRemote,
    /// A glob pattern is malformed.
    #[error("bad pattern {pattern}: {message}")]
    Pattern { pattern: String, message: String },
    /// A schema the reader cannot decode, or a decoder used out of order.
    #[error("schema: {0}")]
    Schema(String),
    /// An input from elsewhere (S3, say) could not be listed or fetched.
    #[error(transparent)]
    Fetch(Box<dyn std::error::Error + Send + Sync>),
    /// The reader's count of records does not match the rows and rejects it returned.
    #[error(
        "reconciliation: read {records} records of {table}, but staged {rows} rows and \
         rejected {rejects}"
    )]
    Unaccounted {
        table: &'static str,
        records: u64,
        rows: u64,
        rejects: u64,
    },
    /// The ledger of loaded files (`etl_files`) is not what a load can use.
    #[error("{0}")]
    Ledger(String),
    /// More rejects than `--max-errors`: the load stops and commits nothing.
    #[error("{rejected} rejects, more than --max-errors {max}; nothing was committed")]
    TooManyRejects { rejected: usize, max: u64 },
    /// `etl --check`: a check failed before COMMIT (`checks::passed` of sparkify-model says
    /// which, with their first keys); nothing was committed.
    #[error("{0}; nothing was committed")]
    ChecksFailed(String),
    /// `--on-new-field fail`: the input holds fields the staging schema lacks; nothing was
    /// committed.
    #[error("new fields in the input: {0}; nothing was committed (--on-new-field fail)")]
    NewFields(String),
    /// Arrow refused to build a batch.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes as a person reads them, each after the one before (`: `). Every
/// error of sparkify's names its own context only and leaves its cause to the chain; a cause
/// whose text the line already holds (a library's error that prints its own cause, as
/// tokio-postgres and DuckDB do) is not said again.
pub fn said_once<'a>(
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> String {
    let mut out = String::new();
    for cause in chain {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// [`said_once`] of `error` and every error under it.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    said_once(std::iter::successors(Some(error), |e| e.source()))
}
