//! Explicit encodings of Raft state: how openraft entries become commit-log payloads, and
//! how votes and memberships are stored in the `meta` column family.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::EntryPayload as RaftPayload;
use raftmq_store::codec::{Reader, Writer};
use raftmq_store::{EntryPayload, Record};

use crate::types::{log_id, Entry, Membership, RaftNode, RaftRequest, StoredMembership, Vote};

/// A decoding or encoding failure, as the `io::Error` openraft's storage API wants.
pub fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The commit-log payload of an entry.
///
/// # Errors
/// A membership too large for its length fields.
pub fn entry_to_payload(e: &Entry) -> std::io::Result<Bytes> {
    match &e.payload {
        // A normal entry's data already is a complete store payload.
        RaftPayload::Normal(RaftRequest(b)) => Ok(b.clone()),
        RaftPayload::Blank => Ok(Bytes::from(EntryPayload::Blank.encode().map_err(io_err)?)),
        RaftPayload::Membership(m) => {
            let body = encode_membership(m).map_err(io_err)?;
            Ok(Bytes::from(
                EntryPayload::Membership(Bytes::from(body))
                    .encode()
                    .map_err(io_err)?,
            ))
        }
    }
}

/// Rebuilds the openraft entry of a commit-log record.
///
/// # Errors
/// The payload does not decode.
pub fn record_to_entry(r: Record) -> std::io::Result<Entry> {
    let id = log_id(r.term, r.index);
    Ok(
        match EntryPayload::decode(r.payload.clone()).map_err(io_err)? {
            EntryPayload::Blank => Entry::new_blank(id),
            EntryPayload::Membership(body) => {
                Entry::new_membership(id, decode_membership(body).map_err(io_err)?)
            }
            EntryPayload::Messages(_) | EntryPayload::Command(_) => {
                Entry::new_normal(id, RaftRequest(r.payload))
            }
        },
    )
}

/// Encodes a membership: voter configs then nodes.
///
/// # Errors
/// Counts or strings too large for their length fields.
pub fn encode_membership(m: &Membership) -> raftmq_store::Result<Vec<u8>> {
    let mut w = Writer::new();
    w.u8(1);
    let configs = m.get_joint_config();
    w.u32(configs.len() as u32);
    for c in configs {
        w.u32(c.len() as u32);
        for id in c {
            w.u64(*id);
        }
    }
    let nodes: Vec<_> = m.nodes().collect();
    w.u32(nodes.len() as u32);
    for (id, n) in nodes {
        w.u64(*id);
        w.bytes16(n.raft_addr.as_bytes())?;
        w.bytes16(n.client_addr.as_bytes())?;
    }
    Ok(w.finish())
}

/// Decodes [`encode_membership`].
///
/// # Errors
/// Malformed bytes or an impossible membership.
pub fn decode_membership(b: Bytes) -> raftmq_store::Result<Membership> {
    let mut r = Reader::new(b, "membership");
    let v = r.u8()?;
    if v != 1 {
        return Err(raftmq_store::Error::codec(
            "membership",
            format!("version {v}"),
        ));
    }
    let mut configs = Vec::new();
    for _ in 0..r.u32()?.min(16) {
        let mut c = BTreeSet::new();
        for _ in 0..r.u32()?.min(1024) {
            c.insert(r.u64()?);
        }
        configs.push(c);
    }
    let mut nodes = BTreeMap::new();
    for _ in 0..r.u32()?.min(1024) {
        let id = r.u64()?;
        let raft_addr = r.str16()?;
        let client_addr = r.str16()?;
        nodes.insert(
            id,
            RaftNode {
                raft_addr,
                client_addr,
            },
        );
    }
    r.finish()?;
    Membership::new(configs, nodes)
        .map_err(|e| raftmq_store::Error::codec("membership", e.to_string()))
}

/// Encodes a stored membership: the id of the entry that set it, then the membership.
///
/// # Errors
/// As [`encode_membership`].
pub fn encode_stored_membership(m: &StoredMembership) -> raftmq_store::Result<Vec<u8>> {
    let mut w = Writer::new();
    match m.log_id() {
        Some(id) => w.u8(1).u64(id.leader_id.term).u64(id.index),
        None => w.u8(0),
    };
    w.raw(&encode_membership(m.membership())?);
    Ok(w.finish())
}

/// Decodes [`encode_stored_membership`].
///
/// # Errors
/// Malformed bytes.
pub fn decode_stored_membership(b: Bytes) -> raftmq_store::Result<StoredMembership> {
    let mut r = Reader::new(b, "stored membership");
    let id = match r.u8()? {
        0 => None,
        _ => Some(log_id(r.u64()?, r.u64()?)),
    };
    let m = decode_membership(r.rest())?;
    Ok(StoredMembership::new(id, m))
}

/// Encodes a vote: term, voted-for node, committed flag.
pub fn encode_vote(v: &Vote) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(1)
        .u64(v.leader_id.term)
        .u64(v.leader_id.voted_for)
        .u8(u8::from(v.committed));
    w.finish()
}

/// Decodes [`encode_vote`].
///
/// # Errors
/// Malformed bytes.
pub fn decode_vote(b: Bytes) -> raftmq_store::Result<Vote> {
    let mut r = Reader::new(b, "vote");
    let v = r.u8()?;
    if v != 1 {
        return Err(raftmq_store::Error::codec("vote", format!("version {v}")));
    }
    let term = r.u64()?;
    let node = r.u64()?;
    let committed = r.u8()? != 0;
    r.finish()?;
    Ok(if committed {
        Vote::new_committed(term, node)
    } else {
        Vote::new(term, node)
    })
}

/// Encodes a log id.
pub fn encode_log_id(id: &crate::types::LogId) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(id.leader_id.term).u64(id.index);
    w.finish()
}

/// Decodes [`encode_log_id`].
///
/// # Errors
/// Malformed bytes.
pub fn decode_log_id(b: Bytes) -> raftmq_store::Result<crate::types::LogId> {
    let mut r = Reader::new(b, "log id");
    let id = log_id(r.u64()?, r.u64()?);
    r.finish()?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_and_vote_round_trip() {
        let nodes: BTreeMap<u64, RaftNode> = (1..=3)
            .map(|i| {
                (
                    i,
                    RaftNode {
                        raft_addr: format!("r{i}"),
                        client_addr: format!("c{i}"),
                    },
                )
            })
            .collect();
        let m = Membership::new(vec![[1, 2, 3].into_iter().collect()], nodes).unwrap();
        let sm = StoredMembership::new(Some(log_id(2, 9)), m);
        let back =
            decode_stored_membership(Bytes::from(encode_stored_membership(&sm).unwrap())).unwrap();
        assert_eq!(back, sm);
        let v = Vote::new_committed(7, 2);
        assert_eq!(decode_vote(Bytes::from(encode_vote(&v))).unwrap(), v);
    }

    #[test]
    fn entries_round_trip_through_records() {
        let nodes: BTreeMap<u64, RaftNode> = [(1, RaftNode::default())].into_iter().collect();
        let m = Membership::new(vec![[1].into_iter().collect()], nodes).unwrap();
        let cmd = EntryPayload::Command(raftmq_store::Command::DeleteTopic("T".into()))
            .encode()
            .unwrap();
        for e in [
            Entry::new_blank(log_id(1, 1)),
            Entry::new_membership(log_id(1, 2), m),
            Entry::new_normal(log_id(3, 3), RaftRequest(Bytes::from(cmd))),
        ] {
            let payload = entry_to_payload(&e).unwrap();
            let back = record_to_entry(Record {
                term: 3.min(e.log_id.leader_id.term),
                index: e.log_id.index,
                payload,
            })
            .unwrap();
            assert_eq!(back.log_id, e.log_id);
            assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
        }
    }
}
