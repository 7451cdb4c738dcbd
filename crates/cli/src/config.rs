//! `sparkify.toml`: what a Redshift run needs to know. Secrets may live here, but `PGPASSWORD`
//! is preferred; neither is ever printed.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub redshift: Redshift,
    #[serde(default)]
    pub s3: S3,
    #[serde(default)]
    pub iam: Iam,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redshift {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Redshift Serverless (load errors in `sys_load_error_detail`).
    #[serde(default)]
    pub serverless: bool,
    /// TLS, on unless turned off here.
    pub tls: Option<bool>,
    /// What COPY reads: `json` (the input where it lies in S3) or `parquet` (the parsed
    /// staging tables, uploaded to `[s3] staging_prefix`).
    pub staging: Option<String>,
    /// The cluster's slices: Parquet staging cuts a multiple of this many parts.
    pub slices: Option<usize>,
}

impl std::fmt::Debug for Redshift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redshift")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    pub events: Option<String>,
    pub songs: Option<String>,
    pub jsonpaths: Option<String>,
    pub region: Option<String>,
    /// An S3-compatible endpoint (else `AWS_ENDPOINT_URL`); path-style addressing with it.
    pub endpoint: Option<String>,
    /// Where Parquet staging for Redshift uploads its parts.
    pub staging_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Iam {
    pub role_arn: Option<String>,
}

impl Config {
    /// Reads `path`; a missing file is an empty config unless it was named explicitly.
    pub fn load(path: &Path, explicit: bool) -> anyhow::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }
}
