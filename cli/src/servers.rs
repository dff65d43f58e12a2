//! `raftmq namesrv` and `raftmq broker`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use raftmq_broker::{BrokerConfig, ClientPort, FrontEnd, MetricsSlot};
use raftmq_metrics::Registry;
use raftmq_namesrv::metrics::MetricsSlot as NamesrvMetrics;
use raftmq_namesrv::{Namesrv, NamesrvConfig, NamesrvPort};
use raftmq_proto::transport::{bind, shutdown_signal};
use tokio_util::sync::CancellationToken;

use crate::http::{HttpOptions, MetricsAccess};
use crate::logging::LogArgs;

/// Options of `raftmq namesrv`.
#[derive(Debug, clap::Args)]
pub struct NamesrvArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9876")]
    pub listen: String,
    /// Forget a broker node silent for this many seconds.
    #[arg(long, default_value_t = 120)]
    pub expiry_secs: u64,
    /// Close a connection on which nothing was read or written for this many seconds, so
    /// silent clients give their slots back (clients re-dial; RocketMQ's servers use 120).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Serve TLS with this certificate chain (PEM); reloaded when the file changes.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Check client certificates against this CA (PEM): only a client that presents one
    /// it signed may register or unregister a broker (brokers with `[tls]` present their
    /// node certificate); other clients may still read routes.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub client_ca: Option<PathBuf>,
    /// With --client-ca: every client must present a certificate, not only brokers.
    #[arg(long, requires = "client_ca")]
    pub require_client_cert: bool,
    /// Serve Prometheus metrics at /metrics and health at /healthz on this address (HTTPS
    /// with --cert, plain HTTP without; /metrics open unless --metrics-token is set).
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// /metrics answers only requests with `Authorization: Bearer TOKEN` (at least 16
    /// characters); /healthz stays open for probes.
    #[arg(long, env = "RAFTMQ_METRICS_TOKEN", hide_env_values = true, requires = "http_listen", value_parser = metrics_token)]
    pub metrics_token: Option<String>,
    #[command(flatten)]
    pub log: LogArgs,
}

fn metrics_token(s: &str) -> Result<String, String> {
    if s.len() < 16 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "a metrics token needs at least 16 printable ASCII characters, no spaces".into(),
        );
    }
    Ok(s.to_owned())
}

/// HTTPS for an HTTP listener with the certificate `files` name (client certificates are
/// not asked for: browsers and scrapers present none).
pub(crate) fn https(
    files: &raftmq_proto::tls::TlsFiles,
) -> anyhow::Result<std::sync::Arc<raftmq_proto::tls::TlsServer>> {
    raftmq_proto::tls::TlsServer::load_answering_plaintext(
        files,
        raftmq_proto::tls::ClientCerts::Ignored,
        crate::http::PLAINTEXT_REPLY,
    )
    .context("the HTTP listener's certificate")
}

/// Options of `raftmq broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// The broker's TOML config file (see deploy/local/ for examples).
    #[arg(long, short = 'c', required_unless_present = "print_config")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (the file's settings, defaults filled in; without
    /// --config, the defaults) as TOML with a comment above each setting, and exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Runs a NameServer until ctrl-c or SIGTERM.
pub async fn namesrv(args: NamesrvArgs) -> anyhow::Result<()> {
    let mut http_options = HttpOptions {
        tls: None,
        metrics: MetricsAccess {
            token: args.metrics_token.clone(),
            basic: None,
        },
    };
    let tls = match args.cert.zip(args.key) {
        None => None,
        Some((cert, key)) => {
            use raftmq_proto::tls::ClientCerts;
            let clients = match (&args.client_ca, args.require_client_cert) {
                (None, _) => ClientCerts::Ignored,
                (Some(_), false) => ClientCerts::Optional,
                (Some(_), true) => ClientCerts::Required,
            };
            let files = raftmq_proto::tls::TlsFiles {
                cert,
                key,
                ca: args.client_ca,
                require_client_cert: args.require_client_cert,
            };
            http_options.tls = Some(https(&files)?);
            Some(raftmq_proto::tls::TlsServer::load(&files, clients)?)
        }
    };
    raftmq_proto::transport::set_idle_limit(Duration::from_secs(args.idle_timeout_secs));
    let listener = bind(&args.listen).await?;
    let config = NamesrvConfig {
        expiry: Duration::from_secs(args.expiry_secs),
        ..NamesrvConfig::default()
    };
    let mut front_ends: Vec<Box<dyn raftmq_proto::transport::FrontEnd<Namesrv>>> =
        vec![Box::new(NamesrvPort::new(listener).with_tls(tls))];
    let http = match &args.http_listen {
        Some(addr) => {
            let (registry, server) = HttpListener::start(addr, None, http_options).await?;
            front_ends.push(Box::new(NamesrvMetrics::new(registry, &args.listen)));
            Some(server)
        }
        None => None,
    };
    raftmq_namesrv::run(config, front_ends, shutdown_signal()).await;
    if let Some(h) = http {
        h.stop().await;
    }
    Ok(())
}

/// An HTTP listener running on its own task ([`crate::http::serve`]).
pub(crate) struct HttpListener {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl HttpListener {
    /// Binds `addr` and serves the returned registry there, and `console` when given, as
    /// `options` say.
    pub(crate) async fn start(
        addr: &str,
        console: Option<axum::Router>,
        options: HttpOptions,
    ) -> anyhow::Result<(Registry, Self)> {
        let listener = bind(addr)
            .await
            .context("the HTTP listener (http_listen / --http-listen) cannot start")?;
        let registry = Registry::new();
        let stop = CancellationToken::new();
        let task = tokio::spawn(crate::http::serve(
            listener,
            registry.clone(),
            console,
            options,
            stop.clone(),
        ));
        Ok((registry, Self { stop, task }))
    }

    /// Stops it once in-flight requests are answered.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Runs a broker node until ctrl-c or SIGTERM.
pub async fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => BrokerConfig::load(path)?,
        None if args.print_config => BrokerConfig::default().validate()?,
        None => anyhow::bail!("--config is required: raftmq broker --config broker.toml"),
    };
    if args.print_config {
        crate::output::emit(crate::config_doc::render(&config)?.trim_end());
        return Ok(());
    }
    let client = bind(&config.listen).await?;
    let raft = bind(&config.raft_listen).await?;
    let mut front_ends: Vec<Box<FrontEnd>> = vec![Box::new(ClientPort::new(client))];
    let http = match &config.http_listen {
        Some(addr) => {
            let (token, basic) = config.auth.metrics_credentials();
            let options = HttpOptions {
                tls: config.tls.as_ref().map(https).transpose()?,
                metrics: MetricsAccess { token, basic },
            };
            let (registry, server) = HttpListener::start(addr, None, options).await?;
            front_ends.push(Box::new(MetricsSlot::new(registry)));
            Some(server)
        }
        None => None,
    };
    let result = raftmq_broker::run(config, raft, front_ends, shutdown_signal()).await;
    if let Some(h) = http {
        h.stop().await;
    }
    result?;
    Ok(())
}

/// Options of `raftmq dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the three nodes keep their data (kept across restarts).
    #[arg(long, default_value = "./data/dev")]
    pub dir: PathBuf,
    /// Loopback IP everything listens on (NameServer on port 9876, nodes on 10911/10912,
    /// 11911/11912 and 12911/12912).
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: String,
    /// Serve the web console at /, every node's and the NameServer's Prometheus metrics at
    /// /metrics (a `node` or `namesrv` label tells them apart) and health at /healthz on
    /// this address. On loopback the console needs no sign-in; elsewhere it prints a
    /// token. Default: port 8080 of --ip.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    #[command(flatten)]
    pub log: LogArgs,
}

fn namesrv_addr(args: &DevArgs) -> String {
    format!("{}:9876", args.ip)
}

fn http_addr(args: &DevArgs) -> String {
    args.http_listen
        .clone()
        .unwrap_or_else(|| format!("{}:8080", args.ip))
}

/// The three nodes of the dev group: (node id, client port, Raft port).
const DEV_NODES: [(u64, u16, u16); 3] = [(1, 10911, 10912), (2, 11911, 11912), (3, 12911, 12912)];

fn dev_config(args: &DevArgs, id: u64, client: u16, raft: u16) -> anyhow::Result<BrokerConfig> {
    let peers = DEV_NODES
        .iter()
        .map(|(i, _, r)| (i.to_string(), format!("{}:{r}", args.ip)))
        .collect();
    BrokerConfig {
        cluster: "DefaultCluster".into(),
        group: "broker-a".into(),
        node_id: id,
        listen: format!("{}:{client}", args.ip),
        raft_listen: format!("{}:{raft}", args.ip),
        peers,
        namesrv: vec![namesrv_addr(args)],
        data_dir: Some(args.dir.join(format!("n{id}"))),
        auto_create_topics: true,
        default_queues: 8,
        register_interval_ms: 10_000,
        // The whole group stops together: nobody to hand leadership to.
        hand_over_on_shutdown: false,
        // Three nodes share this process's workers: a follower's fsync on one of them
        // would stall the others' work.
        follower_inline_sync: false,
        ..BrokerConfig::default()
    }
    .validate()
    .map_err(Into::into)
}

/// Runs a NameServer and a 3-node broker group in this process until ctrl-c.
pub async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let ns_listener = bind(&namesrv_addr(&args))
        .await
        .context("is another `raftmq dev` or NameServer already running?")?;
    let mut nodes = Vec::new();
    for (id, client, raft) in DEV_NODES {
        let cfg = dev_config(&args, id, client, raft)?;
        let c = bind(&cfg.listen)
            .await
            .context("is another `raftmq dev` already running?")?;
        let r = bind(&cfg.raft_listen)
            .await
            .context("is another `raftmq dev` already running?")?;
        nodes.push((cfg, c, r));
    }
    let console = crate::console::for_dev(&http_addr(&args), namesrv_addr(&args), stop.clone())?;
    let (registry, http) = HttpListener::start(
        &http_addr(&args),
        Some(console.router()),
        HttpOptions::default(),
    )
    .await
    .context("is another `raftmq dev` running? Or choose another --http-listen")?;
    let ns = tokio::spawn(raftmq_namesrv::run(
        NamesrvConfig::default(),
        vec![
            Box::new(NamesrvPort::new(ns_listener)),
            Box::new(NamesrvMetrics::new(registry.clone(), namesrv_addr(&args))),
        ],
        stop.clone().cancelled_owned(),
    ));
    let mut brokers = Vec::new();
    for (cfg, c, r) in nodes {
        brokers.push(tokio::spawn(raftmq_broker::run(
            cfg,
            r,
            vec![
                Box::new(ClientPort::new(c)),
                Box::new(MetricsSlot::new(registry.clone())),
            ],
            stop.clone().cancelled_owned(),
        )));
    }
    let admin = raftmq_client::Admin::new([namesrv_addr(&args)])?;
    let ready = async {
        loop {
            if let Ok(nodes) = admin.cluster_nodes().await {
                if nodes.iter().any(|n| n.role == "leader") && nodes.len() == 3 {
                    return nodes;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let nodes = tokio::select! {
        n = tokio::time::timeout(Duration::from_secs(60), ready) => n.context("the dev cluster did not elect a leader within 60 s")?,
        // A node that fails to start (its data dir locked by another process, say) says so
        // at once instead of after the leader wait.
        (r, _, _) = futures::future::select_all(brokers.iter_mut()) => {
            stop.cancel();
            http.stop().await;
            return Err(match r {
                Ok(Ok(())) => anyhow::anyhow!("a broker node stopped before the cluster was ready"),
                Ok(Err(e)) => anyhow::Error::from(e).context("a broker node failed to start"),
                Err(e) => anyhow::anyhow!("a broker node panicked: {e}"),
            });
        }
        _ = shutdown_signal() => {
            stop.cancel();
            http.stop().await;
            return Ok(());
        }
    };
    let leader = nodes
        .iter()
        .find(|n| n.role == "leader")
        .map_or(0, |n| n.node_id);
    eprintln!(
        "\nraftmq dev cluster is ready (data in {}):\n  NameServer  {}\n  broker-a    {} (Raft group of 3, leader: node {leader})\n  console     http://{}/{}\n  metrics     http://{}/metrics (health: /healthz)\n\
         Topics are created on first use (8 queues). Try, in another shell:\n  \
         raftmq produce --topic TopicTest --count 1000\n  \
         raftmq consume --topic TopicTest --group g1 --from first --count 1000\n  \
         raftmq cluster list\nPress ctrl-c to stop.\n",
        args.dir.display(),
        namesrv_addr(&args),
        DEV_NODES.iter().map(|(_, c, _)| format!("{}:{c}", args.ip)).collect::<Vec<_>>().join(" "),
        http_addr(&args),
        console
            .admin_token()
            .map(|t| format!(" (sign in with the admin token {t})"))
            .unwrap_or_default(),
        http_addr(&args),
    );
    let failed = tokio::select! {
        _ = shutdown_signal() => None,
        r = futures::future::select_all(brokers.iter_mut()) => Some(r.0),
    };
    stop.cancel();
    let mut result = Ok(());
    if let Some(r) = failed {
        result = match r {
            Ok(Ok(())) => Err(anyhow::anyhow!("a broker node stopped unexpectedly")),
            Ok(Err(e)) => Err(anyhow::Error::from(e).context("a broker node failed")),
            Err(e) => Err(anyhow::anyhow!("a broker node panicked: {e}")),
        };
    }
    for b in brokers {
        if let Ok(Err(e)) = b.await {
            tracing::warn!(error = %e, "broker node stopped with an error");
        }
    }
    let _ = ns.await;
    http.stop().await;
    eprintln!("raftmq dev stopped; data kept in {}", args.dir.display());
    result
}
