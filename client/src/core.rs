//! The connection layer shared by producers, consumers and the admin client: NameServer
//! queries with failover, a route cache refreshed every 30 s and at once on `NotLeader`,
//! one reusable connection per broker node, and a deadline on every call.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftmq_proto::broker::HelloRequest;
use raftmq_proto::live::Live;
use raftmq_proto::namesrv::{BrokerGroupRoute, ClusterRoute, TopicRoute};
use raftmq_proto::stream::Dialer;
use raftmq_proto::tls::{TlsClient, TlsTrust};
use raftmq_proto::{
    BrokerGroup, BrokerServiceClient, NamesrvServiceClient, TopicName, WireError, PROTOCOL_VERSION,
};
use tarpc::client::RpcError;
use tarpc::context::Context;

use crate::error::{Error, Result};

/// Settings every client shares.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// NameServer addresses; any one may answer.
    pub namesrv: Vec<String>,
    /// Deadline of an ordinary RPC. Default: 3 s.
    pub rpc_timeout: Duration,
    /// Routes older than this are fetched again. Default: 30 s.
    pub route_refresh: Duration,
    /// Time to open a connection. Default: 1 s.
    pub connect_timeout: Duration,
    /// The access key and secret every broker connection authenticates with, when the
    /// cluster has authentication on. Default: none (anonymous).
    pub credentials: Option<Credentials>,
    /// TLS to NameServers and brokers: the CA their certificates chain to (and a client
    /// certificate, for brokers with `require_client_cert`). Default: none (plaintext).
    pub tls: Option<TlsTrust>,
}

/// An access key and its secret.
#[derive(Clone)]
pub struct Credentials {
    /// The user's access key.
    pub access_key: String,
    /// The user's secret (never printed).
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<hidden>")
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            namesrv: vec!["127.0.0.1:9876".into()],
            rpc_timeout: Duration::from_secs(3),
            route_refresh: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            credentials: None,
            tls: None,
        }
    }
}

/// Adds the connection settings every client builder shares (its `client` field).
macro_rules! client_builder_methods {
    () => {
        /// NameServer addresses; any one may answer (default `127.0.0.1:9876`).
        pub fn namesrv<I, S>(mut self, addrs: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.client.namesrv = addrs.into_iter().map(Into::into).collect();
            self
        }

        /// Authenticates every broker connection as `access_key` (for clusters with
        /// `[auth] enabled = true`).
        pub fn credentials(
            mut self,
            access_key: impl Into<String>,
            secret_key: impl Into<String>,
        ) -> Self {
            self.client.credentials = Some($crate::core::Credentials {
                access_key: access_key.into(),
                secret_key: secret_key.into(),
            });
            self
        }

        /// Authenticates as `credentials` when `Some` (as [`Self::credentials`] does).
        pub fn with_credentials(mut self, credentials: Option<$crate::core::Credentials>) -> Self {
            self.client.credentials = credentials;
            self
        }

        /// Connects with TLS, trusting the CA in the PEM file `ca` (for clusters with
        /// `[tls]`).
        pub fn tls_ca(mut self, ca: impl Into<std::path::PathBuf>) -> Self {
            self.client.tls = Some($crate::TlsTrust {
                ca: ca.into(),
                identity: None,
            });
            self
        }

        /// Connects with TLS as `tls` says when `Some` (plaintext when `None`).
        pub fn with_tls(mut self, tls: Option<$crate::TlsTrust>) -> Self {
            self.client.tls = tls;
            self
        }

        /// Deadline of a single RPC (default 3 s).
        pub fn rpc_timeout(mut self, t: std::time::Duration) -> Self {
            self.client.rpc_timeout = t;
            self
        }

        /// Every connection setting at once (NameServers, credentials, TLS, RPC deadline).
        pub fn with_config(mut self, config: $crate::core::ClientConfig) -> Self {
            self.client = config;
            self
        }
    };
}
pub(crate) use client_builder_methods;

/// Connections, routes and leader hints.
#[derive(Debug)]
pub struct Core {
    pub(crate) config: ClientConfig,
    pub(crate) client_id: String,
    dialer: Dialer,
    brokers: Mutex<HashMap<String, Live<BrokerServiceClient>>>,
    namesrvs: Mutex<HashMap<String, Live<NamesrvServiceClient>>>,
    next_namesrv: AtomicUsize,
    routes: Mutex<HashMap<TopicName, (Arc<TopicRoute>, Instant)>>,
    /// group -> leader client address learned from `NotLeader` hints.
    leaders: Mutex<HashMap<BrokerGroup, String>>,
    /// Addresses that just failed, avoided until the instant given.
    suspects: Mutex<HashMap<String, Instant>>,
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A context whose deadline is `timeout` from now.
pub fn ctx(timeout: Duration) -> Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + timeout;
    c
}

impl Core {
    /// A core for `config`.
    ///
    /// # Errors
    /// No NameServer address, or the TLS files do not load.
    pub fn new(config: ClientConfig) -> Result<Self> {
        if config.namesrv.is_empty() || config.namesrv.iter().any(|a| a.trim().is_empty()) {
            return Err(Error::Invalid(
                "at least one NameServer address is needed".into(),
            ));
        }
        let client_id = format!(
            "{}@{}#{}",
            std::process::id(),
            hostname(),
            rand::random::<u32>()
        );
        let dialer = match &config.tls {
            None => Dialer::plain(),
            Some(t) => Dialer::tls(TlsClient::load(t).map_err(|e| Error::Invalid(e.to_string()))?),
        };
        Ok(Self {
            config,
            client_id,
            dialer,
            brokers: Mutex::default(),
            namesrvs: Mutex::default(),
            next_namesrv: AtomicUsize::new(0),
            routes: Mutex::default(),
            leaders: Mutex::default(),
            suspects: Mutex::default(),
            closed: AtomicBool::new(false),
        })
    }

    /// Marks the core closed: later calls fail with [`Error::Closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Whether [`Core::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    async fn broker_client(&self, addr: &str) -> Result<BrokerServiceClient> {
        if let Some(c) = lock(&self.brokers).get(addr).filter(|c| c.is_open()) {
            return Ok(c.client().clone());
        }
        let t = raftmq_proto::transport::connect(&self.dialer, addr, self.config.connect_timeout)
            .await
            .map_err(|e| Error::Connect {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?;
        let live = Live::spawn(BrokerServiceClient::new(
            tarpc::client::Config::default(),
            t,
        ));
        let c = live.client().clone();
        let hello = c
            .hello(
                ctx(self.config.connect_timeout),
                HelloRequest {
                    protocol_version: PROTOCOL_VERSION,
                    client_id: self.client_id.clone(),
                },
            )
            .await;
        let connect_err = |e: RpcError| Error::Connect {
            addr: addr.to_owned(),
            reason: format!("{e}{}", self.dialer.closed_hint()),
        };
        match hello {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Error::Wire(e)),
            Err(e) => return Err(connect_err(e)),
        }
        if let Some(cr) = &self.config.credentials {
            raftmq_proto::auth::authenticate(
                &c,
                &cr.access_key,
                &cr.secret_key,
                self.config.connect_timeout,
            )
            .await
            .map_err(connect_err)?
            .map_err(Error::Wire)?;
        }
        lock(&self.brokers).insert(addr.to_owned(), live);
        Ok(c)
    }

    /// Calls a broker with a deadline. A broken connection is dropped and re-dialed next
    /// time.
    ///
    /// # Errors
    /// Connection, transport, timeout or the broker's own error.
    pub async fn call<T, F, Fut>(&self, addr: &str, timeout: Duration, f: F) -> Result<T>
    where
        F: FnOnce(BrokerServiceClient, Context) -> Fut,
        Fut: Future<Output = std::result::Result<std::result::Result<T, WireError>, RpcError>>,
    {
        self.check_open()?;
        let client = match self.broker_client(addr).await {
            Ok(c) => c,
            Err(e) => {
                if matches!(e, Error::Connect { .. }) {
                    self.suspect(addr);
                }
                return Err(e);
            }
        };
        let res = tokio::time::timeout(
            timeout + Duration::from_millis(200),
            f(client, ctx(timeout)),
        )
        .await;
        match res {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(Error::Wire(e)),
            Ok(Err(RpcError::DeadlineExceeded)) | Err(_) => {
                lock(&self.brokers).remove(addr);
                self.suspect(addr);
                Err(Error::Timeout {
                    addr: addr.to_owned(),
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
            Ok(Err(e)) => {
                lock(&self.brokers).remove(addr);
                self.suspect(addr);
                Err(Error::Transport {
                    addr: addr.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Calls NameServers in turn until one answers (not counting a definite error).
    ///
    /// # Errors
    /// Every NameServer failed; the last error.
    pub async fn namesrv_call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(NamesrvServiceClient, Context) -> Fut,
        Fut: Future<Output = std::result::Result<std::result::Result<T, WireError>, RpcError>>,
    {
        self.check_open()?;
        let n = self.config.namesrv.len();
        let start = self.next_namesrv.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let addr = &self.config.namesrv[(start + i) % n];
            let client = match self.namesrv_client(addr).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match f(client, ctx(self.config.rpc_timeout)).await {
                Ok(Ok(v)) => {
                    self.next_namesrv.store((start + i) % n, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) => return Err(Error::Wire(e)),
                Err(e) => {
                    lock(&self.namesrvs).remove(addr);
                    last = Some(Error::Transport {
                        addr: addr.clone(),
                        reason: format!("{e}{}", self.dialer.closed_hint()),
                    });
                }
            }
        }
        Err(last.unwrap_or(Error::Invalid("no NameServer configured".into())))
    }

    async fn namesrv_client(&self, addr: &str) -> Result<NamesrvServiceClient> {
        if let Some(c) = lock(&self.namesrvs).get(addr).filter(|c| c.is_open()) {
            return Ok(c.client().clone());
        }
        let t = raftmq_proto::transport::connect(&self.dialer, addr, self.config.connect_timeout)
            .await
            .map_err(|e| Error::Connect {
                addr: addr.to_owned(),
                reason: format!("NameServer: {e}"),
            })?;
        let live = Live::spawn(NamesrvServiceClient::new(
            tarpc::client::Config::default(),
            t,
        ));
        let c = live.client().clone();
        lock(&self.namesrvs).insert(addr.to_owned(), live);
        Ok(c)
    }

    /// The route of a topic: cached, or fetched when missing, older than the refresh
    /// interval, or when `refresh` is set.
    ///
    /// # Errors
    /// [`Error::NoRoute`] when no NameServer knows the topic.
    pub async fn route(&self, topic: &TopicName, refresh: bool) -> Result<Arc<TopicRoute>> {
        if !refresh {
            if let Some((r, at)) = lock(&self.routes).get(topic) {
                if at.elapsed() < self.config.route_refresh {
                    return Ok(r.clone());
                }
            }
        }
        let t = topic.clone();
        let fetched = self
            .namesrv_call(move |c, cx| {
                let t = t.clone();
                async move { c.get_route(cx, t).await }
            })
            .await;
        match fetched {
            Ok(route) => {
                // Fresh routes replace stale leader hints.
                {
                    let mut leaders = lock(&self.leaders);
                    for g in &route.groups {
                        if let Some(a) = g.leader_addr() {
                            leaders.insert(g.broker_group.clone(), a.to_owned());
                        }
                    }
                }
                let route = Arc::new(route);
                lock(&self.routes).insert(topic.clone(), (route.clone(), Instant::now()));
                Ok(route)
            }
            Err(Error::Wire(WireError::TopicNotFound(_))) => Err(Error::NoRoute {
                topic: topic.to_string(),
                reason:
                    "no broker group serves it (create it, or enable auto-creation on the brokers)"
                        .into(),
            }),
            Err(e) => match lock(&self.routes).get(topic) {
                // NameServers unreachable: keep using what we know.
                Some((r, _)) => Ok(r.clone()),
                None => Err(e),
            },
        }
    }

    /// Every live group.
    ///
    /// # Errors
    /// No NameServer answered.
    pub async fn cluster(&self) -> Result<ClusterRoute> {
        self.namesrv_call(|c, cx| async move { c.get_cluster(cx).await })
            .await
    }

    /// Where to send writes for a group: the last leader hint, else the route's leader,
    /// else any node (it will answer with a hint).
    pub fn leader_addr(&self, group: &BrokerGroupRoute) -> Option<String> {
        let now = Instant::now();
        let suspect = |a: &str| lock(&self.suspects).get(a).is_some_and(|t| *t > now);
        if let Some(a) = lock(&self.leaders).get(&group.broker_group).cloned() {
            if !suspect(&a) {
                return Some(a);
            }
        }
        if let Some(a) = group.leader_addr().filter(|a| !suspect(a)) {
            return Some(a.to_owned());
        }
        // The known leader just failed: ask another node, which will name the new leader.
        group
            .nodes
            .iter()
            .map(|n| &n.addr)
            .find(|a| !suspect(a))
            .or_else(|| group.nodes.first().map(|n| &n.addr))
            .cloned()
    }

    /// Avoids `addr` for a moment (500 ms) after a connection failure or timeout there;
    /// hints naming it are ignored meanwhile (followers keep naming a dead leader until
    /// its lease runs out).
    pub fn suspect(&self, addr: &str) {
        lock(&self.suspects).insert(addr.to_owned(), Instant::now() + Duration::from_millis(500));
    }

    /// Records a `NotLeader` hint. Returns whether it named a new address.
    pub fn learn_leader(
        &self,
        group: &BrokerGroup,
        err: &Error,
        route: Option<&BrokerGroupRoute>,
    ) -> bool {
        let Error::Wire(WireError::NotLeader {
            leader,
            leader_addr,
        }) = err
        else {
            return false;
        };
        let addr = leader_addr.clone().or_else(|| {
            let id = (*leader)?;
            route?
                .nodes
                .iter()
                .find(|n| n.node_id == id)
                .map(|n| n.addr.clone())
        });
        let suspect = addr.as_ref().is_some_and(|a| {
            lock(&self.suspects)
                .get(a)
                .is_some_and(|t| *t > Instant::now())
        });
        if suspect {
            return false;
        }
        let mut leaders = lock(&self.leaders);
        match addr {
            Some(a) if leaders.get(group) != Some(&a) => {
                leaders.insert(group.clone(), a);
                true
            }
            Some(_) => false,
            None => {
                leaders.remove(group);
                false
            }
        }
    }

    /// Forgets the leader hint of a group (after a failure at it).
    pub fn forget_leader(&self, group: &BrokerGroup) {
        lock(&self.leaders).remove(group);
    }

    /// Calls the leader of `group`, following `NotLeader` hints and waiting out elections
    /// (refreshing the group's nodes from the NameServers) until `total` has passed.
    ///
    /// # Errors
    /// The last error once the time is up, or at once for non-retryable errors.
    pub async fn call_leader<T, F, Fut>(
        &self,
        group: &BrokerGroupRoute,
        total: Duration,
        f: F,
    ) -> Result<T>
    where
        F: Fn(BrokerServiceClient, Context) -> Fut,
        Fut: Future<Output = std::result::Result<std::result::Result<T, WireError>, RpcError>>,
    {
        let deadline = Instant::now() + total;
        let mut group = group.clone();
        let mut backoff = Duration::from_millis(50);
        let mut hops = 0;
        loop {
            let addr = self.leader_addr(&group).ok_or_else(|| Error::NoRoute {
                topic: String::new(),
                reason: format!("broker group {} has no live node", group.broker_group),
            })?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = remaining
                .min(self.config.rpc_timeout)
                .max(Duration::from_millis(50));
            let err = match self.call(&addr, timeout, &f).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !err.is_retryable()
                || matches!(err, Error::Wire(WireError::TopicNotFound(_)))
                || Instant::now() >= deadline
            {
                return Err(err);
            }
            if hops < 3 && self.learn_leader(&group.broker_group, &err, Some(&group)) {
                hops += 1;
                continue;
            }
            hops = 0;
            self.forget_leader(&group.broker_group);
            tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                .await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
            if let Ok(c) = self.cluster().await {
                if let Some(g) = c
                    .groups
                    .into_iter()
                    .find(|g| g.broker_group == group.broker_group)
                {
                    if let Some(a) = g.leader_addr() {
                        lock(&self.leaders).insert(g.broker_group.clone(), a.to_owned());
                    }
                    group.nodes = g.nodes;
                    group.leader = g.leader;
                }
            }
        }
    }

    /// The client id used in heartbeats.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
