//! Rebuilding the derived indexes (`cq`, `keys`) from the commit log.
//!
//! They are written without WAL, so after a crash they may lag the applied index. Each
//! holds a checkpoint: the log index it is durably complete up to. On open, entries after
//! the checkpoint (or the whole retained log, when a checkpoint is missing) are replayed.
//! The queue offsets they had are recovered by counting backwards from the durable
//! next-offsets, which are written through the WAL together with the applied index.

use std::collections::HashMap;

use crate::batch::BatchReader;
use crate::entry::{Command, EntryPayload};
use crate::error::Result;
use crate::index::{TimerKey, CF_TIMERS};
use crate::sm::dispatch::{dispatch_batch, placement, Placement};
use crate::store::Store;

/// Entries are read in chunks of about this many bytes.
const CHUNK_BYTES: usize = 32 << 20;

/// Replays log entries into the derived indexes up to the applied index.
pub(crate) fn rebuild_derived(store: &Store) -> Result<()> {
    let mut sm = store.lock();
    let Some((_, applied)) = sm.applied else {
        return Ok(());
    };
    let start = match sm.checkpoint {
        Some(c) if c >= applied => return Ok(()),
        Some(c) => c + 1,
        None => {
            store.idx.clear_derived()?;
            0
        }
    };
    let Some(first) = store.log.first_index() else {
        return Ok(());
    };
    let start = start.max(first);
    let last = store.log.last_index().unwrap_or(0).min(applied);
    if last < applied {
        tracing::warn!(
            applied,
            last,
            "the commit log ends before the applied index; rebuilding what exists"
        );
    }
    tracing::info!(
        from_index = start,
        to_index = last,
        "rebuilding derived indexes from the commit log"
    );

    // Pass 1: how many messages each queue gained since `start`.
    let mut counts: HashMap<(String, u32), u64> = HashMap::new();
    let rejected = sm.timers.refused.clone();
    for_each_batch(store, &rejected, start, last, |index, batch, _| {
        for m in BatchReader::new(batch)? {
            let m = m?;
            if matches!(placement(&sm, index, &m), Placement::Queue) {
                *counts
                    .entry((m.topic().to_owned(), m.queue_id))
                    .or_default() += 1;
            }
        }
        Ok(())
    })?;
    let durable_next = sm.topics.queue_next.clone();
    let mut replay = durable_next.clone();
    for (queue, n) in &counts {
        if let Some(next) = replay.get_mut(queue) {
            *next = next.saturating_sub(*n);
        }
    }

    // Pass 2: index them again at the offsets they were assigned.
    sm.topics.queue_next = replay;
    let mut replayed = 0u64;
    let timers = store.idx.cf(CF_TIMERS)?;
    let res = for_each_batch(store, &rejected, start, last, |index, batch, fired| {
        let mut derived = rocksdb::WriteBatch::default();
        for t in fired {
            derived.delete_cf(timers, t.encode());
        }
        dispatch_batch(
            &store.idx,
            &mut sm,
            index,
            batch,
            &mut derived,
            None,
            |_, _| {},
        )?;
        replayed += 1;
        store.idx.write_derived(derived)
    });
    if sm.topics.queue_next != durable_next {
        tracing::warn!(
            "replayed queue offsets disagree with the durable ones; keeping the durable ones"
        );
    }
    sm.topics.queue_next = durable_next;
    res?;
    store.idx.write_checkpoint(last)?;
    sm.checkpoint = Some(last);
    tracing::info!(entries = replayed, "derived indexes rebuilt");
    Ok(())
}

/// Calls `f(index, batch, fired timers)` for every entry in `start..=last` that stores
/// messages: message batches, delivered timers and committed transactions (not the
/// entries refused at apply).
fn for_each_batch(
    store: &Store,
    rejected: &std::collections::BTreeSet<u64>,
    start: u64,
    last: u64,
    mut f: impl FnMut(u64, bytes::Bytes, &[TimerKey]) -> Result<()>,
) -> Result<()> {
    let mut next = start;
    while next <= last {
        let recs = store.log.read_range(next, last + 1, CHUNK_BYTES)?;
        if recs.is_empty() {
            break;
        }
        for rec in recs {
            next = rec.index + 1;
            match EntryPayload::decode(rec.payload)? {
                EntryPayload::Messages(batch) => f(rec.index, batch, &[])?,
                EntryPayload::Command(Command::FireTimers { fired, batch, .. })
                    if !rejected.contains(&rec.index) =>
                {
                    f(rec.index, batch, &fired)?
                }
                EntryPayload::Command(Command::EndTransactions { batch, .. })
                    if !batch.is_empty() && !rejected.contains(&rec.index) =>
                {
                    f(rec.index, batch, &[])?
                }
                _ => {}
            }
        }
    }
    Ok(())
}
