//! Queue bounds and consumer offsets. Offsets are committed through Raft, so a new leader
//! has exactly the committed positions; the commits RocketMQ consumers send with every pull
//! are coalesced first ([`Broker::commit_offset_soon`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use raftmq_proto::broker::{CommitOffsetsRequest, QueueStatus};
use raftmq_proto::{names, ConsumerGroup, Offset, QueueId, TopicName};
use raftmq_store::Command;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

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

/// How often offsets committed "soon" are replicated: one `CommitOffsets` entry per group
/// per interval, however many pulls carried a commit.
pub const COMMIT_EVERY: Duration = Duration::from_millis(100);

type Waiter = oneshot::Sender<Result<(), BrokerError>>;
/// One group's offsets to commit, by queue.
type GroupCommits = BTreeMap<(TopicName, QueueId), Offset>;

/// Offsets waiting for the next coalesced commit.
#[derive(Debug, Default)]
pub struct PendingCommits {
    groups: Mutex<HashMap<ConsumerGroup, (GroupCommits, Vec<Waiter>)>>,
}

impl Broker {
    /// Queues an offset commit for the next coalesced round (at most [`COMMIT_EVERY`]
    /// away); the receiver learns whether it was replicated. RocketMQ consumers commit in
    /// every pull and every 5 s per queue; one Raft entry per pull would cost more than
    /// the pull.
    pub fn commit_offset_soon(
        &self,
        group: ConsumerGroup,
        topic: TopicName,
        queue_id: QueueId,
        offset: Offset,
    ) -> oneshot::Receiver<Result<(), BrokerError>> {
        let (tx, rx) = oneshot::channel();
        let mut groups = self
            .shared
            .pending_commits
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (offsets, waiters) = groups.entry(group).or_default();
        offsets.insert((topic, queue_id), offset);
        waiters.push(tx);
        rx
    }

    /// Replicates the queued commits, on the leader or forwarded to it.
    async fn flush_commits(&self, ctx: &ConnectionCtx) {
        let pending = std::mem::take(
            &mut *self
                .shared
                .pending_commits
                .groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (group, (offsets, waiters)) in pending {
            let req = CommitOffsetsRequest {
                group,
                offsets: offsets.into_iter().map(|((t, q), o)| (t, q, o)).collect(),
            };
            let r = self
                .on_leader(
                    || self.commit_offsets(ctx, req.clone()),
                    |c, cx| {
                        let req = req.clone();
                        async move { c.commit_offsets(cx, req).await }
                    },
                )
                .await;
            if let Err(e) = &r {
                tracing::debug!(group = %req.group, error = %e, "coalesced offset commit failed");
            }
            for w in waiters {
                let _ = w.send(r.clone());
            }
        }
    }
}

/// Replicates coalesced offset commits every [`COMMIT_EVERY`] until `stop`, then once more.
pub(crate) async fn run_commits(broker: Broker, stop: CancellationToken) {
    let ctx = ConnectionCtx::new(None, super::Protocol::Internal);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(COMMIT_EVERY) => {}
        }
        broker.flush_commits(&ctx).await;
    }
    broker.flush_commits(&ctx).await;
}
