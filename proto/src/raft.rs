//! The Raft port's RPC surface. Payloads are openraft messages encoded by the `raft`
//! crate (bincode), so this leaf crate does not depend on openraft.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::ids::GroupId;

/// Who makes a Raft RPC: the broker group the caller belongs to by name and, once it has
/// one, by id. A node refuses calls of another group name (a misconfiguration) and of
/// another group id (a node of another cluster, or a copied data dir).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftCaller {
    /// Broker group name.
    pub group: String,
    /// The group's id, `None` while the caller has not been told it yet (a new or wiped
    /// node, or a data dir written before group ids existed).
    pub group_id: Option<GroupId>,
}

/// The RPCs between the nodes of one broker group. `from` says who calls (see
/// [`RaftCaller`]).
#[tarpc::service]
pub trait RaftService {
    /// AppendEntries (also heartbeats).
    async fn append_entries(from: RaftCaller, req: Bytes) -> Result<Bytes, WireError>;
    /// RequestVote.
    async fn vote(from: RaftCaller, req: Bytes) -> Result<Bytes, WireError>;
    /// Pre-vote: would the node vote, without disturbing it?
    async fn pre_vote(from: RaftCaller, req: Bytes) -> Result<Bytes, WireError>;
    /// Leadership transfer notification.
    async fn transfer_leader(from: RaftCaller, req: Bytes) -> Result<Bytes, WireError>;
    /// One step of a snapshot transfer (offer, log records, install).
    async fn snapshot(from: RaftCaller, req: Bytes) -> Result<Bytes, WireError>;
    /// Asks the leader to record `client_addr` for node `node_id` (whose Raft address must
    /// be `raft_addr`) in the membership, so `NotLeader` hints and routes carry it.
    async fn set_client_addr(
        from: RaftCaller,
        node_id: u64,
        raft_addr: String,
        client_addr: String,
    ) -> Result<(), WireError>;
}
