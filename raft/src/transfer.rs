//! Snapshot transfer: the steps a leader sends and how the receiver stages them.
//!
//! 1. `Offer`: the receiver answers with its last log entry and its term at the snapshot's
//!    last index.
//! 2. `Records`: the log entries it lacks, staged in a separate commit log so that an
//!    interrupted transfer leaves the real log untouched.
//! 3. `Install`: the staged entries replace the real log's tail, then the state image is
//!    installed through openraft.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use openraft::raft::SnapshotResponse;
use openraft::storage::Snapshot;
use raftmq_store::{AppendEntry, CommitLog, LogConfig, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::codec::io_err;
use crate::state_machine::SnapshotImage;
use crate::types::{LogId, SnapshotMeta, TypeConfig, Vote};
use crate::Raft;

/// One step of a snapshot transfer.
#[derive(Debug, Serialize, Deserialize)]
pub enum SnapshotStep {
    /// What does the receiver hold?
    Offer {
        /// The sender's vote.
        vote: Vote,
        /// Last entry the snapshot covers.
        last_log_id: LogId,
    },
    /// Log entries `(term, index, payload)`; the first chunk says where the receiver's log
    /// must be cut before they are added.
    Records {
        /// The sender's vote.
        vote: Vote,
        /// Cut the receiver's log from this index (first chunk only).
        truncate_from: Option<u64>,
        /// Consecutive entries.
        records: Vec<(u64, u64, Bytes)>,
    },
    /// Install the staged entries and the state image.
    Install {
        /// The sender's vote.
        vote: Vote,
        /// Snapshot metadata.
        meta: SnapshotMeta,
        /// The state image.
        image: Bytes,
    },
}

/// The receiver's answer to a [`SnapshotStep`].
#[derive(Debug, Serialize, Deserialize)]
pub enum SnapshotReply {
    /// Its last entry `(term, index)` and its term at the snapshot's last index.
    Offer {
        /// Last entry held.
        last: Option<(u64, u64)>,
        /// Term of its entry at the offered last index, if it has one.
        term_at_last: Option<u64>,
    },
    /// Records staged.
    Records,
    /// Snapshot installed.
    Installed(SnapshotResponse<TypeConfig>),
}

struct Staging {
    log: CommitLog,
    truncate_from: u64,
}

/// Receives snapshot transfers for one node.
pub struct SnapshotReceiver {
    store: Arc<Store>,
    dir: PathBuf,
    staging: Mutex<Option<Staging>>,
}

impl std::fmt::Debug for SnapshotReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReceiver")
            .field("dir", &self.dir)
            .finish()
    }
}

impl SnapshotReceiver {
    /// A receiver staging into `dir`.
    pub fn new(store: Arc<Store>, dir: PathBuf) -> Self {
        Self {
            store,
            dir,
            staging: Mutex::new(None),
        }
    }

    /// Handles one step.
    ///
    /// # Errors
    /// A stale sender, I/O errors, or openraft refusing the install.
    pub async fn handle(&self, raft: &Raft, step: SnapshotStep) -> std::io::Result<SnapshotReply> {
        let mut staging = self.staging.lock().await;
        match step {
            SnapshotStep::Offer { vote, last_log_id } => {
                check_vote(raft, &vote)?;
                *staging = None;
                let store = self.store.clone();
                let (last, term_at_last) = tokio::task::spawn_blocking(move || {
                    let last = store.log().last_entry_id();
                    let at = store
                        .log()
                        .read(last_log_id.index)
                        .map_err(io_err)?
                        .map(|r| r.term);
                    Ok::<_, std::io::Error>((last, at))
                })
                .await
                .map_err(io_err)??;
                Ok(SnapshotReply::Offer { last, term_at_last })
            }
            SnapshotStep::Records {
                vote,
                truncate_from,
                records,
            } => {
                check_vote(raft, &vote)?;
                if let Some(t) = truncate_from {
                    let dir = self.dir.clone();
                    let log = tokio::task::spawn_blocking(move || {
                        if dir.exists() {
                            std::fs::remove_dir_all(&dir)?;
                        }
                        CommitLog::open(&dir, LogConfig::default()).map_err(io_err)
                    })
                    .await
                    .map_err(io_err)??;
                    *staging = Some(Staging {
                        log,
                        truncate_from: t,
                    });
                }
                let Some(st) = staging.as_ref() else {
                    return Err(io_err("snapshot records arrived without a start"));
                };
                let batch = AppendEntry::all(&records);
                st.log.append(&batch).map_err(io_err)?;
                Ok(SnapshotReply::Records)
            }
            SnapshotStep::Install { vote, meta, image } => {
                check_vote(raft, &vote)?;
                if let Some(st) = staging.take() {
                    let store = self.store.clone();
                    let dir = self.dir.clone();
                    tokio::task::spawn_blocking(move || move_staged(&store, st, &dir))
                        .await
                        .map_err(io_err)??;
                }
                let snapshot = Snapshot {
                    meta,
                    snapshot: SnapshotImage(image),
                };
                let resp = raft
                    .install_full_snapshot(vote, snapshot)
                    .await
                    .map_err(io_err)?;
                Ok(SnapshotReply::Installed(resp))
            }
        }
    }
}

fn check_vote(raft: &Raft, vote: &Vote) -> std::io::Result<()> {
    use openraft::async_runtime::WatchReceiver;
    let mine = raft.metrics().borrow_watched().vote;
    if vote.partial_cmp(&mine).is_some_and(|o| o.is_lt()) {
        return Err(io_err(format!(
            "stale snapshot sender: its vote {vote} is below ours {mine}"
        )));
    }
    Ok(())
}

/// Replaces the tail of the real log with the staged entries.
fn move_staged(store: &Store, st: Staging, dir: &std::path::Path) -> std::io::Result<()> {
    st.log.sync().map_err(io_err)?;
    let log = store.log();
    log.truncate_from(st.truncate_from).map_err(io_err)?;
    let mut next = st.log.first_index().unwrap_or(0);
    let last = st.log.last_index().unwrap_or(0);
    while next <= last && st.log.first_index().is_some() {
        let recs = st.log.read_range(next, last + 1, 8 << 20).map_err(io_err)?;
        if recs.is_empty() {
            break;
        }
        next = recs.last().map_or(next, |r| r.index + 1);
        let batch: Vec<AppendEntry<'_>> = recs.iter().map(AppendEntry::from).collect();
        log.append(&batch).map_err(io_err)?;
    }
    log.sync().map_err(io_err)?;
    drop(st);
    std::fs::remove_dir_all(dir)?;
    tracing::info!(
        last_index = last,
        "moved snapshot log entries into the commit log"
    );
    Ok(())
}
