//! The disk write limit: a node whose data disk is fuller than `disk_write_limit_percent`
//! refuses new messages ("disk usage 96% on node 2 is above the 95% write limit") instead
//! of running into ENOSPC, which is fatal to a commit-log append. Reads, consumption and
//! offset commits keep working; writes resume by themselves once retention (which starts
//! at `disk_high_water_percent`) or a deleted topic frees space.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftmq_raft::AppendGate;
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
    /// Whether the last replicated entries were refused.
    refusing_replicated: AtomicBool,
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
            refusing_replicated: AtomicBool::new(false),
            retention_due: Notify::new(),
        }
    }

    /// The last measured `(used, total)` bytes of the data disk; `None` until measured.
    pub(crate) fn usage(&self) -> Option<(u64, u64)> {
        let total = self.total_bytes.load(Ordering::Relaxed);
        (total > 0).then(|| (self.used_bytes.load(Ordering::Relaxed), total))
    }

    /// Takes `bytes` of new messages, or refuses them with the reason when the disk would
    /// be above the write limit.
    ///
    /// # Errors
    /// `Busy`: the disk is, or with these bytes would be, above the limit.
    pub fn take(&self, node_id: u64, bytes: u64) -> Result<(), BrokerError> {
        let limit = Limit {
            percent: u64::from(self.limit_percent),
            reserve: RESERVE_BYTES,
        };
        self.admit(limit, bytes, &self.refusing, "new messages")
            .map_err(|(percent, free)| {
                BrokerError::Busy(format!(
                    "disk usage {percent}% ({} MiB free) on node {node_id} is above the {}% \
                     write limit (disk_write_limit_percent) or within the {} MiB kept free; \
                     writes resume when retention or `raftmq topic delete` frees space, or \
                     the disk grows",
                    free >> 20,
                    self.limit_percent,
                    RESERVE_BYTES >> 20
                ))
            })
    }

    /// Takes `bytes` of entries replicated from the leader, or refuses them: a follower
    /// stops taking appends (see [`AppendGate`]) only past halfway from the write limit to
    /// full, or with under half the reserve free. The leader's own limit is the stricter
    /// one, so when the replicas fill together producers hear the leader's "disk usage"
    /// error rather than a commit that never comes; this stops a follower that is much
    /// fuller than its leader (other data on its disk) before ENOSPC.
    ///
    /// # Errors
    /// The reason, for the leader's log.
    pub fn take_replicated(&self, node_id: u64, bytes: u64) -> Result<(), String> {
        let limit = Limit {
            percent: (u64::from(self.limit_percent) + 100) / 2,
            reserve: RESERVE_BYTES / 2,
        };
        self.admit(
            limit,
            bytes,
            &self.refusing_replicated,
            "replicated entries",
        )
        .map_err(|(percent, free)| {
            format!(
                "disk usage {percent}% ({} MiB free) on follower {node_id} leaves no room \
                     for replicated entries (above {}% or within {} MiB of full); it catches \
                     up once space is freed",
                free >> 20,
                limit.percent,
                limit.reserve >> 20
            )
        })
    }

    /// Counts `bytes` in if they fit under `limit`; else `(percent, free bytes)` they would
    /// leave. Logs once each time `refusing` changes.
    fn admit(
        &self,
        limit: Limit,
        bytes: u64,
        refusing: &AtomicBool,
        what: &str,
    ) -> Result<(), (u64, u64)> {
        let total = self.total_bytes.load(Ordering::Relaxed);
        let used = self.used_bytes.load(Ordering::Relaxed)
            + self.taken_since.load(Ordering::Relaxed)
            + bytes;
        let percent = percent(used, total);
        let free = total.saturating_sub(used);
        if total == 0 || (percent <= limit.percent && free >= limit.reserve) {
            self.taken_since.fetch_add(bytes, Ordering::Relaxed);
            if refusing.swap(false, Ordering::Relaxed) {
                tracing::info!(
                    used_bytes = used,
                    total_bytes = total,
                    "data disk below the write limit again; taking {what}"
                );
            }
            return Ok(());
        }
        if !refusing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                used_bytes = used,
                total_bytes = total,
                limit_percent = limit.percent,
                reserve_bytes = limit.reserve,
                "data disk above the write limit; refusing {what} until space is freed"
            );
        }
        Err((percent, free))
    }

    /// Above this many bytes in use retention deletes old segments: the high-water mark,
    /// or lower on a small disk, so that retention starts before the reserve is reached
    /// (with the 90% default, a 1 GiB disk would otherwise refuse writes at 87.5% and
    /// never start retention).
    pub(crate) fn high_water_bytes(&self, total_bytes: u64) -> u64 {
        let by_percent = total_bytes / 100 * u64::from(self.high_water_percent);
        by_percent.min(total_bytes.saturating_sub(2 * RESERVE_BYTES))
    }

    /// Records a measurement, which replaces the estimate.
    fn record(&self, used_bytes: u64, total_bytes: u64) {
        self.used_bytes.store(used_bytes, Ordering::Relaxed);
        self.total_bytes.store(total_bytes, Ordering::Relaxed);
        self.taken_since.store(0, Ordering::Relaxed);
        if used_bytes > self.high_water_bytes(total_bytes) {
            self.retention_due.notify_one();
        }
    }
}

/// A refusal threshold: above `percent` in use, or under `reserve` bytes free.
#[derive(Debug, Clone, Copy)]
struct Limit {
    percent: u64,
    reserve: u64,
}

/// [`DiskGuard::take_replicated`] as the Raft port's [`AppendGate`].
#[derive(Debug)]
pub(crate) struct ReplicaGate {
    pub(crate) guard: Arc<DiskGuard>,
    pub(crate) node_id: u64,
}

impl AppendGate for ReplicaGate {
    fn admit(&self, bytes: u64) -> Result<(), String> {
        self.guard.take_replicated(self.node_id, bytes)
    }
}

/// A segment is at most this fraction of the data disk, so retention frees a small disk
/// in steps: with 1 GiB segments a disk under 1 GiB never seals one, and retention, which
/// deletes only sealed segments, could free nothing.
const SEGMENTS_PER_DISK: u64 = 16;

/// `configured` segment size, or a sixteenth of the disk holding `dir` when that is less
/// (at least 1 MiB), with one line saying so.
pub(crate) fn segment_bytes_for(dir: &std::path::Path, configured: u64) -> u64 {
    let Ok(disk) = raftmq_store::disk_usage(dir) else {
        return configured;
    };
    let cap = (disk.total_bytes / SEGMENTS_PER_DISK).max(1 << 20);
    if configured <= cap {
        return configured;
    }
    tracing::info!(
        segment_bytes = cap,
        configured = configured,
        disk_bytes = disk.total_bytes,
        "segments capped at 1/16 of the data disk so that retention can free it in steps"
    );
    cap
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
    fn a_follower_stops_taking_appends_only_past_the_leaders_limit() {
        const G: u64 = 1 << 30;
        let g = DiskGuard::new(95, 90);
        // 96%: the leader would refuse new messages, a follower still takes entries.
        g.record(960 * G, 1000 * G);
        assert!(g.take(1, 0).is_err());
        assert!(g.take_replicated(2, G).is_ok());
        // Past 97% (halfway to full) it refuses, saying why, and takes nothing.
        let e = g.take_replicated(2, 20 * G).unwrap_err();
        assert!(
            e.contains("disk usage 99%") && e.contains("on follower 2 leaves no room"),
            "{e}"
        );
        assert!(g.refusing_replicated.load(Ordering::Relaxed));
        assert!(g.take_replicated(2, 5 * G).is_ok());
        // A small disk: under 64 MiB free refuses whatever the percentage.
        let total = 1 << 30;
        g.record(total - (64 << 20), total);
        assert!(g.take_replicated(2, 1).is_err());
        g.record(total - (100 << 20), total);
        assert!(g.take_replicated(2, 1 << 20).is_ok());
        assert!(!g.refusing_replicated.load(Ordering::Relaxed));
    }

    #[test]
    fn retention_starts_before_the_reserve_on_a_small_disk() {
        let g = DiskGuard::new(95, 90);
        // Large disk: the percentage.
        assert_eq!(g.high_water_bytes(1000 << 30), 900 << 30);
        // 1 GiB: twice the reserve free comes first (768 MiB, 75%), below the 87.5%
        // at which writes stop.
        assert_eq!(g.high_water_bytes(1 << 30), 768 << 20);
        // A disk smaller than twice the reserve: always above the mark.
        assert_eq!(g.high_water_bytes(200 << 20), 0);
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
