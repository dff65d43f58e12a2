//! [`LitePullConsumer`]: the application polls; assign queues yourself or subscribe and
//! let the group rebalance; commit and seek explicitly or auto-commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftmq_proto::broker::PullMessageRequest;
use raftmq_proto::{names, ConsumerGroup, MessageExt, Offset, TopicName, WireError};

use super::allocate::AllocateStrategy;
use super::filter::{Selector, TagFilter};
use super::member::Member;
use super::offsets::OffsetStore;
use super::push::{ConsumeFrom, MessageModel};
use crate::core::{ClientConfig, Core};
use crate::error::{Error, Result};
use crate::producer::MessageQueue;

/// Builds a [`LitePullConsumer`].
#[derive(Debug, Clone)]
pub struct LitePullConsumerBuilder {
    client: ClientConfig,
    group: String,
    consume_from: ConsumeFrom,
    strategy: AllocateStrategy,
    auto_commit: Option<Duration>,
    pull_batch: u32,
}

impl Default for LitePullConsumerBuilder {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            group: String::new(),
            consume_from: ConsumeFrom::LastOffset,
            strategy: AllocateStrategy::Average,
            auto_commit: Some(Duration::from_secs(5)),
            pull_batch: 10,
        }
    }
}

impl LitePullConsumerBuilder {
    crate::core::client_builder_methods!();

    /// The consumer group (required).
    pub fn group(mut self, g: impl Into<String>) -> Self {
        self.group = g.into();
        self
    }

    /// Where a queue with no committed offset starts (default: last offset).
    pub fn consume_from(mut self, c: ConsumeFrom) -> Self {
        self.consume_from = c;
        self
    }

    /// Queue allocation when subscribed (default: average).
    pub fn strategy(mut self, s: AllocateStrategy) -> Self {
        self.strategy = s;
        self
    }

    /// Commit polled positions automatically this often (default 5 s); `None` to commit
    /// only through [`LitePullConsumer::commit`].
    pub fn auto_commit(mut self, every: Option<Duration>) -> Self {
        self.auto_commit = every;
        self
    }

    /// Messages asked for per queue per poll (default 10).
    pub fn pull_batch(mut self, n: u32) -> Self {
        self.pull_batch = n.max(1);
        self
    }

    /// Creates the consumer; then `subscribe` or `assign`.
    ///
    /// # Errors
    /// Invalid group or no NameServer.
    pub fn build(self) -> Result<LitePullConsumer> {
        names::validate_group(&self.group)
            .map_err(|e| Error::Invalid(format!("consumer group: {e}")))?;
        let core = Arc::new(Core::new(self.client)?);
        let group = ConsumerGroup::from(self.group.as_str());
        Ok(LitePullConsumer {
            member: Member {
                core: core.clone(),
                group: group.clone(),
                model: MessageModel::Clustering,
                strategy: self.strategy,
                consume_from: self.consume_from,
            },
            offsets: OffsetStore::remote(core, group),
            subs: Vec::new(),
            assigned: BTreeMap::new(),
            fixed: false,
            auto_commit: self.auto_commit,
            pull_batch: self.pull_batch,
            last_commit: Instant::now(),
            last_rebalance: None,
            last_heartbeat: None,
            members: HashMap::new(),
        })
    }
}

/// A consumer the application polls. Not shared between tasks: call it from one.
#[derive(Debug)]
pub struct LitePullConsumer {
    member: Member,
    offsets: OffsetStore,
    subs: Vec<(TopicName, TagFilter)>,
    /// Assigned queues -> (filter, next offset to poll).
    assigned: BTreeMap<MessageQueue, (TagFilter, u64)>,
    fixed: bool,
    auto_commit: Option<Duration>,
    pull_batch: u32,
    last_commit: Instant,
    last_rebalance: Option<Instant>,
    last_heartbeat: Option<Instant>,
    members: HashMap<TopicName, Vec<String>>,
}

impl LitePullConsumer {
    /// A builder.
    pub fn builder() -> LitePullConsumerBuilder {
        LitePullConsumerBuilder::default()
    }

    /// Subscribes to a topic (the group shares its queues).
    ///
    /// # Errors
    /// Invalid topic or expression, or queues were already assigned by hand.
    pub fn subscribe(&mut self, topic: &str, selector: impl Into<Selector>) -> Result<()> {
        if self.fixed {
            return Err(Error::Invalid(
                "this consumer uses assign(); it cannot also subscribe".into(),
            ));
        }
        names::validate_topic(topic).map_err(Error::Invalid)?;
        self.subs.push((
            TopicName::from(topic),
            TagFilter::of(&selector.into()).map_err(Error::Invalid)?,
        ));
        self.last_rebalance = None;
        Ok(())
    }

    /// Consumes exactly these queues (no group rebalancing).
    ///
    /// # Errors
    /// The consumer already subscribes.
    pub async fn assign(&mut self, queues: Vec<MessageQueue>) -> Result<()> {
        if !self.subs.is_empty() {
            return Err(Error::Invalid(
                "this consumer subscribes; it cannot also assign()".into(),
            ));
        }
        self.fixed = true;
        self.assigned.retain(|mq, _| queues.contains(mq));
        for mq in queues {
            if !self.assigned.contains_key(&mq) {
                let start = self.member.start_offset(&mq, &self.offsets).await?;
                self.assigned.insert(mq, (TagFilter::All, start));
            }
        }
        Ok(())
    }

    /// The queues currently assigned.
    pub fn assignment(&self) -> Vec<MessageQueue> {
        self.assigned.keys().cloned().collect()
    }

    /// Moves a queue's position.
    ///
    /// # Errors
    /// The queue is not assigned.
    pub fn seek(&mut self, mq: &MessageQueue, offset: u64) -> Result<()> {
        let e = self.assigned.get_mut(mq).ok_or_else(|| {
            Error::Invalid(format!("queue {mq} is not assigned to this consumer"))
        })?;
        e.1 = offset;
        Ok(())
    }

    /// Commits the positions after everything polled so far.
    ///
    /// # Errors
    /// A broker group refused or is unreachable.
    pub async fn commit(&mut self) -> Result<()> {
        for (mq, (_, o)) in &self.assigned {
            self.offsets.update(mq, *o);
        }
        self.last_commit = Instant::now();
        self.offsets.persist(None).await
    }

    async fn maintain(&mut self) -> Result<()> {
        if self.fixed {
            return Ok(());
        }
        if self
            .last_heartbeat
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.member.heartbeat(&self.subs, false).await;
            self.last_heartbeat = Some(Instant::now());
        }
        let due = self
            .last_rebalance
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
        if !due {
            return Ok(());
        }
        self.last_rebalance = Some(Instant::now());
        let subs = self.subs.clone();
        for (topic, filter) in subs {
            let route = self.member.core.route(&topic, false).await?;
            let Some((mut mine, mut members)) = self.member.share(&route).await? else {
                self.member.heartbeat(&self.subs, false).await;
                continue;
            };
            if self.members.get(&topic) != Some(&members) {
                // Members changed: allocate over a fresh route, as the others do (see
                // `PushConsumer`'s rebalance), or two of them may split different queue
                // lists.
                let fresh = self.member.core.route(&topic, true).await?;
                if let Some(s) = self.member.share(&fresh).await? {
                    (mine, members) = s;
                }
            }
            let current: Vec<&MessageQueue> =
                self.assigned.keys().filter(|q| q.topic == topic).collect();
            // The same members and the same queues (a route change adds or removes
            // queues without a member change): nothing to do.
            if self.members.get(&topic) == Some(&members)
                && current.len() == mine.len()
                && mine.iter().all(|q| self.assigned.contains_key(q))
            {
                continue;
            }
            self.members.insert(topic.clone(), members);
            let dropped: Vec<MessageQueue> = self
                .assigned
                .keys()
                .filter(|q| q.topic == topic && !mine.contains(q))
                .cloned()
                .collect();
            for mq in dropped {
                if let Some((_, o)) = self.assigned.remove(&mq) {
                    self.offsets.update(&mq, o);
                    let _ = self.offsets.persist(Some(&mq)).await;
                    self.offsets.remove(&mq);
                }
            }
            for mq in mine {
                if !self.assigned.contains_key(&mq) {
                    let start = self.member.start_offset(&mq, &self.offsets).await?;
                    self.assigned.insert(mq, (filter.clone(), start));
                }
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for messages from the assigned queues (in offset order per
    /// queue) and advances past them.
    ///
    /// # Errors
    /// No route for a subscribed topic; transient broker errors are retried until the
    /// timeout.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<MessageExt>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.maintain().await?;
            if let Some(every) = self.auto_commit {
                if self.last_commit.elapsed() >= every {
                    if let Err(e) = self.commit().await {
                        tracing::debug!(error = %e, "auto-commit failed; will retry");
                    }
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Every queue is asked at once; each waits at most a short long poll.
            let wait = remaining.min(Duration::from_millis(500));
            let queues: Vec<(MessageQueue, TagFilter, u64)> = self
                .assigned
                .iter()
                .map(|(mq, (f, o))| (mq.clone(), f.clone(), *o))
                .collect();
            let pulls = queues.iter().map(|(mq, f, o)| self.pull(mq, f, *o, wait));
            let results = futures::future::join_all(pulls).await;
            let mut out = Vec::new();
            for ((mq, _, _), r) in queues.iter().zip(results) {
                match r {
                    Ok((msgs, next)) => {
                        if let Some(e) = self.assigned.get_mut(mq) {
                            e.1 = next;
                        }
                        out.extend(msgs);
                    }
                    Err(Error::Wire(WireError::OffsetTooSmall { min, .. })) => {
                        if let Some(e) = self.assigned.get_mut(mq) {
                            e.1 = min;
                        }
                    }
                    Err(e) => tracing::debug!(queue = %mq, error = %e, "poll failed; retrying"),
                }
            }
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
            if queues.is_empty() {
                tokio::time::sleep(remaining.min(Duration::from_millis(200))).await;
            }
        }
    }

    async fn pull(
        &self,
        mq: &MessageQueue,
        filter: &TagFilter,
        offset: u64,
        wait: Duration,
    ) -> Result<(Vec<MessageExt>, u64)> {
        let g = self.member.group_route(mq).await?;
        let req = PullMessageRequest {
            consumer_group: self.member.group.clone(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            offset: Offset(offset),
            max_msgs: self.pull_batch,
            max_bytes: 4 << 20,
            max_wait_ms: wait.as_millis() as u64,
            tags: filter.broker_tags(),
        };
        let core = &self.member.core;
        let sql = filter.sql();
        let resp = core
            .call_leader(&g, wait + Duration::from_secs(5), move |b, cx| {
                let (req, sql) = (req.clone(), sql.clone());
                async move {
                    match sql {
                        Some(sql) => b.pull_where(cx, req, sql).await,
                        None => b.pull(cx, req).await,
                    }
                }
            })
            .await?;
        let msgs = resp
            .messages
            .into_iter()
            .filter(|m| filter.matches(m))
            .collect();
        Ok((msgs, resp.next_offset.0))
    }

    /// Commits (when auto-committing) and leaves the group.
    pub async fn shutdown(mut self) {
        if self.auto_commit.is_some() {
            if let Err(e) = self.commit().await {
                tracing::warn!(error = %e, "could not commit offsets on shutdown");
            }
        }
        if !self.fixed {
            self.member.heartbeat(&self.subs, true).await;
        }
        self.member.core.close();
    }
}
