//! One connection type for every port, plain TCP or TLS, and the dialer that opens one.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::tls::TlsClient;

/// A connection: plain TCP, or TLS over TCP (either side of it); on a server, closed
/// when it has been idle too long ([`Stream::with_idle_limit`]).
#[derive(Debug)]
pub struct Stream {
    io: Io,
    idle: Option<Idle>,
}

#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

/// An idle limit: no byte read or written for `limit` and a pending read fails with
/// `TimedOut`. Activity only stores an instant; the timer is re-armed when it fires.
#[derive(Debug)]
struct Idle {
    limit: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Stream {
    /// A plain TCP connection.
    pub fn plain(tcp: TcpStream) -> Self {
        Self {
            io: Io::Plain(tcp),
            idle: None,
        }
    }

    /// This connection, closed (its pending read fails with `TimedOut`) once nothing has
    /// been read or written on it for `limit`: a client that connects and goes silent,
    /// even in the middle of a frame, cannot hold a connection slot for ever.
    #[must_use]
    pub fn with_idle_limit(mut self, limit: Duration) -> Self {
        let now = Instant::now();
        self.idle = Some(Idle {
            limit,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + limit)),
        });
        self
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// On a server: whether the client presented a certificate (rustls checked it
    /// against the CA during the handshake, or the handshake would have failed).
    pub fn peer_certified(&self) -> bool {
        match &self.io {
            Io::Tls(s) => s.get_ref().1.peer_certificates().is_some(),
            Io::Plain(_) => false,
        }
    }

    /// Notes activity (bytes moved) for the idle limit.
    fn active(&mut self) {
        if let Some(idle) = &mut self.idle {
            idle.last = Instant::now();
        }
    }

    /// With the read pending: `Ready(Err)` once the connection has been idle for its
    /// limit, else `Pending` with the timer armed for the moment it would be.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(idle) = &mut self.idle else {
            return Poll::Pending;
        };
        loop {
            let due = idle.last + idle.limit;
            if idle.timer.deadline() != due {
                idle.timer.as_mut().reset(due);
            }
            if idle.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if idle.last + idle.limit <= Instant::now() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connection idle for {} s; closed", idle.limit.as_secs()),
                )));
            }
        }
    }
}

impl From<tokio_rustls::server::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        Self {
            io: Io::Tls(Box::new(tokio_rustls::TlsStream::Server(s))),
            idle: None,
        }
    }
}

impl From<tokio_rustls::client::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        Self {
            io: Io::Tls(Box::new(tokio_rustls::TlsStream::Client(s))),
            idle: None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.active();
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.idle_expired(cx),
            other => other,
        }
    }
}

impl Stream {
    /// Notes activity when a write moved bytes.
    fn wrote(&mut self, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.active();
        }
        polled
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        this.wrote(polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        this.wrote(polled)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Turns `TCP_NODELAY` on (both ends of every connection: replies are small and latency
/// matters more than packet count).
pub(crate) fn nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

/// How a client opens connections: plain TCP, or TLS trusting a CA.
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    tls: Option<Arc<TlsClient>>,
}

impl Dialer {
    /// Plain TCP.
    pub fn plain() -> Self {
        Self::default()
    }

    /// TLS with `tls`'s trust (and client certificate, if it has one).
    pub fn tls(tls: Arc<TlsClient>) -> Self {
        Self { tls: Some(tls) }
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects to `addr` (TCP and, with TLS, the handshake) within `timeout`.
    ///
    /// # Errors
    /// The connection or the handshake failed or timed out.
    pub async fn connect(&self, addr: &str, timeout: Duration) -> io::Result<Stream> {
        let open = async {
            let tcp = TcpStream::connect(addr).await?;
            self.wrap(addr, tcp).await
        };
        tokio::time::timeout(timeout, open).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {addr} timed out"),
            )
        })?
    }

    /// Turns a connected socket to `addr` into a [`Stream`]: `TCP_NODELAY` on and, with
    /// TLS, the handshake.
    ///
    /// # Errors
    /// The handshake failed.
    pub async fn wrap(&self, addr: &str, tcp: TcpStream) -> io::Result<Stream> {
        nodelay(&tcp);
        match &self.tls {
            None => Ok(Stream::plain(tcp)),
            Some(tls) => Ok(tls.connect(addr, tcp).await?.into()),
        }
    }

    /// A hint for an error on a connection the server closed at once: a plain client
    /// talking to a TLS port sees exactly that.
    pub fn closed_hint(&self) -> &'static str {
        if self.is_tls() {
            ""
        } else {
            " (if the server requires TLS, give the client its CA: --tls-ca)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connected (server side, client side) pair on loopback.
    async fn pair() -> (Stream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), l.accept());
        (Stream::plain(accepted.unwrap().0), client.unwrap())
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_at_its_idle_limit_and_bytes_defer_it() {
        let (server, mut client) = pair().await;
        let limit = Duration::from_secs(1);
        let mut server = server.with_idle_limit(limit);
        let t0 = Instant::now();
        // Five bytes, 250 ms apart: each keeps the connection open; then silence, as a
        // client that stops in the middle of a frame.
        let writer = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                client.write_all(b"x").await.unwrap();
            }
            client
        });
        let mut buf = [0u8; 16];
        let mut got = 0;
        let err = loop {
            let read = tokio::time::timeout(Duration::from_secs(10), server.read(&mut buf))
                .await
                .expect("not closed within 10 s");
            match read {
                Ok(0) => panic!("end of stream instead of the idle limit"),
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!(got, 5);
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(
            t0.elapsed() >= Duration::from_millis(1250) + limit,
            "closed after {:?}",
            t0.elapsed()
        );
        let _client = writer.await.unwrap();
    }

    #[tokio::test]
    async fn writes_count_as_activity_and_no_limit_means_none() {
        let (server, mut client) = pair().await;
        let mut server = server.with_idle_limit(Duration::from_secs(1));
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.write_all(b"y").await.unwrap();
        }
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        // 1.2 s since the start, well under 1 s since the last write: still open.
        let mut one = [0u8; 1];
        let pending = tokio::time::timeout(Duration::from_millis(100), server.read(&mut one)).await;
        assert!(pending.is_err(), "closed although written to: {pending:?}");

        let (mut plain, _client) = pair().await;
        let pending = tokio::time::timeout(Duration::from_millis(1500), plain.read(&mut one)).await;
        assert!(pending.is_err(), "a stream without a limit was closed");
    }
}
