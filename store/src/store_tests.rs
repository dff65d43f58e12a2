//! Tests of applying entries, reading queues, rebuilding indexes and retention.

use std::time::{Duration, SystemTime};

use raftmq_proto::message::PROP_DELIVER_AT;
use raftmq_proto::{ConsumerGroup, Offset, QueueId, TopicName};

use super::*;
use crate::batch::{BatchWriter, MessageRef};
use crate::entry::Command;
use crate::index::{self, CF_CQ};
use crate::retention::{DiskUsage, RetentionPolicy};
use crate::test_harness::{small, Harness};

/// Every (queue, offset) -> (log index, slot, body) of a topic.
fn snapshot(store: &Store, topic: &str, queues: u32) -> Vec<(u32, u64, u64, u32, Bytes)> {
    let mut out = Vec::new();
    for q in 0..queues {
        let (min, _) = store.queue_bounds(topic, q).unwrap();
        let r = store
            .read_queue(topic, q, min, 10_000, usize::MAX, QueueFilter::default())
            .unwrap();
        for m in r.messages {
            out.push((q, m.queue_offset, m.log_index, m.slot, m.view.body.clone()));
        }
    }
    out
}

#[test]
fn offsets_are_dense_per_queue_and_messages_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    h.create_topic("T", 4);
    let out = h.send(&[
        ("T", 0, "A", "k1"),
        ("T", 1, "B", "k2"),
        ("T", 0, "A", "k3"),
    ]);
    assert_eq!(
        out,
        vec![
            MessageOutcome::Stored {
                queue_id: 0,
                offset: 0
            },
            MessageOutcome::Stored {
                queue_id: 1,
                offset: 0
            },
            MessageOutcome::Stored {
                queue_id: 0,
                offset: 1
            },
        ]
    );
    let out = h.send(&[("T", 0, "B", "k1"), ("Nope", 0, "", "")]);
    assert_eq!(
        out[0],
        MessageOutcome::Stored {
            queue_id: 0,
            offset: 2
        }
    );
    assert_eq!(out[1], MessageOutcome::TopicNotFound);

    let r = h
        .store
        .read_queue("T", 0, 0, 10, usize::MAX, QueueFilter::default())
        .unwrap();
    assert_eq!(r.messages.len(), 3);
    assert_eq!((r.min_offset, r.max_offset, r.next_offset), (0, 3, 3));
    assert_eq!(r.messages[1].view.keys().collect::<Vec<_>>(), vec!["k3"]);
    // Tag filter skips but advances.
    let only_b = [index::tag_hash("B")];
    let r = h
        .store
        .read_queue(
            "T",
            0,
            0,
            10,
            usize::MAX,
            QueueFilter {
                tag_hashes: Some(&only_b),
                ..QueueFilter::default()
            },
        )
        .unwrap();
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].queue_offset, 2);
    assert_eq!(r.next_offset, 3);
    // Lookups by key and by position agree.
    let pos = h.store.positions_by_key("T", "k1", 10).unwrap();
    assert_eq!(pos.len(), 2);
    let m = h.store.message_at(pos[1].0, pos[1].1).unwrap().unwrap();
    assert_eq!((m.queue_id, m.queue_offset), (0, 2));
    assert!(matches!(
        h.store
            .read_queue("Nope", 0, 0, 1, 1, QueueFilter::default()),
        Err(Error::TopicNotFound(_))
    ));
}

#[test]
fn a_clients_uniq_key_is_indexed_like_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    h.create_topic("T", 1);
    let mut w = BatchWriter::new();
    let props = vec![("UNIQ_KEY".to_owned(), "0A0000010000FFFF".to_owned())];
    w.push(&MessageRef {
        topic: "T",
        queue_id: 0,
        tag: "",
        keys: &["k".to_owned()],
        properties: &props,
        body: b"x",
        born_ms: 1,
        store_ms: 1,
        flags: 0,
        reconsume_times: 0,
    })
    .unwrap();
    h.commit(EntryPayload::Messages(Bytes::from(w.finish())));
    for key in ["k", "0A0000010000FFFF"] {
        let pos = h.store.positions_by_key("T", key, 10).unwrap();
        assert_eq!(pos.len(), 1, "{key}");
        assert!(h.store.positions_by_key("U", key, 10).unwrap().is_empty());
    }
    let by_id = h
        .store
        .positions_by_unique_key("0A0000010000FFFF", 10)
        .unwrap();
    assert_eq!(
        by_id,
        h.store
            .positions_by_key("T", "0A0000010000FFFF", 10)
            .unwrap()
    );
    assert!(h.store.positions_by_unique_key("k", 10).unwrap().is_empty());
}

#[test]
fn commands_change_topics_groups_and_offsets_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut h = Harness::open(dir.path());
        h.create_topic("T", 2);
        h.create_topic("U", 2);
        h.send(&[("T", 1, "", ""), ("U", 0, "", "")]);
        h.commit(EntryPayload::Command(Command::UpsertGroup(
            ConsumerGroupConfig::new("g"),
        )));
        h.commit(EntryPayload::Command(Command::CommitOffsets {
            group: ConsumerGroup::from("g"),
            offsets: vec![
                (TopicName::from("T"), QueueId(1), Offset(1)),
                (TopicName::from("U"), QueueId(0), Offset(1)),
            ],
        }));
        h.commit(EntryPayload::Command(Command::DeleteTopic(
            TopicName::from("U"),
        )));
        h.store.close().unwrap();
    }
    let h = Harness::open(dir.path());
    assert_eq!(
        h.store
            .topics()
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        vec!["T"]
    );
    assert_eq!(h.store.group("g").unwrap().retry_max_times, 16);
    assert_eq!(h.store.consumer_offset("g", "T", 1).unwrap(), Some(1));
    assert_eq!(h.store.consumer_offset("g", "U", 0).unwrap(), None);
    assert_eq!(h.store.queue_bounds("T", 1).unwrap(), (0, 1));
    assert_eq!(h.store.applied(), Some((1, 6)));
}

#[test]
fn rebuild_after_deleting_derived_indexes_gives_identical_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let mut h = Harness::open(dir.path());
        h.create_topic("T", 3);
        for round in 0..40u32 {
            let k = format!("key{}", round % 5);
            h.send(&[("T", round % 3, "A", &k), ("T", (round + 1) % 3, "B", &k)]);
            if round == 20 {
                h.store.checkpoint().unwrap();
            }
        }
        before = snapshot(&h.store, "T", 3);
        assert_eq!(before.len(), 80);
        h.store.close().unwrap();
    }
    // Wipe the derived column families (their checkpoints go with them).
    {
        let idx = Indexes::open(&dir.path().join("index")).unwrap();
        let mut b = WriteBatch::default();
        for cf in [CF_CQ, CF_KEYS] {
            b.delete_range_cf(
                idx.cf(cf).unwrap(),
                [0u8].as_slice(),
                [0xffu8; 16].as_slice(),
            );
        }
        idx.write_durable(b, true).unwrap();
        assert_eq!(idx.cq_range("T", 0, 0, 10).unwrap().len(), 0);
    }
    let h = Harness::open(dir.path());
    assert_eq!(snapshot(&h.store, "T", 3), before);
    assert_eq!(
        h.store.positions_by_key("T", "key3", 100).unwrap().len(),
        16
    );
}

#[test]
fn derived_writes_lost_in_a_crash_are_replayed_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let mut h = Harness::open(dir.path());
        h.create_topic("T", 2);
        for i in 0..10u32 {
            h.send(&[("T", i % 2, "", "")]);
        }
        h.store.checkpoint().unwrap();
        for i in 0..10u32 {
            h.send(&[("T", i % 2, "", "")]);
        }
        before = snapshot(&h.store, "T", 2);
        // Simulate losing the un-checkpointed derived writes: delete them by hand.
        let idx = &h.store.idx;
        let mut b = WriteBatch::default();
        for q in 0..2 {
            b.delete_range_cf(
                idx.cf(CF_CQ).unwrap(),
                cq_key_of("T", q, 5),
                cq_key_of("T", q, 100),
            );
        }
        idx.write_durable(b, true).unwrap();
        h.store.log().close().unwrap();
    }
    let h = Harness::open(dir.path());
    assert_eq!(snapshot(&h.store, "T", 2), before);
}

fn cq_key_of(topic: &str, q: u32, o: u64) -> Vec<u8> {
    index::cq_key(topic, q, o)
}

/// Retention after an hour, on a disk far below its high-water mark.
fn hour_policy_on_a_calm_disk() -> (RetentionPolicy, DiskUsage) {
    let policy = RetentionPolicy {
        max_age: Duration::from_secs(3600),
        disk_high_water: 0.9,
    };
    let calm = DiskUsage {
        used_bytes: 10,
        total_bytes: 100,
    };
    (policy, calm)
}

#[test]
fn retention_deletes_old_segments_and_advances_min_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    h.create_topic("T", 1);
    for _ in 0..200 {
        h.send(&[("T", 0, "", "k")]);
    }
    let segs = h.store.log().segments().unwrap().len();
    assert!(segs > 3, "want several segments, have {segs}");
    let (policy, calm) = hour_policy_on_a_calm_disk();
    // Nothing is old yet.
    let r = h
        .store
        .enforce_retention(SystemTime::now(), &policy, calm, u64::MAX)
        .unwrap();
    assert_eq!(r.segments_deleted, 0);
    // Two hours later everything sealed is old, but the purge limit holds some back.
    let later = SystemTime::now() + Duration::from_secs(7200);
    let r = h
        .store
        .enforce_retention(later, &policy, calm, 100)
        .unwrap();
    assert!(r.segments_deleted > 0);
    let first = r.first_index.unwrap();
    assert!(first <= 101);
    let (min, max) = h.store.queue_bounds("T", 0).unwrap();
    assert_eq!(max, 200);
    assert!(min > 0);
    match h
        .store
        .read_queue("T", 0, 0, 1, usize::MAX, QueueFilter::default())
    {
        Err(Error::OffsetTooSmall { offset: 0, min: m }) => assert_eq!(m, min),
        other => panic!("expected OffsetTooSmall, got {other:?}"),
    }
    let r = h
        .store
        .read_queue("T", 0, min, 1, usize::MAX, QueueFilter::default())
        .unwrap();
    assert!(r.messages[0].log_index >= first);
    assert!(h
        .store
        .positions_by_key("T", "k", 1000)
        .unwrap()
        .iter()
        .all(|p| p.0 >= first));
    // A full disk deletes regardless of age, but never the active segment.
    let full = DiskUsage {
        used_bytes: 999_000,
        total_bytes: 1_000_000,
    };
    let r = h
        .store
        .enforce_retention(SystemTime::now(), &policy, full, u64::MAX)
        .unwrap();
    assert!(r.segments_deleted > 0);
    assert_eq!(h.store.log().segments().unwrap().len(), 1);
    assert_eq!(h.store.queue_bounds("T", 0).unwrap().1, 200);
}

#[test]
fn a_deleted_topics_segments_are_freed_without_waiting_for_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    h.create_topic("Gone", 1);
    h.create_topic("Kept", 1);
    for _ in 0..150 {
        h.send(&[("Gone", 0, "", "g")]);
    }
    for _ in 0..20 {
        h.send(&[("Kept", 0, "", "k")]);
    }
    let before = h.store.log().segments().unwrap();
    assert!(
        before.len() > 3,
        "want several segments, have {}",
        before.len()
    );
    let (policy, calm) = hour_policy_on_a_calm_disk();
    // A live topic's messages keep every segment until they are old.
    assert_eq!(h.store.dead_prefix_end().unwrap(), None);
    let r = h
        .store
        .enforce_retention(SystemTime::now(), &policy, calm, u64::MAX)
        .unwrap();
    assert_eq!(r.segments_deleted, 0);

    h.commit(EntryPayload::Command(Command::DeleteTopic(
        TopicName::from("Gone"),
    )));
    assert_eq!(h.store.topic_deletions(), 1);
    let kept_first = h
        .store
        .read_queue("Kept", 0, 0, 1, usize::MAX, QueueFilter::default())
        .unwrap()
        .messages[0]
        .log_index;
    let dead = h.store.dead_prefix_end().unwrap().expect("dead segments");
    assert!(dead < kept_first, "{dead} {kept_first}");
    // Only what Raft no longer needs goes: a purge point below the dead prefix holds
    // the rest back.
    let first_seg_last = before[0].last.unwrap();
    let r = h
        .store
        .enforce_retention(SystemTime::now(), &policy, calm, first_seg_last)
        .unwrap();
    assert_eq!(r.segments_deleted, 1);
    let r = h
        .store
        .enforce_retention(SystemTime::now(), &policy, calm, u64::MAX)
        .unwrap();
    assert!(r.segments_deleted > 0);
    let after = h.store.log().segments().unwrap();
    assert!(
        after.len() < before.len() - 1,
        "{} of {}",
        after.len(),
        before.len()
    );
    assert_eq!(r.first_index, Some(dead + 1));
    assert_eq!(h.store.dead_prefix_end().unwrap(), None);
    // The live topic lost nothing.
    assert_eq!(h.store.queue_bounds("Kept", 0).unwrap(), (0, 20));
    let all = h
        .store
        .read_queue("Kept", 0, 0, 100, usize::MAX, QueueFilter::default())
        .unwrap();
    assert_eq!(all.messages.len(), 20);
}

#[test]
fn offset_lookup_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    h.create_topic("T", 1);
    for _ in 0..10 {
        h.send(&[("T", 0, "", "")]);
    }
    // Entry n is stored at 1000 * n ms; entries 2..=11 hold offsets 0..=9.
    assert_eq!(h.store.offset_for_time("T", 0, 0).unwrap(), 0);
    assert_eq!(h.store.offset_for_time("T", 0, 5000).unwrap(), 3);
    assert_eq!(h.store.offset_for_time("T", 0, 5001).unwrap(), 4);
    assert_eq!(h.store.offset_for_time("T", 0, u64::MAX).unwrap(), 10);
}

fn delayed_batch(topic: &str, due_ms: u64, body: &str) -> Bytes {
    let mut w = BatchWriter::new();
    let props = vec![(PROP_DELIVER_AT.to_owned(), due_ms.to_string())];
    w.push(&MessageRef {
        topic,
        queue_id: 0,
        tag: "",
        keys: &[],
        properties: &props,
        body: body.as_bytes(),
        born_ms: 1,
        store_ms: 1,
        flags: 0,
        reconsume_times: 0,
    })
    .unwrap();
    Bytes::from(w.finish())
}

#[test]
fn delayed_messages_wait_in_timers_and_fire_exactly_once_even_after_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut h = Harness::open(dir.path());
        h.create_topic("T", 1);
        let out = h.commit(EntryPayload::Messages(delayed_batch("T", 5_000, "later")));
        assert_eq!(
            out,
            ApplyOutcome::Messages(vec![MessageOutcome::Scheduled {
                queue_id: 0,
                due_ms: 5_000
            }])
        );
        assert_eq!(h.store.queue_bounds("T", 0).unwrap(), (0, 0));
        assert!(h.store.timers_due(4_999, 10).unwrap().is_empty());
        let due = h.store.timers_due(5_000, 10).unwrap();
        assert_eq!(due.len(), 1);
        let original = h.store.timer_message(&due[0]).unwrap().unwrap();
        assert_eq!(&original.body[..], b"later");
        // The scheduler re-publishes it without the delay property, removing the timer in
        // the same entry.
        let mut w = BatchWriter::new();
        w.push(&MessageRef {
            topic: "T",
            queue_id: 0,
            tag: "",
            keys: &[],
            properties: &[],
            body: &original.body,
            born_ms: 1,
            store_ms: 5_000,
            flags: 0,
            reconsume_times: 0,
        })
        .unwrap();
        let batch = Bytes::from(w.finish());
        let fire = |seq| {
            EntryPayload::Command(Command::FireTimers {
                seq,
                fired: due.clone(),
                batch: batch.clone(),
            })
        };
        assert_eq!(h.store.fire_seq(), 0);
        let out = h.commit(fire(0));
        assert_eq!(
            out,
            ApplyOutcome::Messages(vec![MessageOutcome::Stored {
                queue_id: 0,
                offset: 0
            }])
        );
        // A second scheduler that built the same delivery against the old sequence is refused.
        assert_eq!(h.commit(fire(0)), ApplyOutcome::Messages(vec![]));
        assert_eq!(h.store.fire_seq(), 1);
        assert!(h.store.timers_due(u64::MAX, 10).unwrap().is_empty());
        h.commit(EntryPayload::Messages(delayed_batch("T", 9_000, "pending")));
        h.store.close().unwrap();
    }
    {
        let idx = Indexes::open(&dir.path().join("index")).unwrap();
        idx.clear_derived().unwrap();
    }
    let h = Harness::open(dir.path());
    let due = h.store.timers_due(u64::MAX, 10).unwrap();
    assert_eq!(due.len(), 1, "only the undelivered timer comes back");
    assert_eq!(due[0].due_ms, 9_000);
    assert_eq!(snapshot(&h.store, "T", 1).len(), 1);
}

#[test]
fn queue_locks_are_exclusive_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    let q = vec![
        (TopicName::from("T"), QueueId(0)),
        (TopicName::from("T"), QueueId(1)),
    ];
    let lock = |client: &str, now_ms: u64| {
        EntryPayload::Command(Command::LockQueues {
            group: ConsumerGroup::from("g"),
            client: client.into(),
            queues: q.clone(),
            now_ms,
            lease_ms: 1000,
        })
    };
    assert_eq!(
        h.commit(lock("a", 0)),
        ApplyOutcome::Locked(vec![true, true])
    );
    assert_eq!(
        h.commit(lock("b", 500)),
        ApplyOutcome::Locked(vec![false, false])
    );
    assert_eq!(
        h.commit(lock("a", 900)),
        ApplyOutcome::Locked(vec![true, true]),
        "renewal"
    );
    assert_eq!(
        h.commit(lock("b", 1500)),
        ApplyOutcome::Locked(vec![false, false])
    );
    assert_eq!(
        h.commit(lock("b", 1900)),
        ApplyOutcome::Locked(vec![true, true]),
        "after expiry"
    );
    h.commit(EntryPayload::Command(Command::UnlockQueues {
        group: ConsumerGroup::from("g"),
        client: "b".into(),
        queues: q[..1].to_vec(),
    }));
    assert_eq!(h.store.queue_lock("g", "T", 0), None);
    assert_eq!(h.store.queue_lock("g", "T", 1), Some(("b".into(), 2900)));
    // Locks survive a restart and travel in the state image.
    let image = h.store.export_state(&[]).unwrap().image;
    h.store.close().unwrap();
    drop(h);
    let h = Harness::open(dir.path());
    assert_eq!(h.store.queue_lock("g", "T", 1), Some(("b".into(), 2900)));
    let other = tempfile::tempdir().unwrap();
    let h2 = Harness::open(other.path());
    h2.store.import_state(&image).unwrap();
    assert_eq!(h2.store.queue_lock("g", "T", 1), Some(("b".into(), 2900)));
}

#[test]
fn auth_records_are_replicated_state_that_survives_restart_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    let put = |k: &str, v: &'static [u8]| {
        EntryPayload::Command(Command::PutAuth {
            key: k.into(),
            value: Bytes::from_static(v),
        })
    };
    let before = h.store.auth_changes();
    h.commit(put("alice", b"A1"));
    h.commit(put("bob", b"B1"));
    h.commit(put("alice", b"A2"));
    h.commit(EntryPayload::Command(Command::DeleteAuth {
        key: "bob".into(),
    }));
    assert!(h.store.auth_changes() > before, "readers must see a change");
    let (_, records) = h.store.auth_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records["alice"], Bytes::from_static(b"A2"));
    let image = h.store.export_state(&[]).unwrap().image;
    h.store.close().unwrap();
    drop(h);
    let h = Harness::open(dir.path());
    assert_eq!(h.store.auth_records().1.len(), 1, "after a restart");
    let other = tempfile::tempdir().unwrap();
    let mut h2 = Harness::open(other.path());
    h2.commit(put("carol", b"C1"));
    h2.store.import_state(&image).unwrap();
    let (_, imported) = h2.store.auth_records();
    assert_eq!(imported.len(), 1, "the image replaces what was there");
    assert_eq!(imported["alice"], Bytes::from_static(b"A2"));
}

/// Set in the child process of [`a_poisoned_state_lock_stops_the_process`].
const POISON_CHILD: &str = "RAFTMQ_STORE_POISON_CHILD";

#[test]
fn a_poisoned_state_lock_stops_the_process() {
    use std::os::unix::process::ExitStatusExt;
    if let Some(dir) = std::env::var_os(POISON_CHILD) {
        // The child: a thread panics holding the state lock; the next lock must abort.
        let store = std::sync::Arc::new(Store::open(Path::new(&dir), small()).unwrap());
        let s = store.clone();
        let _ = std::thread::spawn(move || {
            let _held = s.lock();
            panic!("a bug while the state is half updated");
        })
        .join();
        let _ = store.applied();
        // Not reached when the lock stops the process.
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::a_poisoned_state_lock_stops_the_process",
            "--nocapture",
        ])
        .env(POISON_CHILD, dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "the child went on with a poisoned lock: {:?}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("poisoned by a panic; aborting"), "{stderr}");
}
