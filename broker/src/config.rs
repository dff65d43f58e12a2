//! [`BrokerConfig`]: the TOML file of `raftmq broker --config`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A malformed or inconsistent configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown or mistyped keys.
    #[error("config file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the line and key).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid broker config: {0}")]
    Invalid(String),
}

/// Flush mode as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flush {
    /// fsync before acknowledging (group commit). The default.
    #[default]
    Sync,
    /// Acknowledge once written; fsync every 500 ms.
    Async,
}

/// Configuration of one broker node. Every field has a default except the group's
/// identity and addresses, which `validate` checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Cluster name. Default: `DefaultCluster`.
    pub cluster: String,
    /// Broker group (one Raft group). Default: `broker-a`.
    pub group: String,
    /// This node's id within the group; must be a key of `peers`. Default: 1.
    pub node_id: u64,
    /// Address the client port listens on. Default: `127.0.0.1:10911`.
    pub listen: String,
    /// Address the Raft port listens on; must equal this node's entry in `peers` unless
    /// `raft_advertise` is set. Outgoing Raft connections use its IP as their source when it
    /// names one. Default: `127.0.0.1:10912`.
    pub raft_listen: String,
    /// Client address published to NameServers and clients. Default: `listen`.
    pub advertise: Option<String>,
    /// Raft address peers dial (when a proxy or NAT sits in front of `raft_listen`); must
    /// equal this node's entry in `peers`. Default: `raft_listen`.
    pub raft_advertise: Option<String>,
    /// Address of an HTTP listener serving Prometheus metrics at `/metrics` and health at
    /// `/healthz`: HTTPS with the node's certificate when `[tls]` is set; `/metrics` asks for
    /// a credential as `[auth]` says (`metrics_token`, `metrics_open`), `/healthz` is open
    /// for probes. Default: none (no listener).
    pub http_listen: Option<String>,
    /// Metrics per topic, queue and consumer group; off for clusters with very many of
    /// them (node-level series stay). Default: true.
    pub metrics_per_object: bool,
    /// Initial members of the group: node id -> Raft address. Used once, to initialize a
    /// brand-new group. Default: just this node.
    pub peers: BTreeMap<String, String>,
    /// NameServers to register with. Default: `["127.0.0.1:9876"]`.
    pub namesrv: Vec<String>,
    /// Data directory (commit log, indexes, snapshots). Default: `./data/<group>/n<node_id>`.
    pub data_dir: Option<PathBuf>,
    /// `sync` (fsync before acknowledging) or `async`. Default: `sync`.
    pub flush: Flush,
    /// Commit-log segment size, bytes; at most a sixteenth of the data disk (at least
    /// 1 MiB), so that retention can free a small disk in steps. Default: 1 GiB.
    pub segment_bytes: u64,
    /// Synced commit-log bytes behind the tail kept in the page cache; older pages are
    /// dropped after their fsync so a steady write stream reuses a small set of pages (on
    /// a VM, growing the cache into fresh memory costs a hypervisor fault per page).
    /// Consumers and followers within this distance of the tail read from memory.
    /// 0 leaves caching to the OS. Default: 64 MiB.
    pub page_cache_keep_bytes: u64,
    /// Segments older than this many hours are deleted. Default: 72.
    pub retention_hours: u64,
    /// Segments are also deleted while the disk is fuller than this percentage, or has
    /// less than 256 MiB (twice the reserve kept free) left, oldest first and beyond what
    /// Raft would keep for followers (a snapshot is taken to allow it). Default: 90.
    pub disk_high_water_percent: u8,
    /// New messages are refused while the data disk is fuller than this percentage (reads,
    /// consumption and offset commits go on), or with less than 128 MiB free, so that no
    /// node runs out of space; above `disk_high_water_percent`. A follower stops taking the
    /// leader's appends halfway from this limit to full, or under 64 MiB free, and catches
    /// up once it has room. Default: 95.
    pub disk_write_limit_percent: u8,
    /// Create unknown topics on first send (with `default_queues` queues). Default: false.
    pub auto_create_topics: bool,
    /// Queues of an auto-created topic. Default: 8.
    pub default_queues: u32,
    /// Raft heartbeat interval, ms. Default: 100.
    pub raft_heartbeat_ms: u64,
    /// Raft election timeout, lower bound, ms. Default: 250.
    pub raft_election_min_ms: u64,
    /// Raft election timeout, upper bound, ms; also the leader lease. Followers campaign
    /// after lease + timeout of silence, so a failover takes about 2x this. Default: 350.
    pub raft_election_max_ms: u64,
    /// Entries between Raft snapshots. Default: 20000.
    pub raft_snapshot_every_entries: u64,
    /// Re-register with NameServers this often, ms. Default: 30000.
    pub register_interval_ms: u64,
    /// Forget a client instance silent this long, ms. Default: 120000.
    pub client_expiry_ms: u64,
    /// Longest a pull may be held waiting for messages, ms. Default: 30000.
    pub max_pull_wait_ms: u64,
    /// Close a connection (on any port of this process) on which nothing was read or
    /// written for this long, ms, so silent clients give their slots back; clients re-dial.
    /// Above `max_pull_wait_ms` (a held pull is silent). Default: 120000, as RocketMQ.
    pub connection_idle_timeout_ms: u64,
    /// Lease of an orderly consumer's queue lock, ms (clients renew at a third of it).
    /// Default: 60000.
    pub queue_lock_lease_ms: u64,
    /// The delays of levels 1, 2, ... (RocketMQ's `messageDelayLevel`): durations with a
    /// unit `ms`, `s`, `m`, `h` or `d`, separated by spaces. Retries back off through
    /// level `3 + reconsume_times`. Default: `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m
    /// 20m 30m 1h 2h`.
    pub message_delay_levels: String,
    /// On a clean shutdown, a leader first hands leadership to its most caught-up follower
    /// (milliseconds of unavailability instead of an election timeout). Default: true.
    pub hand_over_on_shutdown: bool,
    /// As a follower, fsync appends on the thread that received them when no sync is
    /// running: two thread hand-offs fewer on every write's critical path (3 processes on
    /// 2 cores: single-publisher p50 -0.05 ms). Turn off where several nodes share one
    /// process (`raftmq dev` does). Default: true.
    pub follower_inline_sync: bool,
    /// As the leader, hold an AppendEntries that carries only a new commit index up to this
    /// long, so the next append carries the commit instead (half the Raft RPCs when one
    /// publisher waits for each acknowledgement). An idle follower learns of a commit up to
    /// this much later, which delays only consumers that read from followers. 0 sends each
    /// at once. Default: 2.
    pub raft_commit_hold_ms: u64,
    /// A half message (transaction) younger than this is not checked back: its producer
    /// is probably still running the local transaction. ms. Default: 6000 (RocketMQ's
    /// `transactionTimeOut`).
    pub transaction_timeout_ms: u64,
    /// How often the leader looks for half messages to check back with their producer
    /// group, ms. Default: 30000 (RocketMQ's `transactionCheckInterval`).
    pub transaction_check_interval_ms: u64,
    /// After this many check-backs without a decision a half message is rolled back (and
    /// logged). Default: 15 (RocketMQ's `transactionCheckMax`).
    pub transaction_check_max: u32,
    /// Authentication and access control (`[auth]`); off unless `enabled = true`.
    pub auth: crate::auth::AuthConfig,
    /// TLS (`[tls]`: `cert`, `key`, `ca`, `require_client_cert`); plaintext when absent.
    /// With it, the client port speaks TLS, Raft peers use mutual TLS with certificates
    /// the CA signed, and the node dials NameServers and peers with TLS. `raftmq certs dev
    /// DIR` writes a CA and a node certificate to try it.
    pub tls: Option<raftmq_proto::tls::TlsFiles>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            cluster: "DefaultCluster".into(),
            group: "broker-a".into(),
            node_id: 1,
            listen: "127.0.0.1:10911".into(),
            raft_listen: "127.0.0.1:10912".into(),
            advertise: None,
            raft_advertise: None,
            http_listen: None,
            metrics_per_object: true,
            peers: BTreeMap::new(),
            namesrv: vec!["127.0.0.1:9876".into()],
            data_dir: None,
            flush: Flush::Sync,
            segment_bytes: 1 << 30,
            page_cache_keep_bytes: 64 << 20,
            retention_hours: 72,
            disk_high_water_percent: 90,
            disk_write_limit_percent: 95,
            auto_create_topics: false,
            default_queues: 8,
            raft_heartbeat_ms: 100,
            raft_election_min_ms: 250,
            raft_election_max_ms: 350,
            raft_snapshot_every_entries: 20_000,
            register_interval_ms: 30_000,
            client_expiry_ms: 120_000,
            connection_idle_timeout_ms: 120_000,
            max_pull_wait_ms: 30_000,
            queue_lock_lease_ms: 60_000,
            message_delay_levels: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
                .into(),
            hand_over_on_shutdown: true,
            follower_inline_sync: true,
            raft_commit_hold_ms: 2,
            transaction_timeout_ms: 6_000,
            transaction_check_interval_ms: 30_000,
            transaction_check_max: 15,
            auth: crate::auth::AuthConfig::default(),
            tls: None,
        }
    }
}

impl BrokerConfig {
    /// Reads and validates a TOML file.
    ///
    /// # Errors
    /// Unreadable file, bad TOML, unknown keys or invalid values.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.auth.apply_env();
        cfg.validate()
    }

    /// The client address published to others.
    pub fn advertise_addr(&self) -> &str {
        self.advertise.as_deref().unwrap_or(&self.listen)
    }

    /// The Raft address peers dial.
    pub fn raft_advertise_addr(&self) -> &str {
        self.raft_advertise.as_deref().unwrap_or(&self.raft_listen)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("./data/{}/n{}", self.group, self.node_id)))
    }

    /// Peers as node id -> Raft address (this node included).
    ///
    /// # Errors
    /// A key that is not a number.
    pub fn peer_map(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.peers {
            let id: u64 = k.trim().parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "peers key {k:?} is not a node id (a positive number)"
                ))
            })?;
            out.insert(id, v.clone());
        }
        if out.is_empty() {
            out.insert(self.node_id, self.raft_advertise_addr().to_owned());
        }
        Ok(out)
    }

    /// The delay of each level, ms.
    ///
    /// # Errors
    /// A malformed duration.
    pub fn delay_levels_ms(&self) -> Result<Vec<u64>, ConfigError> {
        let levels: Vec<u64> = self
            .message_delay_levels
            .split_whitespace()
            .map(|d| {
                let split = d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len());
                let (n, unit) = d.split_at(split);
                let n: u64 = n.parse().map_err(|_| {
                    ConfigError::Invalid(format!("delay level {d:?} has no number"))
                })?;
                let ms = match unit {
                    "ms" => 1,
                    "s" => 1000,
                    "m" => 60_000,
                    "h" => 3_600_000,
                    "d" => 86_400_000,
                    _ => {
                        return Err(ConfigError::Invalid(format!(
                            "delay level {d:?}: unit must be ms, s, m, h or d"
                        )))
                    }
                };
                Ok(n * ms)
            })
            .collect::<Result<_, _>>()?;
        if levels.is_empty() || levels.len() > 255 {
            return Err(ConfigError::Invalid(
                "message_delay_levels must list 1 to 255 durations".into(),
            ));
        }
        Ok(levels)
    }

    /// Checks ranges and consistency.
    ///
    /// # Errors
    /// The first problem found, described.
    pub fn validate(self) -> Result<Self, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Err(e) = raftmq_proto::names::validate_group(&self.group) {
            return bad(format!("group: {e}"));
        }
        if self.cluster.is_empty() {
            return bad("cluster must not be empty".into());
        }
        if self.node_id == 0 {
            return bad("node_id must be 1 or more".into());
        }
        if let Err(e) = self.auth.validate() {
            return bad(e);
        }
        if self.tls.as_ref().is_some_and(|t| t.ca.is_none()) {
            return bad(
                "[tls] needs `ca`: Raft peers check each other's certificates against it".into(),
            );
        }
        for (name, addr) in [("listen", &self.listen), ("raft_listen", &self.raft_listen)] {
            if addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return bad(format!("{name} = {addr:?} is not a host:port address"));
            }
        }
        let peers = self.peer_map()?;
        match peers.get(&self.node_id) {
            None => return bad(format!("peers has no entry for this node (node_id = {})", self.node_id)),
            Some(a) if a != self.raft_advertise_addr() => {
                return bad(format!(
                    "peers.{} = {a:?} differs from raft_listen = {:?}; they must name the same address (or set raft_advertise)",
                    self.node_id,
                    self.raft_advertise_addr()
                ))
            }
            Some(_) => {}
        }
        if self.namesrv.is_empty() {
            return bad("namesrv must list at least one NameServer address".into());
        }
        if self.segment_bytes < 1 << 20 {
            return bad(format!(
                "segment_bytes = {} is below the 1 MiB minimum",
                self.segment_bytes
            ));
        }
        if !(1..=99).contains(&self.disk_high_water_percent) {
            return bad("disk_high_water_percent must be between 1 and 99".into());
        }
        if self.disk_write_limit_percent <= self.disk_high_water_percent
            || self.disk_write_limit_percent > 99
        {
            return bad(format!(
                "disk_write_limit_percent = {} must be above disk_high_water_percent = {} (retention frees space before writes stop) and at most 99",
                self.disk_write_limit_percent, self.disk_high_water_percent
            ));
        }
        if self.connection_idle_timeout_ms <= self.max_pull_wait_ms {
            return bad(format!(
                "connection_idle_timeout_ms = {} must be above max_pull_wait_ms = {} (a pull held for messages sends nothing while it waits)",
                self.connection_idle_timeout_ms, self.max_pull_wait_ms
            ));
        }
        if self.default_queues == 0 || self.default_queues > 1024 {
            return bad("default_queues must be between 1 and 1024".into());
        }
        if self.raft_heartbeat_ms == 0 || self.raft_election_min_ms <= self.raft_heartbeat_ms * 2 {
            return bad("raft_election_min_ms must be more than twice raft_heartbeat_ms".into());
        }
        self.delay_levels_ms()?;
        if self.transaction_check_interval_ms < 100 || self.transaction_check_max == 0 {
            return bad(format!(
                "transaction_check_interval_ms = {} must be at least 100 and transaction_check_max = {} at least 1",
                self.transaction_check_interval_ms, self.transaction_check_max
            ));
        }
        if self.raft_election_max_ms <= self.raft_election_min_ms {
            return bad("raft_election_max_ms must be above raft_election_min_ms".into());
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
cluster = "DefaultCluster"
group = "broker-a"
node_id = 1
listen = "127.0.0.1:10911"
raft_listen = "127.0.0.1:10912"
namesrv = ["127.0.0.1:9876"]
data_dir = "./data/n1"
[peers]
1 = "127.0.0.1:10912"
2 = "127.0.0.1:11912"
3 = "127.0.0.1:12912"
"#;

    #[test]
    fn the_documented_example_parses() {
        let cfg: BrokerConfig = toml::from_str(EXAMPLE).unwrap();
        let cfg = cfg.validate().unwrap();
        assert_eq!(cfg.peer_map().unwrap().len(), 3);
        assert_eq!(cfg.advertise_addr(), "127.0.0.1:10911");
        assert_eq!(cfg.flush, Flush::Sync);
        assert_eq!(cfg.delay_levels_ms().unwrap().len(), 18);
        assert_eq!(cfg.delay_levels_ms().unwrap()[17], 7_200_000);
        let mut c = cfg.clone();
        c.message_delay_levels = "100ms 2s 1x".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn shipped_configs_are_valid() {
        for text in [
            include_str!("../../deploy/local/broker-n1.toml"),
            include_str!("../../deploy/local/broker-n2.toml"),
            include_str!("../../deploy/local/broker-n3.toml"),
        ] {
            let cfg: BrokerConfig = toml::from_str(text).unwrap();
            let cfg = cfg.validate().unwrap();
            assert_eq!(cfg.peer_map().unwrap().len(), 3);
            assert!(!cfg.auto_create_topics);
        }
    }

    #[test]
    fn mistakes_are_named() {
        let e = toml::from_str::<BrokerConfig>("nodeid = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nodeid"), "{e}");
        let cfg: BrokerConfig =
            toml::from_str(&EXAMPLE.replace("node_id = 1", "node_id = 4")).unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("no entry for this node"), "{e}");
        let cfg: BrokerConfig =
            toml::from_str(&EXAMPLE.replace("1 = \"127.0.0.1:10912\"", "1 = \"127.0.0.1:1\""))
                .unwrap();
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("differs from raft_listen"));
    }
}
