//! Reading a queue, holding the request on the applied-index watch until data arrives
//! (long polling).

use std::sync::atomic::Ordering;
use std::time::Duration;

use std::sync::Arc;

use raftmq_proto::sql92::Filter;
use raftmq_proto::{Offset, QueueId, TopicName};
use raftmq_store::{QueueFilter, StoredMessage};

use super::{blocking, Broker, BrokerError, ConnectionCtx};

/// Most messages one pull returns.
pub const MAX_PULL_MSGS: u32 = 1024;
/// Most bytes one pull returns (about).
pub const MAX_PULL_BYTES: u32 = 16 << 20;

/// What to read.
#[derive(Debug, Clone)]
pub struct PullRequest {
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
    /// Hold the request this long when nothing is available (capped by the broker's
    /// `max_pull_wait_ms`).
    pub max_wait: Duration,
    /// Only messages with one of these tags (empty = every message).
    pub tags: Vec<String>,
    /// Only messages this SQL92 expression is TRUE for.
    pub sql: Option<Arc<Filter>>,
}

/// What a pull found.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// Messages, in offset order.
    pub messages: Vec<StoredMessage>,
    /// Where the next pull should start.
    pub next_offset: Offset,
    /// Smallest readable offset.
    pub min_offset: Offset,
    /// One past the last offset.
    pub max_offset: Offset,
}

impl Broker {
    /// Reads committed messages of a queue, waiting up to `max_wait` for new ones.
    ///
    /// # Errors
    /// `TopicNotFound`, `PermissionDenied` (not readable), `OffsetTooSmall`,
    /// `OffsetTooLarge`, `Internal` (shutting down).
    pub async fn pull(
        &self,
        _ctx: &ConnectionCtx,
        req: PullRequest,
    ) -> Result<PullResult, BrokerError> {
        self.refuse_if_drained()?;
        let _serving = self.shared.drain.track();
        let topic = self.topic_config(&req.topic)?;
        if !topic.perm.readable() {
            return Err(BrokerError::PermissionDenied(format!(
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
        let wait = req
            .max_wait
            .min(Duration::from_millis(self.shared.config.max_pull_wait_ms));
        let mut deadline = tokio::time::Instant::now() + wait;
        let mut applied = self.shared.replica.applied();
        let drain_woke = self.shared.drain.woken();
        tokio::pin!(drain_woke);
        let mut cut_short = false;
        let max_msgs = req.max_msgs.clamp(1, MAX_PULL_MSGS) as usize;
        let max_bytes = req.max_bytes.clamp(1, MAX_PULL_BYTES) as usize;
        loop {
            applied.borrow_and_update();
            let store = self.shared.store.clone();
            let (t, q, off, h, sql) = (
                req.topic.clone(),
                req.queue_id.0,
                req.offset.0,
                hashes.clone(),
                req.sql.clone(),
            );
            let read = blocking(move || {
                let filter = QueueFilter {
                    tag_hashes: h.as_deref(),
                    sql: sql.as_deref(),
                };
                store.read_queue(t.as_str(), q, off, max_msgs, max_bytes, filter)
            })
            .await?;
            let timed_out = tokio::time::Instant::now() >= deadline;
            if req.offset.0 > read.max_offset {
                // This node may not have applied that far yet (a follower, or a leader just
                // elected whose applied index trails its commit): wait for it like for new
                // data. Answering "too large" at once would make the consumer reset to this
                // node's end and consume again what it already had. A drain sends it to
                // the leader instead.
                if timed_out {
                    return Err(if cut_short {
                        self.shared.replica.not_leader().into()
                    } else {
                        BrokerError::OffsetTooLarge {
                            offset: req.offset.0,
                            max: read.max_offset,
                        }
                    });
                }
            } else if timed_out || !read.messages.is_empty() || read.next_offset > req.offset.0 {
                self.shared
                    .counters
                    .consumed
                    .get(req.topic.as_str())
                    .fetch_add(read.messages.len() as u64, Ordering::Relaxed);
                return Ok(PullResult {
                    messages: read.messages,
                    next_offset: Offset(read.next_offset),
                    min_offset: Offset(read.min_offset),
                    max_offset: Offset(read.max_offset),
                });
            }
            tokio::select! {
                r = applied.changed() => if r.is_err() {
                    return Err(BrokerError::Internal("the broker is shutting down".into()));
                },
                _ = tokio::time::sleep_until(deadline) => {}
                // A drain answers long polls at once, so the client's next pull goes to
                // the leader.
                _ = &mut drain_woke, if !cut_short => {
                    cut_short = true;
                    deadline = tokio::time::Instant::now();
                }
            }
        }
    }
}
