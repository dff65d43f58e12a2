//! Admin commands: `topic`, `cluster`, `group`, `msg`.

use anyhow::Context as _;
use clap::Subcommand;
use raftmq_client::message_tools::{message_json, RANGE_MAX};
use raftmq_client::topic_groups::GroupChange;
use raftmq_client::Admin;
use raftmq_proto::message::PROP_UNIQ_KEY;
use raftmq_proto::{FoundMessage, MessageExt};
use serde_json::json;

use crate::output::Out;
use crate::when::parse_time;

/// `raftmq topic ...`
#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create (or update) a topic on every broker group, or on one.
    Create {
        /// Topic name.
        name: String,
        /// Read and write queues per broker group.
        #[arg(long, default_value_t = 8)]
        queues: u32,
        /// Only on this broker group.
        #[arg(long)]
        group: Option<String>,
    },
    /// Move a topic onto and off broker groups while it is in use: it ends up served by
    /// exactly --groups. A group added gets the topic at once (producers spread onto it
    /// within their 30 s route refresh, consumers rebalance onto it). A group left out is
    /// shrunk off without losing a message: its write permission goes first (producers
    /// move to the other groups), then, once every consumer group has committed to the end
    /// of its queues, its read permission. The data stays there until `topic delete` or
    /// retention. A consumer group that has stopped for good keeps a shrink waiting:
    /// delete it (`raftmq group delete`) or run again with --wait 0 and later.
    ///
    /// Example: raftmq topic update Orders --groups broker-a,broker-c
    Update {
        /// Topic name.
        name: String,
        /// The broker groups to serve it, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        groups: Vec<String>,
        /// Queues on a group it is added to (default: as many as the groups serving it).
        #[arg(long)]
        queues: Option<u32>,
        /// Most seconds to wait for consumers to finish a leaving group's messages before
        /// turning its reads off; 0 turns writes off only (run again to finish).
        #[arg(long, default_value_t = 300)]
        wait: u64,
    },
    /// List every topic.
    List,
    /// Show which broker groups serve a topic, and their leaders.
    Route {
        /// Topic name.
        name: String,
    },
    /// Min and max offset of every queue.
    Status {
        /// Topic name.
        name: String,
    },
    /// Delete a topic from every broker group.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// `raftmq cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Every broker group and node: role, term, commit and applied index, lag, address.
    List,
    /// Move a broker group's leadership to another node.
    TransferLeader {
        /// Broker group.
        #[arg(long)]
        group: String,
        /// Node id to lead.
        #[arg(long)]
        to: u64,
    },
    /// Add a node to a broker group (as a learner, then a voter).
    AddNode {
        /// Broker group.
        #[arg(long)]
        group: String,
        /// New node id (never reuse a removed node's id).
        #[arg(long)]
        id: u64,
        /// Its Raft address.
        #[arg(long)]
        raft_addr: String,
        /// Its client address.
        #[arg(long)]
        client_addr: String,
    },
    /// Take a node out of service before stopping it (a rolling upgrade does this for
    /// every node in turn): leadership moves to the most caught-up follower, the node stops
    /// standing for election and takes no new pulls (consumers go to the leader), and this
    /// waits for the pulls and sends it is serving. Sends that still reach it are forwarded
    /// to the leader, so producers see no error. Then stop the node (SIGTERM); a restart
    /// puts it back in service, or `--undo` does without one.
    ///
    /// Example: raftmq cluster drain broker-a/2 && systemctl stop raftmq-broker@broker-a
    Drain {
        /// The node, as GROUP/NODE_ID (e.g. broker-a/2; `raftmq cluster list` shows both).
        node: String,
        /// Put the node back in service instead.
        #[arg(long)]
        undo: bool,
        /// Most seconds to wait for in-flight pulls and sends (at most 60).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=60))]
        wait: u64,
    },
    /// Remove a node from a broker group.
    RemoveNode {
        /// Broker group.
        #[arg(long)]
        group: String,
        /// Node id.
        #[arg(long)]
        id: u64,
    },
}

/// `raftmq group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Every consumer group the brokers know.
    List,
    /// Per queue: broker offset, the group's offset, and the lag.
    Progress {
        /// Consumer group.
        group: String,
    },
    /// Move a group's offsets on a topic to the first message at or after a time.
    ResetOffset {
        /// Consumer group.
        group: String,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// RFC 3339 time (2026-11-24T08:00:00Z, 2026-11-24T10:00:00+02:00) or ms since the
        /// Unix epoch.
        #[arg(long)]
        to_time: String,
    },
    /// The group's consumers now connected (heartbeating): client id, address, language
    /// and subscriptions (`topic:expression`).
    Clients {
        /// Consumer group.
        group: String,
    },
    /// Delete a consumer group: its config and committed offsets, on every broker group.
    /// Stop its consumers first, or their next commit brings the offsets back.
    Delete {
        /// Consumer group.
        group: String,
    },
}

/// `raftmq msg ...`
#[derive(Debug, Subcommand)]
pub enum MsgCmd {
    /// Show a message by id.
    Get {
        /// Message id (32 hex digits).
        msg_id: String,
    },
    /// Find messages by key.
    Query {
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Key.
        #[arg(long)]
        key: String,
        /// At most this many.
        #[arg(long, default_value_t = 32)]
        max: u32,
    },
    /// Read messages of one queue from an offset, committing nothing (an offset below what
    /// retention kept reads from the queue's first message).
    Read {
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Broker group holding the queue.
        #[arg(long)]
        broker_group: String,
        /// Queue id.
        #[arg(long)]
        queue: u32,
        /// First offset to read.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// At most this many (1-100).
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100))]
        max: u32,
    },
    /// Messages of a topic stored in a time range, oldest first, from every queue,
    /// committing nothing.
    Range {
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Start, included: RFC 3339 (2026-12-01T08:00:00Z) or ms since the Unix epoch.
        #[arg(long)]
        from: String,
        /// End, included (default: now).
        #[arg(long)]
        to: Option<String>,
        /// At most this many (1-1000); each queue is read no further than this.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=RANGE_MAX as i64))]
        max: u32,
    },
    /// The trace of a message: its send and every consumption attempt, as recorded by
    /// clients with tracing on (`produce --trace`, `consume --trace`, the client crate's
    /// `.trace(topic)`), oldest first.
    Trace {
        /// Stored-position id (`msg_id`) or client id (`unique_key`).
        msg_id: String,
        /// The trace topic the clients wrote to.
        #[arg(long, default_value = raftmq_client::trace::TRACE_TOPIC)]
        trace_topic: String,
    },
    /// Deliver a stored message to one consumer group again (and to no other): through
    /// the group's retry topic, a second later. Works on dead-lettered messages
    /// (`%DLQ%<group>`) too.
    Resend {
        /// Stored-position message id (`msg_id`, 32 hex digits).
        msg_id: String,
        /// Consumer group to deliver it to.
        #[arg(long)]
        group: String,
    },
}

/// Runs `topic` commands.
pub async fn topic(admin: &Admin, out: &Out, cmd: TopicCmd) -> anyhow::Result<()> {
    match cmd {
        TopicCmd::Create {
            name,
            queues,
            group,
        } => {
            let groups = admin.create_topic(&name, queues, group.as_deref()).await?;
            out.line(
                json!({"topic": name, "queues": queues, "groups": groups}),
                format!(
                    "created topic {name} with {queues} queues on {}",
                    groups.join(", ")
                ),
            );
        }
        TopicCmd::Update {
            name,
            groups,
            queues,
            wait,
        } => {
            let mut last = None;
            let changes = admin
                .update_topic_groups(
                    &name,
                    &groups,
                    queues,
                    std::time::Duration::from_secs(wait),
                    |p| {
                        if last.as_ref() != Some(p) {
                            out.progress(format!(
                                "{}: writes off; waiting for {} to consume {} messages",
                                p.group,
                                p.behind.join(", "),
                                p.lag
                            ));
                            last = Some(p.clone());
                        }
                    },
                )
                .await
                .with_context(|| format!("moving topic {name} to {}", groups.join(", ")))?;
            let mut unfinished = false;
            for (g, c) in &changes {
                let text = match c {
                    GroupChange::Added => format!("{g}: now serves {name}"),
                    GroupChange::Kept => format!("{g}: already served {name}"),
                    GroupChange::WritesOff { lag } => {
                        unfinished = true;
                        format!("{g}: takes no writes for {name}; {lag} messages not consumed yet, so reads stay on (run again to finish)")
                    }
                    GroupChange::Removed => {
                        format!("{g}: no longer serves {name} (every message consumed)")
                    }
                };
                out.line(json!({"topic": name, "group": g, "change": c}), text);
            }
            if unfinished && wait > 0 {
                anyhow::bail!("consumers did not finish within {wait} s; the shrink is half done (writes off): run the same command again to finish");
            }
        }
        TopicCmd::List => {
            for t in admin.list_topics().await? {
                out.line(json!({ "topic": t }), t.clone());
            }
        }
        TopicCmd::Route { name } => {
            let r = admin.topic_route(&name).await?;
            for g in r.groups {
                let leader = g.leader.map(|l| l.0);
                let nodes: Vec<_> = g.nodes.iter().map(|n| json!({"node_id": n.node_id.0, "addr": n.addr, "role": n.role.to_string()})).collect();
                out.line(
                    json!({"topic": name, "cluster": g.cluster, "group": g.broker_group, "read_queues": g.read_queues, "write_queues": g.write_queues, "perm": g.perm.0, "leader": leader, "nodes": nodes}),
                    format!(
                        "{:<12} {:<16} queues r/w {}/{}  leader {}  nodes {}",
                        g.cluster,
                        g.broker_group,
                        g.read_queues,
                        g.write_queues,
                        g.leader_addr().unwrap_or("-"),
                        g.nodes.iter().map(|n| format!("{}={}({})", n.node_id, n.addr, n.role)).collect::<Vec<_>>().join(" ")
                    ),
                );
            }
        }
        TopicCmd::Status { name } => {
            out.text(format!(
                "{:<16} {:>6} {:>14} {:>14}",
                "group", "queue", "min_offset", "max_offset"
            ));
            for (g, q) in admin.topic_status(&name).await? {
                out.line(
                    json!({"topic": name, "group": g, "queue_id": q.queue_id.0, "min_offset": q.min_offset.0, "max_offset": q.max_offset.0}),
                    format!("{g:<16} {:>6} {:>14} {:>14}", q.queue_id.0, q.min_offset.0, q.max_offset.0),
                );
            }
        }
        TopicCmd::Delete { name } => {
            let groups = admin.delete_topic(&name).await?;
            out.line(
                json!({"topic": name, "deleted_from": groups}),
                format!("deleted topic {name} from {}", groups.join(", ")),
            );
        }
    }
    Ok(())
}

/// Runs `cluster` commands.
pub async fn cluster(admin: &Admin, out: &Out, cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::List => {
            let nodes = admin.cluster_nodes().await?;
            anyhow::ensure!(
                !nodes.is_empty(),
                "no broker group is registered with the NameServers"
            );
            out.text(format!(
                "{:<16} {:<12} {:<16} {:>4} {:<10} {:>6} {:>12} {:>12} {:>12} {:>6}  addr",
                "cluster",
                "group",
                "group_id",
                "node",
                "role",
                "term",
                "last_log",
                "commit",
                "applied",
                "lag"
            ));
            for n in nodes {
                let lag = n.lag.map_or("-".to_owned(), |l| l.to_string());
                out.line(
                    serde_json::to_value(&n)?,
                    format!(
                        "{:<16} {:<12} {:<16} {:>4} {:<10} {:>6} {:>12} {:>12} {:>12} {:>6}  {}",
                        n.cluster,
                        n.group,
                        n.group_id.as_deref().unwrap_or("-"),
                        n.node_id,
                        n.role,
                        n.term,
                        n.last_log_index,
                        n.commit_index,
                        n.applied_index,
                        lag,
                        n.addr
                    ),
                );
            }
        }
        ClusterCmd::TransferLeader { group, to } => {
            admin.transfer_leader(&group, to).await?;
            out.line(
                json!({"group": group, "leader": to}),
                format!("node {to} now leads {group}"),
            );
        }
        ClusterCmd::AddNode {
            group,
            id,
            raft_addr,
            client_addr,
        } => {
            admin.add_node(&group, id, &raft_addr, &client_addr).await?;
            out.line(
                json!({"group": group, "added": id}),
                format!("node {id} joined {group} as a voter"),
            );
        }
        ClusterCmd::Drain { node, undo, wait } => {
            let (group, id) = parse_node(&node)?;
            out.progress(format!(
                "{} {group} node {id}...",
                if undo {
                    "putting back in service"
                } else {
                    "draining"
                }
            ));
            let r = admin
                .drain_node(&group, id, undo, std::time::Duration::from_secs(wait))
                .await
                .with_context(|| format!("draining {group} node {id}"))?;
            let leader = r
                .leader
                .map_or("none yet".to_owned(), |l| format!("node {l}"));
            let text = if undo {
                format!("{group} node {id} is back in service (leader: {leader})")
            } else {
                let moved = if r.was_leader {
                    format!("it led {group}; leader now: {leader}")
                } else {
                    format!("it was a follower; leader: {leader}")
                };
                let waited = if r.in_flight_left == 0 {
                    format!(
                        "{} in-flight pulls and sends finished",
                        r.in_flight_at_start
                    )
                } else {
                    format!(
                        "{} of {} in-flight pulls and sends still running after {wait} s",
                        r.in_flight_left, r.in_flight_at_start
                    )
                };
                format!(
                    "{group} node {id} drained in {} ms: {moved}; {waited}. Stop it now (SIGTERM); a restart puts it back in service",
                    r.waited_ms
                )
            };
            out.line(
                json!({"group": group, "node_id": id, "draining": r.draining, "was_leader": r.was_leader,
                       "leader": r.leader.map(|l| l.0), "in_flight_at_start": r.in_flight_at_start,
                       "in_flight_left": r.in_flight_left, "waited_ms": r.waited_ms}),
                text,
            );
        }
        ClusterCmd::RemoveNode { group, id } => {
            admin.remove_node(&group, id).await?;
            out.line(
                json!({"group": group, "removed": id}),
                format!("node {id} left {group}"),
            );
        }
    }
    Ok(())
}

/// Runs `group` commands.
pub async fn group(admin: &Admin, out: &Out, cmd: GroupCmd) -> anyhow::Result<()> {
    match cmd {
        GroupCmd::List => {
            for g in admin.list_groups().await? {
                out.line(
                    json!({"group": g.name.as_str(), "consume_enable": g.consume_enable, "broadcast": g.broadcast, "retry_max_times": g.retry_max_times}),
                    g.name.to_string(),
                );
            }
        }
        GroupCmd::Progress { group } => {
            let rows = admin.group_progress(&group).await?;
            out.text(format!(
                "{:<24} {:<16} {:>6} {:>14} {:>14} {:>10}",
                "topic", "broker_group", "queue", "broker_offset", "consumer_offset", "lag"
            ));
            let mut total = 0;
            for r in rows {
                total += r.lag;
                out.line(
                    serde_json::to_value(&r)?,
                    format!(
                        "{:<24} {:<16} {:>6} {:>14} {:>14} {:>10}",
                        r.topic,
                        r.broker_group,
                        r.queue_id,
                        r.broker_offset,
                        r.consumer_offset,
                        r.lag
                    ),
                );
            }
            out.text(format!("total lag: {total}"));
        }
        GroupCmd::ResetOffset {
            group,
            topic,
            to_time,
        } => {
            let ms = parse_time(&to_time)?;
            for (g, q, o) in admin.reset_offset_by_time(&group, &topic, ms).await? {
                out.line(
                    json!({"group": group, "topic": topic, "broker_group": g, "queue_id": q, "offset": o}),
                    format!("{group} {topic} {g}:{q} -> offset {o}"),
                );
            }
        }
        GroupCmd::Clients { group } => {
            for c in admin.consumer_connections(&group).await? {
                let subs: Vec<String> = c
                    .subscriptions
                    .iter()
                    .map(|(t, e)| format!("{t}:{e}"))
                    .collect();
                out.line(
                    json!({
                        "group": group,
                        "client_id": c.client_id,
                        "addr": c.addr,
                        "language": c.language,
                        "version": c.version,
                        "broadcast": c.broadcast,
                        "subscriptions": c.subscriptions.iter().map(|(t, e)| json!({"topic": t.as_str(), "expression": e})).collect::<Vec<_>>(),
                    }),
                    format!(
                        "{} {} {} {}",
                        c.client_id,
                        c.addr.as_deref().unwrap_or("-"),
                        c.language,
                        subs.join(" ")
                    ),
                );
            }
        }
        GroupCmd::Delete { group } => {
            let from = admin.delete_group(&group).await?;
            out.line(
                json!({"group": group, "deleted_from": from}),
                format!("deleted consumer group {group} from {}", from.join(", ")),
            );
        }
    }
    Ok(())
}

/// Runs `msg` commands.
pub async fn msg(admin: &Admin, out: &Out, cmd: MsgCmd) -> anyhow::Result<()> {
    match cmd {
        MsgCmd::Get { msg_id } => {
            let found = admin
                .get_message(&msg_id)
                .await
                .with_context(|| format!("looking up message {msg_id}"))?;
            let (j, text) = match &found {
                FoundMessage::Stored(m) => {
                    let mut j = message_json(m);
                    j["state"] = json!("stored");
                    (j.clone(), serde_json::to_string_pretty(&j)?)
                }
                FoundMessage::Scheduled {
                    msg_id,
                    broker_group,
                    queue_id,
                    store_ms,
                    message: m,
                } => {
                    let due = m.deliver_at_ms;
                    let j = json!({
                        "state": "scheduled",
                        "msg_id": msg_id,
                        "unique_key": m.property(PROP_UNIQ_KEY),
                        "topic": m.topic.as_str(),
                        "group": broker_group,
                        "queue_id": queue_id.0,
                        "deliver_at_ms": due,
                        "tag": m.tag,
                        "keys": m.keys,
                        "body": String::from_utf8_lossy(&m.body),
                        "store_ms": store_ms,
                    });
                    let wait = due.saturating_sub(crate::when::now_ms());
                    let text = format!(
                        "scheduled: due at {} ({}), then delivered to {}:{}; msg get finds the \
                         delivered copy by this id too\n{}",
                        crate::when::utc(due),
                        if wait == 0 {
                            "now".to_owned()
                        } else {
                            format!("in {:.1} s", wait as f64 / 1000.0)
                        },
                        broker_group,
                        queue_id,
                        serde_json::to_string_pretty(&j)?
                    );
                    (j, text)
                }
            };
            out.line(j, text);
        }
        MsgCmd::Query { topic, key, max } => {
            let found = admin.query_by_key(&topic, &key, max).await?;
            anyhow::ensure!(
                !found.is_empty(),
                "no message with key {key:?} in topic {topic}"
            );
            print_messages(out, &found);
        }
        MsgCmd::Read {
            topic,
            broker_group,
            queue,
            offset,
            max,
        } => {
            let (found, next) = admin
                .read_queue(&topic, &broker_group, queue, offset, max)
                .await?;
            print_messages(out, &found);
            out.text(format!("next offset: {next}"));
        }
        MsgCmd::Range {
            topic,
            from,
            to,
            max,
        } => {
            let from = parse_time(&from)?;
            let to = match to {
                Some(t) => parse_time(&t)?,
                None => crate::when::now_ms(),
            };
            let range = admin.messages_between(&topic, from, to, max).await?;
            print_messages(out, &range.messages);
            if range.truncated {
                out.text(format!(
                    "more may be stored in the range: showing the first {max}; narrow it or raise --max"
                ));
            }
        }
        MsgCmd::Trace {
            msg_id,
            trace_topic,
        } => {
            let events = admin
                .message_trace(&msg_id, &trace_topic)
                .await
                .with_context(|| format!("reading the trace of {msg_id} from {trace_topic}"))?;
            anyhow::ensure!(
                !events.is_empty(),
                "no trace of {msg_id} in {trace_topic}: were its producer and consumers tracing (--trace)?"
            );
            for e in &events {
                let at = match (e.queue_id, e.queue_offset) {
                    (Some(q), Some(o)) => format!("{}:{q}@{o}", e.broker_group),
                    (Some(q), None) => format!("{}:{q}", e.broker_group),
                    _ => "-".to_owned(),
                };
                out.line(
                    serde_json::to_value(e)?,
                    format!(
                        "{} {:<7} {:<16} {} {} cost {} ms, {at}, redeliveries {}, client {}",
                        crate::when::utc(e.time_ms),
                        match e.kind {
                            raftmq_client::trace::TraceKind::Send => "send",
                            raftmq_client::trace::TraceKind::Consume => "consume",
                        },
                        e.group,
                        e.status,
                        e.msg_id,
                        e.cost_ms,
                        e.reconsume_times,
                        e.client_id
                    ),
                );
            }
        }
        MsgCmd::Resend { msg_id, group } => {
            admin
                .resend_to_group(&msg_id, &group)
                .await
                .with_context(|| format!("resending message {msg_id} to group {group}"))?;
            out.line(
                json!({"msg_id": msg_id, "group": group, "resent": true}),
                format!(
                    "message {msg_id} will be delivered to group {group} again in about a second"
                ),
            );
        }
    }
    Ok(())
}

/// One line per message: id, position and body.
fn print_messages(out: &Out, found: &[MessageExt]) {
    for m in found {
        out.line(
            message_json(m),
            format!(
                "{} {}:{}@{} {}",
                m.msg_id,
                m.broker_group,
                m.queue_id,
                m.queue_offset,
                String::from_utf8_lossy(&m.body)
            ),
        );
    }
}

/// `broker-a/2` -> `("broker-a", 2)`.
fn parse_node(s: &str) -> anyhow::Result<(String, u64)> {
    let parsed = s
        .rsplit_once('/')
        .and_then(|(g, id)| Some((g, id.parse::<u64>().ok()?)))
        .filter(|(g, _)| !g.is_empty());
    let Some((g, id)) = parsed else {
        anyhow::bail!(
            "{s:?} does not name a node: write GROUP/NODE_ID, e.g. broker-a/2 (`raftmq cluster list` shows groups and node ids)"
        );
    };
    Ok((g.to_owned(), id))
}

#[cfg(test)]
mod tests {
    use super::parse_node;

    #[test]
    fn a_node_is_named_group_slash_id() {
        assert_eq!(parse_node("broker-a/2").unwrap(), ("broker-a".into(), 2));
        assert_eq!(parse_node("a/b/3").unwrap(), ("a/b".into(), 3));
        for bad in ["broker-a", "broker-a/", "/2", "broker-a/x", ""] {
            let e = parse_node(bad).unwrap_err().to_string();
            assert!(e.contains("GROUP/NODE_ID"), "{bad}: {e}");
        }
    }
}
