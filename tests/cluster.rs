//! The operating half: `sparkify cluster create|status|delete` against moto (checked through
//! the AWS SDK itself, not through sparkify), the same for Redshift Serverless against moto
//! and the strict Serverless stub, `init`, `config show`, `~/.pgpass` and `--iam-auth`.
#![allow(clippy::unwrap_used)] // a test may panic on what it does not expect

use std::path::Path;
use std::process::Output;

use sparkify_test_support::cli::{self, text};
use sparkify_test_support::{moto, pg, serverless};

fn sparkify(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    cli::run(env!("CARGO_BIN_EXE_sparkify"), dir, args, env)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The AWS SDK's own clients of the test's moto server.
struct Aws {
    rt: tokio::runtime::Runtime,
    iam: aws_sdk_iam::Client,
    redshift: aws_sdk_redshift::Client,
    ec2: aws_sdk_ec2::Client,
}

impl Aws {
    fn new(moto: &moto::Moto) -> Aws {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let shared = rt.block_on(sparkify_s3::sdk_config(&moto::options(&moto.endpoint)));
        Aws {
            iam: aws_sdk_iam::Client::new(&shared),
            redshift: aws_sdk_redshift::Client::new(&shared),
            ec2: aws_sdk_ec2::Client::new(&shared),
            rt,
        }
    }

    fn clusters(&self, id: &str) -> Vec<aws_sdk_redshift::types::Cluster> {
        self.rt.block_on(async {
            match self
                .redshift
                .describe_clusters()
                .cluster_identifier(id)
                .send()
                .await
            {
                Ok(c) => c.clusters().to_vec(),
                Err(_) => Vec::new(),
            }
        })
    }

    fn role(&self, name: &str) -> Option<(String, String, Vec<String>)> {
        self.rt.block_on(async {
            let role = self.iam.get_role().role_name(name).send().await.ok()?;
            let role = role.role()?;
            let policies = self
                .iam
                .list_attached_role_policies()
                .role_name(name)
                .send()
                .await
                .unwrap();
            Some((
                role.arn().to_owned(),
                role.assume_role_policy_document()
                    .unwrap_or_default()
                    .to_owned(),
                policies
                    .attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_owned))
                    .collect(),
            ))
        })
    }

    /// A new security group of its own in the default VPC, with no ingress rule.
    fn security_group(&self, name: &str) -> String {
        self.rt.block_on(async {
            let vpcs = self.ec2.describe_vpcs().send().await.unwrap();
            let vpc = vpcs
                .vpcs()
                .iter()
                .find(|v| v.is_default() == Some(true))
                .and_then(|v| v.vpc_id())
                .unwrap()
                .to_owned();
            let made = self
                .ec2
                .create_security_group()
                .group_name(name)
                .description("sparkify's cluster test")
                .vpc_id(vpc)
                .send()
                .await
                .unwrap();
            made.group_id().unwrap().to_owned()
        })
    }

    /// Every TCP ingress rule of `sg`: (from port, to port, CIDR).
    fn ingress(&self, sg: &str) -> Vec<(i32, i32, String)> {
        self.rt.block_on(async {
            let found = self
                .ec2
                .describe_security_groups()
                .group_ids(sg)
                .send()
                .await
                .unwrap();
            let mut out = Vec::new();
            for g in found.security_groups() {
                for p in g.ip_permissions() {
                    for r in p.ip_ranges() {
                        out.push((
                            p.from_port().unwrap_or(-1),
                            p.to_port().unwrap_or(-1),
                            r.cidr_ip().unwrap_or_default().to_owned(),
                        ));
                    }
                }
            }
            out
        })
    }
}

#[test]
fn cluster_create_status_and_delete_against_moto() {
    let moto = moto::Moto::shared();
    let aws = Aws::new(moto);
    let env = moto.env();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sparkify.toml");
    // A group of its own: other tests open the default group of the same moto at once.
    let group = aws.security_group("sparkify-it");
    std::fs::write(
        &config,
        format!(
            "# my team's settings\n[cluster]\nidentifier = \"sparkify-it\" # the test cluster\n\
             node_type = \"ra3.xlplus\"\nnum_nodes = 2\nallow_cidr = \"203.0.113.7/32\"\n\
             security_group_id = \"{group}\"\n\n\
             [iam]\n# the role's name\nrole_name = \"sparkify-it-role\"\n"
        ),
    )
    .unwrap();
    let create = || sparkify(dir.path(), &["cluster", "create", "--poll", "1"], &env);

    let out = create();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The role: trusts Redshift, S3 read-only attached.
    let (arn, trust, policies) = aws.role("sparkify-it-role").expect("the role exists");
    let trust = trust.replace("%3A", ":").replace("%22", "\"");
    assert!(trust.contains("redshift.amazonaws.com"), "{trust}");
    assert_eq!(policies, ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]);
    // The cluster: the configured node type and count, with the role.
    let clusters = aws.clusters("sparkify-it");
    assert_eq!(clusters.len(), 1);
    let c = &clusters[0];
    assert_eq!(c.node_type(), Some("ra3.xlplus"));
    assert_eq!(c.number_of_nodes(), Some(2));
    let roles: Vec<&str> = c
        .iam_roles()
        .iter()
        .filter_map(|r| r.iam_role_arn())
        .collect();
    assert_eq!(roles, [arn.as_str()]);
    // The ingress rule: the given CIDR on the cluster's port, and no other rule on that port.
    let sg = c.vpc_security_groups()[0]
        .vpc_security_group_id()
        .unwrap()
        .to_owned();
    assert_eq!(sg, group);
    assert_eq!(
        aws.ingress(&sg),
        [(5439, 5439, "203.0.113.7/32".to_owned())]
    );
    // sparkify.toml: the endpoint and the role written back, the user's comments kept.
    let toml_text = std::fs::read_to_string(&config).unwrap();
    let endpoint = c.endpoint().unwrap().address().unwrap();
    for want in [
        "# my team's settings",
        "# the test cluster",
        "# the role's name",
        &format!("host = \"{endpoint}\""),
        &format!("role_arn = \"{arn}\""),
    ] {
        assert!(toml_text.contains(want), "{want} not in\n{toml_text}");
    }

    // A second create makes nothing new.
    let rules = aws.ingress(&sg);
    let out = create();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        stdout(&out).matches("exists, reused").count(),
        3,
        "{}",
        text(&out)
    );
    assert_eq!(aws.clusters("sparkify-it").len(), 1);
    assert_eq!(aws.ingress(&sg), rules);

    // status: a table, exit 0 when available; JSON for scripts.
    let out = sparkify(dir.path(), &["cluster", "status"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for want in ["sparkify-it", "available", "ra3.xlplus", endpoint] {
        assert!(stdout(&out).contains(want), "{want}: {}", text(&out));
    }
    let out = sparkify(dir.path(), &["cluster", "status", "--format", "json"], &env);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "available");
    assert_eq!(json["nodes"], 2);

    // delete: no cluster, no role, no rule; a second delete is not an error.
    let out = sparkify(
        dir.path(),
        &["cluster", "delete", "--skip-final-snapshot", "--poll", "1"],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(aws.clusters("sparkify-it").is_empty());
    assert!(aws.role("sparkify-it-role").is_none());
    assert_eq!(aws.ingress(&sg), []);
    let out = sparkify(dir.path(), &["cluster", "delete", "--poll", "1"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("already gone"), "{}", text(&out));
    let out = sparkify(dir.path(), &["cluster", "status"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn serverless_create_status_iam_auth_and_delete_against_moto_and_the_stub() {
    let moto = moto::Moto::shared();
    let stub = serverless::ServerlessStub::start();
    let aws = Aws::new(moto);
    let mut env = moto.env();
    env.push(stub.env());
    env.push(("PGPASSWORD", String::new()));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sparkify.toml");
    let group = aws.security_group("sparkify-sl");
    // A workgroup named is Serverless: no --serverless needed.
    std::fs::write(
        &config,
        format!(
            "# our warehouse\n[redshift]\nworkgroup = \"sparkify-wg\" # the compute\n\
             namespace = \"sparkify-ns\"\n\n[cluster]\nbase_capacity = 16\n\
             allow_cidr = \"203.0.113.9/32\"\nsecurity_group_id = \"{group}\"\n\n\
             [iam]\nrole_name = \"sparkify-sl-role\"\n"
        ),
    )
    .unwrap();
    let create = || sparkify(dir.path(), &["cluster", "create", "--poll", "1"], &env);

    let out = create();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stub.refused(), Vec::<String>::new(), "{}", text(&out));
    let (arn, trust, policies) = aws.role("sparkify-sl-role").expect("the role exists");
    let trust = trust.replace("%3A", ":").replace("%22", "\"");
    assert!(
        trust.contains("redshift-serverless.amazonaws.com"),
        "{trust}"
    );
    assert_eq!(policies, ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]);
    // What was asked of the service, field by field.
    assert_eq!(
        stub.last_input("CreateNamespace").unwrap(),
        serde_json::json!({
            "namespaceName": "sparkify-ns",
            "dbName": "sparkify",
            "adminUsername": "sparkify",
            "defaultIamRoleArn": arn,
            "iamRoles": [arn],
            "manageAdminPassword": true,
        })
    );
    assert_eq!(
        stub.last_input("CreateWorkgroup").unwrap(),
        serde_json::json!({
            "workgroupName": "sparkify-wg",
            "namespaceName": "sparkify-ns",
            "baseCapacity": 16,
            "port": 5439,
            "publiclyAccessible": true,
            "securityGroupIds": [group],
        })
    );
    // It waited: the workgroup was looked at until it was AVAILABLE.
    let ops = stub.operations();
    let created = ops.iter().position(|o| o == "CreateWorkgroup").unwrap();
    assert!(
        ops[created..]
            .iter()
            .filter(|o| *o == "GetWorkgroup")
            .count()
            >= 3,
        "{ops:?}"
    );
    assert!(stdout(&out).contains("workgroup sparkify-wg: created (base capacity 16 RPUs"));
    let workgroup = stub.workgroup("sparkify-wg").unwrap();
    assert_eq!(workgroup["status"], "AVAILABLE");
    assert_eq!(
        aws.ingress(&group),
        [(5439, 5439, "203.0.113.9/32".to_owned())]
    );
    let toml_text = std::fs::read_to_string(&config).unwrap();
    let endpoint = workgroup["endpoint"]["address"].as_str().unwrap();
    for want in [
        "# our warehouse",
        "# the compute",
        "serverless = true",
        &format!("host = \"{endpoint}\""),
        &format!("role_arn = \"{arn}\""),
    ] {
        assert!(toml_text.contains(want), "{want} not in\n{toml_text}");
    }

    // Again: nothing new is made.
    stub.clear_log();
    let out = create();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        stdout(&out).matches("exists, reused").count(),
        4,
        "{}",
        text(&out)
    );
    assert!(
        !stub.operations().iter().any(|o| o.starts_with("Create")),
        "{:?}",
        stub.operations()
    );
    assert_eq!(aws.ingress(&group).len(), 1);

    // status: table and JSON.
    let out = sparkify(dir.path(), &["cluster", "status"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for want in [
        "sparkify-wg",
        "sparkify-ns",
        "AVAILABLE",
        "16 RPUs",
        endpoint,
    ] {
        assert!(stdout(&out).contains(want), "{want}: {}", text(&out));
    }
    let out = sparkify(dir.path(), &["cluster", "status", "--format", "json"], &env);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "AVAILABLE");
    assert_eq!(json["base_capacity"], 16);
    assert_eq!(json["roles"], serde_json::json!([arn]));

    // --iam-auth: GetCredentials for the workgroup; the user is the caller's IAM identity,
    // which this PostgreSQL server knows with the stub's temporary password.
    let server = pg::PgServer::start();
    server.add_password_user("IAM:testing", serverless::PASSWORD);
    let host_line = toml_text.lines().find(|l| l.starts_with("host =")).unwrap();
    std::fs::write(
        &config,
        toml_text
            .replace(host_line, "host = \"127.0.0.1\"\ntls = false")
            .replace("port = 5439", &format!("port = {}", server.port))
            .replace("database = \"sparkify\"", "database = \"postgres\""),
    )
    .unwrap();
    let out = sparkify(
        dir.path(),
        &[
            "sql",
            "SELECT current_user AS who",
            "--sink",
            "redshift",
            "--iam-auth",
            "--format",
            "csv",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout(&out), "who\nIAM:testing\n");
    assert!(!text(&out).contains(serverless::PASSWORD));
    assert_eq!(
        stub.last_input("GetCredentials").unwrap(),
        serde_json::json!({
            "workgroupName": "sparkify-wg",
            "dbName": "postgres",
            "durationSeconds": 900,
        })
    );
    // A load's COPY errors come from Serverless' table.
    let out = sparkify(
        dir.path(),
        &[
            "etl",
            "--sink",
            "redshift",
            "--events",
            "s3://bucket/log_data",
            "--songs",
            "s3://bucket/song_data",
            "--max-errors",
            "5",
            "--dry-run",
        ],
        &[
            ("SPARKIFY_S3_JSONPATHS", "s3://bucket/paths.json".into()),
            ("SPARKIFY_S3_REGION", "us-west-2".into()),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("sys_load_error_detail"),
        "{}",
        text(&out)
    );
    assert!(!stdout(&out).contains("stl_load_errors"), "{}", text(&out));

    // delete: the workgroup, then the namespace after a final snapshot, the rule, the role.
    let out = sparkify(dir.path(), &["cluster", "delete", "--poll", "1"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stub.refused(), Vec::<String>::new(), "{}", text(&out));
    assert!(stub.workgroup("sparkify-wg").is_none());
    assert!(stub.namespace("sparkify-ns").is_none());
    let snapshot = stub.last_input("DeleteNamespace").unwrap()["finalSnapshotName"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(snapshot.starts_with("sparkify-ns-final-"), "{snapshot}");
    assert_eq!(aws.ingress(&group), []);
    assert!(aws.role("sparkify-sl-role").is_none());
    let out = sparkify(dir.path(), &["cluster", "delete", "--poll", "1"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        stdout(&out).matches("already gone").count(),
        3,
        "{}",
        text(&out)
    );
    let out = sparkify(dir.path(), &["cluster", "status", "--format", "json"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "absent");
}

#[test]
fn delete_keeps_the_role_when_asked_and_takes_a_final_snapshot() {
    let moto = moto::Moto::shared();
    let aws = Aws::new(moto);
    let env = moto.env();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--cluster-id",
        "sparkify-keep",
        "--cidr",
        "198.51.100.0/24",
        "--config",
        "none.toml",
    ];
    std::fs::write(
        dir.path().join("none.toml"),
        "[iam]\nrole_name = \"keep-role\"\n",
    )
    .unwrap();
    let mut create = vec!["cluster", "create", "--poll", "1"];
    create.extend(args);
    let out = sparkify(dir.path(), &create, &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut delete = vec!["cluster", "delete", "--keep-role", "--poll", "1"];
    delete.extend(args);
    let out = sparkify(dir.path(), &delete, &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("final snapshot sparkify-keep-final-"),
        "{}",
        text(&out)
    );
    assert!(aws.clusters("sparkify-keep").is_empty());
    assert!(aws.role("keep-role").is_some(), "--keep-role keeps it");
}

#[test]
fn bad_settings_exit_2_naming_the_setting_before_any_aws_call() {
    let dir = tempfile::tempdir().unwrap();
    // No AWS endpoint at all: a check that called AWS would fail differently.
    let none: Vec<(&str, String)> = vec![("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into())];
    for (args, want) in [
        (
            vec!["cluster", "create", "--cidr", "10.0.0.0/8"],
            "[cluster] identifier is not set: set it with --cluster-id, \
             SPARKIFY_CLUSTER_IDENTIFIER, or identifier in [cluster] of sparkify.toml",
        ),
        (
            vec![
                "cluster",
                "create",
                "--cluster-id",
                "x",
                "--node-type",
                "dc9.huge",
                "--cidr",
                "10.0.0.0/8",
            ],
            "[cluster] node_type = \"dc9.huge\" (from flag --node-type) is not a Redshift node type",
        ),
        (
            vec![
                "cluster",
                "create",
                "--cluster-id",
                "x",
                "--cidr",
                "10.0.0/8",
            ],
            "[cluster] allow_cidr = \"10.0.0/8\" (from flag --cidr) is not a CIDR",
        ),
        (
            vec![
                "cluster",
                "create",
                "--cluster-id",
                "x",
                "--cidr",
                "0.0.0.0/0",
            ],
            "lets anyone reach the cluster: pass --allow-anywhere",
        ),
        (
            vec!["cluster", "create", "--cluster-id", "x"],
            "[cluster] allow_cidr is not set",
        ),
        (
            vec!["cluster", "create", "--serverless", "--cidr", "10.0.0.0/8"],
            "[redshift] workgroup is not set: set it with --workgroup, \
             SPARKIFY_REDSHIFT_WORKGROUP, or workgroup in [redshift] of sparkify.toml",
        ),
        (
            vec!["cluster", "status", "--workgroup", "Big_One"],
            "[redshift] workgroup = \"Big_One\" (from flag --workgroup) holds 'B'",
        ),
        (
            vec![
                "cluster",
                "create",
                "--workgroup",
                "wg1",
                "--base-capacity",
                "12",
                "--cidr",
                "10.0.0.0/8",
            ],
            "[cluster] base_capacity = \"12\" (from flag --base-capacity) is not a base capacity",
        ),
    ] {
        let out = sparkify(dir.path(), &args, &none);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{args:?}: {}",
            text(&out)
        );
    }
    let env_bad = vec![("SPARKIFY_CLUSTER_NUM_NODES", "four".to_owned())];
    let out = sparkify(dir.path(), &["config", "show"], &env_bad);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SPARKIFY_CLUSTER_NUM_NODES"));
    let cfg = dir.path().join("dwh.cfg");
    std::fs::write(&cfg, "[CLUSTER]\nHOST=x\n").unwrap();
    let out = sparkify(
        dir.path(),
        &["init", "--from-dwh-cfg", cfg.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no [DWH] section"));
}

#[test]
fn config_show_names_where_each_value_came_from_and_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sparkify.toml"),
        "[redshift]\nhost = \"file-host\"\nuser = \"file-user\"\npassword = \"hunter2-file\"\n\
         [cluster]\nidentifier = \"from-file\"\n",
    )
    .unwrap();
    let env = vec![("SPARKIFY_REDSHIFT_USER", "env-user".to_owned())];
    let out = sparkify(
        dir.path(),
        &[
            "config",
            "show",
            "--redshift-host",
            "flag-host",
            "--format",
            "csv",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let csv = stdout(&out);
    for line in [
        "[redshift] host,flag-host,flag --redshift-host",
        "[redshift] user,env-user,env SPARKIFY_REDSHIFT_USER",
        "[cluster] identifier,from-file,file sparkify.toml",
        "[cluster] port,5439,default",
        "[redshift] password,<secret>,file sparkify.toml",
    ] {
        assert!(csv.contains(line), "{line} not in\n{csv}");
    }
    assert!(!csv.contains("hunter2"), "{csv}");
    // A password in the file works, with one warning naming the safer places.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("warning:").count(), 1, "{stderr}");
    assert!(
        stderr.contains("PGPASSWORD") && stderr.contains("~/.pgpass"),
        "{stderr}"
    );
}

#[test]
fn init_converts_the_seeds_dwh_cfg_and_leaks_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dwh.cfg");
    std::fs::write(
        &cfg,
        "[AWS]\nKEY=AKIAEXAMPLEKEY0001\nSECRET=wJalrSecretExample0001\n\n\
         [DWH]\nDWH_CLUSTER_TYPE=multi-node\nDWH_NUM_NODES=4\nDWH_NODE_TYPE=dc2.large\n\
         DWH_IAM_ROLE_NAME=dwhRole\nDWH_CLUSTER_IDENTIFIER=dwhCluster\nDWH_DB=dwh\n\
         DWH_DB_USER=dwhuser\nDWH_DB_PASSWORD=Passw0rdSecret\nDWH_PORT=5439\n\n\
         [CLUSTER]\nHOST=dwhcluster.abc.us-west-2.redshift.amazonaws.com\nDB_NAME=dwh\n\
         DB_USER=dwhuser\nDB_PASSWORD=Passw0rdSecret\nDB_PORT=5439\n\n\
         [IAM_ROLE]\nARN=arn:aws:iam::123456789012:role/dwhRole\n\n\
         [S3]\nLOG_DATA='s3://udacity-dend/log_data'\n\
         LOG_JSONPATH='s3://udacity-dend/log_json_path.json'\n\
         SONG_DATA='s3://udacity-dend/song_data'\n",
    )
    .unwrap();
    let env = vec![("RUST_LOG", "trace".to_owned())];
    let out = sparkify(
        dir.path(),
        &["init", "--from-dwh-cfg", cfg.to_str().unwrap()],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let toml_text = std::fs::read_to_string(dir.path().join("sparkify.toml")).unwrap();
    let everything = format!("{toml_text}{}", text(&out));
    for secret in [
        "AKIAEXAMPLEKEY0001",
        "wJalrSecretExample0001",
        "Passw0rdSecret",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[AWS] KEY")
            && stderr.contains("aws configure")
            && stderr.contains("PGPASSWORD"),
        "{stderr}"
    );
    insta::assert_snapshot!(
        "init_from_dwh_cfg",
        toml_text.replace(cfg.to_str().unwrap(), "dwh.cfg")
    );
    // What it wrote is settings sparkify reads.
    let out = sparkify(dir.path(), &["config", "show", "--format", "csv"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("[cluster] num_nodes,4,file sparkify.toml"));
    // Never over an existing file without --force.
    let out = sparkify(dir.path(), &["init"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = sparkify(dir.path(), &["init", "--force"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        std::fs::read_to_string(dir.path().join("sparkify.toml"))
            .unwrap()
            .contains("# sparkify.toml: settings for sparkify")
    );
}

#[test]
fn pgpass_is_honoured_and_iam_auth_asks_get_cluster_credentials() {
    let server = pg::PgServer::start();
    server.add_password_user("etl", "s3cret-pw");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let url = format!("postgres://etl@127.0.0.1:{}/postgres", server.port);
    let query = [
        "sql",
        "SELECT current_user AS who",
        "--sink",
        url.as_str(),
        "--format",
        "csv",
    ];
    let env = vec![("HOME", home.display().to_string())];
    // No password anywhere: the server refuses.
    let out = sparkify(dir.path(), &query, &env);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    // libpq's file, in libpq's format.
    let pgpass = home.join(".pgpass");
    std::fs::write(
        &pgpass,
        format!(
            "# comment\nother:1:*:*:wrong\n127.0.0.1:{}:*:etl:s3cret-pw\n",
            server.port
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = sparkify(dir.path(), &query, &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout(&out), "who\netl\n");
    assert!(!text(&out).contains("s3cret-pw"));
    // A file others may read is ignored, as libpq does.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = sparkify(dir.path(), &query, &env);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));

    // --iam-auth: the user and password come from moto's GetClusterCredentials (user
    // `IAM:etl`), which this server has no role for; no password is configured anywhere.
    let moto = moto::Moto::shared();
    let mut env = moto.env();
    env.push(("HOME", home.display().to_string()));
    std::fs::write(
        dir.path().join("sparkify.toml"),
        format!(
            "[cluster]\nidentifier = \"sparkify-iam\"\nuser = \"etl\"\ndatabase = \"postgres\"\n\
             [iam]\nrole_name = \"sparkify-iam-role\"\n\
             [redshift]\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"postgres\"\nuser = \"etl\"\n\
             tls = false\n",
            server.port
        ),
    )
    .unwrap();
    let sql = ["sql", "SELECT 1", "--sink", "redshift", "--iam-auth"];
    let out = sparkify(dir.path(), &sql, &env);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ClusterNotFound"),
        "no cluster yet: {}",
        text(&out)
    );
    let out = sparkify(
        dir.path(),
        &["cluster", "create", "--cidr", "192.0.2.1/32", "--poll", "1"],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // create wrote moto's endpoint into [redshift] host: point it back at the local server.
    let toml_text = std::fs::read_to_string(dir.path().join("sparkify.toml")).unwrap();
    let host_line = toml_text
        .lines()
        .find(|l| l.starts_with("host ="))
        .unwrap()
        .to_owned();
    std::fs::write(
        dir.path().join("sparkify.toml"),
        toml_text
            .replace(&host_line, "host = \"127.0.0.1\"")
            .replace("port = 5439", &format!("port = {}", server.port)),
    )
    .unwrap();
    let out = sparkify(dir.path(), &sql, &env);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("IAM:etl"),
        "the IAM user was used: {stderr}"
    );
    let out = sparkify(
        dir.path(),
        &["cluster", "delete", "--skip-final-snapshot", "--poll", "1"],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn the_redshift_smoke_script_says_what_it_costs_and_deletes_what_it_made() {
    let script = sparkify_test_support::fixtures::repo().join("scripts/redshift-smoke.sh");
    let dir = tempfile::tempdir().unwrap();
    let bash = |args: &[&str], env: &[(&str, String)]| {
        std::process::Command::new("bash")
            .arg(&script)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("TMPDIR", dir.path())
            .output()
            .unwrap()
    };
    // Without --yes: what it would do and cost, and exit 2 before anything is called (there
    // is no binary and no endpoint to call).
    let out = bash(
        &["--base-capacity", "16", "--price", "0.5"],
        &[
            ("SPARKIFY", "/nonexistent/sparkify".into()),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for want in [
        "sparkify cluster create --workgroup sparkify-smoke --base-capacity 16",
        "sparkify verify --sink duckdb:local.duckdb --sink redshift",
        "sparkify cluster delete --skip-final-snapshot",
        "At 16 RPUs and $0.5 per RPU-hour",
        "cost $4.00",
    ] {
        assert!(stdout(&out).contains(want), "{want}: {}", text(&out));
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nothing was created"));

    // With --yes, against moto and the Serverless stub: the workgroup is made, the load cannot
    // reach its endpoint (no such host here), and what the script made is deleted on the way
    // out, its generated admin password never shown.
    let moto = moto::Moto::shared();
    let stub = serverless::ServerlessStub::start();
    let mut env = moto.env();
    env.push(stub.env());
    env.push(("SPARKIFY", env!("CARGO_BIN_EXE_sparkify").into()));
    let out = bash(
        &[
            "--yes",
            "--workgroup",
            "smoke-it",
            "--cidr",
            "192.0.2.7/32",
            "--poll",
            "1",
        ],
        &env,
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stub.refused(), Vec::<String>::new(), "{}", text(&out));
    let made = stub
        .last_input("CreateWorkgroup")
        .expect("a workgroup was made");
    assert_eq!(made["workgroupName"], "smoke-it");
    let password = stub.last_input("CreateNamespace").unwrap()["adminUserPassword"]
        .as_str()
        .expect("a generated admin password")
        .to_owned();
    assert!(!text(&out).contains(&password), "{}", text(&out));
    for want in [
        "workgroup smoke-it: created",
        "workgroup smoke-it: gone",
        "namespace smoke-it: gone",
    ] {
        assert!(text(&out).contains(want), "{want}: {}", text(&out));
    }
    assert!(stub.workgroup("smoke-it").is_none());
    assert!(stub.namespace("smoke-it").is_none());
    assert!(Aws::new(moto).role("smoke-it-s3-read").is_none());
}
