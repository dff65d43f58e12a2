//! The native protocol's framing: a 4-byte big-endian length, then that many bytes of
//! bincode (the same bytes on the wire as `tokio_util`'s `LengthDelimitedCodec`), decoded
//! so that a peer chooses neither our memory use nor our arithmetic:
//!
//! - a frame's length is checked against the limit before anything is allocated, and the
//!   read buffer grows with the bytes that actually arrive, never to the announced length
//!   up front (a `LengthDelimitedCodec` reserves the whole announced frame at once, so
//!   eight connections each announcing 64 MiB held ~525 MB);
//! - the bytes of unfinished frames buffered over all connections of a process are
//!   bounded ([`MAX_UNFINISHED_BYTES`]): past it, a connection sending a large frame is
//!   closed instead of buffered (small frames are always read), so peers that send most of
//!   a huge frame and stop cannot make us hold their sum;
//! - a frame must arrive within [`frame_time_limit`] of its first bytes (checked as more
//!   bytes arrive), so a peer trickling a byte a second cannot hold a connection for ever;
//! - the remoting codec (RocketMQ clients) counts its unfinished frames against the same
//!   budget and time limit ([`UnfinishedFrame`]);
//! - on a server, a request's deadline is clamped to [`MAX_DEADLINE`] before tarpc turns it
//!   into an `Instant` (tarpc computes `Instant::now() + deadline` while decoding, which
//!   panics for a deadline of `Duration::MAX`).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The longest deadline a server honours: longer ones are cut to it. Our own callers use
/// seconds (the longest is a snapshot step or a long poll); an hour leaves room for any
/// honest one.
pub const MAX_DEADLINE: Duration = Duration::from_secs(3600);

/// How far ahead of the bytes received the read buffer is grown for a large frame.
const READ_AHEAD: usize = 64 << 10;

/// The most bytes of unfinished frames a process buffers over all its connections.
pub const MAX_UNFINISHED_BYTES: usize = 256 << 20;

/// Frames up to this size are read whatever the budget holds: requests and replies of
/// ordinary size never fail for it.
const SMALL_FRAME: usize = 1 << 20;

/// How long a frame of `len` bytes may take to arrive: 30 s, plus a second per 256 KiB (a
/// 64 MiB frame at a quarter of a megabyte a second). A peer trickling a frame (one byte a
/// second) is cut off instead of holding its connection for ever.
pub fn frame_time_limit(len: usize) -> Duration {
    Duration::from_secs(30 + (len >> 18) as u64)
}

/// Bytes of unfinished frames buffered, over the connections that share it.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    /// A budget of `max` bytes.
    pub const fn new(max: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Bytes buffered now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// The process's budget ([`MAX_UNFINISHED_BYTES`]).
static PROCESS_BUDGET: Budget = Budget::new(MAX_UNFINISHED_BYTES);

/// One connection's unfinished frame, counted against a [`Budget`] and timed against
/// [`frame_time_limit`]; the count is given back when the frame completes or this drops.
/// The native [`Frames`] codec uses it, and the remoting codec through
/// [`UnfinishedFrame::track`].
#[derive(Debug)]
pub struct UnfinishedFrame {
    budget: &'static Budget,
    /// Bytes of the unfinished frame counted against `budget`.
    held: usize,
    /// When the unfinished frame's first bytes arrived.
    started: Option<Instant>,
}

impl UnfinishedFrame {
    /// Counted against the process's budget ([`MAX_UNFINISHED_BYTES`]).
    pub fn process() -> Self {
        Self::against(&PROCESS_BUDGET)
    }

    fn against(budget: &'static Budget) -> Self {
        Self {
            budget,
            held: 0,
            started: None,
        }
    }

    /// `buffered` bytes of a frame of `len` bytes have arrived; `len` 0 means the frame
    /// is complete.
    ///
    /// # Errors
    /// The frame is large and the budget is spent, or it has been arriving for longer
    /// than [`frame_time_limit`] allows: the caller closes the connection.
    pub fn track(&mut self, buffered: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            self.release();
            Ok(())
        } else {
            self.hold(buffered, len)
        }
    }

    /// [`UnfinishedFrame::track`] as the remoting codec's callback
    /// (`raftmq_remoting::frame::Unfinished`); the count goes when it is dropped.
    pub fn tracker(mut self) -> Box<dyn FnMut(usize, usize) -> io::Result<()> + Send> {
        Box::new(move |buffered, len| self.track(buffered, len))
    }

    /// Counts `now` buffered bytes of an unfinished frame of `len` bytes, and refuses a
    /// frame that has been arriving for longer than [`frame_time_limit`] allows.
    fn hold(&mut self, now: usize, len: usize) -> io::Result<()> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let limit = frame_time_limit(len);
        if started.elapsed() > limit {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "a frame of {len} bytes is still incomplete after {} s ({now} bytes \
                     arrived): closing the connection",
                    limit.as_secs()
                ),
            ));
        }
        let used = if now >= self.held {
            self.budget
                .used
                .fetch_add(now - self.held, Ordering::Relaxed)
                + (now - self.held)
        } else {
            self.budget
                .used
                .fetch_sub(self.held - now, Ordering::Relaxed)
                - (self.held - now)
        };
        self.held = now;
        if len > SMALL_FRAME && used > self.budget.max {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "refusing a frame of {len} bytes: {used} bytes of unfinished frames are \
                     buffered, over this process's limit of {} bytes",
                    self.budget.max
                ),
            ));
        }
        Ok(())
    }

    fn release(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::Relaxed);
        self.held = 0;
        self.started = None;
    }
}

impl Drop for UnfinishedFrame {
    fn drop(&mut self) {
        self.release();
    }
}

/// Length-prefixed frames of at most `max` bytes; see the module docs.
#[derive(Debug)]
pub struct Frames {
    max: usize,
    clamp_deadlines: bool,
    unfinished: UnfinishedFrame,
}

impl Frames {
    /// Frames for a client: replies are decoded as they are.
    pub fn client(max: usize) -> Self {
        Self::new(max, false, &PROCESS_BUDGET)
    }

    /// Frames for a server: request deadlines are clamped to [`MAX_DEADLINE`].
    pub fn server(max: usize) -> Self {
        Self::new(max, true, &PROCESS_BUDGET)
    }

    fn new(max: usize, clamp_deadlines: bool, budget: &'static Budget) -> Self {
        Self {
            max,
            clamp_deadlines,
            unfinished: UnfinishedFrame::against(budget),
        }
    }
}

impl Decoder for Frames {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        let Some(head) = src.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a frame of {len} bytes is over the limit of {} bytes",
                    self.max
                ),
            ));
        }
        let missing = (4 + len).saturating_sub(src.len());
        if missing > 0 {
            self.unfinished.hold(src.len(), len)?;
            src.reserve(missing.min(READ_AHEAD));
            return Ok(None);
        }
        self.unfinished.release();
        src.advance(4);
        let mut frame = src.split_to(len);
        if self.clamp_deadlines {
            clamp_deadline(&mut frame);
        }
        Ok(Some(frame))
    }
}

impl Encoder<Bytes> for Frames {
    type Error = io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        let len = u32::try_from(item.len())
            .ok()
            .filter(|&n| n as usize <= self.max)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a frame of {} bytes is over the limit of {} bytes",
                        item.len(),
                        self.max
                    ),
                )
            })?;
        dst.reserve(4 + item.len());
        dst.put_u32(len);
        dst.extend_from_slice(&item);
        Ok(())
    }
}

/// Bincode's varint markers (tokio-serde's `Bincode` uses bincode's default options): a
/// byte up to 250 is the value; 251, 252 and 253 announce a u16, u32 or u64 that follows,
/// little-endian.
const U16_MARK: u8 = 251;
const U32_MARK: u8 = 252;
const U64_MARK: u8 = 253;

/// A varint at the start of `b`: (value, bytes it takes).
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let take = |n: usize| b.get(1..1 + n);
    match *b.first()? {
        v @ 0..=250 => Some((u64::from(v), 1)),
        U16_MARK => Some((u64::from(u16::from_le_bytes(take(2)?.try_into().ok()?)), 3)),
        U32_MARK => Some((u64::from(u32::from_le_bytes(take(4)?.try_into().ok()?)), 5)),
        U64_MARK => Some((u64::from_le_bytes(take(8)?.try_into().ok()?), 9)),
        _ => None,
    }
}

/// In a tarpc `ClientMessage::Request` (variant 0, whose first field is the context, whose
/// first field is the deadline, a `Duration` whose seconds come first), rewrites a
/// deadline's seconds above [`MAX_DEADLINE`] to it, in place and at the same width (bincode
/// accepts a varint wider than it needs). Other frames are left alone: what does not
/// decode is refused later by bincode.
fn clamp_deadline(frame: &mut [u8]) {
    let Some((0, tag_len)) = varint(frame) else {
        return;
    };
    let at = &mut frame[tag_len..];
    let Some((secs, width)) = varint(at) else {
        return;
    };
    let max = MAX_DEADLINE.as_secs();
    if secs <= max {
        return;
    }
    let value = &mut at[1..width];
    match width {
        3 => value.copy_from_slice(&u16::try_from(max).unwrap_or(u16::MAX).to_le_bytes()),
        5 => value.copy_from_slice(&u32::try_from(max).unwrap_or(u32::MAX).to_le_bytes()),
        9 => value.copy_from_slice(&max.to_le_bytes()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request_frame(deadline: Duration) -> Vec<u8> {
        use bincode::Options as _;
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now();
        let msg = tarpc::ClientMessage::Request(tarpc::Request {
            context: ctx,
            id: 7,
            message: "hello".to_owned(),
        });
        let mut b = bincode::DefaultOptions::new().serialize(&msg).unwrap();
        // Re-encode the deadline (now zero) as `deadline`, at the widest varint, as a
        // hostile client could.
        let (_, tag) = varint(&b).unwrap();
        let (_, width) = varint(&b[tag..]).unwrap();
        let mut wide = vec![U64_MARK];
        wide.extend_from_slice(&deadline.as_secs().to_le_bytes());
        b.splice(tag..tag + width, wide);
        let (_, nanos_width) = varint(&b[tag + 9..]).unwrap();
        let mut nanos = vec![U32_MARK];
        nanos.extend_from_slice(&deadline.subsec_nanos().to_le_bytes());
        b.splice(tag + 9..tag + 9 + nanos_width, nanos);
        b
    }

    fn decode_request(b: &[u8]) -> tarpc::ClientMessage<String> {
        use bincode::Options as _;
        bincode::DefaultOptions::new().deserialize(b).unwrap()
    }

    #[test]
    fn a_far_future_deadline_is_clamped_not_a_panic() {
        let mut b = request_frame(Duration::MAX);
        clamp_deadline(&mut b);
        let tarpc::ClientMessage::Request(r) = decode_request(&b) else {
            panic!("not a request");
        };
        assert_eq!(r.id, 7);
        assert_eq!(r.message, "hello");
        let left = r.context.deadline - Instant::now();
        assert!(left <= MAX_DEADLINE + Duration::from_secs(1), "{left:?}");
        assert!(left > MAX_DEADLINE - Duration::from_secs(60), "{left:?}");
    }

    #[test]
    fn an_ordinary_deadline_is_kept() {
        let mut b = request_frame(Duration::from_secs(10));
        let before = b.clone();
        clamp_deadline(&mut b);
        assert_eq!(b, before);
    }

    #[test]
    fn a_large_announced_frame_reserves_only_what_arrives() {
        let mut codec = Frames::server(64 << 20);
        let mut buf = BytesMut::new();
        buf.put_u32(60 << 20);
        buf.extend_from_slice(b"abc");
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() < 1 << 20, "{}", buf.capacity());
    }

    #[test]
    fn unfinished_large_frames_are_refused_past_the_budget() {
        static BUDGET: Budget = Budget::new(3 << 20);
        let big = |sent: usize| {
            let mut buf = BytesMut::new();
            buf.put_u32(8 << 20);
            buf.extend_from_slice(&vec![0; sent]);
            buf
        };
        let (mut a, mut b) = (
            Frames::new(16 << 20, true, &BUDGET),
            Frames::new(16 << 20, true, &BUDGET),
        );
        let (mut buf_a, mut buf_b) = (big(2 << 20), big(2 << 20));
        assert!(a.decode(&mut buf_a).unwrap().is_none());
        let e = b.decode(&mut buf_b).unwrap_err();
        assert!(e.to_string().contains("unfinished frames"), "{e}");
        // Small frames are read whatever the budget holds.
        let mut small = Frames::new(16 << 20, true, &BUDGET);
        let mut s = BytesMut::new();
        s.put_u32(3);
        assert!(small.decode(&mut s).unwrap().is_none());
        s.extend_from_slice(b"abc");
        assert_eq!(&small.decode(&mut s).unwrap().unwrap()[..], b"abc");
        drop((b, small));
        assert_eq!(BUDGET.used(), (2 << 20) + 4, "the length prefix counts too");
        drop(a);
        assert_eq!(BUDGET.used(), 0);
    }

    #[test]
    fn the_remoting_tracker_counts_against_the_budget_until_done_or_dropped() {
        static BUDGET: Budget = Budget::new(3 << 20);
        let mut a = UnfinishedFrame::against(&BUDGET).tracker();
        let mut b = UnfinishedFrame::against(&BUDGET).tracker();
        a(2 << 20, 8 << 20).unwrap();
        let e = b(2 << 20, 8 << 20).unwrap_err();
        assert!(e.to_string().contains("unfinished frames"), "{e}");
        b(0, 0).unwrap();
        assert_eq!(BUDGET.used(), 2 << 20);
        a(0, 0).unwrap();
        assert_eq!(BUDGET.used(), 0);
        a(1 << 20, 8 << 20).unwrap();
        drop(a);
        assert_eq!(BUDGET.used(), 0);
    }

    #[test]
    fn a_trickled_frame_is_cut_off() {
        assert_eq!(frame_time_limit(100), Duration::from_secs(30));
        assert_eq!(frame_time_limit(64 << 20), Duration::from_secs(30 + 256));
        let mut codec = Frames::server(1 << 10);
        let mut buf = BytesMut::new();
        buf.put_u32(100);
        buf.put_u8(0);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        codec.unfinished.started = Instant::now().checked_sub(Duration::from_secs(31));
        buf.put_u8(0);
        let e = codec.decode(&mut buf).unwrap_err();
        assert!(e.to_string().contains("still incomplete after 30 s"), "{e}");
    }

    #[test]
    fn frames_over_the_limit_are_refused() {
        let mut codec = Frames::client(16);
        let mut buf = BytesMut::new();
        buf.put_u32(17);
        let e = codec.decode(&mut buf).unwrap_err();
        assert!(e.to_string().contains("over the limit of 16 bytes"), "{e}");
        assert!(codec
            .encode(Bytes::from(vec![0; 17]), &mut BytesMut::new())
            .is_err());
    }

    #[test]
    fn frames_round_trip() {
        let mut codec = Frames::client(1 << 10);
        let mut buf = BytesMut::new();
        codec.encode(Bytes::from_static(b"one"), &mut buf).unwrap();
        codec.encode(Bytes::from_static(b""), &mut buf).unwrap();
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"one");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"");
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut b = bytes.clone();
            clamp_deadline(&mut b);
            let mut codec = Frames::server(1 << 10);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }
    }
}
