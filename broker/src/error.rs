//! [`Error`]: what stops a broker node from starting or running. What a client request
//! fails with is [`crate::BrokerError`].

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
    /// The data directory is in use by another process, or cannot be locked.
    #[error(transparent)]
    Lock(#[from] crate::data_lock::LockError),
    /// A TLS file is missing or malformed.
    #[error(transparent)]
    Tls(#[from] raftmq_proto::tls::TlsError),
    /// Binding a port or another I/O operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
