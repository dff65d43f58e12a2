//! The native front end: [`BrokerService`] over tarpc, a thin adapter over the
//! [`Broker`] core. Errors become [`WireError`] here and nowhere else.

use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::auth::{AclPerm, AclResource, UserInfo, UserUpdate};
use raftmq_proto::broker::{
    BrokerGroupStatus, CommitOffsetsRequest, ConsumerConnection, DrainReport, HeartbeatRequest,
    HelloRequest, HelloResponse, LockQueuesRequest, LockQueuesResponse, NodeStats,
    PullMessageRequest, PullMessageResponse, QueueStatus, SendBackRequest, SendMessageRequest,
    SendMessageResponse, SendOptions,
};
use raftmq_proto::{
    BrokerService, ConsumerGroup, ConsumerGroupConfig, FoundMessage, MessageExt, MsgId, NodeId,
    Offset, QueueId, TopicConfig, TopicName, WireError, PROTOCOL_VERSION,
};
use tarpc::context::Context;

use raftmq_proto::sql92::Filter;
use raftmq_proto::transaction::{
    EndTransactionOutcome, EndTransactionRequest, PendingTransactionInfo, TransactionCheck,
    TransactionCheckPoll,
};

use crate::auth::Access;
use crate::clients::ClientOrigin;
use crate::convert::{found_message, message_ext};
use crate::core::pull::PullRequest;
use crate::core::query::MsgLocation;
use crate::core::retry::{RetryDelay, SendBack};
use crate::core::{Broker, BrokerError, ConnectionCtx};

/// Maps a core error to the wire, once, at the RPC boundary.
pub fn to_wire(e: BrokerError) -> WireError {
    match e {
        BrokerError::NotLeader {
            leader,
            leader_addr,
        } => WireError::NotLeader {
            leader,
            leader_addr,
        },
        BrokerError::Busy(m) => WireError::Busy(m),
        BrokerError::Indeterminate(m) => WireError::Timeout(m),
        BrokerError::TopicNotFound(t) => WireError::TopicNotFound(t.0),
        BrokerError::GroupNotFound(g) => WireError::GroupNotFound(g.0),
        BrokerError::MessageNotFound(m) => WireError::MessageNotFound(m),
        BrokerError::OffsetTooSmall { offset, min } => WireError::OffsetTooSmall { offset, min },
        BrokerError::OffsetTooLarge { offset, max } => WireError::OffsetTooLarge { offset, max },
        BrokerError::Invalid(m) => WireError::Invalid(m),
        // The native protocol has carried topic permissions as `Unauthorized` since v1.
        BrokerError::PermissionDenied(m) => WireError::Unauthorized(m),
        BrokerError::Internal(m) => WireError::Internal(m),
        BrokerError::NotAuthorized(m) => WireError::NotAuthorized(m),
    }
}

/// One native connection: the core plus who is asking. Cloned per request.
#[derive(Debug, Clone)]
pub struct NativeConnection {
    broker: Broker,
    conn: Arc<ConnectionCtx>,
}

impl NativeConnection {
    /// A connection from `conn`'s peer.
    pub fn new(broker: Broker, conn: Arc<ConnectionCtx>) -> Self {
        Self { broker, conn }
    }

    fn group(&self) -> String {
        self.broker.group().0
    }

    /// Whether this connection may do every one of `wants` (always, with authentication
    /// off); refusals are counted and logged.
    fn allow<'a>(&self, wants: impl IntoIterator<Item = Access<'a>>) -> Result<(), WireError> {
        let auth = self.broker.auth();
        if !auth.enabled() {
            return Ok(());
        }
        let who = auth.native(&self.conn).map_err(to_wire)?;
        for a in wants {
            who.check(a)
                .map_err(|e| to_wire(auth.refuse(&self.conn, e)))?;
        }
        Ok(())
    }

    fn ext(&self, m: raftmq_store::StoredMessage) -> MessageExt {
        message_ext(&self.group(), self.broker.group_tag(), m)
    }

    /// A pull, with an SQL92 filter or without.
    async fn pull_filtered(
        self,
        req: PullMessageRequest,
        sql: Option<Arc<Filter>>,
    ) -> Result<PullMessageResponse, WireError> {
        self.allow([
            Access::Sub(req.topic.as_str()),
            Access::Group(req.consumer_group.as_str()),
        ])?;
        let read = self
            .broker
            .pull(
                &self.conn,
                PullRequest {
                    topic: req.topic,
                    queue_id: req.queue_id,
                    offset: req.offset,
                    max_msgs: req.max_msgs,
                    max_bytes: req.max_bytes,
                    max_wait: Duration::from_millis(req.max_wait_ms),
                    tags: req.tags,
                    sql,
                },
            )
            .await
            .map_err(to_wire)?;
        Ok(PullMessageResponse {
            messages: read.messages.into_iter().map(|m| self.ext(m)).collect(),
            next_offset: read.next_offset,
            min_offset: read.min_offset,
            max_offset: read.max_offset,
        })
    }
}

impl BrokerService for NativeConnection {
    async fn hello(self, _: Context, req: HelloRequest) -> Result<HelloResponse, WireError> {
        self.broker.hello(&self.conn, req).map_err(to_wire)
    }

    async fn send(
        self,
        _: Context,
        req: SendMessageRequest,
    ) -> Result<SendMessageResponse, WireError> {
        self.allow([Access::Pub(req.topic.as_str())])?;
        let results = self
            .broker
            .send(&self.conn, req, SendOptions::default())
            .await
            .map_err(to_wire)?;
        Ok(SendMessageResponse { results })
    }

    async fn send_many(
        self,
        _: Context,
        reqs: Vec<SendMessageRequest>,
    ) -> Result<Vec<Result<SendMessageResponse, WireError>>, WireError> {
        self.allow(reqs.iter().map(|r| Access::Pub(r.topic.as_str())))?;
        let results = self
            .broker
            .send_many(&self.conn, reqs)
            .await
            .map_err(to_wire)?;
        Ok(results
            .into_iter()
            .map(|r| {
                r.map(|results| SendMessageResponse { results })
                    .map_err(to_wire)
            })
            .collect())
    }

    async fn pull(
        self,
        _: Context,
        req: PullMessageRequest,
    ) -> Result<PullMessageResponse, WireError> {
        self.pull_filtered(req, None).await
    }

    async fn topic_status(
        self,
        _: Context,
        topic: TopicName,
    ) -> Result<Vec<QueueStatus>, WireError> {
        self.allow([Access::Any])?;
        self.broker.queue_status(topic).await.map_err(to_wire)
    }

    async fn query_offset(
        self,
        _: Context,
        group: ConsumerGroup,
        topic: TopicName,
        queue_id: QueueId,
    ) -> Result<Option<Offset>, WireError> {
        self.allow([Access::Group(group.as_str())])?;
        self.broker
            .query_offset(group, topic, queue_id)
            .await
            .map_err(to_wire)
    }

    async fn group_offsets(
        self,
        _: Context,
        group: ConsumerGroup,
    ) -> Result<Vec<(TopicName, QueueId, Offset)>, WireError> {
        self.allow([Access::Group(group.as_str())])?;
        self.broker.group_offsets(group).await.map_err(to_wire)
    }

    async fn commit_offsets(self, _: Context, req: CommitOffsetsRequest) -> Result<(), WireError> {
        self.allow(
            std::iter::once(Access::Group(req.group.as_str()))
                .chain(req.offsets.iter().map(|(t, _, _)| Access::Sub(t.as_str()))),
        )?;
        self.broker
            .commit_offsets(&self.conn, req)
            .await
            .map_err(to_wire)
    }

    async fn offset_for_time(
        self,
        _: Context,
        topic: TopicName,
        queue_id: QueueId,
        ms: u64,
    ) -> Result<Offset, WireError> {
        self.allow([Access::Any])?;
        self.broker
            .offset_for_time(topic, queue_id, ms)
            .await
            .map_err(to_wire)
    }

    async fn heartbeat(self, _: Context, req: HeartbeatRequest) -> Result<(), WireError> {
        self.allow(req.consumer_groups.iter().flat_map(|g| {
            std::iter::once(Access::Group(g.group.as_str()))
                .chain(g.subscriptions.iter().map(|(t, _)| Access::Sub(t.as_str())))
        }))?;
        let origin = ClientOrigin {
            addr: self.conn.peer,
            language: "RUST".to_owned(),
            version: i32::from(PROTOCOL_VERSION),
            push: None,
        };
        self.broker
            .heartbeat(&self.conn, req, origin)
            .await
            .map_err(to_wire)
    }

    async fn consumer_list(
        self,
        _: Context,
        group: ConsumerGroup,
    ) -> Result<Vec<String>, WireError> {
        self.allow([Access::Any])?;
        Ok(self.broker.consumer_list(&group))
    }

    async fn pull_where(
        self,
        _: Context,
        req: PullMessageRequest,
        sql: String,
    ) -> Result<PullMessageResponse, WireError> {
        let filter = Filter::parse(&sql).map_err(|e| WireError::Invalid(e.to_string()))?;
        self.pull_filtered(req, Some(Arc::new(filter))).await
    }

    async fn end_transaction(
        self,
        _: Context,
        req: EndTransactionRequest,
    ) -> Result<EndTransactionOutcome, WireError> {
        match self.broker.pending_topic(&req.msg_id) {
            Some(topic) => self.allow([Access::Pub(&topic)])?,
            None => self.allow([Access::Any])?,
        }
        self.broker
            .end_transaction(&self.conn, req)
            .await
            .map_err(to_wire)
    }

    async fn transaction_checks(
        self,
        _: Context,
        poll: TransactionCheckPoll,
    ) -> Result<Vec<TransactionCheck>, WireError> {
        self.allow([Access::Any])?;
        let checks = self
            .broker
            .transaction_checks(poll)
            .await
            .map_err(to_wire)?;
        // A check shows the message: only to a producer that may publish to its topic.
        Ok(checks
            .into_iter()
            .filter(|c| self.allow([Access::Pub(c.message.topic.as_str())]).is_ok())
            .collect())
    }

    async fn pending_transactions(
        self,
        _: Context,
        max: u32,
    ) -> Result<Vec<PendingTransactionInfo>, WireError> {
        self.allow([Access::Admin])?;
        self.broker.pending_transactions(max).map_err(to_wire)
    }

    async fn drain(self, _: Context, undo: bool, wait_ms: u64) -> Result<DrainReport, WireError> {
        self.allow([Access::Admin])?;
        self.broker
            .drain(&self.conn, undo, Duration::from_millis(wait_ms))
            .await
            .map_err(to_wire)
    }

    async fn consumer_connections(
        self,
        _: Context,
        group: ConsumerGroup,
    ) -> Result<Vec<ConsumerConnection>, WireError> {
        self.allow([Access::Any])?;
        Ok(self
            .broker
            .consumer_connections(&group)
            .into_iter()
            .map(|m| ConsumerConnection {
                client_id: m.client_id,
                addr: m.origin.addr.map(|a| a.to_string()),
                language: m.origin.language,
                version: m.origin.version,
                subscriptions: m.info.subscriptions,
                broadcast: m.info.broadcast,
            })
            .collect())
    }

    async fn upsert_topic(self, _: Context, config: TopicConfig) -> Result<(), WireError> {
        self.allow([Access::Admin])?;
        self.broker.upsert_topic(config).await.map_err(to_wire)
    }

    async fn delete_topic(self, _: Context, topic: TopicName) -> Result<(), WireError> {
        self.allow([Access::Admin])?;
        self.broker.delete_topic(topic).await.map_err(to_wire)
    }

    async fn list_topics(self, _: Context) -> Result<Vec<TopicConfig>, WireError> {
        self.allow([Access::Any])?;
        Ok(self.broker.list_topics())
    }

    async fn ensure_topic(self, _: Context, topic: TopicName) -> Result<TopicConfig, WireError> {
        self.allow([Access::Pub(topic.as_str())])?;
        self.broker.ensure_topic(topic).await.map_err(to_wire)
    }

    async fn upsert_group(self, _: Context, config: ConsumerGroupConfig) -> Result<(), WireError> {
        self.allow([Access::Admin])?;
        self.broker.upsert_group(config).await.map_err(to_wire)
    }

    async fn delete_group(self, _: Context, group: ConsumerGroup) -> Result<(), WireError> {
        self.allow([Access::Admin])?;
        self.broker.delete_group(group).await.map_err(to_wire)
    }

    async fn list_groups(self, _: Context) -> Result<Vec<ConsumerGroupConfig>, WireError> {
        self.allow([Access::Any])?;
        self.broker.list_groups().await.map_err(to_wire)
    }

    async fn broker_group_status(self, _: Context) -> Result<BrokerGroupStatus, WireError> {
        self.allow([Access::Any])?;
        Ok(self.broker.broker_group_status())
    }

    async fn node_stats(self, _: Context) -> Result<NodeStats, WireError> {
        self.allow([Access::Any])?;
        Ok(self.broker.node_stats())
    }

    async fn get_message(self, _: Context, msg_id: String) -> Result<FoundMessage, WireError> {
        self.allow([Access::Any])?;
        let f = self.broker.get_message(&msg_id).await.map_err(to_wire)?;
        let found = found_message(&self.group(), self.broker.group_tag(), f);
        let topic = match &found {
            FoundMessage::Stored(m) => m.topic.as_str(),
            FoundMessage::Scheduled { message, .. } => message.topic.as_str(),
        };
        self.allow([Access::Sub(topic)])?;
        Ok(found)
    }

    async fn query_by_key(
        self,
        _: Context,
        topic: TopicName,
        key: String,
        max: u32,
    ) -> Result<Vec<MessageExt>, WireError> {
        self.allow([Access::Sub(topic.as_str())])?;
        let found = self
            .broker
            .query_by_key(topic, key, max)
            .await
            .map_err(to_wire)?;
        Ok(found.into_iter().map(|m| self.ext(m)).collect())
    }

    async fn add_node(
        self,
        _: Context,
        node_id: NodeId,
        raft_addr: String,
        client_addr: String,
    ) -> Result<(), WireError> {
        self.allow([Access::Admin])?;
        self.broker
            .add_node(&self.conn, node_id, raft_addr, client_addr)
            .await
            .map_err(to_wire)
    }

    async fn remove_node(self, _: Context, node_id: NodeId) -> Result<(), WireError> {
        self.allow([Access::Admin])?;
        self.broker
            .remove_node(&self.conn, node_id)
            .await
            .map_err(to_wire)
    }

    async fn transfer_leader(self, _: Context, to: NodeId) -> Result<(), WireError> {
        self.allow([Access::Admin])?;
        self.broker
            .transfer_leader(&self.conn, to)
            .await
            .map_err(to_wire)
    }

    async fn send_back(self, _: Context, req: SendBackRequest) -> Result<(), WireError> {
        self.allow([Access::Group(req.group.as_str())])?;
        let group = self.group();
        let id = MsgId::parse(&req.msg_id)
            .ok_or_else(|| WireError::Invalid(format!("{:?} is not a message id", req.msg_id)))?;
        let at = MsgLocation::of_native_id(&id, self.broker.group_tag()).ok_or_else(|| {
            WireError::Invalid(format!(
                "message {} was not stored by broker group {group}; send it back there",
                req.msg_id
            ))
        })?;
        let back = SendBack {
            group: req.group,
            at,
            delay: match req.delay_level {
                0 => RetryDelay::Backoff,
                l => RetryDelay::Level(l),
            },
            max_reconsume_times: req.max_reconsume_times,
            origin_msg_id: req.msg_id,
        };
        self.broker
            .send_back(&self.conn, back)
            .await
            .map_err(to_wire)
    }

    async fn lock_queues(
        self,
        _: Context,
        req: LockQueuesRequest,
    ) -> Result<LockQueuesResponse, WireError> {
        self.allow([Access::Group(req.group.as_str())])?;
        self.broker
            .lock_queues(&self.conn, req)
            .await
            .map_err(to_wire)
    }

    async fn unlock_queues(self, _: Context, req: LockQueuesRequest) -> Result<(), WireError> {
        self.allow([Access::Group(req.group.as_str())])?;
        self.broker
            .unlock_queues(&self.conn, req)
            .await
            .map_err(to_wire)
    }

    async fn send_with(
        self,
        _: Context,
        req: SendMessageRequest,
        options: SendOptions,
    ) -> Result<SendMessageResponse, WireError> {
        self.allow([Access::Pub(req.topic.as_str())])?;
        let results = self
            .broker
            .send(&self.conn, req, options)
            .await
            .map_err(to_wire)?;
        Ok(SendMessageResponse { results })
    }

    async fn auth_challenge(self, _: Context) -> Result<Vec<u8>, WireError> {
        Ok(self.broker.auth().challenge(&self.conn))
    }

    async fn authenticate(
        self,
        _: Context,
        access_key: String,
        signature: Vec<u8>,
    ) -> Result<(), WireError> {
        self.broker
            .auth()
            .authenticate(&self.conn, &access_key, &signature)
            .map_err(to_wire)
    }

    async fn put_user(self, _: Context, update: UserUpdate) -> Result<(), WireError> {
        self.allow([Access::Admin])?;
        self.broker.put_user(update).await.map_err(to_wire)
    }

    async fn delete_user(self, _: Context, access_key: String) -> Result<(), WireError> {
        self.allow([Access::Admin])?;
        self.broker.delete_user(&access_key).await.map_err(to_wire)
    }

    async fn list_users(self, _: Context) -> Result<Vec<UserInfo>, WireError> {
        self.allow([Access::Admin])?;
        Ok(self.broker.list_users())
    }

    async fn set_acl(
        self,
        _: Context,
        access_key: String,
        resource: AclResource,
        perm: Option<AclPerm>,
    ) -> Result<(), WireError> {
        self.allow([Access::Admin])?;
        self.broker
            .set_acl(&access_key, resource, perm)
            .await
            .map_err(to_wire)
    }
}
