//! [`StateMachine`]: openraft's state machine over the store, and snapshots.
//!
//! Applying assigns queue offsets and indexes messages (see `raftmq_store::Store::apply`);
//! the applied index and the last membership are written atomically with the state, so
//! nothing is applied twice after a restart. A snapshot is the store's state image (topics,
//! groups, queue offsets, consumer offsets) at the applied index; the log entries a lagging
//! follower lacks travel beside it (see [`crate::network`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload as RaftPayload, OptionalSend};
use raftmq_store::codec::{Reader, Writer};
use raftmq_store::index::MetaKey;
use raftmq_store::{ApplyEntry, ApplyOutcome, MessageOutcome, Store};
use tokio::sync::watch;

use crate::blocking::{blocking, inline_if_small};
use crate::codec::{self, io_err};
use crate::types::{
    log_id, LogId, Placement, RaftResponse, SnapshotMeta, StoredMembership, TypeConfig,
};

const MEMBERSHIP_KEY: MetaKey<'static> = MetaKey::Raft("membership");
const SNAPSHOT_FILE: &str = "current.snap";
/// Applies of at most this many payload bytes run in place (a memtable write).
const SMALL_APPLY_BYTES: usize = 256 << 10;

/// The data of a snapshot: the store's state image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotImage(pub Bytes);

/// A snapshot of this configuration.
pub type RaftSnapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotImage>;

/// The broker group's state machine.
#[derive(Debug, Clone)]
pub struct StateMachine {
    store: Arc<Store>,
    snapshot_dir: PathBuf,
    applied: watch::Sender<u64>,
}

impl StateMachine {
    /// A state machine over `store`, keeping snapshots in `snapshot_dir`; `applied`
    /// receives every newly applied index (consumers waiting in long polls watch it).
    ///
    /// # Errors
    /// The snapshot directory cannot be created.
    pub fn new(
        store: Arc<Store>,
        snapshot_dir: PathBuf,
        applied: watch::Sender<u64>,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(&snapshot_dir)?;
        Ok(Self {
            store,
            snapshot_dir,
            applied,
        })
    }

    fn membership(&self) -> io::Result<StoredMembership> {
        read_membership(&self.store)
    }
}

fn read_membership(store: &Store) -> io::Result<StoredMembership> {
    match store.indexes().get_meta(&MEMBERSHIP_KEY).map_err(io_err)? {
        Some(v) => codec::decode_stored_membership(Bytes::from(v)).map_err(io_err),
        None => Ok(StoredMembership::default()),
    }
}

fn placements(ms: Vec<MessageOutcome>) -> Vec<Placement> {
    ms.into_iter()
        .map(|m| match m {
            MessageOutcome::Stored { queue_id, offset } => Placement::Stored { queue_id, offset },
            MessageOutcome::Scheduled { queue_id, due_ms } => {
                Placement::Scheduled { queue_id, due_ms }
            }
            MessageOutcome::Half { queue_id } => Placement::Half { queue_id },
            MessageOutcome::TopicNotFound => Placement::TopicNotFound,
        })
        .collect()
}

fn to_response(o: ApplyOutcome) -> RaftResponse {
    match o {
        ApplyOutcome::Messages(ms) => RaftResponse::Messages(placements(ms)),
        ApplyOutcome::Locked(granted) => RaftResponse::Locked(granted),
        ApplyOutcome::TransactionEnded(ended) => {
            RaftResponse::TransactionEnded(ended.map(placements))
        }
        ApplyOutcome::Nothing | ApplyOutcome::Command => RaftResponse::Done,
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotImage;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let applied = self.store.applied().map(|(t, i)| log_id(t, i));
        Ok((applied, self.membership()?))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        let mut responders = Vec::new();
        let mut membership = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            if let RaftPayload::Membership(m) = &entry.payload {
                membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
            }
            batch.push(ApplyEntry {
                term: entry.log_id.leader_id.term,
                index: entry.log_id.index,
                payload: codec::entry_to_payload(&entry)?,
            });
            responders.push(responder);
        }
        let Some(last) = batch.last().map(|e| e.index) else {
            return Ok(());
        };
        let extra = match &membership {
            Some(m) => vec![(
                MEMBERSHIP_KEY,
                codec::encode_stored_membership(m).map_err(io_err)?,
            )],
            None => Vec::new(),
        };
        let store = self.store.clone();
        let small = batch.iter().map(|e| e.payload.len()).sum::<usize>() <= SMALL_APPLY_BYTES;
        let outcomes =
            inline_if_small(small, move || store.apply(&batch, &extra).map_err(io_err)).await?;
        for (outcome, responder) in outcomes.into_iter().zip(responders) {
            if let Some(r) = responder {
                r.send(to_response(outcome));
            }
        }
        self.applied.send_replace(last);
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotImage,
    ) -> io::Result<()> {
        let store = self.store.clone();
        let dir = self.snapshot_dir.clone();
        let meta = meta.clone();
        let applied = meta.last_log_id.map_or(0, |l| l.index);
        blocking(move || {
            store.import_state(&snapshot.0).map_err(io_err)?;
            let m = codec::encode_stored_membership(&meta.last_membership).map_err(io_err)?;
            store
                .indexes()
                .put_meta_synced(&MEMBERSHIP_KEY, &m)
                .map_err(io_err)?;
            write_snapshot(&dir, &meta, &snapshot.0)
        })
        .await?;
        self.applied.send_replace(applied);
        tracing::info!(
            applied_index = applied,
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<RaftSnapshot>> {
        let dir = self.snapshot_dir.clone();
        blocking(move || read_snapshot(&dir)).await
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotImage;

    async fn build_snapshot(&mut self) -> io::Result<RaftSnapshot> {
        let store = self.store.clone();
        let dir = self.snapshot_dir.clone();
        blocking(move || {
            let raftmq_store::image::StateExport {
                applied,
                image,
                extra,
            } = store.export_state(&[MEMBERSHIP_KEY]).map_err(io_err)?;
            let membership = match extra.into_iter().next().flatten() {
                Some(v) => codec::decode_stored_membership(Bytes::from(v)).map_err(io_err)?,
                None => StoredMembership::default(),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.map(|(t, i)| log_id(t, i)),
                last_membership: membership,
            };
            write_snapshot(&dir, &meta, &image)?;
            tracing::info!(
                last_index = applied.map_or(0, |(_, i)| i),
                bytes = image.len(),
                "built a snapshot"
            );
            Ok(Snapshot {
                meta,
                snapshot: SnapshotImage(Bytes::from(image)),
            })
        })
        .await
    }
}

/// Snapshot file: version u8 | last log id (u8 present, term u64, index u64)
/// | stored membership (u32 len + bytes) | image (rest).
fn write_snapshot(dir: &Path, meta: &SnapshotMeta, image: &[u8]) -> io::Result<()> {
    let mut w = Writer::new();
    w.u8(1);
    match meta.last_log_id {
        Some(l) => w.u8(1).u64(l.leader_id.term).u64(l.index),
        None => w.u8(0).u64(0).u64(0),
    };
    let m = codec::encode_stored_membership(&meta.last_membership).map_err(io_err)?;
    w.bytes32(&m).map_err(io_err)?;
    w.raw(image);
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&w.finish())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

fn read_snapshot(dir: &Path) -> io::Result<Option<RaftSnapshot>> {
    let bytes = match std::fs::read(dir.join(SNAPSHOT_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut r = Reader::new(Bytes::from(bytes), "snapshot file");
    let v = r.u8().map_err(io_err)?;
    if v != 1 {
        return Err(io_err(format!(
            "snapshot file version {v} is not supported"
        )));
    }
    let present = r.u8().map_err(io_err)? != 0;
    let (t, i) = (r.u64().map_err(io_err)?, r.u64().map_err(io_err)?);
    let m = codec::decode_stored_membership(r.bytes32().map_err(io_err)?).map_err(io_err)?;
    let meta = SnapshotMeta {
        last_log_id: present.then(|| log_id(t, i)),
        last_membership: m,
    };
    Ok(Some(Snapshot {
        meta,
        snapshot: SnapshotImage(r.rest()),
    }))
}
