//! Replication of a broker group's commit log with Raft (openraft).
//!
//! # Layout
//! - [`types`]: the openraft type configuration.
//! - [`codec`]: entries as commit-log payloads; votes and memberships in `meta`.
pub mod codec;
pub mod types;
