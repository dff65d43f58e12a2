//! Delayed messages: each waits in the derived `timers` index until the leader proposes
//! its delivery (`FireTimers`), which stores it in its queue. Deliveries carry a sequence
//! number so that a stale proposal (from a deposed leader) is refused, not applied twice.

use std::collections::BTreeSet;

use bytes::Bytes;
use rocksdb::WriteBatch;

use super::{Ctx, SmState};
use crate::batch::MessageView;
use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::image::count;
use crate::index::{self, Indexes, TimerKey, CF_META, CF_TIMERS};
use crate::meta::{MetaKey, MetaPrefix};
use crate::store::{ApplyOutcome, Store};

/// The timers section.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Timers {
    /// Timer deliveries applied so far; a `FireTimers` must carry this number.
    pub(crate) fire_seq: u64,
    /// Log indexes of entries whose messages were refused at apply: stale timer
    /// deliveries and ends of transactions already ended. Rebuilding skips them.
    pub(crate) refused: BTreeSet<u64>,
}

/// Records that the entry at `ctx.index` stored nothing.
pub(crate) fn refuse(sm: &mut SmState, ctx: &mut Ctx<'_>) -> Result<()> {
    sm.timers.refused.insert(ctx.index);
    ctx.durable.put_cf(
        ctx.idx.cf(CF_META)?,
        MetaKey::Refused(ctx.index).encode(),
        [],
    );
    Ok(())
}

pub(crate) fn fire(
    sm: &mut SmState,
    ctx: &mut Ctx<'_>,
    seq: u64,
    fired: &[TimerKey],
    batch: Bytes,
) -> Result<ApplyOutcome> {
    if seq != sm.timers.fire_seq {
        tracing::info!(
            log_index = ctx.index,
            seq,
            expected = sm.timers.fire_seq,
            "refused a stale timer delivery"
        );
        refuse(sm, ctx)?;
        return Ok(ApplyOutcome::Messages(Vec::new()));
    }
    sm.timers.fire_seq += 1;
    ctx.durable.put_cf(
        ctx.idx.cf(CF_META)?,
        MetaKey::FireSeq.encode(),
        sm.timers.fire_seq.to_le_bytes(),
    );
    let timers = ctx.idx.cf(CF_TIMERS)?;
    for t in fired {
        ctx.derived.delete_cf(timers, t.encode());
    }
    Ok(ApplyOutcome::Messages(ctx.store_batch(sm, batch)?))
}

pub(crate) fn load(idx: &Indexes) -> Result<Timers> {
    let mut s = Timers {
        fire_seq: idx
            .get_meta(&MetaKey::FireSeq)?
            .and_then(|v| index::decode_u64(&v))
            .unwrap_or(0),
        ..Timers::default()
    };
    for (k, _) in idx.scan_prefix(CF_META, MetaPrefix::Refused.bytes())? {
        if let Some(MetaKey::Refused(i)) = MetaKey::decode(&k) {
            s.refused.insert(i);
        }
    }
    Ok(s)
}

pub(crate) fn export(s: &Timers, w: &mut Writer) -> Result<()> {
    w.u64(s.fire_seq);
    w.u32(count(s.refused.len())?);
    for i in &s.refused {
        w.u64(*i);
    }
    Ok(())
}

pub(crate) fn decode(r: &mut Reader) -> Result<Timers> {
    let mut s = Timers {
        fire_seq: r.u64()?,
        ..Timers::default()
    };
    for _ in 0..r.u32()? {
        s.refused.insert(r.u64()?);
    }
    Ok(s)
}

/// Replaces the section's durable keys with `s`'s (the pending timers themselves are
/// derived from the log and rebuilt after an import).
pub(crate) fn install(s: &Timers, idx: &Indexes, b: &mut WriteBatch) -> Result<()> {
    let meta = idx.cf(CF_META)?;
    b.delete_range_cf(
        meta,
        MetaPrefix::Refused.bytes(),
        &MetaPrefix::Refused.end()[..],
    );
    b.put_cf(meta, MetaKey::FireSeq.encode(), s.fire_seq.to_le_bytes());
    for i in &s.refused {
        b.put_cf(meta, MetaKey::Refused(*i).encode(), []);
    }
    Ok(())
}

impl Store {
    /// The fire sequence the next `FireTimers` must carry.
    pub fn fire_seq(&self) -> u64 {
        self.lock().timers.fire_seq
    }

    /// Pending timers due at or before `now_ms` (for the leader's scheduler).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn timers_due(&self, now_ms: u64, max: usize) -> Result<Vec<TimerKey>> {
        self.idx.timers_due(now_ms, max)
    }

    /// The message a timer points at, if still retained.
    ///
    /// # Errors
    /// I/O and corruption errors.
    pub fn timer_message(&self, t: &TimerKey) -> Result<Option<MessageView>> {
        let mut cache = None;
        self.message_in_entry(&mut cache, t.log_index, t.slot)
    }
}
