//! JSON bodies: routes and cluster info (written), heartbeats and lock requests (read
//! leniently: C++ sends enum ordinals, numbers as strings, omits empty arrays and appends a
//! newline), lock and consumer-list answers (written as plain ASCII JSON: C++ reads them as
//! NUL-terminated strings).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CodecError;

/// One broker group in a route (5.x shape: `enableActingMaster` is required by
/// rocketmq-client-rust and ignored by every other client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// brokerId -> address; id 0 is the master (the Raft leader).
    pub broker_addrs: BTreeMap<String, String>,
    /// The broker group.
    pub broker_name: String,
    /// Cluster name.
    pub cluster: String,
    /// Always false.
    pub enable_acting_master: bool,
}

/// One broker group's queues of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    /// The broker group.
    pub broker_name: String,
    /// `PermName` bits.
    pub perm: u32,
    /// Queues consumers read.
    pub read_queue_nums: u32,
    /// Always 0.
    pub topic_sys_flag: u32,
    /// Queues producers write.
    pub write_queue_nums: u32,
}

/// A topic's route (`TopicRouteData`), keys sorted and quoted as a 4.9.4+ NameServer writes
/// them for every client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// Broker groups.
    pub broker_datas: Vec<BrokerData>,
    /// Always empty.
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// Queues per broker group.
    pub queue_datas: Vec<QueueData>,
}

/// Every broker group (`ClusterInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Broker group -> its data.
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster -> broker groups.
    pub cluster_addr_table: BTreeMap<String, Vec<String>>,
}

/// Serialises a body.
pub fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// How a consumer group consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageModel {
    /// Every member gets every message.
    Broadcasting,
    /// Members share the queues.
    Clustering,
}

/// One subscription of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Topic (`%RETRY%<group>` included).
    pub topic: String,
    /// The expression as written (`*`, `TagA || TagB`, or SQL).
    pub expression: String,
    /// `TAG` or `SQL92`.
    pub expression_type: String,
    /// Version (ms timestamp) of the subscription.
    pub version: i64,
}

/// One consumer group of a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerData {
    /// The group.
    pub group: String,
    /// Broadcasting or clustering.
    pub model: MessageModel,
    /// Its subscriptions.
    pub subscriptions: Vec<Subscription>,
}

/// A HEART_BEAT body (`HeartbeatData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The client instance.
    pub client_id: String,
    /// Producer groups.
    pub producer_groups: Vec<String>,
    /// Consumer groups.
    pub consumers: Vec<ConsumerData>,
}

fn parse_body(what: &'static str, bytes: &[u8]) -> Result<Value, CodecError> {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace() && *b != 0)
        .map_or(0, |i| i + 1);
    serde_json::from_slice(&bytes[..end]).map_err(|e| CodecError::body(what, e.to_string()))
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn list(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

impl Heartbeat {
    /// Parses a heartbeat body.
    ///
    /// # Errors
    /// Not JSON, not an object, or no `clientID`.
    pub fn parse(bytes: &[u8]) -> Result<Self, CodecError> {
        let v = parse_body("heartbeat", bytes)?;
        let client_id = text(v.get("clientID"))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| CodecError::body("heartbeat", "no clientID"))?;
        let producer_groups = list(v.get("producerDataSet"))
            .filter_map(|p| text(p.get("groupName")))
            .collect();
        let mut consumers = Vec::new();
        for c in list(v.get("consumerDataSet")) {
            let Some(group) = text(c.get("groupName")) else {
                continue;
            };
            let model = match c.get("messageModel") {
                Some(Value::String(s)) if s.eq_ignore_ascii_case("BROADCASTING") => {
                    MessageModel::Broadcasting
                }
                Some(Value::Number(n)) if n.as_i64() == Some(0) => MessageModel::Broadcasting,
                _ => MessageModel::Clustering,
            };
            let subscriptions = list(c.get("subscriptionDataSet"))
                .filter_map(|s| {
                    Some(Subscription {
                        topic: text(s.get("topic"))?,
                        expression: text(s.get("subString")).unwrap_or_else(|| "*".into()),
                        expression_type: text(s.get("expressionType"))
                            .filter(|t| !t.is_empty())
                            .unwrap_or_else(|| "TAG".into()),
                        version: int(s.get("subVersion")).unwrap_or(0),
                    })
                })
                .collect();
            consumers.push(ConsumerData {
                group,
                model,
                subscriptions,
            });
        }
        Ok(Self {
            client_id,
            producer_groups,
            consumers,
        })
    }
}

/// A queue as lock bodies name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    /// The broker group.
    pub broker_name: String,
    /// Queue id.
    pub queue_id: i32,
    /// Topic.
    pub topic: String,
}

/// A LOCK_BATCH_MQ / UNLOCK_BATCH_MQ body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockBatchRequest {
    /// The client instance.
    pub client_id: String,
    /// The consumer group.
    pub consumer_group: String,
    /// Queues to lock or release.
    pub queues: Vec<MessageQueue>,
}

impl LockBatchRequest {
    /// Parses a lock or unlock body.
    ///
    /// # Errors
    /// Not JSON, or no client id or group.
    pub fn parse(bytes: &[u8]) -> Result<Self, CodecError> {
        let v = parse_body("lock body", bytes)?;
        let client_id =
            text(v.get("clientId")).ok_or_else(|| CodecError::body("lock body", "no clientId"))?;
        let consumer_group = text(v.get("consumerGroup"))
            .ok_or_else(|| CodecError::body("lock body", "no consumerGroup"))?;
        let queues = list(v.get("mqSet"))
            .filter_map(|q| {
                Some(MessageQueue {
                    broker_name: text(q.get("brokerName"))?,
                    queue_id: i32::try_from(int(q.get("queueId"))?).ok()?,
                    topic: text(q.get("topic"))?,
                })
            })
            .collect();
        Ok(Self {
            client_id,
            consumer_group,
            queues,
        })
    }
}

/// LOCK_BATCH_MQ's answer: the queues now held by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchResponse {
    /// Locked queues.
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

/// GET_CONSUMER_LIST_BY_GROUP's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerList {
    /// Client ids.
    pub consumer_id_list: Vec<String>,
}

/// The tags a TAG expression selects; `None` = every message (`*` or empty).
pub fn tag_expression(expr: &str) -> Option<Vec<String>> {
    let e = expr.trim();
    if e.is_empty() || e == "*" {
        return None;
    }
    let tags: Vec<String> = e
        .split("||")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    (!tags.is_empty()).then_some(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_json_is_the_standard_5x_shape() {
        let route = TopicRouteData {
            broker_datas: vec![BrokerData {
                broker_addrs: [("0".into(), "10.0.0.1:10911".into())].into(),
                broker_name: "broker-a".into(),
                cluster: "DefaultCluster".into(),
                enable_acting_master: false,
            }],
            filter_server_table: BTreeMap::new(),
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                perm: 6,
                read_queue_nums: 8,
                topic_sys_flag: 0,
                write_queue_nums: 8,
            }],
        };
        assert_eq!(
            String::from_utf8(to_json(&route)).unwrap(),
            r#"{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":8,"topicSysFlag":0,"writeQueueNums":8}]}"#
        );
    }

    #[test]
    fn captured_cpp_heartbeat_parses() {
        // remoting.md §3.10 [cap].
        let body = b"{\"clientID\":\"22772-127.0.0.1@DEFAULT\",\"consumerDataSet\":[{\"consumeFromWhere\":0,\"consumeType\":1,\"groupName\":\"CID_CAP\",\"messageModel\":1,\"subscriptionDataSet\":[{\"subString\":\"*\",\"subVersion\":\"1796150125982\",\"topic\":\"%RETRY%CID_CAP\"},{\"codeSet\":[0,0],\"subString\":\"TagA || TagB\",\"subVersion\":\"1796150125982\",\"tagsSet\":[\"TagA\",\"TagB\"],\"topic\":\"TopicTest\"}]}]}\n";
        let h = Heartbeat::parse(body).unwrap();
        assert_eq!(h.client_id, "22772-127.0.0.1@DEFAULT");
        assert!(h.producer_groups.is_empty());
        let c = &h.consumers[0];
        assert_eq!(
            (c.group.as_str(), c.model),
            ("CID_CAP", MessageModel::Clustering)
        );
        assert_eq!(c.subscriptions.len(), 2);
        assert_eq!(c.subscriptions[1].expression, "TagA || TagB");
        assert_eq!(c.subscriptions[1].version, 1_796_150_125_982);
        assert_eq!(c.subscriptions[1].expression_type, "TAG");
    }

    #[test]
    fn java_style_heartbeat_parses() {
        let body = br#"{"clientID":"10.0.0.1@123#456","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"g","messageModel":"BROADCASTING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1,"tagsSet":[],"topic":"T"}],"unitMode":false}],"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"},{"groupName":"P"}]}"#;
        let h = Heartbeat::parse(body).unwrap();
        assert_eq!(h.producer_groups, vec!["CLIENT_INNER_PRODUCER", "P"]);
        assert_eq!(h.consumers[0].model, MessageModel::Broadcasting);
        assert!(Heartbeat::parse(b"{}").is_err());
        assert!(Heartbeat::parse(b"[1,2").is_err());
    }

    #[test]
    fn lock_bodies_parse_and_answer() {
        let body = b"{\"clientId\":\"8729-127.0.0.1@DEFAULT\",\"consumerGroup\":\"CID_ORD\",\"mqSet\":[{\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"TopicTest\"}]}\n";
        let l = LockBatchRequest::parse(body).unwrap();
        assert_eq!(l.queues.len(), 1);
        let answer = LockBatchResponse {
            lock_ok_mq_set: l.queues,
        };
        assert_eq!(
            String::from_utf8(to_json(&answer)).unwrap(),
            r#"{"lockOKMQSet":[{"brokerName":"broker-a","queueId":0,"topic":"TopicTest"}]}"#
        );
    }

    #[test]
    fn tag_expressions() {
        assert_eq!(tag_expression("*"), None);
        assert_eq!(tag_expression(" "), None);
        assert_eq!(
            tag_expression("TagA || TagB"),
            Some(vec!["TagA".into(), "TagB".into()])
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bodies_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Heartbeat::parse(&bytes);
            let _ = LockBatchRequest::parse(&bytes);
        }
    }
}
