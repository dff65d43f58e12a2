//! Commit-log throughput against the raw disk, on the same disk in one run.
//!
//! - raw: `write` + `fdatasync` of each batch to a plain file (the floor any log pays);
//! - append: `CommitLog::append` + wait for the durability callback, batch after batch
//!   (the same work per sync: framing, CRC and index overhead show up here);
//! - pipelined: appends keep up to 8 batches in flight, so group commit shares syncs;
//! - read: every entry read back by index, and by range.
//!
//! Batches hold 64 messages of 1 KiB encoded as a message batch. Run with
//! `cargo bench -p raftmq-store`; under `cargo test` it runs a tiny smoke version.
//! The last line is `append/raw ratio: R` (serial append vs raw, same batch size).

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use raftmq_store::{AppendEntry, BatchWriter, CommitLog, EntryPayload, LogConfig, MessageRef};

const MSG_BYTES: usize = 1024;
const MSGS_PER_BATCH: usize = 64;

fn batch_payload() -> Vec<u8> {
    let body = vec![b'x'; MSG_BYTES];
    let mut w = BatchWriter::new();
    for q in 0..MSGS_PER_BATCH {
        w.push(&MessageRef {
            topic: "BenchTopic",
            queue_id: (q % 8) as u32,
            tag: "TagA",
            keys: &[],
            properties: &[],
            body: &body,
            born_ms: 1,
            store_ms: 2,
            flags: 0,
            reconsume_times: 0,
        })
        .expect("encode");
    }
    EntryPayload::Messages(w.finish().into())
        .encode()
        .expect("encode")
}

struct Rate {
    msgs_per_s: f64,
    mb_per_s: f64,
}

fn rate(batches: usize, bytes_per_batch: usize, elapsed: Duration) -> Rate {
    let s = elapsed.as_secs_f64();
    Rate {
        msgs_per_s: (batches * MSGS_PER_BATCH) as f64 / s,
        mb_per_s: (batches * bytes_per_batch) as f64 / s / (1 << 20) as f64,
    }
}

fn print(name: &str, r: &Rate) {
    println!(
        "{name:<28} {:>12.0} msgs/s {:>9.1} MB/s",
        r.msgs_per_s, r.mb_per_s
    );
}

fn raw(dir: &std::path::Path, payload: &[u8], batches: usize) -> Rate {
    let path = dir.join("raw.bin");
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("open");
    let start = Instant::now();
    for _ in 0..batches {
        f.write_all(payload).expect("write");
        f.sync_data().expect("fdatasync");
    }
    rate(batches, payload.len(), start.elapsed())
}

fn append(
    dir: &std::path::Path,
    payload: &[u8],
    batches: usize,
    window: usize,
) -> (Rate, CommitLog) {
    let log = CommitLog::open(dir, LogConfig::default()).expect("open log");
    let (tx, rx) = mpsc::channel::<()>();
    let start = Instant::now();
    let mut in_flight = 0;
    for i in 1..=batches as u64 {
        if in_flight == window {
            rx.recv().expect("durable");
            in_flight -= 1;
        }
        log.append(&[AppendEntry {
            term: 1,
            index: i,
            payload,
        }])
        .expect("append");
        let tx = tx.clone();
        log.on_durable(
            i,
            Box::new(move |r| {
                r.expect("sync");
                let _ = tx.send(());
            }),
        );
        in_flight += 1;
    }
    for _ in 0..in_flight {
        rx.recv().expect("durable");
    }
    (rate(batches, payload.len(), start.elapsed()), log)
}

fn reads(log: &CommitLog, batches: usize, bytes: usize) {
    let start = Instant::now();
    for i in 1..=batches as u64 {
        let r = log.read(i).expect("read").expect("present");
        assert_eq!(r.payload.len(), bytes);
    }
    print("read by index", &rate(batches, bytes, start.elapsed()));
    let start = Instant::now();
    let mut next = 1u64;
    while next <= batches as u64 {
        let recs = log.read_range(next, u64::MAX, 4 << 20).expect("read range");
        next += recs.len() as u64;
    }
    print(
        "read by range (4 MiB reads)",
        &rate(batches, bytes, start.elapsed()),
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let batches = if full { 4000 } else { 20 };
    let payload = batch_payload();
    let tmp = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("tempdir");
    println!(
        "commit log bench: {batches} batches x {MSGS_PER_BATCH} msgs x {MSG_BYTES} B ({} B per batch), {} cores, dir {}",
        payload.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tmp.path().display()
    );
    // Alternate to spread disk noise evenly; keep the best of three of each.
    let mut best_raw: Option<Rate> = None;
    let mut best_app: Option<Rate> = None;
    let rounds = if full { 3 } else { 1 };
    for round in 0..rounds {
        let r = raw(tmp.path(), &payload, batches);
        let d = tmp.path().join(format!("serial{round}"));
        let (a, log) = append(&d, &payload, batches, 1);
        drop(log);
        std::fs::remove_dir_all(&d).ok();
        if best_raw
            .as_ref()
            .is_none_or(|b| r.msgs_per_s > b.msgs_per_s)
        {
            best_raw = Some(r);
        }
        if best_app
            .as_ref()
            .is_none_or(|b| a.msgs_per_s > b.msgs_per_s)
        {
            best_app = Some(a);
        }
    }
    let (raw_rate, app_rate) = (best_raw.expect("ran"), best_app.expect("ran"));
    print("raw write+fdatasync", &raw_rate);
    print("append, durable, serial", &app_rate);
    let (piped, log) = append(&tmp.path().join("piped"), &payload, batches, 8);
    print("append, durable, 8 in flight", &piped);
    reads(&log, batches, payload.len());
    println!(
        "append/raw ratio: {:.2}",
        app_rate.msgs_per_s / raw_rate.msgs_per_s
    );
}
