//! Topic and group configuration, replicated through Raft and published in routes.

use serde::{Deserialize, Serialize};

use crate::ids::{ConsumerGroup, TopicName};

/// Permission bits of a topic on a group, as RocketMQ's `PermName`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Perm(pub u8);

impl Perm {
    /// Consumers may read.
    pub const READ: u8 = 4;
    /// Producers may write.
    pub const WRITE: u8 = 2;
    /// Read and write (the default).
    pub const RW: Perm = Perm(Self::READ | Self::WRITE);

    /// Whether reads are allowed.
    pub fn readable(self) -> bool {
        self.0 & Self::READ != 0
    }

    /// Whether writes are allowed.
    pub fn writable(self) -> bool {
        self.0 & Self::WRITE != 0
    }
}

impl Default for Perm {
    fn default() -> Self {
        Self::RW
    }
}

/// A topic as one broker group serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// The topic.
    pub name: TopicName,
    /// Queues consumers read. Default 8.
    pub read_queues: u32,
    /// Queues producers write. Default 8.
    pub write_queues: u32,
    /// Permissions.
    pub perm: Perm,
    /// Whether the topic is meant for ordered messages (informational, as RocketMQ's
    /// order topic flag).
    pub order: bool,
}

impl TopicConfig {
    /// A read-write topic with `queues` read and write queues.
    pub fn new(name: impl Into<TopicName>, queues: u32) -> Self {
        Self {
            name: name.into(),
            read_queues: queues,
            write_queues: queues,
            perm: Perm::RW,
            order: false,
        }
    }
}

/// A consumer group's configuration (RocketMQ's `SubscriptionGroupConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupConfig {
    /// The group.
    pub name: ConsumerGroup,
    /// Whether consumption is allowed.
    pub consume_enable: bool,
    /// Whether the group consumes in broadcasting mode.
    pub broadcast: bool,
    /// Failed deliveries before a message goes to `%DLQ%<group>`. Default 16.
    pub retry_max_times: u32,
}

impl ConsumerGroupConfig {
    /// A group with RocketMQ's defaults.
    pub fn new(name: impl Into<ConsumerGroup>) -> Self {
        Self {
            name: name.into(),
            consume_enable: true,
            broadcast: false,
            retry_max_times: 16,
        }
    }
}
