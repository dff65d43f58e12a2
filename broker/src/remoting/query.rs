//! QUERY_MESSAGE (12) by key or by the client's message id (UNIQ_KEY), and
//! VIEW_MESSAGE_BY_ID (33) by commit-log offset. Both resolve on every replica: the
//! offset names a log position, and keys and UNIQ_KEYs are indexed on every node.

use raftmq_proto::message::PROP_UNIQ_KEY;
use raftmq_proto::TopicName;
use raftmq_remoting::codes::response;
use raftmq_remoting::requests::QueryMessageHeader;
use raftmq_remoting::{Ext, RemotingCommand};

use super::pull::records_body;
use super::{bad_request, error_reply, reply, Session};
use crate::convert::now_ms;
use crate::core::query::MsgLocation;

/// VIEW_MESSAGE_BY_ID (33).
pub async fn view_message(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let offset = match Ext(&req.ext).i64("offset") {
        Ok(o) => o,
        Err(e) => return bad_request(req, &e),
    };
    let not_found = || {
        reply(
            req,
            response::SYSTEM_ERROR,
            format!("can not find message by the offset, {offset}"),
        )
    };
    let Some(at) = MsgLocation::of_physical_offset(offset) else {
        return not_found();
    };
    match s.broker.message_at(at).await {
        Ok(Some(m)) => match records_body(std::slice::from_ref(&m), s.store_host) {
            Ok(b) => RemotingCommand::response_to(req, response::SUCCESS).with_body(b.freeze()),
            Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
        },
        Ok(None) => not_found(),
        Err(e) => error_reply(req, &e),
    }
}

/// QUERY_MESSAGE (12).
pub async fn query_message(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let h = match QueryMessageHeader::parse(Ext(&req.ext)) {
        Ok(h) => h,
        Err(e) => return bad_request(req, &e),
    };
    let max = u32::try_from(h.max_num).unwrap_or(32).clamp(1, 1024);
    let found = match s
        .broker
        .query_by_key(TopicName::from(h.topic.as_str()), h.key.clone(), max)
        .await
    {
        Ok(f) => f,
        Err(e) => return error_reply(req, &e),
    };
    let (begin, end) = (h.begin_timestamp, h.end_timestamp);
    let found: Vec<_> = found
        .into_iter()
        .filter(|m| (begin..=end).contains(&(m.view.store_ms as i64)))
        .filter(|m| {
            if h.unique {
                m.view.property(PROP_UNIQ_KEY) == Some(h.key.as_str())
            } else {
                m.view.keys().any(|k| k == h.key)
            }
        })
        .collect();
    if found.is_empty() {
        return reply(
            req,
            response::QUERY_NOT_FOUND,
            "can not find message, maybe time range not correct",
        );
    }
    match records_body(&found, s.store_host) {
        Ok(b) => RemotingCommand::response_to(req, response::SUCCESS)
            .with_ext("indexLastUpdateTimestamp", now_ms())
            .with_ext("indexLastUpdatePhyoffset", 0)
            .with_body(b.freeze()),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}
