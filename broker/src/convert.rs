//! Stored messages as consumers receive them.

use raftmq_proto::message::PROP_DELIVER_AT;
use raftmq_proto::{
    BrokerGroup, FoundMessage, Message, MessageExt, MsgId, Offset, QueueId, TopicName,
};
use raftmq_store::StoredMessage;

use crate::core::query::Found;

/// Converts a stored message of broker group `group`, tagged `group_tag` in message ids.
pub fn message_ext(group: &str, group_tag: u32, m: StoredMessage) -> MessageExt {
    let v = &m.view;
    MessageExt {
        msg_id: MsgId::new(group_tag, m.log_index, m.slot).to_string(),
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

/// Converts a message found by id (see [`message_ext`]).
pub fn found_message(group: &str, group_tag: u32, f: Found) -> FoundMessage {
    match f {
        Found::Stored(m) => FoundMessage::Stored(message_ext(group, group_tag, m)),
        Found::Scheduled { at, view, due_ms } => FoundMessage::Scheduled {
            msg_id: MsgId::new(group_tag, at.log_index, at.slot).to_string(),
            broker_group: BrokerGroup::from(group),
            queue_id: QueueId(view.queue_id),
            store_ms: view.store_ms,
            message: Message {
                topic: TopicName::from(view.topic()),
                body: view.body.clone(),
                tag: view.tag().to_owned(),
                keys: view.keys().map(str::to_owned).collect(),
                properties: view
                    .properties()
                    .filter(|(k, _)| *k != PROP_DELIVER_AT)
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                flag: view.flags,
                delay_level: 0,
                deliver_at_ms: due_ms,
            },
        },
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
