//! The raftmq NameServer: a near-stateless route table that brokers register with.
//!
//! Empty until the broker-group issue lands; see `ARCHITECTURE.md`.
