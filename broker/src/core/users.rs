//! Users and their permissions, changed through the Raft log (leader only, admin only: the
//! front ends check [`crate::auth::Access::Admin`] first).

use bytes::Bytes;
use raftmq_proto::auth::{self as wire, AclPerm, AclResource, User, UserInfo, UserUpdate};
use raftmq_proto::names;
use raftmq_store::Command;

use super::{Broker, BrokerError};

/// Most ACL entries one user may have.
pub const MAX_ACL_ENTRIES: usize = 10_000;

impl Broker {
    fn not_the_configured_admin(&self, access_key: &str) -> Result<(), BrokerError> {
        match self.auth().admin() {
            Some((k, _)) if k == access_key => Err(BrokerError::invalid(format!(
                "{access_key} is the admin named in the broker config ([auth] admin_access_key); \
                 change it there, not as a stored user"
            ))),
            _ => Ok(()),
        }
    }

    async fn store_user(&self, u: &User) -> Result<(), BrokerError> {
        let value = crate::auth::encode_user(u)?;
        self.command(Command::PutAuth {
            key: u.access_key.clone(),
            value: Bytes::from(value),
        })
        .await?;
        Ok(())
    }

    /// Creates or changes a user (leader only).
    ///
    /// # Errors
    /// `Invalid` names, secrets or networks; a create of an existing user or an update of
    /// a missing one; `NotLeader`; replication outcomes.
    pub async fn put_user(&self, up: UserUpdate) -> Result<(), BrokerError> {
        wire::validate_access_key(&up.access_key).map_err(BrokerError::Invalid)?;
        self.not_the_configured_admin(&up.access_key)?;
        if let Some(s) = &up.secret_key {
            wire::validate_secret(s).map_err(BrokerError::Invalid)?;
        }
        for n in up.allow_from.iter().flatten() {
            wire::parse_network(n).map_err(BrokerError::Invalid)?;
        }
        self.check_leader()?;
        let _one_at_a_time = self.shared.user_writes.0.lock().await;
        let existing = self.auth().user(&up.access_key);
        let mut u = match (existing, up.create) {
            (Some(_), Some(true)) => {
                return Err(BrokerError::invalid(format!(
                    "user {} already exists (use raftmq user update)",
                    up.access_key
                )))
            }
            (None, Some(false)) => {
                return Err(BrokerError::invalid(format!(
                    "no user {} (create it first: raftmq user create)",
                    up.access_key
                )))
            }
            (Some(u), _) => (*u).clone(),
            (None, _) => User {
                access_key: up.access_key.clone(),
                secret_key: up.secret_key.clone().ok_or_else(|| {
                    BrokerError::invalid(format!("a new user ({}) needs a secret", up.access_key))
                })?,
                admin: false,
                default_topic_perm: AclPerm::Deny,
                default_group_perm: AclPerm::Deny,
                acl: Vec::new(),
                allow_from: Vec::new(),
            },
        };
        if let Some(s) = up.secret_key {
            u.secret_key = s;
        }
        if let Some(a) = up.admin {
            u.admin = a;
        }
        if let Some(p) = up.default_topic_perm {
            u.default_topic_perm = p;
        }
        if let Some(p) = up.default_group_perm {
            u.default_group_perm = p;
        }
        if let Some(a) = up.allow_from {
            u.allow_from = a;
        }
        self.store_user(&u).await?;
        tracing::info!(user = %u.access_key, admin = u.admin, "user stored");
        Ok(())
    }

    /// Deletes a user (leader only).
    ///
    /// # Errors
    /// No such user; `NotLeader`; replication outcomes.
    pub async fn delete_user(&self, access_key: &str) -> Result<(), BrokerError> {
        self.check_leader()?;
        let _one_at_a_time = self.shared.user_writes.0.lock().await;
        if self.auth().user(access_key).is_none() {
            return Err(BrokerError::invalid(format!("no user {access_key}")));
        }
        self.command(Command::DeleteAuth {
            key: access_key.to_owned(),
        })
        .await?;
        tracing::info!(user = %access_key, "user deleted");
        Ok(())
    }

    /// Every stored user, without secrets.
    pub fn list_users(&self) -> Vec<UserInfo> {
        self.auth().all_users().iter().map(|u| u.info()).collect()
    }

    /// Sets or removes (`perm = None`) one ACL entry of a user (leader only).
    ///
    /// # Errors
    /// No such user, an invalid name, too many entries; `NotLeader`; replication outcomes.
    pub async fn set_acl(
        &self,
        access_key: &str,
        resource: AclResource,
        perm: Option<AclPerm>,
    ) -> Result<(), BrokerError> {
        match &resource {
            AclResource::Topic(t) => names::validate_topic(t),
            AclResource::Group(g) => names::validate_group(g),
        }
        .map_err(BrokerError::Invalid)?;
        self.check_leader()?;
        let _one_at_a_time = self.shared.user_writes.0.lock().await;
        let mut u = self
            .auth()
            .user(access_key)
            .map(|u| (*u).clone())
            .ok_or_else(|| {
                BrokerError::invalid(format!(
                    "no user {access_key} (create it first: raftmq user create)"
                ))
            })?;
        u.acl.retain(|(r, _)| *r != resource);
        if let Some(p) = perm {
            if u.acl.len() >= MAX_ACL_ENTRIES {
                return Err(BrokerError::invalid(format!(
                    "user {access_key} already has {MAX_ACL_ENTRIES} ACL entries; use default permissions"
                )));
            }
            u.acl.push((resource.clone(), p));
            u.acl.sort_by(|a, b| a.0.cmp(&b.0));
        }
        self.store_user(&u).await?;
        tracing::info!(user = %access_key, %resource, perm = ?perm, "ACL changed");
        Ok(())
    }
}
