//! Administration: topics, consumer groups, the Raft group's membership and status.

use raftmq_proto::broker::{BrokerGroupStatus, HelloRequest, HelloResponse, NodeStats};
use raftmq_proto::{
    names, ConsumerGroup, ConsumerGroupConfig, NodeId, TopicConfig, TopicName, PROTOCOL_VERSION,
};
use raftmq_raft::RaftNode;
use raftmq_store::Command;

use super::{blocking, Broker, BrokerError, ConnectionCtx};

/// Most read or write queues a topic may have on one group.
pub const MAX_QUEUES: u32 = 1024;

impl Broker {
    /// Checks protocol compatibility and records who is calling.
    ///
    /// # Errors
    /// Another protocol version.
    pub fn hello(
        &self,
        ctx: &ConnectionCtx,
        req: HelloRequest,
    ) -> Result<HelloResponse, BrokerError> {
        if req.protocol_version != PROTOCOL_VERSION {
            return Err(BrokerError::invalid(format!(
                "protocol version {} is not supported; this broker speaks {PROTOCOL_VERSION}: upgrade the older side",
                req.protocol_version
            )));
        }
        let _ = ctx.client_id.set(req.client_id);
        Ok(HelloResponse {
            protocol_version: PROTOCOL_VERSION,
            cluster: self.cluster().to_owned(),
            broker_group: self.group(),
            node_id: NodeId(self.shared.replica.node_id()),
        })
    }

    /// Creates or updates a topic on this group (leader only).
    ///
    /// # Errors
    /// `Invalid` name or queue counts, `NotLeader`, replication outcomes.
    pub async fn upsert_topic(&self, config: TopicConfig) -> Result<(), BrokerError> {
        names::validate_topic(config.name.as_str()).map_err(BrokerError::Invalid)?;
        for (what, n) in [
            ("read_queues", config.read_queues),
            ("write_queues", config.write_queues),
        ] {
            if n == 0 || n > MAX_QUEUES {
                return Err(BrokerError::invalid(format!(
                    "{what} = {n}: must be between 1 and {MAX_QUEUES}"
                )));
            }
        }
        self.check_leader()?;
        self.command(Command::UpsertTopic(config)).await?;
        self.shared.topics_changed.notify_one();
        Ok(())
    }

    /// Deletes a topic from this group (leader only).
    ///
    /// # Errors
    /// `NotLeader`, `TopicNotFound`, replication outcomes.
    pub async fn delete_topic(&self, topic: TopicName) -> Result<(), BrokerError> {
        self.check_leader()?;
        self.topic_config(&topic)?;
        self.command(Command::DeleteTopic(topic)).await?;
        self.shared.topics_changed.notify_one();
        Ok(())
    }

    /// Every topic on this group.
    pub fn list_topics(&self) -> Vec<TopicConfig> {
        self.shared.store.topics()
    }

    /// A topic's config, auto-creating it first (leader only) when this broker
    /// auto-creates topics.
    ///
    /// # Errors
    /// `Invalid` name, `TopicNotFound`, `NotLeader` when it must be created.
    pub async fn ensure_topic(&self, topic: TopicName) -> Result<TopicConfig, BrokerError> {
        names::validate_topic(topic.as_str()).map_err(BrokerError::Invalid)?;
        self.topic_or_create(&topic, None).await
    }

    /// Creates or updates a consumer group (leader only).
    ///
    /// # Errors
    /// `Invalid` name, `NotLeader`, replication outcomes.
    pub async fn upsert_group(&self, config: ConsumerGroupConfig) -> Result<(), BrokerError> {
        names::validate_group(config.name.as_str()).map_err(BrokerError::Invalid)?;
        self.check_leader()?;
        self.command(Command::UpsertGroup(config)).await.map(drop)
    }

    /// A consumer group's config, if configured.
    pub fn group_config(&self, group: &ConsumerGroup) -> Option<ConsumerGroupConfig> {
        self.shared.store.group(group.as_str())
    }

    /// Deletes a consumer group and its offsets (leader only): a configured group, or one
    /// known only by its committed offsets (as `list_groups` shows both).
    ///
    /// # Errors
    /// `NotLeader`, `GroupNotFound`, replication outcomes.
    pub async fn delete_group(&self, group: ConsumerGroup) -> Result<(), BrokerError> {
        self.check_leader()?;
        if self.shared.store.group(group.as_str()).is_none()
            && self.group_offsets(group.clone()).await?.is_empty()
        {
            return Err(BrokerError::GroupNotFound(group));
        }
        self.command(Command::DeleteGroup(group)).await.map(drop)
    }

    /// Every consumer group configured here or with committed offsets, by name.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn list_groups(&self) -> Result<Vec<ConsumerGroupConfig>, BrokerError> {
        let store = self.shared.store.clone();
        blocking(move || {
            let mut groups = store.groups();
            for g in store.offset_groups()? {
                if !groups.iter().any(|c| c.name.as_str() == g) {
                    groups.push(ConsumerGroupConfig::new(g));
                }
            }
            groups.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(groups)
        })
        .await
    }

    /// The broker group's Raft status as this node sees it.
    pub fn broker_group_status(&self) -> BrokerGroupStatus {
        self.shared.replica.status()
    }

    /// This node's disk use, message counters and follower heartbeat ages.
    pub fn node_stats(&self) -> NodeStats {
        let usage = self.shared.disk.usage();
        let counters = &self.shared.counters;
        NodeStats {
            node_id: NodeId(self.shared.replica.node_id()),
            disk_used_bytes: usage.map(|(used, _)| used),
            disk_total_bytes: usage.map(|(_, total)| total),
            produced_total: counters.produced.total(),
            consumed_total: counters.consumed.total(),
            heartbeat_age_ms: self.shared.replica.heartbeat_ages(),
        }
    }

    /// Adds a node: first as a learner, then as a voter.
    ///
    /// # Errors
    /// `NotLeader`, a refused change.
    pub async fn add_node(
        &self,
        _ctx: &ConnectionCtx,
        node_id: NodeId,
        raft_addr: String,
        client_addr: String,
    ) -> Result<(), BrokerError> {
        let node = RaftNode {
            raft_addr,
            client_addr,
        };
        Ok(self.shared.replica.add_node(node_id.0, node).await?)
    }

    /// Removes a node from the group.
    ///
    /// # Errors
    /// `NotLeader`, a refused change.
    pub async fn remove_node(
        &self,
        _ctx: &ConnectionCtx,
        node_id: NodeId,
    ) -> Result<(), BrokerError> {
        Ok(self.shared.replica.remove_node(node_id.0).await?)
    }

    /// Hands leadership to another voter.
    ///
    /// # Errors
    /// `NotLeader`, a refused transfer.
    pub async fn transfer_leader(
        &self,
        _ctx: &ConnectionCtx,
        to: NodeId,
    ) -> Result<(), BrokerError> {
        Ok(self.shared.replica.transfer_leader(to.0).await?)
    }
}
