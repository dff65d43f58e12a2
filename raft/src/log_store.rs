//! [`LogStore`]: openraft's log storage over the store's commit log.
//!
//! Appends go to the commit log and report `io_completed` from the durability callback,
//! after the group-commit fsync. Votes and the purge point live in `meta`, written
//! synced. A purge only moves the logical purge point: segments hold the messages
//! consumers read and leave only through retention, which never passes that point.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use raftmq_store::index::MetaKey;
use raftmq_store::{AppendEntry, Store};

use crate::blocking::{blocking, inline_if_small};
use crate::codec::{self, io_err};
use crate::types::{log_id, Entry, LogId, TypeConfig, Vote};

const VOTE_KEY: MetaKey<'static> = MetaKey::Raft("vote");
const PURGED_KEY: MetaKey<'static> = MetaKey::Raft("purged");
/// Reads of at most this many entries (replicating a fresh entry) run in place.
const SMALL_READ_ENTRIES: u64 = 16;

/// Raft log storage backed by the commit log. Cheap to clone; clones share the cached
/// purge point.
#[derive(Debug, Clone)]
pub struct LogStore {
    store: Arc<Store>,
    /// The purge point once read from `meta` (every replication read needs it); `purge`
    /// updates it after the synced write.
    purged: Arc<Mutex<Option<Option<LogId>>>>,
}

impl LogStore {
    /// Wraps the store.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            purged: Arc::default(),
        }
    }

    /// The logical purge point.
    ///
    /// # Errors
    /// RocksDB or decoding errors.
    pub fn last_purged(&self) -> io::Result<Option<LogId>> {
        let mut cached = self.purged.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = *cached {
            return Ok(p);
        }
        let p = self
            .store
            .indexes()
            .get_meta(&PURGED_KEY)
            .map_err(io_err)?
            .map(|v| codec::decode_log_id(Bytes::from(v)).map_err(io_err))
            .transpose()?;
        *cached = Some(p);
        Ok(p)
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let (start, end) = bounds(&range);
        if start >= end {
            return Ok(Vec::new());
        }
        // Entries at or below the logical purge point are gone as far as Raft is concerned.
        let start = match self.last_purged()? {
            Some(p) => start.max(p.index + 1),
            None => start,
        };
        let store = self.store.clone();
        let small = end.saturating_sub(start) <= SMALL_READ_ENTRIES;
        let records = inline_if_small(small, move || {
            let first = store.log().first_index().unwrap_or(start);
            store
                .log()
                .read_range(start.max(first), end, usize::MAX)
                .map_err(io_err)
        })
        .await?;
        records.into_iter().map(codec::record_to_entry).collect()
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.store
            .indexes()
            .get_meta(&VOTE_KEY)
            .map_err(io_err)?
            .map(|v| codec::decode_vote(Bytes::from(v)).map_err(io_err))
            .transpose()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let purged = self.last_purged()?;
        let last = self.store.log().last_entry_id().map(|(t, i)| log_id(t, i));
        let last = match (last, purged) {
            (Some(l), Some(p)) if l.index < p.index => Some(p),
            (None, p) => p,
            (l, _) => l,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let store = self.store.clone();
        let bytes = codec::encode_vote(vote);
        blocking(move || {
            store
                .indexes()
                .put_meta_synced(&VOTE_KEY, &bytes)
                .map_err(io_err)
        })
        .await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((
                e.log_id.leader_id.term,
                e.log_id.index,
                codec::entry_to_payload(&e)?,
            ));
        }
        let Some(&(_, last, _)) = encoded.last() else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let batch = AppendEntry::all(&encoded);
        self.store.log().append(&batch).map_err(io_err)?;
        self.store.log().on_durable_inline(
            last,
            Box::new(move |res| callback.io_completed(res.map_err(io_err))),
        );
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        tracing::info!(
            from_index = from,
            "truncating the log after a conflict with the leader"
        );
        let store = self.store.clone();
        blocking(move || store.log().truncate_from(from).map_err(io_err)).await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let store = self.store.clone();
        let bytes = codec::encode_log_id(&log_id);
        blocking(move || {
            store
                .indexes()
                .put_meta_synced(&PURGED_KEY, &bytes)
                .map_err(io_err)
        })
        .await?;
        let mut cached = self.purged.lock().unwrap_or_else(PoisonError::into_inner);
        *cached = Some(Some(log_id));
        Ok(())
    }
}
