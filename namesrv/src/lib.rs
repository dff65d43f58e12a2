//! The raftmq NameServer: a near-stateless route table that brokers register with.
//!
//! Every broker node registers with every NameServer every 30 s and at once on a Raft role
//! change; a node silent for `expiry` (120 s) is dropped. NameServers never talk to each
//! other; clients may ask any of them.
//!
//! # Layout
//! - [`routes`]: [`RouteTable`], registrations and the routes derived from them.
//! - [`core`]: [`Namesrv`], the operations, transport-neutral.
//! - [`native`]: the native front end ([`NamesrvService`](raftmq_proto::NamesrvService)).
//! - [`remoting`]: the RocketMQ remoting front end (routes, cluster info, topic lists).
//! - [`server`]: [`run`] and the NameServer port ([`NamesrvPort`]).
//! - [`metrics`]: its Prometheus metrics ([`metrics::MetricsSlot`]).

pub mod core;
pub mod metrics;
pub mod native;
pub mod remoting;
pub mod routes;
pub mod server;

pub use core::{Namesrv, NamesrvError};
pub use routes::RouteTable;
pub use server::{run, NamesrvConfig, NamesrvPort};
