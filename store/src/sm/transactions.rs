//! Transactions: half messages waiting for their producer's commit or rollback.
//!
//! A half message is stored in the log like any other (so it is replicated with the
//! quorum) but enters no queue: it is recorded here, by its position, until an
//! `EndTransactions` entry either stores it in its queue (commit: the entry carries the
//! message as consumers will see it) or drops it (rollback). Ending a transaction that is no longer
//! pending changes nothing, so commit and rollback are idempotent and a second leader's
//! decision cannot apply twice. `CheckTransactions` counts the leader's check-backs, so the
//! check limit survives a failover.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use raftmq_proto::message::{PROP_PRODUCER_GROUP, PROP_UNIQ_KEY};
use rocksdb::WriteBatch;

use super::{Ctx, SmState};
use crate::batch::MessageView;
use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::image::count;
use crate::index::{Indexes, CF_META};
use crate::meta::{MetaKey, MetaPrefix};
use crate::store::{ApplyOutcome, Store};

/// Entries [`Store::half_message`] keeps decoded.
const CACHED_ENTRIES: usize = 8;

/// The last entries half messages were read from, decoded.
#[derive(Debug, Default)]
pub(crate) struct EntryCache(Mutex<VecDeque<(u64, Arc<Vec<MessageView>>)>>);

impl EntryCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Arc<Vec<MessageView>>)>> {
        // A cache: a panic elsewhere leaves nothing wrong in it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A half message's position: (log index, slot).
pub type HalfPosition = (u64, u32);

/// A pending half message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTransaction {
    /// Where the half message is in the log.
    pub position: HalfPosition,
    /// The producer group asked when the producer does not end it.
    pub producer_group: String,
    /// The client's message id (`UNIQ_KEY`), empty when it set none.
    pub msg_id: String,
    /// Topic and queue it is for.
    pub topic: String,
    /// Queue it is for.
    pub queue_id: u32,
    /// When the leader stored it, ms since the Unix epoch.
    pub store_ms: u64,
    /// Check-backs so far.
    pub checks: u32,
    /// The leader's clock at the last check-back (0: never checked), ms.
    pub last_check_ms: u64,
}

/// The transactions section.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Transactions {
    pub(crate) pending: BTreeMap<HalfPosition, PendingTransaction>,
}

impl Transactions {
    fn insert(&mut self, t: PendingTransaction) {
        self.pending.insert(t.position, t);
    }

    fn remove(&mut self, pos: HalfPosition) -> Option<PendingTransaction> {
        self.pending.remove(&pos)
    }
}

fn encode(t: &PendingTransaction) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    write_fields(t, &mut w)?;
    Ok(w.finish())
}

fn write_fields(t: &PendingTransaction, w: &mut Writer) -> Result<()> {
    w.bytes16(t.producer_group.as_bytes())?;
    w.bytes16(t.msg_id.as_bytes())?;
    w.bytes16(t.topic.as_bytes())?;
    w.u32(t.queue_id)
        .u64(t.store_ms)
        .u32(t.checks)
        .u64(t.last_check_ms);
    Ok(())
}

fn read_fields(position: HalfPosition, r: &mut Reader) -> Result<PendingTransaction> {
    Ok(PendingTransaction {
        position,
        producer_group: r.str16()?,
        msg_id: r.str16()?,
        topic: r.str16()?,
        queue_id: r.u32()?,
        store_ms: r.u64()?,
        checks: r.u32()?,
        last_check_ms: r.u64()?,
    })
}

/// Records a half message (from [`super::dispatch`]).
pub(crate) fn begin(
    idx: &Indexes,
    sm: &mut SmState,
    durable: &mut WriteBatch,
    position: HalfPosition,
    m: &MessageView,
) -> Result<()> {
    let t = PendingTransaction {
        position,
        producer_group: m.property(PROP_PRODUCER_GROUP).unwrap_or("").to_owned(),
        msg_id: m.property(PROP_UNIQ_KEY).unwrap_or("").to_owned(),
        topic: m.topic().to_owned(),
        queue_id: m.queue_id,
        store_ms: m.store_ms,
        checks: 0,
        last_check_ms: 0,
    };
    durable.put_cf(
        idx.cf(CF_META)?,
        MetaKey::TxHalf(position.0, position.1).encode(),
        encode(&t)?,
    );
    sm.tx.insert(t);
    Ok(())
}

/// Ends pending transactions: the commits store `batch` (their messages as consumers see
/// them), the rollbacks drop theirs. When one of them is no longer pending (or is listed
/// twice) nothing changes ([`ApplyOutcome::TransactionEnded`] is `None`), so that what an
/// entry stores never depends on more than "all pending or not".
pub(crate) fn end(
    sm: &mut SmState,
    ctx: &mut Ctx<'_>,
    ends: &[(HalfPosition, bool)],
    batch: Bytes,
) -> Result<ApplyOutcome> {
    let mut seen = std::collections::BTreeSet::new();
    let all_pending = ends
        .iter()
        .all(|(pos, _)| seen.insert(*pos) && sm.tx.pending.contains_key(pos));
    if !all_pending || ends.is_empty() {
        if !batch.is_empty() {
            super::timers::refuse(sm, ctx)?;
        }
        return Ok(ApplyOutcome::TransactionEnded(None));
    }
    let meta = ctx.idx.cf(CF_META)?;
    for (pos, _) in ends {
        sm.tx.remove(*pos);
        ctx.durable
            .delete_cf(meta, MetaKey::TxHalf(pos.0, pos.1).encode());
    }
    let stored = if batch.is_empty() {
        Vec::new()
    } else {
        ctx.store_batch(sm, batch)?
    };
    Ok(ApplyOutcome::TransactionEnded(Some(stored)))
}

/// Counts one check-back of each listed half message still pending.
pub(crate) fn checked(
    sm: &mut SmState,
    ctx: &mut Ctx<'_>,
    halves: &[HalfPosition],
    now_ms: u64,
) -> Result<ApplyOutcome> {
    let meta = ctx.idx.cf(CF_META)?;
    for pos in halves {
        if let Some(t) = sm.tx.pending.get_mut(pos) {
            t.checks = t.checks.saturating_add(1);
            t.last_check_ms = now_ms;
            ctx.durable
                .put_cf(meta, MetaKey::TxHalf(pos.0, pos.1).encode(), encode(t)?);
        }
    }
    Ok(ApplyOutcome::Command)
}

pub(crate) fn load(idx: &Indexes) -> Result<Transactions> {
    let mut s = Transactions::default();
    for (k, v) in idx.scan_prefix(CF_META, MetaPrefix::TxHalf.bytes())? {
        if let Some(MetaKey::TxHalf(i, slot)) = MetaKey::decode(&k) {
            let mut r = Reader::new(Bytes::from(v), "pending transaction");
            s.insert(read_fields((i, slot), &mut r)?);
        }
    }
    Ok(s)
}

pub(crate) fn export(s: &Transactions, w: &mut Writer) -> Result<()> {
    w.u32(count(s.pending.len())?);
    for t in s.pending.values() {
        w.u64(t.position.0).u32(t.position.1);
        write_fields(t, w)?;
    }
    Ok(())
}

pub(crate) fn decode(r: &mut Reader) -> Result<Transactions> {
    let mut s = Transactions::default();
    for _ in 0..r.u32()? {
        let pos = (r.u64()?, r.u32()?);
        s.insert(read_fields(pos, r)?);
    }
    Ok(s)
}

/// Replaces the section's durable keys with `s`'s.
pub(crate) fn install(s: &Transactions, idx: &Indexes, b: &mut WriteBatch) -> Result<()> {
    let meta = idx.cf(CF_META)?;
    b.delete_range_cf(
        meta,
        MetaPrefix::TxHalf.bytes(),
        &MetaPrefix::TxHalf.end()[..],
    );
    for t in s.pending.values() {
        b.put_cf(
            meta,
            MetaKey::TxHalf(t.position.0, t.position.1).encode(),
            encode(t)?,
        );
    }
    Ok(())
}

impl Store {
    /// Every pending half message, oldest first.
    pub fn pending_transactions(&self) -> Vec<PendingTransaction> {
        self.lock().tx.pending.values().cloned().collect()
    }

    /// How many half messages are pending, and the store time of the oldest (ms).
    pub fn pending_transactions_summary(&self) -> (usize, Option<u64>) {
        let sm = self.lock();
        let oldest = sm.tx.pending.values().map(|t| t.store_ms).min();
        (sm.tx.pending.len(), oldest)
    }

    /// The pending half message at this position, if it is still pending.
    pub fn pending_transaction(&self, pos: HalfPosition) -> Option<PendingTransaction> {
        self.lock().tx.pending.get(&pos).cloned()
    }

    /// [`Store::half_message`] when its entry is decoded already (no I/O: callers on an
    /// async thread need not move to a blocking one); `None` when it is not.
    pub fn cached_half_message(&self, pos: HalfPosition) -> Option<Option<MessageView>> {
        let c = self.half_entries.lock();
        let (_, msgs) = c.iter().find(|(i, _)| *i == pos.0)?;
        Some(msgs.get(pos.1 as usize).cloned())
    }

    /// The log index of the oldest pending half message (retention keeps its entry).
    pub(crate) fn oldest_pending_half(&self) -> Option<u64> {
        self.lock().tx.pending.keys().next().map(|p| p.0)
    }

    /// A half message as stored (for the commit the leader proposes and for checks).
    /// Concurrent transactions' half messages share entries (the send batcher's), so the
    /// last few entries read stay decoded: without that, 1,024 commits of one entry read
    /// and decoded it 1,024 times.
    ///
    /// # Errors
    /// I/O and corruption errors.
    pub fn half_message(&self, pos: HalfPosition) -> Result<Option<MessageView>> {
        if let Some(m) = self.cached_half_message(pos) {
            return Ok(m);
        }
        let mut one = None;
        // Reads the whole entry into `one`.
        let _ = self.message_in_entry(&mut one, pos.0, 0)?;
        let Some((_, msgs)) = one else {
            return Ok(None);
        };
        let msgs = Arc::new(msgs);
        let mut c = self.half_entries.lock();
        if c.len() >= CACHED_ENTRIES {
            c.pop_front();
        }
        c.push_back((pos.0, msgs.clone()));
        Ok(msgs.get(pos.1 as usize).cloned())
    }
}

#[cfg(test)]
#[path = "transactions_tests.rs"]
mod tests;
