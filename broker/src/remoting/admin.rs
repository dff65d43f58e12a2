//! The broker codes `mqadmin` (and dashboards built on its API) use for topics, consumer
//! groups and status. Writes go through Raft on the leader (forwarded from a follower).
//!
//! Maps keyed by a queue are written as fastjson writes them, with a JSON object as the
//! key (`{{"brokerName":..,"queueId":0,"topic":..}:{..}}`): not valid JSON, but what every
//! RocketMQ admin tool parses.

use std::collections::BTreeMap;

use raftmq_proto::{
    ConsumerGroup, ConsumerGroupConfig, Offset, Perm, QueueId, TopicConfig, TopicName,
};
use raftmq_remoting::body::MessageQueue;
use raftmq_remoting::codes::{request, response};
use raftmq_remoting::{Ext, RemotingCommand};
use serde_json::{json, Value};

use super::{bad_request, error_reply, reply, Session};
use crate::convert::now_ms;
use crate::core::pull::PullRequest;
use crate::core::send::AUTO_CREATE_TOPIC;
use crate::core::BrokerError;

/// GET_CONSUMER_CONNECTION_LIST's "the group has no live member".
const CONSUMER_NOT_ONLINE: i32 = 206;
/// INVOKE_BROKER_TO_RESET_OFFSET.
const INVOKE_BROKER_TO_RESET_OFFSET: i32 = 222;
/// QUERY_TOPIC_CONSUME_BY_WHO.
const QUERY_TOPIC_CONSUME_BY_WHO: i32 = 300;
/// GET_BROKER_CONFIG / UPDATE_BROKER_CONFIG.
const GET_BROKER_CONFIG: i32 = 26;
const UPDATE_BROKER_CONFIG: i32 = 25;

/// Serves an admin code; `None` for codes that are not admin codes (answered
/// REQUEST_CODE_NOT_SUPPORTED by the caller).
pub async fn handle(s: &Session, req: &RemotingCommand) -> Option<RemotingCommand> {
    if matches!(
        req.code,
        request::UPDATE_AND_CREATE_TOPIC
            | request::DELETE_TOPIC_IN_BROKER
            | request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP
            | request::DELETE_SUBSCRIPTIONGROUP
            | UPDATE_BROKER_CONFIG
            | INVOKE_BROKER_TO_RESET_OFFSET
    ) {
        if let Err(e) = s.allow([crate::auth::Access::Admin]) {
            return Some(error_reply(req, &e));
        }
    }
    Some(match req.code {
        request::UPDATE_AND_CREATE_TOPIC => update_topic(s, req).await,
        request::DELETE_TOPIC_IN_BROKER => delete_topic(s, req).await,
        request::GET_ALL_TOPIC_CONFIG => all_topics(s, req),
        request::GET_TOPIC_STATS_INFO => topic_stats(s, req).await,
        request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => update_group(s, req).await,
        request::DELETE_SUBSCRIPTIONGROUP => delete_group(s, req).await,
        request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => all_groups(s, req).await,
        request::GET_CONSUME_STATS => consume_stats(s, req).await,
        request::GET_CONSUMER_CONNECTION_LIST => consumer_connections(s, req),
        request::GET_PRODUCER_CONNECTION_LIST => reply(
            req,
            response::SYSTEM_ERROR,
            "this broker does not track producer connections",
        ),
        request::GET_BROKER_RUNTIME_INFO => runtime_info(s, req),
        GET_BROKER_CONFIG => broker_config(s, req),
        UPDATE_BROKER_CONFIG => reply(
            req,
            response::SYSTEM_ERROR,
            "raftmq brokers are configured by their TOML file (raftmq broker --config FILE); change it and restart the node",
        ),
        INVOKE_BROKER_TO_RESET_OFFSET => reset_offset(s, req).await,
        QUERY_TOPIC_CONSUME_BY_WHO => consumed_by(s, req).await,
        _ => return None,
    })
}

fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, response::SUCCESS)
}

fn json_body(req: &RemotingCommand, v: &Value) -> RemotingCommand {
    ok(req).with_body(v.to_string().into_bytes())
}

fn data_version() -> Value {
    json!({"counter": 0, "timestamp": now_ms()})
}

/// A map keyed by queue, fastjson style.
fn queue_map(s: &Session, entries: impl IntoIterator<Item = (String, u32, Value)>) -> String {
    let group = s.broker.group();
    let parts: Vec<String> = entries
        .into_iter()
        .map(|(topic, q, v)| {
            let key = MessageQueue {
                broker_name: group.0.clone(),
                queue_id: q as i32,
                topic,
            };
            format!("{}:{}", json!(key), v)
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Store time of the message at `offset` of a queue, 0 when there is none.
async fn store_time(s: &Session, topic: &TopicName, q: QueueId, offset: u64) -> u64 {
    let r = s
        .broker
        .pull(
            &s.conn,
            PullRequest {
                topic: topic.clone(),
                queue_id: q,
                offset: Offset(offset),
                max_msgs: 1,
                max_bytes: 1,
                max_wait: std::time::Duration::ZERO,
                tags: Vec::new(),
                sql: None,
            },
        )
        .await;
    r.ok()
        .and_then(|r| r.messages.first().map(|m| m.view.store_ms))
        .unwrap_or(0)
}

async fn update_topic(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let e = Ext(&req.ext);
    let parsed = (|| {
        Ok::<_, raftmq_remoting::CodecError>(TopicConfig {
            name: TopicName::from(e.str("topic")?),
            read_queues: u32::try_from(e.opt_i32("readQueueNums")?.unwrap_or(8)).unwrap_or(0),
            write_queues: u32::try_from(e.opt_i32("writeQueueNums")?.unwrap_or(8)).unwrap_or(0),
            perm: Perm((e.opt_i32("perm")?.unwrap_or(6) & 6) as u8),
            order: e.java_bool("order"),
        })
    })();
    let config = match parsed {
        Ok(c) => c,
        Err(err) => return bad_request(req, &err),
    };
    if config.name.as_str() == AUTO_CREATE_TOPIC {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!("The topic[{AUTO_CREATE_TOPIC}] is conflict with system topic."),
        );
    }
    let r = s
        .broker
        .on_leader(
            || s.broker.upsert_topic(config.clone()),
            |c, cx| {
                let config = config.clone();
                async move { c.upsert_topic(cx, config).await }
            },
        )
        .await;
    match r {
        Ok(()) => ok(req),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

async fn delete_topic(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let topic = match Ext(&req.ext).str("topic") {
        Ok(t) => TopicName::from(t),
        Err(e) => return bad_request(req, &e),
    };
    let r = s
        .broker
        .on_leader(
            || s.broker.delete_topic(topic.clone()),
            |c, cx| {
                let topic = topic.clone();
                async move { c.delete_topic(cx, topic).await }
            },
        )
        .await;
    match r {
        // Deleting what is not there is done (as the Java broker answers).
        Ok(()) | Err(BrokerError::TopicNotFound(_)) => ok(req),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

fn topic_json(t: &TopicConfig) -> Value {
    json!({
        "order": t.order,
        "perm": t.perm.0,
        "readQueueNums": t.read_queues,
        "topicFilterType": "SINGLE_TAG",
        "topicName": t.name.as_str(),
        "topicSysFlag": 0,
        "writeQueueNums": t.write_queues,
    })
}

fn all_topics(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let table: BTreeMap<String, Value> = s
        .broker
        .list_topics()
        .iter()
        .map(|t| (t.name.0.clone(), topic_json(t)))
        .collect();
    json_body(
        req,
        &json!({"dataVersion": data_version(), "topicConfigTable": table}),
    )
}

async fn topic_stats(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let topic = match Ext(&req.ext).str("topic") {
        Ok(t) => TopicName::from(t),
        Err(e) => return bad_request(req, &e),
    };
    let config = match s.broker.topic_config(&topic) {
        Ok(c) => c,
        Err(_) => {
            return reply(
                req,
                response::TOPIC_NOT_EXIST,
                format!("topic[{topic}] not exist"),
            )
        }
    };
    let mut entries = Vec::new();
    for q in 0..config.write_queues {
        let (min, max) = match s.broker.queue_bounds(topic.clone(), QueueId(q)).await {
            Ok(b) => b,
            Err(e) => return error_reply(req, &e),
        };
        let last = if max.0 > 0 {
            store_time(s, &topic, QueueId(q), max.0 - 1).await
        } else {
            0
        };
        entries.push((
            topic.0.clone(),
            q,
            json!({"lastUpdateTimestamp": last, "maxOffset": max.0, "minOffset": min.0}),
        ));
    }
    let body = format!("{{\"offsetTable\":{}}}", queue_map(s, entries));
    ok(req).with_body(body.into_bytes())
}

async fn update_group(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let v: Value = match serde_json::from_slice(req.body.trim_ascii_end()) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                req,
                response::SYSTEM_ERROR,
                format!("malformed group config: {e}"),
            )
        }
    };
    let Some(name) = v.get("groupName").and_then(Value::as_str) else {
        return reply(
            req,
            response::SYSTEM_ERROR,
            "group config without a groupName",
        );
    };
    let flag = |k: &str, default: bool| v.get(k).and_then(Value::as_bool).unwrap_or(default);
    let config = ConsumerGroupConfig {
        name: ConsumerGroup::from(name),
        consume_enable: flag("consumeEnable", true),
        broadcast: flag("consumeBroadcastEnable", false),
        retry_max_times: v
            .get("retryMaxTimes")
            .and_then(Value::as_u64)
            .map_or(16, |n| n.min(u64::from(u32::MAX)) as u32),
    };
    let r = s
        .broker
        .on_leader(
            || s.broker.upsert_group(config.clone()),
            |c, cx| {
                let config = config.clone();
                async move { c.upsert_group(cx, config).await }
            },
        )
        .await;
    match r {
        Ok(()) => ok(req),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

async fn delete_group(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let group = match Ext(&req.ext).str("groupName") {
        Ok(g) => ConsumerGroup::from(g),
        Err(e) => return bad_request(req, &e),
    };
    let r = s
        .broker
        .on_leader(
            || s.broker.delete_group(group.clone()),
            |c, cx| {
                let group = group.clone();
                async move { c.delete_group(cx, group).await }
            },
        )
        .await;
    match r {
        Ok(()) | Err(BrokerError::GroupNotFound(_)) => ok(req),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

fn group_json(g: &ConsumerGroupConfig) -> Value {
    json!({
        "brokerId": 0,
        "consumeBroadcastEnable": g.broadcast,
        "consumeEnable": g.consume_enable,
        "consumeFromMinEnable": false,
        "groupName": g.name.as_str(),
        "notifyConsumerIdsChangedEnable": true,
        "retryMaxTimes": g.retry_max_times,
        "retryQueueNums": 1,
        "whichBrokerWhenConsumeSlowly": 1,
    })
}

async fn all_groups(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    match s.broker.list_groups().await {
        Ok(groups) => {
            let table: BTreeMap<String, Value> = groups
                .iter()
                .map(|g| (g.name.0.clone(), group_json(g)))
                .collect();
            json_body(
                req,
                &json!({"dataVersion": data_version(), "subscriptionGroupTable": table}),
            )
        }
        Err(e) => error_reply(req, &e),
    }
}

async fn consume_stats(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let e = Ext(&req.ext);
    let group = match e.str("consumerGroup") {
        Ok(g) => ConsumerGroup::from(g),
        Err(err) => return bad_request(req, &err),
    };
    let only = e.opt_nonempty("topic");
    let committed = match s.broker.group_offsets(group).await {
        Ok(c) => c,
        Err(err) => return error_reply(req, &err),
    };
    let mut topics: Vec<TopicName> = committed.iter().map(|(t, _, _)| t.clone()).collect();
    topics.sort();
    topics.dedup();
    let mut entries = Vec::new();
    for topic in topics
        .into_iter()
        .filter(|t| only.is_none_or(|o| o == t.as_str()))
    {
        let Ok(config) = s.broker.topic_config(&topic) else {
            continue;
        };
        for q in 0..config.read_queues {
            let max = match s.broker.queue_bounds(topic.clone(), QueueId(q)).await {
                Ok((_, max)) => max.0,
                Err(err) => return error_reply(req, &err),
            };
            let consumer = committed
                .iter()
                .find(|(t, cq, _)| *t == topic && cq.0 == q)
                .map_or(0, |(_, _, o)| o.0);
            let last = if consumer > 0 {
                store_time(s, &topic, QueueId(q), consumer - 1).await
            } else {
                0
            };
            entries.push((
                topic.0.clone(),
                q,
                json!({"brokerOffset": max, "consumerOffset": consumer, "lastTimestamp": last}),
            ));
        }
    }
    let body = format!(
        "{{\"consumeTps\":0.0,\"offsetTable\":{}}}",
        queue_map(s, entries)
    );
    ok(req).with_body(body.into_bytes())
}

fn consumer_connections(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let group = match Ext(&req.ext).str("consumerGroup") {
        Ok(g) => ConsumerGroup::from(g),
        Err(e) => return bad_request(req, &e),
    };
    let members = s.broker.consumer_connections(&group);
    let Some(first) = members.first() else {
        return reply(
            req,
            CONSUMER_NOT_ONLINE,
            format!("the consumer group[{group}] not online"),
        );
    };
    let connections: Vec<Value> = members
        .iter()
        .map(|m| {
            json!({
                "clientAddr": m.origin.addr.map(|a| a.to_string()).unwrap_or_default(),
                "clientId": m.client_id,
                "language": m.origin.language,
                "version": m.origin.version,
            })
        })
        .collect();
    let subscriptions: BTreeMap<String, Value> = first
        .info
        .subscriptions
        .iter()
        .map(|(t, expr)| {
            (
                t.0.clone(),
                json!({"classFilterMode": false, "codeSet": [], "expressionType": "TAG",
                    "subString": expr, "subVersion": 0, "tagsSet": [], "topic": t.as_str()}),
            )
        })
        .collect();
    json_body(
        req,
        &json!({
            "connectionSet": connections,
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": if first.info.broadcast { "BROADCASTING" } else { "CLUSTERING" },
            "subscriptionTable": subscriptions,
        }),
    )
}

fn runtime_info(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let status = s.broker.broker_group_status();
    let me = status.nodes.iter().find(|n| n.node_id == status.node_id);
    let mut table: BTreeMap<&str, String> = BTreeMap::new();
    table.insert("brokerVersionDesc", "V4_9_7".into());
    table.insert("brokerVersion", raftmq_remoting::SERVER_VERSION.to_string());
    table.insert("earliestMessageTimeStamp", "-1".into());
    if let Ok(d) = raftmq_store::disk_usage(s.broker.shared.store.dir()) {
        table.insert("commitLogDiskRatio", format!("{:.4}", d.ratio()));
    }
    if let Some(n) = me {
        table.insert("raftRole", n.role.to_string());
        table.insert("raftTerm", n.term.to_string());
        table.insert("raftCommitIndex", n.commit_index.to_string());
        table.insert("raftAppliedIndex", n.applied_index.to_string());
    }
    if let Some(l) = status.leader {
        table.insert("raftLeader", l.to_string());
    }
    json_body(req, &json!({ "table": table }))
}

fn broker_config(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let c = s.broker.config();
    let lines = [
        ("brokerClusterName", c.cluster.clone()),
        ("brokerName", c.group.clone()),
        ("brokerId", c.node_id.to_string()),
        (
            "listenPort",
            c.listen.rsplit(':').next().unwrap_or("").to_owned(),
        ),
        ("namesrvAddr", c.namesrv.join(";")),
        ("autoCreateTopicEnable", c.auto_create_topics.to_string()),
        ("defaultTopicQueueNums", c.default_queues.to_string()),
        ("fileReservedTime", c.retention_hours.to_string()),
        ("messageDelayLevel", c.message_delay_levels.clone()),
        (
            "flushDiskType",
            match c.flush {
                crate::config::Flush::Sync => "SYNC_FLUSH".to_owned(),
                crate::config::Flush::Async => "ASYNC_FLUSH".to_owned(),
            },
        ),
    ];
    let body: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    ok(req)
        .with_ext("version", data_version())
        .with_body(body.into_bytes())
}

/// INVOKE_BROKER_TO_RESET_OFFSET (222): raftmq commits the new offsets itself (through
/// Raft) instead of asking each consumer to; consumers pick them up at their next
/// rebalance or offset query.
async fn reset_offset(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let e = Ext(&req.ext);
    let parsed = (|| {
        Ok::<_, raftmq_remoting::CodecError>((
            TopicName::from(e.str("topic")?),
            ConsumerGroup::from(e.str("group")?),
            e.i64("timestamp")?,
            e.java_bool("isForce"),
        ))
    })();
    let (topic, group, ts, force) = match parsed {
        Ok(p) => p,
        Err(err) => return bad_request(req, &err),
    };
    let Ok(config) = s.broker.topic_config(&topic) else {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!("[reset-offset] reset offset failed, no topic in this broker. topic={topic}"),
        );
    };
    let mut offsets = Vec::new();
    let mut entries = Vec::new();
    for q in 0..config.write_queues {
        let q = QueueId(q);
        let target = if ts < 0 {
            s.broker.queue_bounds(topic.clone(), q).await.map(|b| b.1)
        } else {
            s.broker.offset_for_time(topic.clone(), q, ts as u64).await
        };
        let target = match target {
            Ok(t) => t,
            Err(err) => return error_reply(req, &err),
        };
        let current = s
            .broker
            .query_offset(group.clone(), topic.clone(), q)
            .await
            .ok()
            .flatten();
        let chosen = match current {
            Some(c) if !force && c.0 <= target.0 => c,
            _ => target,
        };
        offsets.push((topic.clone(), q, chosen));
        entries.push((topic.0.clone(), q.0, json!(chosen.0)));
    }
    let commit = raftmq_proto::broker::CommitOffsetsRequest { group, offsets };
    let r = s
        .broker
        .on_leader(
            || s.broker.commit_offsets(&s.conn, commit.clone()),
            |c, cx| {
                let commit = commit.clone();
                async move { c.commit_offsets(cx, commit).await }
            },
        )
        .await;
    match r {
        Ok(()) => {
            let body = format!("{{\"offsetTable\":{}}}", queue_map(s, entries));
            ok(req).with_body(body.into_bytes())
        }
        Err(err) => error_reply(req, &err),
    }
}

/// QUERY_TOPIC_CONSUME_BY_WHO (300): groups with committed offsets on the topic.
async fn consumed_by(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let topic = match Ext(&req.ext).str("topic") {
        Ok(t) => TopicName::from(t),
        Err(e) => return bad_request(req, &e),
    };
    let groups = match s.broker.list_groups().await {
        Ok(g) => g,
        Err(e) => return error_reply(req, &e),
    };
    let mut out = Vec::new();
    for g in groups {
        if let Ok(offsets) = s.broker.group_offsets(g.name.clone()).await {
            if offsets.iter().any(|(t, _, _)| *t == topic) {
                out.push(g.name.0);
            }
        }
    }
    json_body(req, &json!({ "groupList": out }))
}
