//! `sparkify run`: the whole job offline, the bundled real data into a sink.

use std::path::PathBuf;

use sparkify::Input;

use crate::args::RunArgs;
use crate::exit::Failure;
use crate::settings::LoadSettings;

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let root = fixtures_root(args.fixtures)?;
    let input = |sub: &str| vec![Input::Local(root.join(sub).display().to_string())];
    let settings =
        LoadSettings::resolve(input("song_data"), input("log_data"), &args.sink, args.load)?;
    crate::load::load(settings)
}

/// `--fixtures`, else `./fixtures/sparkify` (run from a checkout's root).
///
/// Never a path compiled into the binary: a binary built in one checkout and run from
/// another (or copied elsewhere) would quietly read the first one's data.
fn fixtures_root(flag: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(root) = flag {
        return Ok(root);
    }
    let here = PathBuf::from("fixtures/sparkify");
    if here.is_dir() {
        return Ok(here);
    }
    Err(Failure::Usage(
        "no ./fixtures/sparkify here: run from the repository's root, or pass --fixtures DIR"
            .into(),
    ))
}
