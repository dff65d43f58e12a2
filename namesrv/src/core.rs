//! [`Namesrv`]: the NameServer's operations, independent of the protocol that asks for
//! them (raftmq's native tarpc protocol or RocketMQ remoting).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftmq_proto::namesrv::{
    ClusterRoute, RegisterBrokerRequest, TopicRoute, UnregisterBrokerRequest,
};
use raftmq_proto::{names, TopicName};

use crate::routes::RouteTable;

/// Why a NameServer operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamesrvError {
    /// The request is malformed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No live broker group serves the topic.
    #[error("no live broker group serves topic {0}")]
    TopicNotFound(TopicName),
    /// The registration conflicts with a live one (another process or another group of
    /// the same name).
    #[error("registration refused: {0}")]
    Conflict(String),
}

/// The NameServer's state and operations. Cheap to clone: every front end holds one.
#[derive(Debug, Clone)]
pub struct Namesrv {
    table: Arc<Mutex<RouteTable>>,
    /// Route queries answered or refused, for `raftmq_namesrv_route_queries_total`.
    route_queries: Arc<AtomicU64>,
}

impl Namesrv {
    /// A NameServer that forgets broker nodes silent for `expiry`.
    pub fn new(expiry: Duration) -> Self {
        Self {
            table: Arc::new(Mutex::new(RouteTable::new(expiry))),
            route_queries: Arc::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut RouteTable) -> T) -> T {
        // Soft state, rebuilt by registrations: a panic elsewhere cannot corrupt it.
        let mut t = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut t)
    }

    /// Registers (or refreshes) a broker node.
    ///
    /// # Errors
    /// A bad group name, no client address, or a conflict with a live registration.
    pub fn register(&self, req: RegisterBrokerRequest) -> Result<(), NamesrvError> {
        names::validate_group(req.broker_group.as_str()).map_err(NamesrvError::Invalid)?;
        if req.client_addr.is_empty() {
            return Err(NamesrvError::Invalid(
                "registration without a client address".into(),
            ));
        }
        self.with(|t| t.register(req, Instant::now()))
            .map_err(NamesrvError::Conflict)
    }

    /// Forgets a broker node (on its clean shutdown), if the goodbye comes from the
    /// registered process.
    pub fn unregister(&self, req: &UnregisterBrokerRequest) {
        self.with(|t| t.unregister(req));
    }

    /// The route of a topic.
    ///
    /// # Errors
    /// No live group serves it.
    pub fn route(&self, topic: &TopicName) -> Result<TopicRoute, NamesrvError> {
        self.route_queries.fetch_add(1, Ordering::Relaxed);
        self.with(|t| t.route(topic))
            .ok_or_else(|| NamesrvError::TopicNotFound(topic.clone()))
    }

    /// Every live broker group and node.
    pub fn cluster(&self) -> ClusterRoute {
        self.with(|t| t.cluster())
    }

    /// Every topic a live group serves, sorted.
    pub fn topics(&self) -> Vec<TopicName> {
        self.with(|t| t.topics())
    }

    /// Every topic a live group of `cluster` serves, sorted.
    pub fn topics_of_cluster(&self, cluster: &str) -> Vec<TopicName> {
        self.with(|t| t.topics_of_cluster(cluster))
    }

    /// Route queries asked of this NameServer since it started.
    pub fn route_queries(&self) -> u64 {
        self.route_queries.load(Ordering::Relaxed)
    }

    /// Drops nodes silent for the expiry.
    pub fn expire(&self) {
        self.with(|t| t.expire(Instant::now()));
    }
}
