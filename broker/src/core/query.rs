//! Messages by location (id) and by key.

use raftmq_proto::{MsgId, TopicName};
use raftmq_store::StoredMessage;

use super::{blocking, Broker, BrokerError};

/// Bits of a commit-log offset (as RocketMQ clients see it) that hold the slot.
pub const SLOT_BITS: u32 = 20;

/// Where a message is stored: the same on every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgLocation {
    /// Raft log index of its entry.
    pub log_index: u64,
    /// Position in the entry.
    pub slot: u32,
}

impl MsgLocation {
    /// The location a native message id names, if it names one of `group`'s messages.
    pub fn of_native_id(id: &MsgId, group: &str) -> Option<Self> {
        (id.group_hash == raftmq_proto::message::group_hash(group)).then_some(Self {
            log_index: id.log_index,
            slot: id.slot,
        })
    }

    /// The "commit-log offset" RocketMQ clients see: the log index and the slot packed
    /// into one positive `i64` (`index << 20 | slot`), identical on every replica, so
    /// CONSUMER_SEND_MSG_BACK and VIEW_MESSAGE_BY_ID resolve on any node. Entries carry
    /// fewer than 2^20 messages (the send batcher's bound).
    pub fn physical_offset(self) -> i64 {
        ((self.log_index << SLOT_BITS) | u64::from(self.slot)) as i64
    }

    /// The location a commit-log offset names (see [`MsgLocation::physical_offset`]).
    pub fn of_physical_offset(offset: i64) -> Option<Self> {
        let o = u64::try_from(offset).ok()?;
        Some(Self {
            log_index: o >> SLOT_BITS,
            slot: (o & ((1 << SLOT_BITS) - 1)) as u32,
        })
    }
}

impl Broker {
    /// The message at a location, if still retained.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn message_at(&self, at: MsgLocation) -> Result<Option<StoredMessage>, BrokerError> {
        let store = self.shared.store.clone();
        blocking(move || store.message_at(at.log_index, at.slot)).await
    }

    /// A message by its native id.
    ///
    /// # Errors
    /// `Invalid` (not an id, or another group's), `MessageNotFound`.
    pub async fn get_message(&self, msg_id: &str) -> Result<StoredMessage, BrokerError> {
        let id = MsgId::parse(msg_id).ok_or_else(|| {
            BrokerError::invalid(format!("{msg_id:?} is not a message id (32 hex digits)"))
        })?;
        let group = self.group();
        let at = MsgLocation::of_native_id(&id, group.as_str()).ok_or_else(|| {
            BrokerError::invalid(format!(
                "message {msg_id} was not stored by broker group {group}"
            ))
        })?;
        self.message_at(at)
            .await?
            .ok_or_else(|| BrokerError::MessageNotFound(msg_id.to_owned()))
    }

    /// Messages with a key, oldest first (at most `max`, at most 1024).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn query_by_key(
        &self,
        topic: TopicName,
        key: String,
        max: u32,
    ) -> Result<Vec<StoredMessage>, BrokerError> {
        let store = self.shared.store.clone();
        let max = max.clamp(1, 1024) as usize;
        blocking(move || {
            let mut out = Vec::new();
            for (index, slot) in store.positions_by_key(topic.as_str(), &key, max)? {
                if let Some(m) = store.message_at(index, slot)? {
                    out.push(m);
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_offsets_round_trip() {
        for (i, s) in [(1u64, 0u32), (123_456, 7), ((1 << 43) - 1, (1 << 20) - 1)] {
            let at = MsgLocation {
                log_index: i,
                slot: s,
            };
            assert!(at.physical_offset() >= 0);
            assert_eq!(
                MsgLocation::of_physical_offset(at.physical_offset()),
                Some(at)
            );
        }
        assert_eq!(MsgLocation::of_physical_offset(-1), None);
        let id = MsgId::new("broker-a", 9, 3);
        assert!(MsgLocation::of_native_id(&id, "broker-a").is_some());
        assert!(MsgLocation::of_native_id(&id, "broker-b").is_none());
    }
}
