//! The Raft port's RPC surface. Payloads are openraft messages encoded by the `raft`
//! crate (bincode), so this leaf crate does not depend on openraft.

use bytes::Bytes;

use crate::error::WireError;

/// The RPCs between the nodes of one broker group. `group` names the broker group the
/// caller belongs to; a node refuses calls for another group (a misconfiguration).
#[tarpc::service]
pub trait RaftService {
    /// AppendEntries (also heartbeats).
    async fn append_entries(group: String, req: Bytes) -> Result<Bytes, WireError>;
    /// RequestVote.
    async fn vote(group: String, req: Bytes) -> Result<Bytes, WireError>;
    /// Pre-vote: would the node vote, without disturbing it?
    async fn pre_vote(group: String, req: Bytes) -> Result<Bytes, WireError>;
    /// Leadership transfer notification.
    async fn transfer_leader(group: String, req: Bytes) -> Result<Bytes, WireError>;
    /// One step of a snapshot transfer (offer, log records, install).
    async fn snapshot(group: String, req: Bytes) -> Result<Bytes, WireError>;
    /// Asks the leader to record `client_addr` for node `node_id` (whose Raft address must
    /// be `raft_addr`) in the membership, so `NotLeader` hints and routes carry it.
    async fn set_client_addr(
        group: String,
        node_id: u64,
        raft_addr: String,
        client_addr: String,
    ) -> Result<(), WireError>;
}
