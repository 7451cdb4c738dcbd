//! Loads a folder of Sparkify data (its `song_data/` and `log_data/`) into a DuckDB file and
//! prints each table's rows:
//!
//! ```sh
//! load_folder fixtures/sparkify out.duckdb
//! ```

use sparkify::sink::DuckDbConfig;
use sparkify::{Etl, SinkConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let folder = args.next().unwrap_or_else(|| "fixtures/sparkify".into());
    let out = args.next().unwrap_or_else(|| "sparkify.duckdb".into());
    let summary = Etl::new(SinkConfig::from(DuckDbConfig::new(out)))
        .songs([format!("{folder}/song_data").parse()?])
        .events([format!("{folder}/log_data").parse()?])
        .run()?;
    for (table, rows) in &summary.rows {
        println!("{table}: {rows}");
    }
    println!("rejects: {}", summary.rejected());
    Ok(())
}
