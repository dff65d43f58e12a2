//! Polls one cluster every interval: each node's own status and counters, from which the
//! node cards, each group's health, the failover timeline and the chart history follow.
//!
//! A sample costs one NameServer call and two calls per node, whatever the number of
//! topics; the group-lag history (one `group progress` per group, at most
//! [`LAG_GROUPS_MAX`] groups) is taken every [`LAG_EVERY`] samples.
//!
//! The timeline's times are as precise as the interval: an election is timed from the last
//! sample that still saw the old leader to the first that sees the new one, and the first
//! acknowledged write after it is the first sample in which the new leader's count of
//! stored messages grew.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftmq_client::admin::NodeInfo;
use raftmq_client::Admin;
use raftmq_proto::broker::NodeStats;
use raftmq_proto::clock::now_ms;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Timeline events kept.
pub const TIMELINE_MAX: usize = 1000;
/// Chart points kept (an hour at the default 1 s interval).
pub const POINTS_MAX: usize = 3600;
/// Group lag is charted every this many samples.
pub const LAG_EVERY: u64 = 10;
/// At most this many consumer groups are summed into the charted lag.
pub const LAG_GROUPS_MAX: usize = 50;
/// A follower this many entries behind makes its group degraded.
pub const DEGRADED_LAG: u64 = 1000;

/// A broker group's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// A leader, every voter reachable and close behind.
    Healthy,
    /// A leader and a quorum, but a voter is unreachable or far behind (the reason).
    Degraded(String),
    /// Fewer than a majority of voters reachable: writes and reads stop.
    NoQuorum,
    /// A quorum is reachable but no node leads (an election is under way).
    NoLeader,
}

impl Health {
    /// The word pages show.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded(_) => "degraded",
            Self::NoQuorum => "no quorum",
            Self::NoLeader => "no leader",
        }
    }
    /// Why, for degraded.
    pub fn reason(&self) -> &str {
        match self {
            Self::Degraded(r) => r,
            _ => "",
        }
    }
    /// The CSS class of the badge.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Healthy => "ok",
            Self::Degraded(_) => "warn",
            Self::NoQuorum | Self::NoLeader => "bad",
        }
    }
}

/// One node as the overview shows it.
#[derive(Debug, Clone)]
pub struct NodeCard {
    /// Role, term and indexes as the node reports them (`unreachable` if it did not).
    pub info: NodeInfo,
    /// Disk and counters, when the node answered.
    pub stats: Option<NodeStats>,
    /// ms since this follower last acknowledged the leader, as the leader reports it.
    pub heartbeat_ms: Option<u64>,
}

impl NodeCard {
    /// Disk used and free, or `-`.
    pub fn disk(&self) -> String {
        match self
            .stats
            .as_ref()
            .and_then(|s| Some((s.disk_used_bytes?, s.disk_total_bytes?)))
        {
            Some((used, total)) => format!(
                "{} used, {} free",
                crate::view::bytes(used),
                crate::view::bytes(total.saturating_sub(used))
            ),
            None => "-".to_owned(),
        }
    }
}

/// One broker group in a sample.
#[derive(Debug, Clone)]
pub struct GroupCard {
    /// Cluster name the nodes report.
    pub cluster: String,
    /// Broker group.
    pub name: String,
    /// Health.
    pub health: Health,
    /// The node that reports itself leader.
    pub leader: Option<u64>,
    /// Highest term any node reports.
    pub term: u64,
    /// Its nodes, by id.
    pub nodes: Vec<NodeCard>,
}

/// Everything one poll of a cluster saw.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Sequence number (0 = nothing sampled yet).
    pub seq: u64,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// Broker groups, by name.
    pub groups: Vec<GroupCard>,
    /// Why the poll failed (no NameServer answered), if it did.
    pub error: Option<String>,
}

/// A change the timeline shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it was seen, ms since the epoch.
    pub at_ms: u64,
    /// Broker group.
    pub group: String,
    /// The node it is about (`None`: the group's leadership).
    pub node: Option<u64>,
    /// What changed.
    pub what: String,
    /// Term after it.
    pub term: u64,
    /// For a leader change: ms from the last sample with the old leader to the first
    /// with the new one.
    pub election_ms: Option<u64>,
    /// For a leader change: ms from the last sample with the old leader to the first in
    /// which the new one had stored a message.
    pub first_write_ms: Option<u64>,
}

/// One chart point.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// Messages stored per second across the cluster since the previous point.
    pub produced_per_s: f64,
    /// Messages returned to pulls per second.
    pub consumed_per_s: f64,
    /// The largest follower lag, entries.
    pub max_follower_lag: u64,
    /// Summed consumer-group lag, messages, on the samples it was taken.
    pub group_lag: Option<u64>,
}

/// The timeline and chart rings of one cluster.
#[derive(Debug, Default)]
pub struct History {
    timeline: Mutex<VecDeque<Event>>,
    points: Mutex<VecDeque<Point>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock left a consistent ring (pushes and pops only).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl History {
    /// The newest `max` events, newest first.
    pub fn events(&self, max: usize) -> Vec<Event> {
        lock(&self.timeline)
            .iter()
            .rev()
            .take(max)
            .cloned()
            .collect()
    }
    /// Every chart point, oldest first.
    pub fn points(&self) -> Vec<Point> {
        lock(&self.points).iter().copied().collect()
    }
    fn push_event(&self, e: Event) {
        let mut t = lock(&self.timeline);
        if t.len() == TIMELINE_MAX {
            t.pop_front();
        }
        t.push_back(e);
    }
    fn update_event(&self, at_ms: u64, group: &str, f: impl FnOnce(&mut Event)) {
        if let Some(e) = lock(&self.timeline)
            .iter_mut()
            .rev()
            .find(|e| e.at_ms == at_ms && e.group == group && e.node.is_none())
        {
            f(e);
        }
    }
    fn push_point(&self, p: Point) {
        let mut t = lock(&self.points);
        if t.len() == POINTS_MAX {
            t.pop_front();
        }
        t.push_back(p);
    }
}

/// Health from the nodes' own reports: voters are the non-learners.
pub fn health(nodes: &[NodeCard]) -> Health {
    let voters: Vec<&NodeCard> = nodes.iter().filter(|n| n.info.role != "learner").collect();
    let up = |n: &&&NodeCard| !matches!(n.info.role.as_str(), "unreachable" | "shutdown");
    let reachable = voters.iter().filter(up).count();
    let quorum = reachable * 2 > voters.len();
    let leader = nodes.iter().any(|n| n.info.role == "leader");
    if !quorum {
        return Health::NoQuorum;
    }
    if !leader {
        return Health::NoLeader;
    }
    if let Some(down) = voters.iter().find(|n| !up(n)) {
        return Health::Degraded(format!("node {} is {}", down.info.node_id, down.info.role));
    }
    if let Some(behind) = nodes
        .iter()
        .find(|n| n.info.lag.is_some_and(|l| l > DEGRADED_LAG))
    {
        return Health::Degraded(format!(
            "node {} is {} entries behind",
            behind.info.node_id,
            behind.info.lag.unwrap_or(0)
        ));
    }
    Health::Healthy
}

/// Groups the nodes `cluster_nodes` reported, with each node's stats.
fn cards(nodes: Vec<NodeInfo>, stats: &BTreeMap<String, NodeStats>) -> Vec<GroupCard> {
    let mut by_group: BTreeMap<String, Vec<NodeCard>> = BTreeMap::new();
    for info in nodes {
        by_group
            .entry(info.group.clone())
            .or_default()
            .push(NodeCard {
                stats: stats.get(&info.addr).cloned(),
                heartbeat_ms: None,
                info,
            });
    }
    by_group
        .into_iter()
        .map(|(name, mut nodes)| {
            nodes.sort_by_key(|n| n.info.node_id);
            let leader = nodes
                .iter()
                .find(|n| n.info.role == "leader")
                .map(|n| n.info.node_id);
            let ages: BTreeMap<u64, Option<u64>> = nodes
                .iter()
                .find(|n| Some(n.info.node_id) == leader)
                .and_then(|n| n.stats.as_ref())
                .map(|s| {
                    s.heartbeat_age_ms
                        .iter()
                        .map(|(id, a)| (id.0, *a))
                        .collect()
                })
                .unwrap_or_default();
            for n in &mut nodes {
                n.heartbeat_ms = ages.get(&n.info.node_id).copied().flatten();
            }
            GroupCard {
                cluster: nodes
                    .first()
                    .map(|n| n.info.cluster.clone())
                    .unwrap_or_default(),
                health: health(&nodes),
                term: nodes.iter().map(|n| n.info.term).max().unwrap_or(0),
                leader,
                name,
                nodes,
            }
        })
        .collect()
}

/// What the sampler remembers between polls.
#[derive(Debug, Default)]
struct Memory {
    /// (group, node) → (role, term).
    roles: BTreeMap<(String, u64), (String, u64)>,
    /// group → (leader, term, at of the last sample that saw it).
    leaders: BTreeMap<String, (u64, u64, u64)>,
    /// group → (event time, the new leader's stored count when first seen) while its
    /// first write is awaited.
    awaiting_write: BTreeMap<String, (u64, u64, u64)>,
    /// (group, node) → (produced, consumed) totals of the previous sample.
    counters: BTreeMap<(String, u64), (u64, u64)>,
    prev_at: u64,
}

impl Memory {
    /// Records the timeline events `s` implies and returns the chart point.
    fn observe(&mut self, s: &Sample, history: &History) -> Point {
        let mut point = Point {
            at_ms: s.at_ms,
            produced_per_s: 0.0,
            consumed_per_s: 0.0,
            max_follower_lag: 0,
            group_lag: None,
        };
        let (mut produced, mut consumed) = (0u64, 0u64);
        for g in &s.groups {
            for n in &g.nodes {
                let key = (g.name.clone(), n.info.node_id);
                let now = (n.info.role.clone(), n.info.term);
                match self.roles.get(&key) {
                    Some(before) if *before != now => history.push_event(Event {
                        at_ms: s.at_ms,
                        group: g.name.clone(),
                        node: Some(n.info.node_id),
                        what: format!("{} → {}", before.0, now.0),
                        term: now.1,
                        election_ms: None,
                        first_write_ms: None,
                    }),
                    _ => {}
                }
                self.roles.insert(key.clone(), now);
                point.max_follower_lag = point.max_follower_lag.max(n.info.lag.unwrap_or(0));
                if let Some(st) = &n.stats {
                    let (p0, c0) = self
                        .counters
                        .insert(key, (st.produced_total, st.consumed_total))
                        .unwrap_or((st.produced_total, st.consumed_total));
                    // A restarted node counts from 0 again: no negative rates.
                    produced += st.produced_total.saturating_sub(p0);
                    consumed += st.consumed_total.saturating_sub(c0);
                }
            }
            self.leadership(s, g, history);
        }
        if self.prev_at > 0 && s.at_ms > self.prev_at {
            let secs = (s.at_ms - self.prev_at) as f64 / 1000.0;
            point.produced_per_s = produced as f64 / secs;
            point.consumed_per_s = consumed as f64 / secs;
        }
        self.prev_at = s.at_ms;
        point
    }

    fn leadership(&mut self, s: &Sample, g: &GroupCard, history: &History) {
        let Some(leader) = g.leader else { return };
        let stored = |id: u64| {
            g.nodes
                .iter()
                .find(|n| n.info.node_id == id)
                .and_then(|n| n.stats.as_ref())
                .map_or(0, |st| st.produced_total)
        };
        let term = g.term;
        match self.leaders.get(&g.name).copied() {
            None => history.push_event(Event {
                at_ms: s.at_ms,
                group: g.name.clone(),
                node: None,
                what: format!("node {leader} leads (first seen by the console)"),
                term,
                election_ms: None,
                first_write_ms: None,
            }),
            Some((old, old_term, seen)) if old != leader || old_term != term => {
                history.push_event(Event {
                    at_ms: s.at_ms,
                    group: g.name.clone(),
                    node: None,
                    what: format!("leader {old} → {leader}"),
                    term,
                    election_ms: Some(s.at_ms.saturating_sub(seen)),
                    first_write_ms: None,
                });
                self.awaiting_write
                    .insert(g.name.clone(), (s.at_ms, seen, stored(leader)));
            }
            Some(_) => {}
        }
        if let Some((event_at, since, base)) = self.awaiting_write.get(&g.name).copied() {
            if stored(leader) > base {
                history.update_event(event_at, &g.name, |e| {
                    e.first_write_ms = Some(s.at_ms.saturating_sub(since));
                });
                self.awaiting_write.remove(&g.name);
            }
        }
        self.leaders.insert(g.name.clone(), (leader, term, s.at_ms));
    }
}

/// Polls the cluster once.
async fn poll(admin: &Admin, seq: u64) -> Sample {
    let at_ms = now_ms();
    let nodes = match admin.cluster_nodes().await {
        Ok(n) => n,
        Err(e) => {
            return Sample {
                seq,
                at_ms,
                groups: Vec::new(),
                error: Some(e.to_string()),
            }
        }
    };
    let asks = nodes
        .iter()
        .filter(|n| n.role != "unreachable")
        .map(|n| async move { (n.addr.clone(), admin.node_stats(&n.addr).await) });
    let stats = futures::future::join_all(asks)
        .await
        .into_iter()
        .filter_map(|(addr, r)| Some((addr, r.ok()?)))
        .collect();
    Sample {
        seq,
        at_ms,
        groups: cards(nodes, &stats),
        error: None,
    }
}

/// Summed lag of the first [`LAG_GROUPS_MAX`] consumer groups.
async fn group_lag(admin: &Admin) -> Option<u64> {
    let groups = admin.list_groups().await.ok()?;
    let mut total = 0;
    for g in groups.iter().take(LAG_GROUPS_MAX) {
        total += admin
            .group_progress(g.name.as_str())
            .await
            .ok()?
            .iter()
            .map(|q| q.lag)
            .sum::<u64>();
    }
    Some(total)
}

/// Starts polling `admin` every `every` until `stop`; the receiver sees each sample.
pub fn spawn(
    admin: Admin,
    history: Arc<History>,
    every: Duration,
    stop: CancellationToken,
) -> watch::Receiver<Arc<Sample>> {
    let (tx, rx) = watch::channel(Arc::new(Sample::default()));
    tokio::spawn(async move {
        let mut memory = Memory::default();
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        for seq in 1u64.. {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let sample = poll(&admin, seq).await;
            match (&sample.error, failing) {
                (Some(e), false) => {
                    tracing::warn!(error = %e, "console: the cluster does not answer")
                }
                (None, true) => tracing::info!("console: the cluster answers again"),
                _ => {}
            }
            failing = sample.error.is_some();
            let mut point = memory.observe(&sample, &history);
            if seq % LAG_EVERY == 1 && !failing {
                point.group_lag = group_lag(&admin).await;
            }
            history.push_point(point);
            if tx.send(Arc::new(sample)).is_err() {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_proto::NodeId;

    fn node(id: u64, role: &str, term: u64, lag: Option<u64>) -> NodeInfo {
        NodeInfo {
            cluster: "c".into(),
            group: "broker-a".into(),
            group_id: None,
            node_id: id,
            role: role.into(),
            term,
            last_log_index: 10,
            commit_index: 10,
            applied_index: 10,
            lag,
            addr: format!("n{id}"),
        }
    }

    fn stats(id: u64, produced: u64) -> (String, NodeStats) {
        (
            format!("n{id}"),
            NodeStats {
                node_id: NodeId(id),
                disk_used_bytes: Some(1 << 20),
                disk_total_bytes: Some(1 << 30),
                produced_total: produced,
                consumed_total: 0,
                heartbeat_age_ms: vec![(NodeId(2), Some(40)), (NodeId(3), None)],
            },
        )
    }

    fn sample(at_ms: u64, nodes: Vec<NodeInfo>, st: Vec<(String, NodeStats)>) -> Sample {
        Sample {
            seq: at_ms,
            at_ms,
            groups: cards(nodes, &st.into_iter().collect()),
            error: None,
        }
    }

    #[test]
    fn health_follows_quorum_leader_and_lag() {
        let g = |nodes: Vec<NodeInfo>| cards(nodes, &BTreeMap::new()).remove(0).health;
        let ok = vec![
            node(1, "leader", 2, Some(0)),
            node(2, "follower", 2, Some(0)),
            node(3, "follower", 2, Some(3)),
        ];
        assert_eq!(g(ok.clone()), Health::Healthy);
        let mut one_down = ok.clone();
        one_down[2].role = "unreachable".into();
        assert_eq!(g(one_down.clone()).label(), "degraded");
        assert!(g(one_down.clone()).reason().contains("node 3"));
        let mut two_down = one_down.clone();
        two_down[1].role = "unreachable".into();
        assert_eq!(g(two_down), Health::NoQuorum);
        let mut electing = ok.clone();
        electing[0].role = "candidate".into();
        assert_eq!(g(electing), Health::NoLeader);
        let mut behind = ok;
        behind[2].lag = Some(DEGRADED_LAG + 1);
        assert!(g(behind).reason().contains("entries behind"));
    }

    #[test]
    fn a_leader_change_is_timed_from_the_last_sample_with_the_old_leader() {
        let history = History::default();
        let mut m = Memory::default();
        let three = |l: u64, t: u64| {
            (1..=3)
                .map(|i| node(i, if i == l { "leader" } else { "follower" }, t, None))
                .collect::<Vec<_>>()
        };
        m.observe(&sample(1000, three(1, 2), vec![stats(1, 5)]), &history);
        assert_eq!(history.events(10).len(), 1, "first sight is recorded");
        // The leader dies: nobody leads for two samples, then node 2 does.
        let mut gone = three(0, 2);
        gone[0].role = "unreachable".into();
        m.observe(&sample(2000, gone.clone(), vec![]), &history);
        let mut elected = three(2, 3);
        elected[0].role = "unreachable".into();
        let p = m.observe(
            &sample(3500, elected.clone(), vec![stats(2, 100)]),
            &history,
        );
        assert_eq!(
            p.produced_per_s, 0.0,
            "a node's first counters are a baseline"
        );
        let events = history.events(10);
        let change = events
            .iter()
            .find(|e| e.node.is_none() && e.term == 3)
            .unwrap();
        assert_eq!(change.what, "leader 1 → 2");
        assert_eq!(change.election_ms, Some(2500));
        assert_eq!(change.first_write_ms, None);
        // Node roles changed too: 1 leader → unreachable, 2 follower → leader.
        assert!(events
            .iter()
            .any(|e| e.node == Some(1) && e.what == "leader → unreachable"));
        assert!(events
            .iter()
            .any(|e| e.node == Some(2) && e.what == "follower → leader"));
        // The new leader stores a message: the first write is timed.
        let p = m.observe(&sample(4500, elected, vec![stats(2, 130)]), &history);
        assert_eq!(p.produced_per_s, 30.0);
        let change = history
            .events(10)
            .into_iter()
            .find(|e| e.node.is_none() && e.term == 3)
            .unwrap();
        assert_eq!(change.first_write_ms, Some(3500));
    }

    #[test]
    fn heartbeat_ages_come_from_the_leader() {
        let s = sample(
            1,
            vec![
                node(1, "leader", 1, Some(0)),
                node(2, "follower", 1, Some(0)),
            ],
            vec![stats(1, 0)],
        );
        let g = &s.groups[0];
        assert_eq!(g.nodes[1].heartbeat_ms, Some(40));
        assert_eq!(g.nodes[0].heartbeat_ms, None);
        assert_eq!(g.nodes[0].disk(), "1.0 MiB used, 1023.0 MiB free");
        assert_eq!(g.nodes[1].disk(), "-");
    }

    #[test]
    fn rings_are_bounded() {
        let h = History::default();
        for i in 0..(TIMELINE_MAX + 5) as u64 {
            h.push_event(Event {
                at_ms: i,
                group: "g".into(),
                node: None,
                what: String::new(),
                term: 0,
                election_ms: None,
                first_write_ms: None,
            });
        }
        assert_eq!(h.events(usize::MAX).len(), TIMELINE_MAX);
        assert_eq!(h.events(1)[0].at_ms, (TIMELINE_MAX + 4) as u64);
    }
}
