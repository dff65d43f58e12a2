//! Metrics of raftmq's servers in the Prometheus text format. Every broker node and
//! NameServer is a [`Source`] that reports only what it knows itself, gathered at scrape
//! time (Raft state, offsets, lag) or counted as it happens ([`Histogram`], counters held
//! by the server); an HTTP listener serves a [`Registry`] of them at `/metrics`.
//!
//! # Layout
//! - [`exposition`]: families, labels and the text format.
//! - [`histogram`]: fixed-bucket latency histograms.
//! - [`registry`]: sources and the registry a listener serves.

pub mod exposition;
pub mod histogram;
pub mod registry;

pub use exposition::{Exposition, Kind, Labels, CONTENT_TYPE};
pub use histogram::{Histogram, Snapshot};
pub use registry::{BoxFuture, Health, Registration, Registry, Source};
