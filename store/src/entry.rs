//! The payload of one commit-log record: what a Raft entry carries.
//!
//! ```text
//! payload := version u8 (=1) | kind u8 | body
//! kind 0 = blank (a new leader's no-op)        body: empty
//! kind 1 = membership                          body: opaque, owned by the raft crate
//! kind 2 = messages                            body: a message batch (crate::batch)
//! kind 3 = command                             body: a state-machine command (below)
//! ```

use bytes::Bytes;
use raftmq_proto::{GroupConfig, GroupName, Offset, Perm, QueueId, TopicConfig, TopicName};

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// Format version of the entry envelope.
pub const ENTRY_VERSION: u8 = 1;

const KIND_BLANK: u8 = 0;
const KIND_MEMBERSHIP: u8 = 1;
const KIND_MESSAGES: u8 = 2;
const KIND_COMMAND: u8 = 3;

/// A decoded entry payload; byte bodies are zero-copy slices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryPayload {
    /// A no-op a new leader commits.
    Blank,
    /// A membership change, encoded by the raft crate.
    Membership(Bytes),
    /// A batch of messages (see [`crate::batch`]).
    Messages(Bytes),
    /// A metadata command.
    Command(Command),
}

/// A state-machine command: every metadata change goes through the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create or update a topic.
    UpsertTopic(TopicConfig),
    /// Delete a topic and its queues.
    DeleteTopic(TopicName),
    /// Create or update a consumer group.
    UpsertGroup(GroupConfig),
    /// Delete a consumer group and its offsets.
    DeleteGroup(GroupName),
    /// Commit consumer offsets of one group.
    CommitOffsets {
        /// The consumer group.
        group: GroupName,
        /// New offsets: the next offset to consume in each queue.
        offsets: Vec<(TopicName, QueueId, Offset)>,
    },
}

const CMD_UPSERT_TOPIC: u8 = 1;
const CMD_DELETE_TOPIC: u8 = 2;
const CMD_UPSERT_GROUP: u8 = 3;
const CMD_DELETE_GROUP: u8 = 4;
const CMD_COMMIT_OFFSETS: u8 = 5;

impl EntryPayload {
    /// Encodes the payload.
    ///
    /// # Errors
    /// A field too long for its length prefix.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        w.u8(ENTRY_VERSION);
        match self {
            EntryPayload::Blank => {
                w.u8(KIND_BLANK);
            }
            EntryPayload::Membership(b) => {
                w.u8(KIND_MEMBERSHIP).raw(b);
            }
            EntryPayload::Messages(b) => {
                w.u8(KIND_MESSAGES).raw(b);
            }
            EntryPayload::Command(c) => {
                w.u8(KIND_COMMAND);
                c.encode_into(&mut w)?;
            }
        }
        Ok(w.finish())
    }

    /// Decodes a payload.
    ///
    /// # Errors
    /// [`Error::Codec`] for anything malformed; never panics.
    pub fn decode(buf: Bytes) -> Result<Self> {
        let mut r = Reader::new(buf, "log entry");
        let version = r.u8()?;
        if version != ENTRY_VERSION {
            return Err(Error::codec(
                "log entry",
                format!("version {version}, this build reads {ENTRY_VERSION}"),
            ));
        }
        match r.u8()? {
            KIND_BLANK => {
                r.finish()?;
                Ok(EntryPayload::Blank)
            }
            KIND_MEMBERSHIP => Ok(EntryPayload::Membership(r.rest())),
            KIND_MESSAGES => Ok(EntryPayload::Messages(r.rest())),
            KIND_COMMAND => {
                let c = Command::decode_from(&mut r)?;
                r.finish()?;
                Ok(EntryPayload::Command(c))
            }
            k => Err(Error::codec("log entry", format!("unknown kind {k}"))),
        }
    }
}

/// Encodes a topic configuration (also the `meta` column family's value layout).
pub(crate) fn encode_topic(w: &mut Writer, t: &TopicConfig) -> Result<()> {
    w.bytes16(t.name.as_str().as_bytes())?;
    w.u32(t.read_queues)
        .u32(t.write_queues)
        .u8(t.perm.0)
        .u8(u8::from(t.order));
    Ok(())
}

pub(crate) fn decode_topic(r: &mut Reader) -> Result<TopicConfig> {
    Ok(TopicConfig {
        name: TopicName(r.str16()?),
        read_queues: r.u32()?,
        write_queues: r.u32()?,
        perm: Perm(r.u8()?),
        order: r.u8()? != 0,
    })
}

pub(crate) fn encode_group(w: &mut Writer, g: &GroupConfig) -> Result<()> {
    w.bytes16(g.name.as_str().as_bytes())?;
    w.u8(u8::from(g.consume_enable))
        .u8(u8::from(g.broadcast))
        .u32(g.retry_max_times);
    Ok(())
}

pub(crate) fn decode_group(r: &mut Reader) -> Result<GroupConfig> {
    Ok(GroupConfig {
        name: GroupName(r.str16()?),
        consume_enable: r.u8()? != 0,
        broadcast: r.u8()? != 0,
        retry_max_times: r.u32()?,
    })
}

impl Command {
    fn encode_into(&self, w: &mut Writer) -> Result<()> {
        match self {
            Command::UpsertTopic(t) => {
                w.u8(CMD_UPSERT_TOPIC);
                encode_topic(w, t)?;
            }
            Command::DeleteTopic(t) => {
                w.u8(CMD_DELETE_TOPIC);
                w.bytes16(t.as_str().as_bytes())?;
            }
            Command::UpsertGroup(g) => {
                w.u8(CMD_UPSERT_GROUP);
                encode_group(w, g)?;
            }
            Command::DeleteGroup(g) => {
                w.u8(CMD_DELETE_GROUP);
                w.bytes16(g.as_str().as_bytes())?;
            }
            Command::CommitOffsets { group, offsets } => {
                w.u8(CMD_COMMIT_OFFSETS);
                w.bytes16(group.as_str().as_bytes())?;
                w.u32(u32::try_from(offsets.len()).map_err(|_| {
                    Error::Invalid(format!("{} offsets in one commit", offsets.len()))
                })?);
                for (t, q, o) in offsets {
                    w.bytes16(t.as_str().as_bytes())?;
                    w.u32(q.0).u64(o.0);
                }
            }
        }
        Ok(())
    }

    fn decode_from(r: &mut Reader) -> Result<Self> {
        Ok(match r.u8()? {
            CMD_UPSERT_TOPIC => Command::UpsertTopic(decode_topic(r)?),
            CMD_DELETE_TOPIC => Command::DeleteTopic(TopicName(r.str16()?)),
            CMD_UPSERT_GROUP => Command::UpsertGroup(decode_group(r)?),
            CMD_DELETE_GROUP => Command::DeleteGroup(GroupName(r.str16()?)),
            CMD_COMMIT_OFFSETS => {
                let group = GroupName(r.str16()?);
                let n = r.u32()?;
                let mut offsets = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    offsets.push((TopicName(r.str16()?), QueueId(r.u32()?), Offset(r.u64()?)));
                }
                Command::CommitOffsets { group, offsets }
            }
            c => return Err(Error::codec("command", format!("unknown command {c}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(p: EntryPayload) {
        let enc = p.encode().unwrap();
        assert_eq!(EntryPayload::decode(Bytes::from(enc)).unwrap(), p);
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(EntryPayload::Blank);
        round_trip(EntryPayload::Membership(Bytes::from_static(b"members")));
        round_trip(EntryPayload::Messages(Bytes::from_static(
            b"\x01\x00\x00\x00\x00",
        )));
        round_trip(EntryPayload::Command(Command::UpsertTopic(
            TopicConfig::new("T", 8),
        )));
        round_trip(EntryPayload::Command(Command::DeleteTopic("T".into())));
        round_trip(EntryPayload::Command(Command::UpsertGroup(
            GroupConfig::new("g"),
        )));
        round_trip(EntryPayload::Command(Command::DeleteGroup("g".into())));
        round_trip(EntryPayload::Command(Command::CommitOffsets {
            group: "g".into(),
            offsets: vec![("T".into(), QueueId(3), Offset(99))],
        }));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = EntryPayload::decode(Bytes::from(bytes));
        }
    }
}
