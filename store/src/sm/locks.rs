//! Orderly consumers' queue locks: (group, topic, queue) -> (client, expiry ms).

use std::collections::BTreeMap;

use raftmq_proto::{ConsumerGroup, QueueId, TopicName};
use rocksdb::WriteBatch;

use super::{Ctx, SmState};
use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::image::count;
use crate::index::{Indexes, CF_META};
use crate::meta::{MetaKey, MetaPrefix};
use crate::store::{ApplyOutcome, Store};

/// A queue lock's key: (consumer group, topic, queue).
pub(crate) type LockKey = (String, String, u32);

/// The locks section: holder and expiry by queue.
pub(crate) type Locks = BTreeMap<LockKey, (String, u64)>;

fn key_of((g, t, q): &LockKey) -> Vec<u8> {
    MetaKey::Lock(g, t, *q).encode()
}

fn value(client: &str, expire_ms: u64) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.bytes16(client.as_bytes())?;
    w.u64(expire_ms);
    Ok(w.finish())
}

fn parse_value(v: &[u8]) -> Result<(String, u64)> {
    let mut r = Reader::new(bytes::Bytes::copy_from_slice(v), "queue lock");
    Ok((r.str16()?, r.u64()?))
}

pub(crate) fn lock(
    sm: &mut SmState,
    ctx: &mut Ctx<'_>,
    group: &ConsumerGroup,
    client: &str,
    queues: &[(TopicName, QueueId)],
    now_ms: u64,
    lease_ms: u64,
) -> Result<ApplyOutcome> {
    let meta = ctx.idx.cf(CF_META)?;
    let mut granted = Vec::with_capacity(queues.len());
    for (t, q) in queues {
        let key = (group.as_str().to_owned(), t.as_str().to_owned(), q.0);
        let free = match sm.locks.get(&key) {
            None => true,
            Some((holder, expire)) => holder == client || *expire <= now_ms,
        };
        if free {
            let expire = now_ms.saturating_add(lease_ms);
            ctx.durable
                .put_cf(meta, key_of(&key), value(client, expire)?);
            sm.locks.insert(key, (client.to_owned(), expire));
        }
        granted.push(free);
    }
    Ok(ApplyOutcome::Locked(granted))
}

pub(crate) fn unlock(
    sm: &mut SmState,
    ctx: &mut Ctx<'_>,
    group: &ConsumerGroup,
    client: &str,
    queues: &[(TopicName, QueueId)],
) -> Result<ApplyOutcome> {
    let meta = ctx.idx.cf(CF_META)?;
    for (t, q) in queues {
        let key = (group.as_str().to_owned(), t.as_str().to_owned(), q.0);
        if sm
            .locks
            .get(&key)
            .is_some_and(|(holder, _)| holder == client)
        {
            ctx.durable.delete_cf(meta, key_of(&key));
            sm.locks.remove(&key);
        }
    }
    Ok(ApplyOutcome::Command)
}

pub(crate) fn load(idx: &Indexes) -> Result<Locks> {
    let mut s = Locks::new();
    for (k, v) in idx.scan_prefix(CF_META, MetaPrefix::Lock.bytes())? {
        if let Some(MetaKey::Lock(g, t, q)) = MetaKey::decode(&k) {
            s.insert((g.to_owned(), t.to_owned(), q), parse_value(&v)?);
        }
    }
    Ok(s)
}

pub(crate) fn export(s: &Locks, w: &mut Writer) -> Result<()> {
    w.u32(count(s.len())?);
    for ((g, t, q), (client, expire)) in s {
        w.bytes16(g.as_bytes())?;
        w.bytes16(t.as_bytes())?;
        w.u32(*q);
        w.bytes16(client.as_bytes())?;
        w.u64(*expire);
    }
    Ok(())
}

pub(crate) fn decode(r: &mut Reader) -> Result<Locks> {
    let mut s = Locks::new();
    for _ in 0..r.u32()? {
        let key = (r.str16()?, r.str16()?, r.u32()?);
        s.insert(key, (r.str16()?, r.u64()?));
    }
    Ok(s)
}

/// Reads the locks of an image made before sections: keys are encoded `meta` keys.
pub(crate) fn decode_legacy(r: &mut Reader) -> Result<Locks> {
    let mut s = Locks::new();
    for _ in 0..r.u32()? {
        let key = r.bytes16()?;
        let client = r.str16()?;
        let expire = r.u64()?;
        if let Some(MetaKey::Lock(g, t, q)) = MetaKey::decode(&key) {
            s.insert((g.to_owned(), t.to_owned(), q), (client, expire));
        }
    }
    Ok(s)
}

/// Replaces the section's durable keys with `s`'s.
pub(crate) fn install(s: &Locks, idx: &Indexes, b: &mut WriteBatch) -> Result<()> {
    let meta = idx.cf(CF_META)?;
    b.delete_range_cf(meta, MetaPrefix::Lock.bytes(), &MetaPrefix::Lock.end()[..]);
    for (key, (client, expire)) in s {
        b.put_cf(meta, key_of(key), value(client, *expire)?);
    }
    Ok(())
}

impl Store {
    /// Who holds the lock of a queue, and until when (ms), if anyone.
    pub fn queue_lock(&self, group: &str, topic: &str, queue: u32) -> Option<(String, u64)> {
        self.lock()
            .locks
            .get(&(group.to_owned(), topic.to_owned(), queue))
            .cloned()
    }
}
