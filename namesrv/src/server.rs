//! Running the NameServer: its core, its front ends and the expiry sweep.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::tls::{ClientCerts, TlsServer};
use raftmq_proto::transport::{serve_with, serving_io, sniff, FrontEnd, Serving};
use raftmq_proto::NamesrvService as _;
use raftmq_remoting::detect::{detect, Protocol, PREFIX_LEN};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::Namesrv;
use crate::native::NativeNamesrv;

/// NameServer settings.
#[derive(Debug, Clone)]
pub struct NamesrvConfig {
    /// Drop a broker node silent this long. Default: 120 s.
    pub expiry: Duration,
    /// How often expired nodes are swept. Default: 5 s.
    pub scan_every: Duration,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        Self {
            expiry: Duration::from_secs(120),
            scan_every: Duration::from_secs(5),
        }
    }
}

/// How long a new connection may take to send the bytes that tell its protocol.
const DETECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The NameServer port: raftmq's native protocol and RocketMQ remoting, told apart by a
/// connection's first bytes, so RocketMQ clients configured with `namesrvAddr =
/// host:9876` and the `raftmq` CLI use the same address.
#[derive(Debug)]
pub struct NamesrvPort {
    listener: TcpListener,
    tls: Option<Arc<TlsServer>>,
}

impl NamesrvPort {
    /// Serves on `listener`, in plaintext.
    pub fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            tls: None,
        }
    }

    /// Serves inside TLS (`None`: plaintext).
    pub fn with_tls(mut self, tls: Option<Arc<TlsServer>>) -> Self {
        self.tls = tls;
        self
    }
}

impl FrontEnd<Namesrv> for NamesrvPort {
    fn describe(&self) -> String {
        match self.listener.local_addr() {
            Ok(a) => format!("NameServer port {a}"),
            Err(_) => "NameServer port".to_owned(),
        }
    }

    fn serve(self: Box<Self>, core: Namesrv, stop: CancellationToken) -> Serving {
        // With a client CA, only certified clients (brokers) may register.
        let needs_cert = self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_certs() != ClientCerts::Ignored);
        Box::pin(serve_with(
            self.listener,
            self.tls,
            stop,
            move |stream, peer, requests| {
                let core = core.clone();
                let may_register = stream.peer_certified() || !needs_cert;
                async move {
                    let Some((protocol, io)) =
                        sniff(stream, PREFIX_LEN, detect, DETECT_TIMEOUT).await
                    else {
                        return;
                    };
                    match protocol {
                        Protocol::Remoting => {
                            crate::remoting::serve_connection(io, peer, core, requests).await
                        }
                        Protocol::Native => {
                            let serve = NativeNamesrv::new(core, may_register).serve();
                            raftmq_proto::tarpc_connection!(serving_io(io), serve, requests).await
                        }
                    }
                }
            },
        ))
    }
}

/// Serves a NameServer on `front_ends` until `shutdown` resolves.
pub async fn run(
    config: NamesrvConfig,
    front_ends: Vec<Box<dyn FrontEnd<Namesrv>>>,
    shutdown: impl Future<Output = ()>,
) {
    let core = Namesrv::new(config.expiry);
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    for f in front_ends {
        tracing::info!(serving = %f.describe(), expiry_s = config.expiry.as_secs(), "NameServer listening");
        tasks.spawn(f.serve(core.clone(), stop.clone()));
    }
    {
        let core = core.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(config.scan_every) => {}
                }
                core.expire();
            }
        });
    }
    tasks.close();
    shutdown.await;
    stop.cancel();
    tasks.wait().await;
    tracing::info!("NameServer stopped");
}
