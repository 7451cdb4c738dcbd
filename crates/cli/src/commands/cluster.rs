//! `sparkify cluster create|status|delete`: the Udacity project's `cluster_create.py`,
//! `cluster_status.py` and `cluster_delete.py`, each step idempotent
//! ([`sparkify_cluster::Cloud`]), for a provisioned cluster or, with `--serverless` (or
//! `[redshift] workgroup`), a Redshift Serverless namespace and workgroup. Every setting is
//! checked before the first AWS call.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sparkify_cluster::serverless::{self, ServerlessSpec, WorkgroupInfo};
use sparkify_cluster::{
    Cloud, ClusterInfo, ClusterSpec, NODE_TYPES, Outcome, Patience, check_cidr,
};
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

    fn serverless(&self) -> bool {
        self.file.redshift.is_serverless()
    }

    fn workgroup(&self) -> Result<String, Failure> {
        let name = self.layers.require("redshift", "workgroup")?;
        serverless::check_name(&name)
            .map_err(|why| self.layers.bad("redshift", "workgroup", &why))?;
        Ok(name)
    }

    fn namespace(&self) -> Result<String, Failure> {
        match self.layers.get("redshift", "namespace") {
            Some((name, _)) => {
                serverless::check_name(&name)
                    .map_err(|why| self.layers.bad("redshift", "namespace", &why))?;
                Ok(name)
            }
            None => self.workgroup(),
        }
    }

    /// What `create --serverless` makes, every setting checked.
    fn serverless_spec(&self) -> Result<ServerlessSpec, Failure> {
        let c = &self.file.cluster;
        let base_capacity = c.base_capacity.unwrap_or(8);
        serverless::check_base_capacity(base_capacity)
            .map_err(|why| self.layers.bad("cluster", "base_capacity", &why))?;
        let port = c.port.unwrap_or(5439);
        serverless::check_port(port).map_err(|why| self.layers.bad("cluster", "port", &why))?;
        Ok(ServerlessSpec {
            workgroup: self.workgroup()?,
            namespace: self.namespace()?,
            database: self.layers.require("cluster", "database")?,
            user: self.layers.require("cluster", "user")?,
            port,
            base_capacity,
            // As the cluster's: PGPASSWORD, else Secrets Manager and --iam-auth.
            password: sparkify_sink_redshift::env_password(),
            security_group_id: c.security_group_id.clone(),
        })
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

/// The role Redshift reads S3 with, made or found; its ARN.
fn role(cloud: &Cloud, name: &str) -> sparkify_cluster::Result<String> {
    let (arn, made) = cloud.ensure_role(name)?;
    println!(
        "role {name}: {} ({arn}; trusts redshift.amazonaws.com and \
         redshift-serverless.amazonaws.com, AmazonS3ReadOnlyAccess)",
        said(made, "created")
    );
    Ok(arn)
}

/// Lets `cidr` reach `port` of `name` through the first of the groups it is in (`.0`), else
/// the configured one (`.1`).
fn ingress(
    cloud: &Cloud,
    groups: (&[String], Option<&String>),
    port: u16,
    cidr: &str,
    name: &str,
) -> sparkify_cluster::Result<()> {
    let sg = groups
        .0
        .first()
        .or(groups.1)
        .cloned()
        .ok_or_else(|| sparkify_cluster::Error::NoSecurityGroup(name.to_owned()))?;
    let made = cloud.authorize_ingress(&sg, port, cidr, name)?;
    println!(
        "ingress {cidr} to port {port} on {sg}: {}",
        said(made, "added")
    );
    Ok(())
}

/// `--timeout` and `--poll` as the waits take them.
fn patience(timeout: u64, poll: u64) -> Patience {
    Patience {
        timeout: Duration::from_secs(timeout),
        every: Duration::from_secs(poll.max(1)),
    }
}

/// `wait` with a spinner (or status lines) saying how `what` is.
fn waited<T>(
    what: &str,
    wait: impl FnOnce(&mut dyn FnMut(&str)) -> sparkify_cluster::Result<T>,
) -> sparkify_cluster::Result<T> {
    let (bar, mut progress) = waiting(what);
    let done = wait(&mut progress);
    bar.finish_and_clear();
    done
}

fn create(args: ClusterCreateArgs) -> anyhow::Result<()> {
    let r = Resolved::load(&args.config, &args.cluster)?;
    if r.serverless() {
        return create_serverless(&args, &r);
    }
    let spec = r.spec()?;
    let cidr = r.cidr(args.allow_anywhere)?;
    let role_name = r.role_name()?;
    let cloud = Cloud::connect(&r.aws())?;

    let role_arn = role(&cloud, &role_name)?;
    let made = cloud.create_cluster(&spec, &role_arn)?;
    println!(
        "cluster {}: {} ({} × {})",
        spec.identifier,
        said(made, "created"),
        spec.nodes,
        spec.node_type
    );
    let info = waited(&format!("cluster {}", spec.identifier), |progress| {
        cloud.wait_available(
            &spec.identifier,
            patience(args.timeout, args.poll),
            progress,
        )
    })?;
    let port = info.port.unwrap_or(spec.port);
    let groups = (
        info.security_groups.as_slice(),
        spec.security_group_id.as_ref(),
    );
    ingress(&cloud, groups, port, &cidr, &spec.identifier)?;
    let host = info.endpoint.clone().unwrap_or_default();
    write_back(
        &r.layers.path,
        &[
            ("cluster", "identifier", spec.identifier.as_str().into()),
            ("iam", "role_name", role_name.as_str().into()),
            ("iam", "role_arn", role_arn.as_str().into()),
            ("redshift", "host", host.as_str().into()),
            ("redshift", "port", i64::from(port).into()),
            ("redshift", "database", spec.database.as_str().into()),
            ("redshift", "user", spec.user.as_str().into()),
        ],
    )?;
    println!(
        "{}: [redshift] host = {host:?}, port = {port}, database = {:?}, user = {:?}; \
         [iam] role_arn = {role_arn:?}",
        r.layers.path.display(),
        spec.database,
        spec.user
    );
    Ok(())
}

/// `create --serverless`: the role, the namespace (the role its default), the workgroup, a
/// wait until both are available, the ingress rule on the workgroup's port.
fn create_serverless(args: &ClusterCreateArgs, r: &Resolved) -> anyhow::Result<()> {
    let spec = r.serverless_spec()?;
    let cidr = r.cidr(args.allow_anywhere)?;
    let role_name = r.role_name()?;
    let cloud = Cloud::connect(&r.aws())?;
    let wait = patience(args.timeout, args.poll);

    let role_arn = role(&cloud, &role_name)?;
    let made = cloud.create_namespace(&spec, &role_arn)?;
    println!(
        "namespace {}: {} (database {}, admin {}, default role {role_name})",
        spec.namespace,
        said(made, "created"),
        spec.database,
        spec.user
    );
    waited(&format!("namespace {}", spec.namespace), |progress| {
        cloud.wait_namespace_available(&spec.namespace, wait, progress)
    })?;
    let made = cloud.create_workgroup(&spec)?;
    println!(
        "workgroup {}: {} (base capacity {} RPUs, port {})",
        spec.workgroup,
        said(made, "created"),
        spec.base_capacity,
        spec.port
    );
    let info = waited(&format!("workgroup {}", spec.workgroup), |progress| {
        cloud.wait_workgroup_available(&spec.workgroup, wait, progress)
    })?;
    let port = info.port.unwrap_or(spec.port);
    let groups = (
        info.security_groups.as_slice(),
        spec.security_group_id.as_ref(),
    );
    ingress(&cloud, groups, port, &cidr, &spec.workgroup)?;
    let host = info.endpoint.clone().unwrap_or_default();
    write_back(
        &r.layers.path,
        &[
            ("iam", "role_name", role_name.as_str().into()),
            ("iam", "role_arn", role_arn.as_str().into()),
            ("redshift", "serverless", true.into()),
            ("redshift", "workgroup", spec.workgroup.as_str().into()),
            ("redshift", "namespace", spec.namespace.as_str().into()),
            ("redshift", "host", host.as_str().into()),
            ("redshift", "port", i64::from(port).into()),
            ("redshift", "database", spec.database.as_str().into()),
            ("redshift", "user", spec.user.as_str().into()),
        ],
    )?;
    println!(
        "{}: [redshift] serverless = true, workgroup = {:?}, namespace = {:?}, host = {host:?}, \
         port = {port}, database = {:?}, user = {:?}; [iam] role_arn = {role_arn:?}",
        r.layers.path.display(),
        spec.workgroup,
        spec.namespace,
        spec.database,
        spec.user
    );
    Ok(())
}

/// `settings` (section, key, value) written into the config file, every other line of it
/// (comments included) kept as it was.
fn write_back(path: &Path, settings: &[(&str, &str, toml_edit::Value)]) -> Result<(), Failure> {
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
    for (table, key, value) in settings {
        set(table, key, value.clone());
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(|e| bad(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| bad(&e))
}

/// What `status` shows of a cluster or a workgroup.
struct Shown {
    json: serde_json::Value,
    table: QueryResult,
    status: String,
    available: bool,
}

fn status(args: ClusterStatusArgs) -> anyhow::Result<()> {
    let r = Resolved::load(&args.config, &args.cluster)?;
    let (kind, key, name) = if r.serverless() {
        ("workgroup", "workgroup", r.workgroup()?)
    } else {
        ("cluster", "identifier", r.identifier()?)
    };
    let cloud = Cloud::connect(&r.aws())?;
    let shown = if r.serverless() {
        cloud.workgroup(&name)?.map(|info| Shown {
            json: serde_json::to_value(&info).unwrap_or_default(),
            table: workgroup_table(&info),
            status: info.status.clone(),
            available: info.is_available(),
        })
    } else {
        cloud.describe(&name)?.map(|info| Shown {
            json: serde_json::to_value(&info).unwrap_or_default(),
            table: status_table(&info),
            status: info.status.clone(),
            available: info.is_available(),
        })
    };
    let Some(shown) = shown else {
        if args.format == Format::Json {
            println!("{}", serde_json::json!({ key: name, "status": "absent" }));
        } else {
            println!("{kind} {name}: does not exist");
        }
        return Err(Failure::Differs(format!("{kind} {name} does not exist")).into());
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&shown.json)?),
        format => println!(
            "{}",
            output::result(&shown.table, format).trim_end_matches('\n')
        ),
    }
    if shown.available {
        Ok(())
    } else {
        Err(Failure::Differs(format!("{kind} {name} is {}, not available", shown.status)).into())
    }
}

/// `host:port`, or what there is of it.
fn endpoint(host: Option<&String>, port: Option<u16>) -> Option<String> {
    match (host, port) {
        (Some(host), Some(port)) => Some(format!("{host}:{port}")),
        (Some(host), None) => Some(host.clone()),
        _ => None,
    }
}

fn status_table(info: &ClusterInfo) -> QueryResult {
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
            endpoint(info.endpoint.as_ref(), info.port),
            info.vpc.clone(),
            Some(info.roles.join(", ")),
        ]],
    }
}

fn workgroup_table(info: &WorkgroupInfo) -> QueryResult {
    QueryResult {
        columns: [
            "workgroup",
            "namespace",
            "status",
            "base capacity",
            "endpoint",
            "database",
            "role",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: vec![vec![
            Some(info.workgroup.clone()),
            Some(info.namespace.clone()),
            Some(info.status.clone()),
            info.base_capacity.map(|c| format!("{c} RPUs")),
            endpoint(info.endpoint.as_ref(), info.port),
            info.database.clone(),
            Some(info.roles.join(", ")),
        ]],
    }
}

/// `ID-final-YYYYMMDDHHMMSS`, unless `--skip-final-snapshot`.
fn final_snapshot(args: &ClusterDeleteArgs, id: &str) -> Option<String> {
    (!args.skip_final_snapshot)
        .then(|| format!("{id}-final-{}", chrono::Utc::now().format("%Y%m%d%H%M%S")))
}

/// Says that `what` is deleting and waits until it is gone; or says it was gone already.
fn deleted(
    what: &str,
    deleting: bool,
    snapshot: Option<&str>,
    wait: impl FnOnce(&mut dyn FnMut(&str)) -> sparkify_cluster::Result<()>,
) -> anyhow::Result<()> {
    if !deleting {
        println!("{what}: already gone");
        return Ok(());
    }
    match snapshot {
        Some(s) => println!("{what}: deleting, final snapshot {s}"),
        None => println!("{what}: deleting, no final snapshot"),
    }
    waited(what, wait)?;
    println!("{what}: gone");
    Ok(())
}

fn delete(args: ClusterDeleteArgs) -> anyhow::Result<()> {
    let r = Resolved::load(&args.config, &args.cluster)?;
    let role_name = r.role_name()?;
    let wait = patience(args.timeout, args.poll);
    let (name, groups, cloud) = if r.serverless() {
        let workgroup = r.workgroup()?;
        let namespace = r.namespace()?;
        let cloud = Cloud::connect(&r.aws())?;
        let info = cloud.workgroup(&workgroup)?;
        let deleting = cloud.delete_workgroup(&workgroup)?;
        deleted(&format!("workgroup {workgroup}"), deleting, None, |p| {
            cloud.wait_workgroup_gone(&workgroup, wait, p)
        })?;
        // The snapshot is the namespace's: it holds the data.
        let snapshot = final_snapshot(&args, &namespace);
        let deleting = cloud.delete_namespace(&namespace, snapshot.as_deref())?;
        deleted(
            &format!("namespace {namespace}"),
            deleting,
            snapshot.as_deref(),
            |p| cloud.wait_namespace_gone(&namespace, wait, p),
        )?;
        (workgroup, info.map(|i| i.security_groups), cloud)
    } else {
        let id = r.identifier()?;
        let cloud = Cloud::connect(&r.aws())?;
        let info = cloud.describe(&id)?;
        let snapshot = final_snapshot(&args, &id);
        let deleting = cloud.delete_cluster(&id, snapshot.as_deref())?;
        deleted(
            &format!("cluster {id}"),
            deleting,
            snapshot.as_deref(),
            |p| cloud.wait_gone(&id, wait, p),
        )?;
        (id, info.map(|i| i.security_groups), cloud)
    };
    // The rules sparkify added, on the groups it was in (or the configured one).
    let mut groups = groups.unwrap_or_default();
    groups.extend(r.file.cluster.security_group_id.clone());
    groups.dedup();
    for sg in groups {
        let n = cloud.revoke_ingress(&sg, &name)?;
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
