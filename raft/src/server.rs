//! The Raft port's server: decodes openraft RPCs and hands them to the local node.

use std::sync::Arc;

use bytes::Bytes;
use raftmq_proto::raft::RaftCaller;
use raftmq_proto::{RaftService, WireError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::context::Context;

use crate::guard::{Claim, RpcGuard};
use crate::identity::Identity;
use crate::transfer::{SnapshotReceiver, SnapshotStep};
use crate::types::TypeConfig;
use crate::Raft;

/// Decides whether this node has room for `bytes` more of replicated log: a follower
/// whose disk is nearly full refuses AppendEntries that carry entries (and snapshot
/// chunks) instead of running into ENOSPC, which is fatal to a log append. The leader
/// hears `Busy` with the reason and retries, the follower keeps its place (heartbeats
/// still pass, so it starts no election), and it catches up once it has room.
pub trait AppendGate: Send + Sync + std::fmt::Debug {
    /// `Ok` to take `bytes`; `Err` with the reason ("disk usage 98% on node 2 ...").
    ///
    /// # Errors
    /// The reason the entries are refused.
    fn admit(&self, bytes: u64) -> Result<(), String>;
}

/// Serves [`RaftService`] for one node.
#[derive(Clone, Debug)]
pub struct RaftServer {
    identity: Identity,
    guard: Arc<RpcGuard>,
    raft: Raft,
    snapshots: Arc<SnapshotReceiver>,
    membership: Arc<tokio::sync::Mutex<()>>,
    gate: Option<Arc<dyn AppendGate>>,
}

impl RaftServer {
    /// A server for `raft`, a node of the group `identity` names.
    pub fn new(
        identity: Identity,
        raft: Raft,
        snapshots: Arc<SnapshotReceiver>,
        membership: Arc<tokio::sync::Mutex<()>>,
    ) -> Self {
        Self {
            guard: Arc::new(RpcGuard::new(*raft.node_id())),
            identity,
            raft,
            snapshots,
            membership,
            gate: None,
        }
    }

    /// This server with `gate` deciding whether entries fit on this node's disk.
    #[must_use]
    pub fn with_gate(mut self, gate: Arc<dyn AppendGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Refuses `bytes` of entries when the gate says there is no room.
    fn admit(&self, bytes: usize) -> Result<(), WireError> {
        match &self.gate {
            Some(g) => g.admit(bytes as u64).map_err(WireError::Busy),
            None => Ok(()),
        }
    }
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, WireError> {
    bincode::deserialize(b).map_err(|e| WireError::Invalid(format!("undecodable Raft RPC: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Bytes, WireError> {
    bincode::serialize(v)
        .map(Bytes::from)
        .map_err(|e| WireError::Internal(format!("encoding a Raft reply: {e}")))
}

fn internal(e: impl std::fmt::Display) -> WireError {
    WireError::Internal(e.to_string())
}

impl RaftServer {
    /// Checks the caller ([`Identity::check`]; `adopt` for the leader's appends), decodes
    /// a request, checks what it claims ([`RpcGuard`]), hands it to the local node, encodes
    /// the reply.
    async fn handle<Req, Resp, E, F, Fut>(
        &self,
        from: &RaftCaller,
        adopt: bool,
        req: &[u8],
        claim: impl FnOnce(&Req) -> Claim,
        f: F,
    ) -> Result<Bytes, WireError>
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        E: std::fmt::Display,
        F: FnOnce(Raft, Req) -> Fut,
        Fut: std::future::Future<Output = Result<Resp, E>>,
    {
        self.identity.check(from, adopt)?;
        let req: Req = decode(req)?;
        self.guard.check(&self.raft, claim(&req))?;
        let resp = f(self.raft.clone(), req).await.map_err(internal)?;
        encode(&resp)
    }
}

type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;

/// What a vote or pre-vote claims: its candidate, at its term.
fn vote_claim(rpc: &'static str) -> impl FnOnce(&VoteRequest) -> Claim {
    move |q| Claim {
        rpc,
        term: q.vote.leader_id.term,
        candidate: Some(q.vote.leader_id.voted_for),
    }
}

impl RaftService for RaftServer {
    async fn append_entries(
        self,
        _: Context,
        from: RaftCaller,
        req: Bytes,
    ) -> Result<Bytes, WireError> {
        let claim = |q: &openraft::raft::AppendEntriesRequest<TypeConfig>| Claim {
            rpc: "append_entries",
            term: q.vote.leader_id.term,
            candidate: None,
        };
        self.identity.check(&from, true)?;
        let req: openraft::raft::AppendEntriesRequest<TypeConfig> = decode(&req)?;
        self.guard.check(&self.raft, claim(&req))?;
        if !req.entries.is_empty() {
            // An entry-less heartbeat or commit always passes: the follower keeps its
            // place and starts no election while it has no room.
            self.admit(crate::network::approx_bytes(&req))?;
        }
        let resp = self.raft.append_entries(req).await.map_err(internal)?;
        encode(&resp)
    }

    async fn vote(self, _: Context, from: RaftCaller, req: Bytes) -> Result<Bytes, WireError> {
        self.handle(&from, false, &req, vote_claim("vote"), |r, q| async move {
            r.vote(q).await
        })
        .await
    }

    async fn pre_vote(self, _: Context, from: RaftCaller, req: Bytes) -> Result<Bytes, WireError> {
        self.handle(
            &from,
            false,
            &req,
            vote_claim("pre_vote"),
            |r, q| async move { r.pre_vote(q).await },
        )
        .await
    }

    async fn transfer_leader(
        self,
        _: Context,
        from: RaftCaller,
        req: Bytes,
    ) -> Result<Bytes, WireError> {
        let claim = |q: &openraft::raft::TransferLeaderRequest<TypeConfig>| Claim {
            rpc: "transfer_leader",
            term: q.from_leader().leader_id.term,
            candidate: Some(q.from_leader().leader_id.voted_for),
        };
        self.handle(&from, false, &req, claim, |r, q| async move {
            r.handle_transfer_leader(q).await
        })
        .await
    }

    async fn set_client_addr(
        self,
        _: Context,
        from: RaftCaller,
        node_id: u64,
        raft_addr: String,
        client_addr: String,
    ) -> Result<(), WireError> {
        use openraft::async_runtime::WatchReceiver;
        self.identity.check(&from, false)?;
        let _one_at_a_time = self.membership.lock().await;
        let m = self.raft.metrics().borrow_watched().clone();
        if m.current_leader != Some(*self.raft.node_id()) {
            return Err(WireError::NotLeader {
                leader: m.current_leader.map(raftmq_proto::NodeId),
                leader_addr: None,
            });
        }
        let membership = m.membership_config.membership();
        let Some(node) = membership.get_node(&node_id) else {
            return Err(WireError::Invalid(format!(
                "node {node_id} is not a member of group {}",
                from.group
            )));
        };
        if node.raft_addr != raft_addr {
            return Err(WireError::Invalid(format!(
                "node {node_id} has Raft address {} in the membership, not {raft_addr}",
                node.raft_addr
            )));
        }
        if node.client_addr == client_addr {
            return Ok(());
        }
        let nodes = [(
            node_id,
            crate::types::RaftNode {
                raft_addr,
                client_addr,
            },
        )]
        .into_iter()
        .collect();
        self.raft
            .change_membership(openraft::ChangeMembers::SetNodes(nodes), true)
            .await
            .map_err(internal)?;
        Ok(())
    }

    async fn snapshot(self, _: Context, from: RaftCaller, req: Bytes) -> Result<Bytes, WireError> {
        self.identity.check(&from, true)?;
        let step: SnapshotStep = decode(&req)?;
        self.admit(req.len())?;
        let reply = self
            .snapshots
            .handle(&self.raft, step)
            .await
            .map_err(internal)?;
        encode(&reply)
    }
}
