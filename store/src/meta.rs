//! The `meta` column family's keys: one closed schema, so a key is spelled (and parsed) in
//! exactly one place.
//!
//! | key | value |
//! |---|---|
//! | `applied` | term u64 LE, index u64 LE |
//! | `raft/` name | the raft crate's (vote, membership, purge point, group id) |
//! | `qn/` topic `\0` queue u32 BE | next offset u64 LE |
//! | `topic/` name | creation index, topic config |
//! | `group/` name | consumer group config |
//! | `lock/` group `\0` topic `\0` queue u32 BE | client u16+UTF-8, expiry ms u64 |
//! | `fireseq` | timer deliveries applied so far, u64 LE |
//! | `rejected/` log index u64 BE | empty: an entry whose messages were not stored |
//! | `auth/` access key | the broker's encoded user |
//! | `tx/` log index u64 BE, slot u32 BE | a pending half message |

/// Keys of the `meta` column family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaKey<'a> {
    /// The store's last applied `(term, index)`.
    Applied,
    /// Opaque state of the raft crate (vote, membership, purge point, ...) by name.
    Raft(&'a str),
    /// Next offset of a queue.
    QueueNext(&'a str, u32),
    /// A topic: creation index and configuration.
    Topic(&'a str),
    /// A consumer group's configuration.
    Group(&'a str),
    /// An orderly consumer's lock of (group, topic, queue).
    Lock(&'a str, &'a str, u32),
    /// How many timer deliveries were applied.
    FireSeq,
    /// A log entry whose messages were refused at apply (a stale timer delivery, the end
    /// of a transaction already ended): rebuilding the derived indexes skips it.
    Refused(u64),
    /// An access-control record.
    Auth(&'a str),
    /// A pending half message (transaction) at (log index, slot).
    TxHalf(u64, u32),
}

/// The families of [`MetaKey`] that hold many keys, for scans and range deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaPrefix {
    /// [`MetaKey::Raft`].
    Raft,
    /// [`MetaKey::QueueNext`].
    QueueNext,
    /// [`MetaKey::Topic`].
    Topic,
    /// [`MetaKey::Group`].
    Group,
    /// [`MetaKey::Lock`].
    Lock,
    /// [`MetaKey::Refused`].
    Refused,
    /// [`MetaKey::Auth`].
    Auth,
    /// [`MetaKey::TxHalf`].
    TxHalf,
}

impl MetaPrefix {
    /// The bytes every key of the family starts with.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            MetaPrefix::Raft => b"raft/",
            MetaPrefix::QueueNext => b"qn/",
            MetaPrefix::Topic => b"topic/",
            MetaPrefix::Group => b"group/",
            MetaPrefix::Lock => b"lock/",
            MetaPrefix::Refused => b"rejected/",
            MetaPrefix::Auth => b"auth/",
            MetaPrefix::TxHalf => b"tx/",
        }
    }

    /// The first key past the family (for range deletes).
    pub fn end(self) -> Vec<u8> {
        crate::index::prefix_end(self.bytes())
    }
}

const APPLIED: &[u8] = b"applied";
const FIRE_SEQ: &[u8] = b"fireseq";

impl<'a> MetaKey<'a> {
    /// The encoded key.
    pub fn encode(&self) -> Vec<u8> {
        let p = |f: MetaPrefix| f.bytes();
        match self {
            MetaKey::Applied => APPLIED.to_vec(),
            MetaKey::FireSeq => FIRE_SEQ.to_vec(),
            MetaKey::Raft(name) => [p(MetaPrefix::Raft), name.as_bytes()].concat(),
            MetaKey::QueueNext(topic, q) => [
                p(MetaPrefix::QueueNext),
                topic.as_bytes(),
                b"\0",
                &q.to_be_bytes(),
            ]
            .concat(),
            MetaKey::Topic(t) => [p(MetaPrefix::Topic), t.as_bytes()].concat(),
            MetaKey::Group(g) => [p(MetaPrefix::Group), g.as_bytes()].concat(),
            MetaKey::Lock(group, topic, q) => [
                p(MetaPrefix::Lock),
                group.as_bytes(),
                b"\0",
                topic.as_bytes(),
                b"\0",
                &q.to_be_bytes(),
            ]
            .concat(),
            MetaKey::Refused(i) => [p(MetaPrefix::Refused), &i.to_be_bytes()].concat(),
            MetaKey::Auth(k) => [p(MetaPrefix::Auth), k.as_bytes()].concat(),
            MetaKey::TxHalf(i, slot) => [
                p(MetaPrefix::TxHalf),
                &i.to_be_bytes()[..],
                &slot.to_be_bytes(),
            ]
            .concat(),
        }
    }

    /// Parses an encoded key; `None` for bytes no [`MetaKey`] encodes to.
    pub fn decode(k: &'a [u8]) -> Option<Self> {
        if k == APPLIED {
            return Some(MetaKey::Applied);
        }
        if k == FIRE_SEQ {
            return Some(MetaKey::FireSeq);
        }
        let s = |b: &'a [u8]| std::str::from_utf8(b).ok();
        let be32 = |b: &[u8]| <[u8; 4]>::try_from(b).ok().map(u32::from_be_bytes);
        let be64 = |b: &[u8]| <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes);
        let rest = |f: MetaPrefix| k.strip_prefix(f.bytes());
        if let Some(r) = rest(MetaPrefix::Raft) {
            return s(r).map(MetaKey::Raft);
        }
        if let Some(r) = rest(MetaPrefix::QueueNext) {
            let (topic, q) = r.split_at_checked(r.len().checked_sub(5)?)?;
            let q = q.strip_prefix(b"\0")?;
            return Some(MetaKey::QueueNext(s(topic)?, be32(q)?));
        }
        if let Some(r) = rest(MetaPrefix::Topic) {
            return s(r).map(MetaKey::Topic);
        }
        if let Some(r) = rest(MetaPrefix::Group) {
            return s(r).map(MetaKey::Group);
        }
        if let Some(r) = rest(MetaPrefix::Lock) {
            let g_end = r.iter().position(|&b| b == 0)?;
            let (group, r) = (&r[..g_end], &r[g_end + 1..]);
            let (topic, q) = r.split_at_checked(r.len().checked_sub(5)?)?;
            let q = q.strip_prefix(b"\0")?;
            return Some(MetaKey::Lock(s(group)?, s(topic)?, be32(q)?));
        }
        if let Some(r) = rest(MetaPrefix::Refused) {
            return be64(r).map(MetaKey::Refused);
        }
        if let Some(r) = rest(MetaPrefix::Auth) {
            return s(r).map(MetaKey::Auth);
        }
        if let Some(r) = rest(MetaPrefix::TxHalf) {
            if r.len() != 12 {
                return None;
            }
            return Some(MetaKey::TxHalf(be64(&r[..8])?, be32(&r[8..])?));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_key_decodes_to_itself() {
        let keys = [
            MetaKey::Applied,
            MetaKey::FireSeq,
            MetaKey::Raft("vote"),
            MetaKey::QueueNext("orders", 7),
            MetaKey::QueueNext("a\0b", 0),
            MetaKey::Topic("orders"),
            MetaKey::Group("g"),
            MetaKey::Lock("g", "orders", 3),
            MetaKey::Refused(42),
            MetaKey::Auth("ak"),
            MetaKey::TxHalf(9, 2),
        ];
        for k in keys {
            let enc = k.encode();
            assert_eq!(MetaKey::decode(&enc), Some(k.clone()), "{k:?}");
        }
    }

    #[test]
    fn keys_of_one_family_sort_by_their_numbers() {
        let a = MetaKey::TxHalf(1, 9).encode();
        let b = MetaKey::TxHalf(2, 0).encode();
        assert!(a < b);
        assert!(a.starts_with(MetaPrefix::TxHalf.bytes()));
        assert!(a < MetaPrefix::TxHalf.end());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(k in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Some(key) = MetaKey::decode(&k) {
                prop_assert_eq!(key.encode(), k);
            }
        }
    }
}
