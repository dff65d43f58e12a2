//! [`BrokerError`]: what a broker operation can fail with, independent of the protocol
//! that carries the answer. Each front end maps it once: to `WireError` for raftmq's
//! native protocol, to a response code for RocketMQ remoting.

use raftmq_proto::error::leader_hint;
use raftmq_proto::{ConsumerGroup, NodeId, TopicName};

/// Why a broker operation failed. Every variant says whether the operation may have
/// taken effect: only [`BrokerError::Indeterminate`] and [`BrokerError::Internal`] may have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// This node does not lead its group; nothing was applied.
    #[error("this node is not the leader of its broker group{}", leader_hint(.leader, .leader_addr))]
    NotLeader {
        /// The leader, when known.
        leader: Option<NodeId>,
        /// The leader's client address, when known.
        leader_addr: Option<String>,
    },
    /// Overloaded; refused without applying. Back off.
    #[error("broker busy, request not applied: {0}")]
    Busy(String),
    /// The outcome is unknown (leadership changed in flight, the node stopped).
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// The topic does not exist on this broker group.
    #[error("topic {0} does not exist on this broker group; create it first (raftmq topic create {0}) or enable auto-creation")]
    TopicNotFound(TopicName),
    /// The consumer group does not exist.
    #[error("consumer group {0} does not exist")]
    GroupNotFound(ConsumerGroup),
    /// No message is stored where the request points.
    #[error("no message {0} on this broker group (never stored, or deleted by retention)")]
    MessageNotFound(String),
    /// Below what the queue still holds.
    #[error("offset {offset} is below the queue's minimum {min}: older messages were deleted by retention")]
    OffsetTooSmall {
        /// The requested offset.
        offset: u64,
        /// The smallest readable offset.
        min: u64,
    },
    /// Beyond the end of the queue.
    #[error("offset {offset} is beyond the queue's end {max}")]
    OffsetTooLarge {
        /// The requested offset.
        offset: u64,
        /// One past the last offset.
        max: u64,
    },
    /// Malformed or over a limit; not applied.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The topic's permissions forbid the operation; not applied.
    #[error("not permitted: {0}")]
    PermissionDenied(String),
    /// An internal failure; the outcome is unknown.
    #[error("internal broker error (outcome unknown): {0}")]
    Internal(String),
    /// Not authenticated, or the user lacks a permission; not applied.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
}

impl BrokerError {
    /// A malformed request.
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::Invalid(m.into())
    }
}

impl From<raftmq_raft::Error> for BrokerError {
    fn from(e: raftmq_raft::Error) -> Self {
        match e {
            raftmq_raft::Error::NotLeader {
                leader,
                leader_addr,
            } => BrokerError::NotLeader {
                leader: leader.map(NodeId),
                leader_addr: leader_addr.filter(|a| !a.is_empty()),
            },
            raftmq_raft::Error::Unknown => BrokerError::Indeterminate(
                "leadership changed while the write was being replicated".into(),
            ),
            raftmq_raft::Error::Refused(m) => BrokerError::Invalid(m),
            raftmq_raft::Error::Fatal(m) => {
                BrokerError::Internal(format!("the Raft node stopped: {m}"))
            }
            raftmq_raft::Error::Io(e) => BrokerError::Internal(e.to_string()),
            e @ raftmq_raft::Error::TimedOut(_) => BrokerError::Busy(e.to_string()),
        }
    }
}

impl From<raftmq_store::Error> for BrokerError {
    fn from(e: raftmq_store::Error) -> Self {
        match e {
            raftmq_store::Error::TopicNotFound(t) => BrokerError::TopicNotFound(TopicName(t)),
            raftmq_store::Error::OffsetTooSmall { offset, min } => {
                BrokerError::OffsetTooSmall { offset, min }
            }
            raftmq_store::Error::Invalid(m) => BrokerError::Invalid(m),
            other => BrokerError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_store_invariant_is_internal_not_a_client_mistake() {
        let e = BrokerError::from(raftmq_store::Error::Internal(
            "entry 7 applied twice".into(),
        ));
        assert!(
            matches!(&e, BrokerError::Internal(m) if m.contains("applied twice")),
            "{e:?}"
        );
        let e = BrokerError::from(raftmq_store::Error::Invalid("too many keys: 70000".into()));
        assert!(matches!(e, BrokerError::Invalid(_)), "{e:?}");
    }
}
