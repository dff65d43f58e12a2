//! [`BrokerServer`]: the client-facing RPCs of a broker node.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raftmq_proto::broker::{
    CommitOffsetsRequest, GroupStatus, HeartbeatRequest, HelloRequest, HelloResponse,
    LockQueuesRequest, LockQueuesResponse, PullMessageRequest, PullMessageResponse, QueueStatus,
    SendBackRequest, SendMessageRequest, SendMessageResponse,
};
use raftmq_proto::message::{
    DELAY_LEVELS_MS, MAX_DELAY_MS, PROP_DELIVER_AT, PROP_ORIGIN_MSG_ID, PROP_RETRY_TOPIC,
};
use raftmq_proto::Message;
use raftmq_proto::{
    names, BrokerService, GroupConfig, GroupName, MessageExt, MsgId, NodeId, Offset, QueueId,
    TopicConfig, TopicName, WireError, MAX_MESSAGE_BYTES, PROTOCOL_VERSION,
};
use raftmq_raft::RaftResponse;
use raftmq_raft::{RaftNode, Replica};
use raftmq_store::{Command, EntryPayload, Store};
use tarpc::context::Context;
use tokio::sync::Notify;

use crate::clients::ClientRegistry;
use crate::config::BrokerConfig;
use crate::convert::{message_ext, now_ms};
use crate::error::{raft_to_wire, store_to_wire};
use crate::send::Proposer;

/// Most sends one `send_many` call may carry.
const MAX_SENDS_PER_CALL: usize = 4096;

/// Most messages one pull returns.
const MAX_PULL_MSGS: u32 = 1024;
/// Most bytes one pull returns (about).
const MAX_PULL_BYTES: u32 = 16 << 20;

/// State shared by the broker's RPC handlers.
#[derive(Debug)]
pub struct Shared {
    pub(crate) config: BrokerConfig,
    pub(crate) replica: Replica,
    pub(crate) store: Arc<Store>,
    pub(crate) proposer: Proposer,
    pub(crate) clients: ClientRegistry,
    /// Poked when topics change, so NameServers hear about it at once.
    pub(crate) topics_changed: Notify,
    /// Delay of each level, ms.
    pub(crate) delay_levels: Vec<u64>,
}

/// Serves [`BrokerService`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BrokerServer {
    pub(crate) shared: Arc<Shared>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, raftmq_store::Error> + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WireError::Internal(e.to_string()))?
        .map_err(store_to_wire)
}

impl BrokerServer {
    fn group(&self) -> &str {
        self.shared.replica.group()
    }

    async fn command(&self, c: Command) -> Result<(), WireError> {
        let payload = EntryPayload::Command(c)
            .encode()
            .map_err(|e| WireError::Invalid(e.to_string()))?;
        self.shared
            .replica
            .write(Bytes::from(payload))
            .await
            .map_err(raft_to_wire)?;
        Ok(())
    }

    fn topic_config(&self, topic: &TopicName) -> Result<TopicConfig, WireError> {
        self.shared
            .store
            .topic(topic.as_str())
            .ok_or_else(|| WireError::TopicNotFound(topic.to_string()))
    }

    /// The topic's config, creating it first (leader only) when auto-creation is on.
    async fn topic_or_create(&self, topic: &TopicName) -> Result<TopicConfig, WireError> {
        if let Some(t) = self.shared.store.topic(topic.as_str()) {
            return Ok(t);
        }
        if !self.shared.config.auto_create_topics {
            return Err(WireError::TopicNotFound(topic.to_string()));
        }
        self.check_leader()?;
        let config = TopicConfig::new(topic.clone(), self.shared.config.default_queues);
        tracing::info!(topic = %topic, queues = config.write_queues, "auto-creating topic");
        self.command(Command::UpsertTopic(config)).await?;
        self.shared.topics_changed.notify_one();
        self.topic_config(topic)
    }

    /// Validates and stores one send.
    async fn send_one(&self, req: SendMessageRequest) -> Result<SendMessageResponse, WireError> {
        validate_send(&req)?;
        self.check_leader()?;
        let topic = self.topic_or_create(&req.topic).await?;
        if !topic.perm.writable() {
            return Err(WireError::Unauthorized(format!(
                "topic {} is not writable on group {}",
                req.topic,
                self.group()
            )));
        }
        if req.queue_id.0 >= topic.write_queues {
            return Err(invalid(format!(
                "queue {} does not exist: topic {} has {} write queues on group {}",
                req.queue_id,
                req.topic,
                topic.write_queues,
                self.group()
            )));
        }
        let now = now_ms();
        let mut messages = req.messages;
        for m in &mut messages {
            if let Some(due) = due_ms(m, now, &self.shared.delay_levels)? {
                m.properties
                    .push((PROP_DELIVER_AT.to_owned(), due.to_string()));
            }
        }
        let results = self
            .shared
            .proposer
            .submit(req.topic, req.queue_id, messages, 0)
            .await?;
        Ok(SendMessageResponse { results })
    }

    /// Creates a one-queue `%RETRY%`/`%DLQ%` topic on first use.
    async fn ensure_system_topic(&self, topic: &TopicName) -> Result<(), WireError> {
        if self.shared.store.topic(topic.as_str()).is_some() {
            return Ok(());
        }
        tracing::info!(topic = %topic, "creating system topic");
        self.command(Command::UpsertTopic(TopicConfig::new(topic.clone(), 1)))
            .await?;
        self.shared.topics_changed.notify_one();
        Ok(())
    }

    fn check_leader(&self) -> Result<(), WireError> {
        if self.shared.replica.is_leader() {
            return Ok(());
        }
        Err(match self.shared.replica.leader() {
            Some((id, node)) if id != self.shared.replica.node_id() => WireError::NotLeader {
                leader: Some(NodeId(id)),
                leader_addr: node.map(|n| n.client_addr).filter(|a| !a.is_empty()),
            },
            _ => WireError::NotLeader {
                leader: None,
                leader_addr: None,
            },
        })
    }
}

fn invalid(m: impl Into<String>) -> WireError {
    WireError::Invalid(m.into())
}

/// The delay of `level` (1-based; beyond the last level means the last).
fn level_delay(levels: &[u64], level: u8) -> u64 {
    let i = usize::from(level.max(1)) - 1;
    levels
        .get(i)
        .or(levels.last())
        .copied()
        .unwrap_or(DELAY_LEVELS_MS[17])
}

/// When a delayed message is due, or `None` to deliver it now.
fn due_ms(m: &Message, now: u64, levels: &[u64]) -> Result<Option<u64>, WireError> {
    let due = if m.deliver_at_ms > 0 {
        m.deliver_at_ms
    } else if m.delay_level > 0 {
        now + level_delay(levels, m.delay_level)
    } else {
        return Ok(None);
    };
    if due <= now {
        return Ok(None);
    }
    if due - now > MAX_DELAY_MS {
        return Err(invalid(format!(
            "deliver-at time is {} s away; the longest delay is {} s (3 days)",
            (due - now) / 1000,
            MAX_DELAY_MS / 1000
        )));
    }
    Ok(Some(due))
}

fn validate_send(req: &SendMessageRequest) -> Result<(), WireError> {
    names::validate_topic(req.topic.as_str()).map_err(invalid)?;
    if req.messages.is_empty() {
        return Err(invalid("a send must carry at least one message"));
    }
    let mut total = 0usize;
    for m in &req.messages {
        if m.topic != req.topic {
            return Err(invalid(format!(
                "every message of a batch must have the batch's topic {}, found {}",
                req.topic, m.topic
            )));
        }
        if m.body.len() > MAX_MESSAGE_BYTES {
            return Err(invalid(format!(
                "message body of {} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit",
                m.body.len()
            )));
        }
        if m.properties.iter().any(|(k, _)| k.starts_with("__")) {
            return Err(invalid(
                "property names starting with \"__\" are reserved for the broker",
            ));
        }
        if m.keys.iter().any(|k| k.contains('\0')) || m.tag.contains('\0') {
            return Err(invalid("tags and keys must not contain NUL characters"));
        }
        let props: usize = m
            .properties
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum();
        if props > 32 * 1024 {
            return Err(invalid(format!(
                "properties take {props} bytes, more than the 32 KiB limit"
            )));
        }
        total += m.body.len() + props;
    }
    if total > MAX_MESSAGE_BYTES {
        return Err(invalid(format!(
            "batch of {total} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit; split it"
        )));
    }
    Ok(())
}

impl BrokerService for BrokerServer {
    async fn hello(self, _: Context, req: HelloRequest) -> Result<HelloResponse, WireError> {
        if req.protocol_version != PROTOCOL_VERSION {
            return Err(invalid(format!(
                "protocol version {} is not supported; this broker speaks {PROTOCOL_VERSION}: upgrade the older side",
                req.protocol_version
            )));
        }
        Ok(HelloResponse {
            protocol_version: PROTOCOL_VERSION,
            cluster: self.shared.replica.cluster().to_owned(),
            group: self.group().to_owned(),
            node_id: NodeId(self.shared.replica.node_id()),
        })
    }

    async fn send(
        self,
        _: Context,
        req: SendMessageRequest,
    ) -> Result<SendMessageResponse, WireError> {
        self.send_one(req).await
    }

    async fn send_many(
        self,
        _: Context,
        reqs: Vec<SendMessageRequest>,
    ) -> Result<Vec<Result<SendMessageResponse, WireError>>, WireError> {
        if reqs.len() > MAX_SENDS_PER_CALL {
            return Err(invalid(format!(
                "{} sends in one call; at most {MAX_SENDS_PER_CALL}",
                reqs.len()
            )));
        }
        self.check_leader()?;
        // Submitted together, they share the batcher's next entries.
        Ok(futures::future::join_all(reqs.into_iter().map(|r| self.send_one(r))).await)
    }

    async fn pull(
        self,
        _: Context,
        req: PullMessageRequest,
    ) -> Result<PullMessageResponse, WireError> {
        let topic = self.topic_config(&req.topic)?;
        if !topic.perm.readable() {
            return Err(WireError::Unauthorized(format!(
                "topic {} is not readable",
                req.topic
            )));
        }
        let hashes: Option<Vec<u32>> = (!req.tags.is_empty()).then(|| {
            req.tags
                .iter()
                .map(|t| raftmq_store::index::tag_hash(t))
                .collect()
        });
        let wait = Duration::from_millis(req.max_wait_ms.min(self.shared.config.max_pull_wait_ms));
        let deadline = tokio::time::Instant::now() + wait;
        let mut applied = self.shared.replica.applied();
        let max_msgs = req.max_msgs.clamp(1, MAX_PULL_MSGS) as usize;
        let max_bytes = req.max_bytes.clamp(1, MAX_PULL_BYTES) as usize;
        loop {
            applied.borrow_and_update();
            let store = self.shared.store.clone();
            let (t, q, off, h) = (
                req.topic.clone(),
                req.queue_id.0,
                req.offset.0,
                hashes.clone(),
            );
            let read = blocking(move || {
                store.read_queue(t.as_str(), q, off, max_msgs, max_bytes, h.as_deref())
            })
            .await?;
            if req.offset.0 > read.max_offset {
                return Err(WireError::OffsetTooLarge {
                    offset: req.offset.0,
                    max: read.max_offset,
                });
            }
            let progressed = !read.messages.is_empty() || read.next_offset > req.offset.0;
            if progressed || tokio::time::Instant::now() >= deadline {
                let group = self.group().to_owned();
                return Ok(PullMessageResponse {
                    messages: read
                        .messages
                        .into_iter()
                        .map(|m| message_ext(&group, m))
                        .collect(),
                    next_offset: Offset(read.next_offset),
                    min_offset: Offset(read.min_offset),
                    max_offset: Offset(read.max_offset),
                });
            }
            tokio::select! {
                r = applied.changed() => if r.is_err() {
                    return Err(WireError::Internal("the broker is shutting down".into()));
                },
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn topic_status(
        self,
        _: Context,
        topic: TopicName,
    ) -> Result<Vec<QueueStatus>, WireError> {
        let config = self.topic_config(&topic)?;
        let store = self.shared.store.clone();
        blocking(move || {
            (0..config.read_queues.max(config.write_queues))
                .map(|q| {
                    let (min, max) = store.queue_bounds(topic.as_str(), q)?;
                    Ok(QueueStatus {
                        queue_id: QueueId(q),
                        min_offset: Offset(min),
                        max_offset: Offset(max),
                    })
                })
                .collect()
        })
        .await
    }

    async fn query_offset(
        self,
        _: Context,
        group: GroupName,
        topic: TopicName,
        queue_id: QueueId,
    ) -> Result<Option<Offset>, WireError> {
        let store = self.shared.store.clone();
        blocking(move || {
            Ok(store
                .consumer_offset(group.as_str(), topic.as_str(), queue_id.0)?
                .map(Offset))
        })
        .await
    }

    async fn group_offsets(
        self,
        _: Context,
        group: GroupName,
    ) -> Result<Vec<(TopicName, QueueId, Offset)>, WireError> {
        let store = self.shared.store.clone();
        blocking(move || {
            Ok(store
                .consumer_offsets(group.as_str())?
                .into_iter()
                .map(|(t, q, o)| (TopicName(t), QueueId(q), Offset(o)))
                .collect())
        })
        .await
    }

    async fn commit_offsets(self, _: Context, req: CommitOffsetsRequest) -> Result<(), WireError> {
        names::validate_group(req.group.as_str()).map_err(invalid)?;
        if req.offsets.is_empty() {
            return Ok(());
        }
        for (t, _, _) in &req.offsets {
            names::validate_topic(t.as_str()).map_err(invalid)?;
        }
        self.check_leader()?;
        self.command(Command::CommitOffsets {
            group: req.group,
            offsets: req.offsets,
        })
        .await
    }

    async fn offset_for_time(
        self,
        _: Context,
        topic: TopicName,
        queue_id: QueueId,
        ms: u64,
    ) -> Result<Offset, WireError> {
        let store = self.shared.store.clone();
        blocking(move || {
            store
                .offset_for_time(topic.as_str(), queue_id.0, ms)
                .map(Offset)
        })
        .await
    }

    async fn heartbeat(self, _: Context, req: HeartbeatRequest) -> Result<(), WireError> {
        if req.client_id.is_empty() {
            return Err(invalid("heartbeat without a client id"));
        }
        // A clustering group gets its retry topic as soon as it shows up (as RocketMQ's
        // broker does), so its consumers can subscribe to it before the first failure.
        if self.shared.replica.is_leader() {
            for g in req.consumer_groups.iter().filter(|g| !g.broadcast) {
                let retry = TopicName::from(names::retry_topic(g.group.as_str()));
                if let Err(e) = self.ensure_system_topic(&retry).await {
                    tracing::debug!(topic = %retry, error = %e, "could not create the retry topic yet");
                }
            }
        }
        self.shared
            .clients
            .heartbeat(&req.client_id, req.consumer_groups);
        Ok(())
    }

    async fn consumer_list(self, _: Context, group: GroupName) -> Result<Vec<String>, WireError> {
        Ok(self.shared.clients.members(group.as_str()))
    }

    async fn upsert_topic(self, _: Context, config: TopicConfig) -> Result<(), WireError> {
        names::validate_topic(config.name.as_str()).map_err(invalid)?;
        for (what, n) in [
            ("read_queues", config.read_queues),
            ("write_queues", config.write_queues),
        ] {
            if n == 0 || n > 1024 {
                return Err(invalid(format!("{what} = {n}: must be between 1 and 1024")));
            }
        }
        self.check_leader()?;
        self.command(Command::UpsertTopic(config)).await?;
        self.shared.topics_changed.notify_one();
        Ok(())
    }

    async fn delete_topic(self, _: Context, topic: TopicName) -> Result<(), WireError> {
        self.check_leader()?;
        self.topic_config(&topic)?;
        self.command(Command::DeleteTopic(topic)).await?;
        self.shared.topics_changed.notify_one();
        Ok(())
    }

    async fn list_topics(self, _: Context) -> Result<Vec<TopicConfig>, WireError> {
        Ok(self.shared.store.topics())
    }

    async fn ensure_topic(self, _: Context, topic: TopicName) -> Result<TopicConfig, WireError> {
        names::validate_topic(topic.as_str()).map_err(invalid)?;
        self.topic_or_create(&topic).await
    }

    async fn upsert_group(self, _: Context, config: GroupConfig) -> Result<(), WireError> {
        names::validate_group(config.name.as_str()).map_err(invalid)?;
        self.check_leader()?;
        self.command(Command::UpsertGroup(config)).await
    }

    async fn delete_group(self, _: Context, group: GroupName) -> Result<(), WireError> {
        self.check_leader()?;
        if self.shared.store.group(group.as_str()).is_none() {
            return Err(WireError::GroupNotFound(group.to_string()));
        }
        self.command(Command::DeleteGroup(group)).await
    }

    async fn list_groups(self, _: Context) -> Result<Vec<GroupConfig>, WireError> {
        let store = self.shared.store.clone();
        blocking(move || {
            let mut groups = store.groups();
            for g in store.offset_groups()? {
                if !groups.iter().any(|c| c.name.as_str() == g) {
                    groups.push(GroupConfig::new(g));
                }
            }
            groups.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(groups)
        })
        .await
    }

    async fn group_status(self, _: Context) -> Result<GroupStatus, WireError> {
        Ok(self.shared.replica.status())
    }

    async fn get_message(self, _: Context, msg_id: String) -> Result<MessageExt, WireError> {
        let id = MsgId::parse(&msg_id)
            .ok_or_else(|| invalid(format!("{msg_id:?} is not a message id (32 hex digits)")))?;
        let group = self.group().to_owned();
        if id.group_hash != raftmq_proto::message::group_hash(&group) {
            return Err(invalid(format!(
                "message {msg_id} was not stored by broker group {group}"
            )));
        }
        let store = self.shared.store.clone();
        let m = blocking(move || store.message_at(id.log_index, id.slot)).await?;
        m.map(|m| message_ext(&group, m))
            .ok_or(WireError::MessageNotFound(msg_id))
    }

    async fn query_by_key(
        self,
        _: Context,
        topic: TopicName,
        key: String,
        max: u32,
    ) -> Result<Vec<MessageExt>, WireError> {
        let store = self.shared.store.clone();
        let group = self.group().to_owned();
        let max = max.clamp(1, 1024) as usize;
        blocking(move || {
            let mut out = Vec::new();
            for (index, slot) in store.positions_by_key(topic.as_str(), &key, max)? {
                if let Some(m) = store.message_at(index, slot)? {
                    out.push(message_ext(&group, m));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn add_node(
        self,
        _: Context,
        node_id: NodeId,
        raft_addr: String,
        client_addr: String,
    ) -> Result<(), WireError> {
        self.shared
            .replica
            .add_node(
                node_id.0,
                RaftNode {
                    raft_addr,
                    client_addr,
                },
            )
            .await
            .map_err(raft_to_wire)
    }

    async fn remove_node(self, _: Context, node_id: NodeId) -> Result<(), WireError> {
        self.shared
            .replica
            .remove_node(node_id.0)
            .await
            .map_err(raft_to_wire)
    }

    async fn transfer_leader(self, _: Context, to: NodeId) -> Result<(), WireError> {
        self.shared
            .replica
            .transfer_leader(to.0)
            .await
            .map_err(raft_to_wire)
    }

    async fn send_back(self, _: Context, req: SendBackRequest) -> Result<(), WireError> {
        names::validate_group(req.group.as_str()).map_err(invalid)?;
        self.check_leader()?;
        let id = MsgId::parse(&req.msg_id)
            .ok_or_else(|| invalid(format!("{:?} is not a message id", req.msg_id)))?;
        let group = self.group().to_owned();
        if id.group_hash != raftmq_proto::message::group_hash(&group) {
            return Err(invalid(format!(
                "message {} was not stored by broker group {group}; send it back there",
                req.msg_id
            )));
        }
        let store = self.shared.store.clone();
        let stored = blocking(move || store.message_at(id.log_index, id.slot))
            .await?
            .ok_or_else(|| WireError::MessageNotFound(req.msg_id.clone()))?;
        let v = &stored.view;
        let tries = v.reconsume_times + 1;
        let dead = tries > req.max_reconsume_times;
        let target = if dead {
            names::dlq_topic(req.group.as_str())
        } else {
            names::retry_topic(req.group.as_str())
        };
        let target = TopicName::from(target);
        let mut properties: Vec<(String, String)> = v
            .properties()
            .filter(|(k, _)| *k != PROP_DELIVER_AT)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if v.property(PROP_RETRY_TOPIC).is_none() {
            properties.push((PROP_RETRY_TOPIC.to_owned(), v.topic().to_owned()));
        }
        if v.property(PROP_ORIGIN_MSG_ID).is_none() {
            properties.push((PROP_ORIGIN_MSG_ID.to_owned(), req.msg_id.clone()));
        }
        if !dead {
            let level = if req.delay_level > 0 {
                req.delay_level
            } else {
                (3 + v.reconsume_times).min(255) as u8
            };
            let due = now_ms() + level_delay(&self.shared.delay_levels, level);
            properties.push((PROP_DELIVER_AT.to_owned(), due.to_string()));
        }
        let msg = Message {
            topic: target.clone(),
            body: v.body.clone(),
            tag: v.tag().to_owned(),
            keys: v.keys().map(str::to_owned).collect(),
            properties,
            flag: v.flags,
            delay_level: 0,
            deliver_at_ms: 0,
        };
        self.ensure_system_topic(&target).await?;
        if dead {
            tracing::info!(group = %req.group, msg_id = %req.msg_id, tries, "message moved to the dead-letter topic");
        }
        self.shared
            .proposer
            .submit(target, QueueId(0), vec![msg], tries)
            .await?;
        Ok(())
    }

    async fn lock_queues(
        self,
        _: Context,
        req: LockQueuesRequest,
    ) -> Result<LockQueuesResponse, WireError> {
        names::validate_group(req.group.as_str()).map_err(invalid)?;
        self.check_leader()?;
        let lease_ms = self.shared.config.queue_lock_lease_ms;
        let cmd = Command::LockQueues {
            group: req.group,
            client: req.client_id,
            queues: req.queues.clone(),
            now_ms: now_ms(),
            lease_ms,
        };
        let payload = EntryPayload::Command(cmd)
            .encode()
            .map_err(|e| invalid(e.to_string()))?;
        match self
            .shared
            .replica
            .write(Bytes::from(payload))
            .await
            .map_err(raft_to_wire)?
        {
            (_, RaftResponse::Locked(granted)) => Ok(LockQueuesResponse {
                locked: req
                    .queues
                    .into_iter()
                    .zip(granted)
                    .filter(|(_, g)| *g)
                    .map(|(q, _)| q)
                    .collect(),
                lease_ms,
            }),
            (_, other) => Err(WireError::Internal(format!(
                "unexpected lock result {other:?}"
            ))),
        }
    }

    async fn unlock_queues(self, _: Context, req: LockQueuesRequest) -> Result<(), WireError> {
        self.check_leader()?;
        self.command(Command::UnlockQueues {
            group: req.group,
            client: req.client_id,
            queues: req.queues,
        })
        .await
    }
}
