//! The NameServer's Prometheus metrics: the broker nodes, groups and topics it routes, as
//! registrations tell it, and the route queries it answered.

use std::collections::BTreeMap;
use std::sync::Arc;

use raftmq_metrics::{BoxFuture, Exposition, Health, Labels, Registry, Source};
use raftmq_proto::transport::{FrontEnd, Serving};
use tokio_util::sync::CancellationToken;

use crate::core::Namesrv;

/// Puts the NameServer in an HTTP listener's registry while it runs.
#[derive(Debug)]
pub struct MetricsSlot {
    registry: Registry,
    name: String,
}

impl MetricsSlot {
    /// The NameServer will be served by `registry`'s listener, its series labelled
    /// `namesrv="<name>"` (its client address, say).
    pub fn new(registry: Registry, name: impl Into<String>) -> Self {
        Self {
            registry,
            name: name.into(),
        }
    }
}

impl FrontEnd<Namesrv> for MetricsSlot {
    fn describe(&self) -> String {
        "metrics (/metrics, /healthz)".to_owned()
    }

    fn serve(self: Box<Self>, core: Namesrv, stop: CancellationToken) -> Serving {
        Box::pin(async move {
            let source = NamesrvSource {
                core,
                name: self.name,
            };
            let _registration = self.registry.register(Arc::new(source));
            stop.cancelled().await;
        })
    }
}

struct NamesrvSource {
    core: Namesrv,
    name: String,
}

impl Source for NamesrvSource {
    fn collect(&self) -> BoxFuture<'_, Exposition> {
        Box::pin(async move {
            let mut e = Exposition::new();
            let base = Labels::new().with("namesrv", self.name.clone());
            let mut by_cluster: BTreeMap<String, (usize, usize)> = BTreeMap::new();
            for g in self.core.cluster().groups {
                let c = by_cluster.entry(g.cluster.clone()).or_default();
                c.0 += 1;
                c.1 += g.nodes.len();
            }
            for (cluster, (groups, nodes)) in by_cluster {
                let l = base.with("cluster", cluster);
                e.gauge(
                    "raftmq_namesrv_broker_groups",
                    "Broker groups with a live registration.",
                    &l,
                    groups as f64,
                );
                e.gauge(
                    "raftmq_namesrv_brokers",
                    "Broker nodes with a live registration.",
                    &l,
                    nodes as f64,
                );
            }
            e.gauge(
                "raftmq_namesrv_topics",
                "Topics some live broker group serves.",
                &base,
                self.core.topics().len() as f64,
            );
            e.counter(
                "raftmq_namesrv_route_queries_total",
                "Topic route queries asked of this NameServer.",
                &base,
                self.core.route_queries(),
            );
            e
        })
    }

    fn health(&self) -> Health {
        Health {
            ok: true,
            ready: true,
            line: format!(
                "NameServer {}: {} broker groups registered",
                self.name,
                self.core.cluster().groups.len()
            ),
        }
    }
}
