//! sparkify-cluster: the Redshift cluster's life cycle, replacing the seed's boto3 scripts
//! (`cluster_create.py`, `cluster_status.py`, `cluster_delete.py`): the IAM role Redshift
//! assumes to read S3, the cluster, the ingress rule that lets a client reach it, and
//! temporary database credentials (`GetClusterCredentials`) so that no password need exist.
//!
//! Every step is idempotent: what exists is reused and reported as such; what is already gone
//! is not an error. The clients share `sparkify-s3`'s AWS configuration loader (region,
//! profile, endpoint, the standard credential chain).
//!
//! Redshift Serverless takes the same steps with a namespace (the database, its admin user
//! and roles) and a workgroup (the compute and its endpoint) in place of the cluster
//! ([`serverless`]); `GetCredentials` gives its temporary database credentials.
//!
//! The API calls, in order, are listed in `docs/warehouse.md` ("Cluster life cycle").

pub mod serverless;

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange};
use aws_sdk_redshift::error::ProvideErrorMetadata;
use sparkify_s3::S3Options;

/// The policy the role gets: read-only S3, as the seed's.
pub const S3_READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";

/// Who may assume the role: Redshift, provisioned and Serverless.
pub const TRUST_REDSHIFT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":["redshift.amazonaws.com","redshift-serverless.amazonaws.com"]},"Action":"sts:AssumeRole"}]}"#;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("cannot start the AWS client runtime")]
    Runtime(#[source] std::io::Error),
    /// An AWS call failed; `call` names it (`redshift:CreateCluster`).
    #[error("{call}: {message}")]
    Aws { call: &'static str, message: String },
    /// `what` (`cluster sparkify`, `workgroup sparkify`) did not reach `wanted` in time.
    #[error(
        "{what} is not {wanted} after {seconds} s (status {status}); see `sparkify cluster status`"
    )]
    Timeout {
        what: String,
        wanted: &'static str,
        seconds: u64,
        status: String,
    },
    #[error("cluster {0} has no security group to open")]
    NoSecurityGroup(String),
    #[error("no default VPC to put the cluster in; set [cluster] security_group_id")]
    NoDefaultVpc,
    #[error("cluster {0} does not exist; create it with `sparkify cluster create`")]
    NoCluster(String),
    #[error("workgroup {0} does not exist; create it with `sparkify cluster create --serverless`")]
    NoWorkgroup(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn aws<E: ProvideErrorMetadata + std::error::Error + 'static>(
    call: &'static str,
) -> impl FnOnce(aws_sdk_redshift::error::SdkError<E>) -> Error {
    move |e| {
        let message = match e.as_service_error() {
            Some(s) => format!(
                "{}: {}",
                s.code().unwrap_or("error"),
                s.message().unwrap_or("")
            ),
            None => aws_sdk_redshift::error::DisplayErrorContext(&e).to_string(),
        };
        Error::Aws { call, message }
    }
}

/// The service error's code, if the call reached the service.
fn code<E: ProvideErrorMetadata>(e: &aws_sdk_redshift::error::SdkError<E>) -> Option<&str> {
    e.as_service_error().and_then(ProvideErrorMetadata::code)
}

/// `[cluster]` of `sparkify.toml`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub identifier: Option<String>,
    pub node_type: Option<String>,
    pub num_nodes: Option<u32>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// The CIDR let in to the cluster's port.
    pub allow_cidr: Option<String>,
    pub security_group_id: Option<String>,
    /// A Serverless workgroup's base capacity in RPUs.
    pub base_capacity: Option<u32>,
}

/// Redshift's node types (provisioned clusters).
pub const NODE_TYPES: [&str; 6] = [
    "ra3.large",
    "ra3.xlplus",
    "ra3.4xlarge",
    "ra3.16xlarge",
    "dc2.large",
    "dc2.8xlarge",
];

/// Checks an IPv4 CIDR (`203.0.113.0/24`).
pub fn check_cidr(cidr: &str) -> std::result::Result<(), String> {
    let (addr, bits) = cidr
        .split_once('/')
        .ok_or("is not a CIDR: expected an address and a prefix length, as 203.0.113.0/24")?;
    addr.parse::<std::net::Ipv4Addr>()
        .map_err(|e| format!("is not a CIDR: {addr}: {e}"))?;
    match bits.parse::<u8>() {
        Ok(b) if b <= 32 => Ok(()),
        _ => Err(format!(
            "is not a CIDR: the prefix length {bits:?} is not 0 to 32"
        )),
    }
}

/// What a cluster is to be.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub identifier: String,
    pub node_type: String,
    /// 1 is a single-node cluster.
    pub nodes: u32,
    pub database: String,
    pub user: String,
    pub port: u16,
    /// The master user's password; `None` lets Redshift keep one in Secrets Manager
    /// (`ManageMasterPassword`), and clients use IAM credentials.
    pub password: Option<String>,
    /// The security group to open; the default VPC's `default` group otherwise.
    pub security_group_id: Option<String>,
}

/// A cluster as `DescribeClusters` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterInfo {
    pub identifier: String,
    pub status: String,
    pub node_type: String,
    pub nodes: u32,
    pub endpoint: Option<String>,
    pub port: Option<u16>,
    pub vpc: Option<String>,
    pub roles: Vec<String>,
    pub security_groups: Vec<String>,
}

impl ClusterInfo {
    pub fn is_available(&self) -> bool {
        self.status == "available"
    }
}

/// One ingress rule of a security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    pub from_port: i32,
    pub to_port: i32,
    pub cidr: String,
    pub description: Option<String>,
}

/// Whether a step made something or found it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Existed,
}

/// Temporary database credentials.
#[derive(Clone)]
pub struct DbCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbCredentials")
            .field("user", &self.user)
            .field("password", &"<secret>")
            .finish()
    }
}

/// The IAM, Redshift and EC2 clients of one region.
#[derive(Debug)]
pub struct Cloud {
    rt: tokio::runtime::Runtime,
    iam: aws_sdk_iam::Client,
    redshift: aws_sdk_redshift::Client,
    serverless: aws_sdk_redshiftserverless::Client,
    ec2: aws_sdk_ec2::Client,
}

/// How often and how long to look at a resource that is changing state.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub timeout: Duration,
    pub every: Duration,
}

/// The variable naming Redshift Serverless' endpoint, over `AWS_ENDPOINT_URL`.
pub const SERVERLESS_ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS";

/// The description sparkify gives the ingress rules it adds, to find them again.
fn rule_description(cluster: &str) -> String {
    format!("sparkify cluster {cluster}")
}

impl Cloud {
    /// The clients, configured as S3's are (credentials are resolved on the first call);
    /// Redshift Serverless' endpoint is `AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS` when that is set,
    /// as the AWS SDKs' service-specific endpoint variable.
    pub fn connect(opts: &S3Options) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let shared = rt.block_on(sparkify_s3::sdk_config(opts));
        Ok(Cloud {
            iam: aws_sdk_iam::Client::new(&shared),
            redshift: aws_sdk_redshift::Client::new(&shared),
            serverless: {
                let mut config = aws_sdk_redshiftserverless::config::Builder::from(&shared);
                if let Some(url) =
                    sparkify_s3::endpoint_url(&S3Options::default(), SERVERLESS_ENDPOINT_VARIABLE)
                {
                    config = config.endpoint_url(url);
                }
                aws_sdk_redshiftserverless::Client::from_conf(config.build())
            },
            ec2: aws_sdk_ec2::Client::new(&shared),
            rt,
        })
    }

    /// The role `name`, trusting Redshift, with S3 read-only attached; its ARN.
    pub fn ensure_role(&self, name: &str) -> Result<(String, Outcome)> {
        self.rt.block_on(async {
            let (arn, outcome) = match self.iam.get_role().role_name(name).send().await {
                Ok(found) => (
                    found.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
                    Outcome::Existed,
                ),
                Err(e) if code(&e) == Some("NoSuchEntity") => {
                    let made = self
                        .iam
                        .create_role()
                        .role_name(name)
                        .assume_role_policy_document(TRUST_REDSHIFT)
                        .description("Lets Redshift read S3 for sparkify's COPY")
                        .send()
                        .await
                        .map_err(aws("iam:CreateRole"))?;
                    (
                        made.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
                        Outcome::Created,
                    )
                }
                Err(e) => return Err(aws("iam:GetRole")(e)),
            };
            // Attaching an attached policy changes nothing.
            self.iam
                .attach_role_policy()
                .role_name(name)
                .policy_arn(S3_READ_ONLY)
                .send()
                .await
                .map_err(aws("iam:AttachRolePolicy"))?;
            Ok((arn, outcome))
        })
    }

    /// The cluster, if it exists.
    pub fn describe(&self, id: &str) -> Result<Option<ClusterInfo>> {
        self.rt.block_on(self.describe_async(id))
    }

    async fn describe_async(&self, id: &str) -> Result<Option<ClusterInfo>> {
        let found = match self
            .redshift
            .describe_clusters()
            .cluster_identifier(id)
            .send()
            .await
        {
            Ok(found) => found,
            Err(e) if code(&e) == Some("ClusterNotFound") => return Ok(None),
            Err(e) => return Err(aws("redshift:DescribeClusters")(e)),
        };
        Ok(found.clusters().first().map(|c| ClusterInfo {
            identifier: c.cluster_identifier().unwrap_or(id).to_owned(),
            status: c.cluster_status().unwrap_or("unknown").to_owned(),
            node_type: c.node_type().unwrap_or_default().to_owned(),
            nodes: c.number_of_nodes().unwrap_or(1).unsigned_abs(),
            endpoint: c.endpoint().and_then(|e| e.address()).map(str::to_owned),
            port: c
                .endpoint()
                .and_then(|e| e.port())
                .and_then(|p| u16::try_from(p).ok()),
            vpc: c.vpc_id().map(str::to_owned),
            roles: c
                .iam_roles()
                .iter()
                .filter_map(|r| r.iam_role_arn().map(str::to_owned))
                .collect(),
            security_groups: c
                .vpc_security_groups()
                .iter()
                .filter_map(|g| g.vpc_security_group_id().map(str::to_owned))
                .collect(),
        }))
    }

    /// The security group a new cluster or workgroup goes in: `configured`, else the default
    /// VPC's `default`.
    async fn security_group(&self, configured: Option<&str>) -> Result<String> {
        if let Some(sg) = configured {
            return Ok(sg.to_owned());
        }
        let vpcs = self
            .ec2
            .describe_vpcs()
            .filters(Filter::builder().name("isDefault").values("true").build())
            .send()
            .await
            .map_err(aws("ec2:DescribeVpcs"))?;
        let vpc = vpcs
            .vpcs()
            .first()
            .and_then(|v| v.vpc_id())
            .ok_or(Error::NoDefaultVpc)?
            .to_owned();
        let groups = self
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(&vpc).build())
            .filters(
                Filter::builder()
                    .name("group-name")
                    .values("default")
                    .build(),
            )
            .send()
            .await
            .map_err(aws("ec2:DescribeSecurityGroups"))?;
        groups
            .security_groups()
            .first()
            .and_then(|g| g.group_id())
            .map(str::to_owned)
            .ok_or(Error::NoDefaultVpc)
    }

    /// The cluster, with `role_arn`; an existing one is left as it is.
    pub fn create_cluster(&self, spec: &ClusterSpec, role_arn: &str) -> Result<Outcome> {
        self.rt.block_on(async {
            if self.describe_async(&spec.identifier).await?.is_some() {
                return Ok(Outcome::Existed);
            }
            let sg = self
                .security_group(spec.security_group_id.as_deref())
                .await?;
            let mut create = self
                .redshift
                .create_cluster()
                .cluster_identifier(&spec.identifier)
                .node_type(&spec.node_type)
                .db_name(&spec.database)
                .master_username(&spec.user)
                .port(i32::from(spec.port))
                .iam_roles(role_arn)
                .vpc_security_group_ids(sg)
                .publicly_accessible(true);
            create = if spec.nodes > 1 {
                create
                    .cluster_type("multi-node")
                    .number_of_nodes(i32::try_from(spec.nodes).unwrap_or(i32::MAX))
            } else {
                create.cluster_type("single-node")
            };
            create = match &spec.password {
                Some(pw) => create.master_user_password(pw),
                None => create.manage_master_password(true),
            };
            match create.send().await {
                Ok(_) => Ok(Outcome::Created),
                Err(e) if code(&e) == Some("ClusterAlreadyExists") => Ok(Outcome::Existed),
                Err(e) => Err(aws("redshift:CreateCluster")(e)),
            }
        })
    }

    /// Polls until the cluster is available, calling `progress` with its status each time.
    pub fn wait_available(
        &self,
        id: &str,
        patience: Patience,
        progress: &mut dyn FnMut(&str),
    ) -> Result<ClusterInfo> {
        wait_for(
            &format!("cluster {id}"),
            "available",
            patience,
            progress,
            || {
                let info = self
                    .describe(id)?
                    .ok_or_else(|| Error::NoCluster(id.to_owned()))?;
                Ok((info.status.clone(), info.is_available().then_some(info)))
            },
        )
    }

    fn permission(port: u16, cidr: &str, cluster: &str) -> IpPermission {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(i32::from(port))
            .to_port(i32::from(port))
            .ip_ranges(
                IpRange::builder()
                    .cidr_ip(cidr)
                    .description(rule_description(cluster))
                    .build(),
            )
            .build()
    }

    /// Lets `cidr` reach `port` through security group `sg`.
    pub fn authorize_ingress(
        &self,
        sg: &str,
        port: u16,
        cidr: &str,
        cluster: &str,
    ) -> Result<Outcome> {
        self.rt.block_on(async {
            match self
                .ec2
                .authorize_security_group_ingress()
                .group_id(sg)
                .ip_permissions(Self::permission(port, cidr, cluster))
                .send()
                .await
            {
                Ok(_) => Ok(Outcome::Created),
                Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => Ok(Outcome::Existed),
                Err(e) => Err(aws("ec2:AuthorizeSecurityGroupIngress")(e)),
            }
        })
    }

    /// The ingress rules of `sg`, one a CIDR.
    pub fn ingress_rules(&self, sg: &str) -> Result<Vec<IngressRule>> {
        self.rt.block_on(async {
            let found = self
                .ec2
                .describe_security_groups()
                .group_ids(sg)
                .send()
                .await
                .map_err(aws("ec2:DescribeSecurityGroups"))?;
            let mut rules = Vec::new();
            for group in found.security_groups() {
                for p in group.ip_permissions() {
                    for range in p.ip_ranges() {
                        rules.push(IngressRule {
                            from_port: p.from_port().unwrap_or(-1),
                            to_port: p.to_port().unwrap_or(-1),
                            cidr: range.cidr_ip().unwrap_or_default().to_owned(),
                            description: range.description().map(str::to_owned),
                        });
                    }
                }
            }
            Ok(rules)
        })
    }

    /// Revokes the rules sparkify added to `sg` for `cluster`; how many there were.
    pub fn revoke_ingress(&self, sg: &str, cluster: &str) -> Result<usize> {
        let ours: Vec<_> = self
            .ingress_rules(sg)?
            .into_iter()
            .filter(|r| r.description.as_deref() == Some(rule_description(cluster).as_str()))
            .collect();
        self.rt.block_on(async {
            for IngressRule {
                from_port, cidr, ..
            } in &ours
            {
                let port = u16::try_from(*from_port).unwrap_or(0);
                let revoke = self
                    .ec2
                    .revoke_security_group_ingress()
                    .group_id(sg)
                    .ip_permissions(Self::permission(port, cidr, cluster))
                    .send()
                    .await;
                match revoke {
                    Ok(_) => {}
                    Err(e) if code(&e) == Some("InvalidPermission.NotFound") => {}
                    Err(e) => return Err(aws("ec2:RevokeSecurityGroupIngress")(e)),
                }
            }
            Ok(ours.len())
        })
    }

    /// Deletes the cluster, after a final snapshot named `snapshot` unless it is `None`;
    /// `false` when there was no cluster.
    pub fn delete_cluster(&self, id: &str, snapshot: Option<&str>) -> Result<bool> {
        self.rt.block_on(async {
            let delete = self
                .redshift
                .delete_cluster()
                .cluster_identifier(id)
                .skip_final_cluster_snapshot(snapshot.is_none())
                .set_final_cluster_snapshot_identifier(snapshot.map(str::to_owned));
            deleted(
                delete.send().await,
                "ClusterNotFound",
                "redshift:DeleteCluster",
            )
        })
    }

    /// Polls until the cluster is gone.
    pub fn wait_gone(
        &self,
        id: &str,
        patience: Patience,
        progress: &mut dyn FnMut(&str),
    ) -> Result<()> {
        wait_gone_for(&format!("cluster {id}"), patience, progress, || {
            Ok(self.describe(id)?.map(|info| info.status))
        })
    }

    /// Detaches every policy from role `name` and deletes it; `false` when it did not exist.
    pub fn delete_role(&self, name: &str) -> Result<bool> {
        self.rt.block_on(async {
            let attached = match self
                .iam
                .list_attached_role_policies()
                .role_name(name)
                .send()
                .await
            {
                Ok(a) => a,
                Err(e) if code(&e) == Some("NoSuchEntity") => return Ok(false),
                Err(e) => return Err(aws("iam:ListAttachedRolePolicies")(e)),
            };
            for policy in attached.attached_policies() {
                if let Some(arn) = policy.policy_arn() {
                    self.iam
                        .detach_role_policy()
                        .role_name(name)
                        .policy_arn(arn)
                        .send()
                        .await
                        .map_err(aws("iam:DetachRolePolicy"))?;
                }
            }
            match self.iam.delete_role().role_name(name).send().await {
                Ok(_) => Ok(true),
                Err(e) if code(&e) == Some("NoSuchEntity") => Ok(false),
                Err(e) => Err(aws("iam:DeleteRole")(e)),
            }
        })
    }

    /// Temporary credentials for `user` on `database` (`GetClusterCredentials`, 15 minutes).
    pub fn credentials(&self, id: &str, database: &str, user: &str) -> Result<DbCredentials> {
        self.rt.block_on(async {
            let got = self
                .redshift
                .get_cluster_credentials()
                .cluster_identifier(id)
                .db_name(database)
                .db_user(user)
                .duration_seconds(900)
                .auto_create(false)
                .send()
                .await
                .map_err(aws("redshift:GetClusterCredentials"))?;
            Ok(DbCredentials {
                user: got.db_user().unwrap_or(user).to_owned(),
                password: got.db_password().unwrap_or_default().to_owned(),
            })
        })
    }
}

/// Whether a delete deleted: `false` when the service said the thing was `absent` already.
fn deleted<T, E: ProvideErrorMetadata + std::error::Error + 'static>(
    sent: std::result::Result<T, aws_sdk_redshift::error::SdkError<E>>,
    absent: &str,
    call: &'static str,
) -> Result<bool> {
    match sent {
        Ok(_) => Ok(true),
        Err(e) if code(&e) == Some(absent) => Ok(false),
        Err(e) => Err(aws(call)(e)),
    }
}

/// Polls until `status` finds `what` no more (`None`), calling `progress` with each status.
fn wait_gone_for(
    what: &str,
    patience: Patience,
    progress: &mut dyn FnMut(&str),
    mut status: impl FnMut() -> Result<Option<String>>,
) -> Result<()> {
    wait_for(what, "gone", patience, progress, || {
        Ok(match status()? {
            Some(status) => (status, None),
            None => ("gone".to_owned(), Some(())),
        })
    })
}

/// Looks with `look` until it says done (`Some`), calling `progress` with each status, at
/// most `patience.timeout` long; `what` did not become `wanted` otherwise.
fn wait_for<T>(
    what: &str,
    wanted: &'static str,
    patience: Patience,
    progress: &mut dyn FnMut(&str),
    mut look: impl FnMut() -> Result<(String, Option<T>)>,
) -> Result<T> {
    let started = Instant::now();
    loop {
        let (status, done) = look()?;
        progress(&status);
        if let Some(done) = done {
            return Ok(done);
        }
        if started.elapsed() >= patience.timeout {
            return Err(Error::Timeout {
                what: what.to_owned(),
                wanted,
                seconds: patience.timeout.as_secs(),
                status,
            });
        }
        std::thread::sleep(patience.every);
    }
}
