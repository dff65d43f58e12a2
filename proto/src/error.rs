//! [`WireError`]: every error a raftmq RPC can return, with its Jepsen outcome.

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// Whether a failed request may have taken effect: the contract the chaos checker and the
/// client's retry logic rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The request definitely did not apply: safe to retry anywhere.
    NotApplied,
    /// The request may or may not have applied.
    Unknown,
}

/// An error returned over the wire. Append-only: new variants go at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WireError {
    /// This node is not the leader of its group; the request was not applied.
    #[error("this node is not the leader of its broker group{}", leader_hint(.leader, .leader_addr))]
    NotLeader {
        /// The leader's node id, when known.
        leader: Option<NodeId>,
        /// The leader's client address, when known: retry there.
        leader_addr: Option<String>,
    },
    /// The broker is overloaded and refused the request without applying it; back off.
    #[error("broker busy, request not applied: {0}")]
    Busy(String),
    /// No answer in time: the request may or may not have applied.
    #[error("timed out, outcome unknown: {0}")]
    Timeout(String),
    /// The topic does not exist on this broker group.
    #[error("topic {0} does not exist on this broker group; create it first (raftmq topic create {0}) or enable auto-creation")]
    TopicNotFound(String),
    /// The offset is below what the queue still holds (retention deleted older messages).
    #[error("offset {offset} is below the queue's minimum {min}: older messages were deleted by retention")]
    OffsetTooSmall {
        /// The requested offset.
        offset: u64,
        /// The smallest readable offset.
        min: u64,
    },
    /// The offset is beyond the end of the queue.
    #[error("offset {offset} is beyond the queue's end {max}")]
    OffsetTooLarge {
        /// The requested offset.
        offset: u64,
        /// One past the last offset.
        max: u64,
    },
    /// The request is malformed or breaks a limit; it was not applied.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The caller lacks permission.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// An internal failure; the outcome is unknown.
    #[error("internal broker error (outcome unknown): {0}")]
    Internal(String),
    /// The consumer group does not exist.
    #[error("consumer group {0} does not exist")]
    GroupNotFound(String),
    /// No message has this id (never stored, or deleted by retention).
    #[error("no message {0} on this broker group (never stored, or deleted by retention)")]
    MessageNotFound(String),
    /// Authentication failed or the user lacks a permission; nothing was applied.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
}

/// How a "not the leader" error names the leader: `; the leader is node 2 at host:port`.
pub fn leader_hint(leader: &Option<NodeId>, addr: &Option<String>) -> String {
    match (leader, addr) {
        (Some(id), Some(a)) => format!("; the leader is node {id} at {a}"),
        (Some(id), None) => format!("; the leader is node {id}"),
        _ => "; no leader is known (an election may be in progress)".to_owned(),
    }
}

impl WireError {
    /// Whether the failed request may have applied.
    pub fn outcome(&self) -> Outcome {
        match self {
            WireError::Timeout(_) | WireError::Internal(_) => Outcome::Unknown,
            WireError::NotLeader { .. }
            | WireError::Busy(_)
            | WireError::TopicNotFound(_)
            | WireError::OffsetTooSmall { .. }
            | WireError::OffsetTooLarge { .. }
            | WireError::Invalid(_)
            | WireError::Unauthorized(_)
            | WireError::GroupNotFound(_)
            | WireError::MessageNotFound(_)
            | WireError::NotAuthorized(_) => Outcome::NotApplied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_contract() {
        assert_eq!(WireError::Timeout("x".into()).outcome(), Outcome::Unknown);
        assert_eq!(WireError::Internal("x".into()).outcome(), Outcome::Unknown);
        let nl = WireError::NotLeader {
            leader: Some(NodeId(2)),
            leader_addr: Some("h:1".into()),
        };
        assert_eq!(nl.outcome(), Outcome::NotApplied);
        assert!(nl.to_string().contains("node 2 at h:1"));
        assert_eq!(WireError::Busy("q".into()).outcome(), Outcome::NotApplied);
    }
}
