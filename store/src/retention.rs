//! Retention: deleting whole old segments and advancing queue minimum offsets.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rocksdb::WriteBatch;

use crate::error::{Error, Result};
use crate::index::{cq_key, cq_queue_prefix, CF_CQ, CF_KEYS};
use crate::store::Store;

/// When segments are deleted.
#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    /// Sealed segments last written longer ago than this are deleted. Default: 72 h.
    pub max_age: Duration,
    /// While the disk is fuller than this fraction, the oldest sealed segments are
    /// deleted. Default: 0.90.
    pub disk_high_water: f64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(72 * 3600),
            disk_high_water: 0.90,
        }
    }
}

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// First log index still held.
    pub first_index: Option<u64>,
}

/// How full the file system holding the data is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskUsage {
    /// Bytes in use (as seen by an unprivileged user).
    pub used_bytes: u64,
    /// Size of the file system.
    pub total_bytes: u64,
}

impl DiskUsage {
    /// Used fraction, 0.0 to 1.0.
    pub fn ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.used_bytes as f64 / self.total_bytes as f64
        }
    }
}

/// Measures the file system holding `path`.
///
/// # Errors
/// The `statvfs` call failed.
#[allow(unsafe_code)]
pub fn disk_usage(path: &Path) -> Result<DiskUsage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("path {} contains NUL", path.display())))?;
    // SAFETY: `statvfs` is a plain C struct for which all-zero bytes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid, exclusively borrowed
    // struct; both outlive the call, and the kernel writes only within `st`.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(Error::io("statvfs", path, std::io::Error::last_os_error()));
    }
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    let avail = st.f_bavail as u64 * frsize;
    Ok(DiskUsage {
        used_bytes: total.saturating_sub(avail),
        total_bytes: total,
    })
}

impl Store {
    /// The highest log index retention may delete up to, beyond the caller's
    /// `purge_limit`: nothing the derived indexes have not checkpointed, nothing from a
    /// pending delayed message on.
    pub(crate) fn deletable_limit(&self, purge_limit: u64) -> Result<u64> {
        Ok(purge_limit
            .min(self.checkpointed_index().unwrap_or(0))
            .min(self.before_oldest_timer()?))
    }

    /// The last log index before the oldest pending delayed or half message (`u64::MAX`
    /// when none is pending): its entry holds the message until it fires or its
    /// transaction ends.
    fn before_oldest_timer(&self) -> Result<u64> {
        let timer = self.idx.all_timers()?.iter().map(|t| t.log_index).min();
        let oldest = match (timer, self.oldest_pending_half()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(oldest.map_or(u64::MAX, |i| i.saturating_sub(1)))
    }

    /// Every existing queue with its next offset (taken under the lock, read without it).
    fn queue_ends(&self) -> Vec<(String, u32, u64)> {
        let sm = self.lock();
        sm.topics
            .queue_next
            .iter()
            .map(|((t, q), n)| (t.clone(), *q, *n))
            .collect()
    }

    /// The log index of the oldest message an existing queue still serves (`u64::MAX`
    /// when none holds one): every entry before it is a message of a deleted topic, one
    /// retention already dropped from its queue, or a command already applied.
    fn oldest_live_message(&self) -> Result<u64> {
        let queues = self.queue_ends();
        let mut oldest = u64::MAX;
        for (topic, queue, next) in queues {
            let Some(min) = self.idx.cq_first_offset(&topic, queue)? else {
                continue;
            };
            if min >= next {
                continue;
            }
            if let Some(u) = self.idx.cq_get(&topic, queue, min)? {
                oldest = oldest.min(u.log_index);
            }
        }
        Ok(oldest)
    }

    /// The last log index of the sealed segments at the head of the log that hold no
    /// message an existing queue serves and no pending delayed message: what deleted
    /// topics leave behind, which retention deletes as soon as Raft no longer needs it
    /// (the node compacts the Raft log when this is past its purge point). `None` when the
    /// first segment is still live.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn dead_prefix_end(&self) -> Result<Option<u64>> {
        // Not bound by the index checkpoint: enforce_retention takes one first.
        let limit = self.before_oldest_timer()?;
        let live = self.oldest_live_message()?;
        let segments = self.log.segments()?;
        let sealed = segments.len().saturating_sub(1);
        Ok(segments[..sealed]
            .iter()
            .map_while(|seg| seg.last.filter(|&l| l < live && l <= limit))
            .last())
    }

    /// Deletes sealed segments that are older than the policy allows, the oldest ones
    /// while `disk` is above the high-water mark, and those holding no message of an
    /// existing queue (a deleted topic's: see [`Store::dead_prefix_end`]); never one
    /// holding an entry above `purge_limit` (the caller's safe point, e.g. what Raft no
    /// longer needs), above the derived-index checkpoint or from a pending delayed message
    /// on. Queue minimum offsets advance past deleted messages.
    ///
    /// # Errors
    /// I/O and RocksDB errors.
    pub fn enforce_retention(
        &self,
        now: SystemTime,
        policy: &RetentionPolicy,
        disk: DiskUsage,
        purge_limit: u64,
    ) -> Result<RetentionReport> {
        self.checkpoint()?;
        let limit = self.deletable_limit(purge_limit)?;
        let live = self.oldest_live_message()?;
        let segments = self.log.segments()?;
        let mut cut = None;
        let mut freed = 0u64;
        let mut deleted = 0usize;
        let mut dead = 0usize;
        let mut used = disk.used_bytes;
        let high_water = (policy.disk_high_water * disk.total_bytes as f64) as u64;
        let total = segments.len();
        for (i, seg) in segments.iter().enumerate() {
            if i + 1 == total {
                break; // the active segment is never deleted
            }
            let Some(last) = seg.last else { break };
            if last > limit {
                break;
            }
            let age = now.duration_since(seg.modified).unwrap_or_default();
            let holds_live = last >= live;
            if age <= policy.max_age && used <= high_water && holds_live {
                break;
            }
            dead += usize::from(!holds_live);
            cut = Some(last + 1);
            freed += seg.bytes;
            deleted += 1;
            used = used.saturating_sub(seg.bytes);
        }
        let Some(cut) = cut else {
            return Ok(RetentionReport {
                first_index: self.log.first_index(),
                ..RetentionReport::default()
            });
        };
        let first = self.log.purge_before(cut)?;
        self.drop_index_below(first.unwrap_or(cut))?;
        tracing::info!(
            segments = deleted,
            without_live_messages = dead,
            bytes = freed,
            first_index = first,
            "retention deleted old segments"
        );
        Ok(RetentionReport {
            segments_deleted: deleted,
            bytes_freed: freed,
            first_index: first,
        })
    }

    /// Removes index entries pointing below `first` (the new first log index).
    fn drop_index_below(&self, first: u64) -> Result<()> {
        let queues = self.queue_ends();
        let mut derived = WriteBatch::default();
        let cq = self.idx.cf(CF_CQ)?;
        for (topic, queue, next) in queues {
            let Some(min) = self.idx.cq_first_offset(&topic, queue)? else {
                continue;
            };
            // The first offset whose entry survives.
            let (mut lo, mut hi) = (min, next);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match self.idx.cq_get(&topic, queue, mid)? {
                    Some(u) if u.log_index < first => lo = mid + 1,
                    _ => hi = mid,
                }
            }
            if lo > min {
                derived.delete_range_cf(
                    cq,
                    cq_queue_prefix(&topic, queue),
                    cq_key(&topic, queue, lo),
                );
            }
        }
        let keys = self.idx.cf(CF_KEYS)?;
        for (k, _) in self.idx.scan_prefix(CF_KEYS, b"")? {
            if k.len() < 12 || k.starts_with(crate::index::CHECKPOINT_KEY) {
                continue;
            }
            let at = k.len() - 12;
            let log_index = u64::from_be_bytes(k[at..at + 8].try_into().unwrap_or_default());
            if log_index < first {
                derived.delete_cf(keys, &k);
            }
        }
        self.idx.write_derived(derived)
    }
}
