//! Explicit little-endian binary layouts: the building blocks of every on-disk format.
//!
//! Readers never panic: every read is bounds-checked and returns [`Error::Codec`].

use bytes::{BufMut, Bytes};

use crate::error::{Error, Result};

/// Appends fixed-width and length-prefixed fields to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.put_u8(v);
        self
    }

    /// Appends a little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.put_u16_le(v);
        self
    }

    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.put_u32_le(v);
        self
    }

    /// Appends a little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.put_u64_le(v);
        self
    }

    /// Appends raw bytes without a length.
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Appends bytes with a `u16` length prefix. Fails if longer than `u16::MAX`.
    pub fn bytes16(&mut self, v: &[u8]) -> Result<&mut Self> {
        let len = u16::try_from(v.len())
            .map_err(|_| Error::Invalid(format!("field of {} bytes exceeds 65535", v.len())))?;
        self.u16(len);
        Ok(self.raw(v))
    }

    /// Appends bytes with a `u32` length prefix.
    pub fn bytes32(&mut self, v: &[u8]) -> Result<&mut Self> {
        let len = u32::try_from(v.len())
            .map_err(|_| Error::Invalid(format!("field of {} bytes exceeds 4 GiB", v.len())))?;
        self.u32(len);
        Ok(self.raw(v))
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields back from a [`Bytes`] buffer; string and byte fields are zero-copy slices.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
    what: &'static str,
}

impl Reader {
    /// Reads `buf`, naming `what` in errors.
    pub fn new(buf: Bytes, what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                Error::codec(
                    self.what,
                    format!(
                        "needs {n} bytes at position {} but only {} remain",
                        self.pos,
                        self.buf.len() - self.pos
                    ),
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads `n` raw bytes as a zero-copy slice.
    pub fn raw(&mut self, n: usize) -> Result<Bytes> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..self.pos))
    }

    /// Reads bytes with a `u16` length prefix.
    pub fn bytes16(&mut self) -> Result<Bytes> {
        let n = self.u16()? as usize;
        self.raw(n)
    }

    /// Reads bytes with a `u32` length prefix.
    pub fn bytes32(&mut self) -> Result<Bytes> {
        let n = self.u32()? as usize;
        self.raw(n)
    }

    /// Reads a UTF-8 string with a `u16` length prefix.
    pub fn str16(&mut self) -> Result<String> {
        let b = self.bytes16()?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::codec(self.what, "string is not UTF-8"))
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The unread rest, as a zero-copy slice.
    pub fn rest(&mut self) -> Bytes {
        let r = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        r
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(Error::codec(
                self.what,
                format!("{} trailing bytes", self.remaining()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_fields() {
        let mut w = Writer::new();
        w.u8(7).u16(300).u32(70_000).u64(u64::MAX);
        w.bytes16(b"topic").unwrap();
        w.bytes32(b"body").unwrap();
        let mut r = Reader::new(Bytes::from(w.finish()), "test");
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u16().unwrap(), 300);
        assert_eq!(r.u32().unwrap(), 70_000);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.str16().unwrap(), "topic");
        assert_eq!(&r.bytes32().unwrap()[..], b"body");
        r.finish().unwrap();
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let mut r = Reader::new(Bytes::from_static(&[1, 2]), "test");
        assert!(r.u32().is_err());
        let mut r = Reader::new(Bytes::from_static(&[255, 255, 1]), "test");
        assert!(r.bytes16().is_err());
    }
}
