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
