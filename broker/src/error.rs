//! The broker's error type and its mapping to [`WireError`] at the RPC boundary.

use raftmq_proto::{NodeId, WireError};

/// What can stop a broker node from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store failed to open or recover.
    #[error("storage: {0}")]
    Store(#[from] raftmq_store::Error),
    /// Raft failed to start.
    #[error("raft: {0}")]
    Raft(#[from] raftmq_raft::Error),
    /// Binding a port or another I/O operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Maps a replication error to the wire.
pub fn raft_to_wire(e: raftmq_raft::Error) -> WireError {
    match e {
        raftmq_raft::Error::NotLeader {
            leader,
            leader_addr,
        } => WireError::NotLeader {
            leader: leader.map(NodeId),
            leader_addr: leader_addr.filter(|a| !a.is_empty()),
        },
        raftmq_raft::Error::Unknown => {
            WireError::Timeout("leadership changed while the write was being replicated".into())
        }
        raftmq_raft::Error::Refused(m) => WireError::Invalid(m),
        raftmq_raft::Error::Fatal(m) => WireError::Internal(format!("the Raft node stopped: {m}")),
        raftmq_raft::Error::Io(e) => WireError::Internal(e.to_string()),
    }
}

/// Maps a store error to the wire.
pub fn store_to_wire(e: raftmq_store::Error) -> WireError {
    match e {
        raftmq_store::Error::TopicNotFound(t) => WireError::TopicNotFound(t),
        raftmq_store::Error::OffsetTooSmall { offset, min } => {
            WireError::OffsetTooSmall { offset, min }
        }
        raftmq_store::Error::Invalid(m) => WireError::Invalid(m),
        other => WireError::Internal(other.to_string()),
    }
}
