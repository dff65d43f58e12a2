//! Transactions: ending a half message (commit, rollback) and the check-backs producers
//! poll for. The leader's scan that decides what to check is [`crate::tx_checker`].
//!
//! A check goes to one live producer of the message's group: a native producer holds a
//! `transaction_checks` long poll on the leader ([`Checkers`] keeps a mailbox per
//! instance); a remoting producer gets CHECK_TRANSACTION_STATE pushed on its connection.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftmq_proto::message::{PROP_DELIVER_AT, PROP_TRANSACTION_PREPARED};
use raftmq_proto::transaction::{
    EndTransactionOutcome, EndTransactionRequest, PendingTransactionInfo, TransactionCheck,
    TransactionCheckPoll, TransactionState,
};
use raftmq_proto::MsgId;
use raftmq_store::{
    BatchWriter, HalfPosition, MessageRef, MessageView, PendingTransaction, StoredMessage,
};
use tokio::sync::Notify;

use super::query::MsgLocation;
use super::{blocking, Broker, BrokerError, ConnectionCtx};
use crate::clients::{Push, PushSender};
use crate::convert::message_ext;

/// Most checks one poll returns.
const MAX_CHECKS_PER_POLL: usize = 64;
/// Checks queued for one producer beyond this are dropped (counted, asked again later).
const MAX_QUEUED_CHECKS: usize = 4096;
/// A native producer with no poll waiting is asked only this long after its last one
/// ended (it polls again at once); a remoting producer, this long after its heartbeat
/// (RocketMQ clients heartbeat every 30 s).
const POLL_GAP: Duration = Duration::from_secs(2);
const HEARTBEAT_WINDOW: Duration = Duration::from_secs(40);

/// Where checks of one producer instance go.
#[derive(Debug)]
enum Route {
    /// A native producer's mailbox, drained by its long poll.
    Mailbox(Arc<Mailbox>),
    /// A remoting producer's connection.
    Push(PushSender),
}

#[derive(Debug, Default)]
struct Mailbox {
    checks: Mutex<VecDeque<TransactionCheck>>,
    arrived: Notify,
    /// Polls waiting now: a producer that died (its connection closed, the poll dropped)
    /// has none.
    waiting: AtomicUsize,
}

/// Counts a waiting poll while it lives.
struct Waiting(Arc<Mailbox>);

impl Waiting {
    fn new(m: Arc<Mailbox>) -> Self {
        m.waiting.fetch_add(1, Ordering::AcqRel);
        Self(m)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Instance {
    fn live(&self, now: Instant) -> bool {
        let age = now.duration_since(self.seen);
        match &self.route {
            Route::Mailbox(m) => m.waiting.load(Ordering::Acquire) > 0 || age < POLL_GAP,
            Route::Push(p) => !p.is_closed() && age < HEARTBEAT_WINDOW,
        }
    }
}

#[derive(Debug)]
struct Instance {
    client_id: String,
    route: Route,
    seen: Instant,
}

/// The producers of each group that can answer check-backs on this node.
#[derive(Debug, Default)]
pub struct Checkers {
    groups: Mutex<HashMap<String, Vec<Instance>>>,
    next: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Soft state: a panic elsewhere leaves nothing inconsistent in it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Checkers {
    fn mailbox(&self, group: &str, client_id: &str) -> Arc<Mailbox> {
        let mut groups = lock(&self.groups);
        let list = groups.entry(group.to_owned()).or_default();
        let now = Instant::now();
        if let Some(i) = list.iter_mut().find(|i| i.client_id == client_id) {
            i.seen = now;
            if let Route::Mailbox(m) = &i.route {
                return m.clone();
            }
        }
        let m = Arc::new(Mailbox::default());
        list.retain(|i| i.client_id != client_id);
        list.push(Instance {
            client_id: client_id.to_owned(),
            route: Route::Mailbox(m.clone()),
            seen: now,
        });
        m
    }

    /// Records a remoting producer of `group` (from its heartbeat).
    pub fn remoting_producer(&self, group: &str, client_id: &str, push: PushSender) {
        let mut groups = lock(&self.groups);
        let list = groups.entry(group.to_owned()).or_default();
        list.retain(|i| i.client_id != client_id);
        list.push(Instance {
            client_id: client_id.to_owned(),
            route: Route::Push(push),
            seen: Instant::now(),
        });
    }

    fn touch(&self, group: &str, client_id: &str) {
        if let Some(i) = lock(&self.groups)
            .get_mut(group)
            .and_then(|l| l.iter_mut().find(|i| i.client_id == client_id))
        {
            i.seen = Instant::now();
        }
    }

    /// Gives `check` (of the half message `stored`) to one live producer of `group` (round
    /// robin); the client id it went to, or `None` when the group has no live producer here.
    pub fn dispatch(
        &self,
        group: &str,
        check: TransactionCheck,
        stored: &StoredMessage,
    ) -> Option<String> {
        let mut groups = lock(&self.groups);
        let now = Instant::now();
        let list = groups.get_mut(group)?;
        list.retain(|i| i.live(now) || now.duration_since(i.seen) < HEARTBEAT_WINDOW * 2);
        if list.is_empty() {
            groups.remove(group);
            return None;
        }
        let list = groups.get_mut(group)?;
        let live: Vec<&Instance> = list.iter().filter(|i| i.live(now)).collect();
        if live.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..live.len() {
            let i = live[(start + k) % live.len()];
            let delivered = match &i.route {
                Route::Mailbox(m) => {
                    let mut q = lock(&m.checks);
                    let ok = q.len() < MAX_QUEUED_CHECKS;
                    if ok {
                        q.push_back(check.clone());
                    }
                    drop(q);
                    m.arrived.notify_one();
                    ok
                }
                Route::Push(p) => p
                    .try_send(Push::CheckTransaction {
                        producer_group: group.to_owned(),
                        message: Box::new(stored.clone()),
                    })
                    .is_ok(),
            };
            if delivered {
                return Some(i.client_id.clone());
            }
        }
        None
    }
}

/// The broker message id of a half message.
fn half_position(broker: &Broker, msg_id: &str) -> Result<HalfPosition, BrokerError> {
    let at = MsgId::parse(msg_id)
        .and_then(|id| MsgLocation::of_native_id(&id, broker.group_tag()))
        .ok_or_else(|| {
            BrokerError::invalid(format!(
                "{msg_id:?} is not a message id of broker group {}: end a transaction with the \
                 msg_id its half message's send returned, at that group",
                broker.group()
            ))
        })?;
    Ok((at.log_index, at.slot))
}

/// Adds the message a commit stores to `w`: the half message without its prepared mark,
/// stored now, a delay counted from now (as RocketMQ delays a transactional message from
/// its commit).
pub(crate) fn push_committed(
    w: &mut BatchWriter,
    half: &MessageView,
    now: u64,
) -> Result<(), BrokerError> {
    let keys: Vec<String> = half.keys().map(str::to_owned).collect();
    let properties: Vec<(String, String)> = half
        .properties()
        .filter(|(k, _)| *k != PROP_TRANSACTION_PREPARED)
        .map(|(k, v)| match (k, v.parse::<u64>()) {
            (PROP_DELIVER_AT, Ok(due)) => (
                k.to_owned(),
                due.saturating_sub(half.store_ms)
                    .saturating_add(now)
                    .to_string(),
            ),
            _ => (k.to_owned(), v.to_owned()),
        })
        .collect();
    w.push(&MessageRef {
        topic: half.topic(),
        queue_id: half.queue_id,
        tag: half.tag(),
        keys: &keys,
        properties: &properties,
        body: &half.body,
        born_ms: half.born_ms,
        store_ms: now,
        flags: half.flags,
        reconsume_times: half.reconsume_times,
    })
    .map_err(|e| BrokerError::Internal(e.to_string()))
}

impl Broker {
    /// A pending half message as check-backs show it: at queue offset 0 (it has none).
    pub(crate) fn half_stored(t: &PendingTransaction, view: MessageView) -> StoredMessage {
        StoredMessage {
            queue_id: t.queue_id,
            queue_offset: 0,
            log_index: t.position.0,
            slot: t.position.1,
            view,
        }
    }

    /// A stored message as native clients see it.
    pub(crate) fn ext_of(&self, m: StoredMessage) -> raftmq_proto::MessageExt {
        message_ext(self.group().as_str(), self.group_tag(), m)
    }

    /// The topic of a pending half message (to authorize its end), if it is pending.
    pub fn pending_topic(&self, msg_id: &str) -> Option<String> {
        let pos = half_position(self, msg_id).ok()?;
        self.shared.store.pending_transaction(pos).map(|t| t.topic)
    }

    /// Records a remoting producer of `group` that can answer check-backs.
    pub fn register_remoting_producer(&self, group: &str, client_id: &str, push: PushSender) {
        self.shared
            .checkers
            .remoting_producer(group, client_id, push);
    }

    /// Ends a transaction by its half message's id (leader only). `Unknown` leaves it to the
    /// check-back; a transaction no longer pending answers `AlreadyEnded`.
    ///
    /// # Errors
    /// `NotLeader`, `Invalid` (an id of another group, a producer group that is not the
    /// message's), and the indeterminate outcomes of replication.
    pub async fn end_transaction(
        &self,
        _ctx: &ConnectionCtx,
        req: EndTransactionRequest,
    ) -> Result<EndTransactionOutcome, BrokerError> {
        self.check_leader()?;
        let pos = half_position(self, &req.msg_id)?;
        let Some(pending) = self.shared.store.pending_transaction(pos) else {
            return Ok(EndTransactionOutcome::AlreadyEnded);
        };
        if !req.producer_group.is_empty() && req.producer_group != pending.producer_group {
            return Err(BrokerError::invalid(format!(
                "message {} belongs to producer group {:?}, not {:?}",
                req.msg_id, pending.producer_group, req.producer_group
            )));
        }
        let commit = match req.state {
            TransactionState::Unknown => return Ok(EndTransactionOutcome::LeftPending),
            TransactionState::Commit => true,
            TransactionState::Rollback => false,
        };
        self.end_half(pos, commit, req.from_check).await
    }

    /// Proposes the end of the half message at `pos` (batched with concurrent ones,
    /// [`crate::tx_batcher`]).
    pub(crate) async fn end_half(
        &self,
        pos: HalfPosition,
        commit: bool,
        from_check: bool,
    ) -> Result<EndTransactionOutcome, BrokerError> {
        let message = if commit {
            let store = self.shared.store.clone();
            let view = match store.cached_half_message(pos) {
                Some(v) => v,
                None => blocking(move || store.half_message(pos)).await?,
            };
            let Some(view) = view else {
                return Err(BrokerError::Internal(format!(
                    "half message {pos:?} is pending but gone from the log"
                )));
            };
            Some(view)
        } else {
            None
        };
        let ended = self.shared.tx_ends.end(pos, message).await?;
        let outcome = match (ended, commit) {
            (false, _) => EndTransactionOutcome::AlreadyEnded,
            (true, true) => EndTransactionOutcome::Committed,
            (true, false) => EndTransactionOutcome::RolledBack,
        };
        tracing::debug!(
            log_index = pos.0,
            slot = pos.1,
            ?outcome,
            from_check,
            "transaction ended"
        );
        Ok(outcome)
    }

    /// Waits up to `poll.wait_ms` (at most `max_pull_wait_ms`) for check-backs addressed to
    /// this producer (leader only).
    ///
    /// # Errors
    /// `NotLeader`.
    pub async fn transaction_checks(
        &self,
        poll: TransactionCheckPoll,
    ) -> Result<Vec<TransactionCheck>, BrokerError> {
        self.check_leader()?;
        if poll.producer_group.is_empty() || poll.client_id.is_empty() {
            return Err(BrokerError::invalid(
                "a check-back poll names its producer group and client id",
            ));
        }
        let checkers = &self.shared.checkers;
        let mailbox = checkers.mailbox(&poll.producer_group, &poll.client_id);
        let _waiting = Waiting::new(mailbox.clone());
        let wait = Duration::from_millis(poll.wait_ms.min(self.shared.config.max_pull_wait_ms));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = mailbox.arrived.notified();
            {
                let mut q = lock(&mailbox.checks);
                if !q.is_empty() || tokio::time::Instant::now() >= deadline {
                    let n = q.len().min(MAX_CHECKS_PER_POLL);
                    let out: Vec<_> = q.drain(..n).collect();
                    drop(q);
                    checkers.touch(&poll.producer_group, &poll.client_id);
                    return Ok(out);
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                checkers.touch(&poll.producer_group, &poll.client_id);
                return Ok(Vec::new());
            }
        }
    }

    /// Pending half messages, oldest first, at most `max` (leader only: a follower's view
    /// may lag).
    ///
    /// # Errors
    /// `NotLeader`.
    pub fn pending_transactions(
        &self,
        max: u32,
    ) -> Result<Vec<PendingTransactionInfo>, BrokerError> {
        self.check_leader()?;
        let tag = self.group_tag();
        Ok(self
            .shared
            .store
            .pending_transactions()
            .into_iter()
            .take(max as usize)
            .map(|t| PendingTransactionInfo {
                msg_id: MsgId::new(tag, t.position.0, t.position.1).to_string(),
                unique_key: t.msg_id,
                producer_group: t.producer_group,
                topic: t.topic,
                queue_id: t.queue_id,
                store_ms: t.store_ms,
                checks: t.checks,
                last_check_ms: t.last_check_ms,
            })
            .collect())
    }
}
