//! Consumer coordination: heartbeats (group membership and subscriptions), consumer
//! lists for rebalancing, and orderly consumers' queue locks (replicated, so they survive
//! failover).

use std::time::Instant;

use raftmq_proto::broker::{HeartbeatRequest, LockQueuesRequest, LockQueuesResponse};
use raftmq_proto::{names, ConsumerGroup, TopicName};
use raftmq_raft::RaftResponse;
use raftmq_store::Command;

use super::{Broker, BrokerError, ConnectionCtx};
use crate::clients::{ClientOrigin, MemberInfo};
use crate::convert::now_ms;

impl Broker {
    /// Registers a client instance's groups and subscriptions; members of a group whose
    /// member set changed are told at once when they can be pushed to. `origin` says
    /// where the client connects from and where its own pushes go.
    ///
    /// # Errors
    /// No client id.
    pub async fn heartbeat(
        &self,
        ctx: &ConnectionCtx,
        req: HeartbeatRequest,
        origin: ClientOrigin,
    ) -> Result<(), BrokerError> {
        if req.client_id.is_empty() {
            return Err(BrokerError::invalid("heartbeat without a client id"));
        }
        let _ = ctx.client_id.set(req.client_id.clone());
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
        let changed = self.shared.clients.heartbeat(
            &req.client_id,
            req.consumer_groups,
            origin,
            Instant::now(),
        );
        self.shared.clients.notify(&changed);
        Ok(())
    }

    /// Removes a client instance from one consumer group, or from all (a goodbye or a
    /// closed connection); the remaining members are told.
    pub fn unregister_client(&self, client_id: &str, group: Option<&ConsumerGroup>) {
        let changed = self
            .shared
            .clients
            .unregister(client_id, group.map(ConsumerGroup::as_str));
        self.shared.clients.notify(&changed);
    }

    /// Client ids of a consumer group's live members, sorted.
    pub fn consumer_list(&self, group: &ConsumerGroup) -> Vec<String> {
        self.shared.clients.members(group.as_str(), Instant::now())
    }

    /// Live members of a consumer group with where they connect from.
    pub fn consumer_connections(&self, group: &ConsumerGroup) -> Vec<MemberInfo> {
        self.shared
            .clients
            .member_infos(group.as_str(), Instant::now())
    }

    /// The expression a live member of `group` subscribed `topic` with, by heartbeat.
    pub fn subscription(&self, group: &ConsumerGroup, topic: &TopicName) -> Option<String> {
        self.shared
            .clients
            .subscription(group.as_str(), topic.as_str(), Instant::now())
    }

    /// Locks queues for an orderly consumer (leader only, replicated).
    ///
    /// # Errors
    /// `Invalid` group, `NotLeader`, replication outcomes.
    pub async fn lock_queues(
        &self,
        _ctx: &ConnectionCtx,
        req: LockQueuesRequest,
    ) -> Result<LockQueuesResponse, BrokerError> {
        names::validate_group(req.group.as_str()).map_err(BrokerError::Invalid)?;
        self.check_leader()?;
        let lease_ms = self.shared.config.queue_lock_lease_ms;
        let cmd = Command::LockQueues {
            group: req.group,
            client: req.client_id,
            queues: req.queues.clone(),
            now_ms: now_ms(),
            lease_ms,
        };
        match self.command(cmd).await? {
            RaftResponse::Locked(granted) => Ok(LockQueuesResponse {
                locked: req
                    .queues
                    .into_iter()
                    .zip(granted)
                    .filter(|(_, g)| *g)
                    .map(|(q, _)| q)
                    .collect(),
                lease_ms,
            }),
            other => Err(BrokerError::Internal(format!(
                "unexpected lock result {other:?}"
            ))),
        }
    }

    /// Releases queue locks (leader only, replicated).
    ///
    /// # Errors
    /// `NotLeader`, replication outcomes.
    pub async fn unlock_queues(
        &self,
        _ctx: &ConnectionCtx,
        req: LockQueuesRequest,
    ) -> Result<(), BrokerError> {
        self.check_leader()?;
        self.command(Command::UnlockQueues {
            group: req.group,
            client: req.client_id,
            queues: req.queues,
        })
        .await
        .map(drop)
    }
}
