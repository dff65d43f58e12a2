//! The raftmq client: producers, consumers and the admin client.
//!
//! # Layout
//! - [`producer`]: [`Producer`]: sync, async, one-way, batch and ordered sends.
//! - [`consumer`]: [`PushConsumer`] (listener or stream) and [`LitePullConsumer`].
//! - [`admin`]: [`Admin`]: topics, groups, offsets, cluster status, message lookup.
//! - [`core`]: connections, routes and leader hints shared by all clients.
//! - [`error`]: [`Error`] and its applied / not-applied outcome.
#![warn(missing_docs)]

pub mod admin;
pub mod consumer;
pub mod core;
pub mod error;
pub mod producer;

pub use admin::Admin;
pub use consumer::{
    AllocateStrategy, ConsumeFrom, ConsumeResult, Delivery, LitePullConsumer, MessageModel,
    MessageStream, OrderlyResult, PushConsumer,
};
pub use error::{Error, Result};
pub use producer::{MessageQueue, Producer, ProducerBuilder, SendHandle};
pub use raftmq_proto::{Message, MessageExt, SendResult, SendStatus};
