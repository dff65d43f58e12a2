//! Replication of a broker group's commit log with Raft (openraft).
//!
//! # Layout
//! - [`types`]: the openraft type configuration.
//! - [`replica`]: [`Replica`], one node wired together; start, bootstrap, write, admin.
//! - [`error`]: the crate's [`Error`] type.
//! - [`codec`]: entries as commit-log payloads; votes and memberships in `meta`.
//! - [`log_store`]: openraft log storage over the commit log.
//! - [`state_machine`]: the state machine over the store, and snapshots.
//! - [`identity`]: the group id, created once, learned from the leader, checked per RPC.
//! - [`network`]: the tarpc Raft network (client side).
//! - [`commit_hold`]: commit-only AppendEntries held for the next append to carry.
//! - [`peer_health`]: a log line when a peer goes away and when it is back, not per RPC.
//! - [`server`]: the Raft port (server side).
//! - [`transfer`]: snapshot transfer with the log entries the receiver lacks.
mod blocking;
pub mod codec;
pub mod commit_hold;
pub mod error;
pub mod guard;
pub mod identity;
pub mod log_store;
pub mod network;
pub mod peer_health;
pub mod replica;
pub mod server;
pub mod state_machine;
pub mod transfer;
pub mod types;

/// The openraft handle of a broker group node.
pub type Raft = openraft::Raft<types::TypeConfig, state_machine::StateMachine>;

pub use error::Error;
pub use identity::Identity;
pub use network::{Connector, TcpConnector};
pub use replica::{Replica, ReplicaConfig};
pub use server::AppendGate;
pub use types::{Placement, RaftNode, RaftResponse};
