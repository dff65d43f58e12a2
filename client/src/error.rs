//! The client's error type.

use raftmq_proto::{Outcome, WireError};

/// Everything a client call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker or NameServer answered with an error.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// No connection could be opened; the request was not sent.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The connection broke while a request was in flight; it may have applied.
    #[error("connection to {addr} failed mid-request (outcome unknown): {reason}")]
    Transport {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No answer before the deadline; the request may have applied.
    #[error("no answer from {addr} within {timeout_ms} ms (outcome unknown)")]
    Timeout {
        /// The address.
        addr: String,
        /// The deadline that passed.
        timeout_ms: u64,
    },
    /// No NameServer knows the topic, or no broker group serves it.
    #[error("no route for topic {topic}: {reason}")]
    NoRoute {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// No live broker group holds a message with this id.
    #[error("no message {id}: no live broker group ({groups}) holds it as a stored position or as a client message id (never stored, another cluster's, or deleted by retention)")]
    MessageNotFound {
        /// The id looked up.
        id: String,
        /// The groups asked, comma-separated.
        groups: String,
    },
    /// The client was misconfigured or called wrongly (checked before sending).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The client was shut down.
    #[error("the client is closed")]
    Closed,
}

impl Error {
    /// Whether the failed request may have applied.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Wire(w) => w.outcome(),
            Error::Transport { .. } | Error::Timeout { .. } => Outcome::Unknown,
            Error::Connect { .. }
            | Error::NoRoute { .. }
            | Error::MessageNotFound { .. }
            | Error::Invalid(_)
            | Error::Closed => Outcome::NotApplied,
        }
    }

    /// Whether retrying (perhaps elsewhere) can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Wire(w) => matches!(
                w,
                WireError::NotLeader { .. }
                    | WireError::Busy(_)
                    | WireError::Timeout(_)
                    | WireError::Internal(_)
                    | WireError::TopicNotFound(_)
            ),
            Error::Connect { .. }
            | Error::Transport { .. }
            | Error::Timeout { .. }
            | Error::NoRoute { .. } => true,
            Error::MessageNotFound { .. } | Error::Invalid(_) | Error::Closed => false,
        }
    }
}

/// Shorthand for `Result<T, client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
