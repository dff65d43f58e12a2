//! The disk write limit: a node whose data disk is fuller than `disk_write_limit_percent`
//! refuses new messages ("disk usage 96% on node 2 is above the 95% write limit") instead
//! of running into ENOSPC, which is fatal to a commit-log append. Reads, consumption and
//! offset commits keep working; writes resume by themselves once retention (which starts
//! at `disk_high_water_percent`) or a deleted topic frees space.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::core::{BrokerError, Shared};

/// How often the data disk is measured (one `statvfs`).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Kept free whatever the percentage says: files grow by more than messages between two
/// measurements (RocksDB preallocates ~72 MB for each new WAL file at a moment of its
/// choosing, a new segment is preallocated), which on a small disk is more than the room
/// the percentage leaves. Seen on a 256 MiB disk with a 90% limit: a WAL preallocation
/// took it from 63% to 100% and the next append was ENOSPC.
pub const RESERVE_BYTES: u64 = 128 << 20;

/// The data disk's usage against the write limit: the last measurement plus the bytes
/// of messages taken since (a fast producer can write far more than the headroom within
/// one measurement interval on a small disk).
#[derive(Debug)]
pub struct DiskGuard {
    limit_percent: u8,
    high_water_percent: u8,
    /// Last measured bytes in use and in all; total 0 until measured.
    used_bytes: AtomicU64,
    total_bytes: AtomicU64,
    /// Message bytes taken since the last measurement.
    taken_since: AtomicU64,
    /// Whether the last message was refused (to log each change once).
    refusing: AtomicBool,
    /// Poked when usage passes the high-water mark, so retention runs at once.
    pub(crate) retention_due: Notify,
}

impl DiskGuard {
    /// Refuses writes above `limit_percent`; wakes retention above `high_water_percent`.
    pub fn new(limit_percent: u8, high_water_percent: u8) -> Self {
        Self {
            limit_percent,
            high_water_percent,
            used_bytes: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            taken_since: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
            retention_due: Notify::new(),
        }
    }

    /// Takes `bytes` of new messages, or refuses them with the reason when the disk would
    /// be above the write limit.
    ///
    /// # Errors
    /// `Busy`: the disk is, or with these bytes would be, above the limit.
    pub fn take(&self, node_id: u64, bytes: u64) -> Result<(), BrokerError> {
        let total = self.total_bytes.load(Ordering::Relaxed);
        let used = self.used_bytes.load(Ordering::Relaxed)
            + self.taken_since.load(Ordering::Relaxed)
            + bytes;
        let percent = percent(used, total);
        let free = total.saturating_sub(used);
        if total == 0 || (percent <= u64::from(self.limit_percent) && free >= RESERVE_BYTES) {
            self.taken_since.fetch_add(bytes, Ordering::Relaxed);
            if self.refusing.swap(false, Ordering::Relaxed) {
                tracing::info!(
                    used_bytes = used,
                    total_bytes = total,
                    "data disk below the write limit again; taking messages"
                );
            }
            return Ok(());
        }
        if !self.refusing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                used_bytes = used,
                total_bytes = total,
                limit_percent = self.limit_percent,
                "data disk above the write limit; refusing new messages until space is freed"
            );
        }
        Err(BrokerError::Busy(format!(
            "disk usage {percent}% ({} MiB free) on node {node_id} is above the {}% write limit \
             (disk_write_limit_percent) or within the {} MiB kept free; writes resume when \
             retention or `raftmq topic delete` frees space, or the disk grows",
            free >> 20,
            self.limit_percent,
            RESERVE_BYTES >> 20
        )))
    }

    /// Records a measurement, which replaces the estimate.
    fn record(&self, used_bytes: u64, total_bytes: u64) {
        self.used_bytes.store(used_bytes, Ordering::Relaxed);
        self.total_bytes.store(total_bytes, Ordering::Relaxed);
        self.taken_since.store(0, Ordering::Relaxed);
        if percent(used_bytes, total_bytes) > u64::from(self.high_water_percent) {
            self.retention_due.notify_one();
        }
    }
}

/// What storing `messages` adds to the disk, about: bodies and properties, plus the
/// record header, id and index entries of each (a few hundred bytes).
pub(crate) fn message_bytes(messages: &[raftmq_proto::Message]) -> u64 {
    const PER_MESSAGE: u64 = 256;
    messages
        .iter()
        .map(|m| {
            let props: usize = m.properties.iter().map(|(k, v)| k.len() + v.len()).sum();
            (m.body.len() + props) as u64 + PER_MESSAGE
        })
        .sum()
}

/// `used` of `total` in percent, rounded up; 0 for an unmeasured disk.
fn percent(used: u64, total: u64) -> u64 {
    if total == 0 {
        0
    } else {
        used.saturating_mul(100).div_ceil(total)
    }
}

/// Measures the data disk every [`CHECK_EVERY`] until `stop` ([`DiskGuard::take`] logs
/// when writes stop and start again).
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let guard = &shared.disk;
    loop {
        let store = shared.store.clone();
        let measured =
            tokio::task::spawn_blocking(move || raftmq_store::disk_usage(store.dir())).await;
        match measured {
            Ok(Ok(d)) => guard.record(d.used_bytes, d.total_bytes),
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot measure the data disk"),
            Err(e) => tracing::debug!(error = %e, "disk measurement task failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stop_above_the_limit_and_resume_below_it() {
        const G: u64 = 1 << 30;
        let g = DiskGuard::new(95, 90);
        assert!(g.take(1, G).is_ok(), "not measured yet");
        g.record(500 * G, 1000 * G);
        assert!(g.take(1, 10).is_ok());
        g.record(951 * G, 1000 * G);
        let e = g.take(2, 0).unwrap_err().to_string();
        assert!(
            e.contains("disk usage 96% (50176 MiB free) on node 2 is above the 95% write limit"),
            "{e}"
        );
        assert!(g.refusing.load(Ordering::Relaxed));
        g.record(950 * G, 1000 * G);
        assert!(g.take(2, 0).is_ok());
        assert!(!g.refusing.load(Ordering::Relaxed));
    }

    #[test]
    fn bytes_taken_between_measurements_count() {
        const G: u64 = 1 << 30;
        let g = DiskGuard::new(95, 90);
        g.record(800 * G, 1000 * G);
        // 100 + 40 more: 94%; the next 20 would make it 96%.
        assert!(g.take(1, 100 * G).is_ok());
        assert!(g.take(1, 40 * G).is_ok());
        assert!(g.take(1, 20 * G).is_err());
        // A refused send takes nothing: a smaller one still fits.
        assert!(g.take(1, 10 * G).is_ok());
        // The measurement replaces the estimate.
        g.record(700 * G, 1000 * G);
        assert!(g.take(1, 200 * G).is_ok());
    }

    #[test]
    fn a_small_disk_keeps_the_reserve_free() {
        let g = DiskGuard::new(95, 90);
        let total = 1 << 30;
        g.record(total - RESERVE_BYTES - (1 << 20), total);
        assert!(g.take(1, 1 << 20).is_ok());
        let e = g.take(1, 1).unwrap_err().to_string();
        assert!(e.contains("within the 128 MiB kept free"), "{e}");
    }
}
