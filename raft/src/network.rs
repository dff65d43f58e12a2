//! The Raft network: one lazily connected tarpc client per peer, with per-RPC deadlines
//! that suit large batches, reconnect after any failure, AppendEntries split below the
//! frame limit, and snapshots streamed with the log entries the receiver lacks.

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::Stream;
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{
    stream_append_sequential, RPCOption, RPCTypes, RaftNetworkFactory, RaftNetworkV2,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use raftmq_proto::live::Live;
use raftmq_proto::raft::RaftCaller;
use raftmq_proto::stream::{self as conn, Dialer};
use raftmq_proto::{RaftServiceClient, WireError};
use raftmq_store::Store;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::commit_hold::hold_commit_only;
use crate::identity::Identity;
use crate::peer_health::PeerHealth;
use crate::state_machine::{RaftSnapshot, SnapshotImage};
use crate::transfer::{SnapshotReply, SnapshotStep};
use crate::types::{RaftNode, TypeConfig, Vote};

/// AppendEntries payloads are split so that one RPC stays well below the frame limit.
pub const MAX_RPC_PAYLOAD_BYTES: usize = 16 << 20;
/// Snapshot log records travel in chunks of about this size.
const SNAPSHOT_CHUNK_BYTES: usize = 8 << 20;
/// Time to open a connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Floor of the AppendEntries deadline when it carries entries: openraft passes the
/// heartbeat interval, far too short for a batch that must also be fsynced.
const APPEND_TIMEOUT_FLOOR: Duration = Duration::from_secs(3);
/// Deadline of each snapshot step.
const SNAPSHOT_STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection that has answered nothing for this long is dropped and re-dialled on the
/// next call. Shorter timeouts keep the connection: under packet loss TCP retransmits
/// within a few hundred ms, and re-dialling on every lost heartbeat would cost a 1 s SYN
/// retransmission each time.
const STALE_CONNECTION: Duration = Duration::from_secs(1);

/// Opens connections to peers; tests substitute one that goes through a fault proxy.
pub trait Connector: Send + Sync + Debug + 'static {
    /// Connects to `addr` (with TLS, the handshake done).
    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<conn::Stream>>;
}

/// TCP, optionally from a fixed source IP (the node's Raft listen IP, so peers and
/// fault proxies can tell nodes apart even on one host), plain or with mutual TLS.
#[derive(Debug, Default, Clone)]
pub struct TcpConnector {
    /// Source IP of outgoing connections; `None` lets the kernel choose.
    pub bind_ip: Option<std::net::IpAddr>,
    /// Plain, or TLS presenting the node's certificate.
    pub dialer: Dialer,
}

impl Connector for TcpConnector {
    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<conn::Stream>> {
        let addr = addr.to_owned();
        let bind_ip = self.bind_ip;
        let dialer = self.dialer.clone();
        Box::pin(async move {
            let connect = async {
                let target = tokio::net::lookup_host(&addr)
                    .await?
                    .next()
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, format!("{addr} does not resolve"))
                    })?;
                let socket = if target.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                if let Some(ip) = bind_ip.filter(|ip| ip.is_ipv4() == target.is_ipv4()) {
                    socket.bind(std::net::SocketAddr::new(ip, 0))?;
                }
                let tcp = socket.connect(target).await?;
                dialer.wrap(&addr, tcp).await
            };
            tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {addr} timed out"),
                    )
                })?
        })
    }
}

/// Creates a [`Network`] per peer.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    me: u64,
    identity: Identity,
    store: Arc<Store>,
    connector: Arc<dyn Connector>,
    commit_hold: Duration,
    health: PeerHealth,
}

impl NetworkFactory {
    /// The network of node `me` of the group `identity` names, reading snapshot entries from `store` and
    /// holding commit-only AppendEntries up to `commit_hold` ([`crate::commit_hold`]).
    pub fn new(
        me: u64,
        identity: Identity,
        store: Arc<Store>,
        connector: Arc<dyn Connector>,
        commit_hold: Duration,
    ) -> Self {
        Self {
            me,
            identity,
            store,
            connector,
            commit_hold,
            health: PeerHealth::default(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: u64, node: &RaftNode) -> Network {
        Network {
            me: self.me,
            target,
            addr: node.raft_addr.clone(),
            identity: self.identity.clone(),
            store: self.store.clone(),
            connector: self.connector.clone(),
            commit_hold: self.commit_hold,
            client: None,
            last_answer: Instant::now(),
            health: self.health.clone(),
        }
    }
}

/// The connection to one peer. Connects on first use and after every failure.
#[derive(Debug)]
pub struct Network {
    me: u64,
    target: u64,
    addr: String,
    identity: Identity,
    store: Arc<Store>,
    connector: Arc<dyn Connector>,
    /// See [`crate::commit_hold`].
    commit_hold: Duration,
    client: Option<Live<RaftServiceClient>>,
    /// When the current connection was opened or last answered.
    last_answer: Instant,
    /// Logs the peer going away and coming back, once each.
    health: PeerHealth,
}

fn encode<T: Serialize>(v: &T) -> Result<Bytes, RPCError<TypeConfig>> {
    bincode::serialize(v).map(Bytes::from).map_err(|e| {
        RPCError::Network(NetworkError::from_string(format!(
            "encoding a Raft RPC: {e}"
        )))
    })
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, RPCError<TypeConfig>> {
    bincode::deserialize(b).map_err(|e| {
        RPCError::Network(NetworkError::from_string(format!(
            "decoding a Raft RPC reply: {e}"
        )))
    })
}

/// About the bytes `req`'s entries take on the wire and on disk.
pub(crate) fn approx_bytes(req: &AppendEntriesRequest<TypeConfig>) -> usize {
    req.entries
        .iter()
        .map(|e| match &e.payload {
            openraft::EntryPayload::Normal(d) => d.0.len() + 64,
            _ => 256,
        })
        .sum()
}

impl Network {
    async fn client(&mut self) -> Result<RaftServiceClient, Unreachable<TypeConfig>> {
        // A connection the peer closed (its idle limit, a restart) is re-dialled before
        // the call, not failed by it: a vote after a quiet spell must not be lost.
        if let Some(c) = self.client.as_ref().filter(|c| c.is_open()) {
            return Ok(c.client().clone());
        }
        let stream = match self.connector.connect(&self.addr).await {
            Ok(s) => s,
            Err(e) => {
                self.health
                    .log(self.me, self.target, &self.addr, Err(&e.to_string()));
                return Err(Unreachable::from_string(format!(
                    "node {} at {}: {e}",
                    self.target, self.addr
                )));
            }
        };
        let transport = raftmq_proto::transport::framed(stream);
        let live = Live::spawn(RaftServiceClient::new(
            tarpc::client::Config::default(),
            transport,
        ));
        let client = live.client().clone();
        self.client = Some(live);
        self.last_answer = Instant::now();
        Ok(client)
    }

    /// One RPC with a deadline. A transport failure, or a timeout on a connection that
    /// has answered nothing for [`STALE_CONNECTION`], drops the connection so the next
    /// call re-dials (a connection that lived through a partition can stall for minutes
    /// in TCP's retransmission backoff).
    async fn call<F, Fut>(
        &mut self,
        action: RPCTypes,
        timeout: Duration,
        f: F,
    ) -> Result<Bytes, RPCError<TypeConfig>>
    where
        F: FnOnce(RaftServiceClient, tarpc::context::Context, RaftCaller) -> Fut,
        Fut: Future<Output = Result<Result<Bytes, WireError>, tarpc::client::RpcError>>,
    {
        let client = self.client().await?;
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + timeout;
        let res = tokio::time::timeout(
            timeout + Duration::from_millis(100),
            f(client, ctx, self.identity.caller()),
        )
        .await;
        if let Ok(Ok(_)) = &res {
            self.last_answer = Instant::now();
            self.health.log(self.me, self.target, &self.addr, Ok(()));
        } else {
            let why = match &res {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {} ms", timeout.as_millis()),
            };
            self.health.log(self.me, self.target, &self.addr, Err(&why));
        }
        match res {
            Ok(Ok(Ok(bytes))) => Ok(bytes),
            // A follower without room on its disk: back off at once, as from an
            // unreachable node, instead of resending the same entries in a tight loop.
            Ok(Ok(Err(remote @ WireError::Busy(_)))) => Err(RPCError::Unreachable(
                Unreachable::from_string(format!("node {} refused the RPC: {remote}", self.target)),
            )),
            Ok(Ok(Err(remote))) => Err(RPCError::Network(NetworkError::from_string(format!(
                "node {} refused the RPC: {remote}",
                self.target
            )))),
            Ok(Err(tarpc::client::RpcError::DeadlineExceeded)) | Err(_) => {
                if self.last_answer.elapsed() >= STALE_CONNECTION {
                    self.client = None;
                }
                Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.me,
                    target: self.target,
                    timeout,
                }))
            }
            Ok(Err(e)) => {
                self.client = None;
                Err(RPCError::Unreachable(Unreachable::from_string(format!(
                    "node {} at {}: {e}",
                    self.target, self.addr
                ))))
            }
        }
    }

    /// An RPC with a typed request and reply (bincode inside the opaque payload).
    async fn typed<Req, Resp, F, Fut>(
        &mut self,
        action: RPCTypes,
        timeout: Duration,
        req: &Req,
        f: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftServiceClient, tarpc::context::Context, RaftCaller, Bytes) -> Fut,
        Fut: Future<Output = Result<Result<Bytes, WireError>, tarpc::client::RpcError>>,
    {
        let body = encode(req)?;
        let reply = self
            .call(action, timeout, |c, ctx, g| f(c, ctx, g, body))
            .await?;
        decode(&reply)
    }

    async fn append_once(
        &mut self,
        req: &AppendEntriesRequest<TypeConfig>,
        option: &RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = if req.entries.is_empty() {
            option.soft_ttl()
        } else {
            // A generous floor plus time to move the bytes at a pessimistic 32 MB/s.
            APPEND_TIMEOUT_FLOOR.max(option.hard_ttl())
                + Duration::from_millis((approx_bytes(req) / 32_000) as u64)
        };
        let body = encode(req)?;
        let reply = self
            .call(RPCTypes::AppendEntries, timeout, |c, ctx, g| async move {
                c.append_entries(ctx, g, body).await
            })
            .await?;
        decode(&reply)
    }

    async fn snapshot_step(
        &mut self,
        step: &SnapshotStep,
    ) -> Result<SnapshotReply, StreamingError<TypeConfig>> {
        let body = encode(step)?;
        let reply = self
            .call(
                RPCTypes::InstallSnapshot,
                SNAPSHOT_STEP_TIMEOUT,
                |c, ctx, g| async move { c.snapshot(ctx, g, body).await },
            )
            .await?;
        Ok(decode(&reply)?)
    }

    /// Streams the log entries the receiver lacks, then the state image.
    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: RaftSnapshot,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let meta = snapshot.meta.clone();
        if let Some(last) = meta.last_log_id {
            let reply = self
                .snapshot_step(&SnapshotStep::Offer {
                    vote,
                    last_log_id: last,
                })
                .await?;
            let SnapshotReply::Offer {
                last: have,
                term_at_last,
            } = reply
            else {
                return Err(StreamingError::Network(NetworkError::from_string(
                    "unexpected reply to a snapshot offer",
                )));
            };
            // Raft's log matching: equal terms at an index mean equal logs up to it.
            let plan = if term_at_last == Some(last.leader_id.term) {
                None
            } else {
                let matched = match have {
                    Some((t, i)) if i < last.index => {
                        let store = self.store.clone();
                        let mine = tokio::task::spawn_blocking(move || store.log().read(i))
                            .await
                            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?
                            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
                        mine.is_some_and(|r| r.term == t).then_some(i)
                    }
                    _ => None,
                };
                Some(match matched {
                    Some(i) => (i + 1, i + 1),
                    None => (self.store.log().first_index().unwrap_or(last.index), 0),
                })
            };
            if let Some((mut next, truncate)) = plan {
                tracing::info!(
                    target_node = self.target,
                    from_index = next,
                    to_index = last.index,
                    "sending log entries with a snapshot"
                );
                let mut first_chunk = true;
                while next <= last.index {
                    let store = self.store.clone();
                    let start = next;
                    let records = tokio::task::spawn_blocking(move || {
                        store
                            .log()
                            .read_range(start, last.index + 1, SNAPSHOT_CHUNK_BYTES)
                    })
                    .await
                    .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?
                    .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
                    if records.is_empty() {
                        return Err(StreamingError::Network(NetworkError::from_string(format!(
                            "the leader's log lacks entry {next} that the snapshot needs"
                        ))));
                    }
                    next = records.last().map_or(next, |r| r.index + 1);
                    let step = SnapshotStep::Records {
                        vote,
                        truncate_from: first_chunk.then_some(truncate),
                        records: records
                            .into_iter()
                            .map(|r| (r.term, r.index, r.payload))
                            .collect(),
                    };
                    first_chunk = false;
                    self.snapshot_step(&step).await?;
                }
            }
        }
        match self
            .snapshot_step(&SnapshotStep::Install {
                vote,
                meta,
                image: snapshot.snapshot.0,
            })
            .await?
        {
            SnapshotReply::Installed(r) => Ok(r),
            _ => Err(StreamingError::Network(NetworkError::from_string(
                "unexpected reply to a snapshot install",
            ))),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Network {
    type SnapshotData = SnapshotImage;

    /// One request at a time, as openraft's default does, but a request that only
    /// carries a new commit index may give way to the next append
    /// ([`crate::commit_hold`]).
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        let input = hold_commit_only(input, self.commit_hold);
        stream_append_sequential(self, input, option)
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        if approx_bytes(&rpc) <= MAX_RPC_PAYLOAD_BYTES || rpc.entries.len() <= 1 {
            return self.append_once(&rpc, &option).await;
        }
        // Split below the frame limit; each part continues where the previous ended.
        let AppendEntriesRequest {
            vote,
            prev_log_id,
            entries,
            leader_commit,
        } = rpc;
        let mut prev = prev_log_id;
        let mut part = Vec::new();
        let mut bytes = 0;
        let mut parts = Vec::new();
        for e in entries {
            let n = match &e.payload {
                openraft::EntryPayload::Normal(d) => d.0.len() + 64,
                _ => 256,
            };
            if !part.is_empty() && bytes + n > MAX_RPC_PAYLOAD_BYTES {
                parts.push(std::mem::take(&mut part));
                bytes = 0;
            }
            bytes += n;
            part.push(e);
        }
        parts.push(part);
        for (i, entries) in parts.into_iter().enumerate() {
            let last = entries.last().map(|e| e.log_id);
            let req = AppendEntriesRequest {
                vote,
                prev_log_id: prev,
                entries,
                leader_commit,
            };
            match self.append_once(&req, &option).await {
                Ok(AppendEntriesResponse::Success) => prev = last,
                Ok(other) if i == 0 => return Ok(other),
                Ok(AppendEntriesResponse::HigherVote(v)) => {
                    return Ok(AppendEntriesResponse::HigherVote(v))
                }
                Ok(_) | Err(_) if i > 0 => return Ok(AppendEntriesResponse::PartialSuccess(prev)),
                other => return other,
            }
        }
        Ok(AppendEntriesResponse::Success)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.typed(
            RPCTypes::Vote,
            option.soft_ttl(),
            &rpc,
            |c, ctx, g, b| async move { c.vote(ctx, g, b).await },
        )
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.typed(
            RPCTypes::Vote,
            option.soft_ttl(),
            &rpc,
            |c, ctx, g, b| async move { c.pre_vote(ctx, g, b).await },
        )
        .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.typed(
            RPCTypes::TransferLeader,
            option.soft_ttl(),
            &req,
            |c, ctx, g, b| async move { c.transfer_leader(ctx, g, b).await },
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: RaftSnapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = self.send_snapshot(vote, snapshot) => r,
        }
    }
}
