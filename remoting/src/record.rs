//! Message records as RocketMQ 4.x stores them (pull bodies, VIEW_MESSAGE_BY_ID), the
//! message encoding of batch send bodies, and property strings.
//!
//! Record (`CommitLog.MessageExtEncoder`, IPv4 hosts only: the C++ client and ali-ons
//! ignore the IPv6 flags and would misread every later record):
//! ```text
//! total i32 | magic i32 | body_crc i32 | queue_id i32 | flag i32 | queue_offset i64
//! | physical_offset i64 | sys_flag i32 | born_ts i64 | born_host 4+4 | store_ts i64
//! | store_host 4+4 | reconsume_times i32 | prepared_tx_offset i64 | body_len i32 | body
//! | topic_len i8 | topic | props_len i16 | props
//! ```
//! Batch body entry (`MessageDecoder.encodeMessage`):
//! `total i32 | magic i32 | body_crc i32 | flag i32 | body_len i32 | body | props_len i16 | props`.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::CodecError;

/// `MESSAGE_MAGIC_CODE` of 4.x records.
pub const MESSAGE_MAGIC: i32 = 0xDAA3_20A7_u32 as i32;
/// Record bytes before the body.
const FIXED_BEFORE_BODY: usize = 88;
/// `MessageSysFlag.COMPRESSED_FLAG`.
pub const SYSFLAG_COMPRESSED: i32 = 0x1;
/// `MessageSysFlag` transaction type mask (`0x4` prepared, `0x8` commit, `0xC` rollback).
pub const SYSFLAG_TRANSACTION_MASK: i32 = 0xC;
/// `MessageSysFlag.TRANSACTION_PREPARED_TYPE`: a transaction's half message.
pub const SYSFLAG_TRANSACTION_PREPARED: i32 = 0x4;
/// Longest topic a record can carry (its length is one signed byte).
pub const MAX_RECORD_TOPIC: usize = 127;
/// Longest property string (its length is a signed short).
pub const MAX_PROPERTIES: usize = i16::MAX as usize;

/// Property separator between name and value.
const NAME_VALUE: char = '\u{1}';
/// Property separator between pairs.
const PAIR: char = '\u{2}';

/// One message as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Queue id.
    pub queue_id: i32,
    /// User flag.
    pub flag: i32,
    /// Logical offset in its queue.
    pub queue_offset: i64,
    /// Commit-log offset: what CONSUMER_SEND_MSG_BACK and VIEW_MESSAGE_BY_ID address.
    pub physical_offset: i64,
    /// `MessageSysFlag` bits.
    pub sys_flag: i32,
    /// Producer clock, ms.
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddrV4,
    /// Broker clock when stored, ms.
    pub store_timestamp: i64,
    /// The storing broker's address.
    pub store_host: SocketAddrV4,
    /// Failed consumptions so far.
    pub reconsume_times: i32,
    /// Commit-log offset of the half message (transactions), else 0.
    pub prepared_transaction_offset: i64,
    /// Payload.
    pub body: Bytes,
    /// Topic, at most [`MAX_RECORD_TOPIC`] bytes.
    pub topic: String,
    /// Property string (`name\x01value\x02...`).
    pub properties: String,
}

fn host(b: &mut BytesMut, h: &SocketAddrV4) {
    b.put_slice(&h.ip().octets());
    b.put_i32(i32::from(h.port()));
}

/// `crc32(body) & 0x7FFFFFFF`, RocketMQ's body CRC (no client checks it).
fn body_crc(body: &[u8]) -> i32 {
    (crc32(body) & 0x7FFF_FFFF) as i32
}

/// CRC-32 (IEEE, as `java.util.zip.CRC32`).
fn crc32(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

impl Record {
    /// Appends the encoded record to `out`.
    ///
    /// # Errors
    /// The topic or the properties are too long for the record layout.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), CodecError> {
        if self.topic.len() > MAX_RECORD_TOPIC {
            return Err(CodecError::body(
                "record",
                format!(
                    "topic {} is {} bytes; records carry at most {MAX_RECORD_TOPIC}",
                    self.topic,
                    self.topic.len()
                ),
            ));
        }
        if self.properties.len() > MAX_PROPERTIES {
            return Err(CodecError::body(
                "record",
                format!(
                    "properties take {} bytes; records carry at most {MAX_PROPERTIES}",
                    self.properties.len()
                ),
            ));
        }
        let total =
            FIXED_BEFORE_BODY + self.body.len() + 1 + self.topic.len() + 2 + self.properties.len();
        out.reserve(total);
        out.put_i32(total as i32);
        out.put_i32(MESSAGE_MAGIC);
        out.put_i32(body_crc(&self.body));
        out.put_i32(self.queue_id);
        out.put_i32(self.flag);
        out.put_i64(self.queue_offset);
        out.put_i64(self.physical_offset);
        out.put_i32(self.sys_flag);
        out.put_i64(self.born_timestamp);
        host(out, &self.born_host);
        out.put_i64(self.store_timestamp);
        host(out, &self.store_host);
        out.put_i32(self.reconsume_times);
        out.put_i64(self.prepared_transaction_offset);
        out.put_i32(self.body.len() as i32);
        out.put_slice(&self.body);
        out.put_u8(self.topic.len() as u8);
        out.put_slice(self.topic.as_bytes());
        out.put_i16(self.properties.len() as i16);
        out.put_slice(self.properties.as_bytes());
        Ok(())
    }

    /// Decodes every record of a pull body (what a client does; used by tests).
    ///
    /// # Errors
    /// A record is truncated, inconsistent or uses IPv6 hosts.
    pub fn decode_all(mut buf: Bytes) -> Result<Vec<Record>, CodecError> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            out.push(Self::decode_one(&mut buf)?);
        }
        Ok(out)
    }

    fn decode_one(buf: &mut Bytes) -> Result<Record, CodecError> {
        let bad = |r: &str| CodecError::body("record", r.to_owned());
        if buf.len() < 4 {
            return Err(bad("truncated length"));
        }
        let total = usize::try_from((&buf[..4]).get_i32()).map_err(|_| bad("negative length"))?;
        if total < FIXED_BEFORE_BODY + 3 || total > buf.len() {
            return Err(bad("length out of range"));
        }
        let mut r = buf.split_to(total);
        r.advance(12);
        let queue_id = r.get_i32();
        let flag = r.get_i32();
        let queue_offset = r.get_i64();
        let physical_offset = r.get_i64();
        let sys_flag = r.get_i32();
        if sys_flag & 0x30 != 0 {
            return Err(bad("IPv6 host flags set"));
        }
        let get_host = |r: &mut Bytes| {
            let ip = Ipv4Addr::new(r.get_u8(), r.get_u8(), r.get_u8(), r.get_u8());
            SocketAddrV4::new(ip, r.get_i32() as u16)
        };
        let born_timestamp = r.get_i64();
        let born_host = get_host(&mut r);
        let store_timestamp = r.get_i64();
        let store_host = get_host(&mut r);
        let reconsume_times = r.get_i32();
        let prepared_transaction_offset = r.get_i64();
        let body_len = usize::try_from(r.get_i32()).map_err(|_| bad("negative body length"))?;
        if body_len + 3 > r.len() {
            return Err(bad("body runs past the record"));
        }
        let body = r.split_to(body_len);
        let topic_len = r.get_u8() as usize;
        if topic_len + 2 > r.len() {
            return Err(bad("topic runs past the record"));
        }
        let topic = String::from_utf8(r.split_to(topic_len).to_vec())
            .map_err(|_| bad("topic is not UTF-8"))?;
        let props_len = usize::try_from(r.get_i16()).map_err(|_| bad("negative props length"))?;
        if props_len != r.len() {
            return Err(bad("properties do not end the record"));
        }
        let properties =
            String::from_utf8(r.to_vec()).map_err(|_| bad("properties are not UTF-8"))?;
        Ok(Record {
            queue_id,
            flag,
            queue_offset,
            physical_offset,
            sys_flag,
            born_timestamp,
            born_host,
            store_timestamp,
            store_host,
            reconsume_times,
            prepared_transaction_offset,
            body,
            topic,
            properties,
        })
    }
}

/// One message of a batch send body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    /// User flag.
    pub flag: i32,
    /// Payload.
    pub body: Bytes,
    /// The message's own property string.
    pub properties: String,
}

/// Decodes the body of a batch send (code 320, or C++'s code 10 with `batch:"1"`).
///
/// # Errors
/// An entry is truncated or its lengths are inconsistent.
pub fn decode_batch(mut buf: Bytes) -> Result<Vec<BatchEntry>, CodecError> {
    let bad = |r: String| CodecError::body("batch body", r);
    let mut out = Vec::new();
    while !buf.is_empty() {
        let n = out.len();
        if buf.len() < 20 {
            return Err(bad(format!("message {n} is truncated")));
        }
        let total = usize::try_from((&buf[..4]).get_i32())
            .ok()
            .filter(|t| *t >= 22 && *t <= buf.len())
            .ok_or_else(|| bad(format!("message {n} has an invalid length")))?;
        let mut m = buf.split_to(total);
        m.advance(12);
        let flag = m.get_i32();
        let body_len = usize::try_from(m.get_i32())
            .ok()
            .filter(|l| l + 2 <= m.len())
            .ok_or_else(|| bad(format!("message {n}'s body runs past its end")))?;
        let body = m.split_to(body_len);
        let props_len = usize::try_from(m.get_i16())
            .ok()
            .filter(|l| *l == m.len())
            .ok_or_else(|| bad(format!("message {n}'s properties do not end it")))?;
        let properties = String::from_utf8(m.split_to(props_len).to_vec())
            .map_err(|_| bad(format!("message {n}'s properties are not UTF-8")))?;
        out.push(BatchEntry {
            flag,
            body,
            properties,
        });
    }
    Ok(out)
}

/// Encodes messages as a batch send body (what a Java client sends; used by tests).
pub fn encode_batch(entries: &[BatchEntry]) -> Bytes {
    let mut b = BytesMut::new();
    for e in entries {
        let total = 20 + e.body.len() + 2 + e.properties.len();
        b.put_i32(total as i32);
        b.put_i32(0);
        b.put_i32(0);
        b.put_i32(e.flag);
        b.put_i32(e.body.len() as i32);
        b.put_slice(&e.body);
        b.put_i16(e.properties.len() as i16);
        b.put_slice(e.properties.as_bytes());
    }
    b.freeze()
}

/// Parses a property string. Both forms are accepted: Java's (no trailing `\x02`) and
/// C++'s/ali-ons' (a `\x02` after every pair); pairs with an empty name are dropped.
pub fn parse_properties(s: &str) -> Vec<(String, String)> {
    s.split(PAIR)
        .filter_map(|pair| {
            let (k, v) = pair.split_once(NAME_VALUE)?;
            (!k.is_empty()).then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Writes a property string in Java's form.
pub fn format_properties<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in props {
        if !out.is_empty() {
            out.push(PAIR);
        }
        out.push_str(k);
        out.push(NAME_VALUE);
        out.push_str(v);
    }
    out
}

/// Inflates a zlib body (`COMPRESSED` sysflag), refusing output beyond `max` bytes.
///
/// # Errors
/// Not zlib data, or the result would exceed `max`.
pub fn inflate(body: &[u8], max: usize) -> Result<Bytes, CodecError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    let mut z = flate2::read::ZlibDecoder::new(body).take(max as u64 + 1);
    z.read_to_end(&mut out)
        .map_err(|e| CodecError::body("compressed body", e.to_string()))?;
    if out.len() > max {
        return Err(CodecError::body(
            "compressed body",
            format!("inflates to more than {max} bytes"),
        ));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Record {
        Record {
            queue_id: 3,
            flag: 0,
            queue_offset: 42,
            physical_offset: 1 << 33,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: "127.0.0.1:5555".parse().unwrap(),
            store_timestamp: 1_700_000_000_001,
            store_host: "10.0.0.1:10911".parse().unwrap(),
            reconsume_times: 1,
            prepared_transaction_offset: 0,
            body: Bytes::from_static(b"hello"),
            topic: "TopicTest".into(),
            properties: format_properties([("TAGS", "TagA"), ("KEYS", "k1")]),
        }
    }

    #[test]
    fn record_layout_matches_the_4x_encoder() {
        let r = sample();
        let mut b = BytesMut::new();
        r.encode(&mut b).unwrap();
        let total = 91 + 5 + 9 + r.properties.len();
        assert_eq!(b.len(), total);
        assert_eq!((&b[0..4]).get_i32() as usize, total);
        assert_eq!((&b[4..8]).get_i32(), MESSAGE_MAGIC);
        assert_eq!((&b[8..12]).get_i32(), 0x3610_a686 & 0x7fff_ffff); // crc32("hello")
        assert_eq!((&b[28..36]).get_i64(), 1 << 33);
        assert_eq!(&b[48..52], &[127, 0, 0, 1]);
        assert_eq!(&b[64..68], &[10, 0, 0, 1]);
        assert_eq!((&b[68..72]).get_i32(), 10911);
        assert_eq!(Record::decode_all(b.freeze()).unwrap(), vec![r]);
    }

    #[test]
    fn long_topics_are_refused_not_truncated() {
        let mut r = sample();
        r.topic = "x".repeat(128);
        assert!(r.encode(&mut BytesMut::new()).is_err());
    }

    #[test]
    fn properties_parse_both_client_forms() {
        let java = "TAGS\u{1}TagA\u{2}KEYS\u{1}k1";
        let cpp = "KEYS\u{1}k1\u{2}TAGS\u{1}TagA\u{2}";
        assert_eq!(parse_properties(java).len(), 2);
        assert_eq!(parse_properties(cpp).len(), 2);
        assert_eq!(
            format_properties([("A", "1"), ("B", "2")]),
            "A\u{1}1\u{2}B\u{1}2"
        );
        assert!(parse_properties("").is_empty());
        assert_eq!(
            parse_properties("\u{1}x\u{2}A\u{1}"),
            vec![("A".into(), "".into())]
        );
    }

    #[test]
    fn inflate_is_bounded() {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
        e.write_all(&vec![b'a'; 10_000]).unwrap();
        let z = e.finish().unwrap();
        assert_eq!(inflate(&z, 10_000).unwrap().len(), 10_000);
        assert!(inflate(&z, 9_999).is_err());
        assert!(inflate(b"not zlib", 100).is_err());
    }

    proptest! {
        #[test]
        fn batches_round_trip(msgs in proptest::collection::vec(
            (any::<i32>(), proptest::collection::vec(any::<u8>(), 0..40), "[a-z]{0,5}"), 0..5)) {
            let entries: Vec<BatchEntry> = msgs.into_iter().map(|(flag, body, p)| BatchEntry {
                flag, body: Bytes::from(body), properties: p }).collect();
            prop_assert_eq!(decode_batch(encode_batch(&entries)).unwrap(), entries);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_batch(Bytes::from(bytes.clone()));
            let _ = Record::decode_all(Bytes::from(bytes.clone()));
            let _ = inflate(&bytes, 1000);
            let _ = parse_properties(&String::from_utf8_lossy(&bytes));
        }
    }
}
