//! `raftmq console`: the web console for one or more clusters, and the one `raftmq dev`
//! serves on its HTTP listener.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use raftmq_client::ClientConfig;
use raftmq_console::{Access, ClusterConfig, Console, ConsoleConfig};
use raftmq_proto::transport::shutdown_signal;
use tokio_util::sync::CancellationToken;

use crate::http::{HttpOptions, MetricsAccess};
use crate::logging::LogArgs;
use crate::servers::HttpListener;
use crate::Endpoint;

/// Shortest token accepted.
const TOKEN_MIN: usize = 16;

/// Options of `raftmq console`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    raftmq console -n 127.0.0.1:9876                       one cluster; prints a fresh admin token\n  \
    raftmq console --cluster prod=ns1:9876,ns2:9876 --cluster staging=ns3:9876\n  \
    raftmq console --listen 0.0.0.0:8443 --https-cert node.pem --https-key node-key.pem\n  \
    RAFTMQ_CONSOLE_ADMIN_TOKEN=... RAFTMQ_CONSOLE_READ_TOKEN=... raftmq console --listen 0.0.0.0:8080\n\
    Scripts send `Authorization: Bearer TOKEN`; browsers sign in at /login.")]
pub struct ConsoleArgs {
    /// Address to serve the console (and /metrics, /healthz) on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// A cluster to show, as NAME=NAMESRV[,NAMESRV..]; repeat for several. Default: one
    /// cluster, the NameServers of -n.
    #[arg(long = "cluster", value_name = "NAME=NAMESRV,..", value_parser = parse_cluster)]
    pub clusters: Vec<(String, Vec<String>)>,
    /// Token that may see and change everything (default: a fresh one, printed at start).
    #[arg(long, env = "RAFTMQ_CONSOLE_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub admin_token: Option<String>,
    /// Token that may see every page and change nothing.
    #[arg(long, env = "RAFTMQ_CONSOLE_READ_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub read_token: Option<String>,
    /// No sign-in at all: everyone who can reach the port is admin. Refused unless
    /// --listen is a loopback address.
    #[arg(long, conflicts_with_all = ["admin_token", "read_token"])]
    pub no_auth: bool,
    /// Serve HTTPS with this certificate chain (PEM; reloaded when the file changes).
    #[arg(long, value_name = "FILE", requires = "https_key")]
    pub https_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --https-cert.
    #[arg(long, value_name = "FILE", requires = "https_cert")]
    pub https_key: Option<std::path::PathBuf>,
    /// How often every cluster is polled for the live overview, the timeline and lag.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub sample_interval_ms: u64,
    /// Show the chaos runs under this directory at /reports: a `raftmq-jepsen run` or
    /// `suite` output directory, or a folder of them (read-only; looked at on every visit).
    #[arg(long, value_name = "DIR", value_parser = existing_dir)]
    pub reports: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
}

fn existing_dir(s: &str) -> Result<std::path::PathBuf, String> {
    let p = std::path::PathBuf::from(s);
    if p.is_dir() {
        Ok(p)
    } else {
        Err(format!(
            "{s}: not a directory (give a raftmq-jepsen output directory)"
        ))
    }
}

fn parse_cluster(s: &str) -> Result<(String, Vec<String>), String> {
    let (name, addrs) = s.split_once('=').ok_or_else(|| {
        format!("{s:?}: expected NAME=NAMESRV[,NAMESRV..], e.g. prod=10.0.0.1:9876")
    })?;
    let addrs: Vec<String> = addrs
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if name.trim().is_empty() || addrs.is_empty() {
        return Err(format!(
            "{s:?}: both a name and at least one NameServer are needed"
        ));
    }
    Ok((name.trim().to_owned(), addrs))
}

fn parse_token(s: &str) -> Result<String, String> {
    if s.len() < TOKEN_MIN {
        return Err(format!("a token must have at least {TOKEN_MIN} characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b))
    {
        return Err(
            "a token may hold printable ASCII except space ; , \" and \\ (it travels in a cookie)"
                .into(),
        );
    }
    Ok(s.to_owned())
}

fn is_loopback(listen: &str) -> bool {
    listen
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
        || listen.starts_with("localhost:")
}

fn client(ep: &Endpoint, namesrv: Vec<String>) -> ClientConfig {
    ClientConfig {
        namesrv,
        credentials: ep.credentials.clone(),
        tls: ep.tls.clone(),
        ..Default::default()
    }
}

/// The console of `raftmq dev`: open on loopback, a printed token elsewhere.
pub fn for_dev(listen: &str, namesrv: String, stop: CancellationToken) -> anyhow::Result<Console> {
    let access = if is_loopback(listen) {
        Access::Open
    } else {
        Access::Tokens {
            admin: Access::generate_token(),
            read: None,
        }
    };
    let config = ConsoleConfig::single(
        ClientConfig {
            namesrv: vec![namesrv],
            ..Default::default()
        },
        access,
    );
    Ok(Console::start(config, stop)?)
}

/// Runs the console until ctrl-c or SIGTERM.
pub async fn run(ep: Endpoint, args: ConsoleArgs) -> anyhow::Result<()> {
    let access = if args.no_auth {
        if !is_loopback(&args.listen) {
            anyhow::bail!(
                "--no-auth is only allowed on a loopback --listen (127.0.0.1, ::1, localhost): \
                 anyone who reaches {} could change the cluster; use --admin-token instead",
                args.listen
            );
        }
        Access::Open
    } else {
        Access::Tokens {
            admin: args
                .admin_token
                .clone()
                .unwrap_or_else(Access::generate_token),
            read: args.read_token.clone(),
        }
    };
    let clusters = if args.clusters.is_empty() {
        vec![ClusterConfig {
            name: ep.namesrv.join(","),
            client: client(&ep, ep.namesrv.clone()),
        }]
    } else {
        args.clusters
            .iter()
            .map(|(name, ns)| ClusterConfig {
                name: name.clone(),
                client: client(&ep, ns.clone()),
            })
            .collect()
    };
    let stop = CancellationToken::new();
    let console = Console::start(
        ConsoleConfig {
            clusters,
            access,
            sample_every: Duration::from_millis(args.sample_interval_ms),
            reports: args.reports.clone(),
        },
        stop.clone(),
    )?;
    let tls = match args.https_cert.clone().zip(args.https_key.clone()) {
        None => None,
        Some((cert, key)) => Some(crate::servers::https(&raftmq_proto::tls::TlsFiles {
            cert,
            key,
            ca: None,
            require_client_cert: false,
        })?),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let options = HttpOptions {
        tls,
        metrics: MetricsAccess::default(),
    };
    let (_registry, http) = HttpListener::start(&args.listen, Some(console.router()), options)
        .await
        .with_context(|| format!("the console cannot listen on {}", args.listen))?;
    eprintln!("raftmq console at {scheme}://{}/", args.listen);
    match (console.admin_token(), &args.admin_token) {
        (Some(t), None) => {
            eprintln!("  admin token (generated; set RAFTMQ_CONSOLE_ADMIN_TOKEN to keep one): {t}")
        }
        (Some(_), Some(_)) => eprintln!("  sign in with the admin token you gave"),
        (None, _) => eprintln!("  no sign-in (--no-auth on loopback)"),
    }
    shutdown_signal().await;
    stop.cancel();
    http.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_and_tokens_are_checked() {
        assert_eq!(
            parse_cluster("prod=a:1, b:2").unwrap(),
            ("prod".into(), vec!["a:1".into(), "b:2".into()])
        );
        assert!(parse_cluster("a:1").unwrap_err().contains("NAME=NAMESRV"));
        assert!(parse_cluster("x=").is_err());
        assert!(parse_token("short").unwrap_err().contains("16"));
        assert!(parse_token("0123456789abcdef;x").is_err());
        assert!(parse_token("0123456789 abcdef").is_err());
        assert_eq!(parse_token("0123456789abcdef").unwrap(), "0123456789abcdef");
        assert!(
            is_loopback("127.0.0.1:8080")
                && is_loopback("[::1]:80")
                && is_loopback("localhost:8080")
        );
        assert!(!is_loopback("0.0.0.0:8080") && !is_loopback("10.1.2.3:8080"));
    }
}
