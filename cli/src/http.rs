//! The HTTP listener of `raftmq broker` (`http_listen`), `raftmq namesrv --http-listen`
//! and `raftmq dev`: Prometheus metrics at `/metrics` and health at `/healthz` for every
//! server of the process (a [`Registry`] of them), and the web console (`raftmq dev`,
//! `raftmq console`) when one is given.
//!
//! Connections are accepted as on every other port ([`serve_with`]): within the process's
//! connection limit and closed after the idle limit; hyper (HTTP/1.1 only) also closes a
//! connection whose request head takes longer than [`HEADER_READ_TIMEOUT`], so a client
//! trickling header bytes cannot hold a slot.
//!
//! With [`HttpOptions::tls`] the listener speaks HTTPS only. With credentials in
//! [`MetricsAccess`], `/metrics` answers 401 to a request without them (Prometheus sends
//! them with `authorization` or `basic_auth` in its scrape config); `/healthz` stays open
//! for probes: it tells only whether each server serves.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use raftmq_metrics::{Registry, CONTENT_TYPE};
use raftmq_proto::tls::TlsServer;
use raftmq_proto::transport::serve_with;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Longest a client may take to send a request's line and headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may read `/metrics`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MetricsAccess {
    /// `Authorization: Bearer TOKEN` is accepted.
    pub token: Option<String>,
    /// `Authorization: Basic` with this user name and password is accepted.
    pub basic: Option<(String, String)>,
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAccess")
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("basic", &self.basic.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl MetricsAccess {
    /// Anyone who reaches the listener.
    pub fn is_open(&self) -> bool {
        self.token.is_none() && self.basic.is_none()
    }

    /// Whether `headers` carry one of the accepted credentials.
    fn admits(&self, headers: &HeaderMap) -> bool {
        if self.is_open() {
            return true;
        }
        let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if let (Some(t), Some(given)) = (&self.token, auth.strip_prefix("Bearer ")) {
            return same(given.trim().as_bytes(), t.as_bytes());
        }
        let decoded = auth.strip_prefix("Basic ").and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        });
        match (&self.basic, decoded) {
            (Some((user, pass)), Some(d)) => same(&d, format!("{user}:{pass}").as_bytes()),
            _ => false,
        }
    }
}

/// Equal without an early exit on the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// What a plain-HTTP request to the HTTPS listener is answered.
pub const PLAINTEXT_REPLY: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 44\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use https:// here.\r\n";

/// How the listener serves.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// HTTPS with this certificate (client certificates are not asked for).
    pub tls: Option<Arc<TlsServer>>,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
}

/// The routes, for `serve` and tests.
fn app(registry: Registry, access: MetricsAccess) -> Router {
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(access),
            require,
        ))
        .with_state(registry.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(registry)
        .merge(metrics)
}

/// 401 unless the request carries a credential `/metrics` accepts.
async fn require(State(access): State<Arc<MetricsAccess>>, req: Request, next: Next) -> Response {
    if access.admits(req.headers()) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"raftmq metrics\"")],
        "/metrics needs a credential: `Authorization: Bearer <metrics token>`, or Basic \
         with the configured admin's access key and secret when [auth] is enabled\n",
    )
        .into_response()
}

/// Serves `registry` (and `console`'s pages, when given) on `listener` as `options` say
/// until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    console: Option<Router>,
    options: HttpOptions,
    stop: CancellationToken,
) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    tracing::info!(
        %addr,
        console = console.is_some(),
        https = options.tls.is_some(),
        metrics_open = options.metrics.is_open(),
        "HTTP listener serving /metrics and /healthz"
    );
    let app = match console {
        Some(c) => app(registry, options.metrics).merge(c),
        None => app(registry, options.metrics),
    };
    serve_with(
        listener,
        options.tls,
        stop,
        move |stream, peer, _requests| {
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
        },
    )
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
    health_answer(&registry, |h| h.ok)
}

/// 200 when every server of the process is ready for traffic (a broker node: a voting
/// member of a group with a leader), for readiness probes; the lines say why not.
async fn readyz(State(registry): State<Registry>) -> impl IntoResponse {
    health_answer(&registry, |h| h.ok && h.ready)
}

fn health_answer(
    registry: &Registry,
    good: impl Fn(&raftmq_metrics::Health) -> bool,
) -> (StatusCode, String) {
    let health = registry.health();
    let status = if health.iter().all(good) {
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
                ready: self.0,
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
        let server = tokio::spawn(serve(
            listener,
            registry.clone(),
            None,
            HttpOptions::default(),
            stop.clone(),
        ));

        let empty = get(addr, "/healthz").await;
        assert!(empty.starts_with("HTTP/1.1 200"), "{empty}");
        assert!(empty.contains("no server registered yet"), "{empty}");

        let up = registry.register(Arc::new(Fake(true)));
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("content-type: text/plain; version=0.0.4"), "{m}");
        assert!(m.contains("\r\n\r\n# HELP raftmq_raft_term Term.\n# TYPE raftmq_raft_term gauge\nraftmq_raft_term{node=\"1\"} 4\n"), "{m}");
        assert!(get(addr, "/healthz").await.contains("fake: ok=true"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));

        let _down = registry.register(Arc::new(Fake(false)));
        let h = get(addr, "/healthz").await;
        assert!(h.starts_with("HTTP/1.1 503"), "{h}");
        assert!(h.contains("fake: ok=true\nfake: ok=false\n"), "{h}");
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        drop(up);

        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        stop.cancel();
        server.await.unwrap();
    }

    async fn get_with(addr: std::net::SocketAddr, path: &str, auth: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn metrics_with_credentials_refuse_strangers_and_health_stays_open() {
        let registry = Registry::new();
        let _up = registry.register(Arc::new(Fake(true)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let options = HttpOptions {
            tls: None,
            metrics: MetricsAccess {
                token: Some("0123456789abcdef-token".into()),
                basic: Some(("admin".into(), "s3cret".into())),
            },
        };
        let server = tokio::spawn(serve(listener, registry, None, options, stop.clone()));
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for (auth, code) in [
            (String::new(), "401"),
            ("Authorization: Bearer wrong\r\n".into(), "401"),
            (
                "Authorization: Bearer 0123456789abcdef-toke\r\n".into(),
                "401",
            ),
            (
                format!("Authorization: Basic {}\r\n", b64("admin:wrong")),
                "401",
            ),
            (
                format!("Authorization: Basic {}\r\n", b64("other:s3cret")),
                "401",
            ),
            ("Authorization: Basic !!!\r\n".into(), "401"),
            (
                "Authorization: Bearer 0123456789abcdef-token\r\n".into(),
                "200",
            ),
            (
                format!("Authorization: Basic {}\r\n", b64("admin:s3cret")),
                "200",
            ),
        ] {
            let r = get_with(addr, "/metrics", &auth).await;
            assert!(r.starts_with(&format!("HTTP/1.1 {code}")), "{auth:?}: {r}");
            assert_eq!(
                r.contains("raftmq_raft_term"),
                code == "200",
                "{auth:?}: {r}"
            );
            if code == "401" {
                assert!(r.contains("www-authenticate: Basic"), "{r}");
                assert!(r.contains("needs a credential"), "{r}");
            }
        }
        let h = get_with(addr, "/healthz", "").await;
        assert!(
            h.starts_with("HTTP/1.1 200") && h.contains("fake: ok=true"),
            "{h}"
        );
        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn https_only_when_a_certificate_is_given() {
        use raftmq_proto::tls::{write_dev_certs, ClientCerts, TlsClient, TlsTrust};
        let dir = tempfile::tempdir().unwrap();
        let files = write_dev_certs(dir.path(), &[]).unwrap();
        let registry = Registry::new();
        let _up = registry.register(Arc::new(Fake(true)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let options = HttpOptions {
            tls: Some(
                TlsServer::load_answering_plaintext(&files, ClientCerts::Ignored, PLAINTEXT_REPLY)
                    .unwrap(),
            ),
            metrics: MetricsAccess::default(),
        };
        let server = tokio::spawn(serve(listener, registry, None, options, stop.clone()));

        let client = TlsClient::load(&TlsTrust {
            ca: files.ca.clone().unwrap(),
            identity: None,
        })
        .unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = client.connect(&addr.to_string(), tcp).await.unwrap();
        tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        // rustls reports a peer that closes without close_notify as an error after the data.
        let _ = tls.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.starts_with("HTTP/1.1 200") && out.contains("raftmq_raft_term"),
            "{out}"
        );

        // Plain HTTP to the HTTPS port is told so, in a well-formed answer.
        let plain = get(addr, "/metrics").await;
        let (head, body) = plain.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400"), "{plain}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{plain}"
        );
        assert!(body.contains("use https://"), "{plain}");
        stop.cancel();
        server.await.unwrap();
    }
}
