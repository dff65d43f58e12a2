//! Model-based tests of the commit log: random operations, crashes and torn tails checked
//! against an in-memory model.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

fn payload(term: u64, index: u64, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (index as usize * 31 + term as usize * 7 + i) as u8)
        .collect()
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        // Every sealed segment's pages are dropped after its sync: reads must not care.
        page_cache_keep: Some(0),
        ..LogConfig::default()
    }
}

/// A log in `dir` (default config) holding entries `1..=count`, each `payload` at
/// `term`, synced and closed; returns the bytes its one segment uses.
fn write_log(dir: &Path, term: u64, count: u64, payload: &[u8]) -> u64 {
    let log = CommitLog::open(dir, LogConfig::default()).unwrap();
    let entries: Vec<_> = (1..=count)
        .map(|index| AppendEntry {
            term,
            index,
            payload,
        })
        .collect();
    log.append(&entries).unwrap();
    log.close().unwrap();
    log.segments().unwrap()[0].bytes
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<usize>),
    Read(u16),
    Truncate(u16),
    Purge(u16),
    Sync,
    Restart,
    CrashTruncateTail(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(0usize..300, 1..6).prop_map(Op::Append),
        3 => any::<u16>().prop_map(Op::Read),
        1 => any::<u16>().prop_map(Op::Truncate),
        1 => any::<u16>().prop_map(Op::Purge),
        2 => Just(Op::Sync),
        1 => Just(Op::Restart),
        2 => any::<u16>().prop_map(Op::CrashTruncateTail),
    ]
}

struct Model {
    /// `(term, index, payload)`, contiguous.
    entries: Vec<(u64, u64, Vec<u8>)>,
    /// Index the next append uses.
    next: u64,
    term: u64,
    /// Highest index a durability callback has confirmed (shared with callbacks).
    acked: Arc<AtomicU64>,
}

impl Model {
    fn first(&self) -> Option<u64> {
        self.entries.first().map(|e| e.1)
    }

    fn get(&self, index: u64) -> Option<&(u64, u64, Vec<u8>)> {
        let first = self.first()?;
        index
            .checked_sub(first)
            .and_then(|o| self.entries.get(o as usize))
    }

    fn pick(&self, sel: u16) -> u64 {
        let lo = self.first().unwrap_or(self.next).saturating_sub(2);
        let hi = self.next + 2;
        lo + u64::from(sel) % (hi - lo + 1)
    }
}

fn check_equal(log: &CommitLog, model: &Model) {
    assert_eq!(log.first_index(), model.first(), "first index");
    assert_eq!(
        log.last_index(),
        model.entries.last().map(|e| e.1),
        "last index"
    );
    if let Some(first) = model.first() {
        let got = log.read_range(first, u64::MAX, usize::MAX).unwrap();
        assert_eq!(got.len(), model.entries.len());
        for (r, (term, index, p)) in got.iter().zip(&model.entries) {
            assert_eq!((r.term, r.index, &r.payload[..]), (*term, *index, &p[..]));
        }
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = CommitLog::open(dir.path(), config()).unwrap();
    let mut m = Model {
        entries: Vec::new(),
        next: 1,
        term: 1,
        acked: Arc::new(AtomicU64::new(0)),
    };
    for op in ops {
        match op {
            Op::Append(sizes) => {
                let new: Vec<(u64, u64, Vec<u8>)> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| {
                        let index = m.next + i as u64;
                        (m.term, index, payload(m.term, index, s))
                    })
                    .collect();
                let entries: Vec<AppendEntry<'_>> = new
                    .iter()
                    .map(|(term, index, p)| AppendEntry {
                        term: *term,
                        index: *index,
                        payload: p,
                    })
                    .collect();
                log.append(&entries).unwrap();
                let last = new.last().unwrap().1;
                let acked = m.acked.clone();
                log.on_durable(
                    last,
                    Box::new(move |r| {
                        r.unwrap();
                        acked.fetch_max(last, Ordering::SeqCst);
                    }),
                );
                m.next = last + 1;
                m.entries.extend(new);
            }
            Op::Read(sel) => {
                let i = m.pick(sel);
                let got = log.read(i).unwrap();
                match m.get(i) {
                    Some((term, index, p)) => {
                        let r = got.expect("model holds the entry");
                        assert_eq!((r.term, r.index, &r.payload[..]), (*term, *index, &p[..]));
                    }
                    None => assert!(got.is_none(), "read of {i} found an entry the model lacks"),
                }
            }
            Op::Truncate(sel) => {
                let i = m.pick(sel).max(m.first().unwrap_or(0));
                log.truncate_from(i).unwrap();
                m.entries.retain(|e| e.1 < i);
                if m.entries.is_empty() || i < m.next {
                    m.next = i.min(m.next);
                }
                m.term += 1;
                // Truncation syncs: everything left is durable.
                let last_left = m.entries.last().map_or(0, |e| e.1);
                m.acked.store(last_left, Ordering::SeqCst);
                check_equal(&log, &m);
            }
            Op::Purge(sel) => {
                let i = m.pick(sel);
                let first = log.purge_before(i).unwrap();
                match first {
                    Some(f) => {
                        assert!(
                            f <= i.max(m.first().unwrap_or(0)),
                            "purged past {i}: first {f}"
                        );
                        m.entries.retain(|e| e.1 >= f);
                    }
                    // Every record was below `i`: all sealed segments went.
                    None => {
                        assert!(m.entries.iter().all(|e| e.1 < i));
                        m.entries.clear();
                    }
                }
                check_equal(&log, &m);
            }
            Op::Sync => {
                log.sync().unwrap();
                if let Some(l) = m.entries.last() {
                    assert!(log.durable_next() > l.1);
                    m.acked.fetch_max(l.1, Ordering::SeqCst);
                }
            }
            Op::Restart => {
                drop(log);
                log = CommitLog::open(dir.path(), config()).unwrap();
                // A clean restart loses nothing: the page cache still has every write.
                check_equal(&log, &m);
            }
            Op::CrashTruncateTail(n) => {
                // In this order: whatever was acked is inside the durable tail read after.
                let acked = m.acked.load(Ordering::SeqCst);
                let tail = log.durable_tail();
                drop(log);
                if let Some((path, durable_at, written)) = tail {
                    let cut = written.saturating_sub(u64::from(n % 600)).max(durable_at);
                    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    if n % 2 == 0 {
                        // The unsynced tail is gone with the file's length...
                        file.set_len(cut).unwrap();
                    } else {
                        // ...or reads as the preallocated zeros it overwrote.
                        let len = file.metadata().unwrap().len();
                        let zeros = vec![0u8; usize::try_from(len - cut).unwrap()];
                        file.write_all_at(&zeros, cut).unwrap();
                    }
                }
                log = CommitLog::open(dir.path(), config()).unwrap();
                let last = log.last_index();
                // What survived is a prefix of the model that holds every acked record.
                if acked > 0 && m.get(acked).is_some() {
                    assert!(
                        last.is_some_and(|l| l >= acked),
                        "acked {acked} lost; last {last:?}"
                    );
                }
                let lost_from = m.entries.first().map_or(m.next, |e| e.1);
                m.entries.retain(|e| last.is_some_and(|l| e.1 <= l));
                m.next = last.map_or(lost_from, |l| l + 1);
                check_equal(&log, &m);
                m.acked.store(last.unwrap_or(0), Ordering::SeqCst);
            }
        }
    }
    log.close().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}

#[test]
fn corruption_in_the_middle_is_fatal_and_named() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 1, 5, &[7u8; 100]);
    let path = dir.path().join(segment::file_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let second_record = segment::FILE_HEADER_BYTES as usize + record::HEADER_BYTES + 100;
    bytes[second_record + 30] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = CommitLog::open(dir.path(), LogConfig::default()).unwrap_err();
    match err {
        Error::Corruption {
            path: p, offset, ..
        } => {
            assert_eq!(p, path);
            assert_eq!(offset, second_record as u64);
        }
        other => panic!("expected corruption, got {other}"),
    }
}

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_log(dir.path(), 2, 3, &[1u8; 64]);
    let path = dir.path().join(segment::file_name(1));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(written - 10)
        .unwrap();
    let log = CommitLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.last_entry_id(), Some((2, 2)));
    log.append(&[AppendEntry {
        term: 3,
        index: 3,
        payload: b"new",
    }])
    .unwrap();
    log.sync().unwrap();
    assert_eq!(&log.read(3).unwrap().unwrap().payload[..], b"new");
}

#[test]
fn group_commit_acknowledges_after_sync_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(CommitLog::open(dir.path(), LogConfig::default()).unwrap());
    let done = Arc::new(Mutex::new(Vec::new()));
    for i in 1..=200u64 {
        log.append(&[AppendEntry {
            term: 1,
            index: i,
            payload: &[0u8; 32],
        }])
        .unwrap();
        let done = done.clone();
        let log2 = log.clone();
        log.on_durable(
            i,
            Box::new(move |r| {
                r.unwrap();
                assert!(log2.durable_next() > i, "acknowledged before durable");
                done.lock().unwrap().push(i);
            }),
        );
    }
    log.sync().unwrap();
    let done = done.lock().unwrap().clone();
    assert_eq!(done, (1..=200).collect::<Vec<_>>());
}

#[test]
fn the_flusher_keeps_zeros_ahead_of_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(segment::file_name(1));
    let log = CommitLog::open(dir.path(), LogConfig::default()).unwrap();
    let payload = vec![5u8; 1000];
    let mut index = 1;
    // Past the first fill's reach, so the fill has to follow the tail.
    while log.segments().unwrap().first().map_or(0, |s| s.bytes) < 6 << 20 {
        let batch: Vec<_> = (index..index + 100)
            .map(|i| AppendEntry {
                term: 1,
                index: i,
                payload: &payload,
            })
            .collect();
        log.append(&batch).unwrap();
        index += 100;
        log.sync().unwrap();
    }
    // A trickle of appends: the fill (at most a step per interval) gets ahead.
    let deadline = Instant::now() + Duration::from_secs(30);
    let tail = loop {
        log.append(&[AppendEntry {
            term: 1,
            index,
            payload: &payload,
        }])
        .unwrap();
        index += 1;
        log.sync().unwrap();
        let tail = log.segments().unwrap()[0].bytes;
        let len = std::fs::metadata(&path).unwrap().len();
        if len >= tail + 2 * crate::zero_fill::FILL_STEP_BYTES {
            break tail;
        }
        assert!(
            Instant::now() < deadline,
            "no zeros were written ahead of the tail"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let data = std::fs::read(&path).unwrap();
    assert!(data[tail as usize..].iter().all(|&b| b == 0));
    drop(log);
    let log = CommitLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.last_index(), Some(index - 1));
    assert_eq!(
        &log.read(index - 1).unwrap().unwrap().payload[..],
        &payload[..]
    );
}

#[test]
fn preallocated_zeros_are_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let p = vec![3u8; 100];
    let written = write_log(dir.path(), 1, 5, &p);
    let path = dir.path().join(segment::file_name(1));
    // Zeros follow the records: preallocated, or written ahead by the zero fill.
    let on_disk = std::fs::read(&path).unwrap();
    assert!(on_disk.len() as u64 > written);
    assert!(on_disk[written as usize..].iter().all(|&b| b == 0));
    let log = CommitLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.last_entry_id(), Some((1, 5)));
    assert_eq!(log.segments().unwrap()[0].bytes, written);
    // Appends go on into the zeros.
    log.append(&[AppendEntry {
        term: 1,
        index: 6,
        payload: b"six",
    }])
    .unwrap();
    log.sync().unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() >= on_disk.len() as u64);
    drop(log);
    let log = CommitLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(&log.read(6).unwrap().unwrap().payload[..], b"six");
    assert_eq!(&log.read(3).unwrap().unwrap().payload[..], &p[..]);
}

#[test]
fn a_full_segment_is_trimmed_and_a_lost_trim_is_redone_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    };
    let log = CommitLog::open(dir.path(), cfg()).unwrap();
    let p = vec![9u8; 500];
    for i in 1..=20 {
        log.append(&[AppendEntry {
            term: 1,
            index: i,
            payload: &p,
        }])
        .unwrap();
    }
    log.sync().unwrap();
    let segs = log.segments().unwrap();
    assert!(segs.len() > 2, "{segs:?}");
    for s in &segs[..segs.len() - 1] {
        assert_eq!(
            std::fs::metadata(&s.path).unwrap().len(),
            s.bytes,
            "not trimmed"
        );
    }
    drop(log);
    // A crash undid the trim of a full segment: its zeros are back.
    let first = &segs[0];
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&first.path)
        .unwrap();
    file.write_all_at(&[0u8; 3000], first.bytes).unwrap();
    let log = CommitLog::open(dir.path(), cfg()).unwrap();
    assert_eq!(log.last_entry_id(), Some((1, 20)));
    assert_eq!(std::fs::metadata(&first.path).unwrap().len(), first.bytes);
    for i in 1..=20 {
        assert_eq!(&log.read(i).unwrap().unwrap().payload[..], &p[..]);
    }
    drop(log);
    // Anything but zeros after a full segment's last record is corruption.
    file.write_all_at(&[0u8, 1, 2, 3], first.bytes).unwrap();
    match CommitLog::open(dir.path(), cfg()) {
        Err(Error::Corruption { path, offset, .. }) => {
            assert_eq!(path, first.path);
            assert_eq!(offset, first.bytes);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_torn_record_before_preallocated_zeros_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_log(dir.path(), 1, 4, &[5u8; 200]);
    // The last record's second half never reached the disk: zeros, as preallocated.
    let path = dir.path().join(segment::file_name(1));
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0u8; 100], written - 100).unwrap();
    let log = CommitLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.last_entry_id(), Some((1, 3)));
    log.append(&[AppendEntry {
        term: 2,
        index: 4,
        payload: b"again",
    }])
    .unwrap();
    log.sync().unwrap();
    assert_eq!(&log.read(4).unwrap().unwrap().payload[..], b"again");
}

#[test]
fn synced_pages_behind_the_window_are_evicted_once_and_read_back_intact() {
    let dir = tempfile::tempdir().unwrap();
    let keep = 1 << 20;
    let cfg = LogConfig {
        page_cache_keep: Some(keep),
        ..LogConfig::default()
    };
    let log = CommitLog::open(dir.path(), cfg).unwrap();
    let p = vec![7u8; 64 << 10];
    let entries: Vec<_> = (1..=160)
        .map(|index| AppendEntry {
            term: 1,
            index,
            payload: &p,
        })
        .collect();
    log.append(&entries).unwrap();
    let size = log.segments().unwrap()[0].bytes;
    {
        let mut st = log.shared.write_state();
        let ev = log.shared.evictions(&mut st);
        assert_eq!(ev.len(), 1, "one range of the active segment");
        assert_eq!((ev[0].from, ev[0].to), (0, size - keep));
        assert!(
            log.shared.evictions(&mut st).is_empty(),
            "nothing new to drop until another step is written"
        );
        ev[0].drop_cached();
    }
    log.sync().unwrap();
    for r in log.read_range(1, 161, usize::MAX).unwrap() {
        assert_eq!(r.payload.as_ref(), p.as_slice(), "entry {}", r.index);
    }
    log.truncate_from(10).unwrap();
    let cut = log.segments().unwrap()[0].bytes;
    log.append(&[AppendEntry {
        term: 2,
        index: 10,
        payload: &p,
    }])
    .unwrap();
    let mut st = log.shared.write_state();
    let sealed = st.segments[0].take_evictable(keep, 0, true).unwrap();
    assert_eq!(
        (sealed.from, sealed.to),
        (cut, cut + (record::HEADER_BYTES + p.len()) as u64),
        "after truncation the dropped mark falls back to the new end"
    );
}

#[test]
fn an_inline_sync_is_durable_before_returning_and_the_flusher_still_serves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(CommitLog::open(dir.path(), LogConfig::default()).unwrap());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let ack = |i: u64| -> DurableCallback {
        let acked = acked.clone();
        Box::new(move |r| {
            r.unwrap();
            acked.lock().unwrap().push(i);
        })
    };
    let append = |i: u64| {
        log.append(&[AppendEntry {
            term: 1,
            index: i,
            payload: b"x",
        }])
        .unwrap();
    };
    log.set_inline_sync(true);
    for i in 1..=50 {
        append(i);
        // A slow sync (a loaded machine) rightly turns inline syncing off for a while; this
        // test is about what happens when it is on, so it forgets the sync times.
        log.shared.sync_micros.store(0, Ordering::Relaxed);
        log.on_durable_inline(i, ack(i));
        assert!(
            log.durable_next() > i,
            "entry {i} acknowledged before durable"
        );
        assert_eq!(
            acked.lock().unwrap().last(),
            Some(&i),
            "not acknowledged inline"
        );
    }
    log.set_inline_sync(false);
    for i in 51..=100 {
        append(i);
        log.on_durable_inline(i, ack(i));
    }
    log.sync().unwrap();
    assert_eq!(*acked.lock().unwrap(), (1..=100).collect::<Vec<_>>());
}
