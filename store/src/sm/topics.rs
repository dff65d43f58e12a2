//! Topics: their configs and each queue's next offset.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use raftmq_proto::TopicConfig;
use rocksdb::WriteBatch;

use super::{Ctx, SmState};
use crate::codec::{Reader, Writer};
use crate::entry::{decode_topic, encode_topic};
use crate::error::Result;
use crate::image::count;
use crate::index::{self, cq_topic_prefix, prefix_end, Indexes, CF_CQ, CF_KEYS, CF_META};
use crate::meta::{MetaKey, MetaPrefix};
use crate::store::ApplyOutcome;

/// A topic and the log index that created it (messages from before it are not its).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicMeta {
    pub(crate) created_index: u64,
    pub(crate) config: TopicConfig,
}

/// The topics section.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Topics {
    pub(crate) topics: BTreeMap<String, TopicMeta>,
    /// Next offset of each queue that has had a message.
    pub(crate) queue_next: HashMap<(String, u32), u64>,
}

pub(crate) fn upsert(sm: &mut SmState, ctx: &mut Ctx<'_>, t: TopicConfig) -> Result<ApplyOutcome> {
    let name = t.name.as_str().to_owned();
    let created_index = sm
        .topics
        .topics
        .get(&name)
        .map_or(ctx.index, |m| m.created_index);
    ctx.durable.put_cf(
        ctx.idx.cf(CF_META)?,
        MetaKey::Topic(&name).encode(),
        index::encode_topic_meta(created_index, &t)?,
    );
    sm.topics.topics.insert(
        name,
        TopicMeta {
            created_index,
            config: t,
        },
    );
    Ok(ApplyOutcome::Command)
}

pub(crate) fn delete(sm: &mut SmState, ctx: &mut Ctx<'_>, name: &str) -> Result<ApplyOutcome> {
    ctx.changes.topic_deletions.fetch_add(1, Ordering::Release);
    sm.topics.topics.remove(name);
    sm.topics.queue_next.retain(|(topic, _), _| topic != name);
    let meta = ctx.idx.cf(CF_META)?;
    ctx.durable.delete_cf(meta, MetaKey::Topic(name).encode());
    // Every queue of the topic: "qn/" name "\0" ...
    let qn = MetaKey::QueueNext(name, 0).encode();
    let qn = &qn[..qn.len() - 4];
    ctx.durable.delete_range_cf(meta, qn, &prefix_end(qn)[..]);
    let tp = cq_topic_prefix(name);
    ctx.derived
        .delete_range_cf(ctx.idx.cf(CF_CQ)?, &tp, &prefix_end(&tp));
    ctx.derived
        .delete_range_cf(ctx.idx.cf(CF_KEYS)?, &tp, &prefix_end(&tp));
    super::offsets::delete_topic(ctx, name)?;
    Ok(ApplyOutcome::Command)
}

pub(crate) fn load(idx: &Indexes) -> Result<Topics> {
    let mut s = Topics::default();
    for (k, v) in idx.scan_prefix(CF_META, MetaPrefix::Topic.bytes())? {
        if let Some(MetaKey::Topic(name)) = MetaKey::decode(&k) {
            let (created_index, config) = index::decode_topic_meta(&v)?;
            s.topics.insert(
                name.to_owned(),
                TopicMeta {
                    created_index,
                    config,
                },
            );
        }
    }
    for (k, v) in idx.scan_prefix(CF_META, MetaPrefix::QueueNext.bytes())? {
        if let (Some(MetaKey::QueueNext(topic, q)), Some(next)) =
            (MetaKey::decode(&k), index::decode_u64(&v))
        {
            s.queue_next.insert((topic.to_owned(), q), next);
        }
    }
    Ok(s)
}

pub(crate) fn export(s: &Topics, w: &mut Writer) -> Result<()> {
    w.u32(count(s.topics.len())?);
    for t in s.topics.values() {
        w.u64(t.created_index);
        encode_topic(w, &t.config)?;
    }
    // Sorted, so that equal states give equal images.
    let queues: BTreeMap<_, _> = s.queue_next.iter().collect();
    w.u32(count(queues.len())?);
    for ((topic, q), next) in queues {
        w.bytes16(topic.as_bytes())?;
        w.u32(*q).u64(*next);
    }
    Ok(())
}

/// Reads the topic configs of an image (also the layout of images before sections).
pub(crate) fn decode_configs(r: &mut Reader, s: &mut Topics) -> Result<()> {
    for _ in 0..r.u32()? {
        let created_index = r.u64()?;
        let config = decode_topic(r)?;
        s.topics.insert(
            config.name.as_str().to_owned(),
            TopicMeta {
                created_index,
                config,
            },
        );
    }
    Ok(())
}

/// Reads the queue next offsets of an image (also the layout of images before sections).
pub(crate) fn decode_queues(r: &mut Reader, s: &mut Topics) -> Result<()> {
    for _ in 0..r.u32()? {
        let topic = r.str16()?;
        let q = r.u32()?;
        s.queue_next.insert((topic, q), r.u64()?);
    }
    Ok(())
}

pub(crate) fn decode(r: &mut Reader) -> Result<Topics> {
    let mut s = Topics::default();
    decode_configs(r, &mut s)?;
    decode_queues(r, &mut s)?;
    Ok(s)
}

/// Replaces the section's durable keys with `s`'s.
pub(crate) fn install(s: &Topics, idx: &Indexes, b: &mut WriteBatch) -> Result<()> {
    let meta = idx.cf(CF_META)?;
    for p in [MetaPrefix::Topic, MetaPrefix::QueueNext] {
        b.delete_range_cf(meta, p.bytes(), &p.end()[..]);
    }
    for t in s.topics.values() {
        b.put_cf(
            meta,
            MetaKey::Topic(t.config.name.as_str()).encode(),
            index::encode_topic_meta(t.created_index, &t.config)?,
        );
    }
    for ((topic, q), next) in &s.queue_next {
        b.put_cf(
            meta,
            MetaKey::QueueNext(topic, *q).encode(),
            next.to_le_bytes(),
        );
    }
    Ok(())
}

impl crate::store::Store {
    /// How many topic deletions this process applied: retention looks again when it moves,
    /// since a deleted topic's messages may free whole segments
    /// ([`crate::store::Store::dead_prefix_end`]).
    pub fn topic_deletions(&self) -> u64 {
        self.changes.topic_deletions.load(Ordering::Acquire)
    }
}
