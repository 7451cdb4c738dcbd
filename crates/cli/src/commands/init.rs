//! `sparkify init`: a commented `sparkify.toml`, or the Udacity Sparkify project's boto3-style
//! `dwh.cfg` converted into one.
//! Secrets are never copied: AWS keys belong to the AWS credential chain (`aws configure`),
//! the database password to `PGPASSWORD`, `~/.pgpass` or `--iam-auth`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, value};

use crate::args::InitArgs;
use crate::exit::Failure;

pub fn init(args: InitArgs) -> anyhow::Result<()> {
    let path = args
        .config
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("sparkify.toml"));
    if path.exists() && !args.force {
        return Err(Failure::Usage(format!(
            "{} exists: pass --force to overwrite it",
            path.display()
        ))
        .into());
    }
    let text = match &args.from_dwh_cfg {
        None => crate::layers::template(),
        Some(cfg) => {
            let (text, left_out) = convert(cfg)?;
            if !left_out.is_empty() {
                eprintln!(
                    "left out of {}: {} (secrets are not kept in the file). Give AWS keys to \
                     the AWS credential chain (`aws configure`, or AWS_PROFILE), and the \
                     database password as PGPASSWORD or in ~/.pgpass, or use --iam-auth.",
                    path.display(),
                    left_out.join(", ")
                );
            }
            text
        }
    };
    std::fs::write(&path, text).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// An INI file: sections (upper case) of keys (upper case) and values (quotes taken off).
fn ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_uppercase();
            out.entry(section.clone()).or_default();
            continue;
        }
        if let Some((k, v)) = line.split_once('=').or_else(|| line.split_once(':')) {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(v);
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_uppercase(), v.to_owned());
        }
    }
    out
}

/// `dwh.cfg` as `sparkify.toml`, and the names of the secrets it held (never their values).
pub fn convert(path: &Path) -> Result<(String, Vec<String>), Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let cfg = ini(&text);
    let Some(dwh) = cfg.get("DWH") else {
        return Err(Failure::Usage(format!(
            "{} has no [DWH] section: is it the Udacity Sparkify project's dwh.cfg?",
            path.display()
        )));
    };
    let empty = BTreeMap::new();
    let section = |name: &str| cfg.get(name).unwrap_or(&empty);
    let get = |s: &BTreeMap<String, String>, k: &str| s.get(k).filter(|v| !v.is_empty()).cloned();
    let mut doc = DocumentMut::new();
    doc.decor_mut().set_prefix(format!(
        "# sparkify.toml, converted from {} by `sparkify init --from-dwh-cfg`.\n\
         # Secrets are not kept here: AWS keys come from the AWS credential chain (`aws configure`),\n\
         # the database password from PGPASSWORD, ~/.pgpass, or --iam-auth.\n\n",
        path.display()
    ));
    let mut put = |table: &str, key: &str, v: Option<Item>| {
        if let Some(v) = v {
            let t = doc
                .entry(table)
                .or_insert_with(|| Item::Table(Table::new()));
            t[key] = v;
        }
    };
    let text_v = |v: Option<String>| v.map(value);
    let int_v = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok()).map(value);
    let aws = section("AWS");
    put("aws", "region", text_v(get(aws, "REGION")));
    put(
        "cluster",
        "identifier",
        text_v(get(dwh, "DWH_CLUSTER_IDENTIFIER")),
    );
    put("cluster", "node_type", text_v(get(dwh, "DWH_NODE_TYPE")));
    let nodes = match get(dwh, "DWH_CLUSTER_TYPE").as_deref() {
        Some("single-node") => Some("1".to_owned()),
        _ => get(dwh, "DWH_NUM_NODES"),
    };
    put("cluster", "num_nodes", int_v(nodes));
    put("cluster", "database", text_v(get(dwh, "DWH_DB")));
    put("cluster", "user", text_v(get(dwh, "DWH_DB_USER")));
    put("cluster", "port", int_v(get(dwh, "DWH_PORT")));
    put("iam", "role_name", text_v(get(dwh, "DWH_IAM_ROLE_NAME")));
    put("iam", "role_arn", text_v(get(section("IAM_ROLE"), "ARN")));
    let cluster = section("CLUSTER");
    put("redshift", "host", text_v(get(cluster, "HOST")));
    put(
        "redshift",
        "port",
        int_v(get(cluster, "DB_PORT").or_else(|| get(dwh, "DWH_PORT"))),
    );
    put(
        "redshift",
        "database",
        text_v(get(cluster, "DB_NAME").or_else(|| get(dwh, "DWH_DB"))),
    );
    put(
        "redshift",
        "user",
        text_v(get(cluster, "DB_USER").or_else(|| get(dwh, "DWH_DB_USER"))),
    );
    let s3 = section("S3");
    put("s3", "events", text_v(get(s3, "LOG_DATA")));
    put("s3", "songs", text_v(get(s3, "SONG_DATA")));
    put("s3", "jsonpaths", text_v(get(s3, "LOG_JSONPATH")));
    let mut left_out = Vec::new();
    for (sec, key) in [
        ("AWS", "KEY"),
        ("AWS", "SECRET"),
        ("DWH", "DWH_DB_PASSWORD"),
        ("CLUSTER", "DB_PASSWORD"),
    ] {
        if get(section(sec), key).is_some() {
            left_out.push(format!("[{sec}] {key}"));
        }
    }
    Ok((doc.to_string(), left_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_valid_toml_with_every_section() {
        let template = crate::layers::template();
        let t: toml::Table = template.parse().unwrap_or_default();
        for s in ["aws", "cluster", "iam", "redshift", "s3"] {
            assert!(t.contains_key(s), "{s}");
        }
        // Every setting is in it, with its default where it has one; no secret's value.
        for k in crate::layers::KNOWN {
            assert!(template.contains(k.doc), "{}", k.key);
            if let Some(default) = k.default {
                assert!(template.contains(default), "{} = {default}", k.key);
            }
        }
        // Uncommented, each value is one the settings accept.
        let uncommented: String = template
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(setting)
                    if setting.split_once(" = ").is_some_and(|(k, _)| {
                        k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    setting.split("  (").next().unwrap_or(setting)
                }
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let file: toml::Table = uncommented
            .parse()
            .expect("the settings uncommented are TOML");
        assert_eq!(file["cluster"]["num_nodes"].as_integer(), Some(1));
        assert_eq!(file["s3"]["attempts"].as_integer(), Some(5));
    }

    #[test]
    fn ini_values_lose_their_quotes() {
        let cfg = ini("[S3]\nLOG_DATA='s3://udacity-dend/log_data'\n[dwh]\ndwh_port = 5439\n");
        assert_eq!(cfg["S3"]["LOG_DATA"], "s3://udacity-dend/log_data");
        assert_eq!(cfg["DWH"]["DWH_PORT"], "5439");
    }
}
