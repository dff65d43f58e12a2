//! Registration with every NameServer: every `register_interval_ms`, at once on a Raft role
//! or leader change and when topics change, and a goodbye on shutdown.

use std::collections::HashMap;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use raftmq_proto::live::Live;
use raftmq_proto::namesrv::{RegisterBrokerRequest, UnregisterBrokerRequest};
use raftmq_proto::stream::Dialer;
use raftmq_proto::{BrokerGroup, NamesrvServiceClient, NodeId, Perm, TopicConfig};
use tokio_util::sync::CancellationToken;

use crate::core::send::AUTO_CREATE_TOPIC;
use crate::core::Shared;

/// Deadline of one registration call.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Keeps one connection per NameServer, re-dialed after any failure.
#[derive(Debug, Default)]
struct Clients {
    by_addr: HashMap<String, Live<NamesrvServiceClient>>,
}

impl Clients {
    async fn get(&mut self, dialer: &Dialer, addr: &str) -> std::io::Result<NamesrvServiceClient> {
        if let Some(c) = self.by_addr.get(addr).filter(|c| c.is_open()) {
            return Ok(c.client().clone());
        }
        let t = raftmq_proto::transport::connect(dialer, addr, CALL_TIMEOUT).await?;
        let live = Live::spawn(NamesrvServiceClient::new(
            tarpc::client::Config::default(),
            t,
        ));
        let c = live.client().clone();
        self.by_addr.insert(addr.to_owned(), live);
        Ok(c)
    }
}

fn ctx() -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = std::time::Instant::now() + CALL_TIMEOUT;
    c
}

fn request(shared: &Shared) -> RegisterBrokerRequest {
    let (role, term) = shared.replica.role();
    RegisterBrokerRequest {
        cluster: shared.replica.cluster().to_owned(),
        broker_group: BrokerGroup::from(shared.replica.group()),
        node_id: NodeId(shared.replica.node_id()),
        group_id: shared.replica.group_id(),
        client_addr: shared.config.advertise_addr().to_owned(),
        role,
        term,
        leader: shared.replica.leader().map(|(id, _)| NodeId(id)),
        topics: published_topics(shared),
    }
}

/// The group's topics, plus, when it auto-creates topics, RocketMQ's template topic
/// `TBW102` (perm 7: inherit, read, write): RocketMQ clients ask for its route when a topic
/// does not exist yet, then send to a queue of it and the broker creates the topic.
fn published_topics(shared: &Shared) -> Vec<TopicConfig> {
    let mut topics = shared.store.topics();
    if shared.config.auto_create_topics {
        let mut template = TopicConfig::new(AUTO_CREATE_TOPIC, shared.config.default_queues);
        template.perm = Perm(Perm::READ | Perm::WRITE | 1);
        topics.push(template);
    }
    topics
}

/// The last refusal logged per NameServer: a refusal is logged when it first happens or
/// changes, not at every registration.
type Refusals = HashMap<String, String>;

async fn register_all(shared: &Shared, clients: &mut Clients, refusals: &mut Refusals) {
    let req = request(shared);
    for addr in &shared.config.namesrv {
        let res = match clients.get(&shared.tls.dialer, addr).await {
            Ok(c) => c
                .register_broker(ctx(), req.clone())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match res {
            Ok(Ok(())) => {
                if refusals.remove(addr).is_some() {
                    tracing::info!(namesrv = %addr, "NameServer accepts the registration again");
                }
                tracing::debug!(namesrv = %addr, role = %req.role, term = req.term, "registered")
            }
            Ok(Err(e)) => {
                let e = e.to_string();
                if refusals.get(addr) != Some(&e) {
                    tracing::warn!(namesrv = %addr, error = %e, "NameServer refused the registration (logged once; retried every interval)");
                    refusals.insert(addr.clone(), e);
                }
            }
            Err(e) => {
                clients.by_addr.remove(addr);
                tracing::debug!(namesrv = %addr, error = %e, "NameServer unreachable; will retry");
            }
        }
    }
}

/// Registers until `stop` fires, then unregisters.
pub async fn run(shared: std::sync::Arc<Shared>, stop: CancellationToken) {
    let mut clients = Clients::default();
    let mut refusals = Refusals::new();
    let mut metrics = shared.replica.raft().server_metrics();
    let interval = Duration::from_millis(shared.config.register_interval_ms);
    let mut last_role = None;
    loop {
        register_all(&shared, &mut clients, &mut refusals).await;
        // Retry sooner while any NameServer is unreachable.
        let wait = if clients.by_addr.len() < shared.config.namesrv.len() {
            interval.min(Duration::from_secs(2))
        } else {
            interval
        };
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    let bye = UnregisterBrokerRequest {
                        cluster: shared.replica.cluster().to_owned(),
                        broker_group: BrokerGroup::from(shared.replica.group()),
                        node_id: NodeId(shared.replica.node_id()),
                        group_id: shared.replica.group_id(),
                        client_addr: shared.config.advertise_addr().to_owned(),
                    };
                    for addr in &shared.config.namesrv {
                        if let Ok(c) = clients.get(&shared.tls.dialer, addr).await {
                            let _ = c.unregister_broker(ctx(), bye.clone()).await;
                        }
                    }
                    return;
                }
                _ = &mut sleep => break,
                _ = shared.topics_changed.notified() => break,
                r = metrics.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let m = metrics.borrow_watched().clone();
                    let now = (m.state, m.current_leader);
                    if last_role != Some(now) {
                        last_role = Some(now);
                        break;
                    }
                }
            }
        }
    }
}
