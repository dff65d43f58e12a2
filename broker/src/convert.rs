//! Stored messages as consumers receive them.

use raftmq_proto::{BrokerGroup, MessageExt, MsgId, Offset, QueueId, TopicName};
use raftmq_store::StoredMessage;

/// Converts a stored message of broker group `group`.
pub fn message_ext(group: &str, m: StoredMessage) -> MessageExt {
    let v = &m.view;
    MessageExt {
        msg_id: MsgId::new(group, m.log_index, m.slot).to_string(),
        topic: TopicName::from(v.topic()),
        broker_group: BrokerGroup::from(group),
        queue_id: QueueId(m.queue_id),
        queue_offset: Offset(m.queue_offset),
        tag: v.tag().to_owned(),
        keys: v.keys().map(str::to_owned).collect(),
        properties: v
            .properties()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        body: v.body.clone(),
        flag: v.flags,
        born_ms: v.born_ms,
        store_ms: v.store_ms,
        reconsume_times: v.reconsume_times,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
