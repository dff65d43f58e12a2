//! The raftmq client: producers, consumers and the admin client.
//!
//! Empty until the client issue lands; see `ARCHITECTURE.md`.
