//! The state image: every kind of state survives export, import and a restart.

use std::collections::BTreeMap;

use bytes::Bytes;
use raftmq_proto::message::{PROP_PRODUCER_GROUP, PROP_TRANSACTION_PREPARED, PROP_UNIQ_KEY};
use raftmq_proto::{ConsumerGroupConfig, Offset, QueueId};

use super::*;
use crate::entry::{Command, EntryPayload};
use crate::test_harness::Harness;

/// The sections of a version-3 image, by kind.
fn sections(image: &[u8]) -> BTreeMap<Kind, Bytes> {
    let mut r = Reader::new(Bytes::copy_from_slice(image), "test image");
    assert_eq!(r.u8().unwrap(), IMAGE_VERSION);
    r.raw(17).unwrap();
    let mut out = BTreeMap::new();
    for _ in 0..r.u8().unwrap() {
        let kind = Kind::from_tag(r.u8().unwrap()).unwrap();
        out.insert(kind, r.bytes32().unwrap());
    }
    out
}

/// A store holding some of every kind of state.
fn every_kind(h: &mut Harness) {
    h.create_topic("T", 2);
    h.send(&[("T", 0, "a", "k1"), ("T", 1, "b", "k2")]);
    h.commit(EntryPayload::Command(Command::UpsertGroup(
        ConsumerGroupConfig::new("g"),
    )));
    h.commit(EntryPayload::Command(Command::CommitOffsets {
        group: "g".into(),
        offsets: vec![("T".into(), QueueId(0), Offset(1))],
    }));
    h.commit(EntryPayload::Command(Command::LockQueues {
        group: "g".into(),
        client: "c1".into(),
        queues: vec![("T".into(), QueueId(1))],
        now_ms: 10,
        lease_ms: 60_000,
    }));
    h.commit(EntryPayload::Command(Command::FireTimers {
        seq: 0,
        fired: vec![],
        batch: Bytes::from(crate::batch::BatchWriter::new().finish()),
    }));
    h.commit(EntryPayload::Command(Command::FireTimers {
        seq: 0,
        fired: vec![],
        batch: Bytes::from(crate::batch::BatchWriter::new().finish()),
    }));
    h.commit(EntryPayload::Command(Command::PutAuth {
        key: "alice".into(),
        value: Bytes::from_static(b"A1"),
    }));
    h.send_props(
        "T",
        &[
            (PROP_TRANSACTION_PREPARED, "true"),
            (PROP_PRODUCER_GROUP, "pg"),
            (PROP_UNIQ_KEY, "ID1"),
        ],
        "half",
    );
}

#[test]
fn every_kind_of_state_survives_export_import_and_restart() {
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = Harness::open(empty_dir.path());
    let empty_sections = sections(&empty.store.export_state(&[]).unwrap().image);

    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    every_kind(&mut h);
    let export = h.store.export_state(&[]).unwrap();
    assert_eq!(export.applied, h.store.applied());
    assert_eq!(image_applied(&export.image).unwrap(), export.applied);
    let full = sections(&export.image);
    for kind in Kind::ALL {
        let body = full
            .get(&kind)
            .unwrap_or_else(|| panic!("no {} section", kind.name()));
        assert_ne!(
            Some(body),
            empty_sections.get(&kind),
            "the {} section exports nothing of a store that has some: \
             export it, or give every_kind() some of it",
            kind.name()
        );
    }

    let other = tempfile::tempdir().unwrap();
    let mut h2 = Harness::open(other.path());
    h2.create_topic("stale", 1);
    h2.store.import_state(&export.image).unwrap();
    let again = h2.store.export_state(&[]).unwrap().image;
    assert_eq!(
        sections(&again),
        full,
        "import then export gives the same state"
    );
    assert_eq!(
        h2.store.topic("stale"),
        None,
        "import replaces what was there"
    );
    assert_eq!(h2.store.pending_transactions().len(), 1);

    // What import wrote is what a restart loads.
    h2.store.close().unwrap();
    drop(h2);
    let h3 = Harness::open(other.path());
    let reloaded = h3.store.export_state(&[]).unwrap().image;
    assert_eq!(
        sections(&reloaded),
        full,
        "a restart loads the imported state"
    );
}

#[test]
fn images_that_lack_or_add_a_section_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    every_kind(&mut h);
    let image = h.store.export_state(&[]).unwrap().image;
    let full = sections(&image);
    let rebuild = |kinds: &[(u8, Bytes)]| {
        let mut w = Writer::new();
        w.raw(&image[..18]);
        w.u8(kinds.len() as u8);
        for (tag, body) in kinds {
            w.u8(*tag);
            w.bytes32(body).unwrap();
        }
        w.finish()
    };
    let without_tx: Vec<_> = full
        .iter()
        .filter(|(k, _)| **k != Kind::Transactions)
        .map(|(k, b)| (*k as u8, b.clone()))
        .collect();
    let err = h.store.import_state(&rebuild(&without_tx)).unwrap_err();
    assert!(err.to_string().contains("no transactions section"), "{err}");
    let mut with_unknown: Vec<_> = full.iter().map(|(k, b)| (*k as u8, b.clone())).collect();
    with_unknown.push((200, Bytes::new()));
    let err = h.store.import_state(&rebuild(&with_unknown)).unwrap_err();
    assert!(err.to_string().contains("upgrade this node"), "{err}");
    assert!(h.store.import_state(b"\x09").is_err());
    assert_eq!(
        h.store.pending_transactions().len(),
        1,
        "a refused image changes nothing"
    );
}

/// A version-2 image (before sections), as 2026-11 builds wrote it.
#[test]
fn a_version_2_image_still_imports() {
    let mut w = Writer::new();
    w.u8(2).u8(1).u64(3).u64(40);
    w.u32(1).u64(5);
    crate::entry::encode_topic(&mut w, &raftmq_proto::TopicConfig::new("T", 4)).unwrap();
    w.u32(1);
    crate::entry::encode_group(&mut w, &ConsumerGroupConfig::new("g")).unwrap();
    w.u32(1).bytes16(b"T").unwrap().u32(2).u64(17);
    w.u32(1)
        .bytes16(&crate::index::offset_key("g", "T", 2))
        .unwrap()
        .u64(9);
    w.u32(1)
        .bytes16(&MetaKey::Lock("g", "T", 2).encode())
        .unwrap()
        .bytes16(b"c1")
        .unwrap()
        .u64(99);
    w.u64(6).u32(1).u64(33);
    w.u32(1).bytes16(b"alice").unwrap().bytes32(b"A").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(dir.path());
    h.store.import_state(&w.finish()).unwrap();
    assert_eq!(h.store.applied(), Some((3, 40)));
    assert_eq!(h.store.topic("T").unwrap().read_queues, 4);
    assert!(h.store.group("g").is_some());
    assert_eq!(h.store.queue_bounds("T", 2).unwrap().1, 17);
    assert_eq!(h.store.consumer_offset("g", "T", 2).unwrap(), Some(9));
    assert_eq!(h.store.queue_lock("g", "T", 2), Some(("c1".into(), 99)));
    assert_eq!(h.store.fire_seq(), 6);
    assert_eq!(h.store.auth_records().1["alice"], Bytes::from_static(b"A"));
}
