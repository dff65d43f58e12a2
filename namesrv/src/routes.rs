//! The route table: what each live broker node last reported.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use raftmq_proto::namesrv::{
    BrokerGroupRoute, ClusterRoute, NodeRoute, RegisterBrokerRequest, TopicRoute,
};
use raftmq_proto::{BrokerGroup, NodeId, Perm, Role, TopicName};

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
}

impl RouteTable {
    /// A table that drops nodes silent for `expiry`.
    pub fn new(expiry: Duration) -> Self {
        Self {
            expiry,
            nodes: BTreeMap::new(),
            last_leader: BTreeMap::new(),
        }
    }

    /// Records a registration at `now`.
    pub fn register(&mut self, reg: RegisterBrokerRequest, now: Instant) {
        let key = (
            reg.cluster.clone(),
            reg.broker_group.0.clone(),
            reg.node_id.0,
        );
        if !self.nodes.contains_key(&key) {
            tracing::info!(cluster = %reg.cluster, broker_group = %reg.broker_group, node_id = reg.node_id.0, addr = %reg.client_addr, "broker node registered");
        }
        let group = (key.0.clone(), key.1.clone());
        self.nodes.insert(key, Entry { seen: now, reg });
        let nodes: Vec<&RegisterBrokerRequest> = self
            .nodes
            .range(
                (group.0.clone(), group.1.clone(), 0)
                    ..=(group.0.clone(), group.1.clone(), u64::MAX),
            )
            .map(|(_, e)| &e.reg)
            .collect();
        if let Some(l) = Self::claimed_leader(&nodes) {
            if self.last_leader.insert(group.clone(), l) != Some(l) {
                tracing::info!(cluster = %group.0, broker_group = %group.1, leader = l.0, "broker group leader changed");
            }
        }
    }

    /// Forgets a node.
    pub fn unregister(&mut self, cluster: &str, group: &str, node: NodeId) {
        if self
            .nodes
            .remove(&(cluster.to_owned(), group.to_owned(), node.0))
            .is_some()
        {
            tracing::info!(
                cluster,
                broker_group = group,
                node_id = node.0,
                "broker node unregistered"
            );
        }
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
            client_addr: format!("{group}-{node}"),
            role,
            term,
            leader: None,
            topics: topics.iter().map(|t| TopicConfig::new(*t, 4)).collect(),
        }
    }

    #[test]
    fn routes_name_the_highest_term_leader_and_expire() {
        let mut t = RouteTable::new(Duration::from_secs(120));
        let now = Instant::now();
        t.register(reg("a", 1, Role::Leader, 1, &["T"]), now);
        t.register(reg("a", 2, Role::Leader, 2, &["T"]), now);
        t.register(reg("a", 3, Role::Follower, 2, &["T"]), now);
        t.register(reg("b", 1, Role::Leader, 5, &["T", "U"]), now);
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
        t.register(reg("c", 1, Role::Leader, 5, &["W"]), now);
        t.register(reg("c", 2, Role::Follower, 5, &["W"]), now);
        t.register(reg("c", 1, Role::Candidate, 6, &["W"]), now);
        let w = t.route(&TopicName::from("W")).unwrap();
        assert_eq!(w.groups[0].leader, Some(NodeId(1)));
    }
}
