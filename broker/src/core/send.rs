//! Storing messages: validation, delays, topic auto-creation, then the send batcher.

use std::sync::atomic::Ordering;

use raftmq_proto::broker::{SendMessageRequest, SendOptions};
use raftmq_proto::message::{
    DELAY_LEVELS_MS, MAX_DELAY_MS, PROP_DELIVER_AT, PROP_PRODUCER_GROUP, PROP_TRANSACTION_PREPARED,
};
use raftmq_proto::{names, Message, SendResult, TopicConfig, TopicName, MAX_MESSAGE_BYTES};
use raftmq_store::Command;

use super::{Broker, BrokerError, ConnectionCtx};
use crate::convert::now_ms;
use crate::send::{Origin, MAX_MESSAGES_PER_SEND};

/// Properties starting with `__` that RocketMQ clients themselves set, kept as they are:
/// the transaction id of a half message (Java's and rocketmq-client-rust's
/// `sendMessageInTransaction`).
const CLIENT_RESERVED_PROPERTIES: [&str; 1] = ["__transactionId__"];

/// Most sends one `send_many` call may carry.
pub const MAX_SENDS_PER_CALL: usize = 4096;

/// The template topic RocketMQ clients fall back to for a topic that does not exist yet;
/// a broker that auto-creates topics publishes it (perm 7) and refuses sends to it.
pub const AUTO_CREATE_TOPIC: &str = "TBW102";

impl Broker {
    /// Validates and stores one send (leader only).
    ///
    /// # Errors
    /// `NotLeader`, `TopicNotFound`, `PermissionDenied`, `Invalid`, `Busy` (also when the
    /// data disk is above the write limit), and the indeterminate outcomes of replication.
    pub async fn send(
        &self,
        _ctx: &ConnectionCtx,
        req: SendMessageRequest,
        opts: SendOptions,
    ) -> Result<Vec<SendResult>, BrokerError> {
        validate_send(&req)?;
        self.check_leader()?;
        let _serving = self.shared.drain.track();
        if names::is_system_topic(req.topic.as_str()) {
            self.ensure_system_topic(&req.topic).await?;
        }
        let topic = self.topic_or_create(&req.topic, opts.create_queues).await?;
        if !topic.perm.writable() {
            return Err(BrokerError::PermissionDenied(format!(
                "topic {} is not writable on group {}",
                req.topic,
                self.group()
            )));
        }
        if req.queue_id.0 >= topic.write_queues {
            return Err(BrokerError::invalid(format!(
                "queue {} does not exist: topic {} has {} write queues on group {}",
                req.queue_id,
                req.topic,
                topic.write_queues,
                self.group()
            )));
        }
        let bytes = crate::disk::message_bytes(&req.messages);
        self.shared
            .disk
            .take(self.shared.replica.node_id(), bytes)?;
        let now = now_ms();
        let mut messages = req.messages;
        for m in &mut messages {
            if let Some(due) = due_ms(m, now, &self.shared.delay_levels)? {
                m.properties
                    .push((PROP_DELIVER_AT.to_owned(), due.to_string()));
            }
        }
        let origin = Origin {
            born_ms: opts.born_ms,
            reconsume_times: opts.reconsume_times,
        };
        let produced = self.shared.counters.produced.get(req.topic.as_str());
        let stored = self
            .shared
            .proposer
            .submit(req.topic, req.queue_id, messages, origin)
            .await?;
        produced.fetch_add(stored.len() as u64, Ordering::Relaxed);
        Ok(stored)
    }

    /// Several sends in one call, each with its own result (they share the batcher's next
    /// entries).
    ///
    /// # Errors
    /// Too many sends, or `NotLeader`; each send's own failure is in its result.
    pub async fn send_many(
        &self,
        ctx: &ConnectionCtx,
        reqs: Vec<SendMessageRequest>,
    ) -> Result<Vec<Result<Vec<SendResult>, BrokerError>>, BrokerError> {
        if reqs.len() > MAX_SENDS_PER_CALL {
            return Err(BrokerError::invalid(format!(
                "{} sends in one call; at most {MAX_SENDS_PER_CALL}",
                reqs.len()
            )));
        }
        self.check_leader()?;
        Ok(futures::future::join_all(
            reqs.into_iter()
                .map(|r| self.send(ctx, r, SendOptions::default())),
        )
        .await)
    }

    /// The topic's config, creating it first (leader only) when auto-creation is on.
    pub(crate) async fn topic_or_create(
        &self,
        topic: &TopicName,
        queues: Option<u32>,
    ) -> Result<TopicConfig, BrokerError> {
        if let Some(t) = self.shared.store.topic(topic.as_str()) {
            return Ok(t);
        }
        if !self.shared.config.auto_create_topics || topic.as_str() == AUTO_CREATE_TOPIC {
            return Err(BrokerError::TopicNotFound(topic.clone()));
        }
        self.check_leader()?;
        let default = self.shared.config.default_queues;
        let n = queues.map_or(default, |q| q.clamp(1, default));
        let config = TopicConfig::new(topic.clone(), n);
        tracing::info!(topic = %topic, queues = config.write_queues, "auto-creating topic");
        self.command(Command::UpsertTopic(config)).await?;
        self.shared.topics_changed.notify_one();
        self.topic_config(topic)
    }

    /// Creates a one-queue `%RETRY%`/`%DLQ%` topic on first use.
    pub(crate) async fn ensure_system_topic(&self, topic: &TopicName) -> Result<(), BrokerError> {
        if self.shared.store.topic(topic.as_str()).is_some() {
            return Ok(());
        }
        tracing::info!(topic = %topic, "creating system topic");
        self.command(Command::UpsertTopic(TopicConfig::new(topic.clone(), 1)))
            .await?;
        self.shared.topics_changed.notify_one();
        Ok(())
    }

    /// Delay of a level with this broker's levels.
    pub(crate) fn level_delay(&self, level: u8) -> u64 {
        level_delay(&self.shared.delay_levels, level)
    }
}

/// The delay of `level` (1-based; beyond the last level means the last).
pub(crate) fn level_delay(levels: &[u64], level: u8) -> u64 {
    let i = usize::from(level.max(1)) - 1;
    levels
        .get(i)
        .or(levels.last())
        .copied()
        .unwrap_or(DELAY_LEVELS_MS[17])
}

/// When a delayed message is due, or `None` to deliver it now.
fn due_ms(m: &Message, now: u64, levels: &[u64]) -> Result<Option<u64>, BrokerError> {
    let due = if m.deliver_at_ms > 0 {
        m.deliver_at_ms
    } else if m.delay_level > 0 {
        now + level_delay(levels, m.delay_level)
    } else {
        return Ok(None);
    };
    if due <= now {
        return Ok(None);
    }
    if due - now > MAX_DELAY_MS {
        return Err(BrokerError::invalid(format!(
            "deliver-at time is {} s away; the longest delay is {} s (3 days)",
            (due - now) / 1000,
            MAX_DELAY_MS / 1000
        )));
    }
    Ok(Some(due))
}

fn validate_send(req: &SendMessageRequest) -> Result<(), BrokerError> {
    names::validate_topic(req.topic.as_str()).map_err(BrokerError::Invalid)?;
    if req.messages.is_empty() {
        return Err(BrokerError::invalid(
            "a send must carry at least one message",
        ));
    }
    if req.messages.len() > MAX_MESSAGES_PER_SEND {
        return Err(BrokerError::invalid(format!(
            "{} messages in one send; at most {MAX_MESSAGES_PER_SEND}: split the batch",
            req.messages.len()
        )));
    }
    let mut total = 0usize;
    for m in &req.messages {
        if m.topic != req.topic {
            return Err(BrokerError::invalid(format!(
                "every message of a batch must have the batch's topic {}, found {}",
                req.topic, m.topic
            )));
        }
        if m.body.len() > MAX_MESSAGE_BYTES {
            return Err(BrokerError::invalid(format!(
                "message body of {} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit",
                m.body.len()
            )));
        }
        if m.properties
            .iter()
            .any(|(k, _)| k.starts_with("__") && !CLIENT_RESERVED_PROPERTIES.contains(&k.as_str()))
        {
            return Err(BrokerError::invalid(
                "property names starting with \"__\" are reserved for the broker",
            ));
        }
        let prop = |name: &str| m.properties.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        if prop(PROP_TRANSACTION_PREPARED).is_some_and(|v| v == "true")
            && prop(PROP_PRODUCER_GROUP).is_none_or(|g| g.is_empty())
        {
            return Err(BrokerError::invalid(format!(
                "a transaction's half message ({PROP_TRANSACTION_PREPARED}=true) must name its \
                 producer group in {PROP_PRODUCER_GROUP}: the broker asks that group about it"
            )));
        }
        if m.keys.iter().any(|k| k.contains('\0')) || m.tag.contains('\0') {
            return Err(BrokerError::invalid(
                "tags and keys must not contain NUL characters",
            ));
        }
        let props: usize = m
            .properties
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum();
        if props > 32 * 1024 {
            return Err(BrokerError::invalid(format!(
                "properties take {props} bytes, more than the 32 KiB limit"
            )));
        }
        total += m.body.len() + props;
    }
    if total > MAX_MESSAGE_BYTES {
        return Err(BrokerError::invalid(format!(
            "batch of {total} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit; split it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_proto::QueueId;

    fn req(messages: Vec<Message>) -> SendMessageRequest {
        SendMessageRequest {
            producer_group: "p".into(),
            topic: TopicName::from("T"),
            queue_id: QueueId(0),
            messages,
        }
    }

    #[test]
    fn sends_are_validated() {
        assert!(validate_send(&req(vec![Message::new("T", "x")])).is_ok());
        assert!(validate_send(&req(vec![])).is_err());
        assert!(validate_send(&req(vec![Message::new("U", "x")])).is_err());
        let big = Message::new("T", vec![0u8; MAX_MESSAGE_BYTES + 1]);
        assert!(validate_send(&req(vec![big])).is_err());
        let reserved = Message::new("T", "x").with_property("__DELIVER_AT", "1");
        assert!(validate_send(&req(vec![reserved])).is_err());
        let nul = Message::new("T", "x").with_key("a\0b");
        assert!(validate_send(&req(vec![nul])).is_err());
        let many = vec![Message::new("T", ""); MAX_MESSAGES_PER_SEND + 1];
        assert!(validate_send(&req(many)).is_err());
        let half = vec![Message::new("T", vec![0u8; MAX_MESSAGE_BYTES / 2 + 1]); 2];
        assert!(validate_send(&req(half)).is_err());
    }

    #[test]
    fn delays_follow_levels_and_limits() {
        let levels = DELAY_LEVELS_MS.to_vec();
        assert_eq!(level_delay(&levels, 1), 1_000);
        assert_eq!(level_delay(&levels, 0), 1_000);
        assert_eq!(level_delay(&levels, 200), 7_200_000);
        assert_eq!(level_delay(&[], 3), 7_200_000);
        let now = 1_000_000;
        let m = Message::new("T", "x");
        assert_eq!(due_ms(&m, now, &levels).unwrap(), None);
        let m = Message::new("T", "x").with_delay_level(3);
        assert_eq!(due_ms(&m, now, &levels).unwrap(), Some(now + 10_000));
        let m = Message::new("T", "x").with_deliver_at(now - 1);
        assert_eq!(due_ms(&m, now, &levels).unwrap(), None);
        let m = Message::new("T", "x").with_deliver_at(now + MAX_DELAY_MS + 1);
        assert!(due_ms(&m, now, &levels).is_err());
    }
}
