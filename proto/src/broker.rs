//! The broker's RPC surface: [`BrokerService`] and its request and response types.

use serde::{Deserialize, Serialize};

use crate::auth::{AclPerm, AclResource, UserInfo, UserUpdate};
use crate::config::{ConsumerGroupConfig, TopicConfig};
use crate::error::WireError;
use crate::ids::{BrokerGroup, ConsumerGroup, GroupId, NodeId, Offset, QueueId, TopicName};
use crate::message::{FoundMessage, Message, MessageExt, SendResult};

/// Version of the client/broker/NameServer protocol; peers with another version are
/// refused by `hello` with a clear error.
pub const PROTOCOL_VERSION: u16 = 1;

/// First call on a connection: checks that both sides speak the same protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloRequest {
    /// The caller's [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// Who is calling (for logs).
    pub client_id: String,
}

/// Who answered a `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloResponse {
    /// The server's [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// Cluster name.
    pub cluster: String,
    /// Broker group name.
    pub broker_group: BrokerGroup,
    /// Node id within the group.
    pub node_id: NodeId,
}

/// Send one or more messages to one queue (a batch is stored atomically in one entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessageRequest {
    /// Producer group (for logs and metrics).
    pub producer_group: String,
    /// Topic of every message.
    pub topic: TopicName,
    /// Destination queue.
    pub queue_id: QueueId,
    /// The messages; all must have `topic`.
    pub messages: Vec<Message>,
}

/// How a send differs from a plain one: what a RocketMQ client said about its messages,
/// kept when a follower forwards the send to the leader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendOptions {
    /// The producer's clock when the messages were made, ms (the broker's when `None`).
    pub born_ms: Option<u64>,
    /// Tries so far, for sends to a retry topic.
    pub reconsume_times: u32,
    /// Queues to give the topic if this send auto-creates it (clamped to the broker's
    /// `default_queues`); the broker's default when `None`.
    pub create_queues: Option<u32>,
}

/// Where each message of a send went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessageResponse {
    /// One result per message, in order.
    pub results: Vec<SendResult>,
}

/// Read messages of one queue, waiting up to `max_wait_ms` for new ones (long polling).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullMessageRequest {
    /// Consumer group (for logs and metrics).
    pub consumer_group: ConsumerGroup,
    /// Topic.
    pub topic: TopicName,
    /// Queue.
    pub queue_id: QueueId,
    /// First offset wanted.
    pub offset: Offset,
    /// At most this many messages.
    pub max_msgs: u32,
    /// About this many bytes at most (at least one message is returned).
    pub max_bytes: u32,
    /// Hold the request this long when nothing is available (0 = answer at once).
    pub max_wait_ms: u64,
    /// Only these tags (empty = every message).
    pub tags: Vec<String>,
}

/// Messages read from a queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullMessageResponse {
    /// Messages, in offset order.
    pub messages: Vec<MessageExt>,
    /// Where the next pull should start.
    pub next_offset: Offset,
    /// Smallest readable offset.
    pub min_offset: Offset,
    /// One past the last offset.
    pub max_offset: Offset,
}

/// Offsets of one queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// The queue.
    pub queue_id: QueueId,
    /// Smallest readable offset.
    pub min_offset: Offset,
    /// One past the last offset.
    pub max_offset: Offset,
}

/// Commit consumer offsets of one group (replicated through Raft before the answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOffsetsRequest {
    /// The consumer group.
    pub group: ConsumerGroup,
    /// `(topic, queue, next offset to consume)`.
    pub offsets: Vec<(TopicName, QueueId, Offset)>,
}

/// What a client instance consumes or produces, sent periodically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Unique id of the client instance.
    pub client_id: String,
    /// Consumer groups this instance belongs to, with their subscriptions.
    pub consumer_groups: Vec<ConsumerGroupInfo>,
}

/// One consumer group membership in a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupInfo {
    /// The group.
    pub group: ConsumerGroup,
    /// `(topic, tag expression)` pairs.
    pub subscriptions: Vec<(TopicName, String)>,
    /// Broadcasting (true) or clustering (false).
    pub broadcast: bool,
}

/// One live consumer of a group, as admin tools show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerConnection {
    /// The client instance.
    pub client_id: String,
    /// Where it connects from, when the transport knows it.
    pub addr: Option<String>,
    /// Its language (`JAVA`, `CPP`, `RUST` ...).
    pub language: String,
    /// Its protocol version (RocketMQ's `MQVersion` ordinal, or raftmq's).
    pub version: i32,
    /// `(topic, tag expression)` pairs, as its last heartbeat gave them.
    pub subscriptions: Vec<(TopicName, String)>,
    /// Broadcasting (true) or clustering (false).
    pub broadcast: bool,
}

/// Return a message whose consumption failed: it is redelivered through the group's
/// retry topic after a back-off, or moved to its dead-letter topic after too many tries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendBackRequest {
    /// The consumer group that failed.
    pub group: ConsumerGroup,
    /// Id of the message as the consumer received it.
    pub msg_id: String,
    /// Delay level of the next try (0 = `3 + reconsume_times`, RocketMQ's back-off).
    pub delay_level: u8,
    /// Tries before the message goes to `%DLQ%<group>`.
    pub max_reconsume_times: u32,
}

/// Lock queues for orderly consumption (clustering mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockQueuesRequest {
    /// Consumer group.
    pub group: ConsumerGroup,
    /// The client instance asking.
    pub client_id: String,
    /// Queues wanted (on this broker group).
    pub queues: Vec<(TopicName, QueueId)>,
}

/// Which queues were locked, and for how long.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockQueuesResponse {
    /// Queues now held by the caller.
    pub locked: Vec<(TopicName, QueueId)>,
    /// The lease, ms from when it was granted; renew well before.
    pub lease_ms: u64,
}

/// Raft role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Takes writes.
    Leader,
    /// Replicates from the leader and votes.
    Follower,
    /// Replicates but does not vote.
    Learner,
    /// Campaigning.
    Candidate,
    /// Stopped.
    Shutdown,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Learner => "learner",
            Role::Candidate => "candidate",
            Role::Shutdown => "shutdown",
        })
    }
}

/// One node as seen by itself (and, for followers, by the leader).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub node_id: NodeId,
    /// Raft role.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// Last log index held.
    pub last_log_index: u64,
    /// Highest committed index known.
    pub commit_index: u64,
    /// Highest applied index.
    pub applied_index: u64,
    /// Entries behind the leader (leader's view; `None` when unknown).
    pub lag: Option<u64>,
    /// Address clients use.
    pub client_addr: String,
    /// Address of the Raft port.
    pub raft_addr: String,
}

/// A broker group as one of its nodes sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerGroupStatus {
    /// Cluster name.
    pub cluster: String,
    /// The broker group.
    pub broker_group: BrokerGroup,
    /// The group's id, once the answering node has one.
    pub group_id: Option<GroupId>,
    /// The answering node.
    pub node_id: NodeId,
    /// The leader, if known.
    pub leader: Option<NodeId>,
    /// Every member: the answering node's own status is exact; others come from the
    /// leader's replication state (only the leader knows their lag).
    pub nodes: Vec<NodeStatus>,
}

/// What one node measures of itself, for the console's node cards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// The answering node.
    pub node_id: NodeId,
    /// Bytes in use on the data directory's file system, once measured.
    pub disk_used_bytes: Option<u64>,
    /// Size of that file system, once measured.
    pub disk_total_bytes: Option<u64>,
    /// Messages stored by sends this node led, since it started.
    pub produced_total: u64,
    /// Messages this node returned to pulls, since it started.
    pub consumed_total: u64,
    /// On the leader: per follower, ms since it last acknowledged a heartbeat or append
    /// (`None`: never since this node leads). Empty on other nodes.
    pub heartbeat_age_ms: Vec<(NodeId, Option<u64>)>,
}

/// What draining a node did ([`BrokerService::drain`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// The drained node.
    pub node_id: NodeId,
    /// Whether it led its group when the drain began.
    pub was_leader: bool,
    /// The group's leader once the drain finished (`None`: none known yet).
    pub leader: Option<NodeId>,
    /// Pulls and sends the node was serving when the drain began.
    pub in_flight_at_start: u64,
    /// Of those, still running when the wait gave up (0: every one finished).
    pub in_flight_left: u64,
    /// How long the drain took, ms.
    pub waited_ms: u64,
    /// Whether the node is drained now (`false` after an undo).
    pub draining: bool,
}

/// The RPCs of a broker node.
#[tarpc::service]
pub trait BrokerService {
    /// Checks protocol compatibility.
    async fn hello(req: HelloRequest) -> Result<HelloResponse, WireError>;
    /// Stores messages (leader only).
    async fn send(req: SendMessageRequest) -> Result<SendMessageResponse, WireError>;
    /// Reads messages, long-polling.
    async fn pull(req: PullMessageRequest) -> Result<PullMessageResponse, WireError>;
    /// Offsets of every queue of a topic on this group.
    async fn topic_status(topic: TopicName) -> Result<Vec<QueueStatus>, WireError>;
    /// A group's committed offset of a queue.
    async fn query_offset(
        group: ConsumerGroup,
        topic: TopicName,
        queue_id: QueueId,
    ) -> Result<Option<Offset>, WireError>;
    /// Every committed offset of a group: `(topic, queue, offset)`.
    async fn group_offsets(
        group: ConsumerGroup,
    ) -> Result<Vec<(TopicName, QueueId, Offset)>, WireError>;
    /// Commits offsets (replicated before the answer).
    async fn commit_offsets(req: CommitOffsetsRequest) -> Result<(), WireError>;
    /// The first offset stored at or after `ms` (ms since the Unix epoch).
    async fn offset_for_time(
        topic: TopicName,
        queue_id: QueueId,
        ms: u64,
    ) -> Result<Offset, WireError>;
    /// Registers a client instance's groups and subscriptions.
    async fn heartbeat(req: HeartbeatRequest) -> Result<(), WireError>;
    /// Client ids of a consumer group's live members, sorted.
    async fn consumer_list(group: ConsumerGroup) -> Result<Vec<String>, WireError>;
    /// Creates or updates a topic on this group.
    async fn upsert_topic(config: TopicConfig) -> Result<(), WireError>;
    /// Deletes a topic from this group.
    async fn delete_topic(topic: TopicName) -> Result<(), WireError>;
    /// Every topic on this group.
    async fn list_topics() -> Result<Vec<TopicConfig>, WireError>;
    /// A topic's config, auto-creating it first (leader only) when this broker
    /// auto-creates topics; `TopicNotFound` when it does not.
    async fn ensure_topic(topic: TopicName) -> Result<TopicConfig, WireError>;
    /// Creates or updates a consumer group.
    async fn upsert_group(config: ConsumerGroupConfig) -> Result<(), WireError>;
    /// Deletes a consumer group and its offsets.
    async fn delete_group(group: ConsumerGroup) -> Result<(), WireError>;
    /// Every consumer group configured on this group.
    async fn list_groups() -> Result<Vec<ConsumerGroupConfig>, WireError>;
    /// The broker group's Raft status.
    async fn broker_group_status() -> Result<BrokerGroupStatus, WireError>;
    /// A message by its id (a [`crate::MsgId`] of this group) or by the client's message
    /// id (`UNIQ_KEY`): a delayed one while it waits, then its delivered copy.
    async fn get_message(msg_id: String) -> Result<FoundMessage, WireError>;
    /// Messages with a key, oldest first.
    async fn query_by_key(
        topic: TopicName,
        key: String,
        max: u32,
    ) -> Result<Vec<MessageExt>, WireError>;
    /// Adds a node: first as a learner, then as a voter.
    async fn add_node(
        node_id: NodeId,
        raft_addr: String,
        client_addr: String,
    ) -> Result<(), WireError>;
    /// Removes a node from the group.
    async fn remove_node(node_id: NodeId) -> Result<(), WireError>;
    /// Hands leadership to another voter.
    async fn transfer_leader(to: NodeId) -> Result<(), WireError>;
    /// Returns a failed message for retry (or dead-lettering).
    async fn send_back(req: SendBackRequest) -> Result<(), WireError>;
    /// Several sends in one call (a client batching concurrent sends); each has its own
    /// result, as if sent alone.
    async fn send_many(
        reqs: Vec<SendMessageRequest>,
    ) -> Result<Vec<Result<SendMessageResponse, WireError>>, WireError>;
    /// Locks queues for an orderly consumer (replicated: survives failover).
    async fn lock_queues(req: LockQueuesRequest) -> Result<LockQueuesResponse, WireError>;
    /// Releases queue locks.
    async fn unlock_queues(req: LockQueuesRequest) -> Result<(), WireError>;
    /// Stores messages with options (leader only): what a follower forwards for a
    /// RocketMQ client.
    async fn send_with(
        req: SendMessageRequest,
        options: SendOptions,
    ) -> Result<SendMessageResponse, WireError>;
    /// A single-use nonce for [`BrokerService::authenticate`] on this connection
    /// ([`crate::auth`]).
    async fn auth_challenge() -> Result<Vec<u8>, WireError>;
    /// Makes this connection act as `access_key`: `signature` answers the latest challenge.
    async fn authenticate(access_key: String, signature: Vec<u8>) -> Result<(), WireError>;
    /// Creates or changes a user (admin only).
    async fn put_user(update: UserUpdate) -> Result<(), WireError>;
    /// Deletes a user (admin only); its connections lose every permission at once.
    async fn delete_user(access_key: String) -> Result<(), WireError>;
    /// Every user, without secrets (admin only).
    async fn list_users() -> Result<Vec<UserInfo>, WireError>;
    /// Sets (`Some`) or removes (`None`) a user's permission on a topic or group (admin
    /// only).
    async fn set_acl(
        access_key: String,
        resource: AclResource,
        perm: Option<AclPerm>,
    ) -> Result<(), WireError>;
    /// This node's disk use, message counters and (on the leader) follower heartbeat ages.
    async fn node_stats() -> Result<NodeStats, WireError>;
    // New methods go last: a request names its method by position, so one inserted
    // earlier would make older peers call the wrong one.
    /// A consumer group's live members with where they connect from and what they
    /// subscribed, sorted by client id.
    async fn consumer_connections(
        group: ConsumerGroup,
    ) -> Result<Vec<ConsumerConnection>, WireError>;
    /// A pull that returns only the messages an SQL92 expression
    /// ([`crate::sql92`]) is TRUE for (after the tag filter); the others are skipped and
    /// `next_offset` moves past them. An expression that does not parse is `Invalid`.
    async fn pull_where(
        req: PullMessageRequest,
        sql: String,
    ) -> Result<PullMessageResponse, WireError>;
    /// Commits, rolls back or leaves pending a transaction's half message (leader only).
    async fn end_transaction(
        req: crate::transaction::EndTransactionRequest,
    ) -> Result<crate::transaction::EndTransactionOutcome, WireError>;
    /// Waits up to `wait_ms` for check-backs of the producer group addressed to this
    /// producer (leader only); empty when there were none.
    async fn transaction_checks(
        poll: crate::transaction::TransactionCheckPoll,
    ) -> Result<Vec<crate::transaction::TransactionCheck>, WireError>;
    /// Pending half messages, oldest first, at most `max` (leader only).
    async fn pending_transactions(
        max: u32,
    ) -> Result<Vec<crate::transaction::PendingTransactionInfo>, WireError>;
    /// Takes this node out of service before it is stopped (admin only): hands
    /// leadership to the most caught-up follower, stops standing for election, refuses new
    /// pulls (clients go to the leader) and waits up to `wait_ms` for the pulls and sends
    /// it is serving. Sends that reach it are still forwarded to the leader. `undo` puts
    /// the node back in service; a restart does too.
    async fn drain(undo: bool, wait_ms: u64) -> Result<DrainReport, WireError>;
}
