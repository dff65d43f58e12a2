//! A broker node's Prometheus metrics: Raft state, disk and fsync, messages stored and
//! delivered, and (on the leader) every queue's offsets and every consumer group's exact
//! lag. Gathered at scrape time from the node's own state, so no series can name a stale
//! leader: a node reports only what it knows itself.
//!
//! [`MetricsSlot`] is the front end that puts the node in an HTTP listener's
//! [`Registry`]; the listener itself is the binary's (`raftmq broker` with `http_listen`,
//! `raftmq dev`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use raftmq_metrics::{BoxFuture, Exposition, Health, Histogram, Labels, Registry, Source};
use raftmq_proto::transport::Serving;
use raftmq_proto::Role;
use tokio_util::sync::CancellationToken;

use crate::core::{blocking, Broker, BrokerError};

/// Values by name (a topic, an operation), made on first use and kept from the node's
/// start: a read lock to find one, the write lock only to add a name.
#[derive(Debug, Default)]
pub struct ByName<V> {
    map: RwLock<HashMap<String, Arc<V>>>,
}

impl<V: Default> ByName<V> {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Arc<V> {
        let known = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned();
        known.unwrap_or_else(|| {
            self.map
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(name.to_owned())
                .or_default()
                .clone()
        })
    }

    /// Every name with its value read by `read`, sorted by name.
    pub fn read<T>(&self, read: impl Fn(&V) -> T) -> BTreeMap<String, T> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, v)| (n.clone(), read(v)))
            .collect()
    }
}

/// Durations of the requests a node served, per operation.
#[derive(Debug)]
pub struct Latency(pub Histogram);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::latency())
    }
}

impl ByName<AtomicU64> {
    /// The sum over every name.
    pub fn total(&self) -> u64 {
        self.read(|n| n.load(Ordering::Relaxed)).values().sum()
    }
}

/// What a node counts as it happens (everything else is read at scrape time).
#[derive(Debug, Default)]
pub struct NodeCounters {
    /// Messages stored by sends this node led, by topic.
    pub produced: ByName<AtomicU64>,
    /// Messages this node returned to pulls, by topic.
    pub consumed: ByName<AtomicU64>,
    /// Times the leader this node knows of changed to another node.
    pub leader_changes: AtomicU64,
    /// Native requests served, by method.
    pub native_requests: ByName<Latency>,
    /// RocketMQ remoting requests served, by request code name.
    pub remoting_requests: ByName<Latency>,
}

/// Times every request of a tarpc service into [`NodeCounters::native_requests`] (the
/// operation named by the method).
#[derive(Debug, Clone)]
pub struct Timed<S> {
    inner: S,
    counters: Arc<NodeCounters>,
}

impl<S> Timed<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, counters: Arc<NodeCounters>) -> Self {
        Self { inner, counters }
    }
}

impl<S> tarpc::server::Serve for Timed<S>
where
    S: tarpc::server::Serve + Send,
    S::Req: Send,
{
    type Req = S::Req;
    type Resp = S::Resp;

    async fn serve(
        self,
        ctx: tarpc::context::Context,
        req: S::Req,
    ) -> Result<S::Resp, tarpc::ServerError> {
        use tarpc::RequestName as _;
        let name = req.name();
        let op = name.rsplit_once('.').map_or(name, |(_, m)| m);
        let latency = self.counters.native_requests.get(op);
        let started = std::time::Instant::now();
        let res = self.inner.serve(ctx, req).await;
        latency.0.record(started.elapsed());
        res
    }
}

/// Puts a broker node in an HTTP listener's registry while it runs.
#[derive(Debug)]
pub struct MetricsSlot {
    registry: Registry,
}

impl MetricsSlot {
    /// The node will be served by `registry`'s listener.
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

impl raftmq_proto::transport::FrontEnd<Broker> for MetricsSlot {
    fn describe(&self) -> String {
        "metrics (/metrics, /healthz)".to_owned()
    }

    fn serve(self: Box<Self>, broker: Broker, stop: CancellationToken) -> Serving {
        Box::pin(async move {
            let _registration = self.registry.register(Arc::new(NodeSource { broker }));
            stop.cancelled().await;
        })
    }
}

struct NodeSource {
    broker: Broker,
}

impl Source for NodeSource {
    fn collect(&self) -> BoxFuture<'_, Exposition> {
        Box::pin(async move {
            let mut e = Exposition::new();
            let base = self.broker.metric_labels();
            self.broker.raft_metrics(&mut e, &base);
            self.broker.node_metrics(&mut e, &base);
            if self.broker.shared.replica.is_leader() {
                if let Err(err) = self.broker.object_metrics(&mut e, &base).await {
                    tracing::debug!(error = %err, "queue and group metrics skipped this scrape");
                }
            }
            e
        })
    }

    fn health(&self) -> Health {
        let r = &self.broker.shared.replica;
        let (role, term) = r.role();
        let who = format!("{} node {}", r.group(), r.node_id());
        let leader = match r.leader() {
            Some((id, _)) => format!("leader node {id}"),
            None => "no leader known".to_owned(),
        };
        let draining = self.broker.shared.drain.is_draining();
        Health {
            ok: role != Role::Shutdown,
            // A learner is still catching up; a node with no leader takes no writes; a
            // drained node is about to stop.
            ready: matches!(role, Role::Leader | Role::Follower)
                && r.leader().is_some()
                && !draining,
            line: format!(
                "{who}: {role} at term {term}, {leader}{}",
                if draining { ", drained" } else { "" }
            ),
        }
    }
}

impl Broker {
    fn metric_labels(&self) -> Labels {
        let r = &self.shared.replica;
        Labels::new()
            .with("cluster", r.cluster())
            .with("broker_group", r.group())
            .with("node", r.node_id().to_string())
    }

    fn raft_metrics(&self, e: &mut Exposition, base: &Labels) {
        let status = self.shared.replica.status();
        let Some(me) = status.nodes.iter().find(|n| n.node_id == status.node_id) else {
            return;
        };
        let leading = me.role == Role::Leader;
        e.gauge(
            "raftmq_raft_term",
            "The Raft term this node is in.",
            base,
            me.term as f64,
        );
        e.gauge(
            "raftmq_raft_is_leader",
            "1 if this node is its group's leader, else 0.",
            base,
            if leading { 1.0 } else { 0.0 },
        );
        e.gauge(
            "raftmq_raft_last_log_index",
            "Index of the last entry in this node's log.",
            base,
            me.last_log_index as f64,
        );
        e.gauge(
            "raftmq_raft_commit_index",
            "Index of the last entry this node knows is committed.",
            base,
            me.commit_index as f64,
        );
        e.gauge(
            "raftmq_raft_last_applied_index",
            "Index of the last entry this node applied to its store.",
            base,
            me.applied_index as f64,
        );
        let voters = status
            .nodes
            .iter()
            .filter(|n| n.role != Role::Learner)
            .count();
        e.gauge(
            "raftmq_raft_voters",
            "Voting members of the group, as this node sees its membership.",
            base,
            voters as f64,
        );
        e.gauge(
            "raftmq_raft_has_leader",
            "1 if this node knows a leader of its group, else 0.",
            base,
            if status.leader.is_some() { 1.0 } else { 0.0 },
        );
        e.counter(
            "raftmq_raft_leader_changes_total",
            "Times the leader this node knows of changed to another node.",
            base,
            self.shared.counters.leader_changes.load(Ordering::Relaxed),
        );
        if leading {
            for n in status.nodes.iter().filter(|n| n.node_id != me.node_id) {
                if let Some(lag) = n.lag {
                    e.gauge(
                        "raftmq_raft_follower_lag_entries",
                        "Entries of the leader's log a member has not acknowledged (leader only).",
                        &base.with("follower", n.node_id.0.to_string()),
                        lag as f64,
                    );
                }
            }
        }
    }

    fn node_metrics(&self, e: &mut Exposition, base: &Labels) {
        let disk = &self.shared.disk;
        if let Some((used, total)) = disk.usage() {
            e.gauge(
                "raftmq_store_disk_free_bytes",
                "Free bytes of the data directory's file system, last measured.",
                base,
                total.saturating_sub(used) as f64,
            );
            e.gauge(
                "raftmq_store_disk_total_bytes",
                "Size of the data directory's file system.",
                base,
                total as f64,
            );
            e.gauge(
                "raftmq_store_disk_high_water_bytes",
                "Bytes in use above which retention deletes early (disk_high_water_percent).",
                base,
                disk.high_water_bytes(total) as f64,
            );
        }
        let (pending, oldest_ms) = self.shared.store.pending_transactions_summary();
        e.gauge(
            "raftmq_transactions_pending",
            "Half messages waiting for their producer's commit or rollback.",
            base,
            pending as f64,
        );
        if let Some(oldest) = oldest_ms {
            e.gauge(
                "raftmq_transactions_oldest_pending_age_seconds",
                "Age of the oldest pending half message (checked back after transaction_timeout_ms, rolled back after transaction_check_max checks).",
                base,
                crate::convert::now_ms().saturating_sub(oldest) as f64 / 1000.0,
            );
        }
        e.histogram(
            "raftmq_store_fsync_seconds",
            "Duration of the commit log's syncs.",
            base,
            &self.shared.store.log().sync_seconds().snapshot(),
        );
        let counters = &self.shared.counters;
        for (protocol, ops) in [
            ("native", &counters.native_requests),
            ("remoting", &counters.remoting_requests),
        ] {
            for (op, h) in ops.read(|l| l.0.snapshot()) {
                e.histogram(
                    "raftmq_rpc_request_seconds",
                    "Duration of client requests this node served, by protocol and operation.",
                    &base.with("protocol", protocol).with("op", op),
                    &h,
                );
            }
        }
        let per_object = self.shared.config.metrics_per_object;
        for (name, help, counts) in [
            (
                "raftmq_messages_produced_total",
                "Messages stored by sends this node led.",
                counters.produced.read(|c| c.load(Ordering::Relaxed)),
            ),
            (
                "raftmq_messages_consumed_total",
                "Messages this node returned to pulls.",
                counters.consumed.read(|c| c.load(Ordering::Relaxed)),
            ),
        ] {
            if per_object {
                for (topic, n) in counts {
                    e.counter(name, help, &base.with("topic", topic), n);
                }
            } else {
                e.counter(name, help, base, counts.values().sum());
            }
        }
    }

    /// Queue offsets and group lag, as `group progress` computes them: a queue a group has
    /// not committed counts from its first offset.
    async fn object_metrics(&self, e: &mut Exposition, base: &Labels) -> Result<(), BrokerError> {
        if !self.shared.config.metrics_per_object {
            return Ok(());
        }
        let groups = self.list_groups().await?;
        let store = self.shared.store.clone();
        let (queues, lags) = blocking(move || {
            let mut queues = BTreeMap::new();
            for t in store.topics() {
                for q in 0..t.read_queues.max(t.write_queues) {
                    let bounds = store.queue_bounds(t.name.as_str(), q)?;
                    queues.insert((t.name.to_string(), q), bounds);
                }
            }
            let mut lags = Vec::new();
            for g in groups {
                let mut committed: BTreeMap<String, HashMap<u32, u64>> = BTreeMap::new();
                for (t, q, o) in store.consumer_offsets(g.name.as_str())? {
                    committed.entry(t).or_default().insert(q, o);
                }
                for (topic, by_queue) in committed {
                    for ((_, q), (min, max)) in
                        queues.range((topic.clone(), 0)..=(topic.clone(), u32::MAX))
                    {
                        let at = by_queue.get(q).copied().unwrap_or(*min);
                        lags.push((
                            g.name.to_string(),
                            topic.clone(),
                            *q,
                            at,
                            max.saturating_sub(at),
                        ));
                    }
                }
            }
            Ok((queues, lags))
        })
        .await?;
        for ((topic, q), (min, max)) in queues {
            let l = base.with("topic", topic).with("queue", q.to_string());
            e.gauge(
                "raftmq_queue_min_offset",
                "First readable offset of a queue (leader only).",
                &l,
                min as f64,
            );
            e.gauge(
                "raftmq_queue_max_offset",
                "One past the last offset of a queue (leader only).",
                &l,
                max as f64,
            );
        }
        for (group, topic, q, at, lag) in lags {
            let l = base
                .with("consumer_group", group)
                .with("topic", topic)
                .with("queue", q.to_string());
            e.gauge(
                "raftmq_group_committed_offset",
                "A consumer group's committed offset of a queue (leader only).",
                &l,
                at as f64,
            );
            e.gauge(
                "raftmq_group_lag",
                "Messages of a queue a consumer group has not committed (leader only; exact).",
                &l,
                lag as f64,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_by_name_are_made_once_and_read_sorted() {
        let m = ByName::<AtomicU64>::default();
        m.get("b").fetch_add(2, Ordering::Relaxed);
        m.get("a").fetch_add(1, Ordering::Relaxed);
        m.get("b").fetch_add(3, Ordering::Relaxed);
        let read = m.read(|c| c.load(Ordering::Relaxed));
        assert_eq!(
            read.into_iter().collect::<Vec<_>>(),
            [("a".to_owned(), 1), ("b".to_owned(), 5)]
        );
        assert!(Arc::ptr_eq(&m.get("a"), &m.get("a")));
    }
}
