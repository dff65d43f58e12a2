//! Messages as producers send them and consumers receive them, and their ids.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::{BrokerGroup, Offset, QueueId, TopicName};

/// System property: when a delayed message is due, ms since the Unix epoch (set by the
/// broker; the message waits in the timer index until then).
pub const PROP_DELIVER_AT: &str = "__DELIVER_AT";
/// System property of a retried message: the topic it was first consumed from.
pub const PROP_RETRY_TOPIC: &str = "RETRY_TOPIC";
/// System property of a retried or dead-lettered message: the id of the original.
pub const PROP_ORIGIN_MSG_ID: &str = "ORIGIN_MSG_ID";
/// The client's own message id (RocketMQ's `UNIQ_KEY`, set by Java, C++ and Rust
/// producers): kept as a property and indexed like a key, so it can be looked up.
pub const PROP_UNIQ_KEY: &str = "UNIQ_KEY";
/// Longest delay a message may ask for: 3 days (RocketMQ's `timerMaxDelaySec`).
pub const MAX_DELAY_MS: u64 = 3 * 24 * 3600 * 1000;

/// Largest message body, checked by the client before sending and again by the broker.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// The 18 delay levels of RocketMQ, in milliseconds (`1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m
/// 9m 10m 20m 30m 1h 2h`). Level `n` (1-based) delays by `DELAY_LEVELS_MS[n - 1]`.
pub const DELAY_LEVELS_MS: [u64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Destination topic.
    pub topic: TopicName,
    /// Payload, at most [`MAX_MESSAGE_BYTES`].
    pub body: Bytes,
    /// One tag for broker-side filtering (RocketMQ allows one), empty for none.
    pub tag: String,
    /// Keys for query by key.
    pub keys: Vec<String>,
    /// User properties.
    pub properties: Vec<(String, String)>,
    /// Application flag bits.
    pub flag: u32,
    /// Delay level 1 to 18 (0 = deliver at once).
    pub delay_level: u8,
    /// Deliver at this time, ms since the Unix epoch (0 = at once). Wins over `delay_level`.
    pub deliver_at_ms: u64,
}

impl Message {
    /// A message with a body and nothing else.
    pub fn new(topic: impl Into<TopicName>, body: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            body: body.into(),
            tag: String::new(),
            keys: Vec::new(),
            properties: Vec::new(),
            flag: 0,
            delay_level: 0,
            deliver_at_ms: 0,
        }
    }

    /// Sets the tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// Adds a key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Delivers after delay level `level` (1 to 18: `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m
    /// 9m 10m 20m 30m 1h 2h` with the brokers' default levels).
    pub fn with_delay_level(mut self, level: u8) -> Self {
        self.delay_level = level;
        self
    }

    /// Delivers at this time, ms since the Unix epoch (at most 3 days ahead).
    pub fn with_deliver_at(mut self, ms: u64) -> Self {
        self.deliver_at_ms = ms;
        self
    }

    /// Adds a user property.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((name.into(), value.into()));
        self
    }

    /// The value of a property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A message as a consumer receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageExt {
    /// Stable id: the same on every replica.
    pub msg_id: String,
    /// Topic.
    pub topic: TopicName,
    /// Broker group that stores it.
    pub broker_group: BrokerGroup,
    /// Queue within the topic on that group.
    pub queue_id: QueueId,
    /// Offset within the queue.
    pub queue_offset: Offset,
    /// Tag, empty for none.
    pub tag: String,
    /// Keys.
    pub keys: Vec<String>,
    /// Properties (user and system).
    pub properties: Vec<(String, String)>,
    /// Payload.
    pub body: Bytes,
    /// Application flag bits.
    pub flag: u32,
    /// Producer clock at creation, ms since the Unix epoch.
    pub born_ms: u64,
    /// Leader clock when stored, ms since the Unix epoch.
    pub store_ms: u64,
    /// Failed consumption attempts so far.
    pub reconsume_times: u32,
}

impl MessageExt {
    /// The value of a property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a send was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SendStatus {
    /// Stored on a quorum of the group, fsynced per the group's flush mode.
    SendOk,
}

impl std::fmt::Display for SendStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendStatus::SendOk => f.write_str("SEND_OK"),
        }
    }
}

/// Where one sent message was stored. A delayed message reports its queue and, as its
/// offset, `u64::MAX`: it gets a real offset when it is delivered at `deliver_at_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResult {
    /// Outcome.
    pub status: SendStatus,
    /// Stable message id.
    pub msg_id: String,
    /// Topic.
    pub topic: TopicName,
    /// Broker group that stored it.
    pub broker_group: BrokerGroup,
    /// Queue.
    pub queue_id: QueueId,
    /// Offset within the queue (`u64::MAX` for a delayed message until it is delivered).
    pub queue_offset: Offset,
    /// When a delayed message will be delivered, ms since the Unix epoch (0 = now).
    pub deliver_at_ms: u64,
}

/// A message id: which group, which log entry, which slot in it.
///
/// Rendered as 32 hex digits: an 8-digit hash of the group name, the 16-digit log index and
/// the 8-digit slot, so it is stable across replicas and can be routed back to its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsgId {
    /// FNV-1a hash of the broker group name.
    pub group_hash: u32,
    /// Raft log index of the entry.
    pub log_index: u64,
    /// Position in the entry.
    pub slot: u32,
}

impl MsgId {
    /// The id of slot `slot` of entry `log_index` in `group`.
    pub fn new(group: &str, log_index: u64, slot: u32) -> Self {
        Self {
            group_hash: group_hash(group),
            log_index,
            slot,
        }
    }

    /// Parses the 32-hex-digit form.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            group_hash: u32::from_str_radix(&s[..8], 16).ok()?,
            log_index: u64::from_str_radix(&s[8..24], 16).ok()?,
            slot: u32::from_str_radix(&s[24..], 16).ok()?,
        })
    }
}

impl std::fmt::Display for MsgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:08X}{:016X}{:08X}",
            self.group_hash, self.log_index, self.slot
        )
    }
}

/// FNV-1a over the group name: the group part of a [`MsgId`].
pub fn group_hash(group: &str) -> u32 {
    group.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_id_round_trip() {
        let id = MsgId::new("broker-a", 1234, 7);
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(MsgId::parse(&s), Some(id));
        assert_eq!(MsgId::parse("xyz"), None);
    }
}
