//! Group commit of sends: concurrent send requests on the leader are coalesced into one
//! Raft entry, so the Raft round trip and the fsync are paid per batch, not per message.
//!
//! ```text
//!  send ─┐
//!  send ─┼─► bounded queue ─► batcher: drain what is waiting (up to MAX_ENTRY_BYTES)
//!  send ─┘                      │ encode one message batch, stamp the store time
//!                               ▼
//!                    replica.write (up to MAX_IN_FLIGHT entries pipelined)
//!                               │ applied: (queue, offset) per message
//!                               ▼
//!                    each request gets its slice of the outcomes
//! ```

use std::sync::Arc;

use bytes::Bytes;
use raftmq_proto::message::PROP_UNIQ_KEY;
use raftmq_proto::{
    BrokerGroup, Message, MsgId, Offset, QueueId, SendResult, SendStatus, TopicName,
};
use raftmq_raft::{Placement, RaftResponse, Replica};
use raftmq_store::{BatchWriter, EntryPayload, MessageRef};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::convert::now_ms;
use crate::core::query::SLOT_BITS;
use crate::core::BrokerError;

/// One entry carries at most about this many bytes of messages.
pub const MAX_ENTRY_BYTES: usize = 4 << 20;
/// Most messages one send may carry.
pub const MAX_MESSAGES_PER_SEND: usize = 65_536;
/// Most messages one entry carries: a message's slot must fit the low bits of the
/// commit-log offsets RocketMQ clients see ([`SLOT_BITS`]).
const MAX_ENTRY_MESSAGES: usize = (1 << SLOT_BITS) - MAX_MESSAGES_PER_SEND;
/// Entries being replicated at once.
const MAX_IN_FLIGHT: usize = 4;
/// Send requests waiting to be batched before new ones get `Busy`.
const QUEUE_DEPTH: usize = 8192;

/// A send waiting for its batch.
#[derive(Debug)]
pub struct SendJob {
    /// Destination topic.
    pub topic: TopicName,
    /// Destination queue.
    pub queue_id: QueueId,
    /// Messages, all for `topic`.
    pub messages: Vec<Message>,
    /// Where the messages come from.
    pub origin: Origin,
    /// Where the results go.
    pub reply: oneshot::Sender<Result<Vec<SendResult>, BrokerError>>,
}

/// What the broker stores about where a send's messages come from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin {
    /// The producer's clock when the messages were made, ms (the store time when `None`).
    pub born_ms: Option<u64>,
    /// Reconsume count to store (non-zero for retries).
    pub reconsume_times: u32,
}

impl SendJob {
    fn bytes(&self) -> usize {
        self.messages
            .iter()
            .map(|m| m.body.len() + m.topic.as_str().len() + m.tag.len() + 64)
            .sum()
    }
}

/// The handle sends are submitted through.
#[derive(Debug, Clone)]
pub struct Proposer {
    tx: mpsc::Sender<SendJob>,
}

impl Proposer {
    /// Starts the batcher; it stops when `stop` fires (pending sends get an error).
    pub fn start(
        replica: Replica,
        stop: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tracker.spawn(run(replica, rx, stop));
        Self { tx }
    }

    /// Queues a send; `Busy` when the queue is full.
    ///
    /// # Errors
    /// `Busy` when overloaded, `Internal` when shutting down.
    pub async fn submit(
        &self,
        topic: TopicName,
        queue_id: QueueId,
        messages: Vec<Message>,
        origin: Origin,
    ) -> Result<Vec<SendResult>, BrokerError> {
        let (reply, rx) = oneshot::channel();
        let job = SendJob {
            topic,
            queue_id,
            messages,
            origin,
            reply,
        };
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => BrokerError::Busy(format!(
                "{QUEUE_DEPTH} sends already waiting to be replicated; back off and retry"
            )),
            // WHY: the batcher closes only when the node stops; "not leader" makes clients
            // retry on the node that leads next instead of failing the send.
            mpsc::error::TrySendError::Closed(_) => BrokerError::NotLeader {
                leader: None,
                leader_addr: None,
            },
        })?;
        rx.await.map_err(|_| {
            BrokerError::Indeterminate("the broker stopped while the send was in flight".into())
        })?
    }
}

async fn run(replica: Replica, mut rx: mpsc::Receiver<SendJob>, stop: CancellationToken) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            j = rx.recv() => match j { Some(j) => j, None => break },
        };
        // Wait for a replication slot first: while all are busy, more sends pile up and
        // the next entry carries all of them.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let mut bytes = first.bytes();
        let mut count = first.messages.len();
        let mut jobs = vec![first];
        while bytes < MAX_ENTRY_BYTES && count < MAX_ENTRY_MESSAGES {
            match rx.try_recv() {
                Ok(j) => {
                    bytes += j.bytes();
                    count += j.messages.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let replica = replica.clone();
        tasks.spawn(async move {
            propose(&replica, jobs).await;
            drop(permit);
        });
    }
    rx.close();
    // WHY: these jobs were never proposed; "not leader" (nothing applied) sends their
    // clients to the node that leads next, as for a send after the batcher closed.
    while let Ok(j) = rx.try_recv() {
        let _ = j.reply.send(Err(BrokerError::NotLeader {
            leader: None,
            leader_addr: None,
        }));
    }
    tasks.close();
    tasks.wait().await;
}

fn encode(jobs: &[SendJob]) -> Result<Bytes, BrokerError> {
    let store_ms = now_ms();
    let mut w = BatchWriter::new();
    for job in jobs {
        for m in &job.messages {
            w.push(&MessageRef {
                topic: job.topic.as_str(),
                queue_id: job.queue_id.0,
                tag: &m.tag,
                keys: &m.keys,
                properties: &m.properties,
                body: &m.body,
                born_ms: job.origin.born_ms.unwrap_or(store_ms),
                store_ms,
                flags: m.flag,
                reconsume_times: job.origin.reconsume_times,
            })
            .map_err(|e| BrokerError::Invalid(e.to_string()))?;
        }
    }
    EntryPayload::Messages(Bytes::from(w.finish()))
        .encode()
        .map(Bytes::from)
        .map_err(|e| BrokerError::Invalid(e.to_string()))
}

async fn propose(replica: &Replica, jobs: Vec<SendJob>) {
    let payload = match encode(&jobs) {
        Ok(p) => p,
        Err(e) => {
            for j in jobs {
                let _ = j.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let group = BrokerGroup::from(replica.group());
    let tag = raftmq_proto::message::group_tag(replica.group(), replica.group_id());
    match replica.write(payload).await {
        Ok((log_index, RaftResponse::Messages(outcomes))) => {
            let mut slot = 0usize;
            for job in jobs {
                let n = job.messages.len();
                let mut results = Vec::with_capacity(n);
                let mut missing = false;
                for i in slot..slot + n {
                    let (q, off, due) = match outcomes.get(i) {
                        Some(Placement::Stored { queue_id, offset }) => {
                            (*queue_id, Some(Offset(*offset)), 0)
                        }
                        Some(Placement::Scheduled { queue_id, due_ms }) => {
                            (*queue_id, None, *due_ms)
                        }
                        // A half message: no offset until its transaction commits.
                        Some(Placement::Half { queue_id }) => (*queue_id, None, 0),
                        _ => {
                            missing = true;
                            continue;
                        }
                    };
                    results.push(SendResult {
                        status: SendStatus::SendOk,
                        msg_id: MsgId::new(tag, log_index, i as u32).to_string(),
                        unique_key: job.messages[i - slot]
                            .property(PROP_UNIQ_KEY)
                            .map(str::to_owned),
                        topic: job.topic.clone(),
                        broker_group: group.clone(),
                        queue_id: QueueId(q),
                        queue_offset: off,
                        deliver_at_ms: due,
                    });
                }
                slot += n;
                let _ = job.reply.send(if missing {
                    Err(BrokerError::TopicNotFound(job.topic.clone()))
                } else {
                    Ok(results)
                });
            }
        }
        Ok((_, other)) => {
            for j in jobs {
                let _ = j.reply.send(Err(BrokerError::Internal(format!(
                    "unexpected apply result {other:?}"
                ))));
            }
        }
        Err(e) => {
            let e = BrokerError::from(e);
            for j in jobs {
                let _ = j.reply.send(Err(e.clone()));
            }
        }
    }
}
