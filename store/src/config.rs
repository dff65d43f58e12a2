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
    /// Synced bytes behind the tail of the log kept in the page cache; older pages are
    /// dropped once synced (`POSIX_FADV_DONTNEED`), so a long write stream recycles a
    /// small set of pages instead of growing the cache into fresh memory, which on a VM
    /// costs a fault to the hypervisor per page: on the 2-core test VM the saturation
    /// benchmark spent 23% of its CPU there. Consumers and followers within this many
    /// bytes of the tail still read from memory. `None` leaves caching to the OS.
    /// Default: 64 MiB.
    pub page_cache_keep: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            flush: FlushMode::Sync,
            flush_interval: Duration::from_millis(500),
            page_cache_keep: Some(64 << 20),
        }
    }
}
