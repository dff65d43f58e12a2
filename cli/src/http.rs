//! The HTTP listener of `raftmq broker` (`http_listen`), `raftmq namesrv --http-listen`
//! and `raftmq dev`: Prometheus metrics at `/metrics` and health at `/healthz` for every
//! server of the process (a [`Registry`] of them), and the web console (`raftmq dev`,
//! `raftmq console`) when one is given.
//!
//! Connections are accepted as on every other port ([`serve_with`]): within the process's
//! connection limit and closed after the idle limit; hyper (HTTP/1.1 only) also closes a
//! connection whose request head takes longer than [`HEADER_READ_TIMEOUT`], so a client
//! trickling header bytes cannot hold a slot.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use raftmq_metrics::{Registry, CONTENT_TYPE};
use raftmq_proto::transport::serve_with;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Longest a client may take to send a request's line and headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The routes, for `serve` and tests.
fn app(registry: Registry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(registry)
}

/// Serves `registry` (and `console`'s pages, when given) on `listener` until `stop` is
/// cancelled.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    console: Option<Router>,
    stop: CancellationToken,
) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    tracing::info!(%addr, console = console.is_some(), "HTTP listener serving /metrics and /healthz");
    let app = match console {
        Some(c) => app(registry).merge(c),
        None => app(registry),
    };
    serve_with(listener, None, stop, move |stream, peer, _requests| {
        let service = TowerToHyperService::new(app.clone());
        async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection closed");
            }
        }
    })
    .await;
}

async fn metrics(State(registry): State<Registry>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        registry.collect().await.render(),
    )
}

/// 200 with one line per server while all of them serve; 503 once one has stopped.
async fn healthz(State(registry): State<Registry>) -> impl IntoResponse {
    let health = registry.health();
    let status = if health.iter().all(|h| h.ok) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body: String = health.iter().map(|h| format!("{}\n", h.line)).collect();
    if body.is_empty() {
        body = "starting: no server registered yet\n".to_owned();
    }
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_metrics::{BoxFuture, Exposition, Health, Labels, Source};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Fake(bool);

    impl Source for Fake {
        fn collect(&self) -> BoxFuture<'_, Exposition> {
            Box::pin(async {
                let mut e = Exposition::new();
                e.gauge(
                    "raftmq_raft_term",
                    "Term.",
                    &Labels::new().with("node", "1"),
                    4.0,
                );
                e
            })
        }
        fn health(&self) -> Health {
            Health {
                ok: self.0,
                line: format!("fake: ok={}", self.0),
            }
        }
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn metrics_and_health_of_the_registered_servers() {
        let registry = Registry::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, registry.clone(), None, stop.clone()));

        let empty = get(addr, "/healthz").await;
        assert!(empty.starts_with("HTTP/1.1 200"), "{empty}");
        assert!(empty.contains("no server registered yet"), "{empty}");

        let up = registry.register(Arc::new(Fake(true)));
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("content-type: text/plain; version=0.0.4"), "{m}");
        assert!(m.contains("\r\n\r\n# HELP raftmq_raft_term Term.\n# TYPE raftmq_raft_term gauge\nraftmq_raft_term{node=\"1\"} 4\n"), "{m}");
        assert!(get(addr, "/healthz").await.contains("fake: ok=true"));

        let _down = registry.register(Arc::new(Fake(false)));
        let h = get(addr, "/healthz").await;
        assert!(h.starts_with("HTTP/1.1 503"), "{h}");
        assert!(h.contains("fake: ok=true\nfake: ok=false\n"), "{h}");
        drop(up);

        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        stop.cancel();
        server.await.unwrap();
    }
}
