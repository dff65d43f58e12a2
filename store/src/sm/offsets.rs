//! Committed consumer offsets: kept in RocksDB's `offsets` column family only (no
//! in-memory copy), keyed by (group, topic, queue).

use raftmq_proto::{ConsumerGroup, Offset, QueueId, TopicName};
use rocksdb::WriteBatch;

use super::Ctx;
use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::image::count;
use crate::index::{self, offset_key, prefix_end, Indexes, CF_OFFSETS};
use crate::store::{ApplyOutcome, Store};

/// The offsets section of an image: `(encoded key, offset)` rows.
pub(crate) type OffsetRows = Vec<(Vec<u8>, u64)>;

pub(crate) fn commit(
    ctx: &mut Ctx<'_>,
    group: &ConsumerGroup,
    offsets: &[(TopicName, QueueId, Offset)],
) -> Result<ApplyOutcome> {
    let cf = ctx.idx.cf(CF_OFFSETS)?;
    for (t, q, o) in offsets {
        ctx.durable.put_cf(
            cf,
            offset_key(group.as_str(), t.as_str(), q.0),
            o.0.to_le_bytes(),
        );
    }
    Ok(ApplyOutcome::Command)
}

/// Deletes every group's offsets of a topic.
pub(crate) fn delete_topic(ctx: &mut Ctx<'_>, topic: &str) -> Result<()> {
    let cf = ctx.idx.cf(CF_OFFSETS)?;
    for group in groups_with_offsets(ctx.idx)? {
        let p = [group.as_bytes(), b"\0", topic.as_bytes(), b"\0"].concat();
        ctx.durable.delete_range_cf(cf, &p, &prefix_end(&p));
    }
    Ok(())
}

/// Deletes a group's offsets.
pub(crate) fn delete_group(ctx: &mut Ctx<'_>, group: &str) -> Result<()> {
    let p = [group.as_bytes(), b"\0"].concat();
    ctx.durable
        .delete_range_cf(ctx.idx.cf(CF_OFFSETS)?, &p, &prefix_end(&p));
    Ok(())
}

fn groups_with_offsets(idx: &Indexes) -> Result<Vec<String>> {
    let mut groups: Vec<String> = Vec::new();
    for (k, _) in idx.scan_prefix(CF_OFFSETS, b"")? {
        if let Some(end) = k.iter().position(|&b| b == 0) {
            let g = String::from_utf8_lossy(&k[..end]).into_owned();
            if groups.last() != Some(&g) {
                groups.push(g);
            }
        }
    }
    Ok(groups)
}

/// Writes every row (read while the caller holds the state lock, so no apply interleaves).
pub(crate) fn export(idx: &Indexes, w: &mut Writer) -> Result<()> {
    let rows = idx.scan_prefix(CF_OFFSETS, b"")?;
    w.u32(count(rows.len())?);
    for (k, v) in rows {
        w.bytes16(&k)?;
        w.u64(index::decode_u64(&v).unwrap_or(0));
    }
    Ok(())
}

pub(crate) fn decode(r: &mut Reader) -> Result<OffsetRows> {
    let mut rows = Vec::new();
    for _ in 0..r.u32()? {
        rows.push((r.bytes16()?.to_vec(), r.u64()?));
    }
    Ok(rows)
}

/// Replaces every committed offset with `rows`.
pub(crate) fn install(rows: &OffsetRows, idx: &Indexes, b: &mut WriteBatch) -> Result<()> {
    let cf = idx.cf(CF_OFFSETS)?;
    b.delete_range_cf(cf, [0u8].as_slice(), [0xffu8; 16].as_slice());
    for (k, o) in rows {
        b.put_cf(cf, k, o.to_le_bytes());
    }
    Ok(())
}

impl Store {
    /// Every group that has a committed offset.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn offset_groups(&self) -> Result<Vec<String>> {
        groups_with_offsets(&self.idx)
    }

    /// A consumer group's committed offset of a queue.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn consumer_offset(&self, group: &str, topic: &str, queue: u32) -> Result<Option<u64>> {
        Ok(self
            .idx
            .get(CF_OFFSETS, &offset_key(group, topic, queue))?
            .and_then(|v| index::decode_u64(&v)))
    }

    /// Every committed offset of a group: `(topic, queue, offset)`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn consumer_offsets(&self, group: &str) -> Result<Vec<(String, u32, u64)>> {
        let prefix = [group.as_bytes(), b"\0"].concat();
        let mut out = Vec::new();
        for (k, v) in self.idx.scan_prefix(CF_OFFSETS, &prefix)? {
            let rest = &k[prefix.len()..];
            let Some(nul) = rest.iter().position(|&b| b == 0) else {
                continue;
            };
            let (topic, q) = (&rest[..nul], &rest[nul + 1..]);
            let (Ok(q), Some(o)) = (<[u8; 4]>::try_from(q), index::decode_u64(&v)) else {
                continue;
            };
            out.push((
                String::from_utf8_lossy(topic).into_owned(),
                u32::from_be_bytes(q),
                o,
            ));
        }
        Ok(out)
    }
}
