//! Typed request headers: the ext fields of each request the broker and NameServer serve,
//! with the field names and null rules of RocketMQ 4.9.7 (reference: remoting.md §2-§3).

use std::collections::BTreeMap;

use crate::codes::request;
use crate::error::CodecError;
use crate::ext::Ext;

/// SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320), V2's
/// single-letter fields mapped to V1's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendHeader {
    /// Producer group.
    pub producer_group: String,
    /// Destination topic.
    pub topic: String,
    /// The template topic for auto-creation (`TBW102`).
    pub default_topic: String,
    /// Queues an auto-created topic gets (clients send 4).
    pub default_topic_queue_nums: i32,
    /// Destination queue; negative = the broker picks.
    pub queue_id: i32,
    /// `MessageSysFlag` bits (compression, transaction type).
    pub sys_flag: i32,
    /// Producer clock, ms.
    pub born_timestamp: i64,
    /// User flag.
    pub flag: i32,
    /// `name\x01value\x02...`.
    pub properties: String,
    /// Tries so far (retry topics).
    pub reconsume_times: i32,
    /// Tries before the DLQ, when the client says.
    pub max_reconsume_times: Option<i32>,
    /// Whether the body is a batch of encoded messages (code 320, or `batch`/`m` true or
    /// `1`: the C++ client sends its batches as code 10 with `batch:"1"`).
    pub batch: bool,
}

impl SendHeader {
    /// Parses the header of a send with request code `code`.
    ///
    /// # Errors
    /// A required field is absent or mistyped.
    pub fn parse(code: i32, e: Ext<'_>) -> Result<Self, CodecError> {
        let v2 = code == request::SEND_MESSAGE_V2 || code == request::SEND_BATCH_MESSAGE;
        let f = |v1: &'static str, v2name: &'static str| if v2 { v2name } else { v1 };
        Ok(Self {
            producer_group: e.str(f("producerGroup", "a"))?.to_owned(),
            topic: e.str(f("topic", "b"))?.to_owned(),
            default_topic: e.opt_str(f("defaultTopic", "c")).unwrap_or("").to_owned(),
            default_topic_queue_nums: e.opt_i32(f("defaultTopicQueueNums", "d"))?.unwrap_or(4),
            queue_id: e.i32(f("queueId", "e"))?,
            sys_flag: e.opt_i32(f("sysFlag", "f"))?.unwrap_or(0),
            born_timestamp: e.opt_i64(f("bornTimestamp", "g"))?.unwrap_or(0),
            flag: e.opt_i32(f("flag", "h"))?.unwrap_or(0),
            properties: e.opt_str(f("properties", "i")).unwrap_or("").to_owned(),
            reconsume_times: e.opt_i32(f("reconsumeTimes", "j"))?.unwrap_or(0),
            max_reconsume_times: e.opt_i32(f("maxReconsumeTimes", "l"))?,
            batch: code == request::SEND_BATCH_MESSAGE || e.lenient_bool(f("batch", "m")),
        })
    }
}

/// PULL_MESSAGE (11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullHeader {
    /// Consumer group.
    pub consumer_group: String,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: i32,
    /// First logical offset wanted.
    pub queue_offset: i64,
    /// At most this many messages (32 from every client).
    pub max_msg_nums: i32,
    /// `PullSysFlag` bits.
    pub sys_flag: i32,
    /// The consumer's offset, to commit when [`PullHeader::commit`].
    pub commit_offset: i64,
    /// How long the broker may hold the pull, ms.
    pub suspend_timeout_millis: i64,
    /// Tag expression or SQL, when [`PullHeader::has_subscription`].
    pub subscription: Option<String>,
    /// `TAG` (default) or `SQL92`.
    pub expression_type: Option<String>,
}

/// `PullSysFlag` bit 0: commit `commitOffset`.
pub const PULL_COMMIT_OFFSET: i32 = 1;
/// `PullSysFlag` bit 1: the broker may hold the request (long polling).
pub const PULL_SUSPEND: i32 = 2;
/// `PullSysFlag` bit 2: use the request's `subscription`, not the heartbeat's.
pub const PULL_SUBSCRIPTION: i32 = 4;

impl PullHeader {
    /// Parses the header.
    ///
    /// # Errors
    /// A required field is absent or mistyped.
    pub fn parse(e: Ext<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            consumer_group: e.str("consumerGroup")?.to_owned(),
            topic: e.str("topic")?.to_owned(),
            queue_id: e.i32("queueId")?,
            queue_offset: e.i64("queueOffset")?,
            max_msg_nums: e.opt_i32("maxMsgNums")?.unwrap_or(32),
            sys_flag: e.opt_i32("sysFlag")?.unwrap_or(0),
            commit_offset: e.opt_i64("commitOffset")?.unwrap_or(-1),
            suspend_timeout_millis: e.opt_i64("suspendTimeoutMillis")?.unwrap_or(0),
            subscription: e.opt_str("subscription").map(str::to_owned),
            expression_type: e.opt_nonempty("expressionType").map(str::to_owned),
        })
    }

    /// Whether the consumer asks to commit `commit_offset`.
    pub fn commit(&self) -> bool {
        self.sys_flag & PULL_COMMIT_OFFSET != 0 && self.commit_offset >= 0
    }

    /// Whether the broker may hold the request.
    pub fn suspend(&self) -> bool {
        self.sys_flag & PULL_SUSPEND != 0
    }

    /// Whether the request carries its subscription (else the heartbeat's applies).
    pub fn has_subscription(&self) -> bool {
        self.sys_flag & PULL_SUBSCRIPTION != 0
            && self.subscription.as_deref().is_some_and(|s| !s.is_empty())
    }
}

/// Fields naming one queue of a consumer group (14 QUERY_CONSUMER_OFFSET, 15
/// UPDATE_CONSUMER_OFFSET with `commitOffset`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupQueueHeader {
    /// Consumer group.
    pub consumer_group: String,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: i32,
    /// The offset to commit (15 only).
    pub commit_offset: Option<i64>,
}

impl GroupQueueHeader {
    /// Parses the header.
    ///
    /// # Errors
    /// A required field is absent or mistyped.
    pub fn parse(e: Ext<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            consumer_group: e.str("consumerGroup")?.to_owned(),
            topic: e.str("topic")?.to_owned(),
            queue_id: e.i32("queueId")?,
            commit_offset: e.opt_i64("commitOffset")?,
        })
    }
}

/// Fields naming one queue (29-32), with `timestamp` for 29.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueHeader {
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: i32,
    /// SEARCH_OFFSET_BY_TIMESTAMP's time, ms.
    pub timestamp: Option<i64>,
}

impl QueueHeader {
    /// Parses the header.
    ///
    /// # Errors
    /// A required field is absent or mistyped.
    pub fn parse(e: Ext<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            topic: e.str("topic")?.to_owned(),
            queue_id: e.i32("queueId")?,
            timestamp: e.opt_i64("timestamp")?,
        })
    }
}

/// CONSUMER_SEND_MSG_BACK (36).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendBackHeader {
    /// Commit-log offset of the consumed message.
    pub offset: i64,
    /// The consumer group.
    pub group: String,
    /// 0 = the broker decides (`3 + reconsumeTimes`), negative = straight to the DLQ.
    pub delay_level: i32,
    /// The original message id.
    pub origin_msg_id: Option<String>,
    /// Tries before the DLQ, when the client says (honoured for clients newer than 3.4.9).
    pub max_reconsume_times: Option<i32>,
}

impl SendBackHeader {
    /// Parses the header.
    ///
    /// # Errors
    /// A required field is absent or mistyped.
    pub fn parse(e: Ext<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            offset: e.i64("offset")?,
            group: e.str("group")?.to_owned(),
            delay_level: e.opt_i32("delayLevel")?.unwrap_or(0),
            origin_msg_id: e.opt_nonempty("originMsgId").map(str::to_owned),
            max_reconsume_times: e.opt_i32("maxReconsumeTimes")?,
        })
    }
}

/// UNREGISTER_CLIENT (35).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnregisterHeader {
    /// The client instance.
    pub client_id: String,
    /// Producer group leaving, if any.
    pub producer_group: Option<String>,
    /// Consumer group leaving, if any.
    pub consumer_group: Option<String>,
}

impl UnregisterHeader {
    /// Parses the header (C++ sends `""` for the unused group: absent).
    ///
    /// # Errors
    /// `clientID` is absent.
    pub fn parse(e: Ext<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            client_id: e.str("clientID")?.to_owned(),
            producer_group: e.opt_nonempty("producerGroup").map(str::to_owned),
            consumer_group: e.opt_nonempty("consumerGroup").map(str::to_owned),
        })
    }
}

/// QUERY_MESSAGE (12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMessageHeader {
    /// Topic.
    pub topic: String,
    /// The key (or a UNIQ_KEY when [`QueryMessageHeader::unique`]).
    pub key: String,
    /// At most this many.
    pub max_num: i32,
    /// Earliest store time, ms.
    pub begin_timestamp: i64,
    /// Latest store time, ms.
    pub end_timestamp: i64,
    /// `_UNIQUE_KEY_QUERY: "true"`: the key is a client message id.
    pub unique: bool,
}

impl QueryMessageHeader {
    /// Parses the header.
    ///
    /// # Errors
    /// A required field is absent or mistyped.
    pub fn parse(e: Ext<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            topic: e.str("topic")?.to_owned(),
            key: e.str("key")?.to_owned(),
            max_num: e.opt_i32("maxNum")?.unwrap_or(32),
            begin_timestamp: e.opt_i64("beginTimestamp")?.unwrap_or(0),
            end_timestamp: e.opt_i64("endTimestamp")?.unwrap_or(i64::MAX),
            unique: e.java_bool("_UNIQUE_KEY_QUERY"),
        })
    }
}

/// Building requests as a Java client writes them (V1 field names, string values), for
/// tools and tests that speak remoting.
pub trait ToExt {
    /// The header's ext fields.
    fn to_ext(&self) -> BTreeMap<String, String>;
}

fn put(m: &mut BTreeMap<String, String>, k: &str, v: impl ToString) {
    m.insert(k.to_owned(), v.to_string());
}

impl ToExt for SendHeader {
    fn to_ext(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        put(&mut m, "producerGroup", &self.producer_group);
        put(&mut m, "topic", &self.topic);
        put(&mut m, "defaultTopic", &self.default_topic);
        put(
            &mut m,
            "defaultTopicQueueNums",
            self.default_topic_queue_nums,
        );
        put(&mut m, "queueId", self.queue_id);
        put(&mut m, "sysFlag", self.sys_flag);
        put(&mut m, "bornTimestamp", self.born_timestamp);
        put(&mut m, "flag", self.flag);
        put(&mut m, "properties", &self.properties);
        put(&mut m, "reconsumeTimes", self.reconsume_times);
        if let Some(x) = self.max_reconsume_times {
            put(&mut m, "maxReconsumeTimes", x);
        }
        put(&mut m, "batch", self.batch);
        m
    }
}

impl ToExt for PullHeader {
    fn to_ext(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        put(&mut m, "consumerGroup", &self.consumer_group);
        put(&mut m, "topic", &self.topic);
        put(&mut m, "queueId", self.queue_id);
        put(&mut m, "queueOffset", self.queue_offset);
        put(&mut m, "maxMsgNums", self.max_msg_nums);
        put(&mut m, "sysFlag", self.sys_flag);
        put(&mut m, "commitOffset", self.commit_offset);
        put(&mut m, "suspendTimeoutMillis", self.suspend_timeout_millis);
        put(&mut m, "subVersion", 0);
        if let Some(s) = &self.subscription {
            put(&mut m, "subscription", s);
        }
        if let Some(t) = &self.expression_type {
            put(&mut m, "expressionType", t);
        }
        m
    }
}

impl ToExt for GroupQueueHeader {
    fn to_ext(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        put(&mut m, "consumerGroup", &self.consumer_group);
        put(&mut m, "topic", &self.topic);
        put(&mut m, "queueId", self.queue_id);
        if let Some(o) = self.commit_offset {
            put(&mut m, "commitOffset", o);
        }
        m
    }
}

impl ToExt for QueueHeader {
    fn to_ext(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        put(&mut m, "topic", &self.topic);
        put(&mut m, "queueId", self.queue_id);
        if let Some(t) = self.timestamp {
            put(&mut m, "timestamp", t);
        }
        m
    }
}

impl ToExt for SendBackHeader {
    fn to_ext(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        put(&mut m, "offset", self.offset);
        put(&mut m, "group", &self.group);
        put(&mut m, "delayLevel", self.delay_level);
        if let Some(o) = &self.origin_msg_id {
            put(&mut m, "originMsgId", o);
        }
        if let Some(x) = self.max_reconsume_times {
            put(&mut m, "maxReconsumeTimes", x);
        }
        m
    }
}

impl ToExt for UnregisterHeader {
    fn to_ext(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        put(&mut m, "clientID", &self.client_id);
        if let Some(p) = &self.producer_group {
            put(&mut m, "producerGroup", p);
        }
        if let Some(c) = &self.consumer_group {
            put(&mut m, "consumerGroup", c);
        }
        m
    }
}

impl ToExt for QueryMessageHeader {
    fn to_ext(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        put(&mut m, "topic", &self.topic);
        put(&mut m, "key", &self.key);
        put(&mut m, "maxNum", self.max_num);
        put(&mut m, "beginTimestamp", self.begin_timestamp);
        put(&mut m, "endTimestamp", self.end_timestamp);
        put(&mut m, "_UNIQUE_KEY_QUERY", self.unique);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ext_of_json(header_json: &str) -> BTreeMap<String, String> {
        let cmd = crate::frame::decode_frame(frame(header_json)).unwrap();
        cmd.ext
    }

    fn frame(header_json: &str) -> bytes::Bytes {
        let h = header_json.as_bytes();
        let mut b = Vec::new();
        b.extend_from_slice(&(4 + h.len() as u32).to_be_bytes());
        b.extend_from_slice(&(h.len() as u32).to_be_bytes());
        b.extend_from_slice(h);
        bytes::Bytes::from(b)
    }

    #[test]
    fn captured_cpp_send_parses() {
        // remoting.md §3.1 [cap]: C++ SEND_MESSAGE, numbers and strings mixed.
        let e = ext_of_json(
            r#"{"code":10,"extFields":{"AccessKey":"","OnsChannel":"ALIYUN","Signature":"CWd3lXcrfWurSp/YBzG8tpGAIxQ=","batch":"0","bornTimestamp":"1796150125978","defaultTopic":"TBW102","defaultTopicQueueNums":4,"flag":0,"producerGroup":"PID_CAP","properties":"KEYS\u0001k1\u0002TAGS\u0001TagA\u0002UNIQ_KEY\u00010100007F0000194300001A805A090100\u0002WAIT\u0001true\u0002userprop\u0001v\u0002","queueId":0,"reconsumeTimes":"0","sysFlag":0,"topic":"TopicTest","unitMode":"0"},"flag":0,"language":"CPP","opaque":1,"remark":"","version":63}
"#,
        );
        let h = SendHeader::parse(request::SEND_MESSAGE, Ext(&e)).unwrap();
        assert_eq!(h.producer_group, "PID_CAP");
        assert_eq!(h.topic, "TopicTest");
        assert_eq!(h.default_topic_queue_nums, 4);
        assert_eq!(h.born_timestamp, 1_796_150_125_978);
        assert!(!h.batch);
        let props = crate::record::parse_properties(&h.properties);
        assert_eq!(props.len(), 5);
        assert_eq!(props[2].0, "UNIQ_KEY");
    }

    #[test]
    fn captured_ali_ons_v2_send_parses() {
        // remoting.md §3.2 [cap]: single letters, JS numbers and booleans.
        let e = ext_of_json(
            r#"{"code":310,"language":"JAVA","opaque":3,"flag":0,"version":121,"extFields":{"a":"PID_ONS","b":"TopicTest","c":"TBW102","d":4,"e":1,"f":0,"g":1796150197555,"h":0,"i":"TAGS\u0001null\u0002","j":0,"k":false}}"#,
        );
        let h = SendHeader::parse(request::SEND_MESSAGE_V2, Ext(&e)).unwrap();
        assert_eq!((h.topic.as_str(), h.queue_id), ("TopicTest", 1));
        assert!(!h.batch);
        assert!(
            SendHeader::parse(request::SEND_BATCH_MESSAGE, Ext(&e))
                .unwrap()
                .batch
        );
        let mut cpp_batch = e.clone();
        cpp_batch.insert("m".into(), "1".into());
        assert!(
            SendHeader::parse(request::SEND_MESSAGE_V2, Ext(&cpp_batch))
                .unwrap()
                .batch
        );
    }

    #[test]
    fn captured_cpp_pull_parses() {
        // remoting.md §3.5: C++ sends queueId, maxMsgNums and sysFlag as numbers.
        let e = ext_of_json(
            r#"{"code":11,"extFields":{"commitOffset":"-1","consumerGroup":"CID","expressionType":"TAG","maxMsgNums":32,"queueId":3,"queueOffset":"0","subVersion":"1796150125982","subscription":"TagA || TagB","suspendTimeoutMillis":"15000","sysFlag":6,"topic":"TopicTest"},"flag":0,"language":"CPP","opaque":9,"remark":"","version":63}"#,
        );
        let h = PullHeader::parse(Ext(&e)).unwrap();
        assert!(h.suspend() && h.has_subscription() && !h.commit());
        assert_eq!(h.queue_id, 3);
        assert_eq!(h.suspend_timeout_millis, 15_000);
    }

    #[test]
    fn missing_required_fields_are_named() {
        let e = BTreeMap::new();
        assert_eq!(
            PullHeader::parse(Ext(&e)).unwrap_err().to_string(),
            "the custom field consumerGroup is null"
        );
        assert!(SendBackHeader::parse(Ext(&e)).is_err());
        assert!(UnregisterHeader::parse(Ext(&e)).is_err());
    }

    fn s() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9%_-]{1,12}"
    }

    proptest! {
        #[test]
        fn send_headers_round_trip(group in s(), topic in s(), q in -1i32..64, sys in 0i32..16,
            born in any::<i64>(), flag in any::<i32>(), props in "[ -~\u{1}\u{2}]{0,30}",
            tries in 0i32..20, max in proptest::option::of(0i32..20), batch in any::<bool>()) {
            let h = SendHeader { producer_group: group, topic, default_topic: "TBW102".into(),
                default_topic_queue_nums: 4, queue_id: q, sys_flag: sys, born_timestamp: born, flag,
                properties: props, reconsume_times: tries, max_reconsume_times: max, batch };
            let ext = h.to_ext();
            prop_assert_eq!(SendHeader::parse(request::SEND_MESSAGE, Ext(&ext)).unwrap(), h);
        }

        #[test]
        fn other_headers_round_trip(group in s(), topic in s(), q in 0i32..64, off in any::<i64>(),
            flags in 0i32..32, sub in proptest::option::of(s()), ts in proptest::option::of(any::<i64>()),
            level in -1i32..18, unique in any::<bool>()) {
            let p = PullHeader { consumer_group: group.clone(), topic: topic.clone(), queue_id: q,
                queue_offset: off, max_msg_nums: 32, sys_flag: flags, commit_offset: off,
                suspend_timeout_millis: 15_000, subscription: sub.clone(), expression_type: Some("TAG".into()) };
            prop_assert_eq!(PullHeader::parse(Ext(&p.to_ext())).unwrap(), p);
            let g = GroupQueueHeader { consumer_group: group.clone(), topic: topic.clone(), queue_id: q, commit_offset: ts };
            prop_assert_eq!(GroupQueueHeader::parse(Ext(&g.to_ext())).unwrap(), g);
            let qh = QueueHeader { topic: topic.clone(), queue_id: q, timestamp: ts };
            prop_assert_eq!(QueueHeader::parse(Ext(&qh.to_ext())).unwrap(), qh);
            let b = SendBackHeader { offset: off, group: group.clone(), delay_level: level,
                origin_msg_id: sub.clone(), max_reconsume_times: Some(q) };
            prop_assert_eq!(SendBackHeader::parse(Ext(&b.to_ext())).unwrap(), b);
            let u = UnregisterHeader { client_id: group.clone(), producer_group: sub.clone(), consumer_group: Some(topic.clone()) };
            prop_assert_eq!(UnregisterHeader::parse(Ext(&u.to_ext())).unwrap(), u);
            let m = QueryMessageHeader { topic, key: group, max_num: q, begin_timestamp: off,
                end_timestamp: off, unique };
            prop_assert_eq!(QueryMessageHeader::parse(Ext(&m.to_ext())).unwrap(), m);
        }
    }
}
