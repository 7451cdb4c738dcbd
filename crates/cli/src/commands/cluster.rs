//! `sparkify cluster create|status|delete`: the seed's `cluster_create.py`,
//! `cluster_status.py` and `cluster_delete.py`, each step idempotent
//! ([`sparkify_cluster::Cloud`]). Every setting is checked before the first AWS call.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sparkify_cluster::{Cloud, ClusterInfo, ClusterSpec, NODE_TYPES, Outcome, check_cidr};
use sparkify_core::sink::QueryResult;
use sparkify_s3::S3Options;

use super::config::cluster_flag_values;
use crate::args::{
    ClusterAction, ClusterArgs, ClusterCmd, ClusterCreateArgs, ClusterDeleteArgs,
    ClusterStatusArgs, ConfigArgs, Format,
};
use crate::exit::Failure;
use crate::layers::Layered;
use crate::output;
use crate::settings::File;

pub fn cluster(cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd.action {
        ClusterAction::Create(args) => create(args),
        ClusterAction::Status(args) => status(args),
        ClusterAction::Delete(args) => delete(args),
    }
}

/// The settings of a cluster command.
struct Resolved {
    layers: Layered,
    file: File,
}

impl Resolved {
    fn load(config: &ConfigArgs, cluster: &ClusterArgs) -> Result<Self, Failure> {
        let layers = Layered::load(config, &cluster_flag_values(cluster))?;
        let file = File::from_layers(&layers)?;
        Ok(Resolved { layers, file })
    }

    fn identifier(&self) -> Result<String, Failure> {
        self.layers.require("cluster", "identifier")
    }

    fn aws(&self) -> S3Options {
        crate::settings::aws_options(&self.file)
    }

    fn role_name(&self) -> Result<String, Failure> {
        self.layers.require("iam", "role_name")
    }

    /// What `create` makes, every setting checked.
    fn spec(&self) -> Result<ClusterSpec, Failure> {
        let c = &self.file.cluster;
        let identifier = self.identifier()?;
        let node_type = self.layers.require("cluster", "node_type")?;
        if !NODE_TYPES.contains(&node_type.as_str()) {
            return Err(self.layers.bad(
                "cluster",
                "node_type",
                &format!(
                    "is not a Redshift node type: expected one of {}",
                    NODE_TYPES.join(", ")
                ),
            ));
        }
        let nodes = c.num_nodes.unwrap_or(1);
        if nodes == 0 || nodes > 128 {
            return Err(self.layers.bad("cluster", "num_nodes", "is not 1 to 128"));
        }
        Ok(ClusterSpec {
            identifier,
            node_type,
            nodes,
            database: self.layers.require("cluster", "database")?,
            user: self.layers.require("cluster", "user")?,
            port: c.port.unwrap_or(5439),
            // The master password only from PGPASSWORD; else Redshift keeps one in Secrets
            // Manager, and clients use --iam-auth.
            password: sparkify_sink_redshift::env_password(),
            security_group_id: c.security_group_id.clone(),
        })
    }

    /// The CIDR to let in: `[cluster] allow_cidr` (`--cidr`); 0.0.0.0/0 only when asked for.
    fn cidr(&self, allow_anywhere: bool) -> Result<String, Failure> {
        match self.layers.get("cluster", "allow_cidr") {
            Some((cidr, _)) => {
                check_cidr(&cidr).map_err(|why| self.layers.bad("cluster", "allow_cidr", &why))?;
                if cidr.ends_with("/0") && !allow_anywhere {
                    return Err(self.layers.bad(
                        "cluster",
                        "allow_cidr",
                        "lets anyone reach the cluster: pass --allow-anywhere to mean it",
                    ));
                }
                Ok(cidr)
            }
            None if allow_anywhere => Ok("0.0.0.0/0".into()),
            None => Err(Failure::Usage(format!(
                "[cluster] allow_cidr is not set: set the address allowed to reach the cluster \
                 (e.g. 203.0.113.7/32) with {}; or pass --allow-anywhere for 0.0.0.0/0",
                crate::layers::setting("cluster", "allow_cidr")
                    .map_or_else(String::new, |k| k.places())
            ))),
        }
    }
}

fn said(outcome: Outcome, made: &str) -> String {
    match outcome {
        Outcome::Created => made.to_owned(),
        Outcome::Existed => "exists, reused".to_owned(),
    }
}

/// A spinner with the cluster's status on a terminal; each new status as a line otherwise.
fn waiting(what: &str) -> (ProgressBar, impl FnMut(&str) + use<>) {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };
    let shown = bar.clone();
    let what = what.to_owned();
    let mut last = String::new();
    let progress = move |status: &str| {
        if status != last {
            if shown.is_hidden() {
                eprintln!("{what}: {status}");
            }
            shown.set_message(format!("{what}: {status}"));
            last = status.to_owned();
        }
    };
    (bar, progress)
}

fn create(args: ClusterCreateArgs) -> anyhow::Result<()> {
    let r = Resolved::load(&args.config, &args.cluster)?;
    let spec = r.spec()?;
    let cidr = r.cidr(args.allow_anywhere)?;
    let role_name = r.role_name()?;
    let cloud = Cloud::connect(&r.aws())?;

    let (role_arn, made) = cloud.ensure_role(&role_name)?;
    println!(
        "role {role_name}: {} ({role_arn}; trusts redshift.amazonaws.com, AmazonS3ReadOnlyAccess)",
        said(made, "created")
    );
    let made = cloud.create_cluster(&spec, &role_arn)?;
    println!(
        "cluster {}: {} ({} × {})",
        spec.identifier,
        said(made, "created"),
        spec.nodes,
        spec.node_type
    );
    let (bar, mut progress) = waiting(&format!("cluster {}", spec.identifier));
    let info = cloud.wait_available(
        &spec.identifier,
        Duration::from_secs(args.timeout),
        Duration::from_secs(args.poll.max(1)),
        &mut progress,
    );
    bar.finish_and_clear();
    let info = info?;
    let sg = info
        .security_groups
        .first()
        .cloned()
        .or_else(|| spec.security_group_id.clone())
        .ok_or_else(|| sparkify_cluster::Error::NoSecurityGroup(spec.identifier.clone()))?;
    let port = info.port.unwrap_or(spec.port);
    let made = cloud.authorize_ingress(&sg, port, &cidr, &spec.identifier)?;
    println!(
        "ingress {cidr} to port {port} on {sg}: {}",
        said(made, "added")
    );
    let host = info.endpoint.clone().unwrap_or_default();
    write_back(&r.layers.path, &spec, &host, port, &role_name, &role_arn)?;
    println!(
        "{}: [redshift] host = {host:?}, port = {port}, database = {:?}, user = {:?}; \
         [iam] role_arn = {role_arn:?}",
        r.layers.path.display(),
        spec.database,
        spec.user
    );
    Ok(())
}

/// The endpoint, the role and the cluster's identity written into the config file, every
/// other line of it (comments included) kept as it was.
fn write_back(
    path: &Path,
    spec: &ClusterSpec,
    host: &str,
    port: u16,
    role_name: &str,
    role_arn: &str,
) -> Result<(), Failure> {
    let bad = |e: &dyn std::fmt::Display| Failure::Usage(format!("{}: {e}", path.display()));
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(bad(&e)),
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| bad(&e))?;
    let mut set = |table: &str, key: &str, v: toml_edit::Value| {
        let t = doc
            .entry(table)
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
        match t.get_mut(key) {
            // Keep the comments around the value.
            Some(toml_edit::Item::Value(old)) => {
                let decor = old.decor().clone();
                *old = v;
                *old.decor_mut() = decor;
            }
            _ => t[key] = toml_edit::Item::Value(v),
        }
    };
    set("cluster", "identifier", spec.identifier.as_str().into());
    set("iam", "role_name", role_name.into());
    set("iam", "role_arn", role_arn.into());
    set("redshift", "host", host.into());
    set("redshift", "port", i64::from(port).into());
    set("redshift", "database", spec.database.as_str().into());
    set("redshift", "user", spec.user.as_str().into());
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(|e| bad(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| bad(&e))
}

fn status(args: ClusterStatusArgs) -> anyhow::Result<()> {
    let r = Resolved::load(&args.config, &args.cluster)?;
    let id = r.identifier()?;
    let cloud = Cloud::connect(&r.aws())?;
    let Some(info) = cloud.describe(&id)? else {
        if args.format == Format::Json {
            println!(
                "{}",
                serde_json::json!({ "identifier": id, "status": "absent" })
            );
        } else {
            println!("cluster {id}: does not exist");
        }
        return Err(Failure::Differs(format!("cluster {id} does not exist")).into());
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&info)?),
        format => println!(
            "{}",
            output::result(&status_table(&info), format).trim_end_matches('\n')
        ),
    }
    if info.is_available() {
        Ok(())
    } else {
        Err(Failure::Differs(format!("cluster {id} is {}, not available", info.status)).into())
    }
}

fn status_table(info: &ClusterInfo) -> QueryResult {
    let endpoint = match (&info.endpoint, info.port) {
        (Some(host), Some(port)) => Some(format!("{host}:{port}")),
        (Some(host), None) => Some(host.clone()),
        _ => None,
    };
    QueryResult {
        columns: [
            "identifier",
            "status",
            "node type",
            "nodes",
            "endpoint",
            "vpc",
            "role",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: vec![vec![
            Some(info.identifier.clone()),
            Some(info.status.clone()),
            Some(info.node_type.clone()),
            Some(info.nodes.to_string()),
            endpoint,
            info.vpc.clone(),
            Some(info.roles.join(", ")),
        ]],
    }
}

fn delete(args: ClusterDeleteArgs) -> anyhow::Result<()> {
    let r = Resolved::load(&args.config, &args.cluster)?;
    let id = r.identifier()?;
    let role_name = r.role_name()?;
    let cloud = Cloud::connect(&r.aws())?;
    let info = cloud.describe(&id)?;
    let snapshot = (!args.skip_final_snapshot)
        .then(|| format!("{id}-final-{}", chrono::Utc::now().format("%Y%m%d%H%M%S")));
    if cloud.delete_cluster(&id, snapshot.as_deref())? {
        match &snapshot {
            Some(s) => println!("cluster {id}: deleting, final snapshot {s}"),
            None => println!("cluster {id}: deleting, no final snapshot"),
        }
        let (bar, mut progress) = waiting(&format!("cluster {id}"));
        let gone = cloud.wait_gone(
            &id,
            Duration::from_secs(args.timeout),
            Duration::from_secs(args.poll.max(1)),
            &mut progress,
        );
        bar.finish_and_clear();
        gone?;
        println!("cluster {id}: gone");
    } else {
        println!("cluster {id}: already gone");
    }
    // The rules sparkify added, on the groups the cluster was in (or the configured one).
    let mut groups = info.map(|i| i.security_groups).unwrap_or_default();
    groups.extend(r.file.cluster.security_group_id.clone());
    groups.dedup();
    for sg in groups {
        let n = cloud.revoke_ingress(&sg, &id)?;
        println!("ingress on {sg}: {n} rule(s) revoked");
    }
    if args.keep_role {
        println!("role {role_name}: kept");
    } else if cloud.delete_role(&role_name)? {
        println!("role {role_name}: policies detached, deleted");
    } else {
        println!("role {role_name}: already gone");
    }
    Ok(())
}
