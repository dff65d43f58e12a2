//! The RocketMQ 4.x "remoting" protocol, as existing Java, C++, Go, Python and Node clients
//! speak it: the codec and a connection loop, with no knowledge of raftmq's broker.
//!
//! ```text
//!  u32 total_len | u32 (serialize_type << 24 | header_len) | header | body
//!                                         │
//!               JSON (0): {"code":..,"extFields":{..},"opaque":..}   every client
//!               ROCKETMQ (1): fixed fields + length-prefixed strings   Java, rocketmq-rust
//! ```
//!
//! Decoding never panics and never allocates more than a frame limit that is checked
//! first. Requests are read leniently (clients omit fields, send numbers where Java sends
//! strings, append newlines); responses are written as the Java broker writes them, in the
//! request's serialize type, with every ext value a string (the C++ client ignores others).
//!
//! # Layout
//! - [`command`]: [`RemotingCommand`], flags and response construction.
//! - [`frame`]: [`FrameCodec`], the length-prefixed frames (a tokio-util codec).
//! - [`connection`]: serving one connection, requests concurrently, with server pushes.
//! - [`header`]: the JSON and ROCKETMQ binary header encodings.
//! - [`codes`]: request and response codes.
//! - [`ext`]: typed reads of a request's ext fields ([`Ext`]).
//! - [`requests`]: the typed request headers the broker and NameServer serve.
//! - [`record`]: stored-message records (pull bodies), batch bodies, property strings.
//! - [`msg_id`]: offset message ids (store host + commit-log offset).
//! - [`body`]: JSON bodies: routes, cluster info, heartbeats, locks, consumer lists.
//! - [`detect`]: telling a remoting connection from raftmq's native one by its first bytes.
//! - [`error`]: [`CodecError`], why bytes do not decode.

pub mod body;
pub mod codes;
pub mod command;
pub mod connection;
pub mod detect;
pub mod error;
pub mod ext;
pub mod frame;
pub mod header;
pub mod msg_id;
pub mod record;
pub mod requests;

pub use command::{RemotingCommand, SerializeType};
pub use error::CodecError;
pub use ext::Ext;
pub use frame::FrameCodec;

/// The version the server puts in every response: `V4_9_7`'s ordinal. The Java client
/// stores the heartbeat response's version as the broker's and refuses SQL92
/// subscriptions to brokers older than 4.1 (ordinal 232).
pub const SERVER_VERSION: i32 = 407;
