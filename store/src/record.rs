//! The commit-log record frame: `len u32 | crc32c u32 | term u64 | index u64 | payload`.
//!
//! `len` counts the bytes after the CRC field (16 + payload). The CRC-32C covers the `len`
//! field and everything after the CRC, so a flipped length is caught too. All integers are
//! little-endian.

use bytes::Bytes;

/// Bytes before the payload: len, crc, term, index.
pub const HEADER_BYTES: usize = 24;

/// Largest payload one record may carry (64 MiB): far above the biggest Raft entry the
/// broker builds, small enough that a corrupt length field is caught before allocating.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;

/// One decoded record: a Raft log entry's position and its opaque payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The Raft term the entry was created in.
    pub term: u64,
    /// The Raft log index of the entry.
    pub index: u64,
    /// The entry payload (see [`crate::entry`]).
    pub payload: Bytes,
}

impl Record {
    /// Bytes this record occupies on disk.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES + self.payload.len()
    }
}

/// Appends the framed record to `out`.
///
/// The payload length must not exceed [`MAX_PAYLOAD_BYTES`]; the commit log checks this
/// before calling.
pub fn encode_into(out: &mut Vec<u8>, term: u64, index: u64, payload: &[u8]) {
    let len = (16 + payload.len()) as u32;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = checksum(&out[start..start + 4], &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(len_field: &[u8], rest: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_field), rest)
}

/// What [`decode_header`] learned from the first bytes of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Total record size, header included.
    pub total: usize,
    /// The stored CRC.
    pub crc: u32,
    /// The Raft term.
    pub term: u64,
    /// The Raft log index.
    pub index: u64,
}

/// Why bytes at some position are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Fewer bytes remain than the header or the declared length needs.
    Short,
    /// The declared length is below the minimum or above [`MAX_PAYLOAD_BYTES`].
    BadLength(u32),
    /// The CRC does not match the contents.
    BadCrc,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Short => write!(f, "record is cut short"),
            Invalid::BadLength(l) => write!(f, "impossible record length {l}"),
            Invalid::BadCrc => write!(f, "CRC-32C mismatch"),
        }
    }
}

/// Parses the fixed header at the start of `buf` without checking the CRC.
pub fn decode_header(buf: &[u8]) -> Result<Header, Invalid> {
    if buf.len() < HEADER_BYTES {
        return Err(Invalid::Short);
    }
    let le32 = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let le64 = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&buf[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let len = le32(0);
    if len < 16 || len as usize - 16 > MAX_PAYLOAD_BYTES {
        return Err(Invalid::BadLength(len));
    }
    Ok(Header {
        total: 8 + len as usize,
        crc: le32(4),
        term: le64(8),
        index: le64(16),
    })
}

/// Decodes and verifies one record at the start of `buf`; the payload is a zero-copy slice.
pub fn decode(buf: &Bytes) -> Result<Record, Invalid> {
    let h = decode_header(buf)?;
    if buf.len() < h.total {
        return Err(Invalid::Short);
    }
    verify(&buf[..h.total], &h)?;
    Ok(Record {
        term: h.term,
        index: h.index,
        payload: buf.slice(HEADER_BYTES..h.total),
    })
}

/// Checks the CRC of a complete record `rec` (exactly `h.total` bytes).
pub fn verify(rec: &[u8], h: &Header) -> Result<(), Invalid> {
    if checksum(&rec[..4], &rec[8..h.total]) == h.crc {
        Ok(())
    } else {
        Err(Invalid::BadCrc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 3, 42, b"hello");
        let rec = decode(&Bytes::from(buf)).unwrap();
        assert_eq!(rec.term, 3);
        assert_eq!(rec.index, 42);
        assert_eq!(&rec.payload[..], b"hello");
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 1, 2, b"payload bytes");
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                decode(&Bytes::from(bad)).is_err(),
                "flip at {i} went unnoticed"
            );
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&Bytes::from(bytes));
        }

        #[test]
        fn encode_decode(term in any::<u64>(), index in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = Vec::new();
            encode_into(&mut buf, term, index, &payload);
            let rec = decode(&Bytes::from(buf)).unwrap();
            prop_assert_eq!(rec, Record { term, index, payload: Bytes::from(payload) });
        }
    }
}
