//! Half messages: invisible until committed, ended once, kept by retention, rebuilt.

use bytes::Bytes;
use raftmq_proto::message::{PROP_PRODUCER_GROUP, PROP_TRANSACTION_PREPARED, PROP_UNIQ_KEY};

use crate::batch::{BatchWriter, MessageRef};
use crate::entry::{Command, EntryPayload};
use crate::store::{ApplyOutcome, MessageOutcome, QueueFilter};
use crate::test_harness::Harness;

fn half(h: &mut Harness, id: &str) -> (u64, u32) {
    let index = h.next;
    let out = h.send_props(
        "T",
        &[
            (PROP_TRANSACTION_PREPARED, "true"),
            (PROP_PRODUCER_GROUP, "pg"),
            (PROP_UNIQ_KEY, id),
        ],
        id,
    );
    assert_eq!(out, vec![MessageOutcome::Half { queue_id: 0 }]);
    (index, 0)
}

/// The committed form of half messages `ids`, as the leader builds it: one batch.
fn committed(ids: &[&str]) -> Bytes {
    let mut w = BatchWriter::new();
    for id in ids {
        let props = vec![(PROP_UNIQ_KEY.to_owned(), (*id).to_owned())];
        w.push(&MessageRef {
            topic: "T",
            queue_id: 0,
            tag: "t",
            keys: &[],
            properties: &props,
            body: id.as_bytes(),
            born_ms: 1,
            store_ms: 5,
            flags: 0,
            reconsume_times: 0,
        })
        .unwrap();
    }
    Bytes::from(w.finish())
}

fn end(h: &mut Harness, pos: (u64, u32), commit: bool, id: &str) -> ApplyOutcome {
    h.commit(EntryPayload::Command(Command::EndTransactions {
        ends: vec![(pos, commit)],
        batch: if commit {
            committed(&[id])
        } else {
            Bytes::new()
        },
    }))
}

fn bodies(h: &Harness) -> Vec<Bytes> {
    let (min, max) = h.store.queue_bounds("T", 0).unwrap();
    if max == 0 {
        return Vec::new();
    }
    h.store
        .read_queue("T", 0, min, 100, usize::MAX, QueueFilter::default())
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.view.body.clone())
        .collect()
}

#[test]
fn a_half_message_is_invisible_until_committed_and_ends_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    h.create_topic("T", 1);
    let a = half(&mut h, "A");
    let b = half(&mut h, "B");
    assert!(bodies(&h).is_empty(), "half messages are not in the queue");
    let pending = h.store.pending_transactions();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].producer_group, "pg");
    assert_eq!(pending[0].msg_id, "A");
    assert_eq!(
        h.store.half_message(a).unwrap().unwrap().body,
        Bytes::from("A")
    );

    let out = end(&mut h, a, true, "A");
    assert_eq!(
        out,
        ApplyOutcome::TransactionEnded(Some(vec![MessageOutcome::Stored {
            queue_id: 0,
            offset: 0
        }]))
    );
    assert_eq!(
        end(&mut h, b, false, "B"),
        ApplyOutcome::TransactionEnded(Some(vec![]))
    );
    // A second decision (another leader's, a retried end) changes nothing.
    assert_eq!(
        end(&mut h, a, true, "A"),
        ApplyOutcome::TransactionEnded(None)
    );
    assert_eq!(
        end(&mut h, b, true, "B"),
        ApplyOutcome::TransactionEnded(None)
    );
    assert_eq!(bodies(&h), vec![Bytes::from("A")]);
    assert!(h.store.pending_transactions().is_empty());

    // Rebuilt derived indexes agree: the refused commit of B is not replayed.
    h.store.close().unwrap();
    drop(h);
    {
        let idx = crate::index::Indexes::open(&dir.path().join("index")).unwrap();
        idx.clear_derived().unwrap();
        assert!(idx.cq_range("T", 0, 0, 10).unwrap().is_empty());
    }
    let h = Harness::open(dir.path());
    assert_eq!(
        bodies(&h),
        vec![Bytes::from("A")],
        "after a rebuild from the log"
    );
}

#[test]
fn one_entry_ends_many_or_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    h.create_topic("T", 1);
    let (a, b, c) = (half(&mut h, "A"), half(&mut h, "B"), half(&mut h, "C"));
    // A and C commit, B rolls back, in one entry.
    let out = h.commit(EntryPayload::Command(Command::EndTransactions {
        ends: vec![(a, true), (b, false), (c, true)],
        batch: committed(&["A", "C"]),
    }));
    assert!(matches!(out, ApplyOutcome::TransactionEnded(Some(ref m)) if m.len() == 2));
    assert_eq!(bodies(&h), vec![Bytes::from("A"), Bytes::from("C")]);
    // One already ended: the whole entry changes nothing, D stays pending.
    let d = half(&mut h, "D");
    let out = h.commit(EntryPayload::Command(Command::EndTransactions {
        ends: vec![(d, true), (a, true)],
        batch: committed(&["D", "A"]),
    }));
    assert_eq!(out, ApplyOutcome::TransactionEnded(None));
    assert_eq!(h.store.pending_transactions().len(), 1);
    // Listing one twice is refused too.
    let out = h.commit(EntryPayload::Command(Command::EndTransactions {
        ends: vec![(d, false), (d, false)],
        batch: Bytes::new(),
    }));
    assert_eq!(out, ApplyOutcome::TransactionEnded(None));
    assert_eq!(
        end(&mut h, d, true, "D"),
        ApplyOutcome::TransactionEnded(Some(vec![MessageOutcome::Stored {
            queue_id: 0,
            offset: 2
        }]))
    );
    // A rebuild from the log stores the same, skipping the refused entry.
    h.store.close().unwrap();
    drop(h);
    {
        let idx = crate::index::Indexes::open(&dir.path().join("index")).unwrap();
        idx.clear_derived().unwrap();
    }
    let h = Harness::open(dir.path());
    assert_eq!(
        bodies(&h),
        vec![Bytes::from("A"), Bytes::from("C"), Bytes::from("D")]
    );
}

#[test]
fn checks_are_counted_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    h.create_topic("T", 1);
    let a = half(&mut h, "A");
    for now in [10, 20] {
        h.commit(EntryPayload::Command(Command::CheckTransactions {
            halves: vec![a, (999, 0)],
            now_ms: now,
        }));
    }
    let t = h.store.pending_transaction(a).unwrap();
    assert_eq!((t.checks, t.last_check_ms), (2, 20));
    h.store.close().unwrap();
    drop(h);
    let h = Harness::open(dir.path());
    let t = h.store.pending_transaction(a).unwrap();
    assert_eq!((t.checks, t.last_check_ms), (2, 20), "after a restart");
    assert_eq!(h.store.pending_transactions().len(), 1);
}

#[test]
fn retention_keeps_the_entry_of_a_pending_half_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    h.create_topic("T", 1);
    let a = half(&mut h, "A");
    // Fill several segments after it (4 KiB segments in the harness).
    for _ in 0..200 {
        h.send(&[("T", 0, "x", "k")]);
    }
    h.store.checkpoint().unwrap();
    let limit = h.store.deletable_limit(u64::MAX).unwrap();
    assert!(
        limit < a.0,
        "retention may not pass the half message ({limit} >= {})",
        a.0
    );
    end(&mut h, a, false, "A");
    h.store.checkpoint().unwrap();
    assert!(h.store.deletable_limit(u64::MAX).unwrap() > a.0);
}
