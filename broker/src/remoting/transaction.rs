//! Transactions over remoting: END_TRANSACTION (37) from producers, and
//! CHECK_TRANSACTION_STATE (39) pushed to a producer of the half message's group.
//!
//! The half message is addressed by its commit-log offset, which names the same Raft log
//! position on every replica ([`MsgLocation::physical_offset`]), so any node takes the
//! decision and forwards it to the leader.

use std::net::SocketAddrV4;

use raftmq_proto::transaction::{EndTransactionRequest, TransactionState};
use raftmq_proto::MsgId;
use raftmq_remoting::codes::{request, response};
use raftmq_remoting::msg_id::offset_msg_id;
use raftmq_remoting::RemotingCommand;
use raftmq_store::StoredMessage;

use super::{error_reply, reply, Session};
use crate::auth::Access;
use crate::core::query::MsgLocation;
use raftmq_proto::message::PROP_UNIQ_KEY;

/// RocketMQ's `commitOrRollback` values.
const COMMIT: i64 = 8;
const ROLLBACK: i64 = 12;
const UNKNOWN: i64 = 0;

/// END_TRANSACTION (37), usually oneway.
pub async fn end_transaction(s: &Session, req: &RemotingCommand) -> RemotingCommand {
    let num = |k: &str| req.ext_str(k).and_then(|v| v.parse::<i64>().ok());
    let (Some(offset), Some(decision)) = (num("commitLogOffset"), num("commitOrRollback")) else {
        return reply(
            req,
            response::SYSTEM_ERROR,
            "END_TRANSACTION needs commitLogOffset and commitOrRollback",
        );
    };
    let Some(at) = MsgLocation::of_physical_offset(offset) else {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!("commitLogOffset {offset} names no message"),
        );
    };
    let state = match decision {
        COMMIT => TransactionState::Commit,
        ROLLBACK => TransactionState::Rollback,
        UNKNOWN => TransactionState::Unknown,
        other => {
            return reply(
                req,
                response::SYSTEM_ERROR,
                format!("commitOrRollback {other} is none of 0, 8, 12"),
            )
        }
    };
    let msg_id = MsgId::new(s.broker.group_tag(), at.log_index, at.slot).to_string();
    if let Some(topic) = s.broker.pending_topic(&msg_id) {
        if let Err(e) = s.allow([Access::Pub(&topic)]) {
            return error_reply(req, &e);
        }
    }
    let end = EndTransactionRequest {
        producer_group: req.ext_str("producerGroup").unwrap_or("").to_owned(),
        msg_id,
        state,
        // C++ sends "0"/"1", Java "true"/"false".
        from_check: matches!(req.ext_str("fromTransactionCheck"), Some("true" | "1")),
    };
    let r = s
        .broker
        .on_leader(
            || s.broker.end_transaction(&s.conn, end.clone()),
            |c, cx| {
                let end = end.clone();
                async move { c.end_transaction(cx, end).await }
            },
        )
        .await;
    match r {
        Ok(outcome) => {
            tracing::debug!(?outcome, "remoting END_TRANSACTION");
            RemotingCommand::response_to(req, response::SUCCESS)
        }
        Err(e) => error_reply(req, &e),
    }
}

/// The CHECK_TRANSACTION_STATE request for a half message (a oneway push).
pub fn check_command(
    message: &StoredMessage,
    store_host: SocketAddrV4,
) -> Result<RemotingCommand, raftmq_remoting::CodecError> {
    let at = MsgLocation {
        log_index: message.log_index,
        slot: message.slot,
    };
    let offset = at.physical_offset();
    let uniq = message
        .view
        .property(PROP_UNIQ_KEY)
        .unwrap_or("")
        .to_owned();
    let body = super::pull::records_body(std::slice::from_ref(message), store_host)?;
    let mut cmd = RemotingCommand::request(request::CHECK_TRANSACTION_STATE, 0)
        .with_ext("commitLogOffset", offset)
        .with_ext("offsetMsgId", offset_msg_id(store_host, offset))
        .with_ext("msgId", &uniq)
        .with_ext("transactionId", &uniq)
        .with_ext("tranStateTableOffset", message.queue_offset)
        .with_body(body.freeze());
    cmd.flag = super::FLAG_ONEWAY;
    Ok(cmd)
}
