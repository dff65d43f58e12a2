//! Messages as producers send them and consumers receive them, and their ids.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::{BrokerGroup, GroupId, Offset, QueueId, TopicName};

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
/// System property of a transaction's half message (RocketMQ's `TRAN_MSG`, `"true"`): the
/// broker keeps it invisible until the producer commits it.
pub const PROP_TRANSACTION_PREPARED: &str = "TRAN_MSG";
/// System property of a half message: the producer group the broker asks about it
/// (RocketMQ's `PGROUP`).
pub const PROP_PRODUCER_GROUP: &str = "PGROUP";
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

/// A message looked up by id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FoundMessage {
    /// In its queue: consumable.
    Stored(MessageExt),
    /// A delayed message waiting for its time: it gets a queue offset when delivered.
    Scheduled {
        /// Its id (where it waits).
        msg_id: String,
        /// Broker group that stores it.
        broker_group: BrokerGroup,
        /// The queue it will be delivered to.
        queue_id: QueueId,
        /// When it was stored, ms since the Unix epoch.
        store_ms: u64,
        /// The message; `deliver_at_ms` is when it is due.
        message: Message,
    },
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

impl crate::sql92::Properties for MessageExt {
    fn property(&self, name: &str) -> Option<&str> {
        MessageExt::property(self, name)
    }
    fn tag(&self) -> &str {
        &self.tag
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

/// Where one sent message was stored. A delayed message reports its queue and no offset:
/// it gets one when it is delivered at `deliver_at_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResult {
    /// Outcome.
    pub status: SendStatus,
    /// Where the message is stored (a [`MsgId`]): the same on every replica. A delayed
    /// message's id names the copy that waits; `msg get` follows it to the delivered one.
    pub msg_id: String,
    /// The client's message id (`UNIQ_KEY`, made by the producer, kept through delay and
    /// retry, accepted by `msg get`), if the producer set one.
    pub unique_key: Option<String>,
    /// Topic.
    pub topic: TopicName,
    /// Broker group that stored it.
    pub broker_group: BrokerGroup,
    /// Queue.
    pub queue_id: QueueId,
    /// Offset within the queue; `None` for a delayed message until it is delivered.
    pub queue_offset: Option<Offset>,
    /// When a delayed message will be delivered, ms since the Unix epoch (0 = now).
    pub deliver_at_ms: u64,
}

/// A message id: which group, which log entry, which slot in it.
///
/// Rendered as 32 hex digits: the 8-digit tag of the group (from its [`GroupId`], so two
/// clusters, or a wiped and re-created group, never issue the same ids), the 16-digit log
/// index and the 8-digit slot, so it is stable across replicas and can be routed back to
/// its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsgId {
    /// The group's tag: [`group_tag`].
    pub group_tag: u32,
    /// Raft log index of the entry.
    pub log_index: u64,
    /// Position in the entry.
    pub slot: u32,
}

impl MsgId {
    /// The id of slot `slot` of entry `log_index` in the group tagged `group_tag`.
    pub fn new(group_tag: u32, log_index: u64, slot: u32) -> Self {
        Self {
            group_tag,
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
            group_tag: u32::from_str_radix(&s[..8], 16).ok()?,
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
            self.group_tag, self.log_index, self.slot
        )
    }
}

/// The group part of a [`MsgId`]: from the group's id, or, for a group that has none yet
/// (only one whose data predates group ids, until its leader creates one), FNV-1a over
/// its name.
pub fn group_tag(group: &str, id: Option<GroupId>) -> u32 {
    id.map_or_else(
        || {
            group.bytes().fold(0x811c_9dc5u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            })
        },
        GroupId::tag,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_id_round_trip() {
        let id = MsgId::new(group_tag("broker-a", None), 1234, 7);
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        let (a, b) = (Some(GroupId(1 << 40 | 5)), Some(GroupId(6)));
        assert_ne!(group_tag("broker-a", a), group_tag("broker-a", b));
        assert_eq!(MsgId::parse(&s), Some(id));
        assert_eq!(MsgId::parse("xyz"), None);
    }
}
