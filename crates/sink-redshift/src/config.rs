//! The warehouse sink's settings: its sections of `sparkify.toml` (`[redshift]`, `[iam]`), and
//! the settings a sink is built from once the command line has had its say. The one secret,
//! the database password, is looked up in this crate and nowhere else (`target::password`):
//! `PGPASSWORD`, then `~/.pgpass` (libpq's file), then the config file.

use std::fmt;

use serde::Deserialize;
use sparkify_core::model::SongplaysMode;
use sparkify_core::sql::Dialect;
use sparkify_s3::{S3Options, S3Url};

use crate::plan::{CopyFrom, RedshiftCopy};
use crate::target::{Lookup, PgUrl, Target, Tls};
use crate::upload::UploadOptions;
use crate::{Error, Result};

/// `[redshift]` of `sparkify.toml`: how to reach the cluster and what its COPY reads.
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedshiftSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: Option<String>,
    /// Works, but `PGPASSWORD` is the better place; never printed.
    pub password: Option<String>,
    /// Redshift Serverless (load errors in `sys_load_error_detail`); also when `workgroup`
    /// is set ([`RedshiftSection::is_serverless`]).
    #[serde(default)]
    pub serverless: bool,
    /// The Serverless workgroup (`sparkify cluster`, `--iam-auth`).
    pub workgroup: Option<String>,
    /// The Serverless namespace; the workgroup's name when unset.
    pub namespace: Option<String>,
    /// TLS, on unless turned off here.
    pub tls: Option<bool>,
    /// What COPY reads: `json` (the input where it lies in S3) or `parquet` (the parsed
    /// staging tables, uploaded to `[s3] upload_prefix`). Formerly `staging`.
    #[serde(alias = "staging")]
    pub copy_from: Option<String>,
    /// The cluster's slices: the Parquet upload cuts a multiple of this many parts.
    pub slices: Option<usize>,
    /// Connect with temporary credentials from `GetClusterCredentials` (`[cluster]
    /// identifier`), so that no password exists anywhere.
    pub iam_auth: Option<bool>,
}

impl fmt::Debug for RedshiftSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedshiftSection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("serverless", &self.serverless)
            .field("workgroup", &self.workgroup)
            .field("namespace", &self.namespace)
            .field("tls", &self.tls)
            .field("copy_from", &self.copy_from)
            .field("slices", &self.slices)
            .field("iam_auth", &self.iam_auth)
            .finish()
    }
}

impl RedshiftSection {
    /// Redshift Serverless: said so, or a workgroup named.
    pub fn is_serverless(&self) -> bool {
        self.serverless || self.workgroup.is_some()
    }

    /// The Serverless namespace: `namespace`, else the workgroup's name.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref().or(self.workgroup.as_deref())
    }
}

/// `[iam]` of `sparkify.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamSection {
    /// The role the cluster reads S3 with.
    pub role_arn: Option<String>,
    /// The role's name, for `sparkify cluster create` and `delete`.
    pub role_name: Option<String>,
}

/// Where temporary database credentials come from (`--iam-auth`: Redshift's
/// `GetClusterCredentials`): asked only when a connection is made; `(user, password)`.
pub type CredentialSource =
    std::sync::Arc<dyn Fn() -> std::result::Result<(String, String), String> + Send + Sync>;

/// How to reach the database.
#[derive(Clone)]
pub enum Connection {
    /// `postgres://user[:password]@host:port/db[?sslmode=require]`.
    Url(PgUrl),
    /// Redshift's endpoint in parts; what is missing is reported when a connection is made,
    /// so that the plan and the DDL need none of it.
    Parts {
        host: Option<String>,
        port: u16,
        database: Option<String>,
        user: Option<String>,
        /// The config file's password, used when `PGPASSWORD` and `~/.pgpass` have none.
        file_password: Option<String>,
        tls: Tls,
        /// IAM credentials instead of a password (`--iam-auth`).
        iam: Option<CredentialSource>,
    },
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connection::Url(url) => write!(f, "Url({url})"),
            Connection::Parts {
                host,
                port,
                database,
                user,
                tls,
                ..
            } => f
                .debug_struct("Parts")
                .field("host", host)
                .field("port", port)
                .field("database", database)
                .field("user", user)
                .field("tls", tls)
                .finish_non_exhaustive(),
        }
    }
}

impl Connection {
    /// Redshift's parts from `[redshift]` (flags already applied by the caller).
    pub fn from_section(r: &RedshiftSection) -> Self {
        Connection::Parts {
            host: r.host.clone(),
            port: r.port.unwrap_or(5439),
            database: r.database.clone(),
            user: r.user.clone(),
            file_password: r.password.clone(),
            tls: if r.tls.unwrap_or(true) {
                Tls::Require
            } else {
                Tls::Disable
            },
            iam: None,
        }
    }

    /// Connects with the credentials `source` gives (asked when connecting), not a password.
    pub fn with_iam(mut self, source: CredentialSource) -> Self {
        if let Connection::Parts { iam, .. } = &mut self {
            *iam = Some(source);
        }
        self
    }

    /// Where to connect; every missing setting named at once.
    pub fn target(&self) -> Result<Target> {
        match self {
            Connection::Url(url) => Ok(Target::from_url(url)),
            Connection::Parts {
                host,
                port,
                database,
                user,
                file_password,
                tls,
                iam,
            } => {
                let missing = missing(&[
                    (host.is_none(), "[redshift] host (--redshift-host)"),
                    (
                        database.is_none(),
                        "[redshift] database (--redshift-database)",
                    ),
                    (user.is_none(), "[redshift] user (--redshift-user)"),
                ]);
                let (Some(host), Some(database), Some(user)) = (host, database, user) else {
                    return Err(Error::Config(format!("connecting needs {missing}")));
                };
                if let Some(iam) = iam {
                    let (iam_user, password) = iam().map_err(Error::Credentials)?;
                    return Ok(Target::new(
                        host,
                        *port,
                        database,
                        &iam_user,
                        Some(&password),
                        *tls,
                    ));
                }
                let password = crate::target::password(
                    &Lookup {
                        host,
                        port: *port,
                        database,
                        user,
                    },
                    file_password.as_deref(),
                );
                Ok(Target::new(
                    host,
                    *port,
                    database,
                    user,
                    password.as_deref(),
                    *tls,
                ))
            }
        }
    }
}

/// The names of the settings whose flag is true, as one list.
fn missing(checks: &[(bool, &str)]) -> String {
    checks
        .iter()
        .filter(|(is_missing, _)| *is_missing)
        .map(|(_, what)| *what)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What Redshift's COPY reads, as configured: checked only when a load or its plan needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopySettings {
    /// `json` (default) or `parquet`.
    pub copy_from: Option<String>,
    /// JSON: where the logs, the song files and the logs' JSONPaths file lie, and their region.
    pub events: Option<String>,
    pub songs: Option<String>,
    pub jsonpaths: Option<String>,
    pub region: Option<String>,
    /// Parquet: where the parts are uploaded.
    pub upload_prefix: Option<String>,
    /// The IAM role the cluster reads S3 with.
    pub iam_role: Option<String>,
    pub serverless: bool,
}

impl CopySettings {
    /// The COPY settings, every missing or bad one named at once.
    pub fn resolve(&self) -> Result<RedshiftCopy> {
        let parquet = match self.copy_from.as_deref() {
            None | Some("json") => false,
            Some("parquet") => true,
            Some(other) => {
                return Err(Error::Config(format!(
                    "unknown COPY source {other:?} (--copy-from, [redshift] copy_from): \
                     expected json or parquet"
                )));
            }
        };
        let json = !parquet;
        let missing = missing(&[
            (
                json && self.events.is_none(),
                "--events s3://… or [s3] events",
            ),
            (json && self.songs.is_none(), "--songs s3://… or [s3] songs"),
            (json && self.jsonpaths.is_none(), "[s3] jsonpaths"),
            (json && self.region.is_none(), "[s3] region"),
            (
                parquet && self.upload_prefix.is_none(),
                "--upload-prefix s3://… or [s3] upload_prefix",
            ),
            (self.iam_role.is_none(), "[iam] role_arn"),
        ]);
        if !missing.is_empty() {
            return Err(Error::Config(format!("--sink redshift needs {missing}")));
        }
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let copy_from = match &self.upload_prefix {
            Some(prefix) if parquet => CopyFrom::Parquet {
                prefix: S3Url::parse(prefix)?,
            },
            _ => CopyFrom::Json,
        };
        Ok(RedshiftCopy {
            copy_from,
            events: text(&self.events),
            songs: text(&self.songs),
            jsonpaths: text(&self.jsonpaths),
            iam_role: text(&self.iam_role),
            region: text(&self.region),
            serverless: self.serverless,
            max_errors: 0,
        })
    }

    /// Whether the cluster reads the JSON input from S3 itself (sparkify then reads nothing).
    pub fn is_json(&self) -> bool {
        !matches!(self.copy_from.as_deref(), Some("parquet"))
    }
}

/// Everything a warehouse sink is built from.
#[derive(Debug, Clone)]
pub struct WarehouseConfig {
    /// [`Dialect::Postgres`] or [`Dialect::Redshift`] (with its DIST/SORT keys).
    pub dialect: Dialect,
    pub connection: Connection,
    /// Redshift only: what COPY reads. PostgreSQL copies the parsed staging tables from STDIN.
    pub copy: CopySettings,
    pub mode: SongplaysMode,
    /// Redshift's Parquet upload: how parts are cut, and the S3 client's settings.
    pub upload: UploadOptions,
    pub s3: S3Options,
    /// How long a load waits for another load's lock (and any table lock) before it fails.
    pub lock_timeout: std::time::Duration,
    /// Who hears, at once, that a load waits for another one's lock (PostgreSQL).
    pub on_wait: Option<sparkify_core::sink::OnWait>,
}

impl WarehouseConfig {
    /// The sink; nothing is connected yet.
    pub fn build(self) -> crate::WarehouseSink {
        crate::WarehouseSink::new(self)
    }

    /// PostgreSQL at `url` (`PGPASSWORD` when the URL has no password).
    pub fn postgres(url: PgUrl, mode: SongplaysMode) -> Self {
        WarehouseConfig {
            dialect: Dialect::Postgres,
            connection: Connection::Url(url),
            copy: CopySettings::default(),
            mode,
            upload: UploadOptions::default(),
            s3: S3Options::default(),
            lock_timeout: crate::plan::DEFAULT_LOCK_TIMEOUT,
            on_wait: None,
        }
    }

    /// Redshift, its connection from `section`, COPY as `copy`, the seed's DIST/SORT keys.
    pub fn redshift(section: &RedshiftSection, copy: CopySettings, mode: SongplaysMode) -> Self {
        WarehouseConfig {
            dialect: Dialect::Redshift(Default::default()),
            connection: Connection::from_section(section),
            copy,
            mode,
            upload: UploadOptions {
                slices: section.slices.unwrap_or(UploadOptions::default().slices),
                ..UploadOptions::default()
            },
            s3: S3Options::default(),
            lock_timeout: crate::plan::DEFAULT_LOCK_TIMEOUT,
            on_wait: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_secret() {
        let mut config = WarehouseConfig::postgres(
            "postgres://keeper:Sentinel-Url-1@db.example:5432/dev"
                .parse()
                .unwrap(),
            SongplaysMode::Matched,
        );
        config.s3.static_keys = Some(sparkify_s3::StaticKeys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "Sentinel-Secret-2".into(),
        });
        let url = format!("{config:?}");
        config.connection = Connection::Parts {
            host: Some("cluster.example".into()),
            port: 5439,
            database: Some("dev".into()),
            user: Some("awsuser".into()),
            file_password: Some("Sentinel-File-3".into()),
            tls: Tls::Require,
            iam: Some(std::sync::Arc::new(|| {
                Ok(("IAM:awsuser".into(), "Sentinel-Iam-4".into()))
            })),
        };
        let parts = format!("{config:?}");
        for shown in [&url, &parts] {
            assert!(
                shown.contains("db.example") || shown.contains("cluster.example"),
                "{shown}"
            );
            assert!(!shown.contains("Sentinel"), "{shown}");
        }
    }
}
