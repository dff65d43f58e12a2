//! [`Producer`]: sync, async (pipelined), one-way, batch and ordered sends, with retries
//! that follow leader changes within a group and move unordered sends to another group.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use raftmq_proto::broker::{SendMessageRequest, SendMessageResponse};
use raftmq_proto::namesrv::TopicRoute;
use raftmq_proto::{
    names, BrokerGroup, Message, Outcome, QueueId, SendResult, TopicName, WireError,
    MAX_MESSAGE_BYTES,
};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::core::{ClientConfig, Core};
use crate::error::{Error, Result};
use crate::trace::{TraceEvent, Tracer};
use crate::unique_key::UniqueKeys;

/// One queue of a topic on one broker group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageQueue {
    /// The topic.
    pub topic: TopicName,
    /// The broker group holding the queue.
    pub broker_group: BrokerGroup,
    /// The queue within the topic on that group.
    pub queue_id: QueueId,
}

impl std::fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.topic, self.broker_group, self.queue_id)
    }
}

/// The writable queues of a route, sorted by group then queue.
pub fn write_queues(route: &TopicRoute) -> Vec<MessageQueue> {
    route
        .groups
        .iter()
        .filter(|g| g.perm.writable())
        .flat_map(|g| {
            (0..g.write_queues).map(move |q| MessageQueue {
                topic: route.topic.clone(),
                broker_group: g.broker_group.clone(),
                queue_id: QueueId(q),
            })
        })
        .collect()
}

/// How many writable queues a route has (what [`write_queues`] would list).
fn write_queue_count(route: &TopicRoute) -> usize {
    route
        .groups
        .iter()
        .filter(|g| g.perm.writable())
        .map(|g| g.write_queues as usize)
        .sum()
}

/// The `i`-th of [`write_queues`] as `(index of its group in the route, queue)`;
/// `i` must be below [`write_queue_count`].
fn nth_write_queue(route: &TopicRoute, mut i: usize) -> (usize, QueueId) {
    for (g, group) in route.groups.iter().enumerate() {
        if !group.perm.writable() {
            continue;
        }
        let n = group.write_queues as usize;
        if i < n {
            return (g, QueueId(i as u32));
        }
        i -= n;
    }
    (0, QueueId(0))
}

/// A stable 64-bit hash (FNV-1a), so a sharding key maps to the same queue in every
/// process and version.
pub fn stable_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Builds a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerBuilder {
    client: ClientConfig,
    group: String,
    send_timeout: Duration,
    attempt_timeout: Duration,
    retries: u32,
    max_in_flight: usize,
    fault_avoidance: bool,
    auto_batch: bool,
    trace_topic: Option<String>,
}

impl Default for ProducerBuilder {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            group: "DEFAULT_PRODUCER".into(),
            send_timeout: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(1),
            retries: 2,
            max_in_flight: 1024,
            fault_avoidance: true,
            auto_batch: true,
            trace_topic: None,
        }
    }
}

impl ProducerBuilder {
    crate::core::client_builder_methods!();

    /// Producer group name (for logs and metrics).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Total time a send may take, retries included (default 3 s).
    pub fn send_timeout(mut self, t: Duration) -> Self {
        self.send_timeout = t;
        self
    }

    /// How long one attempt waits for one broker before the send tries again (default
    /// 1 s, within the send timeout). A leader that was paused or cut off is abandoned
    /// this quickly for the newly elected one; the abandoned attempt may still land, so a
    /// retried message can arrive twice (at-least-once, as with any timeout).
    pub fn attempt_timeout(mut self, t: Duration) -> Self {
        self.attempt_timeout = t;
        self
    }

    /// How many times an unordered send may move to another broker group (default 2).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Most `send_async` calls in flight at once (default 1024).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Avoid groups that answered slowly or failed recently (default on; ordered sends
    /// never avoid their queue).
    pub fn fault_avoidance(mut self, on: bool) -> Self {
        self.fault_avoidance = on;
        self
    }

    /// Coalesce sends issued concurrently to one broker into one RPC (default on). Each
    /// send still gets its own result; this only saves round trips under load.
    pub fn auto_batch(mut self, on: bool) -> Self {
        self.auto_batch = on;
        self
    }

    /// Records every send (time, cost, status, where it was stored) as an event in
    /// `topic` ([`crate::trace::TRACE_TOPIC`] is RocketMQ's default; create it first), in
    /// the background; `raftmq msg trace ID` shows them with the consumers' events.
    pub fn trace(mut self, topic: impl Into<String>) -> Self {
        self.trace_topic = Some(topic.into());
        self
    }

    /// Creates the producer (no connection is made until the first send).
    ///
    /// # Errors
    /// No NameServer address, or an invalid group name.
    pub fn build(self) -> Result<Producer> {
        names::validate_group(&self.group).map_err(Error::Invalid)?;
        let tracer = match &self.trace_topic {
            Some(t) => Some(Tracer::start(self.client.clone(), t)?),
            None => None,
        };
        let core = Arc::new(Core::new(self.client)?);
        Ok(Producer {
            inner: Arc::new(Inner {
                core,
                group: self.group,
                send_timeout: self.send_timeout,
                attempt_timeout: self.attempt_timeout,
                retries: self.retries,
                fault_avoidance: self.fault_avoidance,
                max_in_flight: self.max_in_flight,
                window: Arc::new(Semaphore::new(self.max_in_flight)),
                next: AtomicUsize::new(rand::random::<u32>() as usize),
                avoid: Mutex::new(HashMap::new()),
                auto_batch: self.auto_batch,
                sends_in_flight: AtomicUsize::new(0),
                batchers: Mutex::new(HashMap::new()),
                unique_keys: UniqueKeys::default(),
                tracer,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    core: Arc<Core>,
    group: String,
    send_timeout: Duration,
    attempt_timeout: Duration,
    retries: u32,
    fault_avoidance: bool,
    max_in_flight: usize,
    window: Arc<Semaphore>,
    next: AtomicUsize,
    /// group -> avoid until.
    avoid: Mutex<HashMap<BrokerGroup, Instant>>,
    /// Gives every message a client message id (`UNIQ_KEY`).
    unique_keys: UniqueKeys,
    auto_batch: bool,
    /// Sends currently between `call_send` and their answer.
    sends_in_flight: AtomicUsize,
    /// broker address -> its send batcher.
    batchers: Mutex<HashMap<String, mpsc::Sender<PendingSend>>>,
    /// Records sends, when tracing ([`ProducerBuilder::trace`]).
    tracer: Option<Arc<Tracer>>,
}

/// Counts a send in flight for as long as it lives.
struct InFlight<'a> {
    counter: &'a AtomicUsize,
    alone: bool,
}

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        let before = counter.fetch_add(1, Ordering::AcqRel);
        Self {
            counter,
            alone: before == 0,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A send waiting for its broker's batcher.
#[derive(Debug)]
struct PendingSend {
    req: SendMessageRequest,
    timeout: Duration,
    reply: oneshot::Sender<Result<SendMessageResponse>>,
}

/// Most sends one batched RPC carries.
const MAX_SENDS_PER_CALL: usize = 1024;
/// Batched RPCs in flight per broker.
const BATCH_CALLS_IN_FLIGHT: usize = 4;

/// Sends to one broker: waits for a free call slot, then carries everything queued
/// meanwhile in one `send_many`.
async fn run_batcher(core: Arc<Core>, addr: String, mut rx: mpsc::Receiver<PendingSend>) {
    let slots = Arc::new(Semaphore::new(BATCH_CALLS_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        let mut bytes = 0usize;
        while batch.len() < MAX_SENDS_PER_CALL && bytes < MAX_MESSAGE_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.req.messages.iter().map(|m| m.body.len()).sum::<usize>();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let (core, addr) = (core.clone(), addr.clone());
        tokio::spawn(async move {
            let timeout = batch
                .iter()
                .map(|p| p.timeout)
                .max()
                .unwrap_or(Duration::from_secs(3));
            let (reqs, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.req, p.reply)).unzip();
            match core
                .call(&addr, timeout, |c, cx| async move {
                    c.send_many(cx, reqs).await
                })
                .await
            {
                Ok(results) => {
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(r.map_err(Error::Wire));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Sends messages. Cheap to clone; clones share connections and the in-flight window.
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

/// How the destination queue is chosen.
#[derive(Debug, Clone)]
enum Target {
    /// Round-robin over writable queues, avoiding failed groups; may move groups.
    Any,
    /// Exactly this queue; never moved.
    Queue(MessageQueue),
    /// The queue a sharding key maps to; never moved.
    Key(String),
}

/// Latency -> how long to avoid a group (RocketMQ's `MQFaultStrategy` table).
fn avoid_for(latency: Duration) -> Duration {
    const TABLE: [(u64, u64); 6] = [
        (15_000, 30_000),
        (5_000, 10_000),
        (3_000, 6_000),
        (1_800, 5_000),
        (550, 2_000),
        (0, 0),
    ];
    let ms = latency.as_millis() as u64;
    let (_, avoid) = TABLE
        .iter()
        .find(|(l, _)| ms >= *l)
        .copied()
        .unwrap_or((0, 0));
    Duration::from_millis(avoid)
}

fn check_message(m: &Message) -> Result<()> {
    names::validate_topic(m.topic.as_str()).map_err(Error::Invalid)?;
    if m.body.is_empty() {
        return Err(Error::Invalid("message body is empty".into()));
    }
    if m.body.len() > MAX_MESSAGE_BYTES {
        return Err(Error::Invalid(format!(
            "message body of {} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit",
            m.body.len()
        )));
    }
    if m.delay_level > 18 {
        return Err(Error::Invalid(format!(
            "delay level {} is out of range 0..=18",
            m.delay_level
        )));
    }
    Ok(())
}

impl Producer {
    /// A builder with RocketMQ's defaults.
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    /// Sends one message and waits for the quorum acknowledgement.
    ///
    /// # Errors
    /// Invalid message (checked before sending), no route, or every attempt failed within
    /// the send timeout: the last error, or [`Error::MaybeStored`] when it alone would say
    /// "not stored" but an earlier attempt's outcome is unknown (see [`Error::outcome`]).
    pub async fn send(&self, msg: Message) -> Result<SendResult> {
        check_message(&msg)?;
        let topic = msg.topic.clone();
        let mut r = self.inner.send(topic, vec![msg], Target::Any).await?;
        r.pop()
            .ok_or_else(|| Error::Invalid("the broker returned no result".into()))
    }

    /// Sends messages of one topic as one batch, stored atomically in one queue
    /// (at most 4 MiB in all).
    ///
    /// # Errors
    /// As [`Producer::send`]; also mixed topics or an oversized batch.
    pub async fn send_batch(&self, msgs: Vec<Message>) -> Result<Vec<SendResult>> {
        let Some(first) = msgs.first() else {
            return Err(Error::Invalid("empty batch".into()));
        };
        let topic = first.topic.clone();
        let mut total = 0;
        for m in &msgs {
            check_message(m)?;
            if m.topic != topic {
                return Err(Error::Invalid(format!(
                    "a batch must have one topic; found {topic} and {}",
                    m.topic
                )));
            }
            if m.delay_level > 0 || m.deliver_at_ms > 0 {
                return Err(Error::Invalid(
                    "a batch cannot carry delayed messages".into(),
                ));
            }
            total += m.body.len();
        }
        if total > MAX_MESSAGE_BYTES {
            return Err(Error::Invalid(format!(
                "batch of {total} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit"
            )));
        }
        self.inner.send(topic, msgs, Target::Any).await
    }

    /// Sends to the queue `sharding_key` maps to: every message with the same key goes to
    /// the same queue, in order, and is never moved to another queue.
    ///
    /// # Errors
    /// As [`Producer::send`].
    pub async fn send_orderly(&self, msg: Message, sharding_key: &str) -> Result<SendResult> {
        check_message(&msg)?;
        let topic = msg.topic.clone();
        let mut r = self
            .inner
            .send(topic, vec![msg], Target::Key(sharding_key.to_owned()))
            .await?;
        r.pop()
            .ok_or_else(|| Error::Invalid("the broker returned no result".into()))
    }

    /// Sends to the queue `select` picks from the topic's writable queues (sorted by group
    /// and queue id); the choice is never changed by retries.
    ///
    /// # Errors
    /// As [`Producer::send`]; also an index out of range.
    pub async fn send_with_selector<F>(&self, msg: Message, select: F) -> Result<SendResult>
    where
        F: FnOnce(&[MessageQueue], &Message) -> usize,
    {
        check_message(&msg)?;
        let route = self.inner.core.route(&msg.topic, false).await?;
        let queues = write_queues(&route);
        let i = select(&queues, &msg);
        let q = queues.get(i).cloned().ok_or_else(|| {
            Error::Invalid(format!("selector chose queue {i} of {}", queues.len()))
        })?;
        self.send_to_queue(msg, q).await
    }

    /// Sends to exactly this queue.
    ///
    /// # Errors
    /// As [`Producer::send`].
    pub async fn send_to_queue(&self, msg: Message, queue: MessageQueue) -> Result<SendResult> {
        check_message(&msg)?;
        let topic = msg.topic.clone();
        let mut r = self
            .inner
            .send(topic, vec![msg], Target::Queue(queue))
            .await?;
        r.pop()
            .ok_or_else(|| Error::Invalid("the broker returned no result".into()))
    }

    /// Starts a send without waiting for it: waits only for a slot in the in-flight window
    /// (`max_in_flight`), then returns a handle that resolves to the result.
    ///
    /// # Errors
    /// Invalid message or closed producer (before sending).
    pub async fn send_async(&self, msg: Message) -> Result<SendHandle> {
        check_message(&msg)?;
        let permit = self
            .inner
            .window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)?;
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let topic = msg.topic.clone();
            let r = inner.send(topic, vec![msg], Target::Any).await;
            drop(permit);
            r.and_then(|mut v| {
                v.pop()
                    .ok_or_else(|| Error::Invalid("the broker returned no result".into()))
            })
        });
        Ok(SendHandle { task })
    }

    /// Sends without waiting for or reporting the result (failures are logged at debug).
    ///
    /// # Errors
    /// Invalid message or closed producer.
    pub async fn send_oneway(&self, msg: Message) -> Result<()> {
        let handle = self.send_async(msg).await?;
        tokio::spawn(async move {
            if let Err(e) = handle.await {
                tracing::debug!(error = %e, "one-way send failed");
            }
        });
        Ok(())
    }

    /// Waits for in-flight sends (and, when tracing, for their trace events to be
    /// written, at most 5 s), then closes the producer.
    pub async fn shutdown(&self) {
        if let Ok(all) = self
            .inner
            .window
            .acquire_many(self.inner.max_in_flight as u32)
            .await
        {
            all.forget();
        }
        if let Some(t) = &self.inner.tracer {
            t.flush().await;
        }
        self.inner.window.close();
        self.inner.core.close();
    }

    /// The producer group.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// The connections and routes this producer uses.
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }
}

/// The result of [`Producer::send_async`], as a future.
#[derive(Debug)]
pub struct SendHandle {
    task: tokio::task::JoinHandle<Result<SendResult>>,
}

impl Future for SendHandle {
    type Output = Result<SendResult>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|e| Err(Error::Aborted(format!("send task: {e}")))))
    }
}

impl Inner {
    fn avoided(&self, group: &BrokerGroup) -> bool {
        let avoid = self
            .avoid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        avoid.get(group).is_some_and(|t| *t > Instant::now())
    }

    fn note(&self, group: &BrokerGroup, latency: Duration, failed: bool) {
        if !self.fault_avoidance {
            return;
        }
        let d = if failed {
            Duration::from_secs(10).max(avoid_for(latency))
        } else {
            avoid_for(latency)
        };
        let mut avoid = self
            .avoid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if d.is_zero() {
            avoid.remove(group);
        } else {
            avoid.insert(group.to_owned(), Instant::now() + d);
        }
    }

    /// A topic no NameServer knows: asks each broker group in turn to auto-create it (as
    /// RocketMQ's default-topic route does), then waits until the group has registered it,
    /// so that the first send already picks its queue from the real route: a sharding key
    /// maps to the same queue from the first message on.
    async fn auto_create(&self, topic: &TopicName, deadline: Instant) -> Result<Arc<TopicRoute>> {
        let mut created = false;
        for g in self.core.cluster().await?.groups {
            let t = topic.clone();
            let res = self
                .core
                .call_leader(
                    &g,
                    deadline.saturating_duration_since(Instant::now()),
                    move |c, cx| {
                        let t = t.clone();
                        async move { c.ensure_topic(cx, t).await }
                    },
                )
                .await;
            match res {
                Ok(config) => {
                    tracing::info!(topic = %topic, broker_group = %g.broker_group, queues = config.write_queues, "the broker group auto-created the topic");
                    created = true;
                    break;
                }
                Err(Error::Wire(WireError::TopicNotFound(_))) => continue,
                Err(e) => return Err(e),
            }
        }
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.core.route(topic, true).await {
                Err(Error::NoRoute { .. }) if created && Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// One send to `addr`, through the broker's batcher when auto-batching.
    async fn call_send(
        &self,
        addr: &str,
        req: SendMessageRequest,
        timeout: Duration,
    ) -> Result<SendMessageResponse> {
        // Alone in flight, a send goes straight out: batching only pays under load.
        let _in_flight = InFlight::enter(&self.sends_in_flight);
        if !self.auto_batch || _in_flight.alone {
            return self
                .core
                .call(addr, timeout, |c, cx| async move { c.send(cx, req).await })
                .await;
        }
        let tx = {
            let mut batchers = self
                .batchers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            batchers
                .entry(addr.to_owned())
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(4 * MAX_SENDS_PER_CALL);
                    tokio::spawn(run_batcher(self.core.clone(), addr.to_owned(), rx));
                    tx
                })
                .clone()
        };
        let (reply, answer) = oneshot::channel();
        tx.send(PendingSend {
            req,
            timeout,
            reply,
        })
        .await
        .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Picks `(index of the group in the route, queue)` for a send, without copying the
    /// route (this runs once per message).
    /// A fresh route when `err` says `group` stopped taking writes for the topic (its write
    /// permission was turned off to move the topic to other groups: `raftmq topic update`)
    /// and the NameServers agree: a send to any queue then goes to another group instead
    /// of failing on a route that is up to `route_refresh` old. `None` otherwise (an ACL
    /// refusal, a pinned queue).
    async fn write_perm_withdrawn(
        &self,
        topic: &TopicName,
        group: &BrokerGroup,
        err: &Error,
        target: &Target,
    ) -> Option<Arc<TopicRoute>> {
        let refused =
            matches!(err, Error::Wire(WireError::Unauthorized(m)) if m.contains("is not writable"));
        if !refused || !matches!(target, Target::Any) {
            return None;
        }
        // The group re-registers at once after the change; give the NameServers a moment.
        for _ in 0..10 {
            if let Ok(fresh) = self.core.route(topic, true).await {
                if fresh
                    .groups
                    .iter()
                    .any(|g| &g.broker_group == group && !g.perm.writable())
                {
                    return Some(fresh);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    fn pick(
        &self,
        route: &TopicRoute,
        target: &Target,
        excluded: &HashSet<BrokerGroup>,
    ) -> Result<(usize, QueueId)> {
        let no_route = |reason: String| Error::NoRoute {
            topic: route.topic.to_string(),
            reason,
        };
        let n = write_queue_count(route);
        if n == 0 {
            return Err(no_route("no writable queue".into()));
        }
        let (group, queue) = match target {
            Target::Queue(q) => {
                return route
                    .groups
                    .iter()
                    .position(|g| g.broker_group == q.broker_group)
                    .map(|g| (g, q.queue_id))
                    .ok_or_else(|| {
                        no_route(format!(
                            "broker group {} no longer serves it",
                            q.broker_group
                        ))
                    });
            }
            Target::Key(k) => nth_write_queue(route, (stable_hash(k) % n as u64) as usize),
            Target::Any => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let nth = |i: usize| nth_write_queue(route, (start + i) % n);
                let allowed = |g: usize| !excluded.contains(&route.groups[g].broker_group);
                (0..n)
                    .map(nth)
                    .find(|&(g, _)| allowed(g) && !self.avoided(&route.groups[g].broker_group))
                    .or_else(|| (0..n).map(nth).find(|&(g, _)| allowed(g)))
                    .unwrap_or_else(|| nth(0))
            }
        };
        Ok((group, queue))
    }

    async fn send(
        &self,
        topic: TopicName,
        mut messages: Vec<Message>,
        target: Target,
    ) -> Result<Vec<SendResult>> {
        for m in &mut messages {
            self.unique_keys.stamp(m);
        }
        let Some(tracer) = &self.tracer else {
            return self.send_stamped(topic, messages, target).await;
        };
        let (started, at) = (Instant::now(), raftmq_proto::clock::now_ms());
        let mut events: Vec<TraceEvent> = messages
            .iter()
            .map(|m| TraceEvent::send(m, &self.group, self.core.client_id(), at))
            .collect();
        let r = self.send_stamped(topic, messages, target).await;
        let cost = started.elapsed().as_millis() as u64;
        for (i, e) in events.iter_mut().enumerate() {
            e.cost_ms = cost;
            match &r {
                Ok(results) => {
                    if let Some(res) = results.get(i) {
                        e.status = "ok".into();
                        e.msg_id.clone_from(&res.msg_id);
                        e.broker_group.clone_from(&res.broker_group.0);
                        e.queue_id = Some(res.queue_id.0);
                        e.queue_offset = res.queue_offset.map(|o| o.0);
                    }
                }
                Err(err) => e.status = format!("failed: {err}"),
            }
        }
        for e in events {
            tracer.record(e);
        }
        r
    }

    /// [`Inner::send`] once every message has its `UNIQ_KEY`.
    async fn send_stamped(
        &self,
        topic: TopicName,
        messages: Vec<Message>,
        target: Target,
    ) -> Result<Vec<SendResult>> {
        let deadline = Instant::now() + self.send_timeout;
        let mut route = match self.core.route(&topic, false).await {
            Err(Error::NoRoute { .. }) if !matches!(target, Target::Queue(_)) => {
                self.auto_create(&topic, deadline).await?
            }
            r => r?,
        };
        let mut excluded = HashSet::new();
        let mut switches = 0;
        let mut backoff = Duration::from_millis(20);
        let mut hops = 0;
        let (mut group, mut queue) = self.pick(&route, &target, &excluded)?;
        let req = SendMessageRequest {
            producer_group: self.group.clone(),
            topic: topic.clone(),
            queue_id: queue,
            messages,
        };
        // The first attempt whose outcome is unknown: if the send gives up later on an
        // error that alone would say "not stored", it says this one may have stored it.
        let mut uncertain: Option<Error> = None;
        loop {
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            let grp = &route.groups[group];
            let Some(addr) = self.core.leader_addr(grp) else {
                let e = Error::NoRoute {
                    topic: topic.to_string(),
                    reason: format!("group {} has no live node", grp.broker_group),
                };
                return Err(Error::gave_up(uncertain, e));
            };
            let mut r = req.clone();
            r.queue_id = queue;
            let timeout = remaining
                .min(self.attempt_timeout)
                .max(Duration::from_millis(50));
            let res = self.call_send(&addr, r, timeout).await;
            let err = match res {
                Ok(resp) => {
                    self.note(&grp.broker_group, now.elapsed(), false);
                    return Ok(resp.results);
                }
                Err(e) => e,
            };
            let withdrawn = grp.broker_group.clone();
            if let Some(fresh) = self
                .write_perm_withdrawn(&topic, &withdrawn, &err, &target)
                .await
            {
                route = fresh;
                (group, queue) = self
                    .pick(&route, &target, &excluded)
                    .map_err(|e| Error::gave_up(uncertain.clone(), e))?;
                continue;
            }
            if !err.is_retryable() || Instant::now() >= deadline {
                return Err(Error::gave_up(uncertain, err));
            }
            if uncertain.is_none() && err.outcome() == Outcome::Unknown {
                uncertain = Some(err.clone());
            }
            if hops < 3 && self.core.learn_leader(&grp.broker_group, &err, Some(grp)) {
                hops += 1;
                tracing::debug!(group = %grp.broker_group, error = %err, "following the leader hint");
                continue;
            }
            hops = 0;
            tracing::debug!(group = %grp.broker_group, addr = %addr, error = %err, "send attempt failed; retrying");
            self.note(&grp.broker_group, now.elapsed(), true);
            self.core.forget_leader(&grp.broker_group);
            let failed = grp.broker_group.clone();
            let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
            route = self.core.route(&topic, true).await.unwrap_or(route);
            if matches!(target, Target::Any)
                && switches < self.retries
                && route.groups.len() > excluded.len() + 1
            {
                excluded.insert(failed);
                switches += 1;
            }
            (group, queue) = match self.pick(&route, &target, &excluded) {
                Ok(p) => p,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "no target yet; waiting");
                    continue;
                }
                Err(e) => return Err(Error::gave_up(uncertain, e)),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_send_task_that_dies_reports_an_unknown_outcome() {
        let handle = SendHandle {
            task: tokio::spawn(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(Error::Closed)
            }),
        };
        handle.task.abort();
        let e = handle.await.unwrap_err();
        assert!(matches!(e, Error::Aborted(_)), "{e:?}");
        assert_eq!(e.outcome(), Outcome::Unknown);
        assert!(!e.is_retryable());
    }

    #[test]
    fn avoidance_follows_latency() {
        assert_eq!(avoid_for(Duration::from_millis(10)), Duration::ZERO);
        assert_eq!(
            avoid_for(Duration::from_millis(600)),
            Duration::from_secs(2)
        );
        assert_eq!(avoid_for(Duration::from_secs(20)), Duration::from_secs(30));
    }

    #[test]
    fn queue_indexing_matches_the_listed_writable_queues() {
        use raftmq_proto::config::Perm;
        use raftmq_proto::namesrv::BrokerGroupRoute;
        let group = |name: &str, queues: u32, perm: Perm| BrokerGroupRoute {
            cluster: "c".into(),
            broker_group: name.into(),
            group_id: None,
            read_queues: queues,
            write_queues: queues,
            perm,
            leader: None,
            nodes: Vec::new(),
        };
        let route = TopicRoute {
            topic: "T".into(),
            groups: vec![
                group("a", 3, Perm::RW),
                group("b", 5, Perm(Perm::READ)),
                group("c", 2, Perm::RW),
            ],
        };
        let listed = write_queues(&route);
        assert_eq!(write_queue_count(&route), listed.len());
        for (i, q) in listed.iter().enumerate() {
            let (g, queue) = nth_write_queue(&route, i);
            assert_eq!(
                (route.groups[g].broker_group.as_str(), queue),
                (q.broker_group.as_str(), q.queue_id)
            );
        }
    }

    #[test]
    fn sharding_keys_map_stably() {
        assert_eq!(stable_hash("order-1"), stable_hash("order-1"));
        assert_ne!(stable_hash("order-1"), stable_hash("order-2"));
        assert!(check_message(&Message::new("T", "")).is_err());
        assert!(check_message(&Message::new("", "x")).is_err());
        assert!(check_message(&Message::new("T", vec![0u8; MAX_MESSAGE_BYTES + 1])).is_err());
    }
}
