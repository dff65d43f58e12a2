//! Users and permissions, as [`Admin`] manages them. Every broker group keeps its own
//! users (in its replicated metadata), so each change is made on every live group.

use raftmq_proto::auth::{AclPerm, AclResource, UserInfo, UserUpdate};

use crate::admin::{Admin, ADMIN_TIMEOUT};
use crate::error::{Error, Result};

impl Admin {
    /// Runs one call on the leader of every live broker group; returns the groups.
    async fn on_every_group<F, Fut>(&self, f: F) -> Result<Vec<String>>
    where
        F: Fn(raftmq_proto::BrokerServiceClient, tarpc::context::Context) -> Fut + Clone,
        Fut: std::future::Future<
            Output = std::result::Result<
                std::result::Result<(), raftmq_proto::WireError>,
                tarpc::client::RpcError,
            >,
        >,
    {
        let groups = self.groups().await?;
        if groups.is_empty() {
            return Err(Error::NoRoute {
                topic: String::new(),
                reason: "no broker group is registered with the NameServers".into(),
            });
        }
        let mut done = Vec::new();
        for g in groups {
            self.core.call_leader(&g, ADMIN_TIMEOUT, f.clone()).await?;
            done.push(g.broker_group.0);
        }
        Ok(done)
    }

    /// Creates or changes a user on every broker group. Returns the groups.
    ///
    /// # Errors
    /// Not an admin, an invalid update, or a group refused (earlier groups keep the change:
    /// run it again).
    pub async fn put_user(&self, update: UserUpdate) -> Result<Vec<String>> {
        self.on_every_group(move |b, cx| {
            let u = update.clone();
            async move { b.put_user(cx, u).await }
        })
        .await
    }

    /// Deletes a user from every broker group. Returns the groups.
    ///
    /// # Errors
    /// Not an admin, no such user, or a group refused.
    pub async fn delete_user(&self, access_key: &str) -> Result<Vec<String>> {
        let k = access_key.to_owned();
        self.on_every_group(move |b, cx| {
            let k = k.clone();
            async move { b.delete_user(cx, k).await }
        })
        .await
    }

    /// Sets (`Some`) or removes (`None`) a permission of a user on every broker group.
    ///
    /// # Errors
    /// Not an admin, no such user, or a group refused.
    pub async fn set_acl(
        &self,
        access_key: &str,
        resource: AclResource,
        perm: Option<AclPerm>,
    ) -> Result<Vec<String>> {
        let k = access_key.to_owned();
        self.on_every_group(move |b, cx| {
            let (k, r) = (k.clone(), resource.clone());
            async move { b.set_acl(cx, k, r, perm).await }
        })
        .await
    }

    /// The users of every live broker group: `(group, users)`.
    ///
    /// # Errors
    /// Not an admin, or a group unreachable.
    pub async fn list_users(&self) -> Result<Vec<(String, Vec<UserInfo>)>> {
        let mut out = Vec::new();
        for g in self.groups().await? {
            let users = self
                .core
                .call_leader(
                    &g,
                    ADMIN_TIMEOUT,
                    |b, cx| async move { b.list_users(cx).await },
                )
                .await?;
            out.push((g.broker_group.0, users));
        }
        Ok(out)
    }
}
