//! Redshift Serverless: a namespace (the database, its admin user, the IAM role COPY assumes)
//! and a workgroup (the compute, its base capacity in RPUs, its endpoint and security group),
//! made, described and deleted as idempotently as the provisioned cluster, and temporary
//! database credentials from `GetCredentials`.

use aws_sdk_redshiftserverless::types::{Namespace, Workgroup};

use crate::{
    Cloud, DbCredentials, Error, Outcome, Patience, Result, aws, code, deleted, wait_for,
    wait_gone_for,
};

/// What a Serverless warehouse is to be.
#[derive(Debug, Clone)]
pub struct ServerlessSpec {
    pub namespace: String,
    pub workgroup: String,
    pub database: String,
    /// The admin user.
    pub user: String,
    pub port: u16,
    /// Redshift Processing Units the workgroup starts queries with.
    pub base_capacity: u32,
    /// The admin password; `None` lets Redshift keep one in Secrets Manager
    /// (`manageAdminPassword`), and clients use IAM credentials.
    pub password: Option<String>,
    /// The security group to open; the default VPC's `default` group otherwise.
    pub security_group_id: Option<String>,
}

/// A workgroup and its namespace as `GetWorkgroup` and `GetNamespace` report them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkgroupInfo {
    pub workgroup: String,
    pub namespace: String,
    pub status: String,
    pub base_capacity: Option<u32>,
    pub endpoint: Option<String>,
    pub port: Option<u16>,
    pub security_groups: Vec<String>,
    /// The namespace's roles, its default first.
    pub roles: Vec<String>,
    pub database: Option<String>,
}

impl WorkgroupInfo {
    pub fn is_available(&self) -> bool {
        self.status == "AVAILABLE"
    }
}

/// A namespace or workgroup name: 3 to 64 of `a-z`, `0-9` and `-`.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if !(3..=64).contains(&name.len()) {
        return Err(format!("is {} characters long, not 3 to 64", name.len()));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        Some(c) => Err(format!(
            "holds {c:?}: only lowercase letters, digits and '-' are allowed"
        )),
        None => Ok(()),
    }
}

/// A base capacity: 4, or 8 to 1024 RPUs in steps of 8.
pub fn check_base_capacity(rpus: u32) -> std::result::Result<(), String> {
    if rpus == 4 || (rpus.is_multiple_of(8) && (8..=1024).contains(&rpus)) {
        Ok(())
    } else {
        Err("is not a base capacity: 4, or 8 to 1024 RPUs in steps of 8".into())
    }
}

/// A port a workgroup may listen on: 5431 to 5455 or 8191 to 8215.
pub fn check_port(port: u16) -> std::result::Result<(), String> {
    if (5431..=5455).contains(&port) || (8191..=8215).contains(&port) {
        Ok(())
    } else {
        Err("is not a Serverless port: 5431 to 5455 or 8191 to 8215".into())
    }
}

fn info(w: &Workgroup, namespace: Option<&Namespace>) -> WorkgroupInfo {
    let mut roles: Vec<String> = namespace
        .and_then(Namespace::default_iam_role_arn)
        .map(str::to_owned)
        .into_iter()
        .collect();
    for role in namespace.map(Namespace::iam_roles).unwrap_or_default() {
        // `iamRoles` may hold `IamRole(applyStatus=in-sync, iamRoleArn=arn:…)` forms.
        let arn = role
            .split("iamRoleArn=")
            .nth(1)
            .map_or(role.as_str(), |r| r.trim_end_matches(')'));
        if !roles.iter().any(|r| r == arn) {
            roles.push(arn.to_owned());
        }
    }
    WorkgroupInfo {
        workgroup: w.workgroup_name().unwrap_or_default().to_owned(),
        namespace: w.namespace_name().unwrap_or_default().to_owned(),
        status: w.status().map_or("unknown", |s| s.as_str()).to_owned(),
        base_capacity: w.base_capacity().and_then(|c| u32::try_from(c).ok()),
        endpoint: w.endpoint().and_then(|e| e.address()).map(str::to_owned),
        port: w
            .endpoint()
            .and_then(|e| e.port())
            .or(w.port())
            .and_then(|p| u16::try_from(p).ok()),
        security_groups: w.security_group_ids().to_vec(),
        roles,
        database: namespace.and_then(Namespace::db_name).map(str::to_owned),
    }
}

impl Cloud {
    async fn namespace_async(&self, name: &str) -> Result<Option<Namespace>> {
        match self
            .serverless
            .get_namespace()
            .namespace_name(name)
            .send()
            .await
        {
            Ok(found) => Ok(found.namespace().cloned()),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(aws("redshift-serverless:GetNamespace")(e)),
        }
    }

    async fn workgroup_async(&self, name: &str) -> Result<Option<WorkgroupInfo>> {
        let found = match self
            .serverless
            .get_workgroup()
            .workgroup_name(name)
            .send()
            .await
        {
            Ok(found) => found,
            Err(e) if code(&e) == Some("ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(aws("redshift-serverless:GetWorkgroup")(e)),
        };
        let Some(w) = found.workgroup() else {
            return Ok(None);
        };
        let namespace = match w.namespace_name() {
            Some(n) => self.namespace_async(n).await?,
            None => None,
        };
        Ok(Some(info(w, namespace.as_ref())))
    }

    /// The workgroup and its namespace, if the workgroup exists.
    pub fn workgroup(&self, name: &str) -> Result<Option<WorkgroupInfo>> {
        self.rt.block_on(self.workgroup_async(name))
    }

    /// The namespace's status, if it exists.
    pub fn namespace_status(&self, name: &str) -> Result<Option<String>> {
        let found = self.rt.block_on(self.namespace_async(name))?;
        Ok(found.map(|n| n.status().map_or("unknown", |s| s.as_str()).to_owned()))
    }

    /// The namespace with its database, admin user and `role_arn` as its default role; an
    /// existing one is left as it is.
    pub fn create_namespace(&self, spec: &ServerlessSpec, role_arn: &str) -> Result<Outcome> {
        self.rt.block_on(async {
            if self.namespace_async(&spec.namespace).await?.is_some() {
                return Ok(Outcome::Existed);
            }
            let mut create = self
                .serverless
                .create_namespace()
                .namespace_name(&spec.namespace)
                .db_name(&spec.database)
                .admin_username(&spec.user)
                .default_iam_role_arn(role_arn)
                .iam_roles(role_arn);
            create = match &spec.password {
                Some(pw) => create.admin_user_password(pw),
                None => create.manage_admin_password(true),
            };
            match create.send().await {
                Ok(_) => Ok(Outcome::Created),
                Err(e) if code(&e) == Some("ConflictException") => Ok(Outcome::Existed),
                Err(e) => Err(aws("redshift-serverless:CreateNamespace")(e)),
            }
        })
    }

    /// The workgroup in the namespace, publicly accessible, in the configured security group
    /// (else the default VPC's `default`); an existing one is left as it is.
    pub fn create_workgroup(&self, spec: &ServerlessSpec) -> Result<Outcome> {
        self.rt.block_on(async {
            if self.workgroup_async(&spec.workgroup).await?.is_some() {
                return Ok(Outcome::Existed);
            }
            let sg = self
                .security_group(spec.security_group_id.as_deref())
                .await?;
            let create = self
                .serverless
                .create_workgroup()
                .workgroup_name(&spec.workgroup)
                .namespace_name(&spec.namespace)
                .base_capacity(i32::try_from(spec.base_capacity).unwrap_or(i32::MAX))
                .port(i32::from(spec.port))
                .publicly_accessible(true)
                .security_group_ids(sg);
            match create.send().await {
                Ok(_) => Ok(Outcome::Created),
                Err(e) if code(&e) == Some("ConflictException") => Ok(Outcome::Existed),
                Err(e) => Err(aws("redshift-serverless:CreateWorkgroup")(e)),
            }
        })
    }

    /// Polls until the namespace is `AVAILABLE`.
    pub fn wait_namespace_available(
        &self,
        name: &str,
        patience: Patience,
        progress: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let what = format!("namespace {name}");
        wait_for(&what, "available", patience, progress, || {
            let status = self
                .namespace_status(name)?
                .unwrap_or_else(|| "absent".to_owned());
            let done = (status == "AVAILABLE").then_some(());
            Ok((status, done))
        })
    }

    /// Polls until the workgroup is `AVAILABLE`.
    pub fn wait_workgroup_available(
        &self,
        name: &str,
        patience: Patience,
        progress: &mut dyn FnMut(&str),
    ) -> Result<WorkgroupInfo> {
        let what = format!("workgroup {name}");
        wait_for(&what, "available", patience, progress, || {
            let info = self
                .workgroup(name)?
                .ok_or_else(|| Error::NoWorkgroup(name.to_owned()))?;
            Ok((info.status.clone(), info.is_available().then_some(info)))
        })
    }

    /// Deletes the workgroup; `false` when there was none.
    pub fn delete_workgroup(&self, name: &str) -> Result<bool> {
        self.rt.block_on(async {
            let sent = self
                .serverless
                .delete_workgroup()
                .workgroup_name(name)
                .send()
                .await;
            deleted(
                sent,
                "ResourceNotFoundException",
                "redshift-serverless:DeleteWorkgroup",
            )
        })
    }

    /// Polls until the workgroup is gone.
    pub fn wait_workgroup_gone(
        &self,
        name: &str,
        patience: Patience,
        progress: &mut dyn FnMut(&str),
    ) -> Result<()> {
        wait_gone_for(&format!("workgroup {name}"), patience, progress, || {
            Ok(self.workgroup(name)?.map(|info| info.status))
        })
    }

    /// Deletes the namespace, after a final snapshot named `snapshot` unless it is `None`;
    /// `false` when there was none.
    pub fn delete_namespace(&self, name: &str, snapshot: Option<&str>) -> Result<bool> {
        self.rt.block_on(async {
            let delete = self
                .serverless
                .delete_namespace()
                .namespace_name(name)
                .set_final_snapshot_name(snapshot.map(str::to_owned));
            deleted(
                delete.send().await,
                "ResourceNotFoundException",
                "redshift-serverless:DeleteNamespace",
            )
        })
    }

    /// Polls until the namespace is gone.
    pub fn wait_namespace_gone(
        &self,
        name: &str,
        patience: Patience,
        progress: &mut dyn FnMut(&str),
    ) -> Result<()> {
        wait_gone_for(&format!("namespace {name}"), patience, progress, || {
            self.namespace_status(name)
        })
    }

    /// Temporary credentials on `database` of the workgroup for the caller's IAM identity
    /// (`GetCredentials`, 15 minutes); the user is `IAM:name` or `IAMR:role`.
    pub fn serverless_credentials(&self, workgroup: &str, database: &str) -> Result<DbCredentials> {
        self.rt.block_on(async {
            let got = self
                .serverless
                .get_credentials()
                .workgroup_name(workgroup)
                .db_name(database)
                .duration_seconds(900)
                .send()
                .await
                .map_err(aws("redshift-serverless:GetCredentials"))?;
            Ok(DbCredentials {
                user: got.db_user().unwrap_or_default().to_owned(),
                password: got.db_password().unwrap_or_default().to_owned(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_capacities_and_ports_are_checked_as_the_api_does() {
        assert!(check_name("sparkify").is_ok());
        assert!(check_name("sparkify-wg-01").is_ok());
        assert!(check_name("ab").is_err());
        assert!(check_name("Sparkify").is_err());
        assert!(check_name("spark_ify").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
        for ok in [4, 8, 16, 128, 512, 1024] {
            assert!(check_base_capacity(ok).is_ok(), "{ok}");
        }
        for bad in [0, 2, 6, 12, 1032] {
            assert!(check_base_capacity(bad).is_err(), "{bad}");
        }
        for ok in [5431, 5439, 5455, 8191, 8215] {
            assert!(check_port(ok).is_ok(), "{ok}");
        }
        for bad in [5430, 5456, 8190, 8216, 443] {
            assert!(check_port(bad).is_err(), "{bad}");
        }
    }
}
