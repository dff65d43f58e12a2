//! Zeros written ahead of the active segment's tail, so appends land in written blocks.
//!
//! Space reserved with `fallocate` is "unwritten" to ext4 and XFS: the first sync after an
//! append reaches a new block converts that part of the extent, and writes the inode (or
//! extent block) synchronously on top of the data; with 1 KiB appends that is one sync in
//! four. Blocks that already hold written zeros need no conversion, so the flusher writes
//! zeros a MiB at a time ahead of the tail and starts their write-back at once: one sync
//! per MiB then writes the inode, and the zeros' pages stay cached for the appends that
//! overwrite them. Three processes on one 2-core VM, one publisher, interleaved runs: p50
//! 0.63-0.72 -> 0.54-0.57 ms, p99 1.09-1.26 -> 0.83-0.92 ms (docs/benchmarks.md). (Direct I/O, which would keep the zeros out
//! of the page cache, holds the inode lock for the whole write and stalled appends for
//! milliseconds; appends into blocks not in the cache must also read them first.)
//!
//! Zeros are never written below the tail: an append that would reach a range being
//! filled waits for that fill (a copy into the page cache), and a fill starts only past
//! the tail appends have claimed. The fill is for a trickle of single messages, whose
//! latency it is about: steps are asked for at most every [`FILL_INTERVAL`], and not while
//! appends arrive faster than [`FILL_MAX_RATE`] bytes/s; a saturating stream's group
//! commits amortize the conversion anyway. What the fill does not reach is `fallocate`d
//! space, as before.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Zeros are written in steps of this size.
pub const FILL_STEP_BYTES: u64 = 1 << 20;
/// The flusher is asked for more zeros once fewer than this many bytes past the tail
/// hold them.
const FILL_LOW_BYTES: u64 = 2 << 20;
/// No fill step starts when this many bytes past the tail already hold zeros.
const FILL_HIGH_BYTES: u64 = 4 << 20;
/// Fill steps are asked for at most this often.
pub const FILL_INTERVAL: Duration = Duration::from_millis(100);
/// No fill while appends arrive faster than this (bytes per second).
pub const FILL_MAX_RATE: u64 = 8 << 20;
/// Fill steps start and end on page (and block) boundaries.
const ALIGN: u64 = 4096;

/// The zero fill of one segment. Shared between the appender and the flusher.
#[derive(Debug)]
pub struct ZeroFill {
    path: PathBuf,
    /// The segment's file.
    file: Arc<File>,
    state: Mutex<FillState>,
    /// Signalled when a fill step ends.
    step_done: Condvar,
}

#[derive(Debug)]
struct FillState {
    /// End of the bytes appends have claimed.
    tail: u64,
    /// Blocks up to here hold written zeros (or records).
    filled: u64,
    /// The range a fill step is writing now.
    busy: Option<(u64, u64)>,
    /// The flusher has been asked and has not started yet.
    requested: bool,
    /// The tail when the last request was considered, and when.
    rate_ref: (u64, Instant),
    /// No more fills (the segment was sealed, or a fill failed).
    closed: bool,
}

fn round_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

fn round_down(n: u64) -> u64 {
    n / ALIGN * ALIGN
}

/// A zeroed buffer of [`FILL_STEP_BYTES`], shared by every fill.
fn zeros() -> &'static [u8] {
    static BUF: [u8; FILL_STEP_BYTES as usize] = [0; FILL_STEP_BYTES as usize];
    &BUF
}

impl ZeroFill {
    /// Zero fill for the segment at `path`, open as `file`, whose records end at `tail`.
    pub fn new(path: &Path, file: Arc<File>, tail: u64) -> Self {
        Self {
            path: path.to_owned(),
            file,
            state: Mutex::new(FillState {
                tail,
                // The rest of the tail's block was written with it.
                filled: round_up(tail),
                busy: None,
                requested: false,
                rate_ref: (tail, Instant::now()),
                closed: false,
            }),
            step_done: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FillState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called before an append writes up to `end`: waits for a fill step that overlaps
    /// the append, then claims the bytes. Returns true when the flusher should be asked
    /// for a fill step: at most once until it starts, once per [`FILL_INTERVAL`], and
    /// only while appends arrive slower than [`FILL_MAX_RATE`].
    pub fn reserve(&self, end: u64) -> bool {
        let mut st = self.lock();
        while st.busy.is_some_and(|(from, _)| end > from) {
            st = self
                .step_done
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        st.tail = st.tail.max(end);
        if st.closed || st.requested || st.filled >= st.tail + FILL_LOW_BYTES {
            return false;
        }
        let (ref_tail, ref_at) = st.rate_ref;
        let elapsed = ref_at.elapsed();
        if elapsed < FILL_INTERVAL {
            return false;
        }
        st.rate_ref = (st.tail, Instant::now());
        let rate = st.tail.saturating_sub(ref_tail) as f64 / elapsed.as_secs_f64();
        st.requested = rate <= FILL_MAX_RATE as f64;
        st.requested
    }

    /// How many bytes past the tail hold zeros.
    #[cfg(test)]
    fn ahead(&self) -> u64 {
        let st = self.lock();
        st.filled.saturating_sub(st.tail)
    }

    /// The flusher's part, one step: writes up to [`FILL_STEP_BYTES`] of zeros past
    /// what is filled, unless [`FILL_HIGH_BYTES`] past the tail are, never past `limit`
    /// (the segment size). A failed write stops filling this segment.
    pub fn fill(&self, limit: u64) {
        let (from, to) = {
            let mut st = self.lock();
            st.requested = false;
            if st.closed || st.busy.is_some() {
                return;
            }
            // Fallen behind a fast stream: start a step ahead, where appends will not
            // arrive (and wait for it) while it is being written.
            let from = if st.filled >= round_up(st.tail) {
                st.filled
            } else {
                round_up(st.tail) + FILL_STEP_BYTES
            };
            let to = round_down((from + FILL_STEP_BYTES).min(limit));
            if from >= st.tail + FILL_HIGH_BYTES || to <= from {
                return;
            }
            st.busy = Some((from, to));
            (from, to)
        };
        let res = self
            .file
            .write_all_at(&zeros()[..(to - from) as usize], from);
        let mut st = self.lock();
        st.busy = None;
        match &res {
            Ok(()) => st.filled = st.filled.max(to),
            Err(e) => {
                st.closed = true;
                tracing::debug!(path = %self.path.display(), error = %e,
                    "zero fill failed; appends to this segment go to preallocated space");
            }
        }
        drop(st);
        self.step_done.notify_all();
        if res.is_ok() {
            self.start_write_back(from, to);
        }
    }

    /// Starts writing the zeros back now, so the next sync finds them written (or in
    /// flight) instead of writing a MiB itself.
    #[allow(unsafe_code)]
    fn start_write_back(&self, from: u64, to: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(from),
            libc::off64_t::try_from(to - from),
        ) else {
            return;
        };
        // SAFETY: the descriptor belongs to `self.file`, kept open by the `Arc` for the
        // whole call; `sync_file_range` takes plain integers and touches no memory of ours.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc != 0 {
            tracing::debug!(path = %self.path.display(),
                error = %io::Error::last_os_error(), "could not start writing zeros back");
        }
    }

    /// Cuts the file with `cut` once no fill step is running and none can start while it
    /// runs; `len` is where the records now end. `close` ends filling for good (a sealed
    /// segment).
    pub fn cut(
        &self,
        len: u64,
        close: bool,
        cut: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        let mut st = self.lock();
        while st.busy.is_some() {
            st = self
                .step_done
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        cut()?;
        st.tail = len;
        st.filled = round_up(len);
        st.rate_ref = (len, Instant::now());
        st.closed |= close;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path, tail: u64) -> ZeroFill {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        ZeroFill::new(path, Arc::new(file), tail)
    }

    fn file_with(dir: &Path, bytes: &[u8]) -> PathBuf {
        let path = dir.join("seg");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn fills_ahead_of_the_tail_and_never_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), &[7u8; 5000]);
        let zf = open(&path, 5000);
        ask(&zf, 5000);
        assert!(!zf.reserve(5000), "asked once until the flusher starts");
        zf.fill(1 << 30);
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            len,
            round_up(5000) + FILL_STEP_BYTES,
            "one step per request"
        );
        assert_eq!(zf.ahead(), len - 5000);
        let data = std::fs::read(&path).unwrap();
        assert!(data[..5000].iter().all(|&b| b == 7), "records untouched");
        assert!(data[5000..].iter().all(|&b| b == 0));
        // Still below the low mark, but the next step waits for the interval.
        let started = Instant::now();
        ask(&zf, 5000);
        assert!(started.elapsed() >= FILL_INTERVAL / 2);
        zf.fill(1 << 30);
        assert_eq!(zf.ahead(), round_up(5000) + 2 * FILL_STEP_BYTES - 5000);
        // Enough ahead: appends within the filled range ask for nothing until it runs low.
        std::thread::sleep(FILL_INTERVAL);
        assert!(!zf.reserve(5000));
        ask(&zf, 5000 + FILL_STEP_BYTES);
    }

    /// Appends up to `end` until the fill asks for a step (within the interval).
    fn ask(zf: &ZeroFill, end: u64) {
        let started = Instant::now();
        while !zf.reserve(end) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no fill asked for"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_fast_stream_is_left_to_preallocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), &[1u8; 100]);
        let zf = open(&path, 100);
        ask(&zf, 100);
        zf.fill(1 << 30);
        // 64 GiB in little more than an interval: far above the rate limit.
        std::thread::sleep(FILL_INTERVAL);
        assert!(!zf.reserve(64 << 30), "a fast stream gets no fill");
    }

    #[test]
    fn a_fill_behind_the_tail_starts_a_step_ahead_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), &[1u8; 100]);
        let zf = open(&path, 100);
        // Appends ran 3 MiB past what was filled before the flusher got to it.
        let tail = (3 << 20) + 100;
        zf.lock().tail = tail;
        ask(&zf, tail);
        zf.fill(1 << 30);
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len, round_up(tail) + 2 * FILL_STEP_BYTES);
    }

    #[test]
    fn fill_stops_at_the_segment_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), &[1u8; 100]);
        let zf = open(&path, 100);
        zf.fill(3 * ALIGN + 10);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * ALIGN);
    }

    #[test]
    fn cut_waits_for_a_running_step_and_closing_ends_filling() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), &[1u8; 100]);
        let zf = open(&path, 100);
        let zf = Arc::new(zf);
        let filler = {
            let zf = zf.clone();
            std::thread::spawn(move || zf.fill(1 << 30))
        };
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        zf.cut(100, true, || f.set_len(100)).unwrap();
        filler.join().unwrap();
        // Whatever the filler managed before the cut is gone, and nothing came after it.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 100);
        zf.fill(1 << 30);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 100);
        std::thread::sleep(FILL_INTERVAL);
        assert!(!zf.reserve(200), "a closed fill asks for nothing");
    }

    #[test]
    fn appends_after_a_truncation_below_the_rate_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), &[1u8; 100]);
        let zf = open(&path, 100);
        zf.reserve(1 << 20);
        std::thread::sleep(FILL_INTERVAL);
        zf.reserve(1 << 20); // the rate reference is now at 1 MiB
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        zf.cut(50, false, || f.set_len(50)).unwrap();
        // A Raft conflict cut the log back: appends go on from below the old tail.
        std::thread::sleep(FILL_INTERVAL);
        ask(&zf, 60);
        zf.lock().rate_ref.0 = 1 << 20; // even against a stale reference
        std::thread::sleep(FILL_INTERVAL);
        zf.fill(1 << 30);
        ask(&zf, 70);
    }

    #[test]
    fn an_append_waits_for_an_overlapping_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), &[1u8; 100]);
        let zf = open(&path, 100);
        // Pretend a step over [4096, 8192) is running.
        zf.lock().busy = Some((ALIGN, 2 * ALIGN));
        let zf = Arc::new(zf);
        let below = {
            let zf = zf.clone();
            std::thread::spawn(move || zf.reserve(ALIGN))
        };
        below.join().unwrap(); // below the step: no wait
        let (tx, rx) = std::sync::mpsc::channel();
        let over = {
            let zf = zf.clone();
            std::thread::spawn(move || {
                zf.reserve(ALIGN + 1);
                tx.send(()).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "an append into the running step must wait"
        );
        zf.lock().busy = None;
        zf.step_done.notify_all();
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        over.join().unwrap();
    }
}
