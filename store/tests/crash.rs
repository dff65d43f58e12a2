//! kill -9 crash test (the re-exec pattern): a child process appends to the commit log and
//! prints every index a durability callback confirms; the parent kills it at a random
//! moment, sometimes adds a torn partial record to the tail, reopens the log and checks
//! that every confirmed entry survived and that the log is a clean, contiguous prefix.
//!
//! Iterations: `CRASH_ITERS` (default 20).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftmq_store::{AppendEntry, CommitLog, LogConfig};

const CHILD_ENV: &str = "RAFTMQ_CRASH_CHILD_DIR";
const TERM_ENV: &str = "RAFTMQ_CRASH_TERM";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 10,
        // Sealed segments' pages are dropped from the cache after their sync.
        page_cache_keep: Some(0),
        ..LogConfig::default()
    }
}

fn payload(index: u64) -> Vec<u8> {
    let len = (index * 7919 % 3000) as usize;
    (0..len).map(|i| (index as usize + i) as u8).collect()
}

fn child(dir: &Path, term: u64) {
    let log = CommitLog::open(dir, config()).expect("child opens the log");
    let mut next = log.last_index().map_or(1, |l| l + 1);
    // Every other run syncs on this thread (as a Raft follower does), the rest through
    // the flusher thread.
    log.set_inline_sync(term.is_multiple_of(2));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    loop {
        let batch: Vec<(u64, Vec<u8>)> = (next..next + 1 + next % 7)
            .map(|i| (i, payload(i)))
            .collect();
        let entries: Vec<AppendEntry<'_>> = batch
            .iter()
            .map(|(i, p)| AppendEntry {
                term,
                index: *i,
                payload: p,
            })
            .collect();
        log.append(&entries).expect("append");
        let last = batch.last().map(|b| b.0).unwrap_or(next);
        let out = out.clone();
        log.on_durable_inline(
            last,
            Box::new(move |r| {
                if r.is_ok() {
                    let mut o = out
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let _ = writeln!(o, "acked {last}");
                    let _ = o.flush();
                }
            }),
        );
        next = last + 1;
    }
}

fn verify(dir: &Path, acked: u64) -> u64 {
    let log = CommitLog::open(dir, config()).expect("parent reopens the log after the crash");
    let last = log.last_index().unwrap_or(0);
    assert!(
        last >= acked,
        "lost acknowledged entries: acked {acked}, recovered up to {last}"
    );
    let first = log.first_index().unwrap_or(1);
    let mut next = first;
    let mut prev_term = 0;
    while next <= last {
        let recs = log.read_range(next, last + 1, 8 << 20).expect("read back");
        assert!(!recs.is_empty(), "gap at {next}");
        for r in recs {
            assert_eq!(r.index, next, "log is not contiguous");
            assert_eq!(
                &r.payload[..],
                &payload(r.index)[..],
                "payload of {} differs",
                r.index
            );
            assert!(r.term >= prev_term, "term went backwards at {}", r.index);
            prev_term = r.term;
            next += 1;
        }
    }
    log.close().expect("close");
    last
}

fn tear_tail(dir: &Path, seed: u64) {
    // Where the records end: the active segment holds preallocated zeros beyond.
    let last = {
        let log = CommitLog::open(dir, config()).expect("open before tearing");
        let last = log.segments().expect("segments").pop();
        log.close().expect("close");
        last
    };
    let Some(last) = last else { return };
    // A record header that promises more bytes than follow: a write cut short.
    let mut torn = Vec::new();
    torn.extend_from_slice(&(5000u32).to_le_bytes());
    torn.extend_from_slice(&(seed as u32).to_le_bytes());
    torn.extend((0..(seed % 200) as u8).map(|b| b.wrapping_mul(31)));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last.path)
        .expect("open tail")
        .write_all_at(&torn, last.bytes)
        .expect("tear");
}

fn main() {
    // Test runners list tests first (`--list --format terse`, as cargo-nextest does): this
    // harness-less binary is one test.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("kill9_crash_recovery: test");
        }
        return;
    }
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let term = std::env::var(TERM_ENV)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(1);
        child(Path::new(&dir), term);
        return;
    }
    let iters: u64 = std::env::var("CRASH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("own path");
    let started = Instant::now();
    let mut total_acked = 0;
    for iter in 1..=iters {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .env(TERM_ENV, iter.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let acked = Arc::new(Mutex::new(0u64));
        let reader = {
            let acked = acked.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(i) = line
                        .strip_prefix("acked ")
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        let mut a = acked.lock().expect("lock");
                        *a = (*a).max(i);
                    }
                }
            })
        };
        // Let the child get going, then kill it at a pseudo-random moment.
        let wait_for_first = Instant::now();
        while *acked.lock().expect("lock") == 0
            && wait_for_first.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20 + (iter * 7919) % 250));
        child.kill().expect("kill -9");
        let _ = child.wait();
        reader.join().expect("reader");
        let acked = *acked.lock().expect("lock");
        assert!(
            acked > 0,
            "iteration {iter}: the child acknowledged nothing"
        );
        if iter % 2 == 0 {
            tear_tail(dir.path(), iter * 7919);
        }
        let last = verify(dir.path(), acked);
        total_acked = acked;
        println!("crash iteration {iter}: acknowledged up to {acked}, recovered up to {last}");
    }
    println!(
        "crash test passed: {iters} kill -9 iterations, {total_acked} entries acknowledged, {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
