//! The openraft type configuration of a broker group.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A node's addresses, as stored in the Raft membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftNode {
    /// Address of the node's Raft port.
    pub raft_addr: String,
    /// Address clients use (published to NameServers, returned in `NotLeader` hints).
    pub client_addr: String,
}

impl fmt::Display for RaftNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} client={}", self.raft_addr, self.client_addr)
    }
}

/// The data of a normal Raft entry: the store's encoded entry payload (a message batch or
/// a command), so a follower writes exactly the bytes the leader encoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftRequest(pub Bytes);

impl fmt::Display for RaftRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry payload of {} bytes", self.0.len())
    }
}

/// Where one message of a batch went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// Stored at this queue offset.
    Stored {
        /// The queue.
        queue_id: u32,
        /// Its offset.
        offset: u64,
    },
    /// A delayed message, waiting until `due_ms`.
    Scheduled {
        /// The queue it will be delivered to.
        queue_id: u32,
        /// When, ms since the Unix epoch.
        due_ms: u64,
    },
    /// A transaction's half message, invisible until committed.
    Half {
        /// The queue it will be stored in.
        queue_id: u32,
    },
    /// The topic no longer existed at apply time.
    TopicNotFound,
}

/// What applying an entry produced, returned to the proposer by `client_write`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftResponse {
    /// Blank, membership and command entries.
    #[default]
    Done,
    /// One outcome per message of a batch.
    Messages(Vec<Placement>),
    /// Which queues a lock request granted.
    Locked(Vec<bool>),
    /// An `EndTransaction`: what the commit stored (empty for a rollback), or `None` when
    /// the transaction had already ended.
    TransactionEnded(Option<Vec<Placement>>),
}

openraft::declare_raft_types!(
    /// The openraft configuration of a raftmq broker group: standard Raft leader ids (one
    /// leader per term), so a log id is `(term, index)` like the commit-log record.
    pub TypeConfig:
        D = RaftRequest,
        R = RaftResponse,
        NodeId = u64,
        Node = RaftNode,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

/// A log id of this configuration.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A vote of this configuration.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// An entry of this configuration.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A membership of this configuration.
pub type Membership = openraft::Membership<u64, RaftNode>;
/// A stored membership (with the id of the entry that set it).
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

/// Builds a log id from a term and an index.
pub fn log_id(term: u64, index: u64) -> LogId {
    openraft::LogId::new(
        openraft::vote::leader_id_std::CommittedLeaderId::new(term),
        index,
    )
}

/// The term of a log id.
pub fn term_of(id: &LogId) -> u64 {
    id.leader_id.term
}
