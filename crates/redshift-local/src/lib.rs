//! sparkify-redshift-local: a strict local Redshift, for tests and for developing against
//! Redshift without an account. It speaks the PostgreSQL wire protocol on a loopback port,
//! runs each statement on a real PostgreSQL server, and holds it to Amazon Redshift's
//! documented behaviour first: reserved words, `VARCHAR(n)` in bytes, the types and
//! statements Redshift lacks, `ALTER COLUMN … TYPE`'s limits, `TRUNCATE` committing,
//! serializable transactions failing with error 1023; and it runs `COPY … FROM 's3://…'`
//! itself (JSON `'auto'`, `'auto ignorecase'` or a JSONPaths file, Parquet, by prefix or
//! manifest, `MAXERROR`) against an S3 endpoint, keeping `stl_load_errors` (or, Serverless,
//! `sys_load_error_detail`) and `pg_last_copy_id()` / `pg_last_copy_count()` as documented.
//! Every rule names the page of the Amazon Redshift Database Developer Guide it comes from
//! ([`rules::page`]); where the guide is silent, the stricter reading is taken.
//!
//! ```no_run
//! use sparkify_redshift_local::{Config, Server};
//!
//! let server = Server::start(Config {
//!     postgres: "postgres://postgres@127.0.0.1:5432/postgres".into(),
//!     s3_endpoint: Some("http://127.0.0.1:5000".into()),
//!     listen: "127.0.0.1:0".parse()?,
//!     serverless: false,
//!     region: "us-west-2".into(),
//! })?;
//! println!("psql -h 127.0.0.1 -p {} -U postgres", server.addr().port());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod copy;
pub mod json;
pub mod lex;
pub mod parquet;
pub mod rules;
mod server;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

/// Where the local Redshift listens, and what it stands in front of.
#[derive(Debug, Clone)]
pub struct Config {
    /// The PostgreSQL server the statements run on: `postgres://user@host:port/db` (its
    /// host and port; each client's own user and database are passed through).
    pub postgres: String,
    /// The S3 endpoint `COPY` reads (`http://127.0.0.1:PORT` for moto); else AWS's.
    pub s3_endpoint: Option<String>,
    pub listen: SocketAddr,
    /// Redshift Serverless: the SYS views only (no `stl_load_errors`).
    pub serverless: bool,
    /// The region S3 is asked in.
    pub region: String,
}

/// What can keep the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare PostgreSQL at {target}")]
    Postgres {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the server's runtime")]
    Runtime(#[source] std::io::Error),
}

/// A running local Redshift; it stops when dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Prepares PostgreSQL (the stand-in's catalog objects) and starts listening, on a
    /// runtime of its own.
    pub fn start(config: Config) -> Result<Server, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("redshift-local")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let shared = Arc::new(server::Shared::new(&config)?);
        let listener = runtime.block_on(async {
            bootstrap(&config.postgres).await?;
            tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|source| Error::Listen {
                    addr: config.listen,
                    source,
                })
        })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
        runtime.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(e) = server::serve(shared, client).await {
                        tracing::debug!(error = %e, "session ended");
                    }
                });
            }
        });
        Ok(Server {
            addr,
            runtime: Some(runtime),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The catalog objects the stand-in keeps in PostgreSQL (`rs_catalog`: the keys of each
/// table, `pg_table_def`, `svv_table_info`, the function that raises a refusal).
async fn bootstrap(postgres: &str) -> Result<(), Error> {
    let target = postgres
        .split('@')
        .next_back()
        .unwrap_or(postgres)
        .to_owned();
    let err = |source| Error::Postgres {
        target: target.clone(),
        source,
    };
    let (client, conn) = tokio_postgres::connect(postgres, tokio_postgres::NoTls)
        .await
        .map_err(err)?;
    let task = tokio::spawn(conn);
    let done = client.batch_execute(server::BOOTSTRAP).await.map_err(err);
    drop(client);
    let _ = task.await;
    done
}
