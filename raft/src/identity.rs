//! The broker group's identity ([`GroupId`]): created once when the group is initialised,
//! stored in `meta` (synced), learned by a new or wiped member from its leader's first
//! AppendEntries or snapshot, and checked on every Raft RPC, so a node of another group
//! with the same name (another cluster, a copied or separately initialised data dir) can
//! neither join nor disturb this one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use raftmq_proto::raft::RaftCaller;
use raftmq_proto::{GroupId, WireError};
use raftmq_store::index::MetaKey;
use raftmq_store::Store;

use crate::error::Error;

const GROUP_ID_KEY: MetaKey<'static> = MetaKey::Raft("group_id");

/// A peer refused for its group id is logged once per id; the set is bounded.
const MAX_REFUSALS_LOGGED: usize = 64;

/// This node's view of its group's identity. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node_id: u64,
    group: String,
    store: Arc<Store>,
    id: OnceLock<GroupId>,
    refusals_logged: Mutex<BTreeSet<Option<GroupId>>>,
}

impl Identity {
    /// Loads node `node_id`'s identity of `group` from `store` (none yet on a new node).
    ///
    /// # Errors
    /// Storage errors, or a stored value that is not a group id.
    pub fn load(node_id: u64, group: &str, store: Arc<Store>) -> Result<Self, Error> {
        let id = OnceLock::new();
        if let Some(v) = store
            .indexes()
            .get_meta(&GROUP_ID_KEY)
            .map_err(|e| Error::Fatal(format!("reading the group id: {e}")))?
        {
            let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| {
                Error::Fatal(format!(
                    "the stored group id has {} bytes, not 8: the data dir is damaged",
                    v.len()
                ))
            })?;
            let _ = id.set(GroupId(u64::from_le_bytes(bytes)));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                node_id,
                group: group.to_owned(),
                store,
                id,
                refusals_logged: Mutex::default(),
            }),
        })
    }

    /// The group's id, once this node has one.
    pub fn get(&self) -> Option<GroupId> {
        self.inner.id.get().copied()
    }

    /// The group name.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// Who this node is, as its Raft RPCs say.
    pub fn caller(&self) -> RaftCaller {
        RaftCaller {
            group: self.inner.group.clone(),
            group_id: self.get(),
        }
    }

    /// Creates the group's id if this node has none (the node initialising a new group,
    /// or the leader of a group from before group ids existed) and returns it.
    ///
    /// # Errors
    /// The id could not be stored.
    pub fn create(&self) -> Result<GroupId, Error> {
        if let Some(id) = self.get() {
            return Ok(id);
        }
        let id = GroupId(rand::random());
        self.store(id, "created")
    }

    /// Stores `id` durably, then takes it (or the one a concurrent call took first).
    fn store(&self, id: GroupId, how: &str) -> Result<GroupId, Error> {
        let inner = &self.inner;
        inner
            .store
            .indexes()
            .put_meta_synced(&GROUP_ID_KEY, &id.0.to_le_bytes())
            .map_err(|e| Error::Fatal(format!("storing the group id: {e}")))?;
        if inner.id.set(id).is_ok() {
            tracing::info!(node_id = inner.node_id, broker_group = %inner.group, group_id = %id, "group id {how}");
        }
        Ok(self.get().unwrap_or(id))
    }

    /// Checks the caller of a Raft RPC: the same group name, and no other group id than
    /// this node's. With `adopt` (the leader's AppendEntries and snapshots), a node that
    /// has no id yet takes the caller's.
    ///
    /// # Errors
    /// `Invalid` naming both sides, for another group name or id.
    pub fn check(&self, from: &RaftCaller, adopt: bool) -> Result<(), WireError> {
        let inner = &self.inner;
        if from.group != inner.group {
            return Err(WireError::Invalid(format!(
                "this Raft port belongs to broker group {}, not {}: check the peers in the broker configs",
                inner.group, from.group
            )));
        }
        match (self.get(), from.group_id) {
            (Some(mine), Some(theirs)) if mine != theirs => {
                self.log_refusal(from.group_id, mine);
                Err(WireError::Invalid(format!(
                    "node {} of broker group {} has group id {mine}, the caller {theirs}: they \
                     are different groups of the same name (another cluster, or a data dir \
                     initialised or copied separately); give the stray node an empty data dir \
                     to rejoin, or fix the peers in the broker configs",
                    inner.node_id, inner.group
                )))
            }
            (None, Some(theirs)) if adopt => self
                .store(theirs, "learned from the leader")
                .map(drop)
                .map_err(|e| WireError::Internal(e.to_string())),
            _ => Ok(()),
        }
    }

    fn log_refusal(&self, theirs: Option<GroupId>, mine: GroupId) {
        let mut logged = self
            .inner
            .refusals_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if logged.len() >= MAX_REFUSALS_LOGGED {
            logged.clear();
        }
        if logged.insert(theirs) {
            tracing::warn!(
                node_id = self.inner.node_id,
                broker_group = %self.inner.group,
                group_id = %mine,
                peer_group_id = ?theirs.map(|i| i.to_string()),
                "refusing Raft RPCs from a node of another group with the same name (logged once per id)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> Arc<Store> {
        Arc::new(Store::open(dir, raftmq_store::StoreConfig::default()).expect("open"))
    }

    fn caller(group: &str, id: Option<u64>) -> RaftCaller {
        RaftCaller {
            group: group.into(),
            group_id: id.map(GroupId),
        }
    }

    #[test]
    fn a_new_node_learns_the_id_once_and_refuses_others_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let me = Identity::load(2, "broker-a", store.clone()).unwrap();
        assert_eq!(me.get(), None);
        // Votes do not teach the id; the name is checked whatever the id.
        me.check(&caller("broker-a", Some(7)), false).unwrap();
        assert_eq!(me.get(), None);
        assert!(me.check(&caller("broker-b", None), true).is_err());
        me.check(&caller("broker-a", Some(7)), true).unwrap();
        assert_eq!(me.get(), Some(GroupId(7)));
        drop(me);
        drop(store);

        let me = Identity::load(2, "broker-a", open(dir.path())).unwrap();
        assert_eq!(me.get(), Some(GroupId(7)));
        assert_eq!(me.create().unwrap(), GroupId(7));
        let e = me.check(&caller("broker-a", Some(8)), true).unwrap_err();
        assert!(
            e.to_string().contains("different groups of the same name"),
            "{e}"
        );
        assert_eq!(me.get(), Some(GroupId(7)));
        // A node without an id (new, wiped) may still talk to it, and learns it.
        me.check(&caller("broker-a", None), true).unwrap();
        assert_eq!(me.caller(), caller("broker-a", Some(7)));
    }

    #[test]
    fn created_ids_differ() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let x = Identity::load(1, "g", open(a.path()))
            .unwrap()
            .create()
            .unwrap();
        let y = Identity::load(1, "g", open(b.path()))
            .unwrap()
            .create()
            .unwrap();
        assert_ne!(x, y);
    }
}
