//! Consumers: the push consumer (listener or stream) and the lite pull consumer.
//!
//! # Layout
//! - [`push`]: [`PushConsumer`], concurrent or orderly listeners.
//! - [`stream`]: the push consumer as a `Stream` of [`Delivery`].
//! - [`lite_pull`]: [`LitePullConsumer`], `poll` / `commit` / `seek`.
//! - [`allocate`]: queue allocation strategies.
//! - [`filter`]: tag expressions.

pub mod allocate;
pub mod filter;
pub mod lite_pull;
mod member;
mod offsets;
mod process_queue;
pub mod push;
pub mod stream;

pub use allocate::AllocateStrategy;
pub use filter::{Selector, TagFilter};
pub use lite_pull::{LitePullConsumer, LitePullConsumerBuilder};
pub use push::{
    ConsumeFrom, ConsumeResult, MessageModel, OrderlyResult, PushConsumer, PushConsumerBuilder,
};
pub use stream::{Delivery, MessageStream};
