//! `sparkify config show`: every setting's effective value and where it came from (flag,
//! environment, file or default); secrets as `<secret>`.

use sparkify_core::sink::QueryResult;

use crate::args::{ClusterArgs, ConfigAction, ConfigCmd};
use crate::layers::{FlagValue, Layered};
use crate::output;
use crate::settings::{File, flag_values};

pub fn config(cmd: ConfigCmd) -> anyhow::Result<()> {
    let ConfigAction::Show(args) = cmd.action;
    let mut flags = flag_values(Some(&args.s3), Some(&args.redshift));
    flags.extend(cluster_flag_values(&args.cluster));
    let layers = Layered::load(&args.config, &flags)?;
    // The same checks every command makes.
    File::from_layers(&layers)?;
    let mut rows: Vec<Vec<Option<String>>> = layers
        .show()
        .into_iter()
        .map(|(setting, value, origin)| vec![Some(setting), Some(value), Some(origin)])
        .collect();
    // The password is looked up before the file's: say where it will come from.
    if sparkify_sink_redshift::env_password().is_some() {
        rows.retain(|r| r[0].as_deref() != Some("[redshift] password"));
        rows.push(vec![
            Some("[redshift] password".into()),
            Some("<secret>".into()),
            Some(format!("env {}", sparkify_sink_redshift::PASSWORD_ENV)),
        ]);
    }
    let result = QueryResult {
        columns: vec!["setting".into(), "value".into(), "from".into()],
        rows,
    };
    println!(
        "{}",
        output::result(&result, args.format).trim_end_matches('\n')
    );
    Ok(())
}

/// The cluster flags, as layers over `[cluster]` and `[aws]`.
pub fn cluster_flag_values(c: &ClusterArgs) -> Vec<FlagValue> {
    let text = |v: &Option<String>| v.clone().map(toml::Value::String);
    vec![
        ("cluster", "identifier", text(&c.cluster_id)),
        ("cluster", "node_type", text(&c.node_type)),
        (
            "cluster",
            "num_nodes",
            c.nodes.map(|n| toml::Value::Integer(i64::from(n))),
        ),
        ("cluster", "allow_cidr", text(&c.cidr)),
        (
            "cluster",
            "base_capacity",
            c.base_capacity.map(|n| toml::Value::Integer(i64::from(n))),
        ),
        (
            "redshift",
            "serverless",
            c.serverless.then_some(toml::Value::Boolean(true)),
        ),
        ("redshift", "workgroup", text(&c.workgroup)),
        ("redshift", "namespace", text(&c.namespace)),
        ("aws", "region", text(&c.region)),
        ("aws", "profile", text(&c.profile)),
    ]
}
