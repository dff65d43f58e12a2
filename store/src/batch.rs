//! The message batch: how the messages of one Raft entry are laid out.
//!
//! ```text
//! batch   := version u8 (=1) | count u32 | message{count}
//! message := len u32 (bytes after this field)
//!            | flags u32 | queue_id u32 | born_ms u64 | store_ms u64 | reconsume_times u32
//!            | topic: u16 len + UTF-8 | tag: u16 len + UTF-8 (empty = none)
//!            | keys: u16 count, each u16 len + UTF-8
//!            | properties: u16 count, each (u16 len + UTF-8 name, u16 len + UTF-8 value)
//!            | body: u32 len + bytes
//! ```
//! Integers are little-endian. Queue offsets are not stored: the state machine assigns
//! them at apply time, in log order, so every replica derives the same ones.
//! [`BatchReader`] decodes without copying: strings and bodies are slices of the entry.

use bytes::Bytes;

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// Format version of the batch layout.
pub const BATCH_VERSION: u8 = 1;

/// A message to encode, borrowing its fields.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Queue within the topic on this group.
    pub queue_id: u32,
    /// Tag, empty for none.
    pub tag: &'a str,
    /// Keys to index for query by key.
    pub keys: &'a [String],
    /// User and system properties.
    pub properties: &'a [(String, String)],
    /// The payload.
    pub body: &'a [u8],
    /// Producer clock when the message was created, ms since the Unix epoch.
    pub born_ms: u64,
    /// Leader clock when the message entered the log, ms since the Unix epoch.
    pub store_ms: u64,
    /// Application flag bits.
    pub flags: u32,
    /// How many times the message was consumed and failed.
    pub reconsume_times: u32,
}

/// Builds an encoded batch.
#[derive(Debug)]
pub struct BatchWriter {
    w: Writer,
    count: u32,
}

impl Default for BatchWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchWriter {
    /// An empty batch.
    pub fn new() -> Self {
        let mut w = Writer::with_capacity(4096);
        w.u8(BATCH_VERSION).u32(0);
        Self { w, count: 0 }
    }

    /// Appends one message.
    ///
    /// # Errors
    /// A field too long for its length prefix.
    pub fn push(&mut self, m: &MessageRef<'_>) -> Result<()> {
        let mut w = Writer::with_capacity(64 + m.body.len());
        w.u32(m.flags)
            .u32(m.queue_id)
            .u64(m.born_ms)
            .u64(m.store_ms)
            .u32(m.reconsume_times);
        w.bytes16(m.topic.as_bytes())?;
        w.bytes16(m.tag.as_bytes())?;
        w.u16(count16(m.keys.len(), "keys")?);
        for k in m.keys {
            w.bytes16(k.as_bytes())?;
        }
        w.u16(count16(m.properties.len(), "properties")?);
        for (k, v) in m.properties {
            w.bytes16(k.as_bytes())?;
            w.bytes16(v.as_bytes())?;
        }
        w.bytes32(m.body)?;
        let inner = w.finish();
        self.w.bytes32(&inner)?;
        self.count += 1;
        Ok(())
    }

    /// Messages so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Encoded size so far.
    pub fn len(&self) -> usize {
        self.w.len()
    }

    /// Whether no message was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded batch.
    pub fn finish(self) -> Vec<u8> {
        let mut buf = self.w.finish();
        buf[1..5].copy_from_slice(&self.count.to_le_bytes());
        buf
    }
}

fn count16(n: usize, what: &str) -> Result<u16> {
    u16::try_from(n).map_err(|_| Error::Invalid(format!("too many {what}: {n}")))
}

/// One decoded message: every field is a slice of the entry bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// Application flag bits.
    pub flags: u32,
    /// Queue within the topic.
    pub queue_id: u32,
    /// Producer clock at creation, ms.
    pub born_ms: u64,
    /// Leader clock when logged, ms.
    pub store_ms: u64,
    /// Failed consumption attempts so far.
    pub reconsume_times: u32,
    topic: Bytes,
    tag: Bytes,
    keys: Vec<Bytes>,
    properties: Vec<(Bytes, Bytes)>,
    /// The payload.
    pub body: Bytes,
    /// Bytes the message occupies in the batch.
    pub encoded_len: usize,
}

fn as_str(b: &Bytes) -> &str {
    // Validated as UTF-8 when decoded.
    std::str::from_utf8(b).unwrap_or_default()
}

impl raftmq_proto::sql92::Properties for MessageView {
    fn property(&self, name: &str) -> Option<&str> {
        MessageView::property(self, name)
    }
    fn tag(&self) -> &str {
        MessageView::tag(self)
    }
}

impl MessageView {
    /// Topic name.
    pub fn topic(&self) -> &str {
        as_str(&self.topic)
    }

    /// Tag, empty for none.
    pub fn tag(&self) -> &str {
        as_str(&self.tag)
    }

    /// Keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(as_str)
    }

    /// Properties as (name, value).
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties.iter().map(|(k, v)| (as_str(k), as_str(v)))
    }

    /// The value of one property.
    pub fn property(&self, name: &str) -> Option<&str> {
        // Names compared as bytes: only the value found is turned into a `str` (this runs
        // several times per message on every replica's apply).
        self.properties
            .iter()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .map(|(_, v)| as_str(v))
    }
}

/// Iterates the messages of an encoded batch.
#[derive(Debug, Clone)]
pub struct BatchReader {
    r: Reader,
    left: u32,
}

impl BatchReader {
    /// Starts reading `buf`.
    ///
    /// # Errors
    /// A wrong version or a short header.
    pub fn new(buf: Bytes) -> Result<Self> {
        let mut r = Reader::new(buf, "message batch");
        let version = r.u8()?;
        if version != BATCH_VERSION {
            return Err(Error::codec(
                "message batch",
                format!("version {version}, this build reads {BATCH_VERSION}"),
            ));
        }
        let left = r.u32()?;
        Ok(Self { r, left })
    }

    /// Messages not yet read.
    pub fn remaining(&self) -> u32 {
        self.left
    }

    fn decode_one(&mut self) -> Result<MessageView> {
        let inner = self.r.bytes32()?;
        let encoded_len = inner.len() + 4;
        let mut r = Reader::new(inner, "message");
        let flags = r.u32()?;
        let queue_id = r.u32()?;
        let born_ms = r.u64()?;
        let store_ms = r.u64()?;
        let reconsume_times = r.u32()?;
        let topic = utf8(r.bytes16()?)?;
        let tag = utf8(r.bytes16()?)?;
        let nkeys = r.u16()?;
        let mut keys = Vec::with_capacity(nkeys.min(64) as usize);
        for _ in 0..nkeys {
            keys.push(utf8(r.bytes16()?)?);
        }
        let nprops = r.u16()?;
        let mut properties = Vec::with_capacity(nprops.min(64) as usize);
        for _ in 0..nprops {
            properties.push((utf8(r.bytes16()?)?, utf8(r.bytes16()?)?));
        }
        let body = r.bytes32()?;
        r.finish()?;
        Ok(MessageView {
            flags,
            queue_id,
            born_ms,
            store_ms,
            reconsume_times,
            topic,
            tag,
            keys,
            properties,
            body,
            encoded_len,
        })
    }
}

fn utf8(b: Bytes) -> Result<Bytes> {
    std::str::from_utf8(&b).map_err(|_| Error::codec("message", "a string field is not UTF-8"))?;
    Ok(b)
}

impl Iterator for BatchReader {
    type Item = Result<MessageView>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let m = self.decode_one();
        if m.is_err() {
            self.left = 0;
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Sample = (String, Vec<String>, Vec<(String, String)>, Vec<u8>);

    fn sample(i: u32) -> Sample {
        (
            format!("topic-{i}"),
            vec![format!("k{i}"), "shared".into()],
            vec![("a".into(), format!("v{i}"))],
            vec![i as u8; i as usize * 3],
        )
    }

    #[test]
    fn round_trip_batch() {
        let data: Vec<_> = (0..5).map(sample).collect();
        let mut w = BatchWriter::new();
        for (i, (topic, keys, props, body)) in data.iter().enumerate() {
            w.push(&MessageRef {
                topic,
                queue_id: i as u32,
                tag: if i % 2 == 0 { "TagA" } else { "" },
                keys,
                properties: props,
                body,
                born_ms: 1000 + i as u64,
                store_ms: 2000,
                flags: 7,
                reconsume_times: i as u32,
            })
            .unwrap();
        }
        let buf = Bytes::from(w.finish());
        let msgs: Vec<_> = BatchReader::new(buf)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(msgs.len(), 5);
        for (i, m) in msgs.iter().enumerate() {
            let (topic, keys, props, body) = &data[i];
            assert_eq!(m.topic(), topic);
            assert_eq!(m.queue_id, i as u32);
            assert_eq!(m.tag(), if i % 2 == 0 { "TagA" } else { "" });
            assert_eq!(
                m.keys().collect::<Vec<_>>(),
                keys.iter().map(String::as_str).collect::<Vec<_>>()
            );
            assert_eq!(m.property("a"), Some(props[0].1.as_str()));
            assert_eq!(&m.body[..], &body[..]);
            assert_eq!(m.born_ms, 1000 + i as u64);
            assert_eq!(m.reconsume_times, i as u32);
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(r) = BatchReader::new(Bytes::from(bytes)) {
                for m in r { let _ = m; }
            }
        }

        #[test]
        fn arbitrary_messages_round_trip(
            topic in "[a-zA-Z0-9_%-]{1,40}",
            tag in "[a-zA-Z]{0,10}",
            keys in proptest::collection::vec("[^\u{0}]{0,12}", 0..4),
            body in proptest::collection::vec(any::<u8>(), 0..300),
            born in any::<u64>(), flags in any::<u32>(), q in any::<u32>(),
        ) {
            let props = vec![("p".to_string(), "é".to_string())];
            let mut w = BatchWriter::new();
            let m = MessageRef { topic: &topic, queue_id: q, tag: &tag, keys: &keys, properties: &props,
                body: &body, born_ms: born, store_ms: 1, flags, reconsume_times: 0 };
            w.push(&m).unwrap();
            w.push(&m).unwrap();
            let views: Vec<_> = BatchReader::new(Bytes::from(w.finish())).unwrap().collect::<Result<_>>().unwrap();
            prop_assert_eq!(views.len(), 2);
            prop_assert_eq!(views[1].topic(), topic.as_str());
            prop_assert_eq!(views[1].tag(), tag.as_str());
            prop_assert_eq!(views[1].keys().map(str::to_owned).collect::<Vec<_>>(), keys);
            prop_assert_eq!(&views[1].body[..], &body[..]);
            prop_assert_eq!(views[1].flags, flags);
            prop_assert_eq!(views[1].queue_id, q);
        }
    }
}
