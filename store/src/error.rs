//! The store's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("I/O error while {op} {path}: {source}")]
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// RocksDB returned an error.
    #[error("RocksDB error: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Data on disk failed validation somewhere other than a torn tail. The store refuses
    /// to guess: restore the file from a replica or move it aside.
    #[error("corrupt commit log {path} at byte {offset}: {what}; the node refuses to start rather than drop valid data - restore this node from a replica (wipe its data dir and let it catch up)")]
    Corruption {
        /// The file that holds the bad bytes.
        path: PathBuf,
        /// Byte offset of the bad record within that file.
        offset: u64,
        /// What check failed.
        what: String,
    },
    /// Bytes could not be decoded (a record, a message batch, an index value).
    #[error("cannot decode {what}: {reason}")]
    Codec {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// An earlier fsync failed; the store refuses writes until restarted because the
    /// kernel may have dropped dirty pages (the "fsyncgate" lesson).
    #[error("the store is poisoned after a failed fsync ({0}); restart the node")]
    Poisoned(String),
    /// The caller broke an API precondition (for example appended a non-contiguous index).
    #[error("invalid request to the store: {0}")]
    Invalid(String),
    /// One of the store's own invariants broke (an entry applied twice, a column family
    /// missing): a bug or damage, never the caller's input. Clients hear "outcome
    /// unknown", not "not applied".
    #[error("internal store error: {0}; this is a bug or damage to the data dir - report it with the node's log")]
    Internal(String),
    /// A read asked for a queue offset that retention has already deleted.
    #[error("offset {offset} is below the queue's minimum {min}: older messages were deleted by retention")]
    OffsetTooSmall {
        /// The requested offset.
        offset: u64,
        /// The smallest offset still readable.
        min: u64,
    },
    /// The topic does not exist on this broker group.
    #[error(
        "topic {0} does not exist on this broker group; create it first (raftmq topic create {0})"
    )]
    TopicNotFound(String),
    /// The queue does not exist in the topic.
    #[error("queue {queue} does not exist in topic {topic}, which has {queues} queues")]
    QueueNotFound {
        /// The topic.
        topic: String,
        /// The requested queue.
        queue: u32,
        /// Queues the topic has.
        queues: u32,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

impl Error {
    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A decoding failure.
    pub fn codec(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Codec {
            what,
            reason: reason.into(),
        }
    }
}

/// Shorthand for `Result<T, store::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
