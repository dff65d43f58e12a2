//! raftmq's storage: the segmented commit log and the RocksDB indexes.
//!
//! The commit log *is* the Raft log: each record is one Raft entry, and an entry of
//! messages is read back by consumers straight from the segment files. RocksDB holds what
//! is derived from the log (`cq`: queue offset -> log position, `keys`: message keys) and
//! what the state machine owns (`offsets`, `meta`). The API is synchronous; callers run it
//! on blocking threads.
//!
//! ```text
//!   Raft entry ──► CommitLog (segments, group-commit fsync) ──► Store::apply
//!                                                                 │ assigns queue offsets
//!                                                                 ▼
//!                                                 RocksDB: cq, keys (no WAL) + offsets, meta
//! ```
//!
//! # Layout
//! - [`record`]: the record frame (`len | crc32c | term | index | payload`).
//! - [`segment`]: one segment file, its sparse index and crash recovery.
//! - [`zero_fill`]: zeros written ahead of the active segment's tail.
//! - [`log`]: [`CommitLog`], segments plus group commit.
//! - [`entry`]: the payload of a record: blank, membership, messages or a command.
//! - [`batch`]: the message batch layout and its zero-copy reader.
//! - [`index`]: RocksDB column families and typed accessors.
//! - [`store`]: [`Store`]: applying entries, and reading queues and messages back.
//! - `sm`: the state machine's sections (topics, groups, offsets, locks, timers, auth,
//!   transactions), each with its commands, keys, load and image part.
//! - [`meta`]: the closed schema of the `meta` column family's keys.
//! - [`image`]: the state image carried by Raft snapshots.
//! - [`rebuild`]: replaying the log into the derived indexes after a crash.
//! - [`retention`]: deleting old segments.
//! - [`codec`]: explicit little-endian layouts.
//! - `fail_stop`: the process stops on a poisoned lock of durability-critical state.

pub mod batch;
pub mod codec;
pub mod config;
pub mod entry;
pub mod error;
mod fail_stop;
pub mod image;
pub mod index;
pub mod log;
pub mod meta;
mod rebuild;
pub mod record;
pub mod retention;
pub mod segment;
mod sm;
pub mod store;
pub mod zero_fill;

#[cfg(test)]
mod test_harness;

pub use batch::{BatchReader, BatchWriter, MessageRef, MessageView};
pub use config::{FlushMode, LogConfig};
pub use entry::{Command, EntryPayload};
pub use error::{Error, Result};
pub use index::TimerKey;
pub use log::{AppendEntry, CommitLog, DurableCallback, SegmentInfo};
pub use record::Record;
pub use retention::{disk_usage, DiskUsage, RetentionPolicy, RetentionReport};
pub use sm::transactions::{HalfPosition, PendingTransaction};
pub use store::{
    ApplyEntry, ApplyOutcome, MessageOutcome, QueueFilter, QueueRead, Store, StoreConfig,
    StoredMessage,
};
