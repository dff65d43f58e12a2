//! Telling a remoting client from a raftmq native (tarpc) client by a connection's first
//! bytes, so one port serves both.
//!
//! Both protocols start with a big-endian u32 length. What follows differs:
//! - remoting: the serialize type byte (0 JSON, 1 ROCKETMQ), a 24-bit header length, and
//!   for JSON the header's `{`;
//! - native: a bincode (varint) `ClientMessage::Request`: the variant byte `0`, then the
//!   deadline as a `Duration`: seconds (one byte below 251, else `0xFB`.. with more
//!   bytes) and nanoseconds (`0xFB`/`0xFC` + 2/4 bytes unless below 251), then the trace id.
//!
//! So a JSON remoting frame is recognised by type byte 0, a header length of at most
//! [`MAX_JSON_HEADER`] that fits the frame, and `{` at offset 8. For a native frame to pass,
//! its seconds byte, nanosecond marker and the next byte would have to form a small
//! header length: with the nanosecond marker (`0xFB`/`0xFC`, all but 251 of a billion
//! deadlines) the length is at least 0xFB00, above the bound; otherwise two random
//! trace-id bytes would also have to spell `{"`. A type byte of 1 is always remoting: the
//! first native message is a request, variant 0.

/// Bytes needed to decide.
pub const PREFIX_LEN: usize = 10;

/// Longest JSON header recognised as remoting (no real client sends one near it).
pub const MAX_JSON_HEADER: usize = 0xFB00 - 1;

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RocketMQ remoting.
    Remoting,
    /// raftmq's native tarpc protocol.
    Native,
}

/// Decides from the first [`PREFIX_LEN`] bytes (fewer: `None` until more arrive, unless the
/// bytes already rule remoting out).
pub fn detect(prefix: &[u8]) -> Option<Protocol> {
    if prefix.len() >= 5 && prefix[4] == 1 {
        return Some(Protocol::Remoting);
    }
    if prefix.len() >= 5 && prefix[4] != 0 {
        return Some(Protocol::Native);
    }
    if prefix.len() < PREFIX_LEN {
        return None;
    }
    let total = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let header = u32::from_be_bytes([0, prefix[5], prefix[6], prefix[7]]) as usize;
    let json = (2..=MAX_JSON_HEADER).contains(&header)
        && header + 4 <= total
        && prefix[8] == b'{'
        && (prefix[9] == b'"' || prefix[9].is_ascii_whitespace() || prefix[9] == b'}');
    Some(if json {
        Protocol::Remoting
    } else {
        Protocol::Native
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{RemotingCommand, SerializeType};
    use bytes::BytesMut;

    fn frame(cmd: &RemotingCommand) -> Vec<u8> {
        let mut b = BytesMut::new();
        crate::frame::encode_frame(cmd, &mut b).unwrap();
        b.to_vec()
    }

    #[test]
    fn remoting_frames_in_both_encodings_are_recognised() {
        let mut cmd = RemotingCommand::request(105, 1).with_ext("topic", "T");
        assert_eq!(detect(&frame(&cmd)[..PREFIX_LEN]), Some(Protocol::Remoting));
        cmd.serialize = SerializeType::RocketMq;
        assert_eq!(detect(&frame(&cmd)[..5]), Some(Protocol::Remoting));
    }

    #[test]
    fn short_prefixes_wait() {
        assert_eq!(detect(&[0, 0, 0, 9]), None);
        assert_eq!(detect(&[0, 0, 0, 9, 0, 0, 0]), None);
    }

    #[test]
    fn native_shaped_prefixes_are_native() {
        // length, Request variant 0, 10 s, nanos marker 0xFC + 4 bytes.
        let p = [0, 0, 0, 90, 0, 10, 0xFC, 0x12, b'{', b'"'];
        assert_eq!(detect(&p), Some(Protocol::Native));
        // small nanos: header length 10<<16 | 5<<8 | x > frame.
        let p = [0, 0, 0, 90, 0, 10, 5, 0xFE, b'{', b'"'];
        assert_eq!(detect(&p), Some(Protocol::Native));
        assert_eq!(detect(&[0, 0, 0, 90, 7]), Some(Protocol::Native));
    }
}
