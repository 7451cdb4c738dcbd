//! Running the `sparkify` binary from a test: the binary is the one cargo built for the test
//! (`env!("CARGO_BIN_EXE_sparkify")`, passed in), in a folder, with extra environment.

use std::path::Path;
use std::process::{Command, Output};

/// `bin args…` in `dir`, with `env` added to the environment.
pub fn run(bin: &str, dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .output()
        .expect("the binary runs")
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
