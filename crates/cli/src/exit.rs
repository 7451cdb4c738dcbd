//! Exit status: the one mapping from errors to codes, applied only in `main`.
//!
//! 0 loaded (or, for `verify`, every copy agrees; for `cluster status`, it is available); 1
//! `verify` found a difference, or the cluster is not available; 2 bad usage or configuration; 3 more rejects than `--max-errors` (nothing
//! committed); 4 a source or sink failed (nothing committed).

use std::process::ExitCode;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success = 0,
    Differs = 1,
    Usage = 2,
    TooManyRejects = 3,
    Failed = 4,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status as u8)
    }
}

/// The CLI's own errors: the ones no library reports.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad usage or configuration that clap cannot see.
    #[error("{0}")]
    Usage(String),
    /// More rejects than `--max-errors`; nothing was committed.
    #[error("{rejected} rejected records, more than --max-errors {max}: nothing was committed")]
    TooManyRejects { rejected: usize, max: u64 },
    /// `sparkify verify`: copies of the tables disagree; `cluster status`: not available.
    #[error("{0}")]
    Differs(String),
}

/// What `main` prints after `error: `: each cause of `error` after the one before, as
/// `{error:#}` would, but a cause the message already ends with is not said twice (an I/O
/// error whose text names its reason and also gives it as its source).
pub fn message(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The status `error` ends the process with: usage and configuration mistakes are 2,
/// too many rejects 3, and anything else (a source or a sink failed) 4.
pub fn status_of(error: &anyhow::Error) -> ExitStatus {
    use sparkify_core::Error as Core;
    use sparkify_sink_parquet::Error as Parquet;
    use sparkify_sink_redshift::Error as Warehouse;
    for cause in error.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return match f {
                Failure::Usage(_) => ExitStatus::Usage,
                Failure::TooManyRejects { .. } => ExitStatus::TooManyRejects,
                Failure::Differs(_) => ExitStatus::Differs,
            };
        }
        let core = core_of(cause);
        if let Some(Core::TooManyRejects { .. }) = core {
            return ExitStatus::TooManyRejects;
        }
        let usage = matches!(
            core,
            Some(Core::NoInput(_) | Core::Pattern { .. } | Core::S3Url(_) | Core::MixedInputs)
        ) || matches!(
            cause.downcast_ref::<Warehouse>(),
            Some(Warehouse::Config(_) | Warehouse::Dialect(_))
        ) || matches!(
            cause.downcast_ref::<Parquet>(),
            Some(Parquet::NoSql(_) | Parquet::Incremental)
        ) || matches!(
            cause.downcast_ref::<sparkify_cluster::Error>(),
            Some(sparkify_cluster::Error::Config(_) | sparkify_cluster::Error::NoDefaultVpc)
        );
        if usage {
            return ExitStatus::Usage;
        }
    }
    ExitStatus::Failed
}

/// The core's error `cause` is, or wraps: the sinks pass it on transparently, so the chain
/// never shows it on its own.
fn core_of<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a sparkify_core::Error> {
    use sparkify_sink_duckdb::Error as DuckDb;
    use sparkify_sink_parquet::Error as Parquet;
    use sparkify_sink_redshift::Error as Warehouse;
    if let Some(core) = cause.downcast_ref::<sparkify_core::Error>() {
        return Some(core);
    }
    match (
        cause.downcast_ref::<DuckDb>(),
        cause.downcast_ref::<Warehouse>(),
        cause.downcast_ref::<Parquet>(),
    ) {
        (Some(DuckDb::Core(c)), ..)
        | (_, Some(Warehouse::Core(c)), _)
        | (.., Some(Parquet::Core(c))) => Some(c),
        _ => None,
    }
}

/// A line of advice for a failure a person can fix, after the error itself: a full disk,
/// named by the OS error (`ENOSPC`) or by a database that reports it in its own words.
pub fn hint(error: &anyhow::Error) -> Option<&'static str> {
    let full = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull)
            || cause.to_string().contains("No space left on device")
    });
    full.then_some(
        "the disk is full. Nothing was committed: the previous tables are as they were. \
         Free some space (or load somewhere else) and run again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_message_already_gives_is_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let core = sparkify_core::Error::Io {
            path: "a temporary file in /nowhere".into(),
            source: io(),
        };
        let error = anyhow::Error::from(core).context("loading duckdb:x.duckdb");
        assert_eq!(
            message(&error),
            "loading duckdb:x.duckdb: a temporary file in /nowhere: no such file"
        );
        let error = anyhow::Error::from(io()).context("reading a.json");
        assert_eq!(message(&error), format!("{error:#}"));
    }
}
