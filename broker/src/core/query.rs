//! Messages by location (id) and by key.

use raftmq_proto::message::PROP_UNIQ_KEY;
use raftmq_proto::{MsgId, TopicName};
use raftmq_store::{MessageView, Store, StoredMessage};

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
    /// The location a native message id names, if it names one of the messages of the
    /// group tagged `group_tag` ([`raftmq_proto::message::group_tag`]).
    pub fn of_native_id(id: &MsgId, group_tag: u32) -> Option<Self> {
        (id.group_tag == group_tag).then_some(Self {
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

/// A message found by id.
#[derive(Debug, Clone)]
pub enum Found {
    /// In its queue.
    Stored(StoredMessage),
    /// A delayed message waiting at `at` until `due_ms`.
    Scheduled {
        /// Where it waits.
        at: MsgLocation,
        /// The message.
        view: MessageView,
        /// When it is due, ms since the Unix epoch.
        due_ms: u64,
    },
}

/// Copies of a message looked at for one client message id: the first, a delayed one's
/// delivery and retries, with room to spare.
const MAX_COPIES: usize = 64;

/// The message a position holds: stored, or waiting for its time.
fn found_at(store: &Store, at: MsgLocation) -> Result<Option<Found>, raftmq_store::Error> {
    if let Some(m) = store.message_at(at.log_index, at.slot)? {
        return Ok(Some(Found::Stored(m)));
    }
    Ok(store
        .scheduled_at(at.log_index, at.slot)?
        .map(|(view, due_ms)| Found::Scheduled { at, view, due_ms }))
}

/// The message with client message id `uniq`: its first stored copy (a delayed message's
/// delivered one), else the copy still waiting.
fn found_by_unique_key(store: &Store, uniq: &str) -> Result<Option<Found>, raftmq_store::Error> {
    let mut waiting = None;
    for (log_index, slot) in store.positions_by_unique_key(uniq, MAX_COPIES)? {
        match found_at(store, MsgLocation { log_index, slot })? {
            Some(f @ Found::Stored(_)) => return Ok(Some(f)),
            Some(f) => waiting = waiting.or(Some(f)),
            None => {}
        }
    }
    Ok(waiting)
}

impl Broker {
    /// This group's part of message ids ([`raftmq_proto::message::group_tag`]).
    pub fn group_tag(&self) -> u32 {
        raftmq_proto::message::group_tag(
            self.shared.replica.group(),
            self.shared.replica.group_id(),
        )
    }

    /// The native id of the message at `at`.
    pub fn msg_id(&self, at: MsgLocation) -> MsgId {
        MsgId::new(self.group_tag(), at.log_index, at.slot)
    }

    /// The message at a location, if still retained.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn message_at(&self, at: MsgLocation) -> Result<Option<StoredMessage>, BrokerError> {
        let store = self.shared.store.clone();
        blocking(move || store.message_at(at.log_index, at.slot)).await
    }

    /// A message by its id in this group ([`MsgId`]) or by the client's message id
    /// (`UNIQ_KEY`). The id a delayed message's sender got names the copy that waits; once
    /// delivered, the delivered copy is found through its client message id.
    ///
    /// # Errors
    /// `MessageNotFound`, storage errors.
    pub async fn get_message(&self, msg_id: &str) -> Result<Found, BrokerError> {
        let at =
            MsgId::parse(msg_id).and_then(|id| MsgLocation::of_native_id(&id, self.group_tag()));
        let store = self.shared.store.clone();
        let uniq = msg_id.to_owned();
        let found = blocking(move || {
            let Some(at) = at else {
                return found_by_unique_key(&store, &uniq);
            };
            if let Some(f) = found_at(&store, at)? {
                return Ok(Some(f));
            }
            // Delivered (a delayed message): follow its client message id to the copy.
            match store.entry_message(at.log_index, at.slot)? {
                Some(v) => match v.property(PROP_UNIQ_KEY) {
                    Some(u) => found_by_unique_key(&store, u),
                    None => Ok(None),
                },
                None => Ok(None),
            }
        })
        .await?;
        found.ok_or_else(|| BrokerError::MessageNotFound(msg_id.to_owned()))
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
        let id = MsgId::new(7, 9, 3);
        assert!(MsgLocation::of_native_id(&id, 7).is_some());
        assert!(MsgLocation::of_native_id(&id, 8).is_none());
    }
}
