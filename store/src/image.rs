//! The state image: everything the state machine owns besides the log, for Raft snapshots.
//!
//! ```text
//! image := version u8 (=1) | applied: u8 present, term u64, index u64
//!          | topics: u32 n, (created_index u64, topic config)*
//!          | groups: u32 n, group config*
//!          | queue next offsets: u32 n, (topic u16+UTF-8, queue u32, next u64)*
//!          | consumer offsets: u32 n, (key: u16 len + bytes, offset u64)*
//!          | queue locks: u32 n, (key: u16 len + bytes, client u16+UTF-8, expiry u64)*
//!          | fire sequence u64 | refused fire entries: u32 n, log index u64*
//!          | access-control records (version 2): u32 n, (key u16+UTF-8, value u32+bytes)*
//! ```
//! Version 1 images (no access-control section) still import, with no records.
//! The log itself travels separately (the segments the receiver lacks); the derived indexes
//! are rebuilt from it after an import.

use bytes::Bytes;
use rocksdb::WriteBatch;

use crate::codec::{Reader, Writer};
use crate::entry::{decode_group, decode_topic, encode_group, encode_topic};
use crate::error::{Error, Result};
use crate::index::{self, prefix_end, MetaKey, CF_META, CF_OFFSETS};
use crate::store::{SmState, Store, TopicMeta};

const IMAGE_VERSION: u8 = 2;

fn count(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Invalid(format!("{n} items in a state image")))
}

/// A state image and the extra meta values read with it.
#[derive(Debug, Clone)]
pub struct StateExport {
    /// The encoded image.
    pub image: Vec<u8>,
    /// Values of the requested extra meta keys, in order.
    pub extra: Vec<Option<Vec<u8>>>,
}

impl Store {
    /// A consistent image of the state machine at its applied index, plus the values of
    /// `extra` meta keys read at the same moment (the raft crate's membership).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn export_state(&self, extra: &[MetaKey<'_>]) -> Result<StateExport> {
        let sm = self.lock();
        let extra = extra
            .iter()
            .map(|k| self.idx.get_meta(k))
            .collect::<Result<Vec<_>>>()?;
        let mut w = Writer::new();
        w.u8(IMAGE_VERSION);
        match sm.applied {
            Some((t, i)) => w.u8(1).u64(t).u64(i),
            None => w.u8(0).u64(0).u64(0),
        };
        w.u32(count(sm.topics.len())?);
        for t in sm.topics.values() {
            w.u64(t.created_index);
            encode_topic(&mut w, &t.config)?;
        }
        w.u32(count(sm.groups.len())?);
        for g in sm.groups.values() {
            encode_group(&mut w, g)?;
        }
        w.u32(count(sm.queue_next.len())?);
        for ((topic, q), next) in &sm.queue_next {
            w.bytes16(topic.as_bytes())?;
            w.u32(*q).u64(*next);
        }
        // Offsets are read while `sm` is held, so no apply interleaves.
        let offsets = self.idx.scan_prefix(CF_OFFSETS, b"")?;
        w.u32(count(offsets.len())?);
        for (k, v) in offsets {
            w.bytes16(&k)?;
            w.u64(index::decode_u64(&v).unwrap_or(0));
        }
        w.u32(count(sm.locks.len())?);
        for (key, (client, expire)) in &sm.locks {
            w.bytes16(&crate::store::lock_key(key))?;
            w.bytes16(client.as_bytes())?;
            w.u64(*expire);
        }
        w.u64(sm.fire_seq);
        w.u32(count(sm.rejected_fires.len())?);
        for i in &sm.rejected_fires {
            w.u64(*i);
        }
        w.u32(count(sm.auth.len())?);
        for (k, v) in &sm.auth {
            w.bytes16(k.as_bytes())?;
            w.bytes32(v)?;
        }
        drop(sm);
        Ok(StateExport {
            image: w.finish(),
            extra,
        })
    }

    /// Replaces the state machine with an image (a snapshot install), then rebuilds the
    /// derived indexes from the log, which must already hold the entries up to the image's
    /// applied index.
    ///
    /// # Errors
    /// A malformed image, RocksDB and I/O errors.
    pub fn import_state(&self, image: &[u8]) -> Result<()> {
        let mut r = Reader::new(Bytes::copy_from_slice(image), "state image");
        let v = r.u8()?;
        if v != 1 && v != IMAGE_VERSION {
            return Err(Error::codec("state image", format!("version {v}")));
        }
        let mut fresh = SmState::default();
        let present = r.u8()? != 0;
        let (t, i) = (r.u64()?, r.u64()?);
        fresh.applied = present.then_some((t, i));
        for _ in 0..r.u32()? {
            let created_index = r.u64()?;
            let config = decode_topic(&mut r)?;
            fresh.topics.insert(
                config.name.as_str().to_owned(),
                TopicMeta {
                    created_index,
                    config,
                },
            );
        }
        for _ in 0..r.u32()? {
            let g = decode_group(&mut r)?;
            fresh.groups.insert(g.name.as_str().to_owned(), g);
        }
        for _ in 0..r.u32()? {
            let topic = r.str16()?;
            let q = r.u32()?;
            fresh.queue_next.insert((topic, q), r.u64()?);
        }
        let mut offsets = Vec::new();
        for _ in 0..r.u32()? {
            offsets.push((r.bytes16()?, r.u64()?));
        }
        let mut locks = Vec::new();
        for _ in 0..r.u32()? {
            let key = r.bytes16()?;
            let client = r.str16()?;
            let expire = r.u64()?;
            locks.push((key, client, expire));
        }
        fresh.fire_seq = r.u64()?;
        for _ in 0..r.u32()? {
            fresh.rejected_fires.insert(r.u64()?);
        }
        if v >= 2 {
            for _ in 0..r.u32()? {
                let key = r.str16()?;
                fresh.auth.insert(key, r.bytes32()?);
            }
        }
        r.finish()?;

        let meta = self.idx.cf(CF_META)?;
        let offsets_cf = self.idx.cf(CF_OFFSETS)?;
        let mut b = WriteBatch::default();
        for prefix in [
            &b"topic/"[..],
            b"group/",
            b"qn/",
            b"lock/",
            b"rejected/",
            crate::store::AUTH_PREFIX,
        ] {
            b.delete_range_cf(meta, prefix, prefix_end(prefix).as_slice());
        }
        b.delete_range_cf(offsets_cf, [0u8].as_slice(), [0xffu8; 16].as_slice());
        for t in fresh.topics.values() {
            b.put_cf(
                meta,
                MetaKey::Topic(t.config.name.as_str()).encode(),
                index::encode_topic_meta(t.created_index, &t.config)?,
            );
        }
        for g in fresh.groups.values() {
            b.put_cf(
                meta,
                MetaKey::Group(g.name.as_str()).encode(),
                index::encode_group_meta(g)?,
            );
        }
        for ((topic, q), next) in &fresh.queue_next {
            b.put_cf(
                meta,
                MetaKey::QueueNext(topic, *q).encode(),
                next.to_le_bytes(),
            );
        }
        for (k, o) in &offsets {
            b.put_cf(offsets_cf, k, o.to_le_bytes());
        }
        for (key, client, expire) in &locks {
            b.put_cf(meta, key, crate::store::lock_value(client, *expire)?);
        }
        b.put_cf(meta, b"fireseq", fresh.fire_seq.to_le_bytes());
        for i in &fresh.rejected_fires {
            b.put_cf(meta, crate::store::rejected_key(*i), []);
        }
        for (k, v) in &fresh.auth {
            b.put_cf(meta, crate::store::auth_key(k), v);
        }
        match fresh.applied {
            Some((t, i)) => {
                let mut w = Writer::new();
                w.u64(t).u64(i);
                b.put_cf(meta, MetaKey::Applied.encode(), w.finish());
            }
            None => b.delete_cf(meta, MetaKey::Applied.encode()),
        }
        {
            let mut sm = self.lock();
            self.idx.write_durable(b, true)?;
            // The derived indexes describe the old state: rebuild them from scratch.
            self.idx.clear_derived()?;
            fresh.checkpoint = None;
            *sm = fresh;
            self.auth_changes
                .fetch_add(1, std::sync::atomic::Ordering::Release);
            for (k, v) in self.idx.scan_prefix(CF_META, b"lock/")? {
                if let Some((key, val)) = crate::store::parse_lock(&k, &v) {
                    sm.locks.insert(key, val);
                }
            }
        }
        crate::rebuild::rebuild_derived(self)?;
        tracing::info!(applied = ?self.applied(), "state image installed");
        Ok(())
    }
}
