//! Wire types shared by every raftmq crate.
//!
//! `proto` is the leaf of the crate graph: identifiers, messages, request and response
//! types, the [`WireError`] contract and the tarpc service traits. Server crates and the
//! client both depend on it so that neither has to depend on the other.
//!
//! # Layout
//! - [`config`]: topic and group configuration.
//! - [`ids`]: newtypes for every identifier (`TopicName`, `QueueId`, `Offset`, `LogIndex`, ...).
#![warn(missing_docs)]

pub mod config;
pub mod ids;

pub use config::{GroupConfig, Perm, TopicConfig};
pub use ids::{GroupName, LogIndex, NodeId, Offset, QueueId, Term, TopicName};
