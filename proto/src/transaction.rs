//! Transactional messages: a half message stays invisible until its producer commits it;
//! when the producer does not say, the broker asks the producer group.
//!
//! ```text
//! producer ── send (TRAN_MSG=true, PGROUP=g) ──► leader: half message, replicated, invisible
//!          ── local transaction ──
//!          ── end_transaction(msg id, Commit | Rollback | Unknown) ──► stored in its queue
//!                                                                    (or dropped)
//! leader, every check interval: half messages older than the timeout
//!          ──► a live producer of g (its transaction_checks long poll)
//!          ◄── end_transaction(.., from_check = true)
//!          after transaction_check_max checks: rolled back
//! ```

use serde::{Deserialize, Serialize};

use crate::message::MessageExt;

/// What a producer's local transaction (or its checker) decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransactionState {
    /// Store the message: consumers receive it.
    Commit,
    /// Drop the message.
    Rollback,
    /// Not decided yet: the broker will ask again.
    Unknown,
}

impl TransactionState {
    /// `commit`, `rollback` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionState::Commit => "commit",
            TransactionState::Rollback => "rollback",
            TransactionState::Unknown => "unknown",
        }
    }
}

impl std::str::FromStr for TransactionState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "commit" => Ok(TransactionState::Commit),
            "rollback" => Ok(TransactionState::Rollback),
            "unknown" => Ok(TransactionState::Unknown),
            _ => Err(format!(
                "{s:?} is not a transaction state: use commit, rollback or unknown"
            )),
        }
    }
}

/// A producer's decision about one half message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndTransactionRequest {
    /// The producer group that sent it.
    pub producer_group: String,
    /// The half message's broker message id (its send result's `msg_id`).
    pub msg_id: String,
    /// The decision.
    pub state: TransactionState,
    /// Whether this answers a check-back (for the broker's log).
    pub from_check: bool,
}

/// What `end_transaction` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndTransactionOutcome {
    /// Committed now: the message is in its queue.
    Committed,
    /// Rolled back now.
    RolledBack,
    /// `Unknown`: left pending for the check-back.
    LeftPending,
    /// It had already ended (by an earlier decision, a check, or the check limit):
    /// nothing changed.
    AlreadyEnded,
}

/// A long poll for check-backs, made by each transactional producer to each broker
/// group's leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionCheckPoll {
    /// The producer group.
    pub producer_group: String,
    /// The producer instance.
    pub client_id: String,
    /// How long the leader may hold the poll when it has nothing to ask, ms.
    pub wait_ms: u64,
}

/// The leader asks a producer what became of a half message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionCheck {
    /// The half message as stored (`msg_id` is what `end_transaction` takes).
    pub message: MessageExt,
    /// Checks of it so far, this one included.
    pub checks: u32,
}

/// A pending half message, for operators (`raftmq tx list`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTransactionInfo {
    /// The broker message id.
    pub msg_id: String,
    /// The client's message id (`UNIQ_KEY`), empty when it set none.
    pub unique_key: String,
    /// The producer group asked about it.
    pub producer_group: String,
    /// The topic it is for.
    pub topic: String,
    /// The queue it is for.
    pub queue_id: u32,
    /// When the leader stored it, ms since the Unix epoch.
    pub store_ms: u64,
    /// Check-backs so far.
    pub checks: u32,
    /// The last check-back, ms since the Unix epoch (0: never).
    pub last_check_ms: u64,
}
