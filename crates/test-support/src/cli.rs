//! Running the `sparkify` binary from a test: the binary is the one cargo built for the test
//! (`env!("CARGO_BIN_EXE_sparkify")`, passed in), in a folder, with extra environment. Every
//! run's `error:` message is checked to say each thing once ([`assert_said_once`]), so every
//! failure case of the end-to-end tests checks it.

use std::path::Path;
use std::process::{Command, Output};

/// `bin args…` in `dir`, with `env` added to the environment.
pub fn run(bin: &str, dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let out = Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .output()
        .expect("the binary runs");
    assert_said_once(&String::from_utf8_lossy(&out.stderr));
    out
}

/// Panics when the `error:` message in `stderr` says a clause twice: its context and each
/// cause after it (`: `) are each said once, never a cause repeated by the message above it.
pub fn assert_said_once(stderr: &str) {
    let Some(at) = stderr
        .match_indices("error: ")
        .find(|(i, _)| *i == 0 || stderr[..*i].ends_with('\n'))
        .map(|(i, _)| i)
    else {
        return;
    };
    let message = &stderr[at + "error: ".len()..];
    // The message ends where its hint begins.
    let message = message.split("\nhint: ").next().unwrap_or(message);
    let clauses: Vec<&str> = message
        .split(": ")
        .map(str::trim)
        .filter(|c| c.len() >= 8)
        .collect();
    for (i, clause) in clauses.iter().enumerate() {
        assert!(
            !clauses[..i].contains(clause),
            "the error says {clause:?} twice:\n{message}"
        );
    }
}

/// Checks the summary at `path` against the documented shape (docs/summary.schema.json),
/// with the `jsonschema` Python package (scripts/test.sh installs it).
pub fn assert_summary_valid(path: &Path) {
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(schema)\n\
        jsonschema.validate(json.load(open(sys.argv[2])), schema, \
        cls=jsonschema.Draft202012Validator)\n";
    let out = Command::new(std::env::var("SPARKIFY_PYTHON").unwrap_or_else(|_| "python3".into()))
        .args(["-c", script])
        .arg(crate::fixtures::repo().join("docs/summary.schema.json"))
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} against its schema: {}",
        path.display(),
        text(&out)
    );
}

/// `etl` of `songs` and `events` into `sink`, with `extra` flags: the arguments.
pub fn etl_args<'a>(
    songs: &'a Path,
    events: &'a Path,
    sink: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let text = |p: &'a Path| p.to_str().expect("a path in UTF-8");
    let mut args = vec![
        "etl",
        "--songs",
        text(songs),
        "--events",
        text(events),
        "--sink",
        sink,
    ];
    args.extend_from_slice(extra);
    args
}

/// The exit status, stdout and stderr, for an assertion message.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `bin sql QUERY --sink SINK --format csv` in `dir` with `env`: the rows, as CSV lines
/// without the header; a failure panics with what the command said.
pub fn sql_rows(
    bin: &str,
    dir: &Path,
    sink: &str,
    query: &str,
    env: &[(&str, String)],
) -> Vec<String> {
    let out = run(
        bin,
        dir,
        &["sql", query, "--sink", sink, "--format", "csv"],
        env,
    );
    assert_eq!(out.status.code(), Some(0), "{query}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "twice")]
    fn a_repeated_cause_is_caught() {
        assert_said_once(
            "reject: a.json:2\nerror: reading a.json: No such file or directory (os error 2): \
             No such file or directory (os error 2)\n",
        );
    }

    #[test]
    fn a_message_that_says_each_thing_once_passes() {
        assert_said_once(
            "error: loading duckdb:x.duckdb: a.json: No such file or directory (os error 2)\n\
             hint: the disk is full. Nothing was committed: nothing was committed\n",
        );
        assert_said_once("no error here: none: none\n");
    }
}
