//! The segmented commit log: the Raft log and the message store in one.
//!
//! ```text
//!  append ──► active segment (pwrite) ──► dirty files ──► flusher thread: fdatasync
//!                                                          │ (one sync covers every
//!  on_durable(index, cb) ──► waiters ◄─────────────────────┘  append since the last)
//! ```
//! Appends are written under the state lock; the flusher syncs outside it, so appends keep
//! flowing while a sync runs and the next sync covers all of them (group commit).

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{FlushMode, LogConfig};
use crate::error::{Error, Result};
use crate::record::{self, Record, MAX_PAYLOAD_BYTES};
use crate::segment::{self, Eviction, Segment};

/// [`CommitLog::on_durable_inline`] syncs on the caller's thread only while recent syncs
/// took less than this (a slow disk must not hold up the caller).
const INLINE_SYNC_MAX: Duration = Duration::from_micros(1500);

/// Cached pages are dropped in steps of at least this many bytes (one `fadvise` call each).
const EVICT_STEP_BYTES: u64 = 4 << 20;

/// Called once the append it was registered for is durable (or failed to become so).
pub type DurableCallback = Box<dyn FnOnce(Result<()>) + Send>;

/// Facts about one segment, for retention and snapshots.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Path of the file.
    pub path: PathBuf,
    /// Index of the first record.
    pub base: u64,
    /// Index of the last record, if any.
    pub last: Option<u64>,
    /// Bytes on disk.
    pub bytes: u64,
    /// Last modification time.
    pub modified: SystemTime,
}

/// One entry to append.
#[derive(Debug, Clone, Copy)]
pub struct AppendEntry<'a> {
    /// Raft term.
    pub term: u64,
    /// Raft log index.
    pub index: u64,
    /// Opaque payload.
    pub payload: &'a [u8],
}

impl<'a> AppendEntry<'a> {
    /// Borrows `(term, index, payload)` triples as entries.
    pub fn all(items: &'a [(u64, u64, bytes::Bytes)]) -> Vec<Self> {
        items
            .iter()
            .map(|(term, index, payload)| AppendEntry {
                term: *term,
                index: *index,
                payload,
            })
            .collect()
    }
}

impl<'a> From<&'a Record> for AppendEntry<'a> {
    fn from(r: &'a Record) -> Self {
        AppendEntry {
            term: r.term,
            index: r.index,
            payload: &r.payload,
        }
    }
}

/// The commit log. Cheap to share: all methods take `&self`.
#[derive(Debug)]
pub struct CommitLog {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    config: LogConfig,
    state: RwLock<State>,
    sync: Mutex<SyncQueue>,
    wake: Condvar,
    /// [`CommitLog::on_durable_inline`] may sync on the caller's thread.
    inline_sync: AtomicBool,
    /// Moving average of sync durations, microseconds.
    sync_micros: AtomicU64,
    /// Every sync's duration, for `raftmq_store_fsync_seconds`.
    sync_seconds: raftmq_metrics::Histogram,
}

#[derive(Debug, Default)]
struct State {
    /// Ascending by base; the last one takes appends.
    segments: Vec<Segment>,
    /// Files written since their last sync.
    dirty: Vec<Arc<File>>,
    /// The directory gained or lost files since its last sync.
    dir_dirty: bool,
    /// Set by a failed sync: no more writes until restart.
    poisoned: Option<String>,
    /// Bumped by truncation, so a sync that raced with one does not claim too much.
    epoch: u64,
}

struct SyncQueue {
    /// Every index below this is durable.
    durable_next: u64,
    waiters: VecDeque<(u64, DurableCallback)>,
    requested: bool,
    /// A sync is running (on the flusher or inline); at most one at a time.
    syncing: bool,
    /// The active segment's zero fill asked for more zeros.
    fill_wanted: bool,
    shutdown: bool,
}

impl std::fmt::Debug for SyncQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncQueue")
            .field("durable_next", &self.durable_next)
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

impl State {
    fn next_index(&self) -> Option<u64> {
        self.segments.last().map(Segment::next_index)
    }

    fn last_index(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(Segment::last)
    }

    fn mark_dirty(&mut self, file: &Arc<File>) {
        if !self.dirty.iter().any(|f| Arc::ptr_eq(f, file)) {
            self.dirty.push(file.clone());
        }
    }
}

impl CommitLog {
    /// Opens (or creates) the log in `dir`, recovering from a crash: a torn tail on the
    /// last segment is cut, anything else invalid is [`Error::Corruption`].
    ///
    /// # Errors
    /// I/O errors, and corruption anywhere but a torn tail.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("listing", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("listing", &dir, e))?;
            if let Some(base) = entry
                .file_name()
                .to_str()
                .and_then(segment::parse_file_name)
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            if let Some(prev) = segments.last() {
                if prev.next_index() != base {
                    return Err(Error::Corruption {
                        path: dir.join(segment::file_name(base)),
                        offset: 0,
                        what: format!(
                            "segment starts at index {base} but the previous one ends before {}",
                            prev.next_index()
                        ),
                    });
                }
            }
            let (seg, _repair) = Segment::open(&dir.join(segment::file_name(base)), base, is_last)?;
            if is_last {
                // Whatever survived in the page cache from before a crash is made durable
                // before anything is reported as such.
                seg.file()
                    .sync_data()
                    .map_err(|e| Error::io("syncing", seg.path(), e))?;
            }
            segments.push(seg);
        }
        let durable_next = segments.last().map_or(0, Segment::next_index);
        tracing::info!(
            dir = %dir.display(),
            segments = segments.len(),
            first_index = segments.first().map(Segment::base),
            last_index = segments.iter().rev().find_map(Segment::last),
            "commit log opened"
        );
        let shared = Arc::new(Shared {
            dir,
            config,
            state: RwLock::new(State {
                segments,
                ..State::default()
            }),
            sync: Mutex::new(SyncQueue {
                durable_next,
                waiters: VecDeque::new(),
                requested: false,
                syncing: false,
                fill_wanted: false,
                shutdown: false,
            }),
            wake: Condvar::new(),
            inline_sync: AtomicBool::new(false),
            sync_micros: AtomicU64::new(0),
            sync_seconds: raftmq_metrics::Histogram::latency(),
        });
        let flusher = {
            let worker = shared.clone();
            std::thread::Builder::new()
                .name("raftmq-log-flush".into())
                .spawn(move || worker.run_flusher())
                .map_err(|e| Error::io("spawning the flush thread for", &shared.dir, e))?
        };
        Ok(Self {
            shared,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Appends entries (written, not yet durable). Indexes must continue the log; an
    /// empty log accepts any first index.
    ///
    /// # Errors
    /// A gap in indexes or an oversized payload is [`Error::Invalid`]; a poisoned store
    /// refuses with [`Error::Poisoned`].
    pub fn append(&self, entries: &[AppendEntry<'_>]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut st = self.shared.write_state();
        if let Some(why) = &st.poisoned {
            return Err(Error::Poisoned(why.clone()));
        }
        if st.last_index().is_none() {
            // An empty log starts wherever Raft says; drop empty segments named otherwise.
            while st
                .segments
                .last()
                .is_some_and(|s| s.base() != entries[0].index)
            {
                if let Some(seg) = st.segments.pop() {
                    std::fs::remove_file(seg.path())
                        .map_err(|e| Error::io("removing", seg.path(), e))?;
                    st.dir_dirty = true;
                }
            }
        }
        let start = st.next_index().unwrap_or(entries[0].index);
        for (e, expected) in entries.iter().zip(start..) {
            if e.index != expected {
                return Err(Error::Invalid(format!(
                    "append of index {} but the log continues at {expected}",
                    e.index
                )));
            }
            if e.payload.len() > MAX_PAYLOAD_BYTES {
                return Err(Error::Invalid(format!(
                    "entry {} has {} bytes, above the {MAX_PAYLOAD_BYTES}-byte limit",
                    e.index,
                    e.payload.len()
                )));
            }
        }
        let mut buf = Vec::new();
        let mut headers = Vec::new();
        let mut fill_wanted = false;
        for e in entries {
            let need = (record::HEADER_BYTES + e.payload.len()) as u64;
            let roll = match st.segments.last() {
                None => true,
                Some(active) => {
                    active.last().is_some()
                        && active.size() + buf.len() as u64 + need
                            > self.shared.config.segment_bytes
                }
            };
            if roll {
                fill_wanted |= self.flush_pending(&mut st, &mut buf, &mut headers)?;
                if let Some(full) = st.segments.last_mut() {
                    full.seal()?;
                }
                let seg = Segment::create(&self.shared.dir, e.index)?;
                st.mark_dirty(seg.file());
                st.dir_dirty = true;
                st.segments.push(seg);
            }
            let start = buf.len();
            record::encode_into(&mut buf, e.term, e.index, e.payload);
            let h = record::decode_header(&buf[start..])
                .map_err(|e| Error::Internal(format!("encoded record does not parse: {e}")))?;
            headers.push(h);
        }
        fill_wanted |= self.flush_pending(&mut st, &mut buf, &mut headers)?;
        drop(st);
        if fill_wanted {
            self.shared.lock_sync().fill_wanted = true;
            self.shared.wake.notify_all();
        }
        Ok(())
    }

    /// Writes the pending records to the active segment; true if its zero fill wants more.
    fn flush_pending(
        &self,
        st: &mut State,
        buf: &mut Vec<u8>,
        headers: &mut Vec<record::Header>,
    ) -> Result<bool> {
        if headers.is_empty() {
            return Ok(false);
        }
        let active = st
            .segments
            .last_mut()
            .ok_or_else(|| Error::Internal("no active segment".into()))?;
        let file = active.file().clone();
        let fill_wanted = active.write(buf, headers, self.shared.config.segment_bytes)?;
        st.mark_dirty(&file);
        buf.clear();
        headers.clear();
        Ok(fill_wanted)
    }

    /// Calls `cb` once every entry up to and including `index` is durable. In
    /// [`FlushMode::Async`] that is at once: the entry is in the page cache.
    pub fn on_durable(&self, index: u64, cb: DurableCallback) {
        if self.shared.config.flush == FlushMode::Async {
            cb(Ok(()));
            return;
        }
        let mut q = self.shared.lock_sync();
        if index < q.durable_next {
            drop(q);
            cb(Ok(()));
            return;
        }
        q.waiters.push_back((index, cb));
        q.requested = true;
        drop(q);
        self.shared.wake.notify_all();
    }

    /// Like [`CommitLog::on_durable`], but when inline syncing is on, no sync is running
    /// and recent syncs were fast, syncs on this thread and calls `cb` before returning:
    /// two thread hand-offs fewer (to the flusher and back) on a node whose appends are
    /// latency-critical one at a time, such as a Raft follower's.
    pub fn on_durable_inline(&self, index: u64, cb: DurableCallback) {
        let shared = &self.shared;
        if shared.config.flush == FlushMode::Async
            || !shared.inline_sync.load(Ordering::Relaxed)
            || shared.sync_micros.load(Ordering::Relaxed) > INLINE_SYNC_MAX.as_micros() as u64
        {
            return self.on_durable(index, cb);
        }
        let mut q = shared.lock_sync();
        if q.syncing || q.shutdown {
            drop(q);
            return self.on_durable(index, cb);
        }
        q.waiters.push_back((index, cb));
        q.syncing = true;
        drop(q);
        shared.sync_claimed();
    }

    /// Turns syncing on the caller's thread ([`CommitLog::on_durable_inline`]) on or off.
    pub fn set_inline_sync(&self, on: bool) {
        self.shared.inline_sync.store(on, Ordering::Relaxed);
    }

    /// The durations of the log's syncs (fsync of segments and, when they changed, the
    /// directory), flusher and inline alike.
    pub fn sync_seconds(&self) -> &raftmq_metrics::Histogram {
        &self.shared.sync_seconds
    }

    /// Blocks until everything appended so far is synced to disk (in either flush mode).
    ///
    /// # Errors
    /// The sync failed; the store is then poisoned.
    pub fn sync(&self) -> Result<()> {
        let Some(last) = self.last_index() else {
            return Ok(());
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let cb: DurableCallback = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let mut q = self.shared.lock_sync();
        if self.shared.config.flush == FlushMode::Sync && last < q.durable_next {
            return Ok(());
        }
        // In async mode the waiter still goes through the flusher, which really syncs.
        q.waiters.push_back((last, cb));
        q.requested = true;
        drop(q);
        self.shared.wake.notify_all();
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Index of the first entry, if any.
    pub fn first_index(&self) -> Option<u64> {
        let st = self.shared.read_state();
        st.segments
            .iter()
            .find(|s| s.last().is_some())
            .map(Segment::base)
    }

    /// Index of the last entry, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.shared.read_state().last_index()
    }

    /// Term and index of the last entry, if any.
    pub fn last_entry_id(&self) -> Option<(u64, u64)> {
        let st = self.shared.read_state();
        st.segments
            .iter()
            .rev()
            .find_map(|s| s.last().map(|l| (s.last_term(), l)))
    }

    /// Every index below this is durable.
    pub fn durable_next(&self) -> u64 {
        self.shared.lock_sync().durable_next
    }

    /// Reads the entry at `index`, if the log holds it.
    ///
    /// # Errors
    /// I/O errors and corruption (a CRC mismatch names the file and offset).
    pub fn read(&self, index: u64) -> Result<Option<Record>> {
        Ok(self.read_range(index, index.saturating_add(1), 0)?.pop())
    }

    /// Reads entries `start..end` (as many as exist), stopping after about `max_bytes`
    /// (at least one entry is returned when `start` exists).
    ///
    /// # Errors
    /// I/O errors and corruption.
    pub fn read_range(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<Record>> {
        let st = self.shared.read_state();
        let mut out = Vec::new();
        let first_seg = st.segments.partition_point(|s| s.base() <= start);
        let mut next = start;
        let mut budget = max_bytes;
        for seg in &st.segments[first_seg.saturating_sub(1)..] {
            if next >= end {
                break;
            }
            let Some(last) = seg.last() else { continue };
            if next < seg.base() || next > last {
                break;
            }
            let before = out.len();
            let n = seg.read(next, end, budget, &mut out)?;
            next += (out.len() - before) as u64;
            if n >= budget && !out.is_empty() {
                break;
            }
            budget -= n;
        }
        Ok(out)
    }

    /// Removes every entry with index `>= index` (a Raft log conflict) and syncs.
    ///
    /// # Errors
    /// I/O errors; the store is poisoned if a sync fails.
    pub fn truncate_from(&self, index: u64) -> Result<()> {
        let mut st = self.shared.write_state();
        if let Some(why) = &st.poisoned {
            return Err(Error::Poisoned(why.clone()));
        }
        let mut removed_files = false;
        while let Some(seg) = st.segments.last() {
            if seg.base() >= index {
                let path = seg.path().to_owned();
                st.segments.pop();
                std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
                removed_files = true;
            } else {
                break;
            }
        }
        if let Some(seg) = st.segments.last_mut() {
            seg.truncate_from(index)?;
        }
        let files = std::mem::take(&mut st.dirty);
        if let Err(e) = sync_files(
            &files,
            (removed_files || st.dir_dirty).then_some(&self.shared.dir),
        ) {
            st.poisoned = Some(e.to_string());
            return Err(e);
        }
        st.dir_dirty = false;
        st.epoch += 1;
        let next = st.next_index().unwrap_or(0);
        let mut q = self.shared.lock_sync();
        q.durable_next = next;
        let waiters: Vec<_> = q.waiters.drain(..).collect();
        drop(q);
        drop(st);
        for (_, cb) in waiters {
            cb(Ok(()));
        }
        tracing::debug!(from_index = index, "commit log truncated");
        Ok(())
    }

    /// Deletes whole sealed segments whose entries are all below `index`. Returns the new
    /// first index (unchanged when no whole segment qualifies). The active segment is
    /// never deleted.
    ///
    /// # Errors
    /// I/O errors while deleting.
    pub fn purge_before(&self, index: u64) -> Result<Option<u64>> {
        let mut st = self.shared.write_state();
        let mut removed = 0;
        while st.segments.len() > 1 {
            let seg = &st.segments[0];
            if seg.last().is_some_and(|l| l < index) {
                let path = seg.path().to_owned();
                std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
                st.segments.remove(0);
                removed += 1;
            } else {
                break;
            }
        }
        if removed > 0 {
            sync_files(&[], Some(&self.shared.dir))?;
            tracing::info!(
                segments = removed,
                below_index = index,
                "purged commit-log segments"
            );
        }
        Ok(st
            .segments
            .iter()
            .find(|s| s.last().is_some())
            .map(Segment::base))
    }

    /// Describes every segment, oldest first.
    ///
    /// # Errors
    /// I/O errors reading file metadata.
    pub fn segments(&self) -> Result<Vec<SegmentInfo>> {
        let st = self.shared.read_state();
        st.segments
            .iter()
            .map(|s| {
                Ok(SegmentInfo {
                    path: s.path().to_owned(),
                    base: s.base(),
                    last: s.last(),
                    bytes: s.size(),
                    modified: s.modified()?,
                })
            })
            .collect()
    }

    /// Syncs everything and stops the flush thread.
    ///
    /// # Errors
    /// The final sync failed.
    pub fn close(&self) -> Result<()> {
        let res = self.sync();
        self.stop_flusher();
        res
    }

    fn stop_flusher(&self) {
        self.shared.lock_sync().shutdown = true;
        self.shared.wake.notify_all();
        let handle = self
            .flusher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Where the durable part of the log ends: the active segment's path, the byte offset
    /// past its last durable record and the offset past its last written record (the
    /// file may hold preallocated zeros beyond). For crash tests, which damage only what
    /// was never synced.
    #[doc(hidden)]
    pub fn durable_tail(&self) -> Option<(PathBuf, u64, u64)> {
        let durable_next = self.durable_next();
        let st = self.shared.read_state();
        let active = st.segments.last()?;
        let offset = if durable_next <= active.base() {
            segment::FILE_HEADER_BYTES
        } else if active.last().is_none_or(|l| l < durable_next) {
            active.size()
        } else {
            active.offset_of(durable_next).ok()?
        };
        Some((active.path().to_owned(), offset, active.size()))
    }
}

impl Drop for CommitLog {
    fn drop(&mut self) {
        self.stop_flusher();
    }
}

fn sync_files(files: &[Arc<File>], dir: Option<&Path>) -> Result<()> {
    for f in files {
        f.sync_data()
            .map_err(|e| Error::io("syncing a segment in", dir.unwrap_or(Path::new(".")), e))?;
    }
    if let Some(dir) = dir {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("syncing directory", dir, e))?;
    }
    Ok(())
}

impl Shared {
    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        crate::fail_stop::guard(self.state.read(), "segment table")
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        crate::fail_stop::guard(self.state.write(), "segment table")
    }

    fn lock_sync(&self) -> MutexGuard<'_, SyncQueue> {
        crate::fail_stop::guard(self.sync.lock(), "sync queue")
    }

    /// The flush thread: waits for requests (or the async interval), syncs every dirty
    /// file outside the state lock, then completes the waiters it covered. Between syncs
    /// it writes the zeros the active segment's fill asks for.
    fn run_flusher(&self) {
        loop {
            let fill = {
                let mut q = self.lock_sync();
                loop {
                    if q.requested && !q.syncing {
                        q.syncing = true;
                        break false;
                    }
                    if q.shutdown {
                        return;
                    }
                    if std::mem::take(&mut q.fill_wanted) {
                        break true;
                    }
                    q = match self.config.flush {
                        FlushMode::Sync => crate::fail_stop::guard(self.wake.wait(q), "sync queue"),
                        FlushMode::Async => {
                            let (mut q, timeout) = crate::fail_stop::guard(
                                self.wake.wait_timeout(q, self.config.flush_interval),
                                "sync queue",
                            );
                            if timeout.timed_out() && !q.syncing {
                                q.syncing = true;
                                break false;
                            }
                            q
                        }
                    };
                }
            };
            if fill {
                self.fill_ahead();
            } else {
                self.sync_claimed();
            }
        }
    }

    /// Writes zeros ahead of the active segment's tail ([`crate::zero_fill`]).
    fn fill_ahead(&self) {
        let fill = self
            .read_state()
            .segments
            .last()
            .and_then(|s| s.zero_fill().cloned());
        if let Some(fill) = fill {
            fill.fill(self.config.segment_bytes);
        }
    }

    /// Runs one sync for whoever set `syncing` (the flusher or an inline caller), then
    /// releases it and wakes the flusher if more was asked for meanwhile.
    fn sync_claimed(&self) {
        self.flush_once();
        let mut q = self.lock_sync();
        q.syncing = false;
        let more = q.requested;
        drop(q);
        if more {
            self.wake.notify_all();
        }
    }

    fn flush_once(&self) {
        let (files, dir_dirty, mark, epoch, evictions) = {
            let mut st = self.write_state();
            let dirty = std::mem::take(&mut st.dirty);
            let dir_dirty = std::mem::replace(&mut st.dir_dirty, false);
            let evictions = self.evictions(&mut st);
            (
                dirty,
                dir_dirty,
                st.next_index().unwrap_or(0),
                st.epoch,
                evictions,
            )
        };
        {
            let mut q = self.lock_sync();
            q.requested = false;
        }
        let started = Instant::now();
        let res = sync_files(&files, dir_dirty.then_some(self.dir.as_path()));
        let elapsed = started.elapsed();
        if !files.is_empty() || dir_dirty {
            self.sync_seconds.record(elapsed);
        }
        let took = elapsed.as_micros() as u64;
        let avg = self.sync_micros.load(Ordering::Relaxed);
        self.sync_micros
            .store(avg - avg / 8 + took / 8, Ordering::Relaxed);
        let st = self.read_state();
        let mut q = self.lock_sync();
        let done: Vec<(u64, DurableCallback)> = match &res {
            Ok(()) => {
                if st.epoch == epoch {
                    q.durable_next = q.durable_next.max(mark);
                }
                let durable_next = q.durable_next;
                let n = q
                    .waiters
                    .iter()
                    .take_while(|(i, _)| *i < durable_next)
                    .count();
                if n < q.waiters.len() {
                    q.requested = true;
                }
                q.waiters.drain(..n).collect()
            }
            Err(_) => q.waiters.drain(..).collect(),
        };
        drop(q);
        drop(st);
        if let Err(e) = res {
            let why = e.to_string();
            tracing::error!(error = %why, "fsync failed; the commit log refuses writes until restart");
            self.write_state().poisoned = Some(why.clone());
            for (_, cb) in done {
                cb(Err(Error::Poisoned(why.clone())));
            }
        } else {
            for (_, cb) in done {
                cb(Ok(()));
            }
            for ev in evictions {
                ev.drop_cached();
            }
        }
    }

    /// The ranges this flush may drop from the page cache once its sync succeeds: the
    /// active segment's beyond the kept window, and all of a segment sealed since the
    /// last flush (only the last two segments can have changed).
    fn evictions(&self, st: &mut State) -> Vec<Eviction> {
        let Some(keep) = self.config.page_cache_keep else {
            return Vec::new();
        };
        let n = st.segments.len();
        st.segments
            .iter_mut()
            .enumerate()
            .skip(n.saturating_sub(2))
            .filter_map(|(i, seg)| seg.take_evictable(keep, EVICT_STEP_BYTES, i + 1 < n))
            .collect()
    }
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
