//! Leader-only work asked of a follower, done on the leader: the follower calls the
//! leader's client port (raftmq's native protocol) and answers its own client itself.
//!
//! RocketMQ clients learn of a new master only on their 30 s route poll, and the C++ client
//! sends retries to the node that served the message: a follower that forwarded nothing
//! would fail their writes for up to 30 s after every leader change.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raftmq_proto::live::Live;
use raftmq_proto::stream::Dialer;
use raftmq_proto::{BrokerServiceClient, WireError};
use tarpc::client::RpcError;

use super::{Broker, BrokerError};

/// Deadline of one forwarded call: below the clients' 3 s send timeout.
const FORWARD_TIMEOUT: Duration = Duration::from_millis(2500);
/// How long dialing the leader may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Leader hints followed in a row before pausing for an election to settle.
const MAX_HOPS: usize = 2;
/// How long leader-only work waits for an election under way before it is answered with
/// "no leader": an election (a leadership transfer, a failover) takes well under a second,
/// and RocketMQ clients retry "service not available" at once without a pause (the C++
/// client's three tries fit in the ~10 ms of a transfer's election).
const ELECTION_WAIT: Duration = Duration::from_millis(1500);

/// Connections to leaders, one per address, re-dialed after a transport failure.
#[derive(Debug)]
pub struct Forwarder {
    clients: Mutex<HashMap<String, Live<BrokerServiceClient>>>,
    dialer: Dialer,
}

impl Forwarder {
    /// Dials leaders with `dialer` (TLS when the node has `[tls]`).
    pub fn new(dialer: Dialer) -> Self {
        Self {
            clients: Mutex::default(),
            dialer,
        }
    }

    fn cached(&self, addr: &str) -> Option<BrokerServiceClient> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(addr)
            .filter(|c| c.is_open())
            .map(|c| c.client().clone())
    }

    fn forget(&self, addr: &str) {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(addr);
    }

    /// The connection to `addr`, authenticated as `admin` when authentication is on.
    async fn client(
        &self,
        addr: &str,
        admin: Option<&(String, String)>,
    ) -> Result<BrokerServiceClient, BrokerError> {
        if let Some(c) = self.cached(addr) {
            return Ok(c);
        }
        let t = raftmq_proto::transport::connect(&self.dialer, addr, CONNECT_TIMEOUT)
            .await
            .map_err(|e| {
                tracing::debug!(leader = %addr, error = %e, "cannot reach the leader to forward to");
                BrokerError::NotLeader {
                    leader: None,
                    leader_addr: None,
                }
            })?;
        let live = Live::spawn(BrokerServiceClient::new(
            tarpc::client::Config::default(),
            t,
        ));
        let c = live.client().clone();
        if let Some((key, secret)) = admin {
            match raftmq_proto::auth::authenticate(&c, key, secret, FORWARD_TIMEOUT).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(leader = %addr, error = %e, "the leader refused this node's admin credential; is [auth] the same on every node?");
                    return Err(from_wire(e));
                }
                Err(e) => {
                    tracing::debug!(leader = %addr, error = %e, "cannot authenticate to the leader");
                    return Err(BrokerError::NotLeader {
                        leader: None,
                        leader_addr: None,
                    });
                }
            }
        }
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(addr.to_owned(), live);
        Ok(c)
    }
}

fn from_wire(e: WireError) -> BrokerError {
    match e {
        WireError::NotLeader {
            leader,
            leader_addr,
        } => BrokerError::NotLeader {
            leader,
            leader_addr,
        },
        WireError::Busy(m) => BrokerError::Busy(m),
        WireError::Timeout(m) => BrokerError::Indeterminate(m),
        WireError::TopicNotFound(t) => BrokerError::TopicNotFound(t.into()),
        WireError::GroupNotFound(g) => BrokerError::GroupNotFound(g.into()),
        WireError::MessageNotFound(m) => BrokerError::MessageNotFound(m),
        WireError::OffsetTooSmall { offset, min } => BrokerError::OffsetTooSmall { offset, min },
        WireError::OffsetTooLarge { offset, max } => BrokerError::OffsetTooLarge { offset, max },
        WireError::Invalid(m) => BrokerError::Invalid(m),
        WireError::Unauthorized(m) => BrokerError::PermissionDenied(m),
        WireError::Internal(m) => BrokerError::Internal(m),
        WireError::NotAuthorized(m) => BrokerError::NotAuthorized(m),
    }
}

impl Broker {
    /// Runs `local` here when this node leads; otherwise sends `remote` to the leader
    /// (following up to [`MAX_HOPS`] hints in a row), and while an election leaves no
    /// leader, waits for one for up to [`ELECTION_WAIT`], so the caller's client sees no
    /// `NotLeader`.
    ///
    /// # Errors
    /// `NotLeader` when no leader is known or it cannot be reached (the caller answers
    /// "service not available", which every RocketMQ client retries); the operation's own
    /// errors otherwise. A forwarded call that timed out is `Indeterminate`.
    pub async fn on_leader<T, L, LF, R, RF>(&self, local: L, remote: R) -> Result<T, BrokerError>
    where
        L: FnOnce() -> LF,
        LF: Future<Output = Result<T, BrokerError>>,
        R: Fn(BrokerServiceClient, tarpc::context::Context) -> RF,
        RF: Future<Output = Result<Result<T, WireError>, RpcError>>,
    {
        let mut local = Some(local);
        let mut err = match local.take_if(|_| self.is_leader()) {
            Some(l) => match l().await {
                Err(e @ BrokerError::NotLeader { .. }) => e,
                other => return other,
            },
            None => self.shared.replica.not_leader().into(),
        };
        let deadline = Instant::now() + ELECTION_WAIT;
        let mut pause = Duration::from_millis(5);
        let mut hops = 0;
        loop {
            let hint = match &err {
                BrokerError::NotLeader { leader_addr, .. } => leader_addr
                    .as_deref()
                    .filter(|a| *a != self.advertise_addr())
                    .map(str::to_owned),
                _ => return Err(err),
            };
            match hint {
                Some(addr) if hops < MAX_HOPS => {
                    hops += 1;
                    err = match self.forward_once(&addr, &remote).await {
                        Ok(v) => return Ok(v),
                        Err(e) => e,
                    };
                }
                _ => {
                    // An election under way, or hints that lead nowhere yet: look again
                    // after a short pause, until the election wait is over.
                    if Instant::now() + pause > deadline {
                        return Err(err);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                    hops = 0;
                    if let Some(l) = local.take_if(|_| self.is_leader()) {
                        return l().await;
                    }
                    err = self.shared.replica.not_leader().into();
                }
            }
        }
    }

    /// One forwarded call to the leader at `addr`. A connection that broke before the
    /// request left is forgotten and reported as `NotLeader` naming `addr` again (dial
    /// again); one that broke after is `Indeterminate`.
    async fn forward_once<T, R, RF>(&self, addr: &str, remote: &R) -> Result<T, BrokerError>
    where
        R: Fn(BrokerServiceClient, tarpc::context::Context) -> RF,
        RF: Future<Output = Result<Result<T, WireError>, RpcError>>,
    {
        let client = self.client_for(addr).await?;
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + FORWARD_TIMEOUT;
        match remote(client, ctx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(from_wire(e)),
            Err(RpcError::DeadlineExceeded) => Err(BrokerError::Indeterminate(format!(
                "the leader at {addr} did not answer within {} ms",
                FORWARD_TIMEOUT.as_millis()
            ))),
            Err(e @ (RpcError::Shutdown | RpcError::Send(_))) => {
                self.shared.forwarder.forget(addr);
                tracing::debug!(leader = %addr, error = %e, "re-dialing the leader");
                Err(BrokerError::NotLeader {
                    leader: None,
                    leader_addr: Some(addr.to_owned()),
                })
            }
            Err(e) => {
                self.shared.forwarder.forget(addr);
                // The request may have reached the leader before the connection broke.
                Err(BrokerError::Indeterminate(format!(
                    "the connection to the leader at {addr} failed: {e}"
                )))
            }
        }
    }

    async fn client_for(&self, addr: &str) -> Result<BrokerServiceClient, BrokerError> {
        let auth = self.auth();
        let admin = auth.admin().filter(|_| auth.enabled());
        self.shared.forwarder.client(addr, admin).await
    }
}
