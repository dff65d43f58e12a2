//! TCP transport for every raftmq RPC: length-delimited bincode frames with an explicit,
//! raised limit on both ends, `TCP_NODELAY` on, optional TLS ([`crate::tls`]), and a server
//! loop with graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_serde::Framed as SerdeFramed;
use tarpc::tokio_util::codec::Framed;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn_limit::ConnectionLimit;
use crate::frames::Frames;
use crate::stream::{Dialer, Stream};
use crate::throttle::Throttle;
use crate::tls::{TlsServer, HANDSHAKE_RECORD};

/// Largest frame either side accepts: room for a 4 MiB message batch, a Raft
/// AppendEntries of several such entries, or a snapshot chunk, with headroom.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// How long a shutting-down server waits for in-flight requests before closing connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Most requests one connection may have executing at once.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 4096;

/// How long a new connection to a TLS port may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server closes a connection on which nothing was read or written for this long
/// ([`set_idle_limit`]), by default 120 s as RocketMQ's servers
/// (`serverChannelMaxIdleTimeSeconds`): a client that connects and goes silent, even in
/// the middle of a frame, gives its slot back. Busy clients never reach it (consumers
/// poll, Raft peers send heartbeats, RocketMQ clients send heartbeats every 30 s), and
/// idle ones re-dial ([`crate::live::Live`]).
pub const DEFAULT_IDLE_LIMIT: Duration = Duration::from_secs(120);

static IDLE_LIMIT_MS: AtomicU64 = AtomicU64::new(DEFAULT_IDLE_LIMIT.as_millis() as u64);

/// Sets the idle limit of the connections this process accepts from now on (one value
/// per process, as the connection limit: a broker's config sets it at start).
pub fn set_idle_limit(limit: Duration) {
    IDLE_LIMIT_MS.store(limit.as_millis() as u64, Ordering::Relaxed);
}

fn idle_limit() -> Duration {
    Duration::from_millis(IDLE_LIMIT_MS.load(Ordering::Relaxed))
}

/// A tarpc transport over TCP or TLS.
pub type TcpTransport<In, Out> = IoTransport<Stream, In, Out>;

/// A tarpc transport over any byte stream: bincode in [`Frames`].
pub type IoTransport<Io, In, Out> = SerdeFramed<Framed<Io, Frames>, In, Out, Bincode<In, Out>>;

/// Wraps a connected stream (from a [`Dialer`]) for a client: frames up to
/// [`MAX_FRAME_BYTES`].
pub fn framed<In, Out>(stream: Stream) -> TcpTransport<In, Out>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    framed_io(stream)
}

/// Wraps an accepted stream (from [`serve_with`]) for a server, as [`serving_io`].
pub fn serving<In, Out>(stream: Stream) -> TcpTransport<In, Out>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    serving_io(stream)
}

/// Wraps any byte stream for a client: frames up to [`MAX_FRAME_BYTES`].
pub fn framed_io<Io, In, Out>(io: Io) -> IoTransport<Io, In, Out>
where
    Io: AsyncRead + AsyncWrite,
    In: DeserializeOwned,
    Out: Serialize,
{
    transport(io, Frames::client(MAX_FRAME_BYTES))
}

/// Wraps any byte stream for a server: frames up to [`MAX_FRAME_BYTES`], request
/// deadlines clamped ([`Frames::server`]).
pub fn serving_io<Io, In, Out>(io: Io) -> IoTransport<Io, In, Out>
where
    Io: AsyncRead + AsyncWrite,
    In: DeserializeOwned,
    Out: Serialize,
{
    transport(io, Frames::server(MAX_FRAME_BYTES))
}

fn transport<Io, In, Out>(io: Io, frames: Frames) -> IoTransport<Io, In, Out>
where
    Io: AsyncRead + AsyncWrite,
    In: DeserializeOwned,
    Out: Serialize,
{
    SerdeFramed::new(Framed::new(io, frames), Bincode::default())
}

/// Connects to `addr` with `dialer` (plain or TLS) within `timeout`.
///
/// # Errors
/// The connection or TLS handshake failed or timed out.
pub async fn connect<In, Out>(
    dialer: &Dialer,
    addr: &str,
    timeout: Duration,
) -> io::Result<TcpTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    Ok(framed(dialer.connect(addr, timeout).await?))
}

/// Accepts connections on `listener` until `shutdown` fires, within the process's
/// [`ConnectionLimit`]; with `tls`, each connection first completes a TLS handshake within
/// [`HANDSHAKE_TIMEOUT`] (a plaintext client is closed at once, and logged). `connection`
/// runs one connection (given its peer address), spawning each request on the tracker it
/// is given.
/// On shutdown it stops accepting, gives in-flight requests up to [`SHUTDOWN_GRACE`] to
/// finish, then closes every connection. [`crate::serve_tarpc!`] serves a tarpc service
/// with it.
pub async fn serve_with<F, Fut>(
    listener: TcpListener,
    tls: Option<Arc<TlsServer>>,
    shutdown: CancellationToken,
    connection: F,
) where
    F: Fn(Stream, SocketAddr, TaskTracker) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let connection = Arc::new(connection);
    let refused = Arc::new(Throttle::default());
    let connections = TaskTracker::new();
    let requests = TaskTracker::new();
    let close = CancellationToken::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually EMFILE or a reset before accept: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = ConnectionLimit::process().admit(peer) else {
            drop(stream);
            continue;
        };
        let (connection, requests, close) = (connection.clone(), requests.clone(), close.clone());
        let (tls, refused) = (tls.clone(), refused.clone());
        connections.spawn(async move {
            let _slot = slot;
            let run = async {
                if let Some(stream) = open(stream, peer, tls.as_deref(), &refused).await {
                    connection(stream.with_idle_limit(idle_limit()), peer, requests).await;
                }
            };
            tokio::select! {
                _ = run => tracing::trace!(%peer, "connection closed"),
                _ = close.cancelled() => {}
            }
        });
    }
    drop(listener);
    requests.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, requests.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the shutdown grace period");
    }
    close.cancel();
    connections.close();
    connections.wait().await;
}

/// An accepted connection as a [`Stream`]: `TCP_NODELAY` on and, on a TLS port, the
/// handshake done. `None` (logged at most every 30 s) when it failed.
async fn open(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<&TlsServer>,
    refused: &Throttle,
) -> Option<Stream> {
    crate::stream::nodelay(&tcp);
    let Some(tls) = tls else {
        return Some(Stream::plain(tcp));
    };
    let handshake = async {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Ok(None);
        }
        if first[0] != HANDSHAKE_RECORD {
            if let Some(reply) = tls.plaintext_reply() {
                let mut tcp = tcp;
                // Best effort: the client may already be gone.
                let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, reply).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp).await;
                // Closing with the request still unread would reset the connection and
                // could discard the reply before the client reads it: read what it sent
                // first (briefly, and a bounded amount).
                let mut sink = [0u8; 4096];
                let drain = async {
                    for _ in 0..16 {
                        match tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a plaintext client on a TLS port (the client needs TLS: give it the CA, --tls-ca)",
            ));
        }
        Ok(Some(Stream::from(tls.accept(tcp).await?)))
    };
    let failed = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => return stream,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
    };
    if let Some(suppressed) = refused.allow() {
        tracing::warn!(%peer, error = %failed, suppressed, "TLS connection refused");
    }
    None
}

/// Serves a tarpc service:
/// `serve_tarpc!(listener, tls, |peer| server(peer).serve(), shutdown)`, where `tls` is an
/// `Option<Arc<TlsServer>>` and the closure builds the per-connection value of the
/// generated `serve()` (so each connection can carry its own state, such as its peer
/// address).
#[macro_export]
macro_rules! serve_tarpc {
    ($listener:expr, $tls:expr, $make:expr, $shutdown:expr) => {{
        let make = $make;
        $crate::transport::serve_with($listener, $tls, $shutdown, move |stream, peer, requests| {
            let serve = make(peer);
            $crate::tarpc_connection!($crate::transport::serving(stream), serve, requests)
        })
    }};
}

/// Serves one tarpc connection (a transport from [`serving_io`]), spawning
/// each request on `requests`; an `async` block that ends when the connection does.
#[macro_export]
macro_rules! tarpc_connection {
    ($transport:expr, $serve:expr, $requests:expr) => {{
        use $crate::__private::{Channel as _, StreamExt as _};
        let channel = $crate::__private::BaseChannel::with_defaults($transport)
            .max_concurrent_requests($crate::transport::MAX_REQUESTS_PER_CONNECTION);
        let serve = $serve;
        let requests = $requests;
        async move {
            channel
                .execute(serve)
                .for_each(|request| {
                    requests.spawn(request);
                    std::future::ready(())
                })
                .await
        }
    }};
}

/// A stream whose first bytes were already read (to tell protocols apart): reads return
/// them first, then the rest of the stream; writes go straight through.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `prefix` then `inner`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Reads the first bytes of a new connection until `decide` names its protocol (it sees
/// at most `want` bytes), within `timeout`; returns the protocol and the stream with those
/// bytes put back. `None` when the peer closed, failed or stayed silent.
pub async fn sniff<T, S: AsyncRead + Unpin>(
    mut stream: S,
    want: usize,
    decide: impl Fn(&[u8]) -> Option<T>,
    timeout: Duration,
) -> Option<(T, Prefixed<S>)> {
    let mut prefix = Vec::with_capacity(want);
    let read = tokio::time::timeout(
        timeout,
        read_prefix(&mut stream, &mut prefix, want, |p| decide(p).is_some()),
    )
    .await;
    if !matches!(read, Ok(Ok(true))) {
        return None;
    }
    let protocol = decide(&prefix)?;
    Some((protocol, Prefixed::new(prefix, stream)))
}

/// Reads until `buf` holds `want` bytes or `decide` can decide from fewer; `Ok(false)` if
/// the peer closed first.
///
/// # Errors
/// The read failed.
pub async fn read_prefix<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    want: usize,
    mut decided: impl FnMut(&[u8]) -> bool,
) -> io::Result<bool> {
    use tokio::io::AsyncReadExt as _;
    while buf.len() < want && !decided(buf) {
        let mut chunk = [0u8; 64];
        let room = (want - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Ok(false);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(true)
}

/// A future a front end serves with.
pub type Serving = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One way clients reach a server's core (`Core`: the broker's or the NameServer's):
/// typically a listener and the protocol(s) spoken on it. The server starts each of its
/// front ends once its core is up and cancels `stop` on shutdown; a front end then stops
/// accepting and finishes in-flight requests (see [`serve_with`]).
pub trait FrontEnd<Core>: Send {
    /// What it serves, for logs (`"client port 127.0.0.1:10911"`).
    fn describe(&self) -> String;
    /// Serves until `stop` is cancelled.
    fn serve(self: Box<Self>, core: Core, stop: CancellationToken) -> Serving;
}

/// Binds a listener, naming the address in the error.
///
/// # Errors
/// The address is invalid or in use.
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Resolves once the process gets ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only ctrl-c stops the process");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// The local address of a listener, for logs.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_read_prefix_is_replayed_before_the_rest() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"0123456789abcdef").await.unwrap();
        drop(a);
        let mut prefix = Vec::new();
        assert!(
            read_prefix(&mut b, &mut prefix, 10, |p| p.len() >= 4 && p[0] == b'x')
                .await
                .unwrap()
        );
        assert_eq!(prefix, b"0123456789");
        let mut all = Vec::new();
        Prefixed::new(prefix, b)
            .read_to_end(&mut all)
            .await
            .unwrap();
        assert_eq!(all, b"0123456789abcdef");
    }

    #[tokio::test]
    async fn a_prefix_read_stops_when_decided_or_closed() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"xyz").await.unwrap();
        let mut prefix = Vec::new();
        assert!(
            read_prefix(&mut b, &mut prefix, 10, |p| p.first() == Some(&b'x'))
                .await
                .unwrap()
        );
        assert_eq!(prefix, b"xyz");
        drop(a);
        let mut more = Vec::new();
        assert!(!read_prefix(&mut b, &mut more, 10, |_| false).await.unwrap());
    }
}
