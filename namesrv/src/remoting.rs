//! The NameServer's RocketMQ remoting front end: what RocketMQ clients ask a NameServer
//! (routes, cluster info, topic lists), answered from the same route table.
//!
//! A route lists each broker group with brokerId 0 = its current Raft leader and 1..n =
//! its other live members (by node id), so clients send to the leader and heartbeat every
//! node. A group with no known leader has no id 0: producers skip it, consumers still
//! read from its members.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use raftmq_proto::namesrv::BrokerGroupRoute;
use raftmq_proto::TopicName;
use raftmq_remoting::body::{to_json, BrokerData, ClusterInfo, QueueData, TopicRouteData};
use raftmq_remoting::codes::{request, response};
use raftmq_remoting::{Ext, RemotingCommand};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;

use crate::core::Namesrv;

/// Put / delete KV config: not kept by raftmq NameServers.
const PUT_KV_CONFIG: i32 = 100;
const DELETE_KV_CONFIG: i32 = 102;
/// KV config of a namespace.
const GET_KVLIST_BY_NAMESPACE: i32 = 219;
/// Requests one connection may have in flight.
const MAX_IN_FLIGHT: usize = 1024;

fn reply(req: &RemotingCommand, code: i32, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::response_to(req, code).with_remark(remark)
}

/// brokerId -> address: 0 the leader, 1.. the other members by node id.
fn broker_addrs(g: &BrokerGroupRoute) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut others: Vec<_> = g
        .nodes
        .iter()
        .filter(|n| Some(n.node_id) != g.leader)
        .collect();
    others.sort_by_key(|n| n.node_id);
    if let Some(a) = g.leader_addr() {
        out.insert("0".to_owned(), a.to_owned());
    }
    for (i, n) in others.into_iter().enumerate() {
        out.insert((i + 1).to_string(), n.addr.clone());
    }
    out
}

fn broker_data(g: &BrokerGroupRoute) -> BrokerData {
    BrokerData {
        broker_addrs: broker_addrs(g),
        broker_name: g.broker_group.0.clone(),
        cluster: g.cluster.clone(),
        enable_acting_master: false,
    }
}

/// GET_ROUTEINFO_BY_TOPIC (105).
fn route(ns: &Namesrv, req: &RemotingCommand) -> RemotingCommand {
    let Some(topic) = req.ext_str("topic") else {
        return reply(
            req,
            response::SYSTEM_ERROR,
            "the custom field topic is null",
        );
    };
    match ns.route(&TopicName::from(topic)) {
        Ok(r) => {
            let data = TopicRouteData {
                broker_datas: r.groups.iter().map(broker_data).collect(),
                filter_server_table: BTreeMap::new(),
                queue_datas: r
                    .groups
                    .iter()
                    .map(|g| QueueData {
                        broker_name: g.broker_group.0.clone(),
                        perm: u32::from(g.perm.0),
                        read_queue_nums: g.read_queues,
                        topic_sys_flag: 0,
                        write_queue_nums: g.write_queues,
                    })
                    .collect(),
            };
            RemotingCommand::response_to(req, response::SUCCESS).with_body(to_json(&data))
        }
        Err(_) => reply(
            req,
            response::TOPIC_NOT_EXIST,
            format!(
                "No topic route info in name server for the topic: {topic}\nSee http://rocketmq.apache.org/docs/faq/ for further details."
            ),
        ),
    }
}

/// GET_BROKER_CLUSTER_INFO (106).
fn cluster(ns: &Namesrv, req: &RemotingCommand) -> RemotingCommand {
    let c = ns.cluster();
    let mut info = ClusterInfo {
        broker_addr_table: BTreeMap::new(),
        cluster_addr_table: BTreeMap::new(),
    };
    for g in &c.groups {
        info.broker_addr_table
            .insert(g.broker_group.0.clone(), broker_data(g));
        info.cluster_addr_table
            .entry(g.cluster.clone())
            .or_default()
            .push(g.broker_group.0.clone());
    }
    RemotingCommand::response_to(req, response::SUCCESS).with_body(to_json(&info))
}

fn topic_list(topics: Vec<TopicName>) -> Vec<u8> {
    let list: Vec<String> = topics.into_iter().map(|t| t.0).collect();
    serde_json::json!({ "topicList": list })
        .to_string()
        .into_bytes()
}

/// Answers one request.
pub fn handle(ns: &Namesrv, req: &RemotingCommand) -> RemotingCommand {
    let ok = || RemotingCommand::response_to(req, response::SUCCESS);
    match req.code {
        request::GET_ROUTEINFO_BY_TOPIC => route(ns, req),
        request::GET_BROKER_CLUSTER_INFO => cluster(ns, req),
        request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => ok().with_body(topic_list(ns.topics())),
        request::GET_TOPICS_BY_CLUSTER => {
            let cluster = Ext(&req.ext).opt_str("cluster").unwrap_or("");
            ok().with_body(topic_list(ns.topics_of_cluster(cluster)))
        }
        // Routes follow what brokers report: a topic deleted on its brokers leaves the
        // routes with their next registration.
        request::DELETE_TOPIC_IN_NAMESRV => ok(),
        request::GET_KV_CONFIG | GET_KVLIST_BY_NAMESPACE => reply(
            req,
            response::QUERY_NOT_FOUND,
            "No config item: raftmq NameServers keep no KV config",
        ),
        PUT_KV_CONFIG | DELETE_KV_CONFIG => reply(
            req,
            response::SYSTEM_ERROR,
            "raftmq NameServers keep no KV config (order topics need none: ordered sends pick queues by key)",
        ),
        code => reply(
            req,
            response::REQUEST_CODE_NOT_SUPPORTED,
            format!(" request type {code} not supported"),
        ),
    }
}

/// Serves one remoting connection until it closes.
pub async fn serve_connection<Io>(io: Io, peer: SocketAddr, ns: Namesrv, requests: TaskTracker)
where
    Io: AsyncRead + AsyncWrite + Send + 'static,
{
    let handler = move |req: RemotingCommand| {
        let resp = handle(&ns, &req);
        std::future::ready(resp)
    };
    let codec = raftmq_remoting::FrameCodec::default()
        .with_unfinished(raftmq_proto::frames::UnfinishedFrame::process().tracker());
    raftmq_remoting::connection::serve(
        io,
        codec,
        peer,
        requests,
        MAX_IN_FLIGHT,
        futures::stream::pending(),
        handler,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_proto::namesrv::RegisterBrokerRequest;
    use raftmq_proto::{BrokerGroup, NodeId, Role, TopicConfig};

    fn reg(node: u64, role: Role, term: u64) -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            cluster: "DefaultCluster".into(),
            broker_group: BrokerGroup::from("broker-a"),
            node_id: NodeId(node),
            group_id: None,
            client_addr: format!("127.0.0.1:{}", 10910 + node),
            role,
            term,
            leader: None,
            topics: vec![TopicConfig::new("T", 4)],
        }
    }

    fn request(code: i32, ext: &[(&str, &str)]) -> RemotingCommand {
        let mut r = RemotingCommand::request(code, 1);
        for (k, v) in ext {
            r = r.with_ext(k, v);
        }
        r
    }

    #[test]
    fn routes_put_the_leader_at_id_0_and_members_after_it() {
        let ns = Namesrv::new(std::time::Duration::from_secs(120));
        ns.register(reg(1, Role::Follower, 2)).unwrap();
        ns.register(reg(2, Role::Leader, 2)).unwrap();
        ns.register(reg(3, Role::Follower, 2)).unwrap();
        let r = handle(&ns, &request(105, &[("topic", "T")]));
        assert_eq!(r.code, 0);
        assert_eq!(
            String::from_utf8(r.body.to_vec()).unwrap(),
            r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10912","1":"127.0.0.1:10911","2":"127.0.0.1:10913"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
        );
        // A new leader takes id 0 as soon as it registers.
        ns.register(reg(3, Role::Leader, 3)).unwrap();
        let r = handle(&ns, &request(105, &[("topic", "T")]));
        assert!(String::from_utf8(r.body.to_vec())
            .unwrap()
            .contains(r#""0":"127.0.0.1:10913""#));
        assert_eq!(handle(&ns, &request(105, &[("topic", "U")])).code, 17);
        let c = handle(&ns, &request(106, &[]));
        assert!(String::from_utf8(c.body.to_vec())
            .unwrap()
            .contains(r#""clusterAddrTable":{"DefaultCluster":["broker-a"]}"#));
        let t = handle(&ns, &request(206, &[]));
        assert_eq!(t.body.as_ref(), br#"{"topicList":["T"]}"#);
        assert_eq!(handle(&ns, &request(9999, &[])).code, 3);
    }
}
