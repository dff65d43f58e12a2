//! The route table: what each live broker node last reported.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use raftmq_proto::namesrv::{
    BrokerGroupRoute, ClusterRoute, NodeRoute, RegisterBrokerRequest, TopicRoute,
    UnregisterBrokerRequest,
};
use raftmq_proto::{BrokerGroup, GroupId, NodeId, Perm, Role, TopicName};

/// Key of a node: (cluster, broker group, node id).
type NodeKey = (String, String, u64);

#[derive(Debug, Clone)]
struct Entry {
    seen: Instant,
    reg: RegisterBrokerRequest,
}

/// Registrations, expiring after a silence.
#[derive(Debug)]
pub struct RouteTable {
    expiry: Duration,
    nodes: BTreeMap<NodeKey, Entry>,
    /// The last leader each group's registrations named: kept while an election leaves
    /// nobody claiming leadership, so routes keep a writable node (a follower forwards
    /// writes to the new leader) instead of briefly naming none.
    last_leader: BTreeMap<(String, String), NodeId>,
    /// Conflicting registrations already logged (each is refused every time it repeats,
    /// but logged once): (node, address, group id).
    conflicts_logged: BTreeSet<(NodeKey, String, Option<GroupId>)>,
}

/// Bound on [`RouteTable::conflicts_logged`]: forgotten (and so logged again) beyond it.
const MAX_CONFLICTS_LOGGED: usize = 1024;

fn id_text(id: Option<GroupId>) -> String {
    id.map_or_else(|| "none yet".to_owned(), |i| i.to_string())
}

impl RouteTable {
    /// A table that drops nodes silent for `expiry`.
    pub fn new(expiry: Duration) -> Self {
        Self {
            expiry,
            nodes: BTreeMap::new(),
            last_leader: BTreeMap::new(),
            conflicts_logged: BTreeSet::new(),
        }
    }

    fn group_range(cluster: &str, group: &str) -> std::ops::RangeInclusive<NodeKey> {
        (cluster.to_owned(), group.to_owned(), 0)..=(cluster.to_owned(), group.to_owned(), u64::MAX)
    }

    /// Why `reg` conflicts with a live registration, if it does: another group id than
    /// the group's live nodes report (a group of the same name from another cluster, or a
    /// data dir initialised or copied separately), or its node already registered from
    /// another address by a process that is not provably the same group member.
    fn conflict(&self, reg: &RegisterBrokerRequest, now: Instant) -> Option<String> {
        let live = |e: &Entry| now.duration_since(e.seen) < self.expiry;
        let range = Self::group_range(&reg.cluster, reg.broker_group.as_str());
        for ((_, _, node), e) in self.nodes.range(range).filter(|(_, e)| live(e)) {
            match (reg.group_id, e.reg.group_id) {
                (Some(mine), Some(theirs)) if mine != theirs => {
                    return Some(format!(
                        "broker group {} of cluster {} has group id {theirs} (node {node} at {}), \
                         this node reports {mine}: it belongs to another group of the same name \
                         (another cluster, or a data dir initialised or copied separately); give \
                         it another group name or an empty data dir",
                        reg.broker_group, reg.cluster, e.reg.client_addr
                    ));
                }
                _ => {}
            }
            let same_member = reg.group_id.is_some() && reg.group_id == e.reg.group_id;
            if *node == reg.node_id.0 && e.reg.client_addr != reg.client_addr && !same_member {
                return Some(format!(
                    "node {node} of broker group {} is registered from {} (group id {}); \
                     another process claims it from {} (group id {}): stop one of them (a copied \
                     config or a half-started deployment?); a node that really moved is accepted \
                     once the old registration expires ({} s)",
                    reg.broker_group,
                    e.reg.client_addr,
                    id_text(e.reg.group_id),
                    reg.client_addr,
                    id_text(reg.group_id),
                    self.expiry.as_secs()
                ));
            }
        }
        None
    }

    /// Records a registration at `now`.
    ///
    /// # Errors
    /// The registration conflicts with a live one (see [`RouteTable::conflict`]); the
    /// table is unchanged and the conflict is logged once.
    pub fn register(&mut self, reg: RegisterBrokerRequest, now: Instant) -> Result<(), String> {
        let key = (
            reg.cluster.clone(),
            reg.broker_group.0.clone(),
            reg.node_id.0,
        );
        if let Some(why) = self.conflict(&reg, now) {
            if self.conflicts_logged.len() >= MAX_CONFLICTS_LOGGED {
                self.conflicts_logged.clear();
            }
            if self
                .conflicts_logged
                .insert((key, reg.client_addr.clone(), reg.group_id))
            {
                tracing::warn!(cluster = %reg.cluster, broker_group = %reg.broker_group, node_id = reg.node_id.0, addr = %reg.client_addr, "registration refused: {why}");
            }
            return Err(why);
        }
        if !self.nodes.contains_key(&key) {
            tracing::info!(cluster = %reg.cluster, broker_group = %reg.broker_group, node_id = reg.node_id.0, addr = %reg.client_addr, "broker node registered");
        }
        let group = (key.0.clone(), key.1.clone());
        self.nodes.insert(key, Entry { seen: now, reg });
        let nodes: Vec<&RegisterBrokerRequest> = self
            .nodes
            .range(Self::group_range(&group.0, &group.1))
            .map(|(_, e)| &e.reg)
            .collect();
        if let Some(l) = Self::claimed_leader(&nodes) {
            if self.last_leader.insert(group.clone(), l) != Some(l) {
                tracing::info!(cluster = %group.0, broker_group = %group.1, leader = l.0, "broker group leader changed");
            }
        }
        Ok(())
    }

    /// Forgets a node, if the goodbye comes from the registration it names (same address
    /// and group id): a stray process's goodbye leaves the live node's route alone.
    pub fn unregister(&mut self, req: &UnregisterBrokerRequest) {
        let key = (
            req.cluster.clone(),
            req.broker_group.0.clone(),
            req.node_id.0,
        );
        let Some(e) = self.nodes.get(&key) else {
            return;
        };
        if e.reg.client_addr != req.client_addr || e.reg.group_id != req.group_id {
            tracing::debug!(cluster = %req.cluster, broker_group = %req.broker_group, node_id = req.node_id.0, addr = %req.client_addr, "goodbye from another process than the registered one ignored");
            return;
        }
        self.nodes.remove(&key);
        self.conflicts_logged.retain(|(k, _, _)| k != &key);
        tracing::info!(
            cluster = %req.cluster,
            broker_group = %req.broker_group,
            node_id = req.node_id.0,
            "broker node unregistered"
        );
    }

    /// Drops nodes silent since before `now - expiry`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.nodes.len();
        let expiry = self.expiry;
        self.nodes.retain(|(c, g, n), e| {
            let alive = now.duration_since(e.seen) < expiry;
            if !alive {
                tracing::warn!(cluster = %c, group = %g, node_id = n, "broker node expired after {}s of silence", expiry.as_secs());
            }
            alive
        });
        let nodes = &self.nodes;
        self.conflicts_logged
            .retain(|(k, _, _)| nodes.contains_key(k));
        before - self.nodes.len()
    }

    fn groups(&self) -> BTreeMap<(String, String), Vec<&RegisterBrokerRequest>> {
        let mut out: BTreeMap<(String, String), Vec<&RegisterBrokerRequest>> = BTreeMap::new();
        for ((c, g, _), e) in &self.nodes {
            out.entry((c.clone(), g.clone())).or_default().push(&e.reg);
        }
        out
    }

    /// The leader of a group: a node claiming leadership with the highest term, else
    /// what the highest-term node believes, else (during an election) the last one named
    /// while it is still registered.
    fn leader(
        &self,
        cluster: &str,
        group: &str,
        nodes: &[&RegisterBrokerRequest],
    ) -> Option<NodeId> {
        Self::claimed_leader(nodes).or_else(|| {
            let last = *self
                .last_leader
                .get(&(cluster.to_owned(), group.to_owned()))?;
            nodes.iter().any(|n| n.node_id == last).then_some(last)
        })
    }

    fn claimed_leader(nodes: &[&RegisterBrokerRequest]) -> Option<NodeId> {
        nodes
            .iter()
            .filter(|n| n.role == Role::Leader)
            .max_by_key(|n| n.term)
            .map(|n| n.node_id)
            .or_else(|| nodes.iter().max_by_key(|n| n.term).and_then(|n| n.leader))
    }

    fn group_route(
        &self,
        cluster: &str,
        group: &str,
        nodes: &[&RegisterBrokerRequest],
    ) -> BrokerGroupRoute {
        BrokerGroupRoute {
            cluster: cluster.to_owned(),
            broker_group: BrokerGroup::from(group),
            group_id: nodes.iter().find_map(|n| n.group_id),
            read_queues: 0,
            write_queues: 0,
            perm: Perm::RW,
            leader: self.leader(cluster, group, nodes),
            nodes: nodes
                .iter()
                .map(|n| NodeRoute {
                    node_id: n.node_id,
                    addr: n.client_addr.clone(),
                    role: n.role,
                    term: n.term,
                })
                .collect(),
        }
    }

    /// The route of a topic, if any live group serves it.
    pub fn route(&self, topic: &TopicName) -> Option<TopicRoute> {
        let mut groups = Vec::new();
        for ((cluster, group), nodes) in self.groups() {
            // Prefer the leader's view of the topic; any replica's will do.
            let leader = self.leader(&cluster, &group, &nodes);
            let source = nodes
                .iter()
                .filter(|n| n.topics.iter().any(|t| &t.name == topic))
                .max_by_key(|n| (Some(n.node_id) == leader, n.term));
            let Some(source) = source else { continue };
            let Some(t) = source.topics.iter().find(|t| &t.name == topic) else {
                continue;
            };
            let mut route = self.group_route(&cluster, &group, &nodes);
            route.read_queues = t.read_queues;
            route.write_queues = t.write_queues;
            route.perm = t.perm;
            groups.push(route);
        }
        (!groups.is_empty()).then(|| TopicRoute {
            topic: topic.clone(),
            groups,
        })
    }

    /// Every live group.
    pub fn cluster(&self) -> ClusterRoute {
        ClusterRoute {
            groups: self
                .groups()
                .iter()
                .map(|((c, g), nodes)| self.group_route(c, g, nodes))
                .collect(),
        }
    }

    /// Every topic any live node reports.
    pub fn topics(&self) -> Vec<TopicName> {
        self.topics_where(|_| true)
    }

    /// Every topic a live node of `cluster` reports.
    pub fn topics_of_cluster(&self, cluster: &str) -> Vec<TopicName> {
        self.topics_where(|(c, _, _)| c == cluster)
    }

    fn topics_where(&self, keep: impl Fn(&NodeKey) -> bool) -> Vec<TopicName> {
        let set: BTreeSet<TopicName> = self
            .nodes
            .iter()
            .filter(|(k, _)| keep(k))
            .flat_map(|(_, e)| e.reg.topics.iter().map(|t| t.name.clone()))
            .collect();
        set.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_proto::TopicConfig;

    fn reg(
        group: &str,
        node: u64,
        role: Role,
        term: u64,
        topics: &[&str],
    ) -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            cluster: "c".into(),
            broker_group: BrokerGroup::from(group),
            node_id: NodeId(node),
            group_id: None,
            client_addr: format!("{group}-{node}"),
            role,
            term,
            leader: None,
            topics: topics.iter().map(|t| TopicConfig::new(*t, 4)).collect(),
        }
    }

    impl RouteTable {
        fn register_ok(&mut self, reg: RegisterBrokerRequest, now: Instant) {
            self.register(reg, now).unwrap();
        }
    }

    fn with_id(mut r: RegisterBrokerRequest, id: u64, addr: &str) -> RegisterBrokerRequest {
        r.group_id = Some(GroupId(id));
        r.client_addr = addr.to_owned();
        r
    }

    #[test]
    fn conflicting_registrations_are_refused_and_routes_never_flip() {
        let mut t = RouteTable::new(Duration::from_secs(120));
        let now = Instant::now();
        for n in 1..=3 {
            t.register_ok(
                with_id(
                    reg("a", n, Role::Follower, 1, &["T"]),
                    7,
                    &format!("live-{n}"),
                ),
                now,
            );
        }
        t.register_ok(
            with_id(reg("a", 1, Role::Leader, 2, &["T"]), 7, "live-1"),
            now,
        );
        // A stray that never got an id, under a live node's id from another address.
        let stray = reg("a", 2, Role::Leader, 9, &["T"]);
        let why = t.register(stray.clone(), now).unwrap_err();
        assert!(why.contains("registered from live-2"), "{why}");
        // A node of another group of the same name, whatever its node id.
        let other = with_id(reg("a", 4, Role::Leader, 9, &["T"]), 8, "other-4");
        let why = t.register(other, now).unwrap_err();
        assert!(why.contains("another group of the same name"), "{why}");
        let r = t.route(&TopicName::from("T")).unwrap();
        assert_eq!(r.groups[0].leader, Some(NodeId(1)));
        assert_eq!(r.groups[0].group_id, Some(GroupId(7)));
        let addrs: Vec<_> = r.groups[0].nodes.iter().map(|n| n.addr.as_str()).collect();
        assert_eq!(addrs, ["live-1", "live-2", "live-3"]);
        // The stray's goodbye does not remove the live node.
        let bye = |addr: &str, id| UnregisterBrokerRequest {
            cluster: "c".into(),
            broker_group: BrokerGroup::from("a"),
            node_id: NodeId(2),
            group_id: id,
            client_addr: addr.into(),
        };
        t.unregister(&bye("a-2", None));
        assert_eq!(t.cluster().groups[0].nodes.len(), 3);
        // The same member from a new address is accepted (it proves its group id).
        t.register_ok(
            with_id(reg("a", 2, Role::Follower, 2, &["T"]), 7, "moved-2"),
            now,
        );
        t.unregister(&bye("moved-2", Some(GroupId(7))));
        assert_eq!(t.cluster().groups[0].nodes.len(), 2);
        // Once the live registrations expire, the other group may take the name.
        t.expire(now + Duration::from_secs(121));
        let later = now + Duration::from_secs(122);
        t.register_ok(
            with_id(reg("a", 4, Role::Leader, 9, &["T"]), 8, "other-4"),
            later,
        );
    }

    #[test]
    fn routes_name_the_highest_term_leader_and_expire() {
        let mut t = RouteTable::new(Duration::from_secs(120));
        let now = Instant::now();
        t.register_ok(reg("a", 1, Role::Leader, 1, &["T"]), now);
        t.register_ok(reg("a", 2, Role::Leader, 2, &["T"]), now);
        t.register_ok(reg("a", 3, Role::Follower, 2, &["T"]), now);
        t.register_ok(reg("b", 1, Role::Leader, 5, &["T", "U"]), now);
        let r = t.route(&TopicName::from("T")).unwrap();
        assert_eq!(r.groups.len(), 2);
        assert_eq!(r.groups[0].leader, Some(NodeId(2)));
        assert_eq!(r.groups[0].leader_addr(), Some("a-2"));
        assert_eq!(r.groups[0].write_queues, 4);
        assert_eq!(t.route(&TopicName::from("U")).unwrap().groups.len(), 1);
        assert!(t.route(&TopicName::from("V")).is_none());
        assert_eq!(t.topics().len(), 2);
        assert_eq!(t.expire(now + Duration::from_secs(121)), 4);
        assert!(t.route(&TopicName::from("T")).is_none());

        // During an election nobody claims leadership: the last leader stays in routes.
        t.register_ok(reg("c", 1, Role::Leader, 5, &["W"]), now);
        t.register_ok(reg("c", 2, Role::Follower, 5, &["W"]), now);
        t.register_ok(reg("c", 1, Role::Candidate, 6, &["W"]), now);
        let w = t.route(&TopicName::from("W")).unwrap();
        assert_eq!(w.groups[0].leader, Some(NodeId(1)));
    }
}
