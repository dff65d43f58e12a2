//! Serving the NameServer.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftmq_proto::namesrv::{ClusterRoute, RegisterBrokerRequest, TopicRoute};
use raftmq_proto::{names, NamesrvService, NodeId, TopicName, WireError};
use tarpc::context::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::routes::RouteTable;

/// NameServer settings.
#[derive(Debug, Clone)]
pub struct NamesrvConfig {
    /// Drop a broker node silent this long. Default: 120 s.
    pub expiry: Duration,
    /// How often expired nodes are swept. Default: 5 s.
    pub scan_every: Duration,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        Self {
            expiry: Duration::from_secs(120),
            scan_every: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone)]
struct Server {
    table: Arc<Mutex<RouteTable>>,
}

impl Server {
    fn with<T>(&self, f: impl FnOnce(&mut RouteTable) -> T) -> T {
        let mut t = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut t)
    }
}

impl NamesrvService for Server {
    async fn register_broker(
        self,
        _: Context,
        req: RegisterBrokerRequest,
    ) -> Result<(), WireError> {
        names::validate_group(&req.group).map_err(WireError::Invalid)?;
        if req.client_addr.is_empty() {
            return Err(WireError::Invalid(
                "registration without a client address".into(),
            ));
        }
        self.with(|t| t.register(req, Instant::now()));
        Ok(())
    }

    async fn unregister_broker(
        self,
        _: Context,
        cluster: String,
        group: String,
        node_id: NodeId,
    ) -> Result<(), WireError> {
        self.with(|t| t.unregister(&cluster, &group, node_id));
        Ok(())
    }

    async fn get_route(self, _: Context, topic: TopicName) -> Result<TopicRoute, WireError> {
        self.with(|t| t.route(&topic))
            .ok_or_else(|| WireError::TopicNotFound(topic.to_string()))
    }

    async fn get_cluster(self, _: Context) -> Result<ClusterRoute, WireError> {
        Ok(self.with(|t| t.cluster()))
    }

    async fn get_topics(self, _: Context) -> Result<Vec<TopicName>, WireError> {
        Ok(self.with(|t| t.topics()))
    }
}

/// Serves a NameServer on `listener` until `shutdown` resolves.
pub async fn run(config: NamesrvConfig, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let server = Server {
        table: Arc::new(Mutex::new(RouteTable::new(config.expiry))),
    };
    let stop = CancellationToken::new();
    if let Ok(a) = listener.local_addr() {
        tracing::info!(addr = %a, expiry_s = config.expiry.as_secs(), "NameServer listening");
    }
    let sweeper = {
        let server = server.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(config.scan_every) => {}
                }
                server.with(|t| t.expire(Instant::now()));
            }
        })
    };
    let serving = tokio::spawn(raftmq_proto::serve_tarpc!(
        listener,
        server.serve(),
        stop.clone()
    ));
    shutdown.await;
    stop.cancel();
    let _ = serving.await;
    let _ = sweeper.await;
    tracing::info!("NameServer stopped");
}
