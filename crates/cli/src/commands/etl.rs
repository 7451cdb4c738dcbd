//! `sparkify etl`: the song files and event logs given into a sink.

use crate::args::EtlArgs;
use crate::settings::LoadSettings;

pub fn etl(args: EtlArgs) -> anyhow::Result<()> {
    let settings = LoadSettings::resolve(args.songs, args.events, &args.sink, args.load)?;
    crate::load::load(settings)
}
