//! `raftmq user ...` and `raftmq acl ...`: users and their permissions, on every broker
//! group (each group keeps its own, replicated).

use clap::{Args, Subcommand};
use raftmq_client::Admin;
use raftmq_proto::auth::{AclPerm, AclResource, UserInfo, UserUpdate};
use serde_json::json;

use crate::output::Out;

/// Settings shared by `user create` and `user update`.
#[derive(Debug, Args)]
pub struct UserSettings {
    /// The user's secret (8 to 256 bytes); prefer --secret-env in scripts.
    #[arg(long)]
    secret: Option<String>,
    /// Read the secret from this environment variable instead.
    #[arg(long, conflicts_with = "secret")]
    secret_env: Option<String>,
    /// Make the user an admin (may manage topics, groups, nodes and users).
    #[arg(long, conflicts_with = "no_admin")]
    admin: bool,
    /// Take admin rights away.
    #[arg(long)]
    no_admin: bool,
    /// Permission on topics the user has no entry for: PUB, SUB, PUB|SUB or DENY
    /// (default on create: DENY).
    #[arg(long)]
    default_topic_perm: Option<AclPerm>,
    /// Permission on consumer groups the user has no entry for: SUB or DENY (default on
    /// create: DENY).
    #[arg(long)]
    default_group_perm: Option<AclPerm>,
    /// Addresses the user may connect from: IPs or ip/prefix networks, comma-separated
    /// (empty string: from anywhere, the default).
    #[arg(long, value_delimiter = ',')]
    allow_from: Option<Vec<String>>,
}

/// `raftmq user ...`
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user on every broker group.
    Create {
        /// Access key (the user's name): letters, digits and _ . @ -.
        name: String,
        #[command(flatten)]
        settings: UserSettings,
    },
    /// Change a user's secret, admin flag, defaults or allowed addresses.
    Update {
        /// Access key.
        name: String,
        #[command(flatten)]
        settings: UserSettings,
    },
    /// Delete a user; its open connections lose every permission at once.
    Delete {
        /// Access key.
        name: String,
    },
    /// List users (never their secrets).
    List,
}

/// What an `acl` command names.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Resource {
    /// A topic.
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group (its %RETRY% and %DLQ% topics follow it).
    #[arg(long)]
    group: Option<String>,
}

impl Resource {
    fn resource(self) -> anyhow::Result<AclResource> {
        match (self.topic, self.group) {
            (Some(t), None) => Ok(AclResource::Topic(t)),
            (None, Some(g)) => Ok(AclResource::Group(g)),
            _ => anyhow::bail!("name exactly one of --topic T or --group G"),
        }
    }
}

/// `raftmq acl ...`
#[derive(Debug, Subcommand)]
pub enum AclCmd {
    /// Give a user a permission on a topic or group (replacing the one it had).
    Grant {
        /// Access key.
        user: String,
        #[command(flatten)]
        on: Resource,
        /// PUB, SUB, PUB|SUB (or PUB,SUB) or DENY.
        #[arg(long)]
        perm: AclPerm,
    },
    /// Remove a user's entry for a topic or group (its default applies again).
    Revoke {
        /// Access key.
        user: String,
        #[command(flatten)]
        on: Resource,
    },
    /// Every user's permissions.
    List,
}

fn update(name: String, s: UserSettings, create: bool) -> anyhow::Result<UserUpdate> {
    let secret = match (s.secret, s.secret_env) {
        (Some(v), _) => Some(v),
        (None, Some(var)) => Some(std::env::var(&var).map_err(|_| {
            anyhow::anyhow!("--secret-env {var}: the environment variable is not set")
        })?),
        (None, None) => None,
    };
    if create && secret.is_none() {
        anyhow::bail!("a new user needs a secret: --secret S or --secret-env VAR");
    }
    Ok(UserUpdate {
        access_key: name,
        create: Some(create),
        secret_key: secret,
        admin: (s.admin || s.no_admin).then_some(s.admin),
        default_topic_perm: s.default_topic_perm,
        default_group_perm: s.default_group_perm,
        allow_from: s
            .allow_from
            .map(|v| v.into_iter().filter(|a| !a.trim().is_empty()).collect()),
    })
}

fn acl_text(u: &UserInfo) -> String {
    let mut parts = vec![
        format!("topics default {}", u.default_topic_perm),
        format!("groups default {}", u.default_group_perm),
    ];
    parts.extend(u.acl.iter().map(|(r, p)| format!("{r}: {p}")));
    parts.join(", ")
}

fn user_json(group: &str, u: &UserInfo) -> serde_json::Value {
    let acl: Vec<_> = u
        .acl
        .iter()
        .map(|(r, p)| match r {
            AclResource::Topic(t) => json!({"topic": t, "perm": p.to_string()}),
            AclResource::Group(g) => json!({"group": g, "perm": p.to_string()}),
        })
        .collect();
    json!({
        "broker_group": group,
        "user": u.access_key,
        "admin": u.admin,
        "default_topic_perm": u.default_topic_perm.to_string(),
        "default_group_perm": u.default_group_perm.to_string(),
        "acl": acl,
        "allow_from": u.allow_from,
    })
}

/// Runs `user` commands.
pub async fn user(admin: &Admin, out: &Out, cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Create { name, settings } => {
            let groups = admin
                .put_user(update(name.clone(), settings, true)?)
                .await?;
            out.line(
                json!({"user": name, "created_on": groups}),
                format!("created user {name} on {}", groups.join(", ")),
            );
        }
        UserCmd::Update { name, settings } => {
            let groups = admin
                .put_user(update(name.clone(), settings, false)?)
                .await?;
            out.line(
                json!({"user": name, "updated_on": groups}),
                format!("updated user {name} on {}", groups.join(", ")),
            );
        }
        UserCmd::Delete { name } => {
            let groups = admin.delete_user(&name).await?;
            out.line(
                json!({"user": name, "deleted_from": groups}),
                format!("deleted user {name} from {}", groups.join(", ")),
            );
        }
        UserCmd::List => {
            for (group, users) in admin.list_users().await? {
                for u in users {
                    let allow = if u.allow_from.is_empty() {
                        "anywhere".to_owned()
                    } else {
                        u.allow_from.join(",")
                    };
                    out.line(
                        user_json(&group, &u),
                        format!(
                            "{group:<16} {:<24} {:<6} from {allow}",
                            u.access_key,
                            if u.admin { "admin" } else { "user" }
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Runs `acl` commands.
pub async fn acl(admin: &Admin, out: &Out, cmd: AclCmd) -> anyhow::Result<()> {
    match cmd {
        AclCmd::Grant { user, on, perm } => {
            let r = on.resource()?;
            let groups = admin.set_acl(&user, r.clone(), Some(perm)).await?;
            out.line(
                json!({"user": user, "resource": r.to_string(), "perm": perm.to_string(), "groups": groups}),
                format!("granted {perm} on {r} to {user} on {}", groups.join(", ")),
            );
        }
        AclCmd::Revoke { user, on } => {
            let r = on.resource()?;
            let groups = admin.set_acl(&user, r.clone(), None).await?;
            out.line(
                json!({"user": user, "resource": r.to_string(), "revoked": true, "groups": groups}),
                format!("revoked {user}'s entry for {r} on {}", groups.join(", ")),
            );
        }
        AclCmd::List => {
            for (group, users) in admin.list_users().await? {
                for u in users {
                    out.line(
                        user_json(&group, &u),
                        format!("{group:<16} {:<24} {}", u.access_key, acl_text(&u)),
                    );
                }
            }
        }
    }
    Ok(())
}
