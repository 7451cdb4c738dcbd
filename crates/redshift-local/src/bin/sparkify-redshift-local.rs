//! `sparkify-redshift-local --postgres URL --s3-endpoint URL --listen 127.0.0.1:PORT`: a
//! strict local Redshift in front of a PostgreSQL server, until interrupted.

use clap::Parser;
use sparkify_redshift_local::{Config, Server};

/// A strict local Redshift: the PostgreSQL wire protocol in front of a real PostgreSQL,
/// holding every statement to Amazon Redshift's documented rules and running COPY from S3.
/// TLS is off: connect with sslmode=disable (sparkify: [redshift] tls = false).
#[derive(Debug, Parser)]
#[command(name = "sparkify-redshift-local", version)]
struct Args {
    /// The PostgreSQL server statements run on, e.g. postgres://postgres@127.0.0.1:5432/postgres
    #[arg(long)]
    postgres: String,
    /// The S3 endpoint COPY reads from, e.g. http://127.0.0.1:5000 (moto); AWS's when not given
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// The address to listen on (a loopback address)
    #[arg(long, default_value = "127.0.0.1:5439")]
    listen: std::net::SocketAddr,
    /// Behave as Redshift Serverless: load errors in sys_load_error_detail only
    #[arg(long)]
    serverless: bool,
    /// The region S3 is asked in
    #[arg(long, default_value = "us-east-1")]
    region: String,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let server = match Server::start(Config {
        postgres: args.postgres,
        s3_endpoint: args.s3_endpoint,
        listen: args.listen,
        serverless: args.serverless,
        region: args.region,
    }) {
        Ok(s) => s,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("sparkify-redshift-local: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    println!("listening on {}", server.addr());
    loop {
        std::thread::park();
    }
}
