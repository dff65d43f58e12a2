//! The raftmq broker node: store + Raft + the services clients and NameServers talk to.
//!
//! Empty until the broker-group issue lands; see `ARCHITECTURE.md`.
