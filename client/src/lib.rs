//! The raftmq client: producers, consumers and the admin client.
//!
//! Everything is async (tokio) and talks to the cluster through its NameServers: routes are
//! fetched from any of them and refreshed every 30 s and at once when a broker answers
//! `NotLeader`, so a leader failover inside a broker group is invisible to the caller apart
//! from a short delay. Every call has a deadline; every error says whether the request may
//! have applied ([`Error::outcome`]).
//!
//! # Producer
//! ```no_run
//! # async fn demo() -> Result<(), raftmq_client::Error> {
//! use raftmq_client::{Message, Producer};
//! let producer = Producer::builder().namesrv(["127.0.0.1:9876"]).build()?;
//! let r = producer.send(Message::new("TopicTest", "hello").with_tag("TagA").with_key("k1")).await?;
//! println!("{} at {}:{} offset {:?}", r.msg_id, r.broker_group, r.queue_id, r.queue_offset);
//! producer.send_orderly(Message::new("Orders", "paid"), "order-42").await?; // same key, same queue
//! let pending = producer.send_async(Message::new("TopicTest", "pipelined")).await?;
//! pending.await?;
//! # Ok(()) }
//! ```
//!
//! # Push consumer (concurrent)
//! ```no_run
//! # async fn demo() -> Result<(), raftmq_client::Error> {
//! use raftmq_client::{ConsumeFrom, ConsumeResult, PushConsumer};
//! let consumer = PushConsumer::builder()
//!     .namesrv(["127.0.0.1:9876"])
//!     .group("g1")
//!     .subscribe("TopicTest", "TagA || TagB")
//!     .consume_from(ConsumeFrom::FirstOffset)
//!     .start(|msg| async move {
//!         println!("{}", String::from_utf8_lossy(&msg.body));
//!         ConsumeResult::Success // ReconsumeLater: redelivered via %RETRY%g1 with back-off
//!     })
//!     .await?;
//! consumer.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Orderly consumer
//! ```no_run
//! # async fn demo() -> Result<(), raftmq_client::Error> {
//! use raftmq_client::{OrderlyResult, PushConsumer};
//! let consumer = PushConsumer::builder()
//!     .namesrv(["127.0.0.1:9876"])
//!     .group("g-orders")
//!     .subscribe("Orders", "*")
//!     .start_orderly(|msg| async move {
//!         println!("queue {} offset {}", msg.queue_id, msg.queue_offset);
//!         OrderlyResult::Success // SuspendCurrentQueueAMoment retries the same message
//!     })
//!     .await?;
//! consumer.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Stream
//! ```no_run
//! # async fn demo() -> Result<(), raftmq_client::Error> {
//! use futures::StreamExt;
//! use raftmq_client::PushConsumer;
//! let mut stream = PushConsumer::builder().group("g2").subscribe("TopicTest", "*").stream().await?;
//! while let Some(delivery) = stream.next().await {
//!     println!("{}", String::from_utf8_lossy(&delivery.body));
//!     delivery.ack(); // dropping it un-acked redelivers it later
//! }
//! # Ok(()) }
//! ```
//!
//! # Lite pull consumer
//! ```no_run
//! # async fn demo() -> Result<(), raftmq_client::Error> {
//! use std::time::Duration;
//! use raftmq_client::LitePullConsumer;
//! let mut consumer = LitePullConsumer::builder().group("g3").auto_commit(None).build()?;
//! consumer.subscribe("TopicTest", "*")?;
//! let msgs = consumer.poll(Duration::from_secs(1)).await?;
//! consumer.commit().await?;
//! # Ok(()) }
//! ```
//!
//! # Delayed messages
//! ```no_run
//! # async fn demo(producer: raftmq_client::Producer) -> Result<(), raftmq_client::Error> {
//! use raftmq_client::Message;
//! producer.send(Message::new("TopicTest", "in 10 s").with_delay_level(3)).await?;
//! producer.send(Message::new("TopicTest", "at noon").with_deliver_at(1_780_000_000_000)).await?;
//! # Ok(()) }
//! ```
//!
//! Runnable versions of each are in `client/examples/`.
//!
//! # Layout
//! - [`producer`]: [`Producer`]: sync, async, one-way, batch and ordered sends.
//! - [`consumer`]: [`PushConsumer`] (listener or stream) and [`LitePullConsumer`].
//! - [`admin`]: [`Admin`]: topics, groups, offsets, cluster status, message lookup.
//! - [`core`]: connections, routes and leader hints shared by all clients.
//! - [`error`]: [`Error`] and its applied / not-applied outcome.
//! - [`unique_key`]: the client message id (`UNIQ_KEY`) every sent message gets.
//! - [`users`]: users and permissions, managed through [`Admin`].
//! - [`topic_groups`]: moving a topic onto and off broker groups while it is in use.
#![warn(missing_docs)]

pub mod admin;
pub mod consumer;
pub mod core;
pub mod error;
pub mod message_tools;
pub mod producer;
pub mod topic_groups;
pub mod trace;
pub mod transaction;
pub mod unique_key;
pub mod users;

pub use admin::Admin;
pub use consumer::{
    AllocateStrategy, ConsumeFrom, ConsumeResult, Delivery, LitePullConsumer, MessageModel,
    MessageStream, OrderlyResult, PushConsumer, Selector,
};
pub use core::{ClientConfig, Credentials};
pub use error::{Error, Result};
pub use producer::{MessageQueue, Producer, ProducerBuilder, SendHandle};
pub use raftmq_proto::tls::TlsTrust;
pub use raftmq_proto::{Message, MessageExt, SendResult, SendStatus};
