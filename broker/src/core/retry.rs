//! Sending a failed message back: redelivered through `%RETRY%<group>` after a back-off,
//! or moved to `%DLQ%<group>` after too many tries.

use raftmq_proto::message::{PROP_DELIVER_AT, PROP_ORIGIN_MSG_ID, PROP_RETRY_TOPIC};
use raftmq_proto::{names, ConsumerGroup, Message, QueueId, TopicName};

use super::query::MsgLocation;
use super::{blocking, Broker, BrokerError, ConnectionCtx};
use crate::convert::now_ms;
use crate::send::Origin;

/// When a sent-back message is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDelay {
    /// RocketMQ's back-off: delay level `3 + reconsume_times`.
    Backoff,
    /// This delay level.
    Level(u8),
    /// Never: straight to the dead-letter topic.
    DeadLetter,
}

/// A message whose consumption failed.
#[derive(Debug, Clone)]
pub struct SendBack {
    /// The consumer group that failed.
    pub group: ConsumerGroup,
    /// Where the message is stored.
    pub at: MsgLocation,
    /// When to try again.
    pub delay: RetryDelay,
    /// Tries before the message goes to `%DLQ%<group>`.
    pub max_reconsume_times: u32,
    /// The id the consumer knew the message by (kept as `ORIGIN_MSG_ID`).
    pub origin_msg_id: String,
}

impl Broker {
    /// Returns a failed message for retry or dead-lettering (leader only).
    ///
    /// # Errors
    /// `Invalid` group, `NotLeader`, `MessageNotFound`, replication outcomes.
    pub async fn send_back(&self, _ctx: &ConnectionCtx, req: SendBack) -> Result<(), BrokerError> {
        names::validate_group(req.group.as_str()).map_err(BrokerError::Invalid)?;
        self.check_leader()?;
        let store = self.shared.store.clone();
        let at = req.at;
        let stored = blocking(move || store.message_at(at.log_index, at.slot))
            .await?
            .ok_or_else(|| BrokerError::MessageNotFound(req.origin_msg_id.clone()))?;
        let v = &stored.view;
        let tries = v.reconsume_times + 1;
        let dead = req.delay == RetryDelay::DeadLetter || tries > req.max_reconsume_times;
        let target = TopicName::from(if dead {
            names::dlq_topic(req.group.as_str())
        } else {
            names::retry_topic(req.group.as_str())
        });
        let mut properties: Vec<(String, String)> = v
            .properties()
            .filter(|(k, _)| *k != PROP_DELIVER_AT)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if v.property(PROP_RETRY_TOPIC).is_none() {
            properties.push((PROP_RETRY_TOPIC.to_owned(), v.topic().to_owned()));
        }
        if v.property(PROP_ORIGIN_MSG_ID).is_none() {
            properties.push((PROP_ORIGIN_MSG_ID.to_owned(), req.origin_msg_id.clone()));
        }
        if !dead {
            let level = match req.delay {
                RetryDelay::Level(l) if l > 0 => l,
                _ => (3 + v.reconsume_times).min(255) as u8,
            };
            let due = now_ms() + self.level_delay(level);
            properties.push((PROP_DELIVER_AT.to_owned(), due.to_string()));
        }
        let msg = Message {
            topic: target.clone(),
            body: v.body.clone(),
            tag: v.tag().to_owned(),
            keys: v.keys().map(str::to_owned).collect(),
            properties,
            flag: v.flags,
            delay_level: 0,
            deliver_at_ms: 0,
        };
        let origin = Origin {
            born_ms: Some(v.born_ms),
            reconsume_times: tries,
        };
        self.ensure_system_topic(&target).await?;
        if dead {
            tracing::info!(group = %req.group, msg_id = %req.origin_msg_id, tries, "message moved to the dead-letter topic");
        }
        self.shared
            .proposer
            .submit(target, QueueId(0), vec![msg], origin)
            .await?;
        Ok(())
    }
}
