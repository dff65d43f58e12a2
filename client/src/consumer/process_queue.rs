//! [`ProcessQueue`]: the messages of one assigned queue between pull and acknowledgement.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use raftmq_proto::MessageExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::filter::TagFilter;
use crate::producer::MessageQueue;

#[derive(Debug, Default)]
struct State {
    /// Pulled, not yet acknowledged, by offset.
    cached: BTreeMap<u64, MessageExt>,
    bytes: usize,
    /// Where the next pull starts.
    next_pull: u64,
}

/// One assigned queue.
#[derive(Debug)]
pub(crate) struct ProcessQueue {
    pub(crate) mq: MessageQueue,
    pub(crate) filter: TagFilter,
    state: Mutex<State>,
    /// Cancelled when the queue is taken away (rebalance or shutdown).
    pub(crate) dropped: CancellationToken,
    /// Orderly mode: until when this client may consume the queue.
    locked_until: Mutex<Option<Instant>>,
    /// Orderly mode: new messages or a new lock.
    pub(crate) wake: Notify,
    /// Orderly mode: held while a message is being consumed, so a drop waits for it.
    pub(crate) busy: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ProcessQueue {
    pub(crate) fn new(mq: MessageQueue, filter: TagFilter, start: u64) -> Self {
        Self {
            mq,
            filter,
            state: Mutex::new(State {
                next_pull: start,
                ..State::default()
            }),
            dropped: CancellationToken::new(),
            locked_until: Mutex::new(None),
            wake: Notify::new(),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Where the next pull starts.
    pub(crate) fn next_pull(&self) -> u64 {
        lock(&self.state).next_pull
    }

    /// Moves the pull position (after an out-of-range answer).
    pub(crate) fn reset_pull(&self, offset: u64) {
        let mut s = lock(&self.state);
        s.next_pull = offset;
    }

    /// Adds pulled messages and moves the pull position; returns the ones added.
    pub(crate) fn add(&self, msgs: Vec<MessageExt>, next: u64) -> Vec<MessageExt> {
        let mut s = lock(&self.state);
        let mut added = Vec::new();
        for m in msgs {
            if m.queue_offset.0 < s.next_pull || s.cached.contains_key(&m.queue_offset.0) {
                continue;
            }
            s.bytes += m.body.len();
            s.cached.insert(m.queue_offset.0, m.clone());
            added.push(m);
        }
        s.next_pull = s.next_pull.max(next);
        added
    }

    /// Acknowledges one message.
    pub(crate) fn remove(&self, offset: u64) {
        let mut s = lock(&self.state);
        if let Some(m) = s.cached.remove(&offset) {
            s.bytes -= m.body.len();
        }
    }

    /// The offset to commit: the smallest unacknowledged one, or the pull position when
    /// everything pulled was acknowledged.
    pub(crate) fn commit_offset(&self) -> u64 {
        let s = lock(&self.state);
        s.cached.keys().next().copied().unwrap_or(s.next_pull)
    }

    /// Cached messages and bytes (for flow control).
    pub(crate) fn load(&self) -> (usize, usize) {
        let s = lock(&self.state);
        (s.cached.len(), s.bytes)
    }

    /// Orderly mode: the oldest cached message.
    pub(crate) fn first(&self) -> Option<MessageExt> {
        lock(&self.state).cached.values().next().cloned()
    }

    /// Orderly mode: counts a failed attempt on a cached message.
    pub(crate) fn bump_reconsume(&self, offset: u64) {
        if let Some(m) = lock(&self.state).cached.get_mut(&offset) {
            m.reconsume_times += 1;
        }
    }

    /// Orderly mode: whether the lock is held now.
    pub(crate) fn locked(&self) -> bool {
        lock(&self.locked_until).is_some_and(|t| t > Instant::now())
    }

    /// Orderly mode: records a granted (or lost) lock.
    pub(crate) fn set_locked(&self, until: Option<Instant>) {
        *lock(&self.locked_until) = until;
        self.wake.notify_one();
    }
}
