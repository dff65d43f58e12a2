//! The transport-neutral broker core: every operation a client can ask of a broker node,
//! taking a [`ConnectionCtx`] (who is asking, over what) and returning domain results or
//! a [`BrokerError`]. Front ends (raftmq's native tarpc protocol, RocketMQ remoting) only
//! decode requests, call these, and encode the answers.
//!
//! ```text
//!  tarpc front end ──┐                     ┌─► send batcher ─► Raft ─► store
//!                    ├─► Broker (this) ────┼─► store reads (pulls, offsets, lookups)
//!  remoting front end┘   ConnectionCtx     └─► client registry (heartbeats, pushes)
//! ```
//!
//! # Layout
//! - [`error`]: [`BrokerError`], what an operation can fail with.
//! - [`forward`]: leader-only work asked of a follower, done on the leader.
//! - [`send`]: storing messages (validation, delays, auto-created topics).
//! - [`pull`]: reading a queue with long polling.
//! - [`offsets`]: queue bounds and consumer offsets.
//! - [`coordination`]: heartbeats, consumer lists, orderly queue locks.
//! - [`retry`]: sending a failed message back through `%RETRY%`/`%DLQ%`.
//! - [`query`]: messages by id and by key.
//! - [`admin`]: topics, consumer groups, the Raft group's membership and status.
//! - [`transactions`]: ending half messages, and the check-backs producers poll for.
//! - [`users`]: users and their permissions.
//! - [`drain`]: taking a node out of service before it is stopped.

pub mod admin;
pub mod coordination;
pub mod drain;
pub mod error;
pub mod forward;
pub mod offsets;
pub mod pull;
pub mod query;
pub mod retry;
pub mod send;
pub mod transactions;
pub mod users;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use raftmq_proto::{BrokerGroup, TopicConfig, TopicName};
use raftmq_raft::Replica;
use raftmq_store::{Command, EntryPayload, Store};
use tokio::sync::Notify;

pub use error::BrokerError;

use crate::clients::ClientRegistry;
use crate::config::BrokerConfig;
use crate::send::Proposer;

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// raftmq's tarpc protocol (the `raftmq-client` crate, the CLI).
    Native,
    /// RocketMQ remoting v4 (Java, C++, Go, Python, Node clients).
    Remoting,
    /// The broker's own background work.
    Internal,
}

/// Who is asking: one per client connection, shared by its requests.
#[derive(Debug)]
pub struct ConnectionCtx {
    /// The client's address, when the transport knows it.
    pub peer: Option<SocketAddr>,
    /// The protocol of the connection.
    pub protocol: Protocol,
    /// The client instance's id, once it said (native `hello`, remoting heartbeat).
    pub client_id: OnceLock<String>,
    /// The access key a native connection authenticated as; `None` means anonymous.
    pub principal: OnceLock<String>,
    /// The challenge a native connection may answer ([`crate::auth::Authorizer::challenge`]).
    pub challenge: crate::auth::Challenge,
}

impl ConnectionCtx {
    /// A context for a new connection.
    pub fn new(peer: Option<SocketAddr>, protocol: Protocol) -> Self {
        Self {
            peer,
            protocol,
            client_id: OnceLock::new(),
            principal: OnceLock::new(),
            challenge: Default::default(),
        }
    }
}

/// State shared by the broker core, its schedulers and registration.
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
    /// Connections to the leader, for work forwarded by a follower.
    pub(crate) forwarder: forward::Forwarder,
    /// Offset commits waiting for the next coalesced round.
    pub(crate) pending_commits: offsets::PendingCommits,
    /// Who may do what.
    pub(crate) auth: crate::auth::Authorizer,
    /// One user change at a time on this node.
    pub(crate) user_writes: crate::auth::UserWrites,
    /// TLS of the client port and of outgoing connections.
    pub(crate) tls: crate::tls::NodeTls,
    /// The data disk against the write limit.
    pub(crate) disk: Arc<crate::disk::DiskGuard>,
    /// What the node counts for its metrics.
    pub(crate) counters: Arc<crate::metrics::NodeCounters>,
    /// Producers that can answer transaction check-backs.
    pub(crate) checkers: transactions::Checkers,
    /// Group commit of transaction decisions.
    pub(crate) tx_ends: crate::tx_batcher::EndBatcher,
    /// Whether the node is drained, and the pulls and sends it is serving.
    pub(crate) drain: drain::Drain,
}

/// The broker core. Cheap to clone: every front end and connection holds one.
#[derive(Debug, Clone)]
pub struct Broker {
    pub(crate) shared: Arc<Shared>,
}

/// Runs a store read on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, raftmq_store::Error> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Internal(e.to_string()))?
        .map_err(BrokerError::from)
}

impl Broker {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// This node's broker group.
    pub fn group(&self) -> BrokerGroup {
        BrokerGroup::from(self.shared.replica.group())
    }

    /// This node's cluster.
    pub fn cluster(&self) -> &str {
        self.shared.replica.cluster()
    }

    /// Who may do what on this node.
    pub fn auth(&self) -> &crate::auth::Authorizer {
        &self.shared.auth
    }

    /// This node's configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.shared.config
    }

    /// The address clients reach this node at.
    pub fn advertise_addr(&self) -> &str {
        self.shared.config.advertise_addr()
    }

    /// Whether this node leads its group.
    pub fn is_leader(&self) -> bool {
        self.shared.replica.is_leader()
    }

    /// The leader's client address, when another node leads and it is known.
    pub fn leader_addr(&self) -> Option<String> {
        match self.shared.replica.leader() {
            Some((id, Some(node))) if id != self.shared.replica.node_id() => {
                Some(node.client_addr).filter(|a| !a.is_empty())
            }
            _ => None,
        }
    }

    /// `Ok` on the leader, else `NotLeader` naming the leader when known.
    pub(crate) fn check_leader(&self) -> Result<(), BrokerError> {
        if self.shared.replica.is_leader() {
            return Ok(());
        }
        Err(self.shared.replica.not_leader().into())
    }

    /// Replicates a command and waits until it is applied.
    pub(crate) async fn command(
        &self,
        c: Command,
    ) -> Result<raftmq_raft::RaftResponse, BrokerError> {
        let payload = EntryPayload::Command(c)
            .encode()
            .map_err(|e| BrokerError::Invalid(e.to_string()))?;
        let (_, response) = self.shared.replica.write(Bytes::from(payload)).await?;
        Ok(response)
    }

    /// A topic's config on this group.
    ///
    /// # Errors
    /// `TopicNotFound`.
    pub fn topic_config(&self, topic: &TopicName) -> Result<TopicConfig, BrokerError> {
        self.shared
            .store
            .topic(topic.as_str())
            .ok_or_else(|| BrokerError::TopicNotFound(topic.clone()))
    }
}
