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
use raftmq_proto::{
    ConsumerGroup, ConsumerGroupConfig, Offset, Perm, QueueId, TopicConfig, TopicName,
};

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::index::TimerKey;

fn count32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Invalid(format!("{n} {what} in one command")))
}

fn encode_queues(w: &mut Writer, queues: &[(TopicName, QueueId)]) -> Result<()> {
    w.u32(count32(queues.len(), "queues")?);
    for (t, q) in queues {
        w.bytes16(t.as_str().as_bytes())?;
        w.u32(q.0);
    }
    Ok(())
}

fn decode_queues(r: &mut Reader) -> Result<Vec<(TopicName, QueueId)>> {
    let n = r.u32()?;
    let mut out = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        out.push((TopicName(r.str16()?), QueueId(r.u32()?)));
    }
    Ok(out)
}

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
    UpsertGroup(ConsumerGroupConfig),
    /// Delete a consumer group and its offsets.
    DeleteGroup(ConsumerGroup),
    /// Commit consumer offsets of one group.
    CommitOffsets {
        /// The consumer group.
        group: ConsumerGroup,
        /// New offsets: the next offset to consume in each queue.
        offsets: Vec<(TopicName, QueueId, Offset)>,
    },
    /// Deliver due delayed messages: `batch` holds them as ordinary messages of their real
    /// topics; `fired` are the timers they came from, removed in the same entry. `seq` must
    /// equal the state machine's fire sequence or the whole entry is a no-op: a scheduler
    /// that raced with another (around a failover) cannot deliver twice.
    FireTimers {
        /// The fire sequence this entry was built against.
        seq: u64,
        /// The timers delivered (or dropped, when their message is gone).
        fired: Vec<TimerKey>,
        /// The messages to store, as a message batch.
        batch: Bytes,
    },
    /// Lock queues for one orderly consumer (granted when free, expired, or already its).
    LockQueues {
        /// Consumer group.
        group: ConsumerGroup,
        /// Client instance.
        client: String,
        /// Queues wanted.
        queues: Vec<(TopicName, QueueId)>,
        /// The leader's clock when proposing, ms since the Unix epoch.
        now_ms: u64,
        /// Lease length, ms.
        lease_ms: u64,
    },
    /// Release queues a client holds.
    UnlockQueues {
        /// Consumer group.
        group: ConsumerGroup,
        /// Client instance.
        client: String,
        /// Queues to release.
        queues: Vec<(TopicName, QueueId)>,
    },
    /// Set an access-control record (a user, encoded by the broker): opaque to the store,
    /// replicated and snapshotted like the rest of the metadata.
    PutAuth {
        /// The record's key (an access key).
        key: String,
        /// The encoded record.
        value: Bytes,
    },
    /// Delete an access-control record.
    DeleteAuth {
        /// The record's key.
        key: String,
    },
    /// End transactions: each commit stores its message of `batch` (the half message as
    /// consumers will see it, in the order of the commits), each rollback drops its half
    /// message. When any of them is no longer pending the whole entry is a no-op (the
    /// leader proposes the rest again one by one), so a transaction ends once however
    /// many decisions reach the log.
    EndTransactions {
        /// `((log index, slot) of the half message, commit?)`, each half message once.
        ends: Vec<((u64, u32), bool)>,
        /// The committed messages, one per commit in `ends`, in order.
        batch: Bytes,
    },
    /// The leader asked the producer group about these half messages (counted towards
    /// `transaction_check_max`).
    CheckTransactions {
        /// Half messages checked.
        halves: Vec<(u64, u32)>,
        /// The leader's clock, ms since the Unix epoch.
        now_ms: u64,
    },
}

const CMD_UPSERT_TOPIC: u8 = 1;
const CMD_DELETE_TOPIC: u8 = 2;
const CMD_UPSERT_GROUP: u8 = 3;
const CMD_DELETE_GROUP: u8 = 4;
const CMD_COMMIT_OFFSETS: u8 = 5;
const CMD_FIRE_TIMERS: u8 = 6;
const CMD_LOCK_QUEUES: u8 = 7;
const CMD_UNLOCK_QUEUES: u8 = 8;
const CMD_PUT_AUTH: u8 = 9;
const CMD_DELETE_AUTH: u8 = 10;
const CMD_END_TRANSACTIONS: u8 = 11;
const CMD_CHECK_TRANSACTIONS: u8 = 12;

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

    /// The message batch an entry may store: a batch of messages, delivered timers or a
    /// committed transaction (whether apply stored it is the state machine's to say).
    pub fn into_message_batch(self) -> Option<Bytes> {
        match self {
            EntryPayload::Messages(b)
            | EntryPayload::Command(Command::FireTimers { batch: b, .. })
            | EntryPayload::Command(Command::EndTransactions { batch: b, .. }) => Some(b),
            _ => None,
        }
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

pub(crate) fn encode_group(w: &mut Writer, g: &ConsumerGroupConfig) -> Result<()> {
    w.bytes16(g.name.as_str().as_bytes())?;
    w.u8(u8::from(g.consume_enable))
        .u8(u8::from(g.broadcast))
        .u32(g.retry_max_times);
    Ok(())
}

pub(crate) fn decode_group(r: &mut Reader) -> Result<ConsumerGroupConfig> {
    Ok(ConsumerGroupConfig {
        name: ConsumerGroup(r.str16()?),
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
            Command::FireTimers { seq, fired, batch } => {
                w.u8(CMD_FIRE_TIMERS);
                w.u64(*seq);
                w.u32(count32(fired.len(), "timers")?);
                for t in fired {
                    w.raw(&t.encode());
                }
                w.bytes32(batch)?;
            }
            Command::LockQueues {
                group,
                client,
                queues,
                now_ms,
                lease_ms,
            } => {
                w.u8(CMD_LOCK_QUEUES);
                w.bytes16(group.as_str().as_bytes())?;
                w.bytes16(client.as_bytes())?;
                encode_queues(w, queues)?;
                w.u64(*now_ms).u64(*lease_ms);
            }
            Command::UnlockQueues {
                group,
                client,
                queues,
            } => {
                w.u8(CMD_UNLOCK_QUEUES);
                w.bytes16(group.as_str().as_bytes())?;
                w.bytes16(client.as_bytes())?;
                encode_queues(w, queues)?;
            }
            Command::PutAuth { key, value } => {
                w.u8(CMD_PUT_AUTH);
                w.bytes16(key.as_bytes())?;
                w.bytes32(value)?;
            }
            Command::DeleteAuth { key } => {
                w.u8(CMD_DELETE_AUTH);
                w.bytes16(key.as_bytes())?;
            }
            Command::EndTransactions { ends, batch } => {
                w.u8(CMD_END_TRANSACTIONS);
                w.u32(count32(ends.len(), "transaction ends")?);
                for ((i, slot), commit) in ends {
                    w.u64(*i).u32(*slot).u8(u8::from(*commit));
                }
                w.bytes32(batch)?;
            }
            Command::CheckTransactions { halves, now_ms } => {
                w.u8(CMD_CHECK_TRANSACTIONS);
                w.u32(count32(halves.len(), "half messages")?);
                for (i, slot) in halves {
                    w.u64(*i).u32(*slot);
                }
                w.u64(*now_ms);
            }
        }
        Ok(())
    }

    fn decode_from(r: &mut Reader) -> Result<Self> {
        Ok(match r.u8()? {
            CMD_UPSERT_TOPIC => Command::UpsertTopic(decode_topic(r)?),
            CMD_DELETE_TOPIC => Command::DeleteTopic(TopicName(r.str16()?)),
            CMD_UPSERT_GROUP => Command::UpsertGroup(decode_group(r)?),
            CMD_DELETE_GROUP => Command::DeleteGroup(ConsumerGroup(r.str16()?)),
            CMD_COMMIT_OFFSETS => {
                let group = ConsumerGroup(r.str16()?);
                let n = r.u32()?;
                let mut offsets = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    offsets.push((TopicName(r.str16()?), QueueId(r.u32()?), Offset(r.u64()?)));
                }
                Command::CommitOffsets { group, offsets }
            }
            CMD_FIRE_TIMERS => {
                let seq = r.u64()?;
                let n = r.u32()?;
                let mut fired = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    let raw = r.raw(20)?;
                    fired.push(
                        TimerKey::decode(&raw)
                            .ok_or_else(|| Error::codec("command", "bad timer key"))?,
                    );
                }
                Command::FireTimers {
                    seq,
                    fired,
                    batch: r.bytes32()?,
                }
            }
            CMD_LOCK_QUEUES => Command::LockQueues {
                group: ConsumerGroup(r.str16()?),
                client: r.str16()?,
                queues: decode_queues(r)?,
                now_ms: r.u64()?,
                lease_ms: r.u64()?,
            },
            CMD_UNLOCK_QUEUES => Command::UnlockQueues {
                group: ConsumerGroup(r.str16()?),
                client: r.str16()?,
                queues: decode_queues(r)?,
            },
            CMD_PUT_AUTH => Command::PutAuth {
                key: r.str16()?,
                value: r.bytes32()?,
            },
            CMD_DELETE_AUTH => Command::DeleteAuth { key: r.str16()? },
            CMD_END_TRANSACTIONS => {
                let n = r.u32()?;
                let mut ends = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    ends.push(((r.u64()?, r.u32()?), r.u8()? != 0));
                }
                Command::EndTransactions {
                    ends,
                    batch: r.bytes32()?,
                }
            }
            CMD_CHECK_TRANSACTIONS => {
                let n = r.u32()?;
                let mut halves = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    halves.push((r.u64()?, r.u32()?));
                }
                Command::CheckTransactions {
                    halves,
                    now_ms: r.u64()?,
                }
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
            ConsumerGroupConfig::new("g"),
        )));
        round_trip(EntryPayload::Command(Command::DeleteGroup("g".into())));
        round_trip(EntryPayload::Command(Command::CommitOffsets {
            group: "g".into(),
            offsets: vec![("T".into(), QueueId(3), Offset(99))],
        }));
        round_trip(EntryPayload::Command(Command::FireTimers {
            seq: 3,
            fired: vec![TimerKey {
                due_ms: 5,
                log_index: 6,
                slot: 7,
            }],
            batch: Bytes::from_static(b"batch"),
        }));
        round_trip(EntryPayload::Command(Command::LockQueues {
            group: "g".into(),
            client: "c1".into(),
            queues: vec![("T".into(), QueueId(1))],
            now_ms: 10,
            lease_ms: 60_000,
        }));
        round_trip(EntryPayload::Command(Command::UnlockQueues {
            group: "g".into(),
            client: "c1".into(),
            queues: vec![("T".into(), QueueId(1))],
        }));
        round_trip(EntryPayload::Command(Command::PutAuth {
            key: "alice".into(),
            value: Bytes::from_static(b"{\"user\":1}"),
        }));
        round_trip(EntryPayload::Command(Command::DeleteAuth {
            key: "alice".into(),
        }));
        round_trip(EntryPayload::Command(Command::EndTransactions {
            ends: vec![((12, 3), true), ((13, 0), false)],
            batch: Bytes::from_static(b"batch"),
        }));
        round_trip(EntryPayload::Command(Command::CheckTransactions {
            halves: vec![(12, 3), (14, 0)],
            now_ms: 99,
        }));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = EntryPayload::decode(Bytes::from(bytes));
        }
    }
}
