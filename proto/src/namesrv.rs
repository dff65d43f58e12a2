//! The NameServer's RPC surface: [`NamesrvService`], registrations and routes.

use serde::{Deserialize, Serialize};

use crate::broker::Role;
use crate::config::{Perm, TopicConfig};
use crate::error::WireError;
use crate::ids::{BrokerGroup, GroupId, NodeId, TopicName};

/// A broker node announcing itself, its Raft role and its group's topics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerRequest {
    /// Cluster name.
    pub cluster: String,
    /// Broker group.
    pub broker_group: BrokerGroup,
    /// Node id.
    pub node_id: NodeId,
    /// The group's id (`None` until the node has been told it): a NameServer refuses a
    /// registration whose id conflicts with a live registration of the same group.
    pub group_id: Option<GroupId>,
    /// Address clients use.
    pub client_addr: String,
    /// Raft role.
    pub role: Role,
    /// Raft term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Topics of the group (from the replicated state).
    pub topics: Vec<TopicConfig>,
}

/// A broker node saying goodbye. Only the registration it names (same address and group
/// id) is removed, so a stray process cannot remove a live node's route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnregisterBrokerRequest {
    /// Cluster name.
    pub cluster: String,
    /// Broker group.
    pub broker_group: BrokerGroup,
    /// Node id.
    pub node_id: NodeId,
    /// The group's id the node registered with.
    pub group_id: Option<GroupId>,
    /// The client address it registered.
    pub client_addr: String,
}

/// One node in a route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRoute {
    /// Node id.
    pub node_id: NodeId,
    /// Client address.
    pub addr: String,
    /// Role the node last reported.
    pub role: Role,
    /// Term the node last reported.
    pub term: u64,
}

/// One broker group serving a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerGroupRoute {
    /// Cluster name.
    pub cluster: String,
    /// Broker group.
    pub broker_group: BrokerGroup,
    /// The group's id, once its nodes report one (message ids carry it).
    pub group_id: Option<GroupId>,
    /// Queues consumers read.
    pub read_queues: u32,
    /// Queues producers write.
    pub write_queues: u32,
    /// Permissions.
    pub perm: Perm,
    /// The current leader, by the highest term reported.
    pub leader: Option<NodeId>,
    /// Live nodes of the group.
    pub nodes: Vec<NodeRoute>,
}

impl BrokerGroupRoute {
    /// The leader's client address, if known.
    pub fn leader_addr(&self) -> Option<&str> {
        let leader = self.leader?;
        self.nodes
            .iter()
            .find(|n| n.node_id == leader)
            .map(|n| n.addr.as_str())
    }
}

/// Where a topic lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRoute {
    /// The topic.
    pub topic: TopicName,
    /// Groups serving it, sorted by name.
    pub groups: Vec<BrokerGroupRoute>,
}

/// Every live broker group, whatever topics it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRoute {
    /// Groups sorted by (cluster, group); their queue fields are zero.
    pub groups: Vec<BrokerGroupRoute>,
}

/// The RPCs of a NameServer.
#[tarpc::service]
pub trait NamesrvService {
    /// Registers (or refreshes) a broker node.
    async fn register_broker(req: RegisterBrokerRequest) -> Result<(), WireError>;
    /// Removes a broker node (on clean shutdown).
    async fn unregister_broker(req: UnregisterBrokerRequest) -> Result<(), WireError>;
    /// The route of a topic.
    async fn get_route(topic: TopicName) -> Result<TopicRoute, WireError>;
    /// Every live group and node.
    async fn get_cluster() -> Result<ClusterRoute, WireError>;
    /// Every topic any live group serves, sorted.
    async fn get_topics() -> Result<Vec<TopicName>, WireError>;
}
