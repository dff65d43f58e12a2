//! [`Store`]: the commit log plus the RocksDB indexes, and the state machine that applies
//! log entries to them.
//!
//! Applying an entry of messages assigns each message the next offset of its queue (in
//! log order, so every replica assigns the same ones) and indexes it in `cq`/`keys`.
//! Commands change topics, groups and consumer offsets. One apply call makes two writes:
//! the derived indexes without WAL, then the queue offsets, metadata and applied index
//! through the WAL, so a crash leaves the durable state consistent and the derived
//! indexes rebuildable (see [`crate::rebuild`]).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftmq_proto::{ConsumerGroupConfig, TopicConfig};
use rocksdb::WriteBatch;

use crate::batch::{BatchReader, MessageView};
use crate::codec::Writer;
use crate::config::LogConfig;
use crate::entry::EntryPayload;
use crate::error::{Error, Result};
use crate::index::{key_index_prefix, Indexes, MetaKey, TimerKey, CF_KEYS, CF_META, CF_TIMERS};
use crate::log::CommitLog;
use crate::sm::{self, Changes, Ctx, SmState};
use raftmq_proto::message::PROP_DELIVER_AT;

/// Settings of a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The commit log.
    pub log: LogConfig,
    /// Flush the derived indexes and checkpoint them after this many applied entries.
    /// Default: 20 000.
    pub checkpoint_every_entries: u64,
    /// ... or after this long. Default: 60 s.
    pub checkpoint_every: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            log: LogConfig::default(),
            checkpoint_every_entries: 20_000,
            checkpoint_every: Duration::from_secs(60),
        }
    }
}

/// One entry to apply.
#[derive(Debug, Clone)]
pub struct ApplyEntry {
    /// Raft term.
    pub term: u64,
    /// Raft log index.
    pub index: u64,
    /// The encoded [`EntryPayload`].
    pub payload: Bytes,
}

/// What applying one entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// A blank or membership entry: nothing to report.
    Nothing,
    /// One outcome per message of the batch, in order.
    Messages(Vec<MessageOutcome>),
    /// A command was applied.
    Command,
    /// Which queues a `LockQueues` command granted, in order.
    Locked(Vec<bool>),
    /// An `EndTransaction`: what its commit stored (empty for a rollback), or `None` when
    /// the transaction was no longer pending (already ended: nothing changed).
    TransactionEnded(Option<Vec<MessageOutcome>>),
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Stored at this position.
    Stored {
        /// The queue.
        queue_id: u32,
        /// Its offset in the queue.
        offset: u64,
    },
    /// A delayed message, waiting in the timer index until `due_ms`.
    Scheduled {
        /// The queue it will be delivered to.
        queue_id: u32,
        /// When it is due, ms since the Unix epoch.
        due_ms: u64,
    },
    /// A transaction's half message, pending until the producer commits or rolls it back.
    Half {
        /// The queue it will be stored in on commit.
        queue_id: u32,
    },
    /// The topic did not exist when the entry was applied (deleted meanwhile).
    TopicNotFound,
}

/// A message read back, with its position.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The queue.
    pub queue_id: u32,
    /// Offset within the queue.
    pub queue_offset: u64,
    /// Log index of the entry holding it.
    pub log_index: u64,
    /// Position within the entry.
    pub slot: u32,
    /// The message itself.
    pub view: MessageView,
}

/// Which messages of a queue a read returns ([`Store::read_queue`]); the default, all.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueFilter<'a> {
    /// Only messages whose tag hash is listed.
    pub tag_hashes: Option<&'a [u32]>,
    /// Only messages this SQL92 expression is TRUE for.
    pub sql: Option<&'a raftmq_proto::sql92::Filter>,
}

/// The result of reading a queue.
#[derive(Debug, Clone)]
pub struct QueueRead {
    /// Messages found (tag-filtered ones are skipped, not returned).
    pub messages: Vec<StoredMessage>,
    /// Where the next read should start.
    pub next_offset: u64,
    /// Smallest readable offset.
    pub min_offset: u64,
    /// One past the largest offset (the queue's next offset).
    pub max_offset: u64,
}

/// The store of one broker node.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    config: StoreConfig,
    pub(crate) log: CommitLog,
    pub(crate) idx: Indexes,
    pub(crate) sm: Mutex<SmState>,
    pub(crate) changes: Changes,
    /// The last entries half messages were read from ([`Store::half_message`]).
    pub(crate) half_entries: sm::transactions::EntryCache,
}

impl Store {
    /// Opens the store under `dir` (`dir/log` and `dir/index`), recovering the log and
    /// rebuilding derived indexes from the last checkpoint.
    ///
    /// # Errors
    /// I/O, RocksDB and corruption errors.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        let log = CommitLog::open(dir.join("log"), config.log.clone())?;
        let idx = Indexes::open(&dir.join("index"))?;
        let sm = sm::load_state(&idx)?;
        let store = Self {
            dir,
            config,
            log,
            idx,
            sm: Mutex::new(sm),
            changes: Changes::default(),
            half_entries: Default::default(),
        };
        crate::rebuild::rebuild_derived(&store)?;
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The commit log (the Raft log).
    pub fn log(&self) -> &CommitLog {
        &self.log
    }

    /// The RocksDB indexes (for the raft crate's own metadata).
    pub fn indexes(&self) -> &Indexes {
        &self.idx
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SmState> {
        crate::fail_stop::guard(self.sm.lock(), "state-machine lock")
    }

    /// The last applied `(term, index)`.
    pub fn applied(&self) -> Option<(u64, u64)> {
        self.lock().applied
    }

    /// Applies committed entries in order. `extra_meta` is written atomically with the
    /// applied index (the raft crate stores its applied log id and membership there).
    ///
    /// # Errors
    /// I/O or RocksDB errors; the caller must treat them as fatal.
    pub fn apply(
        &self,
        entries: &[ApplyEntry],
        extra_meta: &[(MetaKey<'_>, Vec<u8>)],
    ) -> Result<Vec<ApplyOutcome>> {
        let mut sm = self.lock();
        let mut derived = WriteBatch::default();
        let mut durable = WriteBatch::default();
        let meta = self.idx.cf(CF_META)?;
        let mut touched: Vec<(String, u32)> = Vec::new();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if sm.applied.is_some_and(|(_, i)| e.index <= i) {
                return Err(Error::Internal(format!(
                    "entry {} applied twice (applied up to {:?})",
                    e.index, sm.applied
                )));
            }
            let mut ctx = Ctx {
                idx: &self.idx,
                index: e.index,
                derived: &mut derived,
                durable: &mut durable,
                touched: &mut touched,
                changes: &self.changes,
            };
            let outcome = match EntryPayload::decode(e.payload.clone())? {
                EntryPayload::Blank | EntryPayload::Membership(_) => ApplyOutcome::Nothing,
                EntryPayload::Messages(batch) => {
                    ApplyOutcome::Messages(ctx.store_batch(&mut sm, batch)?)
                }
                EntryPayload::Command(c) => sm::apply_command(&mut sm, &mut ctx, c)?,
            };
            sm.applied = Some((e.term, e.index));
            out.push(outcome);
        }
        touched.sort();
        touched.dedup();
        for (topic, q) in touched {
            if let Some(next) = sm.topics.queue_next.get(&(topic.clone(), q)) {
                durable.put_cf(
                    meta,
                    MetaKey::QueueNext(&topic, q).encode(),
                    next.to_le_bytes(),
                );
            }
        }
        if let Some((term, index)) = sm.applied {
            let mut w = Writer::new();
            w.u64(term).u64(index);
            durable.put_cf(meta, MetaKey::Applied.encode(), w.finish());
        }
        for (k, v) in extra_meta {
            durable.put_cf(meta, k.encode(), v);
        }
        self.idx.write_derived(derived)?;
        self.idx.write_durable(durable, false)?;
        sm.since_checkpoint += entries.len() as u64;
        let due = sm.since_checkpoint >= self.config.checkpoint_every_entries
            || sm
                .last_checkpoint
                .is_some_and(|t| t.elapsed() >= self.config.checkpoint_every);
        if sm.last_checkpoint.is_none() {
            sm.last_checkpoint = Some(Instant::now());
        }
        if due {
            self.checkpoint_locked(&mut sm)?;
        }
        Ok(out)
    }

    /// Flushes the derived indexes and records them complete up to the applied index.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn checkpoint(&self) -> Result<()> {
        let mut sm = self.lock();
        self.checkpoint_locked(&mut sm)
    }

    fn checkpoint_locked(&self, sm: &mut SmState) -> Result<()> {
        if let Some((_, index)) = sm.applied {
            self.idx.write_checkpoint(index)?;
            sm.checkpoint = Some(index);
        }
        sm.since_checkpoint = 0;
        sm.last_checkpoint = Some(Instant::now());
        Ok(())
    }

    /// The log index the derived indexes are durably complete up to.
    pub fn checkpointed_index(&self) -> Option<u64> {
        self.lock().checkpoint
    }

    /// A topic's configuration.
    pub fn topic(&self, name: &str) -> Option<TopicConfig> {
        self.lock()
            .topics
            .topics
            .get(name)
            .map(|m| m.config.clone())
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<TopicConfig> {
        self.lock()
            .topics
            .topics
            .values()
            .map(|m| m.config.clone())
            .collect()
    }

    /// A group's configuration.
    pub fn group(&self, name: &str) -> Option<ConsumerGroupConfig> {
        self.lock().groups.get(name).cloned()
    }

    /// Every group, by name.
    pub fn groups(&self) -> Vec<ConsumerGroupConfig> {
        self.lock().groups.values().cloned().collect()
    }

    /// `(min, max)` offsets of a queue: `min` is the smallest readable, `max` one past
    /// the largest (RocketMQ's `maxOffset`).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], RocksDB errors.
    pub fn queue_bounds(&self, topic: &str, queue: u32) -> Result<(u64, u64)> {
        let max = {
            let sm = self.lock();
            if !sm.topics.topics.contains_key(topic) {
                return Err(Error::TopicNotFound(topic.to_owned()));
            }
            sm.topics
                .queue_next
                .get(&(topic.to_owned(), queue))
                .copied()
                .unwrap_or(0)
        };
        let min = self
            .idx
            .cq_first_offset(topic, queue)?
            .unwrap_or(max)
            .min(max);
        Ok((min, max))
    }

    /// Reads up to `max_msgs` messages (about `max_bytes`) of a queue from `offset`,
    /// only those `filter` lets through (the others are skipped and the next offset moves
    /// past them; a filtered read scans at most eight times `max_msgs`, at least 256).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::OffsetTooSmall`] below the retained minimum,
    /// I/O and corruption errors.
    pub fn read_queue(
        &self,
        topic: &str,
        queue: u32,
        offset: u64,
        max_msgs: usize,
        max_bytes: usize,
        filter: QueueFilter<'_>,
    ) -> Result<QueueRead> {
        let (min, max) = self.queue_bounds(topic, queue)?;
        if offset < min {
            return Err(Error::OffsetTooSmall { offset, min });
        }
        let mut read = QueueRead {
            messages: Vec::new(),
            next_offset: offset.min(max),
            min_offset: min,
            max_offset: max,
        };
        if offset >= max || max_msgs == 0 {
            return Ok(read);
        }
        // Scan more units than messages wanted when filtering, but bound the work.
        let scan = if filter.tag_hashes.is_some() || filter.sql.is_some() {
            max_msgs.saturating_mul(8).max(256)
        } else {
            max_msgs
        };
        let units = self
            .idx
            .cq_range(topic, queue, offset, scan.min((max - offset) as usize))?;
        let mut cache: Option<(u64, Vec<MessageView>)> = None;
        let mut bytes = 0usize;
        for (off, unit) in units {
            if off >= max
                || read.messages.len() >= max_msgs
                || (bytes >= max_bytes && !read.messages.is_empty())
            {
                break;
            }
            read.next_offset = off + 1;
            if let Some(hashes) = filter.tag_hashes {
                if !hashes.contains(&unit.tag_hash) {
                    continue;
                }
            }
            let view = match self.message_in_entry(&mut cache, unit.log_index, unit.slot)? {
                Some(v) => v,
                None => {
                    // Retention removed the entry after the index was read.
                    let (min, _) = self.queue_bounds(topic, queue)?;
                    return Err(Error::OffsetTooSmall { offset: off, min });
                }
            };
            if filter.sql.is_some_and(|f| !f.matches(&view)) {
                continue;
            }
            bytes += view.encoded_len;
            read.messages.push(StoredMessage {
                queue_id: queue,
                queue_offset: off,
                log_index: unit.log_index,
                slot: unit.slot,
                view,
            });
        }
        Ok(read)
    }

    /// The message at `slot` of entry `log_index`, reusing a decoded entry in `cache`.
    pub(crate) fn message_in_entry(
        &self,
        cache: &mut Option<(u64, Vec<MessageView>)>,
        log_index: u64,
        slot: u32,
    ) -> Result<Option<MessageView>> {
        if cache.as_ref().is_none_or(|(i, _)| *i != log_index) {
            let Some(rec) = self.log.read(log_index)? else {
                return Ok(None);
            };
            let msgs = match EntryPayload::decode(rec.payload)?.into_message_batch() {
                Some(b) if !b.is_empty() => BatchReader::new(b)?.collect::<Result<Vec<_>>>()?,
                _ => Vec::new(),
            };
            *cache = Some((log_index, msgs));
        }
        Ok(cache
            .as_ref()
            .and_then(|(_, m)| m.get(slot as usize).cloned()))
    }

    /// The message at `(log_index, slot)` with its queue offset, if still retained.
    ///
    /// # Errors
    /// I/O, RocksDB and corruption errors.
    pub fn message_at(&self, log_index: u64, slot: u32) -> Result<Option<StoredMessage>> {
        let mut cache = None;
        let Some(view) = self.message_in_entry(&mut cache, log_index, slot)? else {
            return Ok(None);
        };
        let queue = view.queue_id;
        let Ok((min, max)) = self.queue_bounds(view.topic(), queue) else {
            return Ok(None);
        };
        // Units are ordered by (log index, slot) within a queue: binary search.
        let (mut lo, mut hi) = (min, max);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.idx.cq_get(view.topic(), queue, mid)? {
                Some(u) if (u.log_index, u.slot) < (log_index, slot) => lo = mid + 1,
                Some(_) => hi = mid,
                None => lo = mid + 1,
            }
        }
        match self.idx.cq_get(view.topic(), queue, lo)? {
            Some(u) if (u.log_index, u.slot) == (log_index, slot) => Ok(Some(StoredMessage {
                queue_id: queue,
                queue_offset: lo,
                log_index,
                slot,
                view,
            })),
            _ => Ok(None),
        }
    }

    /// Positions `(log_index, slot)` of messages with `key` (one of their keys, or their
    /// client message id) in `topic`, oldest first, at most `max`.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn positions_by_key(&self, topic: &str, key: &str, max: usize) -> Result<Vec<(u64, u32)>> {
        let mut out = self.positions(&key_index_prefix(topic, key), max, |_| true)?;
        // Client message ids are indexed once, under no topic, with the topic as the value
        // (see `dispatch_batch`); older data dirs also have them under their topic.
        out.extend(
            self.positions(&key_index_prefix(sm::dispatch::ANY_TOPIC, key), max, |v| {
                v == topic.as_bytes()
            })?,
        );
        out.sort_unstable();
        out.dedup();
        out.truncate(max);
        Ok(out)
    }

    /// Where messages with the client message id `uniq` (`UNIQ_KEY`) are, oldest first, at
    /// most `max`: its first copy (stored, or scheduled when delayed) and any later copies
    /// (a delayed message's delivery, retries).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn positions_by_unique_key(&self, uniq: &str, max: usize) -> Result<Vec<(u64, u32)>> {
        self.positions(
            &key_index_prefix(sm::dispatch::ANY_TOPIC, uniq),
            max,
            |_| true,
        )
    }

    /// The positions in the key index under `prefix` whose value `wanted` accepts, oldest
    /// first, at most `max`, leaving out those retention has removed from the log.
    fn positions(
        &self,
        prefix: &[u8],
        max: usize,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<(u64, u32)>> {
        let first = self.log.first_index().unwrap_or(0);
        let mut out = Vec::new();
        for (k, v) in self.idx.scan_prefix(CF_KEYS, prefix)? {
            if out.len() >= max {
                break;
            }
            let Ok(rest) = <[u8; 12]>::try_from(&k[prefix.len()..]) else {
                continue;
            };
            let log_index = u64::from_be_bytes(rest[..8].try_into().unwrap_or_default());
            let slot = u32::from_be_bytes(rest[8..].try_into().unwrap_or_default());
            if log_index >= first && wanted(&v) {
                out.push((log_index, slot));
            }
        }
        Ok(out)
    }

    /// The delayed message at `(log_index, slot)` and when it is due, if it is still
    /// waiting for delivery.
    ///
    /// # Errors
    /// I/O, RocksDB and corruption errors.
    pub fn scheduled_at(&self, log_index: u64, slot: u32) -> Result<Option<(MessageView, u64)>> {
        let Some(view) = self.message_in_entry(&mut None, log_index, slot)? else {
            return Ok(None);
        };
        let Some(due_ms) = view
            .property(PROP_DELIVER_AT)
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return Ok(None);
        };
        let timer = TimerKey {
            due_ms,
            log_index,
            slot,
        };
        Ok(self
            .idx
            .get(CF_TIMERS, &timer.encode())?
            .map(|_| (view, due_ms)))
    }

    /// The message at `slot` of entry `log_index` whatever became of it (stored, waiting,
    /// delivered elsewhere), if the entry is retained.
    ///
    /// # Errors
    /// I/O, RocksDB and corruption errors.
    pub fn entry_message(&self, log_index: u64, slot: u32) -> Result<Option<MessageView>> {
        self.message_in_entry(&mut None, log_index, slot)
    }

    /// The smallest offset of a queue whose message was stored at or after `ms`, or the
    /// queue's max offset when every message is older.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], RocksDB errors.
    pub fn offset_for_time(&self, topic: &str, queue: u32, ms: u64) -> Result<u64> {
        let (min, max) = self.queue_bounds(topic, queue)?;
        let (mut lo, mut hi) = (min, max);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.idx.cq_get(topic, queue, mid)? {
                Some(u) if u.store_ms < ms => lo = mid + 1,
                Some(_) => hi = mid,
                None => lo = mid + 1,
            }
        }
        Ok(lo)
    }

    /// Syncs the log and checkpoints the indexes, for a clean shutdown.
    ///
    /// # Errors
    /// I/O and RocksDB errors.
    pub fn close(&self) -> Result<()> {
        self.checkpoint()?;
        self.log.close()
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
