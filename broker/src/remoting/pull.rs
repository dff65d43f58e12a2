//! PULL_MESSAGE (11): long polling, and stored messages as RocketMQ 4.x records.
//!
//! Any node serves pulls of committed data (followers hold the same applied log); every
//! answer suggests broker id 0 (the leader). A follower that is behind the consumer's
//! offset answers "nothing yet" at that offset instead of PULL_OFFSET_MOVED, which would
//! make clients jump back.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use bytes::BytesMut;
use raftmq_proto::{ConsumerGroup, Offset, QueueId, TopicName};
use raftmq_remoting::body::tag_expression;
use raftmq_remoting::codes::response;
use raftmq_remoting::record::{format_properties, Record};
use raftmq_remoting::requests::PullHeader;
use raftmq_remoting::{Ext, RemotingCommand};
use raftmq_store::StoredMessage;

use super::send::is_internal_property;
use super::{bad_request, error_reply, reply, Session};
use crate::core::pull::PullRequest;
use crate::core::query::MsgLocation;
use crate::core::BrokerError;

/// Bytes one pull answer carries at most (at least one message is always returned).
const MAX_PULL_BYTES: u32 = 1 << 20;
/// Messages one pull answer carries at most, whatever the client asks.
const MAX_PULL_MSGS: i32 = 256;

/// A stored message as a record served by `store_host`.
///
/// # Errors
/// The topic or properties do not fit the record layout.
pub fn record_of(
    m: &StoredMessage,
    store_host: SocketAddrV4,
) -> Result<Record, raftmq_remoting::CodecError> {
    let v = &m.view;
    let keys = v.keys().collect::<Vec<_>>().join(" ");
    let mut props: Vec<(&str, &str)> = Vec::new();
    if !v.tag().is_empty() {
        props.push(("TAGS", v.tag()));
    }
    if !keys.is_empty() {
        props.push(("KEYS", &keys));
    }
    props.extend(v.properties().filter(|(k, _)| !is_internal_property(k)));
    let at = MsgLocation {
        log_index: m.log_index,
        slot: m.slot,
    };
    Ok(Record {
        queue_id: m.queue_id as i32,
        flag: v.flags as i32,
        queue_offset: m.queue_offset as i64,
        physical_offset: at.physical_offset(),
        sys_flag: 0,
        born_timestamp: v.born_ms as i64,
        // The producer's address is not kept with the message.
        born_host: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        store_timestamp: v.store_ms as i64,
        store_host,
        reconsume_times: v.reconsume_times as i32,
        prepared_transaction_offset: 0,
        body: v.body.clone(),
        topic: v.topic().to_owned(),
        properties: format_properties(props),
    })
}

/// Encodes messages as one pull (or query) body.
///
/// # Errors
/// A message that does not fit the record layout (a topic over 127 bytes).
pub fn records_body(
    messages: &[StoredMessage],
    store_host: SocketAddrV4,
) -> Result<BytesMut, raftmq_remoting::CodecError> {
    let mut body = BytesMut::new();
    for m in messages {
        record_of(m, store_host)?.encode(&mut body)?;
    }
    Ok(body)
}

fn offsets_reply(
    req: &RemotingCommand,
    code: i32,
    remark: &str,
    next: u64,
    min: u64,
    max: u64,
) -> RemotingCommand {
    reply(req, code, remark)
        .with_ext("nextBeginOffset", next)
        .with_ext("minOffset", min)
        .with_ext("maxOffset", max)
        .with_ext("suggestWhichBrokerId", 0)
}

/// Serves a pull, holding it (long polling) when nothing is there yet.
pub async fn pull(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let h = match PullHeader::parse(Ext(&req.ext)) {
        Ok(h) => h,
        Err(e) => return bad_request(req, &e),
    };
    let (group, topic) = (
        ConsumerGroup::from(h.consumer_group.as_str()),
        TopicName::from(h.topic.as_str()),
    );
    let Ok(queue_id) = u32::try_from(h.queue_id) else {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!("queueId {} is negative", h.queue_id),
        );
    };
    let offset = u64::try_from(h.queue_offset).unwrap_or(0);
    if h.commit() {
        // Coalesced with other commits; the pull does not wait for it.
        drop(s.broker.commit_offset_soon(
            group.clone(),
            topic.clone(),
            QueueId(queue_id),
            Offset(h.commit_offset as u64),
        ));
    }
    let (expression, kind) = if h.has_subscription() {
        (h.subscription.clone(), h.expression_type.clone())
    } else {
        match s.broker.subscription(&group, &topic) {
            Some(e) => (Some(e), None),
            None => {
                return reply(
                    req,
                    response::SUBSCRIPTION_NOT_EXIST,
                    format!(
                        "the consumer's subscription of {topic} is not known: it must heartbeat before pulling without one"
                    ),
                )
            }
        }
    };
    if kind
        .as_deref()
        .is_some_and(|k| !k.eq_ignore_ascii_case("TAG"))
    {
        return reply(
            req,
            response::SYSTEM_ERROR,
            "only TAG subscriptions are supported; SQL92 property filters are not available yet",
        );
    }
    let tags = expression
        .as_deref()
        .and_then(tag_expression)
        .unwrap_or_default();
    let max_wait = if h.suspend() {
        Duration::from_millis(u64::try_from(h.suspend_timeout_millis).unwrap_or(0))
    } else {
        Duration::ZERO
    };
    let read = tokio::select! {
        r = s.broker.pull(&s.conn, PullRequest {
            topic,
            queue_id: QueueId(queue_id),
            offset: Offset(offset),
            max_msgs: h.max_msg_nums.clamp(1, MAX_PULL_MSGS) as u32,
            max_bytes: MAX_PULL_BYTES,
            max_wait,
            tags,
            sql: None,
        }) => r,
        _ = s.stop.cancelled() => {
            return offsets_reply(req, response::PULL_NOT_FOUND, "SHUTTING_DOWN", offset, 0, offset);
        }
    };
    match read {
        Ok(r) if !r.messages.is_empty() => match records_body(&r.messages, s.store_host) {
            Ok(body) => offsets_reply(
                req,
                response::SUCCESS,
                "FOUND",
                r.next_offset.0,
                r.min_offset.0,
                r.max_offset.0,
            )
            .with_body(body.freeze()),
            Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
        },
        Ok(r) if r.next_offset.0 > offset => offsets_reply(
            req,
            response::PULL_RETRY_IMMEDIATELY,
            "NO_MATCHED_MESSAGE",
            r.next_offset.0,
            r.min_offset.0,
            r.max_offset.0,
        ),
        Ok(r) => offsets_reply(
            req,
            response::PULL_NOT_FOUND,
            "OFFSET_OVERFLOW_ONE",
            offset,
            r.min_offset.0,
            r.max_offset.0,
        ),
        Err(BrokerError::OffsetTooSmall { min, .. }) => offsets_reply(
            req,
            response::PULL_OFFSET_MOVED,
            "OFFSET_TOO_SMALL",
            min,
            min,
            min,
        ),
        Err(BrokerError::OffsetTooLarge { max, .. }) if s.broker.is_leader() => offsets_reply(
            req,
            response::PULL_OFFSET_MOVED,
            "OFFSET_OVERFLOW_BADLY",
            max,
            0,
            max,
        ),
        Err(BrokerError::OffsetTooLarge { max, .. }) => {
            // A follower behind the consumer: nothing yet here, ask the leader.
            offsets_reply(
                req,
                response::PULL_NOT_FOUND,
                "FOLLOWER_BEHIND",
                offset,
                0,
                max,
            )
        }
        Err(e) => error_reply(req, &e),
    }
}
