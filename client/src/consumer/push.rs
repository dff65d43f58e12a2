//! [`PushConsumer`]: long-poll pulling per assigned queue, a concurrent or an orderly
//! listener, clustering or broadcasting, rebalancing, retries and offsets.
//!
//! ```text
//!  heartbeat ──► brokers know the group's members
//!  rebalance (every 20 s, or when the member list changes) ──► assigned queues
//!      each queue: pull task (long poll) ──► ProcessQueue ──► listener
//!                                                   │ ack / send back to %RETRY%
//!                                                   ▼
//!                      commit offset = smallest unacknowledged (every 5 s, on drop)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use raftmq_proto::broker::{LockQueuesRequest, PullMessageRequest, SendBackRequest};
use raftmq_proto::message::PROP_RETRY_TOPIC;
use raftmq_proto::namesrv::BrokerGroupRoute;
use raftmq_proto::{names, BrokerGroup, ConsumerGroup, MessageExt, Offset, TopicName, WireError};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::allocate::AllocateStrategy;
use super::filter::{Selector, TagFilter};
use super::member::{is_retry, Member};
use super::offsets::OffsetStore;
use super::process_queue::ProcessQueue;
use crate::core::{ClientConfig, Core};
use crate::error::{Error, Result};
use crate::producer::MessageQueue;
use crate::trace::{TraceEvent, Tracer};

/// What a concurrent listener says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Done: the message is acknowledged.
    Success,
    /// Failed: redeliver later through the retry topic, with back-off.
    ReconsumeLater,
}

/// What an orderly listener says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderlyResult {
    /// Done: move on to the next message of the queue.
    Success,
    /// Failed: pause this queue for a moment (1 s) and try the same message again.
    SuspendCurrentQueueAMoment,
}

/// Clustering (the group shares the work, offsets on the brokers) or broadcasting (every
/// instance gets every message, offsets in a local file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageModel {
    /// Queues are split among the group's instances.
    #[default]
    Clustering,
    /// Every instance consumes every queue.
    Broadcasting,
}

/// Where a group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsumeFrom {
    /// Only messages sent from now on (RocketMQ's default).
    #[default]
    LastOffset,
    /// Everything still retained.
    FirstOffset,
    /// Messages stored at or after this time, ms since the Unix epoch.
    Timestamp(u64),
}

type ConcurrentFn = Arc<dyn Fn(MessageExt) -> BoxFuture<'static, ConsumeResult> + Send + Sync>;
type OrderlyFn = Arc<dyn Fn(MessageExt) -> BoxFuture<'static, OrderlyResult> + Send + Sync>;

#[derive(Clone)]
enum Listener {
    Concurrent(ConcurrentFn),
    Orderly(OrderlyFn),
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Listener::Concurrent(_) => "Concurrent",
            Listener::Orderly(_) => "Orderly",
        })
    }
}

/// Settings of a push consumer (see [`PushConsumerBuilder`] for defaults).
#[derive(Debug, Clone)]
struct Settings {
    model: MessageModel,
    consume_from: ConsumeFrom,
    strategy: AllocateStrategy,
    max_reconsume_times: u32,
    concurrency: usize,
    pull_batch: u32,
    max_cached_msgs: usize,
    max_cached_bytes: usize,
    long_poll: Duration,
    heartbeat_every: Duration,
    rebalance_every: Duration,
    membership_check_every: Duration,
    persist_every: Duration,
    shutdown_timeout: Duration,
    suspend: Duration,
    offset_dir: Option<PathBuf>,
    read_from_followers: bool,
    trace_topic: Option<String>,
}

/// Builds a [`PushConsumer`].
#[derive(Debug, Clone)]
pub struct PushConsumerBuilder {
    client: ClientConfig,
    group: String,
    subscriptions: Vec<(String, Selector)>,
    settings: Settings,
}

impl Default for PushConsumerBuilder {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            group: String::new(),
            subscriptions: Vec::new(),
            settings: Settings {
                model: MessageModel::Clustering,
                consume_from: ConsumeFrom::LastOffset,
                strategy: AllocateStrategy::Average,
                max_reconsume_times: 16,
                concurrency: 20,
                pull_batch: 32,
                max_cached_msgs: 1000,
                max_cached_bytes: 100 << 20,
                long_poll: Duration::from_secs(15),
                heartbeat_every: Duration::from_secs(10),
                rebalance_every: Duration::from_secs(20),
                membership_check_every: Duration::from_secs(2),
                persist_every: Duration::from_secs(5),
                shutdown_timeout: Duration::from_secs(30),
                suspend: Duration::from_secs(1),
                offset_dir: None,
                read_from_followers: false,
                trace_topic: None,
            },
        }
    }
}

impl PushConsumerBuilder {
    crate::core::client_builder_methods!();

    /// The consumer group (required).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Subscribes to `topic` with a tag expression (`*` or `TagA || TagB`, from a string)
    /// or an SQL92 property filter ([`Selector::sql`]), checked when the consumer starts.
    pub fn subscribe(mut self, topic: impl Into<String>, selector: impl Into<Selector>) -> Self {
        self.subscriptions.push((topic.into(), selector.into()));
        self
    }

    /// Clustering (default) or broadcasting.
    pub fn model(mut self, m: MessageModel) -> Self {
        self.settings.model = m;
        self
    }

    /// Where a group with no committed offset starts (default: last offset).
    pub fn consume_from(mut self, c: ConsumeFrom) -> Self {
        self.settings.consume_from = c;
        self
    }

    /// Queue allocation strategy (default: average).
    pub fn strategy(mut self, s: AllocateStrategy) -> Self {
        self.settings.strategy = s;
        self
    }

    /// Failed deliveries before a message goes to `%DLQ%<group>` (default 16).
    pub fn max_reconsume_times(mut self, n: u32) -> Self {
        self.settings.max_reconsume_times = n;
        self
    }

    /// Messages consumed in parallel by a concurrent listener (default 20).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n.max(1);
        self
    }

    /// Messages asked for per pull (default 32).
    pub fn pull_batch(mut self, n: u32) -> Self {
        self.settings.pull_batch = n.max(1);
        self
    }

    /// Per-queue flow control: stop pulling above this many cached messages (default
    /// 1000) or bytes (default 100 MiB).
    pub fn cache_limits(mut self, msgs: usize, bytes: usize) -> Self {
        self.settings.max_cached_msgs = msgs.max(1);
        self.settings.max_cached_bytes = bytes.max(1);
        self
    }

    /// How often members heartbeat (default 10 s) and check the member list for changes
    /// (default 2 s); a full rebalance runs every 20 s regardless.
    pub fn membership_timing(mut self, heartbeat: Duration, check: Duration) -> Self {
        self.settings.heartbeat_every = heartbeat;
        self.settings.membership_check_every = check;
        self
    }

    /// How often offsets are committed (default 5 s).
    pub fn persist_every(mut self, d: Duration) -> Self {
        self.settings.persist_every = d;
        self
    }

    /// How long [`PushConsumer::shutdown`] waits for listeners still running (default 30 s);
    /// messages they have not finished stay unacknowledged and are delivered again.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.settings.shutdown_timeout = d;
        self
    }

    /// Where broadcasting consumers keep offsets (default `~/.raftmq_offsets`).
    pub fn offset_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.offset_dir = Some(dir.into());
        self
    }

    /// Pull from any replica instead of the leader (all serve only committed data).
    pub fn read_from_followers(mut self, on: bool) -> Self {
        self.settings.read_from_followers = on;
        self
    }

    /// Records every consumption attempt (time, cost, status, redelivery count) as an
    /// event in `topic` ([`crate::trace::TRACE_TOPIC`] is RocketMQ's default; create it
    /// first), in the background; `raftmq msg trace ID` shows them with the send.
    pub fn trace(mut self, topic: impl Into<String>) -> Self {
        self.settings.trace_topic = Some(topic.into());
        self
    }

    /// How long a pull waits at the broker for new messages (default 15 s).
    pub fn long_poll(mut self, d: Duration) -> Self {
        self.settings.long_poll = d;
        self
    }

    fn check(&self) -> Result<Vec<(TopicName, TagFilter)>> {
        names::validate_group(&self.group)
            .map_err(|e| Error::Invalid(format!("consumer group: {e}")))?;
        if self.subscriptions.is_empty() {
            return Err(Error::Invalid("subscribe to at least one topic".into()));
        }
        let mut subs = Vec::new();
        for (t, e) in &self.subscriptions {
            names::validate_topic(t).map_err(Error::Invalid)?;
            subs.push((
                TopicName::from(t.as_str()),
                TagFilter::of(e).map_err(Error::Invalid)?,
            ));
        }
        Ok(subs)
    }

    /// Starts consuming with a concurrent listener: up to `concurrency` messages at once,
    /// in no particular order.
    ///
    /// # Errors
    /// Invalid settings.
    pub async fn start<F, Fut>(self, listener: F) -> Result<PushConsumer>
    where
        F: Fn(MessageExt) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ConsumeResult> + Send + 'static,
    {
        let f: ConcurrentFn = Arc::new(move |m| listener(m).boxed());
        self.launch(Listener::Concurrent(f)).await
    }

    /// Starts consuming with an orderly listener: one message at a time per queue, in
    /// queue order; in clustering mode each queue is locked at the broker so that no two
    /// instances consume it at once.
    ///
    /// # Errors
    /// Invalid settings.
    pub async fn start_orderly<F, Fut>(self, listener: F) -> Result<PushConsumer>
    where
        F: Fn(MessageExt) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = OrderlyResult> + Send + 'static,
    {
        let f: OrderlyFn = Arc::new(move |m| listener(m).boxed());
        self.launch(Listener::Orderly(f)).await
    }

    async fn launch(self, listener: Listener) -> Result<PushConsumer> {
        let mut subs = self.check()?;
        let tracer = match &self.settings.trace_topic {
            Some(t) => Some(Tracer::start(self.client.clone(), t)?),
            None => None,
        };
        let core = Arc::new(Core::new(self.client)?);
        let group = ConsumerGroup::from(self.group.as_str());
        let offsets = match self.settings.model {
            MessageModel::Clustering => {
                // Failed messages come back through the group's retry topic.
                subs.push((
                    TopicName::from(names::retry_topic(&self.group)),
                    TagFilter::All,
                ));
                OffsetStore::remote(core.clone(), group.clone())
            }
            MessageModel::Broadcasting => {
                let dir = self.settings.offset_dir.clone().unwrap_or_else(|| {
                    std::env::var_os("HOME")
                        .map_or_else(|| PathBuf::from("."), PathBuf::from)
                        .join(".raftmq_offsets")
                });
                OffsetStore::local(
                    dir,
                    &format!(
                        "{}@{}",
                        self.group,
                        core.client_id().replace(['/', '#'], "_")
                    ),
                )?
            }
        };
        let member = Member {
            core: core.clone(),
            group: group.clone(),
            model: self.settings.model,
            strategy: self.settings.strategy,
            consume_from: self.settings.consume_from,
        };
        let inner = Arc::new(Inner {
            member,
            core,
            group,
            subs,
            listener,
            offsets,
            slots: Arc::new(Semaphore::new(self.settings.concurrency)),
            settings: self.settings,
            assigned: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            rebalance_now: Notify::new(),
            members: Mutex::new(HashMap::new()),
            tracer,
        });
        inner.heartbeat().await;
        inner.tasks.spawn(inner.clone().rebalance_loop());
        inner.tasks.spawn(inner.clone().heartbeat_loop());
        inner.tasks.spawn(inner.clone().persist_loop());
        if matches!(inner.listener, Listener::Orderly(_))
            && inner.settings.model == MessageModel::Clustering
        {
            inner.tasks.spawn(inner.clone().lock_loop());
        }
        Ok(PushConsumer { inner })
    }
}

/// A running push consumer. Dropping it does not stop it: call [`PushConsumer::shutdown`].
#[derive(Debug, Clone)]
pub struct PushConsumer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    member: Member,
    core: Arc<Core>,
    group: ConsumerGroup,
    subs: Vec<(TopicName, TagFilter)>,
    listener: Listener,
    offsets: OffsetStore,
    slots: Arc<Semaphore>,
    settings: Settings,
    assigned: Mutex<HashMap<MessageQueue, Arc<ProcessQueue>>>,
    stop: CancellationToken,
    tasks: TaskTracker,
    rebalance_now: Notify,
    /// Last member list seen per topic.
    members: Mutex<HashMap<TopicName, Vec<String>>>,
    /// Records consumption attempts, when tracing ([`PushConsumerBuilder::trace`]).
    tracer: Option<Arc<Tracer>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PushConsumer {
    /// A builder with RocketMQ's defaults.
    pub fn builder() -> PushConsumerBuilder {
        PushConsumerBuilder::default()
    }

    /// The queues this instance currently consumes.
    pub fn assigned(&self) -> Vec<MessageQueue> {
        let mut v: Vec<_> = lock(&self.inner.assigned).keys().cloned().collect();
        v.sort();
        v
    }

    /// This instance's id in the group.
    pub fn client_id(&self) -> &str {
        self.inner.core.client_id()
    }

    /// Stops at once, as if the process died: no offset commit, no lock release, no
    /// goodbye to the brokers (for failure tests; use [`PushConsumer::shutdown`] normally).
    pub fn abort(&self) {
        self.inner.stop.cancel();
        for pq in lock(&self.inner.assigned).values() {
            pq.dropped.cancel();
        }
        self.inner.core.close();
    }

    /// Stops pulling, waits (up to the shutdown timeout) for messages being consumed, commits offsets,
    /// releases orderly locks and leaves the group.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.tasks.close();
        let _ = tokio::time::timeout(inner.settings.shutdown_timeout, inner.tasks.wait()).await;
        let queues: Vec<Arc<ProcessQueue>> =
            lock(&inner.assigned).drain().map(|(_, pq)| pq).collect();
        for pq in &queues {
            pq.dropped.cancel();
            // A listener still busy past the timeout keeps its message unacknowledged.
            let _busy = tokio::time::timeout(inner.settings.shutdown_timeout, pq.busy.lock()).await;
            inner.offsets.update(&pq.mq, pq.commit_offset());
        }
        if let Err(e) = inner.offsets.persist(None).await {
            tracing::warn!(error = %e, "could not commit offsets on shutdown");
        }
        if matches!(inner.listener, Listener::Orderly(_)) {
            inner
                .unlock(queues.iter().map(|pq| pq.mq.clone()).collect())
                .await;
        }
        inner.leave().await;
        if let Some(t) = &inner.tracer {
            t.flush().await;
        }
        inner.core.close();
    }
}

/// The message as the listener should see it: retried messages carry their original topic.
fn present(mut m: MessageExt) -> MessageExt {
    if let Some(t) = m.property(PROP_RETRY_TOPIC).map(str::to_owned) {
        m.topic = TopicName(t);
    }
    m
}

impl Inner {
    fn clustering(&self) -> bool {
        self.settings.model == MessageModel::Clustering
    }

    async fn group_route(&self, mq: &MessageQueue) -> Result<BrokerGroupRoute> {
        self.member.group_route(mq).await
    }

    async fn heartbeat(&self) {
        self.member.heartbeat(&self.subs, false).await;
    }

    async fn leave(&self) {
        self.member.heartbeat(&self.subs, true).await;
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(self.settings.heartbeat_every) => {}
            }
            self.heartbeat().await;
        }
    }

    async fn persist_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(self.settings.persist_every) => {}
            }
            let queues: Vec<Arc<ProcessQueue>> = lock(&self.assigned).values().cloned().collect();
            for pq in queues {
                self.offsets.update(&pq.mq, pq.commit_offset());
            }
            if let Err(e) = self.offsets.persist(None).await {
                tracing::debug!(error = %e, "offset commit failed; will retry");
            }
        }
    }

    async fn rebalance_loop(self: Arc<Self>) {
        let mut last_full = Instant::now();
        self.rebalance().await;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.rebalance_now.notified() => {}
                _ = tokio::time::sleep(self.settings.membership_check_every) => {}
            }
            let incomplete = self
                .subs
                .iter()
                .any(|(t, _)| !lock(&self.members).contains_key(t));
            if incomplete
                || last_full.elapsed() >= self.settings.rebalance_every
                || self.members_changed().await
            {
                last_full = Instant::now();
                self.rebalance().await;
            }
        }
    }

    async fn members_changed(&self) -> bool {
        if !self.clustering() {
            return false;
        }
        for (t, _) in &self.subs {
            let Ok(route) = self.core.route(t, false).await else {
                continue;
            };
            if let Ok(list) = self.member.members(&route).await {
                if lock(&self.members).get(t) != Some(&list) {
                    return true;
                }
            }
        }
        false
    }

    async fn rebalance(self: &Arc<Self>) {
        for (topic, filter) in &self.subs {
            // A fresh route, as every member takes when it rebalances: allocating over a
            // route up to `route_refresh` old, two members would split different queue
            // lists (a group added to or taken off the topic), both taking some queue
            // (duplicates) or neither (a stall) until the older route expired.
            let route = match self.core.route(topic, true).await {
                Ok(r) => r,
                Err(e) => {
                    if !is_retry(topic) {
                        tracing::warn!(topic = %topic, error = %e, "cannot rebalance: no route");
                    }
                    continue;
                }
            };
            match self.member.share(&route).await {
                Ok(Some((mine, members))) => {
                    lock(&self.members).insert(topic.clone(), members);
                    self.apply_assignment(topic, filter, mine).await;
                }
                // Our heartbeat has not reached this broker yet.
                Ok(None) => self.heartbeat().await,
                Err(e) => {
                    tracing::debug!(topic = %topic, error = %e, "cannot read the group's members")
                }
            }
        }
    }

    async fn apply_assignment(
        self: &Arc<Self>,
        topic: &TopicName,
        filter: &TagFilter,
        mine: Vec<MessageQueue>,
    ) {
        let current: Vec<MessageQueue> = lock(&self.assigned)
            .keys()
            .filter(|mq| &mq.topic == topic)
            .cloned()
            .collect();
        let removed: Vec<MessageQueue> = current
            .iter()
            .filter(|mq| !mine.contains(mq))
            .cloned()
            .collect();
        let added: Vec<MessageQueue> = mine
            .iter()
            .filter(|mq| !current.contains(mq))
            .cloned()
            .collect();
        if removed.is_empty() && added.is_empty() {
            return;
        }
        tracing::info!(
            group = %self.group, topic = %topic,
            added = added.len(), removed = removed.len(), now = mine.len(),
            "rebalanced"
        );
        for mq in removed {
            let pq = lock(&self.assigned).remove(&mq);
            if let Some(pq) = pq {
                pq.dropped.cancel();
                let _busy = pq.busy.lock().await;
                self.offsets.update(&mq, pq.commit_offset());
                if let Err(e) = self.offsets.persist(Some(&mq)).await {
                    tracing::warn!(queue = %mq, error = %e, "could not commit the offset of a released queue");
                }
                self.offsets.remove(&mq);
                if matches!(self.listener, Listener::Orderly(_)) && self.clustering() {
                    self.unlock(vec![mq]).await;
                }
            }
        }
        for mq in added {
            let start = match self.member.start_offset(&mq, &self.offsets).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(queue = %mq, error = %e, "cannot find where to start; will retry at the next rebalance");
                    continue;
                }
            };
            let pq = Arc::new(ProcessQueue::new(mq.clone(), filter.clone(), start));
            lock(&self.assigned).insert(mq, pq.clone());
            self.tasks.spawn(self.clone().pull_loop(pq.clone()));
            if matches!(self.listener, Listener::Orderly(_)) {
                if !self.clustering() {
                    pq.set_locked(Some(
                        Instant::now() + Duration::from_secs(u64::from(u32::MAX)),
                    ));
                }
                self.tasks.spawn(self.clone().orderly_loop(pq));
            }
        }
        if matches!(self.listener, Listener::Orderly(_)) && self.clustering() {
            self.rebalance_now.notify_one();
        }
    }

    /// Pulls one queue until it is dropped or the consumer stops.
    async fn pull_loop(self: Arc<Self>, pq: Arc<ProcessQueue>) {
        let mut backoff = Duration::from_millis(50);
        let mut next_node = 0usize;
        let orderly_cluster = matches!(self.listener, Listener::Orderly(_)) && self.clustering();
        loop {
            if pq.dropped.is_cancelled() || self.stop.is_cancelled() {
                return;
            }
            let (n, bytes) = pq.load();
            let blocked = (orderly_cluster && !pq.locked())
                || n >= self.settings.max_cached_msgs
                || bytes >= self.settings.max_cached_bytes;
            if blocked {
                tokio::select! {
                    _ = pq.dropped.cancelled() => return,
                    _ = self.stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
            let res = match self.group_route(&pq.mq).await {
                Ok(g) => {
                    let addr = if self.settings.read_from_followers && !g.nodes.is_empty() {
                        next_node += 1;
                        Some(g.nodes[next_node % g.nodes.len()].addr.clone())
                    } else {
                        self.core.leader_addr(&g)
                    };
                    match addr {
                        Some(addr) => Some((self.pull_once(&pq, &addr).await, g)),
                        None => None,
                    }
                }
                Err(_) => None,
            };
            let err = match res {
                Some((Ok(()), _)) => {
                    backoff = Duration::from_millis(50);
                    continue;
                }
                Some((Err(e), g)) => {
                    if self.core.learn_leader(&g.broker_group, &e, Some(&g)) {
                        continue;
                    }
                    match &e {
                        Error::Wire(WireError::OffsetTooSmall { min, .. }) => {
                            tracing::warn!(queue = %pq.mq, offset = pq.next_pull(), min, "messages below the queue's minimum were deleted by retention; skipping ahead");
                            pq.reset_pull(*min);
                            continue;
                        }
                        Error::Wire(WireError::OffsetTooLarge { max, .. }) => {
                            tracing::warn!(queue = %pq.mq, offset = pq.next_pull(), max, "offset beyond the queue's end; resetting to the end");
                            pq.reset_pull(*max);
                            continue;
                        }
                        _ => {}
                    }
                    self.core.forget_leader(&g.broker_group);
                    Some(e)
                }
                None => None,
            };
            if let Some(e) = err {
                tracing::debug!(queue = %pq.mq, error = %e, "pull failed; retrying");
            }
            tokio::select! {
                _ = pq.dropped.cancelled() => return,
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    async fn pull_once(self: &Arc<Self>, pq: &Arc<ProcessQueue>, addr: &str) -> Result<()> {
        let offset = pq.next_pull();
        let req = PullMessageRequest {
            consumer_group: self.group.clone(),
            topic: pq.mq.topic.clone(),
            queue_id: pq.mq.queue_id,
            offset: Offset(offset),
            max_msgs: self.settings.pull_batch,
            max_bytes: 4 << 20,
            max_wait_ms: self.settings.long_poll.as_millis() as u64,
            tags: pq.filter.broker_tags(),
        };
        let timeout = self.settings.long_poll + Duration::from_secs(5);
        let sql = pq.filter.sql();
        let resp = tokio::select! {
            r = self.core.call(addr, timeout, |b, cx| async move {
                match sql {
                    Some(sql) => b.pull_where(cx, req, sql).await,
                    None => b.pull(cx, req).await,
                }
            }) => r?,
            _ = pq.dropped.cancelled() => return Ok(()),
            _ = self.stop.cancelled() => return Ok(()),
        };
        let msgs: Vec<MessageExt> = resp
            .messages
            .into_iter()
            .filter(|m| pq.filter.matches(m))
            .collect();
        let added = pq.add(msgs, resp.next_offset.0);
        match &self.listener {
            Listener::Concurrent(f) => {
                for m in added {
                    let Ok(permit) = self.slots.clone().acquire_owned().await else {
                        return Ok(());
                    };
                    let (inner, pq, f) = (self.clone(), pq.clone(), f.clone());
                    self.tasks.spawn(async move {
                        inner.consume_concurrently(&pq, m, &f).await;
                        drop(permit);
                    });
                }
            }
            Listener::Orderly(_) => pq.wake.notify_one(),
        }
        Ok(())
    }

    async fn consume_concurrently(&self, pq: &ProcessQueue, m: MessageExt, f: &ConcurrentFn) {
        let offset = m.queue_offset.0;
        loop {
            if pq.dropped.is_cancelled() {
                return;
            }
            let traced = self.trace_start(&m);
            let result = AssertUnwindSafe(f(present(m.clone())))
                .catch_unwind()
                .await
                .unwrap_or(ConsumeResult::ReconsumeLater);
            self.trace_end(traced, matches!(result, ConsumeResult::Success));
            match result {
                ConsumeResult::Success => break,
                ConsumeResult::ReconsumeLater => match self.send_back(&m).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(msg_id = %m.msg_id, error = %e, "could not return a failed message; consuming it again locally");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        }
        pq.remove(offset);
        self.offsets.update(&pq.mq, pq.commit_offset());
    }

    /// A consume event for `m`, when tracing, and when the attempt started.
    fn trace_start(&self, m: &MessageExt) -> Option<(TraceEvent, Instant)> {
        self.tracer.as_ref()?;
        let now = raftmq_proto::clock::now_ms();
        let e = TraceEvent::consume(m, self.group.as_str(), self.core.client_id(), now);
        Some((e, Instant::now()))
    }

    /// Records an attempt [`Inner::trace_start`] began.
    fn trace_end(&self, traced: Option<(TraceEvent, Instant)>, success: bool) {
        if let (Some(tracer), Some((mut e, started))) = (&self.tracer, traced) {
            e.cost_ms = started.elapsed().as_millis() as u64;
            e.status = if success {
                "success"
            } else {
                "reconsume_later"
            }
            .into();
            tracer.record(e);
        }
    }

    async fn send_back(&self, m: &MessageExt) -> Result<()> {
        let route = self.core.route(&m.topic, false).await;
        let g = match route.ok().and_then(|r| {
            r.groups
                .iter()
                .find(|g| g.broker_group == m.broker_group)
                .cloned()
        }) {
            Some(g) => g,
            None => {
                let cluster = self.core.cluster().await?;
                cluster
                    .groups
                    .into_iter()
                    .find(|g| g.broker_group == m.broker_group)
                    .ok_or_else(|| Error::NoRoute {
                        topic: m.topic.to_string(),
                        reason: format!("broker group {} is gone", m.broker_group),
                    })?
            }
        };
        let req = SendBackRequest {
            group: self.group.clone(),
            msg_id: m.msg_id.clone(),
            delay_level: 0,
            max_reconsume_times: self.settings.max_reconsume_times,
        };
        self.core
            .call_leader(&g, Duration::from_secs(10), move |b, cx| {
                let req = req.clone();
                async move { b.send_back(cx, req).await }
            })
            .await
    }

    /// Orderly mode: one message at a time, in order, while the queue is locked.
    async fn orderly_loop(self: Arc<Self>, pq: Arc<ProcessQueue>) {
        let Listener::Orderly(f) = self.listener.clone() else {
            return;
        };
        loop {
            if pq.dropped.is_cancelled() || self.stop.is_cancelled() {
                return;
            }
            let next = if pq.locked() { pq.first() } else { None };
            let Some(m) = next else {
                tokio::select! {
                    _ = pq.dropped.cancelled() => return,
                    _ = self.stop.cancelled() => return,
                    _ = pq.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            };
            let busy = pq.busy.lock().await;
            if pq.dropped.is_cancelled() || !pq.locked() {
                continue;
            }
            let offset = m.queue_offset.0;
            let traced = self.trace_start(&m);
            let result = AssertUnwindSafe(f(present(m)))
                .catch_unwind()
                .await
                .unwrap_or(OrderlyResult::SuspendCurrentQueueAMoment);
            self.trace_end(traced, matches!(result, OrderlyResult::Success));
            match result {
                OrderlyResult::Success => {
                    pq.remove(offset);
                    self.offsets.update(&pq.mq, pq.commit_offset());
                    drop(busy);
                }
                OrderlyResult::SuspendCurrentQueueAMoment => {
                    pq.bump_reconsume(offset);
                    drop(busy);
                    tokio::select! {
                        _ = pq.dropped.cancelled() => return,
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(self.settings.suspend) => {}
                    }
                }
            }
        }
    }

    /// Orderly clustering: keeps the broker-side locks of assigned queues.
    async fn lock_loop(self: Arc<Self>) {
        let mut every = Duration::from_secs(20);
        loop {
            let queues: Vec<Arc<ProcessQueue>> = lock(&self.assigned).values().cloned().collect();
            let mut by_group: BTreeMap<BrokerGroup, Vec<Arc<ProcessQueue>>> = BTreeMap::new();
            for pq in queues {
                by_group
                    .entry(pq.mq.broker_group.clone())
                    .or_default()
                    .push(pq);
            }
            for (bg, pqs) in by_group {
                let Some(first) = pqs.first() else { continue };
                let Ok(g) = self.group_route(&first.mq).await else {
                    continue;
                };
                let req = LockQueuesRequest {
                    group: self.group.clone(),
                    client_id: self.core.client_id().to_owned(),
                    queues: pqs
                        .iter()
                        .map(|pq| (pq.mq.topic.clone(), pq.mq.queue_id))
                        .collect(),
                };
                let asked = Instant::now();
                let res = self
                    .core
                    .call_leader(&g, self.core.config.rpc_timeout, move |b, cx| {
                        let req = req.clone();
                        async move { b.lock_queues(cx, req).await }
                    })
                    .await;
                match res {
                    Ok(r) => {
                        // Trust the lease for half its length from when we asked.
                        let until = asked + Duration::from_millis(r.lease_ms / 2);
                        every = Duration::from_millis((r.lease_ms / 3).max(100));
                        for pq in &pqs {
                            let held = r
                                .locked
                                .iter()
                                .any(|(t, q)| *t == pq.mq.topic && *q == pq.mq.queue_id);
                            pq.set_locked(held.then_some(until));
                        }
                    }
                    Err(e) => {
                        tracing::debug!(broker_group = %bg, error = %e, "locking queues failed; will retry")
                    }
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.rebalance_now.notified() => {}
                _ = tokio::time::sleep(if self.all_locked() { every } else { Duration::from_millis(500) }) => {}
            }
        }
    }

    fn all_locked(&self) -> bool {
        lock(&self.assigned).values().all(|pq| pq.locked())
    }

    async fn unlock(&self, queues: Vec<MessageQueue>) {
        let mut by_group: BTreeMap<BrokerGroup, Vec<MessageQueue>> = BTreeMap::new();
        for mq in queues {
            by_group
                .entry(mq.broker_group.clone())
                .or_default()
                .push(mq);
        }
        for (_, mqs) in by_group {
            let Some(first) = mqs.first() else { continue };
            let Ok(g) = self.group_route(first).await else {
                continue;
            };
            let req = LockQueuesRequest {
                group: self.group.clone(),
                client_id: self.core.client_id().to_owned(),
                queues: mqs
                    .iter()
                    .map(|mq| (mq.topic.clone(), mq.queue_id))
                    .collect(),
            };
            let _ = self
                .core
                .call_leader(&g, self.core.config.rpc_timeout, move |b, cx| {
                    let req = req.clone();
                    async move { b.unlock_queues(cx, req).await }
                })
                .await;
        }
    }
}
