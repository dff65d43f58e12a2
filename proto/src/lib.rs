//! Wire types shared by every raftmq crate.
//!
//! `proto` is the leaf of the crate graph: identifiers, messages, request and response
//! types, the [`WireError`] contract and the tarpc service traits. Server crates and the
//! client both depend on it so that neither has to depend on the other.
//!
//! # Layout
//! - [`auth`]: users, permissions and the signed challenge of a native connection.
//! - [`broker`]: [`BrokerService`] and its requests and responses.
//! - [`clock`]: wall-clock times: ms since the epoch, RFC 3339.
//! - [`config`]: topic and group configuration.
//! - [`error`]: [`WireError`] and its applied / not-applied [`Outcome`].
//! - [`message`]: [`Message`], [`MessageExt`], [`SendResult`], [`MsgId`].
//! - [`names`]: name rules, retry and dead-letter topics.
//! - [`namesrv`]: [`NamesrvService`], registrations and routes.
//! - [`raft`]: [`RaftService`], the Raft port.
//! - [`transport`]: framed TCP transport and the server loop.
//! - [`stream`]: a plain or TLS connection, and the dialer.
//! - [`live`]: client connections that know when the server closed them.
//! - [`transaction`]: transactional messages: decisions, check-backs, pending half messages.
//! - [`ids`]: newtypes for every identifier (`TopicName`, `QueueId`, `Offset`, `LogIndex`, ...).
#![warn(missing_docs)]

pub mod auth;
pub mod broker;
pub mod clock;
pub mod config;
pub mod conn_limit;
pub mod error;
pub mod frames;
pub mod ids;
pub mod live;
pub mod message;
pub mod names;
pub mod namesrv;
pub mod raft;
pub mod sql92;
pub mod stream;
pub mod throttle;
pub mod tls;
pub mod transaction;
pub mod transport;

#[cfg(test)]
mod roundtrip_tests;

pub use broker::{BrokerService, BrokerServiceClient, Role, PROTOCOL_VERSION};
pub use config::{ConsumerGroupConfig, Perm, TopicConfig};
pub use error::{Outcome, WireError};
pub use ids::{
    BrokerGroup, ConsumerGroup, GroupId, LogIndex, NodeId, Offset, QueueId, Term, TopicName,
};
pub use message::{
    FoundMessage, Message, MessageExt, MsgId, SendResult, SendStatus, MAX_MESSAGE_BYTES,
};
pub use namesrv::{NamesrvService, NamesrvServiceClient, TopicRoute};
pub use raft::{RaftService, RaftServiceClient};

#[doc(hidden)]
pub mod __private {
    pub use futures::StreamExt;
    pub use tarpc::server::{BaseChannel, Channel};
}
