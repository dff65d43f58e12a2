//! Serving one remoting connection: requests run concurrently (a held pull must not delay
//! the heartbeat behind it: ali-ons closes a connection whose call times out), responses go
//! back in any order (clients match them by opaque), and the server may push its own
//! requests on the same connection.
//!
//! ```text
//!  frames ─► reader ─┬─► handler task per request
//!                    │        │ response (unless the request is oneway)
//!  pushes ───────────┼────────┴─► writer ─► frames
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::Framed;
use tokio_util::task::TaskTracker;

use crate::codes::response;
use crate::{FrameCodec, RemotingCommand};

/// Responses waiting for the writer.
const WRITE_QUEUE: usize = 1024;

/// Serves requests on `io`, framed by `codec`, with `handle` until the peer closes, sends
/// a frame that does not decode, or the connection fails. Each request runs as a task on
/// `requests`; beyond `max_in_flight` at once a request is answered SYSTEM_BUSY. Commands
/// from `pushes` are written as server requests, numbered with the connection's own
/// opaque counter.
#[allow(clippy::too_many_arguments)]
pub async fn serve<Io, H, F, P>(
    io: Io,
    codec: FrameCodec,
    peer: SocketAddr,
    requests: TaskTracker,
    max_in_flight: usize,
    mut pushes: P,
    handle: H,
) where
    Io: AsyncRead + AsyncWrite + Send + 'static,
    H: Fn(RemotingCommand) -> F + Send + Sync + 'static,
    F: Future<Output = RemotingCommand> + Send + 'static,
    P: Stream<Item = RemotingCommand> + Unpin + Send,
{
    let (mut sink, mut frames) = Framed::new(io, codec).split();
    let (tx, mut rx) = mpsc::channel::<RemotingCommand>(WRITE_QUEUE);
    let writer = async move {
        let mut opaque = 0i32;
        loop {
            let cmd = tokio::select! {
                c = rx.recv() => match c { Some(c) => c, None => return },
                p = pushes.next() => match p {
                    Some(mut p) => {
                        opaque = opaque.wrapping_add(1);
                        p.opaque = opaque;
                        p
                    }
                    None => std::future::pending().await,
                },
            };
            if let Err(e) = sink.send(cmd).await {
                tracing::debug!(%peer, error = %e, "remoting connection write failed");
                return;
            }
        }
    };
    let handle = Arc::new(handle);
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let reader = async move {
        while let Some(frame) = frames.next().await {
            let req = match frame {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "closing a remoting connection: bad frame");
                    return;
                }
            };
            if req.is_response() {
                // Answers to our pushes (oneway) or to nothing we asked: ignore.
                continue;
            }
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                let busy = RemotingCommand::response_to(&req, response::SYSTEM_BUSY).with_remark(
                    "[REJECTREQUEST]system busy, too many requests in flight on this connection",
                );
                if tx.send(busy).await.is_err() {
                    return;
                }
                continue;
            };
            let (handle, tx) = (handle.clone(), tx.clone());
            requests.spawn(async move {
                let oneway = req.is_oneway();
                let resp = handle(req).await;
                if !oneway {
                    let _ = tx.send(resp).await;
                }
                drop(permit);
            });
        }
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::request;
    use std::time::Duration;

    #[tokio::test]
    async fn a_slow_request_does_not_hold_up_the_next_and_pushes_get_opaques() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (push_tx, push_rx) = mpsc::channel::<RemotingCommand>(4);
        let tracker = TaskTracker::new();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        tokio::spawn(serve(
            server,
            FrameCodec::default(),
            peer,
            tracker,
            16,
            tokio_stream_of(push_rx),
            |req: RemotingCommand| async move {
                if req.code == request::PULL_MESSAGE {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                RemotingCommand::response_to(&req, 0)
            },
        ));
        let mut c = Framed::new(client, FrameCodec::default());
        c.send(RemotingCommand::request(request::PULL_MESSAGE, 1))
            .await
            .unwrap();
        c.send(RemotingCommand::request(request::HEART_BEAT, 2))
            .await
            .unwrap();
        let first = c.next().await.unwrap().unwrap();
        assert_eq!((first.opaque, first.is_response()), (2, true));
        push_tx
            .send(RemotingCommand::request(
                request::NOTIFY_CONSUMER_IDS_CHANGED,
                0,
            ))
            .await
            .unwrap();
        let pushed = c.next().await.unwrap().unwrap();
        assert_eq!(pushed.code, request::NOTIFY_CONSUMER_IDS_CHANGED);
        assert_eq!(pushed.opaque, 1);
        assert!(!pushed.is_response());
    }

    fn tokio_stream_of(
        mut rx: mpsc::Receiver<RemotingCommand>,
    ) -> impl Stream<Item = RemotingCommand> + Unpin {
        Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
