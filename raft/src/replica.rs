//! [`Replica`]: one node of a broker group's Raft group, wired to the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use raftmq_proto::broker::{BrokerGroupStatus, NodeStatus, Role};
use raftmq_proto::NodeId;
use raftmq_store::Store;
use tokio::sync::watch;

use crate::error::Error;
use crate::identity::Identity;
use crate::log_store::LogStore;
use crate::network::{Connector, NetworkFactory};
use crate::server::RaftServer;
use crate::state_machine::StateMachine;
use crate::transfer::SnapshotReceiver;
use crate::types::{RaftNode, RaftRequest, RaftResponse, TypeConfig};
use crate::Raft;

/// Settings of one replica.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Cluster name (reported in status).
    pub cluster: String,
    /// Broker group name: one Raft group.
    pub group: String,
    /// This node's id.
    pub node_id: u64,
    /// The initial members, used once to initialize a brand-new group.
    pub peers: BTreeMap<u64, RaftNode>,
    /// Leader heartbeat interval, ms. Default 100.
    pub heartbeat_ms: u64,
    /// Election timeout range, ms. Default 250..350. openraft's leader lease equals the
    /// upper bound and followers campaign after lease + timeout of silence (600 to 700 ms
    /// by default), which sets the failover time.
    pub election_timeout_ms: (u64, u64),
    /// Entries between snapshots (which also bound how far the logical purge point trails
    /// the log). Default 20 000.
    pub snapshot_every_entries: u64,
    /// As a follower, fsync appends on the thread that received them when no sync is
    /// running (two thread hand-offs fewer on every write's critical path). Off where
    /// several nodes share one runtime's threads. Default true.
    pub follower_inline_sync: bool,
    /// How long a leader holds an AppendEntries that only carries a new commit index,
    /// waiting for the next append to carry it instead (see [`crate::commit_hold`]). An
    /// idle follower learns of a commit up to this much later. Zero sends each at once.
    /// Default 2 ms.
    pub commit_hold: Duration,
}

impl ReplicaConfig {
    /// Defaults for a group.
    pub fn new(cluster: &str, group: &str, node_id: u64, peers: BTreeMap<u64, RaftNode>) -> Self {
        Self {
            cluster: cluster.to_owned(),
            group: group.to_owned(),
            node_id,
            peers,
            heartbeat_ms: 100,
            election_timeout_ms: (250, 350),
            snapshot_every_entries: 20_000,
            follower_inline_sync: true,
            commit_hold: crate::commit_hold::DEFAULT_COMMIT_HOLD,
        }
    }

    fn openraft(&self) -> Result<Config, Error> {
        Config {
            cluster_name: self.group.clone(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms.0,
            election_timeout_max: self.election_timeout_ms.1,
            enable_pre_vote: Some(true),
            max_payload_entries: 256,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.snapshot_every_entries,
            install_snapshot_timeout: 120_000,
            purge_batch_size: 256,
            // A follower whose disk was wiped rejoins with an empty log; without this the
            // leader's replication panics on the "reverted" follower.
            allow_log_reversion: Some(true),
            // Replicate entries as soon as they are written locally, so the leader's fsync
            // and the followers' run in parallel instead of one after the other.
            broadcast_submitted_on_append: Some(true),
            ..Config::default()
        }
        .validate()
        .map_err(|e| Error::Refused(format!("invalid Raft settings: {e}")))
    }
}

/// One node of a broker group.
#[derive(Debug, Clone)]
pub struct Replica {
    raft: Raft,
    store: Arc<Store>,
    config: Arc<ReplicaConfig>,
    identity: Identity,
    applied: watch::Receiver<u64>,
    snapshots: Arc<SnapshotReceiver>,
    /// Serializes membership changes made through this node (openraft refuses a change
    /// while another is uncommitted).
    membership: Arc<tokio::sync::Mutex<()>>,
}

/// A group from before group ids existed gets one from the first leader that runs this
/// version; followers learn it from its appends.
async fn create_group_id_when_leading(raft: Raft, identity: Identity) {
    let mut server = raft.server_metrics();
    drop(raft);
    while identity.get().is_none() {
        if server.borrow_watched().state == ServerState::Leader {
            if let Err(e) = identity.create() {
                tracing::error!(error = %e, "could not store a group id; will retry at the next role change");
            }
        }
        if server.changed().await.is_err() {
            return;
        }
    }
}

/// A follower's appends are synced on the thread that receives them (its acknowledgement
/// is on every write's critical path, one batch at a time); a leader's go through the
/// flusher thread, so replication is not held up behind its own fsync.
async fn sync_inline_while_following(raft: Raft, store: Arc<Store>) {
    let mut server = raft.server_metrics();
    drop(raft);
    loop {
        let state = server.borrow_watched().state;
        store.log().set_inline_sync(matches!(
            state,
            ServerState::Follower | ServerState::Learner
        ));
        if server.changed().await.is_err() {
            return;
        }
    }
}

impl Replica {
    /// Starts the Raft node over `store` (data under `data_dir`).
    ///
    /// # Errors
    /// Invalid settings or storage errors while recovering.
    pub async fn start(
        config: ReplicaConfig,
        store: Arc<Store>,
        data_dir: &Path,
        connector: Arc<dyn Connector>,
    ) -> Result<Self, Error> {
        let raft_config = Arc::new(config.openraft()?);
        let initial = store.applied().map_or(0, |(_, i)| i);
        let (tx, rx) = watch::channel(initial);
        let sm = StateMachine::new(store.clone(), data_dir.join("snapshot"), tx)?;
        let identity = Identity::load(config.node_id, &config.group, store.clone())?;
        let network = NetworkFactory::new(
            config.node_id,
            identity.clone(),
            store.clone(),
            connector,
            config.commit_hold,
        );
        let raft = Raft::new(
            config.node_id,
            raft_config,
            network,
            LogStore::new(store.clone()),
            sm,
        )
        .await
        .map_err(|e| Error::Fatal(e.to_string()))?;
        let snapshots = Arc::new(SnapshotReceiver::new(
            store.clone(),
            data_dir.join("snapshot").join("staging"),
        ));
        if config.follower_inline_sync {
            tokio::spawn(sync_inline_while_following(raft.clone(), store.clone()));
        }
        tokio::spawn(create_group_id_when_leading(raft.clone(), identity.clone()));
        Ok(Self {
            raft,
            store,
            config: Arc::new(config),
            identity,
            applied: rx,
            snapshots,
            membership: Arc::default(),
        })
    }

    /// The openraft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    /// The group name.
    pub fn group(&self) -> &str {
        &self.config.group
    }

    /// The group's id, once this node has one (see [`crate::identity`]).
    pub fn group_id(&self) -> Option<raftmq_proto::GroupId> {
        self.identity.get()
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.config.cluster
    }

    /// The server for this node's Raft port.
    pub fn server(&self) -> RaftServer {
        RaftServer::new(
            self.identity.clone(),
            self.raft.clone(),
            self.snapshots.clone(),
            self.membership.clone(),
        )
    }

    /// Watches the applied index (long polls wait on it).
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Initializes a brand-new group exactly once: only the lowest-numbered peer does it,
    /// only if it holds no Raft state, and only if no leader contacts it within a few
    /// election timeouts (a wiped node rejoining a running group must not re-initialize).
    ///
    /// # Errors
    /// The node stopped.
    pub async fn bootstrap(&self) -> Result<(), Error> {
        let me = self.config.node_id;
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| Error::Fatal(e.to_string()))?
        {
            return Ok(());
        }
        if self.config.peers.keys().next() != Some(&me) {
            tracing::info!(
                node_id = me,
                "waiting for the lowest-numbered peer to initialize the group"
            );
            return Ok(());
        }
        let wait = Duration::from_millis(self.config.election_timeout_ms.1 * 3);
        let contacted = self
            .raft
            .wait(Some(wait))
            .metrics(
                |m| m.current_leader.is_some(),
                "a leader contacts this node",
            )
            .await
            .is_ok();
        if contacted
            || self
                .raft
                .is_initialized()
                .await
                .map_err(|e| Error::Fatal(e.to_string()))?
        {
            return Ok(());
        }
        tracing::info!(node_id = me, members = ?self.config.peers.keys().collect::<Vec<_>>(), "initializing a new Raft group");
        // The id is stored before the group exists, so every entry of it is under one id.
        self.identity.create()?;
        match self.raft.initialize(self.config.peers.clone()).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(e)) => {
                tracing::info!(reason = %e, "group already initialized");
                Ok(())
            }
            Err(RaftError::Fatal(e)) => Err(Error::Fatal(e.to_string())),
        }
    }

    /// Makes sure the membership records `client_addr` for this node: asks the leader to
    /// update it when it differs. Returns whether the membership already had it.
    ///
    /// # Errors
    /// No leader is known yet, or the leader refused.
    pub async fn publish_client_addr(
        &self,
        client_addr: &str,
        connector: &dyn Connector,
    ) -> Result<bool, Error> {
        let me = self.config.node_id;
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let Some(mine) = membership.get_node(&me).cloned() else {
            return Err(Error::Refused(
                "this node is not in the membership yet".into(),
            ));
        };
        if mine.client_addr == client_addr {
            return Ok(true);
        }
        let leader = m.current_leader.ok_or(Error::NotLeader {
            leader: None,
            leader_addr: None,
        })?;
        let leader_node = membership
            .get_node(&leader)
            .cloned()
            .ok_or_else(|| Error::Refused(format!("leader {leader} is not in the membership")))?;
        let stream = connector.connect(&leader_node.raft_addr).await?;
        let client = raftmq_proto::RaftServiceClient::new(
            tarpc::client::Config::default(),
            raftmq_proto::transport::framed(stream),
        )
        .spawn();
        let mut ctx = tarpc::context::current();
        ctx.deadline = std::time::Instant::now() + Duration::from_secs(10);
        client
            .set_client_addr(
                ctx,
                self.identity.caller(),
                me,
                mine.raft_addr,
                client_addr.to_owned(),
            )
            .await
            .map_err(|e| Error::Refused(e.to_string()))?
            .map_err(|e| Error::Refused(e.to_string()))?;
        tracing::info!(
            node_id = me,
            client_addr,
            "published this node's client address in the membership"
        );
        Ok(false)
    }

    /// The current leader and its addresses, if known.
    pub fn leader(&self) -> Option<(u64, Option<RaftNode>)> {
        let m = self.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader?;
        let node = m.membership_config.membership().get_node(&leader).cloned();
        Some((leader, node))
    }

    /// Whether this node believes it leads.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// The `NotLeader` error naming the leader when another node leads.
    pub fn not_leader(&self) -> Error {
        match self.leader() {
            Some((id, node)) if id != self.config.node_id => Error::NotLeader {
                leader: Some(id),
                leader_addr: node.map(|n| n.client_addr),
            },
            _ => Error::NotLeader {
                leader: None,
                leader_addr: None,
            },
        }
    }

    /// Replicates an entry payload and returns its log index and what applying it
    /// produced.
    ///
    /// # Errors
    /// [`Error::NotLeader`] (not applied), [`Error::Unknown`] (leadership changed in
    /// flight), [`Error::Fatal`].
    pub async fn write(&self, payload: Bytes) -> Result<(u64, RaftResponse), Error> {
        match self.raft.client_write(RaftRequest(payload)).await {
            Ok(resp) => Ok((resp.log_id.index, resp.data)),
            Err(e) => Err(self.map_write_error(e)),
        }
    }

    fn map_write_error(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Error {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::NotLeader {
                leader: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.client_addr),
            },
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => Error::Unknown,
            RaftError::APIError(other) => Error::Refused(other.to_string()),
            RaftError::Fatal(f) => Error::Fatal(f.to_string()),
        }
    }

    /// Adds a node: as a learner until it caught up, then as a voter.
    ///
    /// # Errors
    /// Not the leader, or the change was refused.
    pub async fn add_node(&self, id: u64, node: RaftNode) -> Result<(), Error> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let _one_at_a_time = self.membership.lock().await;
        tracing::info!(node_id = id, %node, "adding a learner");
        self.raft
            .add_learner(id, node, true)
            .await
            .map_err(|e| self.map_write_error(e))?;
        tracing::info!(node_id = id, "promoting the learner to voter");
        let add: BTreeSet<u64> = [id].into_iter().collect();
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(add), false)
            .await
            .map_err(|e| self.map_write_error(e))?;
        Ok(())
    }

    /// Removes a node from the group.
    ///
    /// # Errors
    /// Not the leader, or the change was refused.
    pub async fn remove_node(&self, id: u64) -> Result<(), Error> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let _one_at_a_time = self.membership.lock().await;
        let ids: BTreeSet<u64> = [id].into_iter().collect();
        tracing::info!(node_id = id, "removing a node");
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(ids.clone()), false)
            .await
            .map_err(|e| self.map_write_error(e))?;
        // A learner left behind is removed from the node list too.
        let _ = self
            .raft
            .change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await;
        Ok(())
    }

    /// Hands leadership to `to` and waits (up to 10 s) until it leads.
    ///
    /// # Errors
    /// Not the leader, not a voter, or the transfer did not complete.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), Error> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let voters: BTreeSet<u64> = self.raft.voter_ids().collect();
        if !voters.contains(&to) {
            return Err(Error::Refused(format!(
                "node {to} is not a voter of this group (voters: {voters:?})"
            )));
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| Error::Fatal(e.to_string()))?;
        self.raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader == Some(to), "leadership transferred")
            .await
            .map_err(|e| Error::Refused(format!("node {to} did not take over: {e}")))?;
        Ok(())
    }

    /// Whether this node starts elections when its leader goes quiet (a drained node
    /// does not; it still votes, so its group keeps its quorum).
    pub fn set_electable(&self, on: bool) {
        self.raft.runtime_config().elect(on);
    }

    /// On the leader, per follower: ms since it last acknowledged a heartbeat or append
    /// (`None`: not since this node leads). Empty on other nodes.
    pub fn heartbeat_ages(&self) -> Vec<(NodeId, Option<u64>)> {
        let m = self.raft.metrics().borrow_watched().clone();
        m.heartbeat
            .iter()
            .flatten()
            .filter(|(id, _)| **id != self.config.node_id)
            .map(|(id, at)| {
                let age = at
                    .as_ref()
                    .map(|at| openraft::Instant::elapsed(&**at).as_millis() as u64);
                (NodeId(*id), age)
            })
            .collect()
    }

    /// The group as this node sees it.
    pub fn status(&self) -> BrokerGroupStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let me = self.config.node_id;
        let role = |s: ServerState| match s {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Learner => Role::Learner,
            ServerState::Candidate => Role::Candidate,
            ServerState::Shutdown => Role::Shutdown,
        };
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let commit = m.local_committed.map_or(0, |l| l.index);
        let mut nodes = Vec::new();
        for (id, node) in membership.nodes() {
            let mine = *id == me;
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(id))
                .map(|l| l.map_or(0, |l| l.index));
            nodes.push(NodeStatus {
                node_id: NodeId(*id),
                role: if mine {
                    role(m.state)
                } else if Some(*id) == m.current_leader {
                    Role::Leader
                } else if voters.contains(id) {
                    Role::Follower
                } else {
                    Role::Learner
                },
                term: m.current_term,
                last_log_index: if mine { last } else { matched.unwrap_or(0) },
                commit_index: if mine { commit } else { 0 },
                applied_index: if mine {
                    m.last_applied.map_or(0, |l| l.index)
                } else {
                    0
                },
                lag: if mine && m.state == ServerState::Leader {
                    Some(0)
                } else {
                    matched.map(|x| last.saturating_sub(x))
                },
                client_addr: node.client_addr.clone(),
                raft_addr: node.raft_addr.clone(),
            });
        }
        BrokerGroupStatus {
            cluster: self.config.cluster.clone(),
            broker_group: raftmq_proto::BrokerGroup(self.config.group.clone()),
            group_id: self.identity.get(),
            node_id: NodeId(me),
            leader: m.current_leader.map(NodeId),
            nodes,
        }
    }

    /// This node's role and term.
    pub fn role(&self) -> (Role, u64) {
        let m = self.raft.metrics().borrow_watched().clone();
        let r = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Learner => Role::Learner,
            ServerState::Candidate => Role::Candidate,
            ServerState::Shutdown => Role::Shutdown,
        };
        (r, m.current_term)
    }

    /// The logical purge point: retention may delete segments up to it.
    ///
    /// # Errors
    /// Storage errors.
    pub fn purge_limit(&self) -> Result<u64, Error> {
        Ok(LogStore::new(self.store.clone())
            .last_purged()?
            .map_or(0, |l| l.index))
    }

    /// Takes a snapshot now and purges the log up to it, so that retention may delete
    /// every sealed segment the snapshot covers: for a disk that is running out of room.
    /// Otherwise the log keeps `snapshot_every_entries` entries behind each snapshot for
    /// followers to catch up from, which with large messages can be more than the disk
    /// holds. Returns the new purge point; waits at most `timeout` for each step (a
    /// leader delays a purge while it replicates the entries to a follower).
    ///
    /// # Errors
    /// The Raft core stopped, or a step did not finish within `timeout`.
    pub async fn compact_log(&self, timeout: Duration) -> Result<u64, Error> {
        let applied = {
            let m = self.raft.metrics().borrow_watched().clone();
            let index = |l: &Option<crate::types::LogId>| l.as_ref().map_or(0, |l| l.index);
            if index(&m.snapshot) >= index(&m.last_applied)
                && index(&m.purged) >= index(&m.snapshot)
            {
                return Ok(index(&m.purged));
            }
            index(&m.last_applied)
        };
        let fatal = |e: openraft::errors::Fatal<TypeConfig>| Error::Fatal(e.to_string());
        let waited = |e: openraft::metrics::WaitError| Error::TimedOut(e.to_string());
        self.raft.trigger().snapshot().await.map_err(fatal)?;
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| m.snapshot.as_ref().is_some_and(|l| l.index >= applied),
                "a snapshot for retention",
            )
            .await
            .map_err(waited)?;
        let upto = m.snapshot.as_ref().map_or(0, |l| l.index);
        self.raft.trigger().purge_log(upto).await.map_err(fatal)?;
        self.raft
            .wait(Some(timeout))
            .metrics(
                |m| m.purged.as_ref().is_some_and(|l| l.index >= upto),
                "a log purge for retention",
            )
            .await
            .map_err(waited)?;
        Ok(upto)
    }

    /// Resolves when the Raft core stops on its own (a storage failure or a panic), with the
    /// reason.
    pub async fn stopped(&self) -> String {
        // Server metrics change only with role, term or membership, not with every entry;
        // a fatal error is also looked for once a second.
        let mut server = self.raft.server_metrics();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            if let Err(e) = &self.raft.metrics().borrow_watched().running_state {
                return e.to_string();
            }
            tokio::select! {
                r = server.changed() => if r.is_err() {
                    return "the Raft core exited".into();
                },
                _ = tick.tick() => {}
            }
        }
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft shutdown did not finish cleanly");
        }
    }
}
