//! Frames: `u32 total_len | u32 (type << 24 | header_len) | header | body`, big-endian,
//! `total_len` not counting itself.
//!
//! [`FrameCodec`] is a tokio-util codec. The frame limit (Java's default: 16 MiB including
//! the length field) is checked on the length prefix, before anything is allocated, so a
//! hostile 2 GiB prefix costs nothing but the connection.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::command::{RemotingCommand, SerializeType};
use crate::error::CodecError;
use crate::header;

/// Java's default frame limit (`com.rocketmq.remoting.frameMaxLength`), length field included.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;

/// How far ahead of the bytes received the read buffer is grown for a large frame.
const READ_AHEAD: usize = 64 << 10;

/// Decodes one complete frame (`buf` holds exactly one, length field included).
///
/// # Errors
/// Inconsistent lengths, an unknown serialize type or a header that does not decode.
pub fn decode_frame(frame: Bytes) -> Result<RemotingCommand, CodecError> {
    if frame.len() < 8 {
        return Err(CodecError::Frame(format!(
            "{} bytes is shorter than the 8-byte frame prefix",
            frame.len()
        )));
    }
    let total = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    if total + 4 != frame.len() {
        return Err(CodecError::Frame(format!(
            "length prefix {total} does not match the frame's {} bytes",
            frame.len() - 4
        )));
    }
    let word = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let kind = SerializeType::from_byte((word >> 24) as u8)
        .ok_or_else(|| CodecError::Frame(format!("unknown serialize type {}", word >> 24)))?;
    let header_len = (word & 0x00FF_FFFF) as usize;
    if header_len > total - 4 {
        return Err(CodecError::Frame(format!(
            "header length {header_len} exceeds the frame's {} bytes",
            total - 4
        )));
    }
    let mut cmd = header::decode(kind, &frame[8..8 + header_len])?;
    cmd.body = frame.slice(8 + header_len..);
    Ok(cmd)
}

/// Encodes a command as one frame.
///
/// # Errors
/// The header does not fit the 24-bit length (16 MiB).
pub fn encode_frame(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<(), CodecError> {
    let header = header::encode(cmd);
    if header.len() > 0x00FF_FFFF {
        return Err(CodecError::Frame(format!(
            "header of {} bytes does not fit a frame",
            header.len()
        )));
    }
    let total = 4 + header.len() + cmd.body.len();
    let total = u32::try_from(total)
        .map_err(|_| CodecError::Frame(format!("frame of {total} bytes is too large")))?;
    dst.reserve(4 + total as usize);
    dst.put_u32(total);
    dst.put_u32((u32::from(cmd.serialize.byte()) << 24) | header.len() as u32);
    dst.put_slice(&header);
    dst.put_slice(&cmd.body);
    Ok(())
}

/// Told how much of a frame has arrived: `(buffered, len)` while a frame of `len` bytes
/// is incomplete, `(0, 0)` once it is. An error closes the connection. The codec has no
/// policy of its own: a server gives one (a per-process budget for unfinished frames, a
/// time limit for each), dropped with the codec.
pub type Unfinished = Box<dyn FnMut(usize, usize) -> io::Result<()> + Send>;

/// The remoting frame codec: decodes requests, encodes responses (and server requests).
pub struct FrameCodec {
    max_frame: usize,
    unfinished: Option<Unfinished>,
}

impl std::fmt::Debug for FrameCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCodec")
            .field("max_frame", &self.max_frame)
            .field("unfinished", &self.unfinished.is_some())
            .finish()
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FrameCodec {
    /// A codec refusing frames longer than `max_frame` bytes (length field included).
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            unfinished: None,
        }
    }

    /// This codec, telling `unfinished` how much of each incomplete frame has arrived.
    #[must_use]
    pub fn with_unfinished(mut self, unfinished: Unfinished) -> Self {
        self.unfinished = Some(unfinished);
        self
    }
}

fn invalid(e: CodecError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Decoder for FrameCodec {
    type Item = RemotingCommand;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>, io::Error> {
        if src.len() < 4 {
            return Ok(None);
        }
        let total = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        let len = total + 4;
        if len > self.max_frame {
            return Err(invalid(CodecError::FrameTooLarge {
                len,
                max: self.max_frame,
            }));
        }
        if total < 4 {
            return Err(invalid(CodecError::Frame(format!(
                "length prefix {total} leaves no room for the header length"
            ))));
        }
        if src.len() < len {
            if let Some(u) = &mut self.unfinished {
                u(src.len(), len)?;
            }
            // Grow with the bytes that arrive, not to the announced length at once: a peer
            // announcing 16 MiB and sending nothing must not make us hold 16 MiB.
            src.reserve((len - src.len()).min(READ_AHEAD));
            return Ok(None);
        }
        if let Some(u) = &mut self.unfinished {
            u(0, 0)?;
        }
        let frame = src.split_to(len).freeze();
        decode_frame(frame).map(Some).map_err(invalid)
    }
}

impl Encoder<RemotingCommand> for FrameCodec {
    type Error = io::Error;

    fn encode(&mut self, cmd: RemotingCommand, dst: &mut BytesMut) -> Result<(), io::Error> {
        encode_frame(&cmd, dst).map_err(invalid)
    }
}

/// The length a frame prefix announces, if `buf` holds at least the prefix.
pub fn announced_len(buf: &[u8]) -> Option<usize> {
    let mut b = buf.get(..4)?;
    Some(b.get_u32() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_of(cmd: &RemotingCommand) -> BytesMut {
        let mut b = BytesMut::new();
        encode_frame(cmd, &mut b).unwrap();
        b
    }

    #[test]
    fn an_unfinished_frame_is_reported_and_its_refusal_closes_the_connection() {
        use std::sync::{Arc, Mutex};
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut codec = FrameCodec::default().with_unfinished(Box::new(move |b, len| {
            log.lock().unwrap().push((b, len));
            if len > 1 << 20 {
                Err(io::Error::other("over budget"))
            } else {
                Ok(())
            }
        }));
        let whole = frame_of(&RemotingCommand::request(10, 1).with_body(vec![7u8; 100]));
        let mut buf = BytesMut::from(&whole[..50]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&whole[50..]);
        assert!(codec.decode(&mut buf).unwrap().is_some());
        assert_eq!(*seen.lock().unwrap(), vec![(50, whole.len()), (0, 0)]);
        // A large frame the callback refuses is an error, not a buffer.
        let mut big = BytesMut::new();
        big.put_u32(4 << 20);
        big.put_u32(0);
        assert!(codec.decode(&mut big).is_err());
    }

    #[test]
    fn captured_cpp_route_request_decodes() {
        // remoting.md §1.3 [cap]: the C++ client's GET_ROUTEINFO_BY_TOPIC, header_len 189
        // including the trailing newline.
        let header = b"{\"code\":105,\"extFields\":{\"AccessKey\":\"\",\"OnsChannel\":\"ALIYUN\",\"Signature\":\"N/YT7X6tJe5UfutmW+uNwTTJ7Fc=\",\"topic\":\"TopicTest\"},\"flag\":0,\"language\":\"CPP\",\"opaque\":0,\"remark\":\"\",\"version\":63}\n";
        assert_eq!(header.len(), 189);
        let mut f = BytesMut::new();
        f.put_u32(4 + header.len() as u32);
        f.put_u32(header.len() as u32);
        f.put_slice(header);
        let cmd = FrameCodec::default().decode(&mut f).unwrap().unwrap();
        assert_eq!(cmd.code, 105);
        assert_eq!(cmd.ext_str("topic"), Some("TopicTest"));
        assert_eq!(cmd.serialize, SerializeType::Json);
        assert!(cmd.body.is_empty());
        assert!(f.is_empty());
    }

    #[test]
    fn oversized_prefix_is_refused_before_allocating() {
        let mut f = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 0][..]);
        let err = FrameCodec::default().decode(&mut f).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
        assert!(f.capacity() < 1024);
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let cmd = RemotingCommand::request(34, 9).with_body(&b"{}"[..]);
        let full = frame_of(&cmd);
        let mut codec = FrameCodec::default();
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert!(codec.decode(&mut part).unwrap().is_none(), "cut at {cut}");
        }
        let mut all = full.clone();
        assert_eq!(codec.decode(&mut all).unwrap().unwrap(), cmd);
    }

    fn arb_command() -> impl Strategy<Value = RemotingCommand> {
        (
            any::<i16>(),
            0u8..14,
            any::<i16>(),
            any::<i32>(),
            0i32..4,
            proptest::option::of("[ -~]{1,20}"),
            proptest::collection::btree_map("[a-zA-Z]{1,8}", "[ -~\u{1}\u{2}é]{1,20}", 0..6),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
        )
            .prop_map(
                |(code, lang, version, opaque, flag, remark, ext, body, bin)| RemotingCommand {
                    code: i32::from(code),
                    language: crate::command::language_name(lang).to_owned(),
                    version: i32::from(version),
                    opaque,
                    flag,
                    remark,
                    ext,
                    body: Bytes::from(body),
                    serialize: if bin {
                        SerializeType::RocketMq
                    } else {
                        SerializeType::Json
                    },
                },
            )
    }

    proptest! {
        #[test]
        fn commands_round_trip_in_both_encodings(cmd in arb_command()) {
            let mut f = frame_of(&cmd);
            let back = FrameCodec::default().decode(&mut f).unwrap().unwrap();
            prop_assert_eq!(back, cmd);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut codec = FrameCodec::new(1 << 16);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
            let _ = decode_frame(Bytes::from(bytes));
        }

        #[test]
        fn plausible_frames_with_garbage_headers_never_panic(
            kind in 0u8..3, header in proptest::collection::vec(any::<u8>(), 0..120), body_len in 0usize..16,
        ) {
            let mut f = BytesMut::new();
            f.put_u32((4 + header.len() + body_len) as u32);
            f.put_u32((u32::from(kind) << 24) | header.len() as u32);
            f.put_slice(&header);
            f.put_slice(&vec![0u8; body_len]);
            let _ = FrameCodec::default().decode(&mut f);
        }
    }
}
