//! The strict local Redshift ([`sparkify_redshift_local`]) in front of a temporary
//! PostgreSQL server, reading S3 from moto: what the Redshift path of the tests connects to.

use sparkify_redshift_local::{Config, Server};

use crate::moto::Moto;
use crate::pg::PgServer;

pub struct LocalRedshift {
    /// Dropped before the PostgreSQL server it stands in front of.
    pub server: Server,
    pub pg: PgServer,
    pub port: u16,
    pub serverless: bool,
}

impl LocalRedshift {
    /// A new PostgreSQL server and a local Redshift in front of it (`serverless`: the SYS
    /// views only), reading S3 from `moto`.
    pub fn start(moto: &Moto, serverless: bool) -> LocalRedshift {
        let pg = PgServer::start();
        let server = Server::start(Config {
            postgres: pg.url(),
            s3_endpoint: Some(moto.endpoint.clone()),
            listen: "127.0.0.1:0".parse().unwrap(),
            serverless,
            region: "us-east-1".into(),
        })
        .unwrap_or_else(|e| panic!("the local Redshift did not start: {e:?}"));
        let port = server.addr().port();
        LocalRedshift {
            server,
            pg,
            port,
            serverless,
        }
    }

    /// A `postgres://` URL of the local Redshift (for a plain client).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The `[redshift]` section a `sparkify.toml` needs to load it (TLS off).
    pub fn toml_section(&self) -> String {
        format!(
            "[redshift]\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"postgres\"\nuser = \"postgres\"\ntls = false\nserverless = {}\n",
            self.port, self.serverless
        )
    }
}
