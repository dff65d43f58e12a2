//! The raftmq broker node: store + Raft + the services clients and NameServers talk to.
//!
//! ```text
//!  clients ──► front ends (rpc) ──► Broker core ──► send batcher ──► Raft (leader) ──► store
//!                                     │ pull (long poll on the applied index)     ▲
//!                                     ▼                                           │ AppendEntries
//!                                   store ◄── apply ◄── Raft (followers) ◄────────┘ (Raft port)
//! ```
//!
//! # Layout
//! - [`config`]: [`BrokerConfig`], the TOML file.
//! - [`node`]: [`run`], the node's lifecycle.
//! - [`core`]: [`Broker`], every client operation, transport-neutral.
//! - [`rpc`]: the front ends ([`FrontEnd`]): the client port, native protocol and RocketMQ
//!   remoting on one listener.
//! - [`remoting`]: the RocketMQ remoting front end.
//! - [`send`]: group commit of concurrent sends into one Raft entry.
//! - [`registration`]: registering with NameServers.
//! - [`roles`]: one log line per change of who leads.
//! - [`metrics`]: the node's Prometheus metrics ([`MetricsSlot`]).
//! - [`scheduler`]: delivering delayed messages and retries when due.
//! - [`tx_checker`]: the leader's check-back of undecided transactions.
//! - [`tx_batcher`]: group commit of transaction decisions.
//! - [`auth`]: users, signatures and permissions for every client protocol.
//! - [`clients`]: consumer-group membership from heartbeats.
//! - [`convert`]: stored messages as consumers see them.
//! - [`data_lock`]: one process per data directory.
//! - [`error`]: [`Error`], why a node cannot start or run.

pub mod auth;
pub mod clients;
pub mod config;
pub mod convert;
pub mod core;
pub mod data_lock;
pub mod disk;
pub mod error;
pub mod metrics;
pub mod node;
pub mod registration;
pub mod remoting;
pub mod roles;
pub mod rpc;
pub mod scheduler;
pub mod send;
pub mod tls;
pub mod tx_batcher;
pub mod tx_checker;

pub use config::{BrokerConfig, ConfigError, Flush};
pub use core::{Broker, BrokerError};
pub use error::Error;
pub use metrics::MetricsSlot;
pub use node::run;
pub use rpc::{ClientPort, FrontEnd};
