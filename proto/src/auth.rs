//! Authentication and access control as both ends of the native protocol see them: users,
//! their permissions, and the signed answer to a broker's challenge.
//!
//! A native connection authenticates once, right after `hello`:
//! ```text
//! client                                   broker
//!   auth_challenge()            ──────────►  32 random bytes, kept for this connection
//!   authenticate(access_key, HMAC-SHA256(secret, "raftmq-auth-v1\0" ‖ nonce ‖ access_key))
//!                               ──────────►  checked, the nonce forgotten: the connection
//!                                            now acts as that user
//! ```
//! The nonce is single-use and expires ([`CHALLENGE_TTL`]), so a recorded answer is worth
//! nothing on another connection or later on the same one.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Bytes of a challenge nonce.
pub const NONCE_LEN: usize = 32;

/// How long a challenge may be answered.
pub const CHALLENGE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Longest access key, bytes.
pub const MAX_ACCESS_KEY_LEN: usize = 128;

/// Shortest and longest secret, bytes.
pub const SECRET_LEN: std::ops::RangeInclusive<usize> = 8..=256;

/// What a user may do with a topic or a consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AclPerm {
    /// Nothing.
    Deny,
    /// Send (topics); nothing for groups.
    Pub,
    /// Consume (topics), consume as the group (groups).
    Sub,
    /// Both.
    PubSub,
}

impl AclPerm {
    /// Whether this permits sending.
    pub fn can_pub(self) -> bool {
        matches!(self, AclPerm::Pub | AclPerm::PubSub)
    }

    /// Whether this permits consuming.
    pub fn can_sub(self) -> bool {
        matches!(self, AclPerm::Sub | AclPerm::PubSub)
    }
}

impl fmt::Display for AclPerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AclPerm::Deny => "DENY",
            AclPerm::Pub => "PUB",
            AclPerm::Sub => "SUB",
            AclPerm::PubSub => "PUB|SUB",
        })
    }
}

impl FromStr for AclPerm {
    type Err = String;

    /// `PUB`, `SUB`, `PUB|SUB` (or `PUB,SUB`, `SUB|PUB`), `DENY`; any case.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut p = false;
        let mut u = false;
        let mut deny = false;
        for part in s.split(['|', ',']) {
            match part.trim().to_ascii_uppercase().as_str() {
                "PUB" => p = true,
                "SUB" => u = true,
                "DENY" => deny = true,
                other => {
                    return Err(format!(
                        "{other:?} is not a permission: use PUB, SUB, PUB|SUB or DENY"
                    ))
                }
            }
        }
        match (deny, p, u) {
            (true, false, false) => Ok(AclPerm::Deny),
            (true, _, _) => Err("DENY cannot be combined with PUB or SUB".into()),
            (false, true, true) => Ok(AclPerm::PubSub),
            (false, true, false) => Ok(AclPerm::Pub),
            (false, false, true) => Ok(AclPerm::Sub),
            (false, false, false) => Err("empty permission: use PUB, SUB, PUB|SUB or DENY".into()),
        }
    }
}

/// What an ACL entry names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AclResource {
    /// A topic, by name.
    Topic(String),
    /// A consumer group, by name (its `%RETRY%` and `%DLQ%` topics follow it).
    Group(String),
}

impl fmt::Display for AclResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclResource::Topic(t) => write!(f, "topic {t}"),
            AclResource::Group(g) => write!(f, "group {g}"),
        }
    }
}

/// A user as the broker group stores it (replicated with the rest of its metadata).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The access key (the user's name).
    pub access_key: String,
    /// The shared secret both ends sign with.
    pub secret_key: String,
    /// Admins may do everything, including managing users.
    #[serde(default)]
    pub admin: bool,
    /// Permission on topics the user has no entry for. Default: DENY.
    #[serde(default = "deny")]
    pub default_topic_perm: AclPerm,
    /// Permission on groups the user has no entry for. Default: DENY.
    #[serde(default = "deny")]
    pub default_group_perm: AclPerm,
    /// Permissions on named topics and groups.
    #[serde(default)]
    pub acl: Vec<(AclResource, AclPerm)>,
    /// Addresses the user may connect from: IPs or `ip/prefix` networks; empty = any.
    #[serde(default)]
    pub allow_from: Vec<String>,
}

fn deny() -> AclPerm {
    AclPerm::Deny
}

impl User {
    /// The user without the secret, for listings.
    pub fn info(&self) -> UserInfo {
        UserInfo {
            access_key: self.access_key.clone(),
            admin: self.admin,
            default_topic_perm: self.default_topic_perm,
            default_group_perm: self.default_group_perm,
            acl: self.acl.clone(),
            allow_from: self.allow_from.clone(),
        }
    }
}

/// A user as listings show it: everything but the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The access key.
    pub access_key: String,
    /// Whether the user is an admin.
    pub admin: bool,
    /// Permission on unnamed topics.
    pub default_topic_perm: AclPerm,
    /// Permission on unnamed groups.
    pub default_group_perm: AclPerm,
    /// Permissions on named topics and groups.
    pub acl: Vec<(AclResource, AclPerm)>,
    /// Allowed source addresses (empty = any).
    pub allow_from: Vec<String>,
}

/// Creates or changes a user: `None` fields keep their value (or the default, on create).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdate {
    /// The user.
    pub access_key: String,
    /// `Some(true)`: the user must not exist yet; `Some(false)`: it must exist.
    pub create: Option<bool>,
    /// A new secret (required on create).
    pub secret_key: Option<String>,
    /// Admin or not.
    pub admin: Option<bool>,
    /// Permission on unnamed topics.
    pub default_topic_perm: Option<AclPerm>,
    /// Permission on unnamed groups.
    pub default_group_perm: Option<AclPerm>,
    /// Allowed source addresses.
    pub allow_from: Option<Vec<String>>,
}

/// Checks an access key: 1 to [`MAX_ACCESS_KEY_LEN`] characters of `[A-Za-z0-9_.@-]`.
///
/// # Errors
/// What is wrong with it.
pub fn validate_access_key(k: &str) -> Result<(), String> {
    if k.is_empty() || k.len() > MAX_ACCESS_KEY_LEN {
        return Err(format!(
            "an access key has 1 to {MAX_ACCESS_KEY_LEN} characters, not {}",
            k.len()
        ));
    }
    if let Some(c) = k
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.@-".contains(*c)))
    {
        return Err(format!(
            "access key {k:?} has {c:?}; use letters, digits and _ . @ -"
        ));
    }
    Ok(())
}

/// Checks a secret's length.
///
/// # Errors
/// Too short or too long.
pub fn validate_secret(s: &str) -> Result<(), String> {
    if SECRET_LEN.contains(&s.len()) {
        Ok(())
    } else {
        Err(format!(
            "a secret key has {} to {} bytes, not {}",
            SECRET_LEN.start(),
            SECRET_LEN.end(),
            s.len()
        ))
    }
}

/// Checks an allow-list entry: an IP address or `ip/prefix`.
///
/// # Errors
/// Not an address or network.
pub fn parse_network(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address or ip/prefix network"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => l
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
    };
    Ok((ip, len))
}

/// Whether `addr` lies in network `(net, len)` (IPv4-mapped IPv6 counts as IPv4).
pub fn in_network(addr: std::net::IpAddr, (net, len): (std::net::IpAddr, u8)) -> bool {
    use std::net::IpAddr;
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The answer to a challenge: HMAC-SHA256 keyed with the secret over a domain tag, the
/// nonce and the access key.
pub fn sign_challenge(secret: &str, nonce: &[u8], access_key: &str) -> Vec<u8> {
    let mut mac = mac(secret);
    mac.update(b"raftmq-auth-v1\0");
    mac.update(nonce);
    mac.update(access_key.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Whether `signature` answers the challenge `nonce` for `access_key` (constant time).
pub fn verify_challenge(secret: &str, nonce: &[u8], access_key: &str, signature: &[u8]) -> bool {
    let mut mac = mac(secret);
    mac.update(b"raftmq-auth-v1\0");
    mac.update(nonce);
    mac.update(access_key.as_bytes());
    mac.verify_slice(signature).is_ok()
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
}

/// Authenticates a new connection as `access_key` (the client side of the exchange in the
/// module docs): asks for a challenge and answers it, each call within `timeout`.
///
/// # Errors
/// The transport's, or the broker's refusal.
pub async fn authenticate(
    client: &crate::BrokerServiceClient,
    access_key: &str,
    secret_key: &str,
    timeout: std::time::Duration,
) -> Result<Result<(), crate::WireError>, tarpc::client::RpcError> {
    let ctx = || {
        let mut c = tarpc::context::current();
        c.deadline = std::time::Instant::now() + timeout;
        c
    };
    let nonce = match client.auth_challenge(ctx()).await? {
        Ok(n) => n,
        Err(e) => return Ok(Err(e)),
    };
    let signature = sign_challenge(secret_key, &nonce, access_key);
    client
        .authenticate(ctx(), access_key.to_owned(), signature)
        .await
}

/// A fresh challenge nonce.
pub fn nonce() -> Vec<u8> {
    rand::random::<[u8; NONCE_LEN]>().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_parse_every_spelling_and_refuse_nonsense() {
        assert_eq!("pub".parse(), Ok(AclPerm::Pub));
        assert_eq!("PUB,SUB".parse(), Ok(AclPerm::PubSub));
        assert_eq!("SUB|PUB".parse(), Ok(AclPerm::PubSub));
        assert_eq!("DENY".parse(), Ok(AclPerm::Deny));
        assert!("DENY|PUB".parse::<AclPerm>().is_err());
        assert!("READ".parse::<AclPerm>().is_err());
        assert!("".parse::<AclPerm>().is_err());
        for p in [AclPerm::Deny, AclPerm::Pub, AclPerm::Sub, AclPerm::PubSub] {
            assert_eq!(p.to_string().parse(), Ok(p));
        }
    }

    #[test]
    fn a_signature_holds_only_for_its_nonce_key_and_secret() {
        let n = nonce();
        let s = sign_challenge("secret-1", &n, "alice");
        assert!(verify_challenge("secret-1", &n, "alice", &s));
        assert!(!verify_challenge("secret-2", &n, "alice", &s));
        assert!(!verify_challenge("secret-1", &n, "bob", &s));
        assert!(!verify_challenge("secret-1", &nonce(), "alice", &s));
        assert!(!verify_challenge("secret-1", &n, "alice", &s[..16]));
    }

    #[test]
    fn networks_match_like_cidr() {
        let net = parse_network("10.1.0.0/16").unwrap();
        assert!(in_network("10.1.200.3".parse().unwrap(), net));
        assert!(!in_network("10.2.0.1".parse().unwrap(), net));
        assert!(in_network("::ffff:10.1.0.9".parse().unwrap(), net));
        assert!(in_network(
            "8.8.8.8".parse().unwrap(),
            parse_network("0.0.0.0/0").unwrap()
        ));
        let one = parse_network("127.0.0.1").unwrap();
        assert!(in_network("127.0.0.1".parse().unwrap(), one));
        assert!(!in_network("127.0.0.2".parse().unwrap(), one));
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("host").is_err());
    }

    #[test]
    fn names_and_secrets_are_checked() {
        assert!(validate_access_key("app-1.prod@team_x").is_ok());
        assert!(validate_access_key("").is_err());
        assert!(validate_access_key("a b").is_err());
        assert!(validate_secret("short").is_err());
        assert!(validate_secret("long enough").is_ok());
    }
}
