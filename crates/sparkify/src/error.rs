//! The engine's one error type, and the class of failure each error reports.
//!
//! A message names its own context only; what caused it is its [`source`](std::error::Error::source),
//! so a chain printed cause after cause says each thing once. [`Error::class`] tells a
//! program (the `sparkify` binary picks its exit status from it) whether the failure was bad
//! usage, too many rejects, or a source or sink that failed.

use crate::summary::Summary;

/// What can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad usage or configuration, found before anything was loaded.
    #[error("{0}")]
    Usage(String),
    /// Reading the input, the model, or the shared SQL.
    #[error(transparent)]
    Core(#[from] sparkify_core::Error),
    /// Listing or fetching `s3://` input.
    #[error(transparent)]
    S3(#[from] sparkify_s3::Error),
    /// Arrow refused a batch (`verify`'s fingerprints of tables held here).
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// Reading a Parquet lake back (`verify`).
    #[error(transparent)]
    Parquet(#[from] sparkify_parquet::Error),
    /// A sink failed; `context` says what it was asked to do.
    #[error("{context}")]
    Sink {
        /// What the sink was asked to do, and which sink.
        context: String,
        /// The sink's error (boxed: some sinks' errors are large).
        #[source]
        source: Box<SinkError>,
    },
    /// A sink's statements that could not be made (nothing was connected).
    #[error(transparent)]
    Plan(Box<SinkError>),
    /// An answer from a sink that could not be read (a fingerprint `verify` cannot parse).
    #[error("{0}")]
    Unreadable(String),
    /// More rejects than the run allowed; nothing was committed.
    #[error("{rejected} rejected records, more than --max-errors {max}: nothing was committed")]
    TooManyRejects {
        /// The rejects.
        rejected: usize,
        /// The most allowed.
        max: u64,
    },
    /// A load that ran and did not commit: what it did, and why it failed.
    #[error(transparent)]
    NotCommitted(Box<NotCommitted>),
}

/// A sink's own error, one variant a sink crate.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// DuckDB's.
    #[error(transparent)]
    DuckDb(#[from] sparkify_sink_duckdb::Error),
    /// PostgreSQL's or Redshift's.
    #[error(transparent)]
    Warehouse(#[from] sparkify_sink_redshift::Error),
    /// A Parquet lake's.
    #[error(transparent)]
    Parquet(#[from] sparkify_sink_parquet::Error),
}

/// A load that did not commit, with the summary of what it read and rejected: it reads as
/// its cause, which [`Error::summary`] adds the summary to.
#[derive(Debug)]
pub struct NotCommitted {
    /// What the run read, rejected and (not) loaded.
    pub summary: Summary,
    /// Why nothing was committed.
    pub error: Error,
}

impl std::fmt::Display for NotCommitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for NotCommitted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which kind of failure an error is: what the `sparkify` binary's exit status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Bad usage or configuration (exit 2).
    Usage,
    /// More rejects than `--max-errors`; nothing committed (exit 3).
    TooManyRejects,
    /// A source or a sink failed; nothing committed (exit 4).
    Failed,
}

impl Error {
    /// The kind of failure this is.
    pub fn class(&self) -> Class {
        match self {
            Error::Usage(_) => Class::Usage,
            Error::TooManyRejects { .. } => Class::TooManyRejects,
            Error::Core(core) => core_class(core),
            Error::S3(sparkify_s3::Error::Core(core)) => core_class(core),
            Error::S3(_) | Error::Parquet(_) | Error::Arrow(_) | Error::Unreadable(_) => {
                Class::Failed
            }
            Error::Sink { source, .. } | Error::Plan(source) => source.class(),
            Error::NotCommitted(not) => not.error.class(),
        }
    }

    /// The summary of a load that ran and did not commit.
    pub fn summary(&self) -> Option<&Summary> {
        match self {
            Error::NotCommitted(not) => Some(&not.summary),
            _ => None,
        }
    }

    /// `context` for `source`, a sink's error.
    /// The core's error this one is or carries, through a sink's error (a failed check, too
    /// many rejects, a bad input), if any.
    pub fn core(&self) -> Option<&sparkify_core::Error> {
        match self {
            Error::Core(core) | Error::S3(sparkify_s3::Error::Core(core)) => Some(core),
            Error::Sink { source, .. } | Error::Plan(source) => source.core(),
            Error::NotCommitted(not) => not.error.core(),
            _ => None,
        }
    }

    pub(crate) fn sink(context: String, source: impl Into<SinkError>) -> Self {
        Error::Sink {
            context,
            source: Box::new(source.into()),
        }
    }
}

impl SinkError {
    /// The core's error the sink failed with, if that is what it failed with.
    pub fn core(&self) -> Option<&sparkify_core::Error> {
        use sparkify_sink_duckdb::Error as DuckDb;
        use sparkify_sink_parquet::Error as Parquet;
        use sparkify_sink_redshift::Error as Warehouse;
        match self {
            SinkError::DuckDb(DuckDb::Core(c))
            | SinkError::Warehouse(Warehouse::Core(c))
            | SinkError::Parquet(Parquet::Core(c)) => Some(c),
            _ => None,
        }
    }

    /// A sink's configuration mistakes and refusals are usage; the core's errors it passes
    /// on are classed as the core's; anything else is a failed sink.
    pub fn class(&self) -> Class {
        use sparkify_sink_parquet::Error as Parquet;
        use sparkify_sink_redshift::Error as Warehouse;
        if let Some(core) = self.core() {
            return core_class(core);
        }
        match self {
            SinkError::Warehouse(Warehouse::CopyRejected { .. }) => Class::TooManyRejects,
            SinkError::Warehouse(Warehouse::Config(_) | Warehouse::Dialect(_))
            | SinkError::Parquet(Parquet::NoSql(_) | Parquet::Incremental) => Class::Usage,
            _ => Class::Failed,
        }
    }
}

/// Input that cannot be named or found is usage; anything else the core reports failed.
fn core_class(core: &sparkify_core::Error) -> Class {
    use sparkify_core::Error as Core;
    match core {
        Core::TooManyRejects { .. } => Class::TooManyRejects,
        Core::NoInput(_)
        | Core::Pattern { .. }
        | Core::S3Url(_)
        | Core::MixedInputs
        | Core::NewFields(_) => Class::Usage,
        _ => Class::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_that_skipped_too_many_records_is_too_many_rejects() {
        let rejected = sparkify_sink_redshift::Error::CopyRejected {
            table: "staging_events".into(),
            rejected: 3,
            max: 2,
            details: "  a.json:1: column ts: bad".into(),
        };
        assert_eq!(
            Error::sink("loading redshift".into(), rejected).class(),
            Class::TooManyRejects
        );
        let failed = sparkify_sink_redshift::Error::CopyS3 {
            table: "staging_events".into(),
            reason: "S3 access denied".into(),
            details: "  no rows in the load-error table for this COPY".into(),
        };
        assert_eq!(
            Error::sink("loading redshift".into(), failed).class(),
            Class::Failed
        );
    }
}
