//! [`Admin`]: topics, groups, offsets, cluster status and message lookup — everything
//! the `raftmq` admin commands do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::broker::{
    BrokerGroupStatus, CommitOffsetsRequest, ConsumerConnection, DrainReport, NodeStats,
    NodeStatus, PullMessageRequest, QueueStatus,
};
use raftmq_proto::message::group_tag;
use raftmq_proto::namesrv::{BrokerGroupRoute, TopicRoute};
use raftmq_proto::{
    names, ConsumerGroup, ConsumerGroupConfig, FoundMessage, MessageExt, MsgId, NodeId, Offset,
    QueueId, TopicConfig, TopicName, WireError,
};

use crate::core::{ClientConfig, Core, Credentials};
use crate::error::{Error, Result};

/// Time an admin operation may take, leader changes included.
pub(crate) const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The consumer group named in the pulls [`Admin::read_queue`] makes (RocketMQ's admin
/// tools use the same name). It commits nothing, so it never shows up as a group.
pub const BROWSE_GROUP: &str = "TOOLS_CONSUMER";

/// Most messages one [`Admin::read_queue`] call returns.
pub const READ_QUEUE_MAX: u32 = 100;

/// One node as `cluster list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeInfo {
    /// Cluster name.
    pub cluster: String,
    /// Broker group.
    pub group: String,
    /// The group's id (16 hex digits) as the NameServer has it, once reported.
    pub group_id: Option<String>,
    /// Node id.
    pub node_id: u64,
    /// `leader`, `follower`, `learner`, `candidate`, `shutdown` or `unreachable`.
    pub role: String,
    /// Raft term.
    pub term: u64,
    /// Last log index.
    pub last_log_index: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Entries behind the leader, when the leader reports it.
    pub lag: Option<u64>,
    /// Client address.
    pub addr: String,
}

/// Progress of a consumer group on one queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueProgress {
    /// Topic.
    pub topic: String,
    /// Broker group.
    pub broker_group: String,
    /// Queue.
    pub queue_id: u32,
    /// One past the last offset on the broker.
    pub broker_offset: u64,
    /// The group's committed offset (next to consume).
    pub consumer_offset: u64,
    /// Messages not yet consumed.
    pub lag: u64,
}

/// The admin client.
#[derive(Debug, Clone)]
pub struct Admin {
    pub(crate) core: Arc<Core>,
}

impl Admin {
    /// An admin client for these NameServers.
    ///
    /// # Errors
    /// No address given.
    pub fn new<I, S>(namesrv: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_credentials(namesrv, None)
    }

    /// An admin client that authenticates every broker connection with `credentials`.
    ///
    /// # Errors
    /// No address given.
    pub fn with_credentials<I, S>(namesrv: I, credentials: Option<Credentials>) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_config(ClientConfig {
            namesrv: namesrv.into_iter().map(Into::into).collect(),
            credentials,
            ..ClientConfig::default()
        })
    }

    /// An admin client with every connection setting given (credentials, TLS, timeouts).
    ///
    /// # Errors
    /// No address given, or the TLS files do not load.
    pub fn with_config(config: ClientConfig) -> Result<Self> {
        Ok(Self {
            core: Arc::new(Core::new(config)?),
        })
    }

    pub(crate) async fn groups(&self) -> Result<Vec<BrokerGroupRoute>> {
        Ok(self.core.cluster().await?.groups)
    }

    async fn group(&self, name: &str) -> Result<BrokerGroupRoute> {
        self.groups()
            .await?
            .into_iter()
            .find(|g| g.broker_group.as_str() == name)
            .ok_or_else(|| Error::NoRoute {
                topic: String::new(),
                reason: format!(
                    "no live broker group named {name} is registered with the NameServers"
                ),
            })
    }

    /// Creates (or updates) a topic with `queues` read and write queues, on one broker
    /// group or on every live group. Returns the groups it was created on.
    ///
    /// # Errors
    /// Invalid name or count, no live group, or a group refused.
    pub async fn create_topic(
        &self,
        topic: &str,
        queues: u32,
        group: Option<&str>,
    ) -> Result<Vec<String>> {
        names::validate_topic(topic).map_err(Error::Invalid)?;
        if queues == 0 || queues > 1024 {
            return Err(Error::Invalid(format!(
                "queues = {queues}: must be between 1 and 1024"
            )));
        }
        let targets = match group {
            Some(g) => vec![self.group(g).await?],
            None => self.groups().await?,
        };
        if targets.is_empty() {
            return Err(Error::NoRoute {
                topic: topic.into(),
                reason: "no broker group is registered with the NameServers".into(),
            });
        }
        let mut done = Vec::new();
        for g in targets {
            self.upsert_on(&g, TopicConfig::new(topic, queues)).await?;
            done.push(g.broker_group.0);
        }
        Ok(done)
    }

    /// Deletes a topic from every group serving it. Returns those groups.
    ///
    /// # Errors
    /// Unknown topic, or a group refused.
    pub async fn delete_topic(&self, topic: &str) -> Result<Vec<String>> {
        let route = self.topic_route(topic).await?;
        let mut done = Vec::new();
        for g in route.groups {
            let t = TopicName::from(topic);
            self.core
                .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                    let t = t.clone();
                    async move { b.delete_topic(cx, t).await }
                })
                .await?;
            done.push(g.broker_group.0);
        }
        Ok(done)
    }

    /// Every topic the NameServers know, sorted.
    ///
    /// # Errors
    /// No NameServer answered.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        let topics = self
            .core
            .namesrv_call(|c, cx| async move { c.get_topics(cx).await })
            .await?;
        Ok(topics.into_iter().map(|t| t.0).collect())
    }

    /// The route of a topic.
    ///
    /// # Errors
    /// [`Error::NoRoute`] for an unknown topic.
    pub async fn topic_route(&self, topic: &str) -> Result<TopicRoute> {
        Ok(TopicRoute::clone(
            &*self.core.route(&TopicName::from(topic), true).await?,
        ))
    }

    /// Min and max offsets of every queue of a topic, per broker group.
    ///
    /// # Errors
    /// Unknown topic, or a group unreachable.
    pub async fn topic_status(&self, topic: &str) -> Result<Vec<(String, QueueStatus)>> {
        let route = self.topic_route(topic).await?;
        let mut out = Vec::new();
        for g in route.groups {
            let t = TopicName::from(topic);
            let qs = self
                .core
                .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                    let t = t.clone();
                    async move { b.topic_status(cx, t).await }
                })
                .await?;
            out.extend(qs.into_iter().map(|q| (g.broker_group.0.clone(), q)));
        }
        Ok(out)
    }

    /// Every node of every live group, with its own view of role, term and indexes and
    /// the leader's view of its lag.
    ///
    /// # Errors
    /// No NameServer answered.
    pub async fn cluster_nodes(&self) -> Result<Vec<NodeInfo>> {
        let mut out = Vec::new();
        for g in self.groups().await? {
            let mut leader_view: Option<BrokerGroupStatus> = None;
            let mut own: BTreeMap<u64, NodeStatus> = BTreeMap::new();
            for n in &g.nodes {
                let status = self
                    .core
                    .call(&n.addr, self.core.config.rpc_timeout, |b, cx| async move {
                        b.broker_group_status(cx).await
                    })
                    .await;
                if let Ok(s) = status {
                    if let Some(me) = s.nodes.iter().find(|x| x.node_id == s.node_id) {
                        own.insert(s.node_id.0, me.clone());
                    }
                    if s.leader == Some(s.node_id) {
                        leader_view = Some(s);
                    }
                }
            }
            for n in &g.nodes {
                let lag = leader_view
                    .as_ref()
                    .and_then(|l| l.nodes.iter().find(|x| x.node_id == n.node_id))
                    .and_then(|x| x.lag);
                let info = match own.get(&n.node_id.0) {
                    Some(s) => NodeInfo {
                        cluster: g.cluster.clone(),
                        group: g.broker_group.0.clone(),
                        group_id: g.group_id.map(|i| i.to_string()),
                        node_id: n.node_id.0,
                        role: s.role.to_string(),
                        term: s.term,
                        last_log_index: s.last_log_index,
                        commit_index: s.commit_index,
                        applied_index: s.applied_index,
                        lag,
                        addr: n.addr.clone(),
                    },
                    None => NodeInfo {
                        cluster: g.cluster.clone(),
                        group: g.broker_group.0.clone(),
                        group_id: g.group_id.map(|i| i.to_string()),
                        node_id: n.node_id.0,
                        role: "unreachable".into(),
                        term: n.term,
                        last_log_index: 0,
                        commit_index: 0,
                        applied_index: 0,
                        lag,
                        addr: n.addr.clone(),
                    },
                };
                out.push(info);
            }
        }
        Ok(out)
    }

    /// One node's disk use, message counters and (on a leader) follower heartbeat ages,
    /// asked of the node at `client_addr` (a [`NodeInfo::addr`]).
    ///
    /// # Errors
    /// The node is unreachable or predates this call.
    pub async fn node_stats(&self, client_addr: &str) -> Result<NodeStats> {
        self.core
            .call(
                client_addr,
                self.core.config.rpc_timeout,
                |b, cx| async move { b.node_stats(cx).await },
            )
            .await
    }

    /// The Raft status of one group as its leader sees it.
    ///
    /// # Errors
    /// Unknown group or no leader.
    pub async fn group_status(&self, group: &str) -> Result<BrokerGroupStatus> {
        let g = self.group(group).await?;
        self.core
            .call_leader(&g, ADMIN_TIMEOUT, |b, cx| async move {
                b.broker_group_status(cx).await
            })
            .await
    }

    /// Moves a group's leadership to node `to`.
    ///
    /// # Errors
    /// Unknown group or node, or the transfer did not complete.
    pub async fn transfer_leader(&self, group: &str, to: u64) -> Result<()> {
        let g = self.group(group).await?;
        self.core
            .call_leader(&g, Duration::from_secs(15), move |b, cx| async move {
                b.transfer_leader(cx, NodeId(to)).await
            })
            .await
    }

    /// Drains node `node_id` of `group` before it is stopped (or, `undo`, puts it back in
    /// service): leadership moves off it, it stands for no election and takes no new
    /// pulls, and the call waits up to `wait` for the work it is serving.
    ///
    /// # Errors
    /// Unknown group or node, the node unreachable, or not an admin.
    pub async fn drain_node(
        &self,
        group: &str,
        node_id: u64,
        undo: bool,
        wait: Duration,
    ) -> Result<DrainReport> {
        let g = self.group(group).await?;
        let node = g
            .nodes
            .iter()
            .find(|n| n.node_id.0 == node_id)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "group {group} has no node {node_id} (nodes: {})",
                    g.nodes
                        .iter()
                        .map(|n| n.node_id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let wait_ms = wait.as_millis() as u64;
        self.core
            .call(&node.addr, wait + ADMIN_TIMEOUT, move |b, cx| async move {
                b.drain(cx, undo, wait_ms).await
            })
            .await
    }

    /// Adds a node to a group (learner, then voter).
    ///
    /// # Errors
    /// Unknown group, or the change was refused.
    pub async fn add_node(
        &self,
        group: &str,
        node_id: u64,
        raft_addr: &str,
        client_addr: &str,
    ) -> Result<()> {
        let g = self.group(group).await?;
        let (r, c) = (raft_addr.to_owned(), client_addr.to_owned());
        self.core
            .call_leader(&g, Duration::from_secs(120), move |b, mut cx| {
                let (r, c) = (r.clone(), c.clone());
                cx.deadline = std::time::Instant::now() + Duration::from_secs(110);
                async move { b.add_node(cx, NodeId(node_id), r, c).await }
            })
            .await
    }

    /// Removes a node from a group.
    ///
    /// # Errors
    /// Unknown group, or the change was refused.
    pub async fn remove_node(&self, group: &str, node_id: u64) -> Result<()> {
        let g = self.group(group).await?;
        self.core
            .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| async move {
                b.remove_node(cx, NodeId(node_id)).await
            })
            .await
    }

    /// Consumer groups known to any broker group (configured or with committed offsets).
    ///
    /// # Errors
    /// A group unreachable.
    pub async fn list_groups(&self) -> Result<Vec<ConsumerGroupConfig>> {
        let mut all = BTreeMap::new();
        for g in self.groups().await? {
            for c in self
                .core
                .call_leader(
                    &g,
                    ADMIN_TIMEOUT,
                    |b, cx| async move { b.list_groups(cx).await },
                )
                .await?
            {
                all.insert(c.name.0.clone(), c);
            }
        }
        Ok(all.into_values().collect())
    }

    /// Per queue: broker offset, the group's committed offset, and the lag.
    ///
    /// # Errors
    /// A group unreachable.
    pub async fn group_progress(&self, group: &str) -> Result<Vec<QueueProgress>> {
        names::validate_group(group).map_err(Error::Invalid)?;
        let mut out = Vec::new();
        for g in self.groups().await? {
            let name = ConsumerGroup::from(group);
            let offsets = self
                .core
                .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                    let n = name.clone();
                    async move { b.group_offsets(cx, n).await }
                })
                .await?;
            let mut by_topic: BTreeMap<TopicName, BTreeMap<u32, u64>> = BTreeMap::new();
            for (t, q, o) in offsets {
                by_topic.entry(t).or_default().insert(q.0, o.0);
            }
            for (topic, committed) in by_topic {
                let t = topic.clone();
                let status = match self
                    .core
                    .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                        let t = t.clone();
                        async move { b.topic_status(cx, t).await }
                    })
                    .await
                {
                    Ok(s) => s,
                    Err(Error::Wire(WireError::TopicNotFound(_))) => continue,
                    Err(e) => return Err(e),
                };
                for q in status {
                    let consumer = committed
                        .get(&q.queue_id.0)
                        .copied()
                        .unwrap_or(q.min_offset.0);
                    out.push(QueueProgress {
                        topic: topic.to_string(),
                        broker_group: g.broker_group.0.clone(),
                        queue_id: q.queue_id.0,
                        broker_offset: q.max_offset.0,
                        consumer_offset: consumer,
                        lag: q.max_offset.0.saturating_sub(consumer),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Sets a group's offsets on every queue of `topic` to the first message stored at or
    /// after `ms` (ms since the Unix epoch). Running consumers of the group should be
    /// stopped first, or they may commit their own positions over it.
    ///
    /// # Errors
    /// Unknown topic, or a group refused.
    pub async fn reset_offset_by_time(
        &self,
        group: &str,
        topic: &str,
        ms: u64,
    ) -> Result<Vec<(String, u32, u64)>> {
        names::validate_group(group).map_err(Error::Invalid)?;
        let route = self.topic_route(topic).await?;
        let mut out = Vec::new();
        for g in route.groups {
            let mut offsets = Vec::new();
            for q in 0..g.read_queues.max(g.write_queues) {
                let t = TopicName::from(topic);
                let o = self
                    .core
                    .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                        let t = t.clone();
                        async move { b.offset_for_time(cx, t, QueueId(q), ms).await }
                    })
                    .await?;
                offsets.push((TopicName::from(topic), QueueId(q), o));
                out.push((g.broker_group.0.clone(), q, o.0));
            }
            let req = CommitOffsetsRequest {
                group: ConsumerGroup::from(group),
                offsets,
            };
            self.core
                .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                    let r = req.clone();
                    async move { b.commit_offsets(cx, r).await }
                })
                .await?;
        }
        Ok(out)
    }

    /// A message by id: where it is stored (`SendResult::msg_id`, a [`MsgId`], routed to
    /// the group its tag names) or the producer's message id (`UNIQ_KEY`,
    /// `SendResult::unique_key`, asked of every group). A delayed message is found while it
    /// waits and, by either id, once delivered.
    ///
    /// # Errors
    /// No group holds it (`WireError::MessageNotFound`), or a group was unreachable.
    pub async fn get_message(&self, msg_id: &str) -> Result<FoundMessage> {
        if msg_id.is_empty() {
            return Err(Error::Invalid("an empty message id".into()));
        }
        let mut groups = self.groups().await?;
        // The group a stored-position id names first; the others are asked for it as a
        // client message id.
        if let Some(id) = MsgId::parse(msg_id) {
            groups.sort_by_key(|g| group_tag(g.broker_group.as_str(), g.group_id) != id.group_tag);
        }
        let mut unreachable = None;
        for g in &groups {
            let m = msg_id.to_owned();
            let r = self
                .core
                .call_leader(g, ADMIN_TIMEOUT, move |b, cx| {
                    let m = m.clone();
                    async move { b.get_message(cx, m).await }
                })
                .await;
            match r {
                Ok(f) => return Ok(f),
                Err(Error::Wire(WireError::MessageNotFound(_))) => {}
                Err(e) => unreachable = unreachable.or(Some(e)),
            }
        }
        Err(unreachable.unwrap_or_else(|| Error::MessageNotFound {
            id: msg_id.to_owned(),
            groups: groups
                .iter()
                .map(|g| g.broker_group.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }))
    }

    /// Messages of `topic` with `key`, from every group serving it.
    ///
    /// # Errors
    /// Unknown topic, or a group unreachable.
    pub async fn query_by_key(&self, topic: &str, key: &str, max: u32) -> Result<Vec<MessageExt>> {
        let route = self.topic_route(topic).await?;
        let mut out = Vec::new();
        for g in route.groups {
            let (t, k) = (TopicName::from(topic), key.to_owned());
            out.extend(
                self.core
                    .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                        let (t, k) = (t.clone(), k.clone());
                        async move { b.query_by_key(cx, t, k, max).await }
                    })
                    .await?,
            );
        }
        Ok(out)
    }

    /// Committed offset of a group on one queue.
    ///
    /// # Errors
    /// Unknown group route.
    pub async fn consumer_offset(
        &self,
        group: &str,
        topic: &str,
        broker_group: &str,
        queue: u32,
    ) -> Result<Option<Offset>> {
        let g = self.group(broker_group).await?;
        let (gn, t) = (ConsumerGroup::from(group), TopicName::from(topic));
        self.core
            .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                let (gn, t) = (gn.clone(), t.clone());
                async move { b.query_offset(cx, gn, t, QueueId(queue)).await }
            })
            .await
    }

    /// Up to `max` (at most [`READ_QUEUE_MAX`]) messages of one queue from `offset`, read
    /// from the broker group's leader without committing anything. An offset below what
    /// retention kept reads from the queue's first message instead. Returns the messages and
    /// the offset to read next.
    ///
    /// # Errors
    /// Unknown broker group or topic, an offset past the queue's end, or no leader.
    pub async fn read_queue(
        &self,
        topic: &str,
        broker_group: &str,
        queue: u32,
        offset: u64,
        max: u32,
    ) -> Result<(Vec<MessageExt>, u64)> {
        names::validate_topic(topic).map_err(Error::Invalid)?;
        let g = self.group(broker_group).await?;
        let request = |offset: u64| PullMessageRequest {
            consumer_group: ConsumerGroup::from(BROWSE_GROUP),
            topic: TopicName::from(topic),
            queue_id: QueueId(queue),
            offset: Offset(offset),
            max_msgs: max.clamp(1, READ_QUEUE_MAX),
            max_bytes: 4 << 20,
            max_wait_ms: 0,
            tags: Vec::new(),
        };
        let pull = |req: PullMessageRequest| {
            self.core.call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                let r = req.clone();
                async move { b.pull(cx, r).await }
            })
        };
        let r = match pull(request(offset)).await {
            Err(Error::Wire(WireError::OffsetTooSmall { min, .. })) => pull(request(min)).await?,
            r => r?,
        };
        Ok((r.messages, r.next_offset.0))
    }

    /// The consumers of `group` now heartbeating to any broker group, with where they
    /// connect from and what they subscribed, by client id.
    ///
    /// # Errors
    /// A broker group unreachable.
    pub async fn consumer_connections(&self, group: &str) -> Result<Vec<ConsumerConnection>> {
        names::validate_group(group).map_err(Error::Invalid)?;
        let mut all = BTreeMap::new();
        for g in self.groups().await? {
            let name = ConsumerGroup::from(group);
            let members = self
                .core
                .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                    let n = name.clone();
                    async move { b.consumer_connections(cx, n).await }
                })
                .await?;
            for m in members {
                all.entry(m.client_id.clone()).or_insert(m);
            }
        }
        Ok(all.into_values().collect())
    }

    /// Pending transactions (half messages neither committed nor rolled back) of every
    /// broker group, oldest first within each, at most `max` per group.
    ///
    /// # Errors
    /// A broker group unreachable, or not admin.
    pub async fn pending_transactions(
        &self,
        max: u32,
    ) -> Result<Vec<(String, raftmq_proto::transaction::PendingTransactionInfo)>> {
        let mut out = Vec::new();
        for g in self.groups().await? {
            let pending = self
                .core
                .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| async move {
                    b.pending_transactions(cx, max).await
                })
                .await?;
            out.extend(
                pending
                    .into_iter()
                    .map(|p| (g.broker_group.as_str().to_owned(), p)),
            );
        }
        Ok(out)
    }

    /// Deletes a consumer group (its config and committed offsets) from every broker group
    /// that has it. Returns the broker groups it was deleted from.
    ///
    /// # Errors
    /// No broker group had it (`WireError::GroupNotFound`), or one refused.
    pub async fn delete_group(&self, group: &str) -> Result<Vec<String>> {
        names::validate_group(group).map_err(Error::Invalid)?;
        let mut out = Vec::new();
        for g in self.groups().await? {
            let name = ConsumerGroup::from(group);
            match self
                .core
                .call_leader(&g, ADMIN_TIMEOUT, move |b, cx| {
                    let n = name.clone();
                    async move { b.delete_group(cx, n).await }
                })
                .await
            {
                Ok(()) => out.push(g.broker_group.0.clone()),
                Err(Error::Wire(WireError::GroupNotFound(_))) => {}
                Err(e) => return Err(e),
            }
        }
        if out.is_empty() {
            return Err(Error::Wire(WireError::GroupNotFound(group.to_owned())));
        }
        Ok(out)
    }
}
