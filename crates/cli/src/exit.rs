//! Exit status: the one mapping from errors to codes, applied only in `main`.
//!
//! 0 loaded (or, for `verify`, every copy agrees; for `cluster status`, it is available; for
//! `check`, every check passed); 1 `verify` found a difference, the cluster is not
//! available, or a check failed; 2 bad usage or configuration; 3 more rejects than `--max-errors` (nothing
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
    /// `sparkify verify`: copies of the tables disagree; `cluster status`: not available;
    /// `sparkify check`: a check failed.
    #[error("{0}")]
    Differs(String),
}

/// What `main` prints after `error: `: each cause of `error` after the one before, said
/// once ([`sparkify_core::error::said_once`]).
pub fn message(error: &anyhow::Error) -> String {
    sparkify_core::error::said_once(error.chain())
}

/// The status `error` ends the process with: the class the error reports of itself
/// ([`sparkify::Error::class`]) for the engine's errors; usage and configuration mistakes
/// are 2, too many rejects 3, and anything else (a source or a sink failed) 4.
pub fn status_of(error: &anyhow::Error) -> ExitStatus {
    for cause in error.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return match f {
                Failure::Usage(_) => ExitStatus::Usage,
                Failure::Differs(_) => ExitStatus::Differs,
            };
        }
        if let Some(e) = cause.downcast_ref::<sparkify::Error>() {
            return match e.class() {
                sparkify::Class::Usage => ExitStatus::Usage,
                sparkify::Class::TooManyRejects => ExitStatus::TooManyRejects,
                sparkify::Class::Failed => ExitStatus::Failed,
            };
        }
        if matches!(
            cause.downcast_ref::<sparkify_cluster::Error>(),
            Some(sparkify_cluster::Error::Config(_) | sparkify_cluster::Error::NoDefaultVpc)
        ) {
            return ExitStatus::Usage;
        }
    }
    ExitStatus::Failed
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
        // A library's error that prints its cause in the middle of its own message.
        #[derive(Debug, thiserror::Error)]
        #[error("COPY failed: {source}\n  a.json:3: bad")]
        struct Says {
            source: std::io::Error,
        }
        let error = anyhow::Error::from(Says { source: io() }).context("loading redshift");
        assert_eq!(
            message(&error),
            "loading redshift: COPY failed: no such file\n  a.json:3: bad"
        );
    }

    #[test]
    fn the_engine_errors_report_their_own_exit_class() {
        let usage = sparkify::Error::Usage("--threads: no".into());
        assert_eq!(status_of(&usage.into()), ExitStatus::Usage);
        let rejects = sparkify::Error::TooManyRejects {
            rejected: 3,
            max: 1,
        };
        let error = anyhow::Error::from(rejects).context("a load");
        assert_eq!(status_of(&error), ExitStatus::TooManyRejects);
        let failed = sparkify::Error::Core(sparkify_core::Error::Ledger("bad".into()));
        assert_eq!(status_of(&failed.into()), ExitStatus::Failed);
        let no_input = sparkify::Error::Core(sparkify_core::Error::NoInput("x".into()));
        assert_eq!(status_of(&no_input.into()), ExitStatus::Usage);
    }
}
