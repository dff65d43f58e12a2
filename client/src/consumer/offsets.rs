//! Where a consumer keeps its positions: on the brokers (clustering, replicated through
//! Raft) or in a local file (broadcasting, every instance on its own).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftmq_proto::broker::CommitOffsetsRequest;
use raftmq_proto::{BrokerGroup, ConsumerGroup, Offset};

use crate::core::Core;
use crate::error::{Error, Result};
use crate::producer::MessageQueue;

/// Time a commit may take, leader changes included.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The consumer's positions: the next offset to consume per queue.
#[derive(Debug)]
pub(crate) enum OffsetStore {
    /// Committed to the brokers.
    Remote {
        /// Connections.
        core: Arc<Core>,
        /// The consumer group.
        group: ConsumerGroup,
        /// offset, dirty.
        map: Mutex<HashMap<MessageQueue, (u64, bool)>>,
    },
    /// Kept in a local JSON file.
    Local {
        /// The file.
        path: PathBuf,
        /// offset per queue.
        map: Mutex<BTreeMap<String, u64>>,
    },
}

fn local_key(mq: &MessageQueue) -> String {
    format!("{}@{}:{}", mq.topic, mq.broker_group, mq.queue_id)
}

impl OffsetStore {
    /// Broker-side offsets for `group`.
    pub(crate) fn remote(core: Arc<Core>, group: ConsumerGroup) -> Self {
        OffsetStore::Remote {
            core,
            group,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// A local file `dir/<group>.json`, loaded if it exists.
    pub(crate) fn local(dir: PathBuf, group: &str) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Invalid(format!(
                "cannot create offset directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(format!("{group}.json"));
        let map = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::Invalid(format!(
                    "offset file {} is corrupt: {e}; move it aside to restart from consume-from",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "cannot read offset file {}: {e}",
                    path.display()
                )))
            }
        };
        Ok(OffsetStore::Local {
            path,
            map: Mutex::new(map),
        })
    }

    /// The stored position of a queue, if any.
    pub(crate) async fn read(&self, mq: &MessageQueue) -> Result<Option<u64>> {
        match self {
            OffsetStore::Local { map, .. } => Ok(lock(map).get(&local_key(mq)).copied()),
            OffsetStore::Remote { core, group, .. } => {
                let route = core.route(&mq.topic, false).await?;
                let g = route
                    .groups
                    .iter()
                    .find(|g| g.broker_group == mq.broker_group)
                    .cloned()
                    .ok_or_else(|| Error::NoRoute {
                        topic: mq.topic.to_string(),
                        reason: format!("group {} no longer serves it", mq.broker_group),
                    })?;
                let (gn, t, q) = (group.clone(), mq.topic.clone(), mq.queue_id);
                let o = core
                    .call_leader(&g, COMMIT_TIMEOUT, move |b, cx| {
                        let (gn, t) = (gn.clone(), t.clone());
                        async move { b.query_offset(cx, gn, t, q).await }
                    })
                    .await?;
                Ok(o.map(|o| o.0))
            }
        }
    }

    /// Records a new position (persisted later).
    pub(crate) fn update(&self, mq: &MessageQueue, offset: u64) {
        match self {
            OffsetStore::Local { map, .. } => {
                lock(map).insert(local_key(mq), offset);
            }
            OffsetStore::Remote { map, .. } => {
                let mut m = lock(map);
                let e = m.entry(mq.clone()).or_insert((offset, true));
                if e.0 != offset {
                    *e = (offset, true);
                }
            }
        }
    }

    /// Forgets a queue (after persisting it).
    pub(crate) fn remove(&self, mq: &MessageQueue) {
        if let OffsetStore::Remote { map, .. } = self {
            lock(map).remove(mq);
        }
    }

    /// Persists changed positions (all of them, or only `only`).
    pub(crate) async fn persist(&self, only: Option<&MessageQueue>) -> Result<()> {
        match self {
            OffsetStore::Local { path, map } => {
                let json = serde_json::to_vec_pretty(&*lock(map))
                    .map_err(|e| Error::Invalid(e.to_string()))?;
                let tmp = path.with_extension("json.tmp");
                std::fs::write(&tmp, json)
                    .and_then(|_| std::fs::rename(&tmp, path))
                    .map_err(|e| {
                        Error::Invalid(format!("cannot write offset file {}: {e}", path.display()))
                    })
            }
            OffsetStore::Remote { core, group, map } => {
                let dirty: Vec<(MessageQueue, u64)> = lock(map)
                    .iter()
                    .filter(|(mq, (_, d))| *d && only.is_none_or(|o| o == *mq))
                    .map(|(mq, (o, _))| (mq.clone(), *o))
                    .collect();
                let mut by_group: BTreeMap<BrokerGroup, Vec<(MessageQueue, u64)>> = BTreeMap::new();
                for (mq, o) in dirty {
                    by_group
                        .entry(mq.broker_group.clone())
                        .or_default()
                        .push((mq, o));
                }
                let mut result = Ok(());
                for (bg, items) in by_group {
                    let Some(topic) = items.first().map(|(mq, _)| mq.topic.clone()) else {
                        continue;
                    };
                    let route = match core.route(&topic, false).await {
                        Ok(r) => r,
                        Err(e) => {
                            result = Err(e);
                            continue;
                        }
                    };
                    let Some(g) = route.groups.iter().find(|g| g.broker_group == bg).cloned()
                    else {
                        continue;
                    };
                    let req = CommitOffsetsRequest {
                        group: group.clone(),
                        offsets: items
                            .iter()
                            .map(|(mq, o)| (mq.topic.clone(), mq.queue_id, Offset(*o)))
                            .collect(),
                    };
                    let r = core
                        .call_leader(&g, COMMIT_TIMEOUT, move |b, cx| {
                            let req = req.clone();
                            async move { b.commit_offsets(cx, req).await }
                        })
                        .await;
                    match r {
                        Ok(()) => {
                            let mut m = lock(map);
                            for (mq, o) in items {
                                if let Some(e) = m.get_mut(&mq) {
                                    if e.0 == o {
                                        e.1 = false;
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(broker_group = %bg, error = %e, "committing offsets failed; will retry");
                            result = Err(e);
                        }
                    }
                }
                result
            }
        }
    }
}
