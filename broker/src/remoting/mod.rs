//! The RocketMQ remoting front end: existing Java, C++, Go, Python and Node clients talk to
//! the [`Broker`] core unchanged. It shares the client port with the native protocol
//! (told apart by the first bytes, [`raftmq_remoting::detect`]).
//!
//! Requests on one connection run concurrently ([`raftmq_remoting::connection`]): a held
//! pull blocks nothing else; NOTIFY_CONSUMER_IDS_CHANGED (40) is pushed on it.
//!
//! Every node serves every request: leader-only work (sends, offset commits, locks,
//! send-back) is forwarded to the leader by the core ([`Broker::on_leader`]), so a client
//! still talking to a demoted leader sees no error; with no leader the answer is
//! SERVICE_NOT_AVAILABLE (14), which every client retries.
//!
//! # Layout
//! - [`send`]: SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320).
//! - [`pull`]: PULL_MESSAGE (11) and the stored-record encoding.
//! - [`consumer`]: offsets (14, 15, 29-32), heartbeats (34, 35), consumer lists (38),
//!   send-back (36), locks (41, 42), CHECK_CLIENT_CONFIG (46).
//! - [`query`]: QUERY_MESSAGE (12), VIEW_MESSAGE_BY_ID (33).
//! - [`admin`]: the topic and group codes `mqadmin` uses.
//! - [`transaction`]: END_TRANSACTION (37), CHECK_TRANSACTION_STATE (39) pushes.

pub mod admin;
pub mod consumer;
pub mod pull;
pub mod query;
pub mod send;
pub mod transaction;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::sync::Arc;

use raftmq_remoting::codes::{request, response};
use raftmq_remoting::command::FLAG_ONEWAY;
use raftmq_remoting::{CodecError, RemotingCommand};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Access, Who};
use crate::clients::{Push, PushSender};
use crate::core::{Broker, BrokerError, ConnectionCtx, Protocol};

/// Requests one connection may have in flight (held pulls included) before new ones get
/// SYSTEM_BUSY.
const MAX_IN_FLIGHT: usize = 4096;
/// Pushes waiting for the writer; more are dropped (clients rebalance on a timer too).
const PUSH_QUEUE: usize = 16;

/// What every handler of one connection needs.
#[derive(Debug, Clone)]
pub struct Session {
    /// The core.
    pub broker: Broker,
    /// Who is asking.
    pub conn: Arc<ConnectionCtx>,
    /// This node's address as records carry it (STOREHOST, and offset message ids).
    pub store_host: SocketAddrV4,
    /// Where pushes to this connection go (heartbeats register it).
    pub push: PushSender,
    /// Cancelled on shutdown: held pulls answer at once.
    pub stop: CancellationToken,
    /// Who signed the request being handled ([`Who::Open`] with authentication off).
    pub who: Who,
}

/// The IPv4 address records name for a node advertised as `addr` (`host:port`): the
/// C++ client and ali-ons read only IPv4 store hosts. A name is resolved once; an
/// address that is not IPv4 gives `0.0.0.0` with the port.
pub fn store_host(addr: &str) -> SocketAddrV4 {
    let resolved = addr
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .find_map(|a| match a {
            SocketAddr::V4(v4) => Some(v4),
            SocketAddr::V6(v6) => v6
                .ip()
                .to_ipv4_mapped()
                .map(|ip| SocketAddrV4::new(ip, v6.port())),
        });
    resolved.unwrap_or_else(|| {
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)
    })
}

/// A response to `req` with `code` and a remark.
pub fn reply(req: &RemotingCommand, code: i32, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::response_to(req, code).with_remark(remark)
}

/// The response code RocketMQ clients act on for a core error: what they retry
/// (14, 1, 17, 16) and what they throw (2, 13).
pub fn error_code(e: &BrokerError) -> i32 {
    match e {
        BrokerError::NotLeader { .. } => response::SERVICE_NOT_AVAILABLE,
        BrokerError::Busy(_) => response::SYSTEM_BUSY,
        BrokerError::TopicNotFound(_) => response::TOPIC_NOT_EXIST,
        BrokerError::GroupNotFound(_) => response::SUBSCRIPTION_GROUP_NOT_EXIST,
        BrokerError::PermissionDenied(_) | BrokerError::NotAuthorized(_) => response::NO_PERMISSION,
        BrokerError::Invalid(_) => response::MESSAGE_ILLEGAL,
        BrokerError::Indeterminate(_)
        | BrokerError::Internal(_)
        | BrokerError::MessageNotFound(_)
        | BrokerError::OffsetTooSmall { .. }
        | BrokerError::OffsetTooLarge { .. } => response::SYSTEM_ERROR,
    }
}

/// The answer to a failed request.
pub fn error_reply(req: &RemotingCommand, e: &BrokerError) -> RemotingCommand {
    reply(req, error_code(e), e.to_string())
}

/// The answer to a request whose header does not decode.
pub fn bad_request(req: &RemotingCommand, e: &CodecError) -> RemotingCommand {
    reply(req, response::SYSTEM_ERROR, e.to_string())
}

impl Session {
    /// Whether the request's signer may do every one of `wants`; refusals are counted and
    /// logged.
    ///
    /// # Errors
    /// `NotAuthorized`.
    pub fn allow<'a>(
        &self,
        wants: impl IntoIterator<Item = Access<'a>>,
    ) -> Result<(), BrokerError> {
        for a in wants {
            self.who
                .check(a)
                .map_err(|e| self.broker.auth().refuse(&self.conn, e))?;
        }
        Ok(())
    }

    /// What a request needs that its header names (resources named only in the body are
    /// checked by their handlers: heartbeats, queue locks).
    fn header_wants(req: &RemotingCommand) -> Vec<Access<'_>> {
        use request as c;
        let ext = |k: &str| req.ext.get(k).map_or("", String::as_str);
        match req.code {
            c::SEND_MESSAGE => vec![Access::Pub(ext("topic"))],
            c::SEND_MESSAGE_V2 | c::SEND_BATCH_MESSAGE => vec![Access::Pub(ext("b"))],
            c::PULL_MESSAGE | c::QUERY_CONSUMER_OFFSET | c::UPDATE_CONSUMER_OFFSET => vec![
                Access::Sub(ext("topic")),
                Access::Group(ext("consumerGroup")),
            ],
            c::CONSUMER_SEND_MSG_BACK => vec![Access::Group(ext("group"))],
            c::QUERY_MESSAGE => vec![Access::Sub(ext("topic"))],
            _ => vec![Access::Any],
        }
    }

    /// Handles a request, timing it into the node's `raftmq_rpc_request_seconds`.
    async fn handle(self, req: RemotingCommand) -> RemotingCommand {
        let op = request::name(req.code).unwrap_or("OTHER");
        let latency = self.broker.shared.counters.remoting_requests.get(op);
        let started = std::time::Instant::now();
        let answer = self.authorized(req).await;
        latency.0.record(started.elapsed());
        if answer.code != response::SUCCESS {
            tracing::debug!(op, code = answer.code, remark = ?answer.remark, "remoting request answered with an error");
        }
        answer
    }

    /// Authenticates and authorizes a request, then handles it.
    async fn authorized(mut self, req: RemotingCommand) -> RemotingCommand {
        if self.broker.auth().enabled() {
            match self.broker.auth().remoting(&self.conn, &req.ext, &req.body) {
                Ok(who) => self.who = who,
                Err(e) => return error_reply(&req, &e),
            }
            if let Err(e) = self.allow(Self::header_wants(&req)) {
                return error_reply(&req, &e);
            }
        }
        self.dispatch(req).await
    }

    /// Handles one request (the answer is dropped for a oneway request).
    async fn dispatch(&self, req: RemotingCommand) -> RemotingCommand {
        use request as c;
        match req.code {
            c::SEND_MESSAGE | c::SEND_MESSAGE_V2 | c::SEND_BATCH_MESSAGE => {
                send::send(self, &req).await
            }
            c::PULL_MESSAGE => pull::pull(self, &req).await,
            c::QUERY_CONSUMER_OFFSET => consumer::query_offset(self, &req).await,
            c::UPDATE_CONSUMER_OFFSET => consumer::update_offset(self, &req).await,
            c::SEARCH_OFFSET_BY_TIMESTAMP
            | c::GET_MAX_OFFSET
            | c::GET_MIN_OFFSET
            | c::GET_EARLIEST_MSG_STORETIME => consumer::queue_offset(self, &req).await,
            c::HEART_BEAT => consumer::heartbeat(self, &req).await,
            c::UNREGISTER_CLIENT => consumer::unregister(self, &req),
            c::GET_CONSUMER_LIST_BY_GROUP => consumer::consumer_list(self, &req),
            c::CONSUMER_SEND_MSG_BACK => consumer::send_back(self, &req).await,
            c::LOCK_BATCH_MQ => consumer::lock(self, &req, true).await,
            c::UNLOCK_BATCH_MQ => consumer::lock(self, &req, false).await,
            c::CHECK_CLIENT_CONFIG => consumer::check_client_config(&req),
            c::QUERY_MESSAGE => query::query_message(self, &req).await,
            c::VIEW_MESSAGE_BY_ID => query::view_message(self, &req).await,
            c::END_TRANSACTION => transaction::end_transaction(self, &req).await,
            code => match admin::handle(self, &req).await {
                Some(r) => r,
                None => reply(
                    &req,
                    response::REQUEST_CODE_NOT_SUPPORTED,
                    format!(" request type {code} not supported"),
                ),
            },
        }
    }
}

/// A push as the broker request clients expect (the connection numbers it); `None` for a
/// message that does not fit a record (logged).
fn push_command(p: Push, store_host: SocketAddrV4) -> Option<RemotingCommand> {
    match p {
        Push::ConsumerIdsChanged(group) => {
            let mut cmd = RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED, 0)
                .with_ext("consumerGroup", group);
            cmd.flag = FLAG_ONEWAY;
            Some(cmd)
        }
        Push::CheckTransaction {
            producer_group,
            message,
        } => match transaction::check_command(&message, store_host) {
            Ok(cmd) => Some(cmd),
            Err(e) => {
                tracing::warn!(%producer_group, error = %e, "cannot encode a transaction check-back");
                None
            }
        },
    }
}

/// Serves one remoting connection until it closes; each request runs on `requests`. On
/// close, the client instance it carried leaves its consumer groups.
pub async fn serve_connection<Io>(
    io: Io,
    peer: SocketAddr,
    broker: Broker,
    stop: CancellationToken,
    requests: TaskTracker,
) where
    Io: AsyncRead + AsyncWrite + Send + 'static,
{
    let (push, mut pushes) = mpsc::channel::<Push>(PUSH_QUEUE);
    let host = store_host(broker.advertise_addr());
    let session = Session {
        store_host: host,
        conn: Arc::new(ConnectionCtx::new(Some(peer), Protocol::Remoting)),
        broker,
        push,
        stop,
        who: Who::Open,
    };
    let pushed = Box::pin(futures::stream::poll_fn(move |cx| loop {
        match pushes.poll_recv(cx) {
            std::task::Poll::Ready(Some(p)) => match push_command(p, host) {
                Some(cmd) => return std::task::Poll::Ready(Some(cmd)),
                None => continue,
            },
            other => return other.map(|_| None),
        }
    }));
    let handler = {
        let session = session.clone();
        move |req| {
            let session = session.clone();
            async move { session.handle(req).await }
        }
    };
    let codec = raftmq_remoting::FrameCodec::default()
        .with_unfinished(raftmq_proto::frames::UnfinishedFrame::process().tracker());
    raftmq_remoting::connection::serve(io, codec, peer, requests, MAX_IN_FLIGHT, pushed, handler)
        .await;
    if let Some(client) = session.conn.client_id.get() {
        session.broker.unregister_client(client, None);
    }
    tracing::trace!(%peer, "remoting connection closed");
}
