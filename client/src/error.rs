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
    /// The task carrying a request ended without an answer (it panicked or was
    /// cancelled): the request may have been sent and applied.
    #[error("the request's task ended without an answer (outcome unknown): {0}")]
    Aborted(String),
    /// A send gave up on an error that alone says "not stored" (`last`), after an earlier
    /// attempt whose outcome is unknown (`earlier`): that attempt may have stored it.
    #[error("{last}; but an earlier attempt may have stored it: {earlier}")]
    MaybeStored {
        /// The attempt whose outcome is unknown.
        earlier: Box<Error>,
        /// The error the send gave up on.
        last: Box<Error>,
    },
}

impl Error {
    /// The error a retried send gives up with: `last`, or [`Error::MaybeStored`] when
    /// `last` says "not applied" but an `earlier` attempt's outcome is unknown (a send
    /// that timed out, then found the broker gone, may well have been stored).
    pub fn gave_up(earlier: Option<Error>, last: Error) -> Error {
        match earlier {
            Some(e) if last.outcome() == Outcome::NotApplied => Error::MaybeStored {
                earlier: Box::new(e),
                last: Box::new(last),
            },
            _ => last,
        }
    }
}

impl Error {
    /// Whether the failed request may have applied.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Wire(w) => w.outcome(),
            Error::Transport { .. }
            | Error::Timeout { .. }
            | Error::MaybeStored { .. }
            | Error::Aborted(_) => Outcome::Unknown,
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
            Error::MessageNotFound { .. }
            | Error::Invalid(_)
            | Error::Closed
            | Error::MaybeStored { .. }
            | Error::Aborted(_) => false,
        }
    }
}

/// Shorthand for `Result<T, client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_that_may_have_been_stored_is_not_reported_as_not_stored() {
        let timeout = Error::Timeout {
            addr: "a:1".into(),
            timeout_ms: 3000,
        };
        let refused = Error::Connect {
            addr: "a:1".into(),
            reason: "Connection refused".into(),
        };
        let e = Error::gave_up(Some(timeout.clone()), refused.clone());
        assert_eq!(e.outcome(), Outcome::Unknown);
        assert!(!e.is_retryable());
        let text = e.to_string();
        assert!(
            text.contains("Connection refused") && text.contains("may have stored it"),
            "{text}"
        );
        // Nothing uncertain before, or an uncertain last error: the last error as it is.
        assert!(matches!(
            Error::gave_up(None, refused.clone()),
            Error::Connect { .. }
        ));
        assert!(matches!(
            Error::gave_up(Some(timeout.clone()), timeout),
            Error::Timeout { .. }
        ));
    }
}
