//! The engine's events as a person sees them on a terminal: a spinner while the input is
//! found, a bar of the bytes read while reading and loading go together, then a spinner for
//! each step the sink names. What a person must know (an S3 listing, a file that vanished,
//! a full load where an incremental one was asked for) goes to stderr terminal or not.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sparkify::{Event, Phase};

/// Draws a run's events; bars only when stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    terminal: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress {
    /// The observer to hand the engine: bars and lines of text, or with `--log-format json`
    /// each event as a JSON object on a line (but the files read one by one: the bytes to
    /// read, the phases' durations and the summary say what they add up to).
    pub fn observer() -> impl Fn(&Event) + Send + Sync + 'static {
        let json = crate::log::json();
        let progress = Arc::new(Progress {
            terminal: std::io::stderr().is_terminal() && !json,
            bar: Mutex::new(None),
        });
        move |event: &Event| match json {
            true => {
                if !matches!(event, Event::Read { .. }) {
                    crate::log::line(&serde_json::to_string(event).unwrap_or_default());
                }
            }
            false => progress.show(event),
        }
    }

    fn show(&self, event: &Event) {
        done_waiting();
        let mut bar = self.bar.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Started { phase } => {
                if let Some(done) = bar.take() {
                    done.finish_and_clear();
                }
                *bar = Some(self.spinner(phase));
            }
            Event::Finished { .. } => {
                if let Some(done) = bar.take() {
                    done.finish_and_clear();
                }
            }
            Event::ToRead { bytes: total } => {
                if let Some(bar) = bar.as_ref().filter(|b| !b.is_hidden()) {
                    bar.set_length(*total);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {msg} {bytes}/{total_bytes} ({bytes_per_sec}) {wide_bar}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                }
            }
            Event::Read { bytes: n } => {
                if let Some(bar) = bar.as_ref() {
                    bar.inc(*n);
                }
            }
            Event::Listed {
                what,
                objects,
                bytes,
                under,
            } => say(
                bar.as_ref(),
                &format!(
                    "{what}: listed {objects} objects ({bytes} bytes) under {}",
                    under.join(" ")
                ),
            ),
            Event::NoLedger { sink } => say(
                bar.as_ref(),
                &format!(
                    "--incremental: {sink} holds no etl_files yet, so this load is a full one"
                ),
            ),
            Event::Vanished {
                path,
                rows_staged,
                rejects,
                pruned,
            } => {
                let fate = match pruned {
                    true => "its rows are removed (--prune)",
                    false => "its rows stay (--prune removes them)",
                };
                say(
                    bar.as_ref(),
                    &format!(
                        "vanished: {path} ({rows_staged} rows, {rejects} rejects loaded before) \
                         is no longer in the input; {fate}"
                    ),
                );
            }
            _ => {}
        }
    }

    /// A spinner saying what the run does, with the time it has taken.
    fn spinner(&self, phase: &Phase) -> ProgressBar {
        if !self.terminal {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(phase.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

/// The spinner of a wait for another process, until the next thing the run shows.
static WAITING: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// What a person hears when a command must wait for another process's hold on a DuckDB file:
/// at once, who holds it and since when, then a spinner on a terminal until the wait ends
/// ([`done_waiting`]); with `--log-format json`, a `waiting` event.
pub fn on_wait() -> sparkify::sink::OnWait {
    sparkify::sink::OnWait(Arc::new(|w: &sparkify::sink::Waiting| {
        let since = w.since.map(|t| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        });
        if crate::log::json() {
            crate::log::event(
                "waiting",
                serde_json::json!({
                    "sink": w.sink,
                    "reason": w.reason,
                    "holder": w.holder.trim().trim_start_matches('(').trim_end_matches(')'),
                    "since": since,
                    "timeout_seconds": w.timeout.as_secs(),
                }),
            );
            return;
        }
        let since = since.map_or_else(String::new, |s| format!(" since {s}"));
        let line = format!(
            "waiting for {}: {}{}{since}; waiting up to {} s (--lock-timeout)",
            w.sink,
            w.reason,
            w.holder,
            w.timeout.as_secs()
        );
        crate::log::line(&line);
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let template = format!("{{spinner}} waiting for {} ({{elapsed}})", w.waiting_for);
            bar.set_style(
                ProgressStyle::with_template(&template)
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            *WAITING.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar);
        }
    }))
}

/// Ends the spinner of a wait, if one turns.
pub fn done_waiting() {
    if let Some(bar) = WAITING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        bar.finish_and_clear();
    }
}

/// A line on stderr, above the bar if one is drawn.
fn say(bar: Option<&ProgressBar>, line: &str) {
    match bar {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}
