//! Group commit of transaction decisions: concurrent commits and rollbacks on the leader
//! become one `EndTransactions` entry, as concurrent sends become one message batch
//! ([`crate::send`]); one Raft entry per decision held 1,024 concurrent transactional
//! producers to about 5,000 decisions/s (docs/benchmarks.md).
//!
//! An entry ends all of its transactions or none (one no longer pending: a decision racing
//! another for the same half message). When none, each of its decisions is proposed again
//! on its own, so the race costs only the losers' extra entries.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use raftmq_raft::{RaftResponse, Replica};
use raftmq_store::{BatchWriter, Command, EntryPayload, HalfPosition, MessageView};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::convert::now_ms;
use crate::core::transactions::push_committed;
use crate::core::BrokerError;

/// Decisions one entry carries at most.
const MAX_PER_ENTRY: usize = 1024;
/// Stop adding commits to an entry past this many bytes of messages.
const MAX_ENTRY_BYTES: usize = 4 << 20;
/// Entries being replicated at once.
const MAX_IN_FLIGHT: usize = 4;
/// Decisions waiting before new ones get `Busy`.
const QUEUE_DEPTH: usize = 8192;

/// Whether a decision ended its transaction.
pub type Ended = bool;

/// One decision waiting for its entry. A commit carries the half message.
#[derive(Debug)]
struct EndJob {
    half: HalfPosition,
    commit: Option<MessageView>,
    reply: oneshot::Sender<Result<Ended, BrokerError>>,
}

/// The handle decisions are submitted through.
#[derive(Debug, Clone)]
pub struct EndBatcher {
    tx: mpsc::Sender<EndJob>,
}

impl EndBatcher {
    /// Starts the batcher; it stops when `stop` fires.
    pub fn start(
        replica: Replica,
        stop: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tracker.spawn(run(replica, rx, stop));
        Self { tx }
    }

    /// Ends the half message at `half`: a commit stores `commit` (the half message as
    /// stored), a rollback (`None`) drops it. `false` when it was no longer pending.
    ///
    /// # Errors
    /// `Busy` when overloaded, `NotLeader` when the node stops, replication errors.
    pub async fn end(
        &self,
        half: HalfPosition,
        commit: Option<MessageView>,
    ) -> Result<Ended, BrokerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(EndJob {
                half,
                commit,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => BrokerError::Busy(format!(
                    "{QUEUE_DEPTH} transaction decisions already waiting; back off and retry"
                )),
                mpsc::error::TrySendError::Closed(_) => BrokerError::NotLeader {
                    leader: None,
                    leader_addr: None,
                },
            })?;
        rx.await.map_err(|_| {
            BrokerError::Indeterminate("the broker stopped while the decision was in flight".into())
        })?
    }
}

async fn run(replica: Replica, mut rx: mpsc::Receiver<EndJob>, stop: CancellationToken) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            j = rx.recv() => match j { Some(j) => j, None => break },
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let mut bytes = first.commit.as_ref().map_or(0, |m| m.encoded_len);
        let mut halves = BTreeSet::from([first.half]);
        let mut jobs = vec![first];
        let mut later = Vec::new();
        while jobs.len() < MAX_PER_ENTRY && bytes < MAX_ENTRY_BYTES {
            let Ok(j) = rx.try_recv() else { break };
            // A second decision about the same half message goes in an entry of its own
            // (a shared one would be refused as a whole).
            if !halves.insert(j.half) {
                later.push(j);
                continue;
            }
            bytes += j.commit.as_ref().map_or(0, |m| m.encoded_len);
            jobs.push(j);
        }
        let replica = replica.clone();
        tasks.spawn(async move {
            propose(&replica, jobs).await;
            for j in later {
                propose(&replica, vec![j]).await;
            }
            drop(permit);
        });
    }
    rx.close();
    while let Ok(j) = rx.try_recv() {
        let _ = j.reply.send(Err(BrokerError::NotLeader {
            leader: None,
            leader_addr: None,
        }));
    }
    tasks.close();
    tasks.wait().await;
}

/// The entry ending `jobs`.
fn encode(jobs: &[EndJob]) -> Result<Bytes, BrokerError> {
    let now = now_ms();
    let mut w = BatchWriter::new();
    let mut any_commit = false;
    for m in jobs.iter().filter_map(|j| j.commit.as_ref()) {
        push_committed(&mut w, m, now)?;
        any_commit = true;
    }
    let payload = EntryPayload::Command(Command::EndTransactions {
        ends: jobs.iter().map(|j| (j.half, j.commit.is_some())).collect(),
        batch: if any_commit {
            Bytes::from(w.finish())
        } else {
            Bytes::new()
        },
    });
    payload
        .encode()
        .map(Bytes::from)
        .map_err(|e| BrokerError::Invalid(e.to_string()))
}

async fn write(replica: &Replica, jobs: &[EndJob]) -> Result<Option<()>, BrokerError> {
    let payload = encode(jobs)?;
    match replica.write(payload).await? {
        (_, RaftResponse::TransactionEnded(Some(_))) => Ok(Some(())),
        (_, RaftResponse::TransactionEnded(None)) => Ok(None),
        (_, other) => Err(BrokerError::Internal(format!(
            "unexpected result of ending transactions: {other:?}"
        ))),
    }
}

/// Proposes one entry for `jobs`; when it is refused (one was no longer pending), each
/// job again on its own.
async fn propose(replica: &Replica, jobs: Vec<EndJob>) {
    let single = jobs.len() == 1;
    match write(replica, &jobs).await {
        Ok(Some(())) => {
            for j in jobs {
                let _ = j.reply.send(Ok(true));
            }
        }
        Ok(None) if single => {
            for j in jobs {
                let _ = j.reply.send(Ok(false));
            }
        }
        Ok(None) => {
            for j in jobs {
                Box::pin(propose(replica, vec![j])).await;
            }
        }
        Err(e) => {
            for j in jobs {
                let _ = j.reply.send(Err(e.clone()));
            }
        }
    }
}
