//! Consumer coordination over remoting: offsets (14, 15, 29-32), heartbeats (34),
//! goodbyes (35), consumer lists (38), send-back (36), queue locks (41, 42) and
//! CHECK_CLIENT_CONFIG (46).

use raftmq_proto::broker::{
    ConsumerGroupInfo, HeartbeatRequest, LockQueuesRequest, SendBackRequest,
};
use raftmq_proto::{ConsumerGroup, Offset, QueueId, TopicName};
use raftmq_remoting::body::{
    to_json, ConsumerList, Heartbeat, LockBatchRequest, LockBatchResponse, MessageModel,
    MessageQueue,
};
use raftmq_remoting::codes::{request, response};
use raftmq_remoting::requests::{GroupQueueHeader, QueueHeader, SendBackHeader, UnregisterHeader};
use raftmq_remoting::{Ext, RemotingCommand};

use super::send::DEFAULT_MAX_RECONSUME;
use super::{bad_request, error_reply, reply, Session};
use crate::auth::Access;
use crate::clients::ClientOrigin;
use crate::core::pull::PullRequest;
use crate::core::query::MsgLocation;
use crate::core::retry::{RetryDelay, SendBack};
use crate::core::BrokerError;

/// The first client version whose `maxReconsumeTimes` the Java broker honours (`V3_4_9`).
const HONOURS_MAX_RECONSUME: i32 = 121;

fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, response::SUCCESS)
}

/// QUERY_CONSUMER_OFFSET (14): the committed offset, or QUERY_NOT_FOUND (22) for a group
/// that never committed one on the queue, so the client applies its consume-from setting.
pub async fn query_offset(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let h = match GroupQueueHeader::parse(Ext(&req.ext)) {
        Ok(h) => h,
        Err(e) => return bad_request(req, &e),
    };
    let q = QueueId(u32::try_from(h.queue_id).unwrap_or(u32::MAX));
    match s
        .broker
        .query_offset(
            ConsumerGroup::from(h.consumer_group),
            TopicName::from(h.topic),
            q,
        )
        .await
    {
        Ok(Some(o)) => ok(req).with_ext("offset", o.0),
        Ok(None) => reply(
            req,
            response::QUERY_NOT_FOUND,
            "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
        ),
        Err(e) => error_reply(req, &e),
    }
}

/// UPDATE_CONSUMER_OFFSET (15): coalesced with other commits and replicated before the
/// answer. Negative offsets (ali-ons sends -1 for a queue at 0) are ignored.
pub async fn update_offset(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let h = match GroupQueueHeader::parse(Ext(&req.ext)) {
        Ok(h) => h,
        Err(e) => return bad_request(req, &e),
    };
    let (Some(offset), Ok(q)) = (
        h.commit_offset.and_then(|o| u64::try_from(o).ok()),
        u32::try_from(h.queue_id),
    ) else {
        return ok(req);
    };
    let done = s.broker.commit_offset_soon(
        ConsumerGroup::from(h.consumer_group),
        TopicName::from(h.topic),
        QueueId(q),
        Offset(offset),
    );
    match done.await {
        Ok(Ok(())) => ok(req),
        Ok(Err(e)) => error_reply(req, &e),
        Err(_) => reply(
            req,
            response::SERVICE_NOT_AVAILABLE,
            "the broker is shutting down",
        ),
    }
}

/// SEARCH_OFFSET_BY_TIMESTAMP (29), GET_MAX_OFFSET (30), GET_MIN_OFFSET (31),
/// GET_EARLIEST_MSG_STORETIME (32). An unknown topic or queue reads as empty (0).
pub async fn queue_offset(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let h = match QueueHeader::parse(Ext(&req.ext)) {
        Ok(h) => h,
        Err(e) => return bad_request(req, &e),
    };
    let topic = TopicName::from(h.topic);
    let q = QueueId(u32::try_from(h.queue_id).unwrap_or(u32::MAX));
    let bounds = match s.broker.queue_bounds(topic.clone(), q).await {
        Ok(b) => b,
        Err(BrokerError::TopicNotFound(_)) => (Offset(0), Offset(0)),
        Err(e) => return error_reply(req, &e),
    };
    match req.code {
        request::GET_MAX_OFFSET => ok(req).with_ext("offset", bounds.1 .0),
        request::GET_MIN_OFFSET => ok(req).with_ext("offset", bounds.0 .0),
        request::SEARCH_OFFSET_BY_TIMESTAMP => {
            let ms = h.timestamp.and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
            match s.broker.offset_for_time(topic, q, ms).await {
                Ok(o) => ok(req).with_ext("offset", o.0),
                Err(BrokerError::TopicNotFound(_)) => ok(req).with_ext("offset", 0),
                Err(e) => error_reply(req, &e),
            }
        }
        _ => {
            let first = s
                .broker
                .pull(
                    &s.conn,
                    PullRequest {
                        topic,
                        queue_id: q,
                        offset: bounds.0,
                        max_msgs: 1,
                        max_bytes: 1,
                        max_wait: std::time::Duration::ZERO,
                        tags: Vec::new(),
                        sql: None,
                    },
                )
                .await;
            let ms = first
                .ok()
                .and_then(|r| r.messages.first().map(|m| m.view.store_ms))
                .unwrap_or(0);
            ok(req).with_ext("timestamp", ms)
        }
    }
}

/// HEART_BEAT (34): registers the client's consumer groups and subscriptions (and this
/// connection, for NOTIFY_CONSUMER_IDS_CHANGED).
pub async fn heartbeat(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let hb = match Heartbeat::parse(&req.body) {
        Ok(h) => h,
        Err(e) => return bad_request(req, &e),
    };
    for g in &hb.producer_groups {
        s.broker
            .register_remoting_producer(g, &hb.client_id, s.push.clone());
    }
    let groups = hb
        .consumers
        .into_iter()
        .map(|c| ConsumerGroupInfo {
            group: ConsumerGroup::from(c.group),
            subscriptions: c
                .subscriptions
                .into_iter()
                .map(|sub| (TopicName::from(sub.topic), sub.expression))
                .collect(),
            broadcast: c.model == MessageModel::Broadcasting,
        })
        .collect();
    let origin = ClientOrigin {
        addr: s.conn.peer,
        language: req.language.clone(),
        version: req.version,
        push: Some(s.push.clone()),
    };
    let hb = HeartbeatRequest {
        client_id: hb.client_id,
        consumer_groups: groups,
    };
    let wants = hb.consumer_groups.iter().flat_map(|g| {
        std::iter::once(Access::Group(g.group.as_str()))
            .chain(g.subscriptions.iter().map(|(t, _)| Access::Sub(t.as_str())))
    });
    if let Err(e) = s.allow(wants) {
        return error_reply(req, &e);
    }
    match s.broker.heartbeat(&s.conn, hb, origin).await {
        Ok(()) => ok(req),
        Err(e) => error_reply(req, &e),
    }
}

/// UNREGISTER_CLIENT (35).
pub fn unregister(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let h = match UnregisterHeader::parse(Ext(&req.ext)) {
        Ok(h) => h,
        Err(e) => return bad_request(req, &e),
    };
    if let Some(g) = h.consumer_group {
        s.broker
            .unregister_client(&h.client_id, Some(&ConsumerGroup::from(g)));
    }
    ok(req)
}

/// GET_CONSUMER_LIST_BY_GROUP (38).
pub fn consumer_list(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let Some(group) = req.ext_str("consumerGroup") else {
        return reply(
            req,
            response::SYSTEM_ERROR,
            "the custom field consumerGroup is null",
        );
    };
    let ids = s.broker.consumer_list(&ConsumerGroup::from(group));
    if ids.is_empty() {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!("no consumer for this group, {group}"),
        );
    }
    ok(req).with_body(to_json(&ConsumerList {
        consumer_id_list: ids,
    }))
}

/// CONSUMER_SEND_MSG_BACK (36): the message at a commit-log offset goes to the group's
/// retry topic (or its dead-letter topic), on the leader.
pub async fn send_back(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let h = match SendBackHeader::parse(Ext(&req.ext)) {
        Ok(h) => h,
        Err(e) => return bad_request(req, &e),
    };
    let Some(at) = MsgLocation::of_physical_offset(h.offset) else {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!("look message by offset failed, {}", h.offset),
        );
    };
    let group = ConsumerGroup::from(h.group.as_str());
    let max = h
        .max_reconsume_times
        .filter(|_| req.version >= HONOURS_MAX_RECONSUME)
        .and_then(|m| u32::try_from(m).ok())
        .or_else(|| s.broker.group_config(&group).map(|g| g.retry_max_times))
        .unwrap_or(DEFAULT_MAX_RECONSUME);
    let (delay, native_level, native_max) = match h.delay_level {
        l if l < 0 => (RetryDelay::DeadLetter, 0, 0),
        0 => (RetryDelay::Backoff, 0, max),
        l => {
            let l = l.min(255) as u8;
            (RetryDelay::Level(l), l, max)
        }
    };
    let id = s.broker.msg_id(at).to_string();
    let back = SendBack {
        group: group.clone(),
        at,
        delay,
        max_reconsume_times: max,
        origin_msg_id: id.clone(),
    };
    let native = SendBackRequest {
        group,
        msg_id: id,
        delay_level: native_level,
        max_reconsume_times: native_max,
    };
    let r = s
        .broker
        .on_leader(
            || s.broker.send_back(&s.conn, back.clone()),
            |c, cx| {
                let native = native.clone();
                async move { c.send_back(cx, native).await }
            },
        )
        .await;
    match r {
        Ok(()) => ok(req),
        Err(BrokerError::MessageNotFound(_)) => reply(
            req,
            response::SYSTEM_ERROR,
            format!("look message by offset failed, {}", h.offset),
        ),
        Err(e) => error_reply(req, &e),
    }
}

fn lock_request(
    s: &Session,
    req: &RemotingCommand,
) -> Result<LockQueuesRequest, Box<RemotingCommand>> {
    let body = LockBatchRequest::parse(&req.body).map_err(|e| Box::new(bad_request(req, &e)))?;
    let group = s.broker.group();
    Ok(LockQueuesRequest {
        group: ConsumerGroup::from(body.consumer_group),
        client_id: body.client_id,
        queues: body
            .queues
            .into_iter()
            .filter(|q| q.broker_name == group.as_str())
            .filter_map(|q| {
                Some((
                    TopicName::from(q.topic),
                    QueueId(u32::try_from(q.queue_id).ok()?),
                ))
            })
            .collect(),
    })
}

/// LOCK_BATCH_MQ (41): locks (replicated leases) for an orderly consumer; with `lock`
/// false, UNLOCK_BATCH_MQ (42) releases them.
pub async fn lock(s: &Session, req: &RemotingCommand, lock: bool) -> RemotingCommand {
    let lr = match lock_request(s, req) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    if let Err(e) = s.allow([Access::Group(lr.group.as_str())]) {
        return error_reply(req, &e);
    }
    let r = s
        .broker
        .on_leader(
            || async {
                if lock {
                    s.broker.lock_queues(&s.conn, lr.clone()).await.map(Some)
                } else {
                    s.broker
                        .unlock_queues(&s.conn, lr.clone())
                        .await
                        .map(|()| None)
                }
            },
            |c, cx| {
                let lr = lr.clone();
                async move {
                    if lock {
                        c.lock_queues(cx, lr).await.map(|r| r.map(Some))
                    } else {
                        c.unlock_queues(cx, lr).await.map(|r| r.map(|()| None))
                    }
                }
            },
        )
        .await;
    match r {
        Ok(None) => ok(req),
        Ok(Some(locked)) => {
            let group = s.broker.group();
            ok(req).with_body(to_json(&LockBatchResponse {
                lock_ok_mq_set: locked
                    .locked
                    .into_iter()
                    .map(|(t, q)| MessageQueue {
                        broker_name: group.0.clone(),
                        queue_id: q.0 as i32,
                        topic: t.0,
                    })
                    .collect(),
            }))
        }
        Err(e) => error_reply(req, &e),
    }
}

/// CHECK_CLIENT_CONFIG (46): TAG subscriptions are fine; SQL92 ones are refused at the
/// consumer's start, with the reason, instead of failing every pull.
pub fn check_client_config(req: &RemotingCommand) -> RemotingCommand {
    let kind = serde_json::from_slice::<serde_json::Value>(req.body.trim_ascii_end())
        .ok()
        .and_then(|v| {
            v.get("subscriptionData")?
                .get("expressionType")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "TAG".to_owned());
    if kind.eq_ignore_ascii_case("TAG") {
        ok(req)
    } else {
        reply(
            req,
            response::SYSTEM_ERROR,
            format!("{kind} subscriptions are not supported; subscribe by tag"),
        )
    }
}
