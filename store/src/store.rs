//! [`Store`]: the commit log plus the RocksDB indexes, and the state machine that applies
//! log entries to them.
//!
//! Applying an entry of messages assigns each message the next offset of its queue (in
//! log order, so every replica assigns the same ones) and indexes it in `cq`/`keys`.
//! Commands change topics, groups and consumer offsets. One apply call makes two writes:
//! the derived indexes without WAL, then the queue offsets, metadata and applied index
//! through the WAL, so a crash leaves the durable state consistent and the derived
//! indexes rebuildable (see [`crate::rebuild`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftmq_proto::{ConsumerGroupConfig, TopicConfig};
use rocksdb::WriteBatch;

use crate::batch::{BatchReader, MessageView};
use crate::codec::{Reader, Writer};
use crate::config::LogConfig;
use crate::entry::{Command, EntryPayload};
use crate::error::{Error, Result};
use crate::index::{
    self, cq_topic_prefix, key_index_key, key_index_prefix, offset_key, prefix_end, CqUnit,
    Indexes, MetaKey, TimerKey, CF_CQ, CF_KEYS, CF_META, CF_OFFSETS, CF_TIMERS,
};
use crate::log::CommitLog;
use raftmq_proto::message::{PROP_DELIVER_AT, PROP_UNIQ_KEY};

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

#[derive(Debug, Clone)]
pub(crate) struct TopicMeta {
    pub(crate) created_index: u64,
    pub(crate) config: TopicConfig,
}

/// A queue lock's key: (consumer group, topic, queue).
pub(crate) type LockKey = (String, String, u32);

#[derive(Debug, Default)]
pub(crate) struct SmState {
    pub(crate) applied: Option<(u64, u64)>,
    pub(crate) topics: BTreeMap<String, TopicMeta>,
    pub(crate) groups: BTreeMap<String, ConsumerGroupConfig>,
    pub(crate) queue_next: HashMap<(String, u32), u64>,
    pub(crate) checkpoint: Option<u64>,
    /// Orderly-consumption queue locks: (group, topic, queue) -> (client, expiry ms).
    pub(crate) locks: BTreeMap<LockKey, (String, u64)>,
    /// Timer deliveries applied so far; a `FireTimers` must carry this number.
    pub(crate) fire_seq: u64,
    /// Log indexes of `FireTimers` entries refused for a stale sequence (rebuild skips them).
    pub(crate) rejected_fires: std::collections::BTreeSet<u64>,
    /// Access-control records by key (opaque: the broker encodes them).
    pub(crate) auth: BTreeMap<String, Bytes>,
    pub(crate) since_checkpoint: u64,
    pub(crate) last_checkpoint: Option<Instant>,
}

/// The store of one broker node.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    config: StoreConfig,
    pub(crate) log: CommitLog,
    pub(crate) idx: Indexes,
    pub(crate) sm: Mutex<SmState>,
    /// Bumped on every access-control change ([`Store::auth_changes`]).
    pub(crate) auth_changes: AtomicU64,
    /// Bumped on every topic deletion ([`Store::topic_deletions`]).
    pub(crate) topic_deletions: AtomicU64,
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
        let sm = load_state(&idx)?;
        let store = Self {
            dir,
            config,
            log,
            idx,
            sm: Mutex::new(sm),
            auth_changes: AtomicU64::new(0),
            topic_deletions: AtomicU64::new(0),
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
            let outcome = match EntryPayload::decode(e.payload.clone())? {
                EntryPayload::Blank | EntryPayload::Membership(_) => ApplyOutcome::Nothing,
                EntryPayload::Messages(batch) => ApplyOutcome::Messages(dispatch_tracked(
                    &self.idx,
                    &mut sm,
                    e.index,
                    batch,
                    &mut derived,
                    &mut touched,
                )?),
                EntryPayload::Command(Command::FireTimers { seq, fired, batch }) => {
                    if seq == sm.fire_seq {
                        sm.fire_seq += 1;
                        durable.put_cf(meta, b"fireseq", sm.fire_seq.to_le_bytes());
                        let timers = self.idx.cf(CF_TIMERS)?;
                        for t in &fired {
                            derived.delete_cf(timers, t.encode());
                        }
                        ApplyOutcome::Messages(dispatch_tracked(
                            &self.idx,
                            &mut sm,
                            e.index,
                            batch,
                            &mut derived,
                            &mut touched,
                        )?)
                    } else {
                        tracing::info!(
                            log_index = e.index,
                            seq,
                            expected = sm.fire_seq,
                            "refused a stale timer delivery"
                        );
                        sm.rejected_fires.insert(e.index);
                        durable.put_cf(meta, rejected_key(e.index), []);
                        ApplyOutcome::Messages(Vec::new())
                    }
                }
                EntryPayload::Command(c) => {
                    self.apply_command(&mut sm, e.index, c, &mut derived, &mut durable)?
                }
            };
            sm.applied = Some((e.term, e.index));
            out.push(outcome);
        }
        touched.sort();
        touched.dedup();
        for (topic, q) in touched {
            if let Some(next) = sm.queue_next.get(&(topic.clone(), q)) {
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

    fn apply_command(
        &self,
        sm: &mut SmState,
        index: u64,
        c: Command,
        derived: &mut WriteBatch,
        durable: &mut WriteBatch,
    ) -> Result<ApplyOutcome> {
        let meta = self.idx.cf(CF_META)?;
        match c {
            Command::UpsertTopic(t) => {
                let name = t.name.as_str().to_owned();
                let created_index = sm.topics.get(&name).map_or(index, |m| m.created_index);
                durable.put_cf(
                    meta,
                    MetaKey::Topic(&name).encode(),
                    index::encode_topic_meta(created_index, &t)?,
                );
                sm.topics.insert(
                    name,
                    TopicMeta {
                        created_index,
                        config: t,
                    },
                );
            }
            Command::DeleteTopic(t) => {
                let name = t.as_str();
                self.topic_deletions.fetch_add(1, Ordering::Release);
                sm.topics.remove(name);
                sm.queue_next.retain(|(topic, _), _| topic != name);
                durable.delete_cf(meta, MetaKey::Topic(name).encode());
                let qn = [b"qn/".as_slice(), name.as_bytes(), b"\0"].concat();
                durable.delete_range_cf(meta, &qn, &prefix_end(&qn));
                let tp = cq_topic_prefix(name);
                derived.delete_range_cf(self.idx.cf(CF_CQ)?, &tp, &prefix_end(&tp));
                derived.delete_range_cf(self.idx.cf(CF_KEYS)?, &tp, &prefix_end(&tp));
                let offsets = self.idx.cf(CF_OFFSETS)?;
                for group in self.offset_groups()? {
                    let p = [group.as_bytes(), b"\0", name.as_bytes(), b"\0"].concat();
                    durable.delete_range_cf(offsets, &p, &prefix_end(&p));
                }
            }
            Command::UpsertGroup(g) => {
                let name = g.name.as_str().to_owned();
                durable.put_cf(
                    meta,
                    MetaKey::Group(&name).encode(),
                    index::encode_group_meta(&g)?,
                );
                sm.groups.insert(name, g);
            }
            Command::DeleteGroup(g) => {
                sm.groups.remove(g.as_str());
                durable.delete_cf(meta, MetaKey::Group(g.as_str()).encode());
                let p = [g.as_str().as_bytes(), b"\0"].concat();
                durable.delete_range_cf(self.idx.cf(CF_OFFSETS)?, &p, &prefix_end(&p));
            }
            Command::CommitOffsets { group, offsets } => {
                let cf = self.idx.cf(CF_OFFSETS)?;
                for (t, q, o) in offsets {
                    durable.put_cf(
                        cf,
                        offset_key(group.as_str(), t.as_str(), q.0),
                        o.0.to_le_bytes(),
                    );
                }
            }
            Command::PutAuth { key, value } => {
                durable.put_cf(meta, auth_key(&key), &value);
                sm.auth.insert(key, value);
                self.auth_changes.fetch_add(1, Ordering::Release);
            }
            Command::DeleteAuth { key } => {
                durable.delete_cf(meta, auth_key(&key));
                sm.auth.remove(&key);
                self.auth_changes.fetch_add(1, Ordering::Release);
            }
            Command::FireTimers { .. } => {
                return Err(Error::Invalid(
                    "timers are fired by apply, not as a plain command".into(),
                ));
            }
            Command::LockQueues {
                group,
                client,
                queues,
                now_ms,
                lease_ms,
            } => {
                let mut granted = Vec::with_capacity(queues.len());
                for (t, q) in queues {
                    let key = (group.as_str().to_owned(), t.as_str().to_owned(), q.0);
                    let free = match sm.locks.get(&key) {
                        None => true,
                        Some((holder, expire)) => *holder == client || *expire <= now_ms,
                    };
                    if free {
                        let expire = now_ms.saturating_add(lease_ms);
                        durable.put_cf(meta, lock_key(&key), lock_value(&client, expire)?);
                        sm.locks.insert(key, (client.clone(), expire));
                    }
                    granted.push(free);
                }
                return Ok(ApplyOutcome::Locked(granted));
            }
            Command::UnlockQueues {
                group,
                client,
                queues,
            } => {
                for (t, q) in queues {
                    let key = (group.as_str().to_owned(), t.as_str().to_owned(), q.0);
                    if sm
                        .locks
                        .get(&key)
                        .is_some_and(|(holder, _)| *holder == client)
                    {
                        durable.delete_cf(meta, lock_key(&key));
                        sm.locks.remove(&key);
                    }
                }
            }
        }
        Ok(ApplyOutcome::Command)
    }

    /// Who holds the lock of a queue, and until when (ms), if anyone.
    pub fn queue_lock(&self, group: &str, topic: &str, queue: u32) -> Option<(String, u64)> {
        self.lock()
            .locks
            .get(&(group.to_owned(), topic.to_owned(), queue))
            .cloned()
    }

    /// The fire sequence the next `FireTimers` must carry.
    pub fn fire_seq(&self) -> u64 {
        self.lock().fire_seq
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

    /// Every group that has a committed offset.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn offset_groups(&self) -> Result<Vec<String>> {
        let mut groups: Vec<String> = Vec::new();
        for (k, _) in self.idx.scan_prefix(CF_OFFSETS, b"")? {
            if let Some(end) = k.iter().position(|&b| b == 0) {
                let g = String::from_utf8_lossy(&k[..end]).into_owned();
                if groups.last() != Some(&g) {
                    groups.push(g);
                }
            }
        }
        Ok(groups)
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
        self.lock().topics.get(name).map(|m| m.config.clone())
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<TopicConfig> {
        self.lock()
            .topics
            .values()
            .map(|m| m.config.clone())
            .collect()
    }

    /// Every access-control record, by key, with the change count it reflects: callers
    /// that cache a decoded form re-read only when [`Store::auth_changes`] moves on.
    pub fn auth_records(&self) -> (u64, BTreeMap<String, Bytes>) {
        let sm = self.lock();
        (self.auth_changes.load(Ordering::Acquire), sm.auth.clone())
    }

    /// How many access-control changes this store has applied or imported since it opened
    /// (a cheap "has anything changed" check; not persisted).
    pub fn auth_changes(&self) -> u64 {
        self.auth_changes.load(Ordering::Acquire)
    }

    /// How many topic deletions this process applied: retention looks again when it moves,
    /// since a deleted topic's messages may free whole segments
    /// ([`Store::dead_prefix_end`]).
    pub fn topic_deletions(&self) -> u64 {
        self.topic_deletions.load(Ordering::Acquire)
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
            if !sm.topics.contains_key(topic) {
                return Err(Error::TopicNotFound(topic.to_owned()));
            }
            sm.queue_next
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
    fn message_in_entry(
        &self,
        cache: &mut Option<(u64, Vec<MessageView>)>,
        log_index: u64,
        slot: u32,
    ) -> Result<Option<MessageView>> {
        if cache.as_ref().is_none_or(|(i, _)| *i != log_index) {
            let Some(rec) = self.log.read(log_index)? else {
                return Ok(None);
            };
            let msgs = match EntryPayload::decode(rec.payload)? {
                EntryPayload::Messages(b)
                | EntryPayload::Command(Command::FireTimers { batch: b, .. }) => {
                    BatchReader::new(b)?.collect::<Result<Vec<_>>>()?
                }
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
        out.extend(self.positions(&key_index_prefix(ANY_TOPIC, key), max, |v| {
            v == topic.as_bytes()
        })?);
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
        self.positions(&key_index_prefix(ANY_TOPIC, uniq), max, |_| true)
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

    /// Syncs the log and checkpoints the indexes, for a clean shutdown.
    ///
    /// # Errors
    /// I/O and RocksDB errors.
    pub fn close(&self) -> Result<()> {
        self.checkpoint()?;
        self.log.close()
    }
}

/// [`dispatch_batch`], noting the queues that gained messages.
fn dispatch_tracked(
    idx: &Indexes,
    sm: &mut SmState,
    index: u64,
    batch: Bytes,
    derived: &mut WriteBatch,
    touched: &mut Vec<(String, u32)>,
) -> Result<Vec<MessageOutcome>> {
    let mut res = Vec::new();
    dispatch_batch(idx, sm, index, batch, derived, |m, o| {
        if let MessageOutcome::Stored { queue_id, .. } = o {
            touched.push((m.topic().to_owned(), queue_id));
        }
        res.push(o);
    })?;
    Ok(res)
}

/// Decodes a batch and indexes each message (or, for a delayed one, its timer);
/// `on_message` learns each outcome.
pub(crate) fn dispatch_batch(
    idx: &Indexes,
    sm: &mut SmState,
    index: u64,
    batch: Bytes,
    derived: &mut WriteBatch,
    mut on_message: impl FnMut(&MessageView, MessageOutcome),
) -> Result<()> {
    let keys_cf = idx.cf(CF_KEYS)?;
    let timers_cf = idx.cf(CF_TIMERS)?;
    for (slot, m) in BatchReader::new(batch)?.enumerate() {
        let m = m?;
        let exists = sm
            .topics
            .get(m.topic())
            .is_some_and(|t| t.created_index < index);
        if !exists {
            on_message(&m, MessageOutcome::TopicNotFound);
            continue;
        }
        let due = m
            .property(PROP_DELIVER_AT)
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(uniq) = m.property(PROP_UNIQ_KEY).filter(|k| valid_key(k)) {
            // One entry per message, under no topic: a client's message id is looked up
            // without one, and a delayed message is found by it while it waits and after it
            // is delivered. The value names the topic of a stored message (empty while it
            // waits), for lookups within a topic. Every replica writes it on the publish
            // path, so once, not also under the topic (docs/benchmarks.md).
            let topic: &[u8] = if due.is_some() {
                b""
            } else {
                m.topic().as_bytes()
            };
            derived.put_cf(
                keys_cf,
                key_index_key(ANY_TOPIC, uniq, index, slot as u32),
                topic,
            );
        }
        if let Some(due_ms) = due {
            let t = TimerKey {
                due_ms,
                log_index: index,
                slot: slot as u32,
            };
            derived.put_cf(timers_cf, t.encode(), []);
            on_message(
                &m,
                MessageOutcome::Scheduled {
                    queue_id: m.queue_id,
                    due_ms,
                },
            );
            continue;
        }
        let next = sm
            .queue_next
            .entry((m.topic().to_owned(), m.queue_id))
            .or_insert(0);
        let offset = *next;
        *next += 1;
        let unit = CqUnit {
            log_index: index,
            slot: slot as u32,
            tag_hash: index::tag_hash(m.tag()),
            store_ms: m.store_ms,
            size: m.encoded_len as u32,
        };
        idx.cq_put(derived, m.topic(), m.queue_id, offset, &unit)?;
        for key in m.keys() {
            if valid_key(key) {
                derived.put_cf(
                    keys_cf,
                    key_index_key(m.topic(), key, index, slot as u32),
                    [],
                );
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
    Ok(())
}

/// The key index's "topic" for client message ids (`UNIQ_KEY`) looked up without a topic:
/// empty, which no topic name can be.
const ANY_TOPIC: &str = "";

fn valid_key(key: &str) -> bool {
    !key.is_empty() && !key.contains('\0')
}

/// The `meta` key recording a refused `FireTimers` entry.
pub(crate) fn rejected_key(index: u64) -> Vec<u8> {
    [b"rejected/".as_slice(), &index.to_be_bytes()].concat()
}

/// The `meta` key of a queue lock.
pub(crate) fn lock_key((group, topic, queue): &(String, String, u32)) -> Vec<u8> {
    [
        b"lock/".as_slice(),
        group.as_bytes(),
        b"\0",
        topic.as_bytes(),
        b"\0",
        &queue.to_be_bytes(),
    ]
    .concat()
}

pub(crate) fn lock_value(client: &str, expire_ms: u64) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.bytes16(client.as_bytes())?;
    w.u64(expire_ms);
    Ok(w.finish())
}

pub(crate) fn parse_lock(k: &[u8], v: &[u8]) -> Option<(LockKey, (String, u64))> {
    let rest = k.strip_prefix(b"lock/")?;
    let g_end = rest.iter().position(|&b| b == 0)?;
    let (group, rest) = (&rest[..g_end], &rest[g_end + 1..]);
    let t_end = rest.iter().position(|&b| b == 0)?;
    let (topic, q) = (&rest[..t_end], &rest[t_end + 1..]);
    let queue = u32::from_be_bytes(q.try_into().ok()?);
    let mut r = Reader::new(Bytes::copy_from_slice(v), "queue lock");
    let client = r.str16().ok()?;
    let expire = r.u64().ok()?;
    Some((
        (
            String::from_utf8_lossy(group).into_owned(),
            String::from_utf8_lossy(topic).into_owned(),
            queue,
        ),
        (client, expire),
    ))
}

/// Meta keys of access-control records.
pub(crate) const AUTH_PREFIX: &[u8] = b"auth/";

pub(crate) fn auth_key(key: &str) -> Vec<u8> {
    [AUTH_PREFIX, key.as_bytes()].concat()
}

fn load_state(idx: &Indexes) -> Result<SmState> {
    let mut sm = SmState::default();
    if let Some(v) = idx.get_meta(&MetaKey::Applied)? {
        let mut r = Reader::new(Bytes::from(v), "applied index");
        sm.applied = Some((r.u64()?, r.u64()?));
    }
    for (k, v) in idx.scan_prefix(CF_META, b"topic/")? {
        let (created_index, config) = index::decode_topic_meta(&v)?;
        let name = String::from_utf8_lossy(&k[6..]).into_owned();
        sm.topics.insert(
            name,
            TopicMeta {
                created_index,
                config,
            },
        );
    }
    for (_, v) in idx.scan_prefix(CF_META, b"group/")? {
        let g = index::decode_group_meta(&v)?;
        sm.groups.insert(g.name.as_str().to_owned(), g);
    }
    for (k, v) in idx.scan_prefix(CF_META, b"qn/")? {
        let rest = &k[3..];
        if rest.len() < 5 {
            continue;
        }
        let (topic, q) = rest.split_at(rest.len() - 5);
        let q = u32::from_be_bytes(q[1..].try_into().unwrap_or_default());
        if let Some(next) = index::decode_u64(&v) {
            sm.queue_next
                .insert((String::from_utf8_lossy(topic).into_owned(), q), next);
        }
    }
    for (k, v) in idx.scan_prefix(CF_META, b"lock/")? {
        if let Some((key, val)) = parse_lock(&k, &v) {
            sm.locks.insert(key, val);
        }
    }
    sm.fire_seq = idx
        .get_meta_raw(b"fireseq")?
        .and_then(|v| index::decode_u64(&v))
        .unwrap_or(0);
    for (k, v) in idx.scan_prefix(CF_META, AUTH_PREFIX)? {
        let key = String::from_utf8_lossy(&k[AUTH_PREFIX.len()..]).into_owned();
        sm.auth.insert(key, Bytes::from(v));
    }
    for (k, _) in idx.scan_prefix(CF_META, b"rejected/")? {
        if let Ok(i) = <[u8; 8]>::try_from(&k[9..]) {
            sm.rejected_fires.insert(u64::from_be_bytes(i));
        }
    }
    let mut checkpoint = Some(u64::MAX);
    for cf in index::DERIVED_CFS {
        checkpoint = checkpoint.zip(idx.checkpoint(cf)?).map(|(a, b)| a.min(b));
    }
    sm.checkpoint = checkpoint;
    Ok(sm)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
