//! The raftmq broker node: store + Raft + the services clients and NameServers talk to.
//!
//! ```text
//!  clients ──► BrokerService (client port) ──► send batcher ──► Raft (leader) ──► store
//!                   │ pull (long poll on the applied index)          ▲
//!                   ▼                                                │ AppendEntries
//!                 store ◄── apply ◄── Raft (followers) ◄─────────────┘ (Raft port)
//! ```
//!
//! # Layout
//! - [`config`]: [`BrokerConfig`], the TOML file.
//! - [`node`]: [`run`], the node's lifecycle.
//! - [`service`]: the client-facing RPCs.
//! - [`send`]: group commit of concurrent sends into one Raft entry.
//! - [`registration`]: registering with NameServers.
//! - [`scheduler`]: delivering delayed messages and retries when due.
//! - [`clients`]: consumer-group membership from heartbeats.
//! - [`convert`]: stored messages as consumers see them.
//! - [`error`]: [`Error`] and the mapping to `WireError`.

pub mod clients;
pub mod config;
pub mod convert;
pub mod error;
pub mod node;
pub mod registration;
pub mod scheduler;
pub mod send;
pub mod service;

pub use config::{BrokerConfig, ConfigError, Flush};
pub use error::Error;
pub use node::run;
