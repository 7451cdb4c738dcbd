//! Where every setting comes from, worked out once: flags, then the environment
//! (`SPARKIFY_<SECTION>_<KEY>`), then `sparkify.toml`, then defaults. The layers are merged
//! into one table that each crate's section is read from, and each value keeps its origin
//! (`sparkify config show`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::args::ConfigArgs;
use crate::exit::Failure;

/// What a setting holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Bool,
}

/// A setting sparkify knows: its section and key in `sparkify.toml`, its flag, its kind,
/// its default, whether it is secret, and what it is. The one list every place derives
/// from: the layers ([`Layered`]), `config show`, `init`'s template ([`template`]) and the
/// "not set: set it with …" messages ([`Known::places`]); its environment variable is
/// derived from its name ([`Known::env`]).
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub section: &'static str,
    pub key: &'static str,
    pub flag: Option<&'static str>,
    pub kind: Kind,
    /// Never shown: `<secret>`.
    pub secret: bool,
    pub default: Option<&'static str>,
    /// What it is, for `init`'s template.
    pub doc: &'static str,
    /// A value to show in the template when there is no default.
    pub example: Option<&'static str>,
}

/// A setting with no flag, default or example.
const fn known(section: &'static str, key: &'static str, kind: Kind, doc: &'static str) -> Known {
    Known {
        section,
        key,
        flag: None,
        kind,
        secret: false,
        default: None,
        doc,
        example: None,
    }
}

impl Known {
    const fn flag(mut self, flag: &'static str) -> Self {
        self.flag = Some(flag);
        self
    }

    const fn default(mut self, default: &'static str) -> Self {
        self.default = Some(default);
        self
    }

    const fn example(mut self, example: &'static str) -> Self {
        self.example = Some(example);
        self
    }

    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

use Kind::{Bool, Int, Text};

/// Every setting, in `config show` order.
pub const KNOWN: &[Known] = &[
    known(
        "aws",
        "region",
        Text,
        "The AWS region (else the AWS chain's).",
    )
    .flag("--region")
    .example("us-west-2"),
    known(
        "aws",
        "profile",
        Text,
        "A profile of the AWS config files (else AWS_PROFILE).",
    )
    .flag("--profile")
    .example("default"),
    known(
        "cluster",
        "identifier",
        Text,
        "The Redshift cluster's identifier.",
    )
    .flag("--cluster-id")
    .example("sparkify"),
    known("cluster", "node_type", Text, "The node type.")
        .flag("--node-type")
        .default("ra3.large"),
    known(
        "cluster",
        "num_nodes",
        Int,
        "Nodes; 1 is a single-node cluster.",
    )
    .flag("--nodes")
    .default("1"),
    known(
        "cluster",
        "database",
        Text,
        "The database the cluster is created with.",
    )
    .default("sparkify"),
    known("cluster", "user", Text, "The cluster's admin user.").default("sparkify"),
    known(
        "cluster",
        "port",
        Int,
        "The cluster's (or workgroup's) port.",
    )
    .default("5439"),
    known(
        "cluster",
        "base_capacity",
        Int,
        "A Serverless workgroup's base capacity in RPUs: 4, or 8 to 1024 in steps of 8.",
    )
    .flag("--base-capacity")
    .default("8"),
    known(
        "cluster",
        "allow_cidr",
        Text,
        "The IPv4 CIDR let in to the cluster's port (your address).",
    )
    .flag("--cidr")
    .example("203.0.113.7/32"),
    known(
        "cluster",
        "security_group_id",
        Text,
        "The security group to open (else the default VPC's default group).",
    )
    .example("sg-0123456789abcdef0"),
    known(
        "iam",
        "role_name",
        Text,
        "The IAM role the cluster reads S3 with.",
    )
    .default("sparkify-redshift-s3-read"),
    known(
        "iam",
        "role_arn",
        Text,
        "The role's ARN (written by `sparkify cluster create`).",
    )
    .example("arn:aws:iam::123456789012:role/sparkify-redshift-s3-read"),
    known(
        "redshift",
        "host",
        Text,
        "The endpoint's host (written by `sparkify cluster create`).",
    )
    .flag("--redshift-host")
    .example("sparkify.abc123.us-west-2.redshift.amazonaws.com"),
    known(
        "redshift",
        "port",
        Int,
        "The endpoint's port (default 5439).",
    )
    .flag("--redshift-port")
    .example("5439"),
    known("redshift", "database", Text, "The database.")
        .flag("--redshift-database")
        .example("sparkify"),
    known("redshift", "user", Text, "The database user.")
        .flag("--redshift-user")
        .example("sparkify"),
    known(
        "redshift",
        "password",
        Text,
        "Not here: the password comes from PGPASSWORD, ~/.pgpass or --iam-auth.",
    )
    .secret(),
    known(
        "redshift",
        "iam_auth",
        Bool,
        "Temporary credentials from GetClusterCredentials (Serverless: GetCredentials): no \
         password anywhere.",
    )
    .flag("--iam-auth")
    .example("true"),
    known(
        "redshift",
        "tls",
        Bool,
        "TLS to the endpoint (default: on for Redshift).",
    )
    .example("true"),
    known(
        "redshift",
        "serverless",
        Bool,
        "Redshift Serverless: `cluster` makes a namespace and workgroup, --iam-auth asks \
         GetCredentials, load errors come from sys_load_error_detail (on when workgroup is set).",
    )
    .flag("--serverless")
    .example("false"),
    known(
        "redshift",
        "workgroup",
        Text,
        "The Redshift Serverless workgroup: the alternative to [cluster] identifier.",
    )
    .flag("--workgroup")
    .example("sparkify"),
    known(
        "redshift",
        "namespace",
        Text,
        "The Serverless namespace (else the workgroup's name).",
    )
    .flag("--namespace")
    .example("sparkify"),
    known(
        "redshift",
        "copy_from",
        Text,
        "What COPY reads: json (the input in S3) or parquet (the parsed staging tables).",
    )
    .flag("--copy-from")
    .example("json"),
    known(
        "redshift",
        "slices",
        Int,
        "The cluster's slices: the Parquet upload cuts a multiple of this many parts.",
    )
    .example("2"),
    known("s3", "events", Text, "The event logs COPY reads.").example("s3://udacity-dend/log_data"),
    known("s3", "songs", Text, "The song files COPY reads.").example("s3://udacity-dend/song_data"),
    known(
        "s3",
        "jsonpaths",
        Text,
        "The JSONPaths file of the event logs.",
    )
    .example("s3://udacity-dend/log_json_path.json"),
    known(
        "s3",
        "region",
        Text,
        "The bucket's region (else [aws] region).",
    )
    .flag("--s3-region")
    .example("us-west-2"),
    known(
        "s3",
        "endpoint",
        Text,
        "An S3-compatible endpoint (else AWS_ENDPOINT_URL).",
    )
    .flag("--s3-endpoint")
    .example("http://127.0.0.1:9000"),
    known(
        "s3",
        "upload_prefix",
        Text,
        "Where the Parquet upload puts its parts.",
    )
    .flag("--upload-prefix")
    .example("s3://my-bucket/sparkify-upload"),
    known(
        "s3",
        "connect_timeout",
        Int,
        "Seconds to wait for a connection to S3.",
    )
    .flag("--s3-connect-timeout")
    .default("5"),
    known(
        "s3",
        "read_timeout",
        Int,
        "Seconds an S3 response may keep silent before the attempt is given up.",
    )
    .flag("--s3-read-timeout")
    .default("30"),
    known(
        "s3",
        "attempts",
        Int,
        "Attempts per S3 request, the first included.",
    )
    .flag("--s3-attempts")
    .default("5"),
];

/// `sparkify init`'s file: every setting of [`KNOWN`] under its section, commented out, with
/// what it is and its default (or an example).
pub fn template() -> String {
    let mut out = String::from(
        "# sparkify.toml: settings for sparkify. Every value here can also be given as an\n\
         # environment variable (SPARKIFY_<SECTION>_<KEY>, e.g. SPARKIFY_CLUSTER_IDENTIFIER) or a flag;\n\
         # flags win over the environment, which wins over this file. `sparkify config show` prints\n\
         # the effective settings and where each came from.\n\
         #\n\
         # Secrets do not belong here. AWS keys come from the standard AWS chain (`aws configure`,\n\
         # AWS_PROFILE, SSO, instance roles); the database password from PGPASSWORD, ~/.pgpass, or\n\
         # no password at all with `--iam-auth` ([redshift] iam_auth = true).\n",
    );
    let mut section = "";
    for k in KNOWN {
        if k.section != section {
            section = k.section;
            out.push_str(&format!("\n[{section}]\n"));
        }
        out.push_str(&format!("# {}\n", k.doc));
        if k.secret {
            continue;
        }
        let Some(value) = k.default.or(k.example) else {
            continue;
        };
        let value = match k.kind {
            Kind::Text => format!("{value:?}"),
            Kind::Int | Kind::Bool => value.to_owned(),
        };
        let flag = k.flag.map_or_else(String::new, |f| format!("  (flag {f})"));
        let default = if k.default.is_some() {
            "  (default)"
        } else {
            ""
        };
        out.push_str(&format!("# {} = {value}{default}{flag}\n", k.key));
    }
    out
}

/// The setting `[section] key`.
pub fn setting(section: &str, key: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.section == section && k.key == key)
}

impl Known {
    /// `SPARKIFY_CLUSTER_NODE_TYPE`.
    pub fn env(&self) -> String {
        format!("SPARKIFY_{}_{}", self.section, self.key).to_uppercase()
    }

    /// Every place it can be set, for a message: `--cluster-id, SPARKIFY_CLUSTER_IDENTIFIER,
    /// or identifier in [cluster] of sparkify.toml`.
    pub fn places(&self) -> String {
        let file = format!("{} in [{}] of sparkify.toml", self.key, self.section);
        match self.flag {
            Some(flag) => format!("{flag}, {}, or {file}", self.env()),
            None => format!("{}, or {file}", self.env()),
        }
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    Env(String),
    File(PathBuf),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// A flag's value for `[section] key` (`None` when the flag was not given).
pub type FlagValue = (&'static str, &'static str, Option<toml::Value>);

/// The merged settings.
#[derive(Debug)]
pub struct Layered {
    /// The config file (whether or not it exists).
    pub path: PathBuf,
    merged: toml::Table,
    origins: BTreeMap<(String, String), Origin>,
}

impl Layered {
    /// `--config` (else `./sparkify.toml`; a missing file is an empty one unless it was
    /// named), the environment over it, `flags` over both, defaults under all.
    pub fn load(config: &ConfigArgs, flags: &[FlagValue]) -> Result<Self, Failure> {
        let explicit = config.config.is_some();
        let path = config
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("sparkify.toml"));
        let file = read(&path, explicit)?;
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("SPARKIFY_"))
            .collect();
        Self::merge(path, file, &env, flags)
    }

    fn merge(
        path: PathBuf,
        file: toml::Table,
        env: &[(String, String)],
        flags: &[FlagValue],
    ) -> Result<Self, Failure> {
        let mut merged = toml::Table::new();
        let mut origins = BTreeMap::new();
        let mut set = |section: &str, key: &str, value: toml::Value, origin: Origin| {
            let table = merged
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = table {
                t.insert(key.to_owned(), value);
            }
            origins.insert((section.to_owned(), key.to_owned()), origin);
        };
        for k in KNOWN {
            if let Some(default) = k.default {
                set(
                    k.section,
                    k.key,
                    parse(k, default, "a default")?,
                    Origin::Default,
                );
            }
        }
        // The file as it is: each crate's section rejects what it does not know.
        for (section, body) in &file {
            let toml::Value::Table(body) = body else {
                return Err(Failure::Usage(format!(
                    "{}: {section} is not a [section]",
                    path.display()
                )));
            };
            for (key, value) in body {
                set(section, key, value.clone(), Origin::File(path.clone()));
            }
        }
        for (var, value) in env {
            if let Some(k) = KNOWN.iter().find(|k| k.env() == *var) {
                set(
                    k.section,
                    k.key,
                    parse(k, value, var)?,
                    Origin::Env(var.clone()),
                );
            }
        }
        for (section, key, value) in flags {
            if let (Some(value), Some(k)) = (value, setting(section, key)) {
                set(
                    section,
                    key,
                    value.clone(),
                    Origin::Flag(k.flag.unwrap_or("?")),
                );
            }
        }
        Ok(Layered {
            path,
            merged,
            origins,
        })
    }

    /// Section `name` as `T` (empty when nothing sets it).
    pub fn section<T: serde::de::DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> Result<T, Failure> {
        match self.merged.get(name) {
            None => Ok(T::default()),
            Some(value) => value.clone().try_into().map_err(|e| {
                Failure::Usage(format!(
                    "[{name}] of the settings ({}): {e}",
                    self.sources(name)
                ))
            }),
        }
    }

    /// The sections the file has that sparkify does not know.
    pub fn unknown_sections(&self) -> Vec<String> {
        self.merged
            .keys()
            .filter(|s| !KNOWN.iter().any(|k| k.section == s.as_str()))
            .cloned()
            .collect()
    }

    fn sources(&self, section: &str) -> String {
        let mut from: Vec<String> = self
            .origins
            .iter()
            .filter(|((s, _), _)| s == section)
            .map(|(_, o)| o.to_string())
            .collect();
        from.sort();
        from.dedup();
        from.join(", ")
    }

    /// `[section] key` as text, and where it came from.
    pub fn get(&self, section: &str, key: &str) -> Option<(String, &Origin)> {
        let value = self.merged.get(section)?.get(key)?;
        let origin = self.origins.get(&(section.to_owned(), key.to_owned()))?;
        let text = match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some((text, origin))
    }

    /// Where `[section] key` came from.
    pub fn origin(&self, section: &str, key: &str) -> Option<&Origin> {
        self.origins.get(&(section.to_owned(), key.to_owned()))
    }

    /// Every known setting that has a value: `([section] key, value or <secret>, origin)`.
    pub fn show(&self) -> Vec<(String, String, String)> {
        KNOWN
            .iter()
            .filter_map(|k| {
                let (value, origin) = self.get(k.section, k.key)?;
                let value = if k.secret { "<secret>".into() } else { value };
                Some((
                    format!("[{}] {}", k.section, k.key),
                    value,
                    origin.to_string(),
                ))
            })
            .collect()
    }

    /// `[section] key` as text, or an error naming every place it can be set.
    pub fn require(&self, section: &str, key: &str) -> Result<String, Failure> {
        match self.get(section, key) {
            Some((value, _)) if !value.is_empty() => Ok(value),
            _ => Err(Failure::Usage(format!(
                "[{section}] {key} is not set: set it with {}",
                setting(section, key).map_or_else(|| "sparkify.toml".into(), Known::places)
            ))),
        }
    }

    /// A message for a bad value of `[section] key`, naming where it came from.
    pub fn bad(&self, section: &str, key: &str, why: &str) -> Failure {
        let (value, origin) = self.get(section, key).map_or_else(
            || (String::new(), String::new()),
            |(v, o)| (v, o.to_string()),
        );
        Failure::Usage(format!(
            "[{section}] {key} = {value:?} (from {origin}) {why}"
        ))
    }
}

/// `text` (from `what`: an environment variable, a default) as the value `k` holds.
fn parse(k: &Known, text: &str, what: &str) -> Result<toml::Value, Failure> {
    match k.kind {
        Kind::Text => Ok(toml::Value::String(text.to_owned())),
        Kind::Int => text
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| Failure::Usage(format!("{what}: expected a whole number, got {text:?}"))),
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "0" | "false" | "no" | "off" | "" => Ok(toml::Value::Boolean(false)),
            _ => Err(Failure::Usage(format!(
                "{what}: expected true or false, got {text:?}"
            ))),
        },
    }
}

fn read(path: &Path, explicit: bool) -> Result<toml::Table, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .parse::<toml::Table>()
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(toml::Table::new()),
        Err(e) => Err(Failure::Usage(format!("{}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn flags_beat_the_environment_which_beats_the_file_which_beats_defaults() {
        let file: toml::Table = "[cluster]\nidentifier = \"from-file\"\nnum_nodes = 2\n\
             [redshift]\nhost = \"file-host\"\nuser = \"file-user\"\n"
            .parse()
            .unwrap();
        let env = vec![
            ("SPARKIFY_REDSHIFT_HOST".to_owned(), "env-host".to_owned()),
            ("SPARKIFY_CLUSTER_NUM_NODES".to_owned(), "4".to_owned()),
        ];
        let flags: Vec<FlagValue> = vec![
            (
                "redshift",
                "host",
                Some(toml::Value::String("flag-host".into())),
            ),
            ("redshift", "user", None),
        ];
        let l = Layered::merge("s.toml".into(), file, &env, &flags).unwrap();
        let at = |s, k| {
            let (v, o) = l.get(s, k).unwrap();
            (v, o.clone())
        };
        assert_eq!(
            at("redshift", "host"),
            ("flag-host".into(), Origin::Flag("--redshift-host"))
        );
        assert_eq!(
            at("redshift", "user"),
            ("file-user".into(), Origin::File("s.toml".into()))
        );
        assert_eq!(
            at("cluster", "num_nodes"),
            ("4".into(), Origin::Env("SPARKIFY_CLUSTER_NUM_NODES".into()))
        );
        assert_eq!(at("cluster", "port"), ("5439".into(), Origin::Default));
        let bad = Layered::merge(
            "s.toml".into(),
            toml::Table::new(),
            &[("SPARKIFY_CLUSTER_NUM_NODES".into(), "four".into())],
            &[],
        );
        assert!(bad.is_err());
        let missing = l.require("aws", "profile").unwrap_err().to_string();
        assert_eq!(
            missing,
            "[aws] profile is not set: set it with --profile, SPARKIFY_AWS_PROFILE, or profile in \
             [aws] of sparkify.toml"
        );
    }
}
