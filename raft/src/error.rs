//! The raft crate's error type.

/// What a replicated write or an admin operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This node is not the leader; nothing was applied.
    #[error("not the leader")]
    NotLeader {
        /// The leader's node id, when known.
        leader: Option<u64>,
        /// The leader's client address, when known.
        leader_addr: Option<String>,
    },
    /// Leadership changed while the entry was in flight: it may or may not commit.
    #[error("leadership changed while the write was in flight; outcome unknown")]
    Unknown,
    /// The request was refused without effect (for example a bad membership change).
    #[error("{0}")]
    Refused(String),
    /// The Raft node stopped (a storage failure or shutdown).
    #[error("the Raft node stopped: {0}")]
    Fatal(String),
    /// A step did not finish in time; nothing is broken, it may be tried again.
    #[error("timed out waiting for {0}")]
    TimedOut(String),
    /// Storage or network I/O failed while starting.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
