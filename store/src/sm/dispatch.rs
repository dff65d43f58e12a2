//! Messages entering the store: each lands in its queue, waits in the timer index (a
//! delayed message), or waits as a transaction's half message.

use bytes::Bytes;
use raftmq_proto::message::{PROP_DELIVER_AT, PROP_TRANSACTION_PREPARED, PROP_UNIQ_KEY};
use rocksdb::WriteBatch;

use super::SmState;
use crate::batch::{BatchReader, MessageView};
use crate::error::Result;
use crate::index::{self, key_index_key, CqUnit, Indexes, TimerKey, CF_KEYS, CF_TIMERS};
use crate::store::MessageOutcome;

/// The key index's "topic" for client message ids (`UNIQ_KEY`) looked up without a topic:
/// empty, which no topic name can be.
pub(crate) const ANY_TOPIC: &str = "";

pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty() && !key.contains('\0')
}

/// Where a message of the entry at `index` goes.
pub(crate) enum Placement {
    /// Its topic did not exist when the entry was applied.
    NoTopic,
    /// A half message: pending until its transaction ends.
    Half,
    /// A delayed message, due then (ms).
    Timer(u64),
    /// Its queue.
    Queue,
}

/// Where `m`, of the entry at `index`, goes (rebuild counts queue messages with it).
pub(crate) fn placement(sm: &SmState, index: u64, m: &MessageView) -> Placement {
    let exists = sm
        .topics
        .topics
        .get(m.topic())
        .is_some_and(|t| t.created_index < index);
    if !exists {
        return Placement::NoTopic;
    }
    if m.property(PROP_TRANSACTION_PREPARED) == Some("true") {
        return Placement::Half;
    }
    match m
        .property(PROP_DELIVER_AT)
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(due) => Placement::Timer(due),
        None => Placement::Queue,
    }
}

/// Decodes a batch and indexes each message (or, for a delayed one, its timer; for a half
/// message, its pending transaction); `on_message` learns each outcome. `durable` is
/// `None` when rebuilding derived indexes: what is durable was recorded when the entry was
/// first applied.
pub(crate) fn dispatch_batch(
    idx: &Indexes,
    sm: &mut SmState,
    index: u64,
    batch: Bytes,
    derived: &mut WriteBatch,
    mut durable: Option<&mut WriteBatch>,
    mut on_message: impl FnMut(&MessageView, MessageOutcome),
) -> Result<()> {
    let keys_cf = idx.cf(CF_KEYS)?;
    let timers_cf = idx.cf(CF_TIMERS)?;
    for (slot, m) in BatchReader::new(batch)?.enumerate() {
        let m = m?;
        let slot = slot as u32;
        let place = placement(sm, index, &m);
        if matches!(place, Placement::NoTopic) {
            on_message(&m, MessageOutcome::TopicNotFound);
            continue;
        }
        if let Some(uniq) = m.property(PROP_UNIQ_KEY).filter(|k| valid_key(k)) {
            // One entry per message, under no topic: a client's message id is looked up
            // without one, and a delayed or half message is found by it while it waits and
            // after it is delivered. The value names the topic of a stored message (empty
            // while it waits), for lookups within a topic. Every replica writes it on the
            // publish path, so once, not also under the topic (docs/benchmarks.md).
            let topic: &[u8] = match place {
                Placement::Queue => m.topic().as_bytes(),
                _ => b"",
            };
            derived.put_cf(keys_cf, key_index_key(ANY_TOPIC, uniq, index, slot), topic);
        }
        match place {
            Placement::NoTopic => {}
            Placement::Half => {
                if let Some(durable) = durable.as_deref_mut() {
                    super::transactions::begin(idx, sm, durable, (index, slot), &m)?;
                }
                on_message(
                    &m,
                    MessageOutcome::Half {
                        queue_id: m.queue_id,
                    },
                );
            }
            Placement::Timer(due_ms) => {
                let t = TimerKey {
                    due_ms,
                    log_index: index,
                    slot,
                };
                derived.put_cf(timers_cf, t.encode(), []);
                on_message(
                    &m,
                    MessageOutcome::Scheduled {
                        queue_id: m.queue_id,
                        due_ms,
                    },
                );
            }
            Placement::Queue => {
                let next = sm
                    .topics
                    .queue_next
                    .entry((m.topic().to_owned(), m.queue_id))
                    .or_insert(0);
                let offset = *next;
                *next += 1;
                let unit = CqUnit {
                    log_index: index,
                    slot,
                    tag_hash: index::tag_hash(m.tag()),
                    store_ms: m.store_ms,
                    size: m.encoded_len as u32,
                };
                idx.cq_put(derived, m.topic(), m.queue_id, offset, &unit)?;
                for key in m.keys() {
                    if valid_key(key) {
                        derived.put_cf(keys_cf, key_index_key(m.topic(), key, index, slot), []);
                    }
                }
                on_message(
                    &m,
                    MessageOutcome::Stored {
                        queue_id: m.queue_id,
                        offset,
                    },
                );
            }
        }
    }
    Ok(())
}
