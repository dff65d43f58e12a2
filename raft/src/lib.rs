//! Replication of a broker group's commit log with Raft (openraft).
//!
//! This crate will hold the openraft type configuration, the log-storage and
//! state-machine adapters over `raftmq-store`, and the tarpc Raft network. It is empty
//! until the replication issue lands; see `ARCHITECTURE.md`.
