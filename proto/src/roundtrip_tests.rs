//! Every wire type survives bincode (tarpc's encoding) unchanged.

use bytes::Bytes;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::broker::{
    BrokerGroupStatus, CommitOffsetsRequest, ConsumerGroupInfo, HeartbeatRequest,
    LockQueuesRequest, LockQueuesResponse, NodeStatus, PullMessageRequest, PullMessageResponse,
    QueueStatus, Role, SendBackRequest, SendMessageRequest, SendMessageResponse,
};
use crate::namesrv::{BrokerGroupRoute, NodeRoute, RegisterBrokerRequest, TopicRoute};
use crate::{
    BrokerGroup, ConsumerGroup, ConsumerGroupConfig, FoundMessage, GroupId, Message, MessageExt,
    NodeId, Offset, Perm, QueueId, SendResult, SendStatus, TopicConfig, TopicName, WireError,
};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = bincode::serialize(v).expect("encode");
    let back: T = bincode::deserialize(&bytes).expect("decode");
    assert_eq!(&back, v);
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_%-]{0,20}"
}

fn message() -> impl Strategy<Value = Message> {
    (
        name(),
        proptest::collection::vec(any::<u8>(), 0..64),
        name(),
        proptest::collection::vec(name(), 0..3),
        proptest::collection::vec((name(), ".{0,10}"), 0..3),
        any::<u32>(),
        any::<u8>(),
        any::<u64>(),
    )
        .prop_map(
            |(t, body, tag, keys, properties, flag, delay_level, deliver_at_ms)| Message {
                topic: TopicName(t),
                body: Bytes::from(body),
                tag,
                keys,
                properties,
                flag,
                delay_level,
                deliver_at_ms,
            },
        )
}

fn message_ext() -> impl Strategy<Value = MessageExt> {
    (
        message(),
        name(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
    )
        .prop_map(|(m, g, q, o, t, r)| MessageExt {
            msg_id: format!("{o:032X}"),
            topic: m.topic,
            broker_group: BrokerGroup(g),
            queue_id: QueueId(q),
            queue_offset: Offset(o),
            tag: m.tag,
            keys: m.keys,
            properties: m.properties,
            body: m.body,
            flag: m.flag,
            born_ms: t,
            store_ms: t,
            reconsume_times: r,
        })
}

fn wire_error() -> impl Strategy<Value = WireError> {
    prop_oneof![
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of(name())
        )
            .prop_map(|(l, a)| WireError::NotLeader {
                leader: l.map(NodeId),
                leader_addr: a
            }),
        name().prop_map(WireError::Busy),
        name().prop_map(WireError::Timeout),
        name().prop_map(WireError::TopicNotFound),
        (any::<u64>(), any::<u64>())
            .prop_map(|(offset, min)| WireError::OffsetTooSmall { offset, min }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(offset, max)| WireError::OffsetTooLarge { offset, max }),
        name().prop_map(WireError::Invalid),
        name().prop_map(WireError::Unauthorized),
        name().prop_map(WireError::Internal),
        name().prop_map(WireError::GroupNotFound),
        name().prop_map(WireError::MessageNotFound),
        name().prop_map(WireError::NotAuthorized),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Leader),
        Just(Role::Follower),
        Just(Role::Learner),
        Just(Role::Candidate),
        Just(Role::Shutdown)
    ]
}

proptest! {
    #[test]
    fn messages(m in message(), e in message_ext()) {
        round_trip(&m);
        round_trip(&e);
        round_trip(&FoundMessage::Stored(e.clone()));
        round_trip(&FoundMessage::Scheduled { msg_id: e.msg_id.clone(), broker_group: e.broker_group.clone(),
            queue_id: e.queue_id, store_ms: e.store_ms, message: m.clone() });
        round_trip(&SendMessageRequest { producer_group: "p".into(), topic: m.topic.clone(), queue_id: QueueId(1), messages: vec![m.clone()] });
        round_trip(&PullMessageResponse { messages: vec![e.clone()], next_offset: Offset(1), min_offset: Offset(0), max_offset: Offset(2) });
        round_trip(&SendMessageResponse { results: vec![SendResult {
            status: SendStatus::SendOk, msg_id: e.msg_id.clone(), unique_key: Some(e.msg_id.clone()), topic: e.topic.clone(), broker_group: e.broker_group.clone(),
            queue_id: e.queue_id, queue_offset: Some(e.queue_offset), deliver_at_ms: 7,
        }] });
    }

    #[test]
    fn errors(e in wire_error()) {
        round_trip(&e);
        let r: Result<(), WireError> = Err(e);
        round_trip(&r);
    }

    #[test]
    fn requests(t in name(), g in name(), q in any::<u32>(), o in any::<u64>(), r in role()) {
        let (topic, group) = (TopicName(t.clone()), ConsumerGroup(g.clone()));
        round_trip(&PullMessageRequest { consumer_group: group.clone(), topic: topic.clone(), queue_id: QueueId(q), offset: Offset(o),
            max_msgs: 32, max_bytes: 1 << 20, max_wait_ms: 15_000, tags: vec![t.clone()] });
        round_trip(&CommitOffsetsRequest { group: group.clone(), offsets: vec![(topic.clone(), QueueId(q), Offset(o))] });
        round_trip(&HeartbeatRequest { client_id: g.clone(), consumer_groups: vec![ConsumerGroupInfo {
            group: group.clone(), subscriptions: vec![(topic.clone(), "*".into())], broadcast: q % 2 == 0 }] });
        round_trip(&SendBackRequest { group: group.clone(), msg_id: t.clone(), delay_level: 3, max_reconsume_times: q });
        round_trip(&LockQueuesRequest { group: group.clone(), client_id: g.clone(), queues: vec![(topic.clone(), QueueId(q))] });
        round_trip(&LockQueuesResponse { locked: vec![(topic.clone(), QueueId(q))], lease_ms: o });
        round_trip(&QueueStatus { queue_id: QueueId(q), min_offset: Offset(o), max_offset: Offset(o) });
        round_trip(&TopicConfig { name: topic.clone(), read_queues: q, write_queues: q, perm: Perm(6), order: true });
        round_trip(&ConsumerGroupConfig { name: group.clone(), consume_enable: true, broadcast: false, retry_max_times: q });
        let node = NodeStatus { node_id: NodeId(o), role: r, term: o, last_log_index: o, commit_index: o, applied_index: o,
            lag: Some(o), client_addr: t.clone(), raft_addr: g.clone() };
        round_trip(&BrokerGroupStatus { cluster: t.clone(), broker_group: BrokerGroup(g.clone()), group_id: Some(GroupId(o)), node_id: NodeId(o), leader: None, nodes: vec![node] });
        round_trip(&RegisterBrokerRequest { cluster: t.clone(), broker_group: BrokerGroup(g.clone()), node_id: NodeId(o), group_id: Some(GroupId(o)),
            client_addr: t.clone(), role: r, term: o, leader: Some(NodeId(o)), topics: vec![TopicConfig::new(topic.clone(), q)] });
        round_trip(&TopicRoute { topic: topic.clone(), groups: vec![BrokerGroupRoute { cluster: t.clone(), broker_group: BrokerGroup(g.clone()),
            group_id: None, read_queues: q, write_queues: q, perm: Perm::RW, leader: Some(NodeId(o)),
            nodes: vec![NodeRoute { node_id: NodeId(o), addr: t.clone(), role: r, term: o }] }] });
    }
}
