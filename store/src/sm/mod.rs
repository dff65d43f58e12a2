//! The replicated state machine, one section per kind of state.
//!
//! Each section owns its commands' apply, its `meta` keys ([`crate::meta::MetaKey`]), its
//! load at open and its part of the state image ([`crate::image`]):
//!
//! | section | state | commands |
//! |---|---|---|
//! | [`topics`] | topic configs, queue next offsets | `UpsertTopic`, `DeleteTopic` |
//! | [`groups`] | consumer group configs | `UpsertGroup`, `DeleteGroup` |
//! | [`offsets`] | committed consumer offsets | `CommitOffsets` |
//! | [`locks`] | orderly consumers' queue locks | `LockQueues`, `UnlockQueues` |
//! | [`timers`] | timer delivery sequence, refused entries | `FireTimers` |
//! | [`auth`] | access-control records | `PutAuth`, `DeleteAuth` |
//! | [`transactions`] | pending half messages | `EndTransactions`, `CheckTransactions` |
//!
//! Messages entering the store ([`dispatch`]) touch several: a queue (topics), a timer, or
//! a pending transaction. Adding a kind of state is one new section file plus its line in
//! [`Kind`], the command routing below and the image's section table; the image round-trip
//! test fails until its export and import exist.

pub(crate) mod auth;
pub(crate) mod dispatch;
pub(crate) mod groups;
pub(crate) mod locks;
pub(crate) mod offsets;
pub(crate) mod timers;
pub(crate) mod topics;
pub(crate) mod transactions;

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use bytes::Bytes;
use rocksdb::WriteBatch;

use crate::codec::Reader;
use crate::entry::Command;
use crate::error::Result;
use crate::index::{self, Indexes};
use crate::meta::MetaKey;
use crate::store::{ApplyOutcome, MessageOutcome};

/// The kinds of replicated state, in the order the state image holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Topics = 1,
    Groups = 2,
    Offsets = 3,
    Locks = 4,
    Timers = 5,
    Auth = 6,
    Transactions = 7,
}

impl Kind {
    /// Every kind, in image order.
    pub(crate) const ALL: [Kind; 7] = [
        Kind::Topics,
        Kind::Groups,
        Kind::Offsets,
        Kind::Locks,
        Kind::Timers,
        Kind::Auth,
        Kind::Transactions,
    ];

    /// The kind an image section tag names.
    pub(crate) fn from_tag(tag: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == tag)
    }

    /// For errors and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Topics => "topics",
            Kind::Groups => "groups",
            Kind::Offsets => "offsets",
            Kind::Locks => "locks",
            Kind::Timers => "timers",
            Kind::Auth => "auth",
            Kind::Transactions => "transactions",
        }
    }
}

/// The state machine's in-memory state (the durable copy is in RocksDB's `meta` and
/// `offsets`).
#[derive(Debug, Default)]
pub(crate) struct SmState {
    pub(crate) applied: Option<(u64, u64)>,
    pub(crate) topics: topics::Topics,
    pub(crate) groups: groups::Groups,
    pub(crate) locks: locks::Locks,
    pub(crate) timers: timers::Timers,
    pub(crate) auth: auth::Auth,
    pub(crate) tx: transactions::Transactions,
    pub(crate) checkpoint: Option<u64>,
    pub(crate) since_checkpoint: u64,
    pub(crate) last_checkpoint: Option<Instant>,
}

/// Change counters readers poll (not persisted).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Bumped on every access-control change.
    pub(crate) auth: AtomicU64,
    /// Bumped on every topic deletion.
    pub(crate) topic_deletions: AtomicU64,
}

/// What one entry's apply writes to, and where it is.
pub(crate) struct Ctx<'a> {
    pub(crate) idx: &'a Indexes,
    /// The entry's log index.
    pub(crate) index: u64,
    /// Derived indexes (no WAL, rebuilt from the log).
    pub(crate) derived: &'a mut WriteBatch,
    /// State-machine state (WAL, with the applied index).
    pub(crate) durable: &'a mut WriteBatch,
    /// Queues that gained messages (their next offsets are written once per apply call).
    pub(crate) touched: &'a mut Vec<(String, u32)>,
    pub(crate) changes: &'a Changes,
}

impl Ctx<'_> {
    /// Stores a batch of messages at this entry, noting the queues that gained some.
    pub(crate) fn store_batch(
        &mut self,
        sm: &mut SmState,
        batch: Bytes,
    ) -> Result<Vec<MessageOutcome>> {
        let mut res = Vec::new();
        let touched = &mut *self.touched;
        dispatch::dispatch_batch(
            self.idx,
            sm,
            self.index,
            batch,
            self.derived,
            Some(&mut *self.durable),
            |m, o| {
                if let MessageOutcome::Stored { queue_id, .. } = o {
                    touched.push((m.topic().to_owned(), queue_id));
                }
                res.push(o);
            },
        )?;
        Ok(res)
    }
}

/// Applies one command: each goes to the section that owns it.
pub(crate) fn apply_command(
    sm: &mut SmState,
    ctx: &mut Ctx<'_>,
    c: Command,
) -> Result<ApplyOutcome> {
    match c {
        Command::UpsertTopic(t) => topics::upsert(sm, ctx, t),
        Command::DeleteTopic(t) => topics::delete(sm, ctx, t.as_str()),
        Command::UpsertGroup(g) => groups::upsert(sm, ctx, g),
        Command::DeleteGroup(g) => groups::delete(sm, ctx, g.as_str()),
        Command::CommitOffsets { group, offsets } => offsets::commit(ctx, &group, &offsets),
        Command::FireTimers { seq, fired, batch } => timers::fire(sm, ctx, seq, &fired, batch),
        Command::LockQueues {
            group,
            client,
            queues,
            now_ms,
            lease_ms,
        } => locks::lock(sm, ctx, &group, &client, &queues, now_ms, lease_ms),
        Command::UnlockQueues {
            group,
            client,
            queues,
        } => locks::unlock(sm, ctx, &group, &client, &queues),
        Command::PutAuth { key, value } => auth::put(sm, ctx, key, value),
        Command::DeleteAuth { key } => auth::delete(sm, ctx, &key),
        Command::EndTransactions { ends, batch } => transactions::end(sm, ctx, &ends, batch),
        Command::CheckTransactions { halves, now_ms } => {
            transactions::checked(sm, ctx, &halves, now_ms)
        }
    }
}

/// Loads the state machine from RocksDB at open.
pub(crate) fn load_state(idx: &Indexes) -> Result<SmState> {
    let mut sm = SmState::default();
    if let Some(v) = idx.get_meta(&MetaKey::Applied)? {
        let mut r = Reader::new(Bytes::from(v), "applied index");
        sm.applied = Some((r.u64()?, r.u64()?));
    }
    sm.topics = topics::load(idx)?;
    sm.groups = groups::load(idx)?;
    sm.locks = locks::load(idx)?;
    sm.timers = timers::load(idx)?;
    sm.auth = auth::load(idx)?;
    sm.tx = transactions::load(idx)?;
    let mut checkpoint = Some(u64::MAX);
    for cf in index::DERIVED_CFS {
        checkpoint = checkpoint.zip(idx.checkpoint(cf)?).map(|(a, b)| a.min(b));
    }
    sm.checkpoint = checkpoint;
    Ok(sm)
}
