//! Queue bounds and consumer offsets. Offsets are committed through Raft, so a new leader
//! has exactly the committed positions.

use raftmq_proto::broker::{CommitOffsetsRequest, QueueStatus};
use raftmq_proto::{names, ConsumerGroup, Offset, QueueId, TopicName};
use raftmq_store::Command;

use super::{blocking, Broker, BrokerError, ConnectionCtx};

impl Broker {
    /// Offsets of every queue of a topic on this group.
    ///
    /// # Errors
    /// `TopicNotFound`.
    pub async fn queue_status(&self, topic: TopicName) -> Result<Vec<QueueStatus>, BrokerError> {
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

    /// `(min, max)` offsets of one queue (`max` = one past the last message).
    ///
    /// # Errors
    /// `TopicNotFound`.
    pub async fn queue_bounds(
        &self,
        topic: TopicName,
        queue_id: QueueId,
    ) -> Result<(Offset, Offset), BrokerError> {
        let store = self.shared.store.clone();
        blocking(move || store.queue_bounds(topic.as_str(), queue_id.0))
            .await
            .map(|(min, max)| (Offset(min), Offset(max)))
    }

    /// A group's committed offset of a queue.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn query_offset(
        &self,
        group: ConsumerGroup,
        topic: TopicName,
        queue_id: QueueId,
    ) -> Result<Option<Offset>, BrokerError> {
        let store = self.shared.store.clone();
        blocking(move || {
            Ok(store
                .consumer_offset(group.as_str(), topic.as_str(), queue_id.0)?
                .map(Offset))
        })
        .await
    }

    /// Every committed offset of a group: `(topic, queue, offset)`.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn group_offsets(
        &self,
        group: ConsumerGroup,
    ) -> Result<Vec<(TopicName, QueueId, Offset)>, BrokerError> {
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

    /// Commits offsets (leader only; replicated before the answer).
    ///
    /// # Errors
    /// `Invalid` names, `NotLeader`, replication outcomes.
    pub async fn commit_offsets(
        &self,
        _ctx: &ConnectionCtx,
        req: CommitOffsetsRequest,
    ) -> Result<(), BrokerError> {
        names::validate_group(req.group.as_str()).map_err(BrokerError::Invalid)?;
        if req.offsets.is_empty() {
            return Ok(());
        }
        for (t, _, _) in &req.offsets {
            names::validate_topic(t.as_str()).map_err(BrokerError::Invalid)?;
        }
        self.check_leader()?;
        self.command(Command::CommitOffsets {
            group: req.group,
            offsets: req.offsets,
        })
        .await
        .map(drop)
    }

    /// The first offset stored at or after `ms` (ms since the Unix epoch).
    ///
    /// # Errors
    /// `TopicNotFound`.
    pub async fn offset_for_time(
        &self,
        topic: TopicName,
        queue_id: QueueId,
        ms: u64,
    ) -> Result<Offset, BrokerError> {
        let store = self.shared.store.clone();
        blocking(move || {
            store
                .offset_for_time(topic.as_str(), queue_id.0, ms)
                .map(Offset)
        })
        .await
    }
}
