//! Where to connect: a `postgres://` URL or Redshift's parts, the password handed only to the
//! driver and never printed.

use std::fmt;

use tokio_postgres::{Client, NoTls};

use crate::{Error, Result};

/// Whether the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Disable,
    /// TLS with the web PKI roots; Redshift's default.
    Require,
}

/// Where to connect. The password, when there is one, is only handed to the driver.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    tls: Tls,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A `postgres://user[:password]@host:port/db[?sslmode=require]` URL, parsed once, where it
/// is given. Shown (`Display`, `Debug`) without its password.
#[derive(Clone)]
pub struct PgUrl {
    /// As given, the password included: compared, never shown.
    given: String,
    config: Box<tokio_postgres::Config>,
    tls: Tls,
}

impl std::str::FromStr for PgUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            Error::Config(format!(
                "bad connection settings: {e} (in the postgres:// URL)"
            ))
        })?;
        let tls = if url.contains("sslmode=require") {
            Tls::Require
        } else {
            Tls::Disable
        };
        Ok(PgUrl {
            given: url.to_owned(),
            config: Box::new(config),
            tls,
        })
    }
}

impl PartialEq for PgUrl {
    fn eq(&self, other: &Self) -> bool {
        self.given == other.given
    }
}

impl Eq for PgUrl {}

impl fmt::Display for PgUrl {
    /// As given, but for the password of its user info (`user:password@`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.given;
        let Some((scheme, rest)) = url.split_once("://") else {
            return f.write_str(url);
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rsplit_once('@') {
            Some((user_info, host)) => {
                let user = user_info.split(':').next().unwrap_or_default();
                write!(f, "{scheme}://{user}@{host}{}", &rest[authority_end..])
            }
            None => f.write_str(url),
        }
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

impl Target {
    /// From a parsed URL. With no password in it, `PGPASSWORD` (or `~/.pgpass`) is used when
    /// set, read now.
    pub fn from_url(url: &PgUrl) -> Self {
        let mut config = (*url.config).clone();
        if config.get_password().is_none() {
            let host = match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                _ => "localhost".to_owned(),
            };
            let lookup = Lookup {
                host: &host,
                port: config.get_ports().first().copied().unwrap_or(5432),
                database: config
                    .get_dbname()
                    .or(config.get_user())
                    .unwrap_or_default(),
                user: config.get_user().unwrap_or_default(),
            };
            if let Some(pw) = password(&lookup, None) {
                config.password(pw);
            }
        }
        config.application_name("sparkify");
        Target {
            config,
            tls: url.tls,
        }
    }

    /// From parts, as for Redshift (`password` from `PGPASSWORD` or the config file).
    pub fn new(
        host: &str,
        port: u16,
        dbname: &str,
        user: &str,
        password: Option<&str>,
        tls: Tls,
    ) -> Self {
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(port)
            .dbname(dbname)
            .user(user)
            .application_name("sparkify");
        if let Some(pw) = password {
            config.password(pw);
        }
        Target { config, tls }
    }

    /// `user@host:port/db`, never the password.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            self.config.get_user().unwrap_or("?"),
            self.config.get_dbname().unwrap_or("?")
        )
    }

    pub(crate) async fn connect(&self) -> Result<Client> {
        let err = |source| Error::Connect {
            target: self.describe(),
            source,
        };
        match self.tls {
            Tls::Disable => {
                let (client, conn) = self.config.connect(NoTls).await.map_err(err)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::warn!(error = %e, "connection ended");
                    }
                });
                Ok(client)
            }
            Tls::Require => {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let tls_config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| Error::Config(format!("bad connection settings: TLS: {e}")))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config);
                let (client, conn) = self.config.connect(tls).await.map_err(err)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::warn!(error = %e, "connection ended");
                    }
                });
                Ok(client)
            }
        }
    }
}

/// What a password is looked up for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lookup<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The environment variable of the database password, as libpq reads it.
pub const PASSWORD_ENV: &str = "PGPASSWORD";

/// The database password of the environment ([`PASSWORD_ENV`]), when set and not empty: the
/// one place it is read.
pub fn env_password() -> Option<String> {
    std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty())
}

/// The database password: `PGPASSWORD` when set, else the matching line of `~/.pgpass`
/// (`PGPASSFILE`), else `from_file` (the config file's).
pub(crate) fn password(lookup: &Lookup<'_>, from_file: Option<&str>) -> Option<String> {
    env_password()
        .or_else(|| pgpass(lookup))
        .or_else(|| from_file.map(str::to_owned))
}

/// The password libpq would take from the password file: `PGPASSFILE`, else `~/.pgpass`;
/// the first line `host:port:database:user:password` that matches (`*` matches anything,
/// `\:` and `\\` escape). Like libpq, a file that others may read is ignored, with a warning.
fn pgpass(lookup: &Lookup<'_>) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "password file has group or world access; permissions should be u=rw (0600) or less; ignored"
            );
            return None;
        }
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let port = lookup.port.to_string();
    let wanted = [lookup.host, port.as_str(), lookup.database, lookup.user];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = pgpass_fields(line);
            let [host, port, db, user, password] = fields.as_slice() else {
                return None;
            };
            let matches = [host, port, db, user]
                .iter()
                .zip(wanted)
                .all(|(have, want)| have.as_str() == "*" || have.as_str() == want);
            matches.then(|| password.clone())
        })
}

/// A `.pgpass` line's five fields, escapes undone; the last takes the rest of the line.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields
                .last_mut()
                .into_iter()
                .for_each(|f| f.extend(chars.next())),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().into_iter().for_each(|f| f.push(c)),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_split_on_unescaped_colons() {
        assert_eq!(
            pgpass_fields(r"db.example:5439:*:etl:pa\:ss\\word"),
            ["db.example", "5439", "*", "etl", r"pa:ss\word"]
        );
        assert_eq!(
            pgpass_fields("h:1:d:u:a:b").last().map(String::as_str),
            Some("a:b")
        );
    }
}
