//! Store configuration.

use std::time::Duration;

/// When appended records become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushMode {
    /// `fdatasync` before an append is reported durable; concurrent appends share one sync
    /// (group commit). The default, and the only mode that survives power loss.
    #[default]
    Sync,
    /// Appends are reported durable once written to the page cache; a background thread
    /// syncs every `flush_interval`. Survives process crashes, not power loss
    /// (RocketMQ's ASYNC_FLUSH).
    Async,
}

/// Settings of the commit log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A segment is closed and a new one started once it would exceed this many bytes.
    /// Default: 1 GiB.
    pub segment_bytes: u64,
    /// Durability mode. Default: [`FlushMode::Sync`].
    pub flush: FlushMode,
    /// How often [`FlushMode::Async`] syncs. Default: 500 ms.
    pub flush_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            flush: FlushMode::Sync,
            flush_interval: Duration::from_millis(500),
        }
    }
}
