//! What a run tells while it goes: typed [`Event`]s, handed to the observer given with
//! [`Etl::on_event`](crate::Etl::on_event) from whichever thread they happen on. The
//! `sparkify` binary draws them as progress bars; a program can log or count them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A step of a run (as JSON, its name: `discover`, `ledger`, `load`, `read`, or the sink's
/// words). A load goes through [`Phase::Discover`], then [`Phase::Ledger`] (only
/// `--incremental`), then [`Phase::Load`] (reading and loading go together), then the steps
/// the sink names after the last input byte ([`Phase::Sink`]: building the star schema,
/// checking and committing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Finding the input files (walking folders, listing `s3://` prefixes).
    Discover,
    /// Reading the sink's ledger of loaded files, to load only what is new or changed.
    Ledger,
    /// Reading the input and loading it into the sink as it is decoded.
    Load,
    /// A step after the last input byte, in the sink's words (e.g. "checking keys and
    /// committing").
    Sink(String),
    /// Reading the input whole into memory (`verify` against the source).
    Read,
}

impl Phase {
    /// Its name in a log: `discover`, `ledger`, `load`, `read`, or the sink's words.
    pub fn name(&self) -> &str {
        match self {
            Phase::Discover => "discover",
            Phase::Ledger => "ledger",
            Phase::Load => "load",
            Phase::Sink(step) => step,
            Phase::Read => "read",
        }
    }
}

impl serde::Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Discover => "finding the input files",
            Phase::Ledger => "reading the ledger of loaded files",
            Phase::Load => "reading and loading",
            Phase::Sink(step) => step,
            Phase::Read => "reading",
        })
    }
}

/// Something a run did. As JSON (`sparkify etl --log-format json`), one object with its
/// kind under `event` (`started`, `finished`, `listed`, …) and its fields beside it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A phase began.
    Started {
        /// The phase.
        phase: Phase,
    },
    /// A phase ended, after `elapsed`.
    Finished {
        /// The phase.
        phase: Phase,
        /// How long it took (in JSON, `seconds`).
        #[serde(rename = "seconds", serialize_with = "seconds")]
        elapsed: Duration,
    },
    /// An `s3://` listing: the objects under `under` that one option names.
    Listed {
        /// `--songs` or `--events`.
        what: &'static str,
        /// Objects found.
        objects: usize,
        /// Their bytes.
        bytes: u64,
        /// The prefixes listed.
        under: Vec<String>,
    },
    /// `--incremental` into a sink with no ledger yet: the load is a full one.
    NoLedger {
        /// The sink.
        sink: String,
    },
    /// A file loaded before that is no longer in the input.
    Vanished {
        /// Its path or `s3://` URL.
        path: String,
        /// The rows it staged when it was loaded.
        rows_staged: u64,
        /// Its rejects then.
        rejects: u64,
        /// Whether its rows are removed (`--prune`).
        pruned: bool,
    },
    /// The bytes the run will read, before it reads them.
    ToRead {
        /// Their size, as stored.
        bytes: u64,
    },
    /// A file read.
    Read {
        /// Its size, as stored.
        bytes: u64,
    },
    /// The run is over: records read, and rejected.
    Done {
        /// Input records read.
        records: u64,
        /// Of them, rejected.
        rejected: usize,
    },
}

/// A duration as seconds.
fn seconds<S: serde::Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(d.as_secs_f64())
}

/// The observer of a run's events.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// Tells the observer, and keeps the phase under way so that starting one finishes it.
#[derive(Clone)]
pub(crate) struct Tell {
    observer: Option<Observer>,
    current: Arc<Mutex<Option<(Phase, Instant)>>>,
}

impl Tell {
    pub(crate) fn new(observer: Option<Observer>) -> Self {
        Tell {
            observer,
            current: Arc::default(),
        }
    }

    pub(crate) fn event(&self, event: Event) {
        if let Some(observer) = &self.observer {
            observer(&event);
        }
    }

    /// Finishes the phase under way, if any, and starts `phase`.
    pub(crate) fn start(&self, phase: Phase) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        self.finish_held(&mut current);
        self.event(Event::Started {
            phase: phase.clone(),
        });
        *current = Some((phase, Instant::now()));
    }

    /// Finishes the phase under way, if any.
    pub(crate) fn finish(&self) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        self.finish_held(&mut current);
    }

    /// Tells that the phase `current` holds, if any, has finished; the caller holds the lock,
    /// so a phase started meanwhile on another thread cannot come between.
    fn finish_held(&self, current: &mut Option<(Phase, Instant)>) {
        if let Some((done, since)) = current.take() {
            self.event(Event::Finished {
                phase: done,
                elapsed: since.elapsed(),
            });
        }
    }

    /// A callback that counts each file read.
    pub(crate) fn on_file(&self) -> Arc<dyn Fn(u64) + Send + Sync> {
        let tell = self.clone();
        Arc::new(move |bytes| tell.event(Event::Read { bytes }))
    }

    /// A callback for the steps a sink names.
    pub(crate) fn on_phase(&self) -> sparkify_core::pipeline::OnPhase {
        let tell = self.clone();
        Arc::new(move |step: &str| tell.start(Phase::Sink(step.to_owned())))
    }
}

impl std::fmt::Debug for Tell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tell")
            .field("observed", &self.observer.is_some())
            .finish()
    }
}
