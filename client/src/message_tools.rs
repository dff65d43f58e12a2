//! Message tools of [`Admin`] beyond lookups by id and key: the messages stored in a time
//! range, sending a stored message to one consumer group again, and the JSON form the CLI
//! prints and the console exports.

use raftmq_proto::broker::SendBackRequest;
use raftmq_proto::message::PROP_UNIQ_KEY;
use raftmq_proto::{names, ConsumerGroup, MessageExt, MsgId, WireError};

use crate::admin::{Admin, ADMIN_TIMEOUT, READ_QUEUE_MAX};
use crate::error::{Error, Result};

/// Most messages one [`Admin::messages_between`] call returns.
pub const RANGE_MAX: u32 = 1000;

/// The messages of a time range, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Range {
    /// Messages stored in the range, by store time (then broker group, queue and offset).
    pub messages: Vec<MessageExt>,
    /// Whether the range may hold more than were returned (a queue gave `max`).
    pub truncated: bool,
}

impl Admin {
    /// Up to `max` (at most [`RANGE_MAX`]) messages of `topic` stored from `from_ms` to
    /// `to_ms` (ms since the Unix epoch, both included), oldest first, from every queue on
    /// every broker group serving the topic, committing nothing. Each queue is read from
    /// the first message stored at or after `from_ms`, and no further than `max` messages
    /// or the first past `to_ms`: the scan is bounded by queues × `max`.
    ///
    /// # Errors
    /// Unknown topic, `from_ms` after `to_ms`, or a broker group unreachable.
    pub async fn messages_between(
        &self,
        topic: &str,
        from_ms: u64,
        to_ms: u64,
        max: u32,
    ) -> Result<Range> {
        names::validate_topic(topic).map_err(Error::Invalid)?;
        if from_ms > to_ms {
            return Err(Error::Invalid(format!(
                "the range starts ({from_ms} ms) after it ends ({to_ms} ms): give the earlier time first"
            )));
        }
        let max = max.clamp(1, RANGE_MAX);
        let route = self.topic_route(topic).await?;
        let mut found = Vec::new();
        let mut truncated = false;
        for g in &route.groups {
            for q in 0..g.read_queues.max(g.write_queues) {
                let t = raftmq_proto::TopicName::from(topic);
                let first = self
                    .core
                    .call_leader(g, ADMIN_TIMEOUT, move |b, cx| {
                        let t = t.clone();
                        async move {
                            b.offset_for_time(cx, t, raftmq_proto::QueueId(q), from_ms)
                                .await
                        }
                    })
                    .await?;
                let (mut offset, mut taken) = (first.0, 0u32);
                'queue: while taken < max {
                    let want = (max - taken).min(READ_QUEUE_MAX);
                    let (page, next) = match self
                        .read_queue(topic, g.broker_group.as_str(), q, offset, want)
                        .await
                    {
                        Err(Error::Wire(WireError::OffsetTooLarge { .. })) => break,
                        r => r?,
                    };
                    if page.is_empty() {
                        break;
                    }
                    for m in page {
                        if m.store_ms > to_ms {
                            break 'queue;
                        }
                        if m.store_ms >= from_ms {
                            found.push(m);
                            taken += 1;
                        }
                    }
                    offset = next;
                }
                truncated |= taken == max;
            }
        }
        found.sort_by(|a, b| {
            (a.store_ms, &a.broker_group, a.queue_id, a.queue_offset).cmp(&(
                b.store_ms,
                &b.broker_group,
                b.queue_id,
                b.queue_offset,
            ))
        });
        truncated |= found.len() > max as usize;
        found.truncate(max as usize);
        Ok(Range {
            messages: found,
            truncated,
        })
    }

    /// Sends a stored message to consumer group `group` again, and to no other group: it
    /// goes to `%RETRY%<group>` on the broker group holding it (keeping its topic, tag,
    /// keys and properties; its reconsume count goes up by one) and is delivered to the
    /// group's consumers a second later (delay level 1). A message of `%DLQ%<group>` is
    /// delivered again the same way; if it fails once more it goes back to the
    /// dead-letter topic. `msg_id` is the stored-position id (`SendResult::msg_id`).
    ///
    /// # Errors
    /// Not a stored-position id, an invalid group name, the message not found, or the
    /// broker group unreachable.
    pub async fn resend_to_group(&self, msg_id: &str, group: &str) -> Result<()> {
        names::validate_group(group).map_err(Error::Invalid)?;
        let Some(id) = MsgId::parse(msg_id) else {
            return Err(Error::Invalid(format!(
                "{msg_id:?} is not a stored-position message id (32 hex digits); find the message and use its msg_id"
            )));
        };
        let g = self
            .groups()
            .await?
            .into_iter()
            .find(|g| {
                raftmq_proto::message::group_tag(g.broker_group.as_str(), g.group_id)
                    == id.group_tag
            })
            .ok_or_else(|| Error::MessageNotFound {
                id: msg_id.to_owned(),
                groups: "no broker group stored it".into(),
            })?;
        let req = SendBackRequest {
            group: ConsumerGroup::from(group),
            msg_id: msg_id.to_owned(),
            delay_level: 1,
            // Delivered once more whatever its count: this is an operator's decision.
            max_reconsume_times: u32::MAX,
        };
        self.core
            .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                let r = req.clone();
                async move { b.send_back(cx, r).await }
            })
            .await
    }
}

/// A message as `raftmq msg` commands print it and the console exports it (one JSON
/// object; a JSON-lines export is one per line).
pub fn message_json(m: &MessageExt) -> serde_json::Value {
    serde_json::json!({
        "msg_id": m.msg_id,
        "unique_key": m.property(PROP_UNIQ_KEY),
        "topic": m.topic.as_str(),
        "queue_id": m.queue_id.0,
        "group": m.broker_group,
        "queue_offset": m.queue_offset.0,
        "tag": m.tag,
        "keys": m.keys,
        "properties": m.properties.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
        "body": String::from_utf8_lossy(&m.body),
        "born_ms": m.born_ms,
        "store_ms": m.store_ms,
        "reconsume_times": m.reconsume_times,
    })
}
