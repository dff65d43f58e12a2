//! TCP transport for every raftmq RPC: length-delimited bincode frames with an explicit,
//! raised limit on both ends, `TCP_NODELAY` on, and a server loop with graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest frame either side accepts: room for a 4 MiB message batch, a Raft
/// AppendEntries of several such entries, or a snapshot chunk, with headroom.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// How long a shutting-down server waits for in-flight requests before closing connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Most requests one connection may have executing at once.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 4096;

/// A tarpc transport over TCP.
pub type TcpTransport<In, Out> =
    tarpc::serde_transport::Transport<TcpStream, In, Out, Bincode<In, Out>>;

/// Wraps a connected stream: `TCP_NODELAY` on, frames up to [`MAX_FRAME_BYTES`].
pub fn framed<In, Out>(stream: TcpStream) -> TcpTransport<In, Out>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec();
    tarpc::serde_transport::new(Framed::new(stream, codec), Bincode::default())
}

/// Connects to `addr` with a timeout.
///
/// # Errors
/// The connection failed or timed out.
pub async fn connect<In, Out>(addr: &str, timeout: Duration) -> io::Result<TcpTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {addr} timed out"),
            )
        })??;
    Ok(framed(stream))
}

/// Accepts connections on `listener` until `shutdown` fires; `connection` runs one
/// connection, spawning each request on the tracker it is given. On shutdown it stops
/// accepting, gives in-flight requests up to [`SHUTDOWN_GRACE`] to finish, then closes
/// every connection. Use it through [`crate::serve_tarpc!`].
pub async fn serve_with<F, Fut>(listener: TcpListener, shutdown: CancellationToken, connection: F)
where
    F: Fn(TcpStream, TaskTracker) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
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
        let run = connection(stream, requests.clone());
        let close = close.clone();
        connections.spawn(async move {
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

/// Serves a tarpc service: `serve_tarpc!(listener, server.serve(), shutdown)`, where the
/// second argument is the `Clone` value returned by the generated `serve()`.
#[macro_export]
macro_rules! serve_tarpc {
    ($listener:expr, $serve:expr, $shutdown:expr) => {{
        let serve = $serve;
        $crate::transport::serve_with($listener, $shutdown, move |stream, requests| {
            use $crate::__private::{Channel as _, StreamExt as _};
            let channel =
                $crate::__private::BaseChannel::with_defaults($crate::transport::framed(stream))
                    .max_concurrent_requests($crate::transport::MAX_REQUESTS_PER_CONNECTION);
            let serve = serve.clone();
            async move {
                channel
                    .execute(serve)
                    .for_each(|request| {
                        requests.spawn(request);
                        std::future::ready(())
                    })
                    .await
            }
        })
    }};
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
