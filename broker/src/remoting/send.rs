//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320).
//!
//! A RocketMQ message becomes a raftmq message: `TAGS` is the tag, `KEYS` (space
//! separated) the keys, `DELAY` the delay level, timer properties the deliver-at time,
//! `WAIT` is dropped, every other property (`UNIQ_KEY` included) is kept. Compressed
//! bodies are inflated, so native consumers read the same bytes.

use bytes::Bytes;
use raftmq_proto::broker::{SendMessageRequest, SendOptions};
use raftmq_proto::message::{PROP_DELIVER_AT, PROP_PRODUCER_GROUP, PROP_TRANSACTION_PREPARED};
use raftmq_proto::{names, ConsumerGroup, Message, MsgId, QueueId, TopicName, MAX_MESSAGE_BYTES};
use raftmq_remoting::codes::response;
use raftmq_remoting::msg_id::offset_msg_id;
use raftmq_remoting::record::{
    decode_batch, inflate, parse_properties, SYSFLAG_COMPRESSED, SYSFLAG_TRANSACTION_MASK,
    SYSFLAG_TRANSACTION_PREPARED,
};
use raftmq_remoting::requests::SendHeader;
use raftmq_remoting::{Ext, RemotingCommand};

use super::{bad_request, error_reply, reply, Session};
use crate::convert::now_ms;
use crate::core::query::MsgLocation;
use crate::core::send::AUTO_CREATE_TOPIC;
use crate::core::BrokerError;

/// The region every send answer names (clients show it; nothing routes by it).
const REGION: &str = "DefaultRegion";
/// Tries before a retried message goes to the dead-letter topic, when neither the client
/// nor the group's config says (RocketMQ's default).
pub const DEFAULT_MAX_RECONSUME: u32 = 16;

/// A message from a RocketMQ property string.
///
/// # Errors
/// A reserved property name or a malformed delay.
pub fn message_of(
    topic: &TopicName,
    body: Bytes,
    flag: i32,
    properties: &str,
    now: u64,
) -> Result<Message, String> {
    let mut m = Message::new(topic.clone(), body);
    m.flag = flag as u32;
    for (k, v) in parse_properties(properties) {
        let number = |what: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("property {what}={v:?} is not a number"))
        };
        match k.as_str() {
            "TAGS" => m.tag = v,
            "KEYS" => {
                m.keys = v
                    .split(' ')
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "DELAY" => m.delay_level = number("DELAY")?.min(255) as u8,
            "WAIT" => {}
            "__STARTDELIVERTIME" | "TIMER_DELIVER_MS" => m.deliver_at_ms = number(&k)?,
            "TIMER_DELAY_SEC" => m.deliver_at_ms = now + number(&k)?.saturating_mul(1000),
            "TIMER_DELAY_MS" => m.deliver_at_ms = now + number(&k)?,
            _ if k.starts_with("__") => {
                return Err(format!(
                    "property {k} is reserved: names starting with \"__\" belong to the broker"
                ))
            }
            _ => m.properties.push((k, v)),
        }
    }
    Ok(m)
}

/// The messages of a send request (one, or a batch body's).
fn messages_of(h: &SendHeader, req: &RemotingCommand) -> Result<Vec<Message>, String> {
    let topic = TopicName::from(h.topic.as_str());
    let now = now_ms();
    let body = if h.sys_flag & SYSFLAG_COMPRESSED != 0 && !h.batch {
        inflate(&req.body, MAX_MESSAGE_BYTES).map_err(|e| e.to_string())?
    } else {
        req.body.clone()
    };
    if !h.batch {
        return Ok(vec![message_of(&topic, body, h.flag, &h.properties, now)?]);
    }
    let mut out = Vec::new();
    for e in decode_batch(body).map_err(|e| e.to_string())? {
        // Java appends the batch's properties to each message's (WAIT, and for some
        // clients a batch-level UNIQ_KEY, which the inner one wins over).
        let mut props = e.properties.clone();
        for (k, v) in parse_properties(&h.properties) {
            if !parse_properties(&e.properties)
                .iter()
                .any(|(ik, _)| *ik == k)
            {
                props.push('\u{2}');
                props.push_str(&format!("{k}\u{1}{v}"));
            }
        }
        out.push(message_of(&topic, e.body, e.flag, &props, now)?);
    }
    if out.is_empty() {
        return Err("a batch must carry at least one message".into());
    }
    Ok(out)
}

/// Serves a send: stores on the leader (forwarding from a follower) and answers with the
/// offset message ids.
pub async fn send(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let h = match SendHeader::parse(req.code, Ext(&req.ext)) {
        Ok(h) => h,
        Err(e) => return bad_request(req, &e),
    };
    let prepared = h.sys_flag & SYSFLAG_TRANSACTION_MASK == SYSFLAG_TRANSACTION_PREPARED;
    if h.topic == AUTO_CREATE_TOPIC {
        return reply(
            req,
            response::MESSAGE_ILLEGAL,
            format!("the topic[{AUTO_CREATE_TOPIC}] is conflict with system topic"),
        );
    }
    let mut messages = match messages_of(&h, req) {
        Ok(m) => m,
        Err(e) => return reply(req, response::MESSAGE_ILLEGAL, e),
    };
    if !prepared {
        // Only the sysflag makes a half message.
        for m in &mut messages {
            m.properties.retain(|(k, _)| k != PROP_TRANSACTION_PREPARED);
        }
    } else {
        // A half message: the sysflag decides, and the group is the sender's (clients set
        // both properties too, but the header is what every client sends).
        for m in &mut messages {
            m.properties
                .retain(|(k, _)| k != PROP_TRANSACTION_PREPARED && k != PROP_PRODUCER_GROUP);
            m.properties
                .push((PROP_TRANSACTION_PREPARED.to_owned(), "true".to_owned()));
            m.properties
                .push((PROP_PRODUCER_GROUP.to_owned(), h.producer_group.clone()));
        }
    }
    let mut topic = TopicName::from(h.topic.as_str());
    let tries = u32::try_from(h.reconsume_times).unwrap_or(0);
    if let Some(group) = h.topic.strip_prefix(names::RETRY_PREFIX) {
        // A Java consumer whose send-back failed re-publishes to the retry topic itself;
        // past its tries the message belongs in the dead-letter topic.
        let max = h
            .max_reconsume_times
            .and_then(|m| u32::try_from(m).ok())
            .or_else(|| {
                s.broker
                    .group_config(&ConsumerGroup::from(group))
                    .map(|g| g.retry_max_times)
            })
            .unwrap_or(DEFAULT_MAX_RECONSUME);
        if tries >= max {
            topic = TopicName::from(names::dlq_topic(group));
        }
    }
    let queue_id = match u32::try_from(h.queue_id) {
        Ok(q) => q,
        // Negative: the broker picks (RocketMQ picks at random).
        Err(_) => match s.broker.topic_config(&topic) {
            Ok(t) => (now_ms() % u64::from(t.write_queues.max(1))) as u32,
            Err(_) => 0,
        },
    };
    let messages = messages
        .into_iter()
        .map(|mut m| {
            m.topic = topic.clone();
            m
        })
        .collect();
    let send = SendMessageRequest {
        producer_group: h.producer_group.clone(),
        topic,
        queue_id: QueueId(queue_id),
        messages,
    };
    let options = SendOptions {
        born_ms: u64::try_from(h.born_timestamp).ok().filter(|b| *b > 0),
        reconsume_times: tries,
        create_queues: (h.default_topic == AUTO_CREATE_TOPIC)
            .then(|| u32::try_from(h.default_topic_queue_nums).ok())
            .flatten(),
    };
    let result = s
        .broker
        .on_leader(
            || s.broker.send(&s.conn, send.clone(), options),
            |c, cx| {
                let send = send.clone();
                async move {
                    c.send_with(cx, send, options)
                        .await
                        .map(|r| r.map(|r| r.results))
                }
            },
        )
        .await;
    match result {
        Ok(results) => {
            let ids: Vec<String> = results
                .iter()
                .filter_map(|r| {
                    let id = MsgId::parse(&r.msg_id)?;
                    let at = MsgLocation {
                        log_index: id.log_index,
                        slot: id.slot,
                    };
                    Some(offset_msg_id(s.store_host, at.physical_offset()))
                })
                .collect();
            let first = results.first();
            // A delayed message has no queue offset until it is due: -1 on this wire. A
            // half message has none until committed either; RocketMQ answers its offset in
            // the half topic, which clients only echo back in END_TRANSACTION
            // (tranStateTableOffset, unused here) and rocketmq-client-rust refuses to be
            // negative: 0.
            let offset = first
                .and_then(|r| r.queue_offset)
                .and_then(|o| i64::try_from(o.0).ok())
                .unwrap_or(if prepared { 0 } else { -1 });
            RemotingCommand::response_to(req, response::SUCCESS)
                .with_ext("msgId", ids.join(","))
                .with_ext("queueId", first.map_or(queue_id, |r| r.queue_id.0))
                .with_ext("queueOffset", offset)
                .with_ext("MSG_REGION", REGION)
                .with_ext("TRACE_ON", "true")
        }
        Err(e @ BrokerError::TopicNotFound(_)) => reply(
            req,
            response::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist, apply first please! ({e})", h.topic),
        ),
        Err(e) => error_reply(req, &e),
    }
}

/// Strips the broker's own property from messages it hands back (it is never sent out).
pub fn is_internal_property(name: &str) -> bool {
    name == PROP_DELIVER_AT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_become_message_fields() {
        let t = TopicName::from("T");
        let props = "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}UNIQ_KEY\u{1}ABC\u{2}WAIT\u{1}true\u{2}DELAY\u{1}3\u{2}p\u{1}v\u{2}";
        let m = message_of(&t, Bytes::from_static(b"x"), 7, props, 1000).unwrap();
        assert_eq!(m.tag, "TagA");
        assert_eq!(m.keys, vec!["k1", "k2"]);
        assert_eq!(m.delay_level, 3);
        assert_eq!(m.flag, 7);
        assert_eq!(
            m.properties,
            vec![("UNIQ_KEY".into(), "ABC".into()), ("p".into(), "v".into())]
        );
        let timer = message_of(&t, Bytes::new(), 0, "TIMER_DELAY_SEC\u{1}5", 1000).unwrap();
        assert_eq!(timer.deliver_at_ms, 6000);
        let ons = message_of(&t, Bytes::new(), 0, "__STARTDELIVERTIME\u{1}9000", 1000).unwrap();
        assert_eq!(ons.deliver_at_ms, 9000);
        assert!(message_of(&t, Bytes::new(), 0, "__X\u{1}1", 0).is_err());
        assert!(message_of(&t, Bytes::new(), 0, "DELAY\u{1}soon", 0).is_err());
    }
}
