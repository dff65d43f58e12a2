//! Authentication and access control for every client protocol.
//!
//! Users live in the broker group's replicated metadata ([`raftmq_store::Command::PutAuth`]),
//! so every node agrees and a failover keeps them; one admin comes from the node's
//! configuration ([`AuthConfig`]) so a new cluster has someone to create the others.
//!
//! - Native connections authenticate once ([`raftmq_proto::auth`]: a single-use challenge
//!   answered with HMAC-SHA256); the connection then acts as that user.
//! - RocketMQ remoting requests are each signed as RocketMQ's ACL clients sign them:
//!   `Signature` = Base64(HmacSHA1(secret, the values of every ext field but `Signature`,
//!   sorted by name, then the body)), with the user in `AccessKey`.
//!
//! Every request is then checked against the user's permissions ([`Who::check`]). A
//! topic's `%RETRY%<g>`/`%DLQ%<g>` twins follow group `g`'s permission.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use raftmq_proto::auth::{self as wire, AclPerm, AclResource, User};
use raftmq_proto::names::owner_group;
use raftmq_proto::throttle::Throttle;
use raftmq_store::Store;
use serde::{Deserialize, Serialize};

use crate::core::{BrokerError, ConnectionCtx};

/// The `[auth]` table of the broker config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse every client request that is not authenticated and permitted. Default: false.
    pub enabled: bool,
    /// The configured admin's access key (`RAFTMQ_ADMIN_ACCESS_KEY` overrides it); required
    /// when `enabled`. Every node of a group needs the same admin: followers use it to
    /// forward work to the leader.
    pub admin_access_key: Option<String>,
    /// The configured admin's secret (`RAFTMQ_ADMIN_SECRET_KEY` overrides it).
    pub admin_secret_key: Option<String>,
    /// A token `http_listen`'s `/metrics` accepts as `Authorization: Bearer TOKEN`
    /// (`RAFTMQ_METRICS_TOKEN` overrides it), with or without `enabled`: give it to
    /// Prometheus rather than the admin's keys. At least 16 characters.
    pub metrics_token: Option<String>,
    /// Serve `/metrics` to anyone who reaches `http_listen` even with `enabled` (which
    /// otherwise asks for `metrics_token` or Basic auth with the configured admin's keys).
    /// Default: false.
    pub metrics_open: bool,
}

/// Shortest metrics token accepted.
const METRICS_TOKEN_MIN: usize = 16;

impl AuthConfig {
    /// Takes the admin's keys from `RAFTMQ_ADMIN_ACCESS_KEY` / `RAFTMQ_ADMIN_SECRET_KEY`
    /// when they are set.
    pub fn apply_env(&mut self) {
        if let Ok(k) = std::env::var("RAFTMQ_ADMIN_ACCESS_KEY") {
            self.admin_access_key = Some(k);
        }
        if let Ok(s) = std::env::var("RAFTMQ_ADMIN_SECRET_KEY") {
            self.admin_secret_key = Some(s);
        }
        if let Ok(t) = std::env::var("RAFTMQ_METRICS_TOKEN") {
            self.metrics_token = Some(t);
        }
    }

    /// Who may read `/metrics`: `(bearer token, Basic user and password)`, both `None`
    /// for anyone.
    pub fn metrics_credentials(&self) -> (Option<String>, Option<(String, String)>) {
        if self.metrics_open {
            return (None, None);
        }
        let basic = if self.enabled { self.admin() } else { None };
        (self.metrics_token.clone(), basic)
    }

    /// Checks that an enabled configuration names a valid admin.
    ///
    /// # Errors
    /// What is missing or malformed.
    pub fn validate(&self) -> Result<(), String> {
        match &self.metrics_token {
            Some(_) if self.metrics_open => {
                return Err(
                    "[auth] metrics_open = true and metrics_token are both set: \
                            drop the token to leave /metrics open, or metrics_open to require it"
                        .into(),
                )
            }
            Some(t) if t.len() < METRICS_TOKEN_MIN || !t.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(format!(
                    "[auth] metrics_token must have at least {METRICS_TOKEN_MIN} printable \
                     ASCII characters without spaces"
                ))
            }
            _ => {}
        }
        match (&self.admin_access_key, &self.admin_secret_key) {
            (Some(k), Some(s)) => {
                wire::validate_access_key(k)
                    .map_err(|e| format!("[auth] admin_access_key: {e}"))?;
                wire::validate_secret(s).map_err(|e| format!("[auth] admin_secret_key: {e}"))
            }
            (None, None) if !self.enabled => Ok(()),
            _ => Err(
                "[auth] enabled = true needs admin_access_key and admin_secret_key (or \
                 RAFTMQ_ADMIN_ACCESS_KEY and RAFTMQ_ADMIN_SECRET_KEY): without an admin \
                 nobody could create users"
                    .into(),
            ),
        }
    }

    /// The configured admin's credential, when there is one.
    pub fn admin(&self) -> Option<(String, String)> {
        self.admin_access_key
            .clone()
            .zip(self.admin_secret_key.clone())
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// Anything an authenticated user may do (read cluster metadata).
    Any,
    /// Administration: topics, groups, offsets reset, membership, users.
    Admin,
    /// Send to a topic.
    Pub(&'a str),
    /// Consume from a topic.
    Sub(&'a str),
    /// Consume as a consumer group (commit its offsets, lock its queues, send back).
    Group(&'a str),
}

/// Who a request comes from, once authenticated.
#[derive(Debug, Clone)]
pub enum Who {
    /// Authentication is off: everything is allowed.
    Open,
    /// An admin (the configured one, or a user marked admin).
    Admin(String),
    /// A user with permissions.
    User(Arc<User>),
}

impl Who {
    /// Whether this caller may do `a`.
    ///
    /// # Errors
    /// `NotAuthorized`, naming the user, the permission and the resource.
    pub fn check(&self, a: Access<'_>) -> Result<(), BrokerError> {
        let u = match self {
            Who::Open | Who::Admin(_) => return Ok(()),
            Who::User(u) => u,
        };
        let perm_of = |r: AclResource, default: AclPerm| {
            u.acl
                .iter()
                .find(|(res, _)| *res == r)
                .map_or(default, |(_, p)| *p)
        };
        let group_perm = |g: &str| perm_of(AclResource::Group(g.into()), u.default_group_perm);
        let topic_perm = |t: &str| perm_of(AclResource::Topic(t.into()), u.default_topic_perm);
        let (ok, need, what) = match a {
            Access::Any => (true, "", String::new()),
            Access::Admin => (false, "admin rights", "this operation".to_owned()),
            Access::Pub(t) | Access::Sub(t) if owner_group(t).is_some() => {
                let g = owner_group(t).unwrap_or_default();
                (
                    group_perm(g).can_sub(),
                    "SUB",
                    format!("group {g} (owner of {t})"),
                )
            }
            Access::Pub(t) => (topic_perm(t).can_pub(), "PUB", format!("topic {t}")),
            Access::Sub(t) => (topic_perm(t).can_sub(), "SUB", format!("topic {t}")),
            Access::Group(g) => (group_perm(g).can_sub(), "SUB", format!("group {g}")),
        };
        if ok {
            Ok(())
        } else {
            Err(BrokerError::NotAuthorized(format!(
                "user {} lacks {need} on {what}; an admin can grant it (raftmq acl grant)",
                u.access_key
            )))
        }
    }

    /// The access key, when there is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Who::Open => None,
            Who::Admin(k) => Some(k),
            Who::User(u) => Some(&u.access_key),
        }
    }
}

type Users = Arc<HashMap<String, Arc<User>>>;

/// Decides who a request comes from. One per node, shared by every connection.
#[derive(Debug)]
pub struct Authorizer {
    enabled: bool,
    admin: Option<(String, String)>,
    store: Arc<Store>,
    /// Users decoded from the store, with the store's change count they reflect.
    cache: RwLock<(u64, Users)>,
    refused: AtomicU64,
    warn: Throttle,
}

/// The refusal every unauthenticated request gets.
fn unauthenticated(detail: &str) -> BrokerError {
    BrokerError::NotAuthorized(format!(
        "{detail}; authentication is on: give the client an access key and secret \
         (raftmq --access-key/--secret-key, RAFTMQ_ACCESS_KEY/RAFTMQ_SECRET_KEY)"
    ))
}

impl Authorizer {
    /// An authorizer over `store`'s users.
    pub fn new(config: &AuthConfig, store: Arc<Store>) -> Self {
        Self {
            enabled: config.enabled,
            admin: config.admin(),
            store,
            cache: RwLock::new((u64::MAX, Arc::default())),
            refused: AtomicU64::new(0),
            warn: Throttle::default(),
        }
    }

    /// Whether requests are checked at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The configured admin's credential (followers forward to the leader as it).
    pub fn admin(&self) -> Option<&(String, String)> {
        self.admin.as_ref()
    }

    /// Requests refused since start-up.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts and logs a refusal, then returns it.
    pub fn refuse(&self, conn: &ConnectionCtx, e: BrokerError) -> BrokerError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.warn.allow() {
            tracing::warn!(peer = ?conn.peer, error = %e, suppressed, "request refused");
        }
        e
    }

    fn users(&self) -> Users {
        let now = self.store.auth_changes();
        {
            let c = self
                .cache
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if c.0 == now {
                return c.1.clone();
            }
        }
        let (changes, records) = self.store.auth_records();
        let users: HashMap<_, _> = records
            .into_iter()
            .filter_map(|(k, v)| match decode_user(&v) {
                Ok(u) => Some((k, Arc::new(u))),
                Err(e) => {
                    tracing::error!(user = %k, error = %e, "stored user does not decode; ignored");
                    None
                }
            })
            .collect();
        let users = Arc::new(users);
        *self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (changes, users.clone());
        users
    }

    /// A stored user.
    pub fn user(&self, access_key: &str) -> Option<Arc<User>> {
        self.users().get(access_key).cloned()
    }

    /// Every stored user.
    pub fn all_users(&self) -> Vec<Arc<User>> {
        let mut v: Vec<_> = self.users().values().cloned().collect();
        v.sort_by(|a, b| a.access_key.cmp(&b.access_key));
        v
    }

    /// The secret of `access_key` and who it makes the caller, checking the source address.
    fn lookup(&self, conn: &ConnectionCtx, access_key: &str) -> Result<(String, Who), BrokerError> {
        if let Some((k, s)) = &self.admin {
            if k == access_key {
                return Ok((s.clone(), Who::Admin(k.clone())));
            }
        }
        let u = self
            .user(access_key)
            .ok_or_else(|| unauthenticated(&format!("no user {access_key:?}")))?;
        if !u.allow_from.is_empty() {
            let allowed = conn.peer.is_some_and(|p| {
                u.allow_from
                    .iter()
                    .filter_map(|n| wire::parse_network(n).ok())
                    .any(|n| wire::in_network(p.ip(), n))
            });
            if !allowed {
                return Err(BrokerError::NotAuthorized(format!(
                    "user {access_key} may not connect from {}",
                    conn.peer
                        .map_or_else(|| "here".to_owned(), |p| p.ip().to_string())
                )));
            }
        }
        let who = if u.admin {
            Who::Admin(u.access_key.clone())
        } else {
            Who::User(u.clone())
        };
        Ok((u.secret_key.clone(), who))
    }

    /// Who a native connection acts as.
    ///
    /// # Errors
    /// `NotAuthorized` when it has not authenticated or its user is gone.
    pub fn native(&self, conn: &ConnectionCtx) -> Result<Who, BrokerError> {
        if !self.enabled {
            return Ok(Who::Open);
        }
        let Some(key) = conn.principal.get() else {
            return Err(self.refuse(
                conn,
                unauthenticated("this connection has not authenticated"),
            ));
        };
        self.lookup(conn, key)
            .map(|(_, who)| who)
            .map_err(|e| self.refuse(conn, e))
    }

    /// A new single-use challenge for `conn`.
    pub fn challenge(&self, conn: &ConnectionCtx) -> Vec<u8> {
        let nonce = wire::nonce();
        *conn
            .challenge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((nonce.clone(), Instant::now()));
        nonce
    }

    /// Makes `conn` act as `access_key` if `signature` answers its latest challenge. The
    /// challenge is used up either way.
    ///
    /// # Errors
    /// `NotAuthorized`: no challenge, an expired one, an unknown user, a wrong signature, or
    /// a connection already acting as someone else.
    pub fn authenticate(
        &self,
        conn: &ConnectionCtx,
        access_key: &str,
        signature: &[u8],
    ) -> Result<(), BrokerError> {
        let challenge = conn
            .challenge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let result = (|| {
            let (nonce, at) = challenge.ok_or_else(|| {
                unauthenticated("no challenge to answer on this connection (ask auth_challenge first; each is single-use)")
            })?;
            if at.elapsed() > wire::CHALLENGE_TTL {
                return Err(unauthenticated(&format!(
                    "the challenge expired (answered after more than {} s)",
                    wire::CHALLENGE_TTL.as_secs()
                )));
            }
            let (secret, _) = self.lookup(conn, access_key)?;
            if !wire::verify_challenge(&secret, &nonce, access_key, signature) {
                return Err(unauthenticated(&format!(
                    "wrong signature for user {access_key} (a wrong secret, or a replayed answer)"
                )));
            }
            match conn.principal.get() {
                Some(k) if k != access_key => Err(BrokerError::NotAuthorized(format!(
                    "this connection already acts as {k}; open another to act as {access_key}"
                ))),
                _ => {
                    let _ = conn.principal.set(access_key.to_owned());
                    Ok(())
                }
            }
        })();
        result.map_err(|e| self.refuse(conn, e))
    }

    /// Who a signed RocketMQ remoting request comes from.
    ///
    /// # Errors
    /// `NotAuthorized`: no `AccessKey`, an unknown user, a missing or wrong `Signature`.
    pub fn remoting(
        &self,
        conn: &ConnectionCtx,
        ext: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<Who, BrokerError> {
        if !self.enabled {
            return Ok(Who::Open);
        }
        let result = (|| {
            let key = ext
                .get(ACCESS_KEY)
                .filter(|k| !k.is_empty())
                .ok_or_else(|| unauthenticated("the request carries no AccessKey"))?;
            let (secret, who) = self.lookup(conn, key)?;
            let sig = ext
                .get(SIGNATURE)
                .ok_or_else(|| unauthenticated("the request carries no Signature"))?;
            if !verify_remoting(&secret, ext, body, sig) {
                return Err(unauthenticated(&format!(
                    "wrong Signature for user {key} (a wrong secret, or the request was altered)"
                )));
            }
            Ok(who)
        })();
        result.map_err(|e| self.refuse(conn, e))
    }
}

/// The ext field naming a remoting request's user.
pub const ACCESS_KEY: &str = "AccessKey";
/// The ext field carrying a remoting request's signature.
pub const SIGNATURE: &str = "Signature";

/// RocketMQ's ACL signature of a request: HmacSHA1 over the ext values sorted by name
/// (without `Signature`) followed by the body.
fn remoting_mac(secret: &str, ext: &BTreeMap<String, String>, body: &[u8]) -> Hmac<sha1::Sha1> {
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    for (k, v) in ext {
        if k != SIGNATURE {
            mac.update(v.as_bytes());
        }
    }
    mac.update(body);
    mac
}

/// The `Signature` a RocketMQ client puts on a request.
pub fn sign_remoting(secret: &str, ext: &BTreeMap<String, String>, body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(remoting_mac(secret, ext, body).finalize().into_bytes())
}

fn verify_remoting(secret: &str, ext: &BTreeMap<String, String>, body: &[u8], sig: &str) -> bool {
    match base64::engine::general_purpose::STANDARD.decode(sig.trim()) {
        Ok(raw) => remoting_mac(secret, ext, body).verify_slice(&raw).is_ok(),
        Err(_) => false,
    }
}

/// Encodes a user for the store (JSON: later fields can be added with defaults).
///
/// # Errors
/// Never in practice (a `User` always serializes).
pub fn encode_user(u: &User) -> Result<Vec<u8>, BrokerError> {
    serde_json::to_vec(u).map_err(|e| BrokerError::Internal(format!("encoding user: {e}")))
}

fn decode_user(b: &[u8]) -> Result<User, serde_json::Error> {
    serde_json::from_slice(b)
}

/// Serializes read-modify-write changes of users on this node (two grants at once must
/// not lose one).
#[derive(Debug, Default)]
pub struct UserWrites(pub(crate) tokio::sync::Mutex<()>);

/// A guard for [`ConnectionCtx::challenge`]'s type.
pub type Challenge = Mutex<Option<(Vec<u8>, Instant)>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn user(acl: Vec<(AclResource, AclPerm)>) -> Who {
        Who::User(Arc::new(User {
            access_key: "u".into(),
            secret_key: "secret-secret".into(),
            admin: false,
            default_topic_perm: AclPerm::Deny,
            default_group_perm: AclPerm::Deny,
            acl,
            allow_from: Vec::new(),
        }))
    }

    #[test]
    fn permissions_follow_the_acl_and_retry_topics_follow_their_group() {
        let who = user(vec![
            (AclResource::Topic("T".into()), AclPerm::Pub),
            (AclResource::Topic("S".into()), AclPerm::Sub),
            (AclResource::Group("g".into()), AclPerm::Sub),
        ]);
        assert!(who.check(Access::Pub("T")).is_ok());
        assert!(who.check(Access::Sub("T")).is_err());
        assert!(who.check(Access::Sub("S")).is_ok());
        assert!(who.check(Access::Pub("S")).is_err());
        assert!(who.check(Access::Group("g")).is_ok());
        assert!(who.check(Access::Group("h")).is_err());
        assert!(who.check(Access::Pub("%RETRY%g")).is_ok());
        assert!(who.check(Access::Pub("%DLQ%h")).is_err());
        assert!(who.check(Access::Pub("Other")).is_err(), "default DENY");
        let e = who.check(Access::Admin).unwrap_err().to_string();
        assert!(e.contains("user u lacks admin rights"), "{e}");
        let e = who.check(Access::Sub("T")).unwrap_err().to_string();
        assert!(
            e.contains("not authorized: user u lacks SUB on topic T"),
            "{e}"
        );
        assert!(Who::Admin("a".into()).check(Access::Admin).is_ok());
        assert!(Who::Open.check(Access::Admin).is_ok());
    }

    #[test]
    fn the_remoting_signature_is_rocketmqs() {
        // A GET_ROUTEINFO_BY_TOPIC captured from the C++ client 1.2.3 with an empty secret
        // (reference/remoting.md): its Signature is what RocketMQ's hook computes.
        let ext: BTreeMap<String, String> = [
            ("AccessKey", ""),
            ("OnsChannel", "ALIYUN"),
            ("Signature", "N/YT7X6tJe5UfutmW+uNwTTJ7Fc="),
            ("topic", "TopicTest"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(sign_remoting("", &ext, b""), "N/YT7X6tJe5UfutmW+uNwTTJ7Fc=");
        assert!(verify_remoting(
            "",
            &ext,
            b"",
            "N/YT7X6tJe5UfutmW+uNwTTJ7Fc="
        ));
        assert!(!verify_remoting(
            "x",
            &ext,
            b"",
            "N/YT7X6tJe5UfutmW+uNwTTJ7Fc="
        ));
        assert!(!verify_remoting(
            "",
            &ext,
            b"body",
            "N/YT7X6tJe5UfutmW+uNwTTJ7Fc="
        ));
        assert!(!verify_remoting("", &ext, b"", "not base64!"));
    }

    /// An authorizer with authentication on and the configured admin `root`.
    fn authorizer(dir: &std::path::Path) -> Authorizer {
        let store = Store::open(
            dir,
            raftmq_store::StoreConfig {
                log: raftmq_store::LogConfig {
                    segment_bytes: 1 << 20,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        let config = AuthConfig {
            enabled: true,
            admin_access_key: Some("root".into()),
            admin_secret_key: Some("root-secret".into()),
            ..AuthConfig::default()
        };
        Authorizer::new(&config, Arc::new(store))
    }

    fn conn() -> ConnectionCtx {
        ConnectionCtx::new(
            Some("127.0.0.1:5000".parse().unwrap()),
            crate::core::Protocol::Native,
        )
    }

    #[test]
    fn a_challenge_is_single_use_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let a = authorizer(dir.path());
        let c = conn();
        assert!(a.native(&c).is_err(), "anonymous");
        let n = a.challenge(&c);
        let wrong = wire::sign_challenge("not-the-secret", &n, "root");
        assert!(a.authenticate(&c, "root", &wrong).is_err());
        let right = wire::sign_challenge("root-secret", &n, "root");
        let e = a.authenticate(&c, "root", &right).unwrap_err().to_string();
        assert!(e.contains("no challenge"), "used up by the failed try: {e}");
        let n = a.challenge(&c);
        let old = Instant::now()
            .checked_sub(wire::CHALLENGE_TTL + std::time::Duration::from_secs(1))
            .unwrap();
        *c.challenge.lock().unwrap() = Some((n.clone(), old));
        let e = a
            .authenticate(&c, "root", &wire::sign_challenge("root-secret", &n, "root"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expired"), "{e}");
        let n = a.challenge(&c);
        a.authenticate(&c, "root", &wire::sign_challenge("root-secret", &n, "root"))
            .unwrap();
        assert!(matches!(a.native(&c), Ok(Who::Admin(k)) if k == "root"));
        assert_eq!(a.refused(), 4, "anonymous, wrong, used up, expired");
    }

    #[test]
    fn remoting_requests_must_be_signed_by_a_known_user() {
        let dir = tempfile::tempdir().unwrap();
        let a = authorizer(dir.path());
        let c = conn();
        let mut ext: BTreeMap<String, String> = [("topic", "T"), ("queueId", "0")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert!(a.remoting(&c, &ext, b"body").is_err(), "no AccessKey");
        ext.insert(ACCESS_KEY.into(), "root".into());
        ext.insert(
            SIGNATURE.into(),
            sign_remoting("root-secret", &ext, b"body"),
        );
        assert!(matches!(a.remoting(&c, &ext, b"body"), Ok(Who::Admin(_))));
        assert!(
            a.remoting(&c, &ext, b"other body").is_err(),
            "tampered body"
        );
        ext.insert("queueId".into(), "1".into());
        assert!(a.remoting(&c, &ext, b"body").is_err(), "tampered field");
        ext.insert(ACCESS_KEY.into(), "nobody".into());
        let e = a.remoting(&c, &ext, b"body").unwrap_err().to_string();
        assert!(e.contains("no user \"nobody\""), "{e}");
    }

    #[test]
    fn an_enabled_config_needs_an_admin() {
        let mut c = AuthConfig {
            enabled: true,
            ..AuthConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("admin_access_key"));
        c.admin_access_key = Some("root".into());
        c.admin_secret_key = Some("short".into());
        assert!(c.validate().is_err());
        c.admin_secret_key = Some("long-enough-secret".into());
        assert!(c.validate().is_ok());
        assert!(AuthConfig::default().validate().is_ok());
    }

    #[test]
    fn metrics_need_the_token_or_the_admin_unless_left_open() {
        let admin = || Some(("root".to_owned(), "long-enough-secret".to_owned()));
        let mut c = AuthConfig {
            enabled: true,
            admin_access_key: Some("root".into()),
            admin_secret_key: Some("long-enough-secret".into()),
            ..AuthConfig::default()
        };
        assert_eq!(c.metrics_credentials(), (None, admin()));
        c.metrics_token = Some("short".into());
        assert!(c.validate().unwrap_err().contains("at least 16"));
        c.metrics_token = Some("scrape-token-0123456789".into());
        assert!(c.validate().is_ok());
        assert_eq!(
            c.metrics_credentials(),
            (Some("scrape-token-0123456789".into()), admin())
        );
        c.metrics_open = true;
        assert!(c.validate().unwrap_err().contains("both set"));
        c.metrics_token = None;
        assert_eq!(c.metrics_credentials(), (None, None));
        // Without [auth], only a token closes /metrics.
        let mut off = AuthConfig::default();
        assert_eq!(off.metrics_credentials(), (None, None));
        off.metrics_token = Some("scrape-token-0123456789".into());
        assert!(off.validate().is_ok());
        assert_eq!(
            off.metrics_credentials(),
            (Some("scrape-token-0123456789".into()), None)
        );
    }
}
