//! RocksDB column families and their typed accessors.
//!
//! | CF | key | value |
//! |---|---|---|
//! | `cq` | topic `\0` queue u32 BE, offset u64 BE | [`CqUnit`] |
//! | `keys` | topic `\0` key `\0` log index u64 BE, slot u32 BE | empty |
//! | `timers` | due ms u64 BE, log index u64 BE, slot u32 BE | empty |
//! | `offsets` | group `\0` topic `\0` queue u32 BE | offset u64 LE |
//! | `meta` | a [`MetaKey`] | depends on the key |
//!
//! Big-endian integers in keys keep RocksDB's byte order equal to numeric order. `cq` and
//! `keys` are derived from the log: written without WAL and rebuilt on open from the
//! checkpoint each of them holds under [`CHECKPOINT_KEY`].

use std::path::Path;

use bytes::Bytes;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// Column family names.
pub const CF_CQ: &str = "cq";
/// Query-by-key index.
pub const CF_KEYS: &str = "keys";
/// Pending delayed messages, by due time.
pub const CF_TIMERS: &str = "timers";
/// Consumer offsets.
pub const CF_OFFSETS: &str = "offsets";
/// The column families derived from the log (written without WAL, rebuilt on open).
pub const DERIVED_CFS: [&str; 3] = [CF_CQ, CF_KEYS, CF_TIMERS];
/// Metadata.
pub const CF_META: &str = "meta";

/// Key, in each derived column family, of the log index up to which it is complete.
/// `0xFF` cannot start a topic name, so it sorts after and never collides with data.
pub const CHECKPOINT_KEY: &[u8] = b"\xff\xffcheckpoint";

const CQ_UNIT_VERSION: u8 = 1;

/// One consume-queue unit: where a queue's message lives in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqUnit {
    /// Log index of the entry holding the message.
    pub log_index: u64,
    /// Position of the message within the entry's batch.
    pub slot: u32,
    /// Hash of the tag (0 = no tag), for broker-side filtering without reading the log.
    pub tag_hash: u32,
    /// Leader clock when logged, ms: for offset lookup by time.
    pub store_ms: u64,
    /// Encoded size of the message.
    pub size: u32,
}

impl CqUnit {
    fn encode(&self) -> [u8; 29] {
        let mut b = [0u8; 29];
        b[0] = CQ_UNIT_VERSION;
        b[1..9].copy_from_slice(&self.log_index.to_le_bytes());
        b[9..13].copy_from_slice(&self.slot.to_le_bytes());
        b[13..17].copy_from_slice(&self.tag_hash.to_le_bytes());
        b[17..25].copy_from_slice(&self.store_ms.to_le_bytes());
        b[25..29].copy_from_slice(&self.size.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(Bytes::copy_from_slice(b), "consume-queue unit");
        let v = r.u8()?;
        if v != CQ_UNIT_VERSION {
            return Err(Error::codec("consume-queue unit", format!("version {v}")));
        }
        let unit = CqUnit {
            log_index: r.u64()?,
            slot: r.u32()?,
            tag_hash: r.u32()?,
            store_ms: r.u64()?,
            size: r.u32()?,
        };
        r.finish()?;
        Ok(unit)
    }
}

/// The hash stored for a tag: CRC-32C, with 0 reserved for "no tag".
pub fn tag_hash(tag: &str) -> u32 {
    if tag.is_empty() {
        0
    } else {
        crc32c::crc32c(tag.as_bytes()).max(1)
    }
}

pub use crate::meta::{MetaKey, MetaPrefix};

/// Encodes a consume-queue key.
pub fn cq_key(topic: &str, queue: u32, offset: u64) -> Vec<u8> {
    let mut k = cq_queue_prefix(topic, queue);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// The prefix shared by every unit of one queue.
pub fn cq_queue_prefix(topic: &str, queue: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 13);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&queue.to_be_bytes());
    k
}

/// The prefix shared by every unit of one topic.
pub fn cq_topic_prefix(topic: &str) -> Vec<u8> {
    [topic.as_bytes(), b"\0"].concat()
}

/// Encodes a key-index key.
pub fn key_index_key(topic: &str, key: &str, log_index: u64, slot: u32) -> Vec<u8> {
    let mut k = key_index_prefix(topic, key);
    k.extend_from_slice(&log_index.to_be_bytes());
    k.extend_from_slice(&slot.to_be_bytes());
    k
}

/// The prefix of every position indexed for `(topic, key)`.
pub fn key_index_prefix(topic: &str, key: &str) -> Vec<u8> {
    [topic.as_bytes(), b"\0", key.as_bytes(), b"\0"].concat()
}

/// A pending delayed message: when it is due and where it is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerKey {
    /// Due time, ms since the Unix epoch.
    pub due_ms: u64,
    /// Log index of the entry holding the message.
    pub log_index: u64,
    /// Position in the entry.
    pub slot: u32,
}

impl TimerKey {
    /// The `timers` key.
    pub fn encode(&self) -> [u8; 20] {
        let mut k = [0u8; 20];
        k[..8].copy_from_slice(&self.due_ms.to_be_bytes());
        k[8..16].copy_from_slice(&self.log_index.to_be_bytes());
        k[16..].copy_from_slice(&self.slot.to_be_bytes());
        k
    }

    /// Decodes a `timers` key.
    pub fn decode(k: &[u8]) -> Option<Self> {
        if k.len() != 20 {
            return None;
        }
        Some(Self {
            due_ms: u64::from_be_bytes(k[..8].try_into().ok()?),
            log_index: u64::from_be_bytes(k[8..16].try_into().ok()?),
            slot: u32::from_be_bytes(k[16..].try_into().ok()?),
        })
    }
}

/// Encodes a consumer-offset key.
pub fn offset_key(group: &str, topic: &str, queue: u32) -> Vec<u8> {
    [
        group.as_bytes(),
        b"\0",
        topic.as_bytes(),
        b"\0",
        &queue.to_be_bytes(),
    ]
    .concat()
}

/// The smallest key strictly greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

/// A key and its value, as RocksDB returns them.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// The RocksDB database with its four column families.
#[derive(Debug)]
pub struct Indexes {
    db: DB,
}

/// Table files RocksDB keeps open at most (it reopens others as needed).
const MAX_OPEN_FILES: i32 = 256;

impl Indexes {
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// RocksDB errors (a locked or damaged database).
    pub fn open(dir: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(4);
        opts.set_max_total_wal_size(256 << 20);
        // Bounded, so served connections cannot starve RocksDB of file descriptors: the
        // process keeps `raftmq_proto::conn_limit::RESERVED_FDS` for files like these.
        opts.set_max_open_files(MAX_OPEN_FILES);
        let cfs = [CF_CQ, CF_KEYS, CF_TIMERS, CF_OFFSETS, CF_META]
            .into_iter()
            .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        Ok(Self { db })
    }

    /// A column family handle.
    pub fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::Internal(format!("column family {name} is missing")))
    }

    /// The raw database, for batches spanning column families.
    pub fn db(&self) -> &DB {
        &self.db
    }

    /// Writes a batch of derived data without WAL: it is rebuilt from the log after a crash.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn write_derived(&self, batch: WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        Ok(self.db.write_opt(batch, &wo)?)
    }

    /// Writes a batch through the WAL; `sync` also fsyncs the WAL.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn write_durable(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        Ok(self.db.write_opt(batch, &wo)?)
    }

    /// Reads one value.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    /// Reads a `meta` value.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn get_meta(&self, key: &MetaKey<'_>) -> Result<Option<Vec<u8>>> {
        self.get(CF_META, &key.encode())
    }

    /// Reads a `meta` value by raw key.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn get_meta_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(CF_META, key)
    }

    /// Writes one `meta` value through the WAL, synced.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn put_meta_synced(&self, key: &MetaKey<'_>, value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_META)?, key.encode(), value);
        self.write_durable(b, true)
    }

    /// Every `(key, value)` whose key starts with `prefix`, in order.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn scan_prefix(&self, cf: &str, prefix: &[u8]) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(cf)?, IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    /// The consume-queue unit at `offset`.
    ///
    /// # Errors
    /// RocksDB or decoding errors.
    pub fn cq_get(&self, topic: &str, queue: u32, offset: u64) -> Result<Option<CqUnit>> {
        self.get(CF_CQ, &cq_key(topic, queue, offset))?
            .map(|v| CqUnit::decode(&v))
            .transpose()
    }

    /// Up to `max` units of a queue from `offset` on, with their offsets.
    ///
    /// # Errors
    /// RocksDB or decoding errors.
    pub fn cq_range(
        &self,
        topic: &str,
        queue: u32,
        offset: u64,
        max: usize,
    ) -> Result<Vec<(u64, CqUnit)>> {
        let prefix = cq_queue_prefix(topic, queue);
        let start = cq_key(topic, queue, offset);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_CQ)?,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            if out.len() >= max {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(&prefix) || k.len() != prefix.len() + 8 {
                break;
            }
            let mut off = [0u8; 8];
            off.copy_from_slice(&k[prefix.len()..]);
            out.push((u64::from_be_bytes(off), CqUnit::decode(&v)?));
        }
        Ok(out)
    }

    /// The smallest offset still indexed in a queue.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn cq_first_offset(&self, topic: &str, queue: u32) -> Result<Option<u64>> {
        Ok(self.cq_range(topic, queue, 0, 1)?.first().map(|(o, _)| *o))
    }

    /// Adds a unit to a derived batch.
    ///
    /// # Errors
    /// A missing column family.
    pub fn cq_put(
        &self,
        b: &mut WriteBatch,
        topic: &str,
        queue: u32,
        offset: u64,
        unit: &CqUnit,
    ) -> Result<()> {
        b.put_cf(self.cf(CF_CQ)?, cq_key(topic, queue, offset), unit.encode());
        Ok(())
    }

    /// The derived checkpoint of a column family (the log index it is complete up to).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn checkpoint(&self, cf: &str) -> Result<Option<u64>> {
        Ok(self.get(cf, CHECKPOINT_KEY)?.and_then(|v| decode_u64(&v)))
    }

    /// Flushes the derived column families to disk and records that they are complete up
    /// to `index`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn write_checkpoint(&self, index: u64) -> Result<()> {
        let mut b = WriteBatch::default();
        for cf in DERIVED_CFS {
            self.db.flush_cf(self.cf(cf)?)?;
            b.put_cf(self.cf(cf)?, CHECKPOINT_KEY, index.to_le_bytes());
        }
        self.write_durable(b, true)
    }

    /// Pending timers due at or before `now_ms`, earliest first, at most `max`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn timers_due(&self, now_ms: u64, max: usize) -> Result<Vec<TimerKey>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_TIMERS)?, IteratorMode::Start)
        {
            let (k, _) = item?;
            let Some(t) = TimerKey::decode(&k) else {
                continue;
            };
            if t.due_ms > now_ms || out.len() >= max {
                break;
            }
            out.push(t);
        }
        Ok(out)
    }

    /// Every pending timer (for retention, which must keep their entries).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn all_timers(&self) -> Result<Vec<TimerKey>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_TIMERS)?, IteratorMode::Start)
        {
            let (k, _) = item?;
            if let Some(t) = TimerKey::decode(&k) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Deletes everything in the derived column families (for a rebuild from scratch).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn clear_derived(&self) -> Result<()> {
        let mut b = WriteBatch::default();
        for cf in DERIVED_CFS {
            b.delete_range_cf(self.cf(cf)?, [0u8].as_slice(), [0xffu8; 16].as_slice());
        }
        self.write_durable(b, true)
    }
}

/// Decodes an 8-byte little-endian value.
pub fn decode_u64(v: &[u8]) -> Option<u64> {
    let a: [u8; 8] = v.try_into().ok()?;
    Some(u64::from_le_bytes(a))
}

/// Encodes a topic's meta value: version, creation index, configuration.
pub fn encode_topic_meta(created_index: u64, t: &raftmq_proto::TopicConfig) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.u8(1).u64(created_index);
    crate::entry::encode_topic(&mut w, t)?;
    Ok(w.finish())
}

/// Decodes a topic's meta value.
pub fn decode_topic_meta(v: &[u8]) -> Result<(u64, raftmq_proto::TopicConfig)> {
    let mut r = Reader::new(Bytes::copy_from_slice(v), "topic metadata");
    let ver = r.u8()?;
    if ver != 1 {
        return Err(Error::codec("topic metadata", format!("version {ver}")));
    }
    let created = r.u64()?;
    let t = crate::entry::decode_topic(&mut r)?;
    r.finish()?;
    Ok((created, t))
}

/// Encodes a group's meta value.
pub fn encode_group_meta(g: &raftmq_proto::ConsumerGroupConfig) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.u8(1);
    crate::entry::encode_group(&mut w, g)?;
    Ok(w.finish())
}

/// Decodes a group's meta value.
pub fn decode_group_meta(v: &[u8]) -> Result<raftmq_proto::ConsumerGroupConfig> {
    let mut r = Reader::new(Bytes::copy_from_slice(v), "group metadata");
    let ver = r.u8()?;
    if ver != 1 {
        return Err(Error::codec("group metadata", format!("version {ver}")));
    }
    let g = crate::entry::decode_group(&mut r)?;
    r.finish()?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cq_keys_sort_numerically() {
        assert!(cq_key("t", 1, 255) < cq_key("t", 1, 256));
        assert!(cq_key("t", 1, u64::MAX) < cq_key("t", 2, 0));
        assert!(cq_key("t", 9, 0) < CHECKPOINT_KEY.to_vec());
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        let p = cq_queue_prefix("t", 3);
        let end = prefix_end(&p);
        assert!(cq_key("t", 3, u64::MAX) < end);
        assert!(cq_key("t", 4, 0) >= end);
    }

    #[test]
    fn cq_unit_round_trip() {
        let u = CqUnit {
            log_index: 9,
            slot: 2,
            tag_hash: 77,
            store_ms: 123,
            size: 1024,
        };
        assert_eq!(CqUnit::decode(&u.encode()).unwrap(), u);
        assert!(CqUnit::decode(&[1, 2, 3]).is_err());
    }
}
