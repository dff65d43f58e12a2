//! One connection type for every port, plain TCP or TLS, and the dialer that opens one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::TlsClient;

/// A connection: plain TCP, or TLS over TCP (either side of it).
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// On a server: whether the client presented a certificate (rustls checked it
    /// against the CA during the handshake, or the handshake would have failed).
    pub fn peer_certified(&self) -> bool {
        match self {
            Stream::Tls(s) => s.get_ref().1.peer_certificates().is_some(),
            Stream::Plain(_) => false,
        }
    }
}

impl From<tokio_rustls::server::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(s)))
    }
}

impl From<tokio_rustls::client::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(s)))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
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
            None => Ok(Stream::Plain(tcp)),
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
