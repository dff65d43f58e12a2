//! Identifier newtypes, so that no public signature takes a bare `u64` or `String`.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! int_id {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                Self(v)
            }
        }
    };
}

int_id!(
    /// A queue within a topic on one broker group, numbered from 0.
    QueueId(u32)
);
int_id!(
    /// The position of a message within one queue: dense, from 0.
    Offset(u64)
);
int_id!(
    /// A Raft log index: identical on every replica of a group. The first entry is 1.
    LogIndex(u64)
);
int_id!(
    /// A Raft term.
    Term(u64)
);
int_id!(
    /// A node of a broker group, unique within its group.
    NodeId(u64)
);

/// A broker group's identity: random, created once when its Raft group is initialised,
/// stored by every member and carried in Raft RPCs and NameServer registrations. It tells
/// two groups of the same name apart (another cluster, a wiped or copied data dir) and is
/// part of every message id. Shown as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u64);

impl GroupId {
    /// Parses the 16-hex-digit form.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 16)
            .then(|| u64::from_str_radix(s, 16).ok().map(Self))
            .flatten()
    }

    /// The 32 bits of the id that message ids carry.
    pub fn tag(self) -> u32 {
        (self.0 ^ (self.0 >> 32)) as u32
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a name without validating it.
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

name_id!(
    /// A topic name such as `TopicTest`, `%RETRY%g1` or `%DLQ%g1`.
    TopicName
);
name_id!(
    /// A consumer (or producer) group name: the clients that share offsets. Not to be
    /// confused with a [`BrokerGroup`].
    ConsumerGroup
);
name_id!(
    /// A broker group name (RocketMQ's `brokerName`): the nodes of one Raft group.
    BrokerGroup
);
