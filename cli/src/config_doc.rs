//! `raftmq broker --print-config`: the effective config as TOML, each setting under a
//! comment that explains it.
//!
//! The comments are [`BrokerConfig`]'s field docs, kept here by setting name because the
//! broker crate has no way to hand its doc comments to the binary. Tests fail when a
//! setting has no comment here, when one here names no setting, and when a comment no
//! longer matches the field's doc in `broker/src/config.rs`.

use raftmq_broker::BrokerConfig;

/// Every setting of [`BrokerConfig`] in the struct's order, with its doc comment.
const SETTINGS: &[(&str, &str)] = &[
    ("cluster", "Cluster name. Default: `DefaultCluster`."),
    (
        "group",
        "Broker group (one Raft group). Default: `broker-a`.",
    ),
    (
        "node_id",
        "This node's id within the group; must be a key of `peers`. Default: 1.",
    ),
    (
        "listen",
        "Address the client port listens on. Default: `127.0.0.1:10911`.",
    ),
    (
        "raft_listen",
        "Address the Raft port listens on; must equal this node's entry in `peers` unless \
         `raft_advertise` is set. Outgoing Raft connections use its IP as their source when it \
         names one. Default: `127.0.0.1:10912`.",
    ),
    (
        "advertise",
        "Client address published to NameServers and clients. Default: `listen`.",
    ),
    (
        "raft_advertise",
        "Raft address peers dial (when a proxy or NAT sits in front of `raft_listen`); must \
         equal this node's entry in `peers`. Default: `raft_listen`.",
    ),
    (
        "http_listen",
        "Address of an HTTP listener serving Prometheus metrics at `/metrics` and health at \
         `/healthz`: HTTPS with the node's certificate when `[tls]` is set; `/metrics` asks for \
         a credential as `[auth]` says (`metrics_token`, `metrics_open`), `/healthz` is open \
         for probes. Default: none (no listener).",
    ),
    (
        "metrics_per_object",
        "Metrics per topic, queue and consumer group; off for clusters with very many of them \
         (node-level series stay). Default: true.",
    ),
    (
        "peers",
        "Initial members of the group: node id -> Raft address. Used once, to initialize a \
         brand-new group. Default: just this node.",
    ),
    (
        "namesrv",
        "NameServers to register with. Default: `[\"127.0.0.1:9876\"]`.",
    ),
    (
        "data_dir",
        "Data directory (commit log, indexes, snapshots). Default: `./data/<group>/n<node_id>`.",
    ),
    (
        "flush",
        "`sync` (fsync before acknowledging) or `async`. Default: `sync`.",
    ),
    (
        "segment_bytes",
        "Commit-log segment size, bytes; at most a sixteenth of the data disk (at least \
         1 MiB), so that retention can free a small disk in steps. Default: 1 GiB.",
    ),
    (
        "page_cache_keep_bytes",
        "Synced commit-log bytes behind the tail kept in the page cache; older pages are \
         dropped after their fsync so a steady write stream reuses a small set of pages (on a \
         VM, growing the cache into fresh memory costs a hypervisor fault per page). Consumers \
         and followers within this distance of the tail read from memory. 0 leaves caching to \
         the OS. Default: 64 MiB.",
    ),
    (
        "retention_hours",
        "Segments older than this many hours are deleted. Default: 72.",
    ),
    (
        "disk_high_water_percent",
        "Segments are also deleted while the disk is fuller than this percentage, or has \
         less than 256 MiB (twice the reserve kept free) left, oldest first and beyond what \
         Raft would keep for followers (a snapshot is taken to allow it). Default: 90.",
    ),
    (
        "disk_write_limit_percent",
        "New messages are refused while the data disk is fuller than this percentage (reads, \
         consumption and offset commits go on), or with less than 128 MiB free, so that no \
         node runs out of space; above `disk_high_water_percent`. A follower stops taking the \
         leader's appends halfway from this limit to full, or under 64 MiB free, and catches \
         up once it has room. Default: 95.",
    ),
    (
        "auto_create_topics",
        "Create unknown topics on first send (with `default_queues` queues). Default: false.",
    ),
    (
        "default_queues",
        "Queues of an auto-created topic. Default: 8.",
    ),
    (
        "raft_heartbeat_ms",
        "Raft heartbeat interval, ms. Default: 100.",
    ),
    (
        "raft_election_min_ms",
        "Raft election timeout, lower bound, ms. Default: 250.",
    ),
    (
        "raft_election_max_ms",
        "Raft election timeout, upper bound, ms; also the leader lease. Followers campaign \
         after lease + timeout of silence, so a failover takes about 2x this. Default: 350.",
    ),
    (
        "raft_snapshot_every_entries",
        "Entries between Raft snapshots. Default: 20000.",
    ),
    (
        "register_interval_ms",
        "Re-register with NameServers this often, ms. Default: 30000.",
    ),
    (
        "client_expiry_ms",
        "Forget a client instance silent this long, ms. Default: 120000.",
    ),
    (
        "max_pull_wait_ms",
        "Longest a pull may be held waiting for messages, ms. Default: 30000.",
    ),
    (
        "connection_idle_timeout_ms",
        "Close a connection (on any port of this process) on which nothing was read or \
         written for this long, ms, so silent clients give their slots back; clients re-dial. \
         Above `max_pull_wait_ms` (a held pull is silent). Default: 120000, as RocketMQ.",
    ),
    (
        "queue_lock_lease_ms",
        "Lease of an orderly consumer's queue lock, ms (clients renew at a third of it). \
         Default: 60000.",
    ),
    (
        "transaction_timeout_ms",
        "A half message (transaction) younger than this is not checked back: its producer is \
         probably still running the local transaction. ms. Default: 6000 (RocketMQ's \
         `transactionTimeOut`).",
    ),
    (
        "transaction_check_interval_ms",
        "How often the leader looks for half messages to check back with their producer \
         group, ms. Default: 30000 (RocketMQ's `transactionCheckInterval`).",
    ),
    (
        "transaction_check_max",
        "After this many check-backs without a decision a half message is rolled back (and \
         logged). Default: 15 (RocketMQ's `transactionCheckMax`).",
    ),
    (
        "message_delay_levels",
        "The delays of levels 1, 2, ... (RocketMQ's `messageDelayLevel`): durations with a unit \
         `ms`, `s`, `m`, `h` or `d`, separated by spaces. Retries back off through level `3 + \
         reconsume_times`. Default: `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h \
         2h`.",
    ),
    (
        "hand_over_on_shutdown",
        "On a clean shutdown, a leader first hands leadership to its most caught-up follower \
         (milliseconds of unavailability instead of an election timeout). Default: true.",
    ),
    (
        "follower_inline_sync",
        "As a follower, fsync appends on the thread that received them when no sync is running: \
         two thread hand-offs fewer on every write's critical path (3 processes on 2 cores: \
         single-publisher p50 -0.05 ms). Turn off where several nodes share one process \
         (`raftmq dev` does). Default: true.",
    ),
    (
        "raft_commit_hold_ms",
        "As the leader, hold an AppendEntries that carries only a new commit index up to this \
         long, so the next append carries the commit instead (half the Raft RPCs when one \
         publisher waits for each acknowledgement). An idle follower learns of a commit up to \
         this much later, which delays only consumers that read from followers. 0 sends each at \
         once. Default: 2.",
    ),
    (
        "auth",
        "Authentication and access control (`[auth]`); off unless `enabled = true`.",
    ),
    (
        "tls",
        "TLS (`[tls]`: `cert`, `key`, `ca`, `require_client_cert`); plaintext when absent. With \
         it, the client port speaks TLS, Raft peers use mutual TLS with certificates the CA \
         signed, and the node dials NameServers and peers with TLS. `raftmq certs dev DIR` \
         writes a CA and a node certificate to try it.",
    ),
];

/// Appends `text` as `# ` comment lines of at most about 100 columns.
fn push_comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > 98 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// The effective config as TOML that parses back to `config`: a header, then every setting
/// under its comment, tables (`[peers]`) last as TOML requires. A setting that is not set
/// (an optional one whose default is derived from another) appears as a comment.
///
/// # Errors
/// The config does not serialize as TOML (it always does: every field has a TOML form).
pub fn render(config: &BrokerConfig) -> anyhow::Result<String> {
    // The admin's secret is never printed (the output ends up in tickets and chats).
    let mut shown = config.clone();
    if shown.auth.admin_secret_key.is_some() {
        shown.auth.admin_secret_key =
            Some("<hidden: set in the config or RAFTMQ_ADMIN_SECRET_KEY>".into());
    }
    if shown.auth.metrics_token.is_some() {
        shown.auth.metrics_token =
            Some("<hidden: set in the config or RAFTMQ_METRICS_TOKEN>".into());
    }
    let values = toml::Table::try_from(&shown)?;
    let mut top = String::from(
        "# raftmq broker config: the effective settings, defaults filled in.\n\
         # Every setting may be left out to get its default; `raftmq broker --config FILE`.\n",
    );
    let mut tables = String::new();
    let documented = SETTINGS.iter().map(|(n, d)| (*n, *d));
    let undocumented = values
        .keys()
        .filter(|k| !SETTINGS.iter().any(|(n, _)| n == k))
        .map(|k| (k.as_str(), "(no description)"));
    for (name, doc) in documented.chain(undocumented) {
        let out = match values.get(name) {
            Some(toml::Value::Table(_)) => &mut tables,
            _ => &mut top,
        };
        out.push('\n');
        push_comment(out, doc);
        match values.get(name) {
            None => out.push_str(&format!("# {name} is not set: the default above applies\n")),
            Some(v) => {
                let mut one = toml::Table::new();
                one.insert(name.to_owned(), v.clone());
                out.push_str(&toml::to_string(&one)?);
            }
        }
    }
    top.push_str(&tables);
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field name of `BrokerConfig`, from serde's own list (`deny_unknown_fields`
    /// names them all when it refuses a key), so an optional field that is not set counts.
    fn field_names() -> Vec<String> {
        let e = toml::from_str::<BrokerConfig>("no_such_setting = 1")
            .unwrap_err()
            .to_string();
        let list = e.split("expected one of").nth(1).unwrap_or_default();
        let names: Vec<String> = list
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        assert!(names.len() > 20, "cannot read the field list from: {e}");
        names
    }

    fn full_config() -> BrokerConfig {
        let text = include_str!("../../deploy/local/broker-n1.toml");
        let mut c: BrokerConfig = toml::from_str(text).unwrap();
        c.advertise = Some("10.0.0.1:10911".into());
        c.raft_advertise = Some(c.raft_listen.clone());
        c.validate().unwrap()
    }

    #[test]
    fn every_setting_has_a_comment_and_every_comment_a_setting() {
        let fields = field_names();
        for f in &fields {
            assert!(
                SETTINGS.iter().any(|(n, _)| n == f),
                "setting {f} has no comment in cli/src/config_doc.rs: add its doc there"
            );
        }
        for (n, _) in SETTINGS {
            assert!(fields.iter().any(|f| f == n), "{n} is not a setting");
        }
    }

    #[test]
    fn every_rendered_setting_sits_under_a_comment() {
        for config in [BrokerConfig::default(), full_config()] {
            let text = render(&config).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let parsed: toml::Table = toml::from_str(&text).unwrap();
            for key in parsed.keys() {
                let at = lines
                    .iter()
                    .position(|l| l.starts_with(&format!("{key} = ")) || **l == format!("[{key}]"))
                    .unwrap_or_else(|| panic!("{key} not found in:\n{text}"));
                assert!(
                    at > 0
                        && lines[at - 1].starts_with("# ")
                        && !lines[at - 1].contains("no description"),
                    "{key} has no comment above it:\n{text}"
                );
            }
            assert!(!text.contains("(no description)"), "{text}");
        }
    }

    #[test]
    fn the_rendered_config_parses_back_to_the_same_config() {
        for config in [BrokerConfig::default(), full_config()] {
            let text = render(&config).unwrap();
            let back: BrokerConfig =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(back, config, "{text}");
            assert_eq!(back.validate().unwrap(), config);
        }
        let text = render(&BrokerConfig::default()).unwrap();
        assert!(text.contains("# advertise is not set"), "{text}");
    }

    #[test]
    fn comments_match_the_field_docs_of_broker_config() {
        let src = include_str!("../../broker/src/config.rs");
        let start = src.find("pub struct BrokerConfig {").unwrap();
        let body = &src[start..];
        let body = &body[..body.find("\n}\n").unwrap()];
        let mut doc = Vec::new();
        let mut seen = 0;
        for line in body.lines().skip(1).map(str::trim) {
            if let Some(d) = line.strip_prefix("///") {
                doc.push(d.trim());
            } else if let Some(field) = line.strip_prefix("pub ") {
                let name = field.split(':').next().unwrap();
                let here = SETTINGS.iter().find(|(n, _)| *n == name).map(|(_, d)| *d);
                assert_eq!(
                    here,
                    Some(doc.join(" ").as_str()),
                    "the comment of {name} in cli/src/config_doc.rs differs from its doc in broker/src/config.rs"
                );
                doc.clear();
                seen += 1;
            }
        }
        assert_eq!(seen, SETTINGS.len());
    }
}
