//! raftmq's web console: clusters, Raft groups, topics, consumer groups and messages in a
//! browser, built on the [`Admin`] client.
//!
//! Pages are HTML rendered on the server from compile-time checked templates
//! (`console/templates`); htmx (vendored, [`assets`]) swaps fragments in place and keeps the
//! overview and group pages live over server-sent events. Nothing loads a whole list: every
//! list is paged on the server and every scan is bounded.
//!
//! # Layout
//! - [`auth`]: the admin and read-only tokens, the session cookie and CSRF.
//! - [`assets`]: embedded CSS and JS under versioned, immutable URLs.
//! - [`sampler`]: polls every cluster once per interval: node cards, group health, the
//!   failover timeline and the chart history.
//! - [`overview`], [`topics`], [`groups`], [`messages`], [`charts`], [`reports`]: the pages.
//! - [`view`]: what every page shares (navigation, errors, paging, the CLI equivalent).

pub mod assets;
pub mod auth;
pub mod charts;
pub mod groups;
pub mod messages;
pub mod overview;
pub mod reports;
pub mod sampler;
pub mod topics;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use raftmq_client::{Admin, ClientConfig, Producer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use auth::Access;
use sampler::{History, Sample};

/// What went wrong starting the console.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No NameServer list was given.
    #[error("no cluster to show: give at least one NameServer list (--cluster / -n)")]
    NoCluster,
    /// A cluster's client settings do not work (no address, TLS files unreadable).
    #[error("cluster {name}: {source}")]
    Client {
        /// The cluster's name in the console.
        name: String,
        /// Why.
        source: raftmq_client::Error,
    },
}

/// One cluster the console shows: a NameServer list and how to connect to it.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Its name in the console (the NameServer list unless named).
    pub name: String,
    /// NameServers, credentials and TLS.
    pub client: ClientConfig,
}

/// The console's settings.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The clusters, in the order the console lists them.
    pub clusters: Vec<ClusterConfig>,
    /// Who may see and change what.
    pub access: Access,
    /// How often every cluster is polled for the live views (default 1 s).
    pub sample_every: Duration,
    /// A directory of `raftmq-jepsen` output to show under `/reports`.
    pub reports: Option<std::path::PathBuf>,
}

impl ConsoleConfig {
    /// One cluster, open access, the default interval: for tests and `raftmq dev`.
    pub fn single(client: ClientConfig, access: Access) -> Self {
        Self {
            clusters: vec![ClusterConfig {
                name: client.namesrv.join(","),
                client,
            }],
            access,
            sample_every: Duration::from_secs(1),
            reports: None,
        }
    }
}

/// One cluster's clients and what the sampler learned of it.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) name: String,
    pub(crate) admin: Admin,
    /// Sends the test messages of the topic page.
    pub(crate) producer: Producer,
    pub(crate) live: watch::Receiver<Arc<Sample>>,
    pub(crate) history: Arc<History>,
}

/// Everything a handler reaches.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) clusters: Vec<Cluster>,
    pub(crate) auth: auth::Auth,
    /// The chaos report directory ([`reports`]).
    pub(crate) reports: Option<std::path::PathBuf>,
}

/// The handlers' state.
pub(crate) type AppState = Arc<Shared>;

/// A running console: its router and its samplers.
#[derive(Debug, Clone)]
pub struct Console {
    shared: AppState,
}

impl Console {
    /// Starts one sampler per cluster (stopped by `stop`) and returns the console.
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// No cluster, or a cluster's client settings are unusable.
    pub fn start(config: ConsoleConfig, stop: CancellationToken) -> Result<Self, Error> {
        if config.clusters.is_empty() {
            return Err(Error::NoCluster);
        }
        let mut clusters = Vec::new();
        for c in config.clusters {
            let admin = Admin::with_config(c.client.clone()).map_err(|source| Error::Client {
                name: c.name.clone(),
                source,
            })?;
            let producer = Producer::builder()
                .group(PRODUCER_GROUP)
                .namesrv(c.client.namesrv.clone())
                .with_credentials(c.client.credentials.clone())
                .with_tls(c.client.tls.clone())
                .build()
                .map_err(|source| Error::Client {
                    name: c.name.clone(),
                    source,
                })?;
            let history = Arc::new(History::default());
            let live = sampler::spawn(
                admin.clone(),
                history.clone(),
                config.sample_every,
                stop.clone(),
            );
            clusters.push(Cluster {
                name: c.name,
                admin,
                producer,
                live,
                history,
            });
        }
        Ok(Self {
            shared: Arc::new(Shared {
                clusters,
                auth: auth::Auth::new(config.access),
                reports: config.reports,
            }),
        })
    }

    /// The console's routes, to serve at `/` (they include `/assets` and `/login`).
    pub fn router(&self) -> Router {
        let pages = Router::new()
            .route("/", get(overview::page))
            .route("/timeline", get(overview::timeline))
            .route("/events/overview", get(overview::events))
            .route("/c/{c}/topics", get(topics::list).post(topics::create))
            .route("/c/{c}/topics/{topic}", get(topics::detail))
            .route("/c/{c}/topics/{topic}/delete", post(topics::delete))
            .route("/c/{c}/topics/{topic}/send", post(topics::send))
            .route("/c/{c}/groups", get(groups::list))
            .route("/c/{c}/groups/{group}", get(groups::detail))
            .route("/c/{c}/groups/{group}/progress", get(groups::progress))
            .route("/c/{c}/groups/{group}/reset", post(groups::reset))
            .route("/c/{c}/groups/{group}/delete", post(groups::delete))
            .route("/reports", get(reports::list))
            .route("/reports/run", get(reports::detail))
            .route("/reports/plot", get(reports::plot))
            .route("/c/{c}/charts", get(charts::page))
            .route("/c/{c}/charts.json", get(charts::data))
            .route("/c/{c}/messages", get(messages::search))
            .route("/c/{c}/messages.jsonl", get(messages::export))
            .route("/c/{c}/messages/{id}", get(messages::detail))
            .route("/c/{c}/messages/{id}/resend", post(messages::resend))
            .route_layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                auth::require,
            ));
        Router::new()
            .merge(pages)
            .route("/login", get(auth::login_page).post(auth::login))
            .route("/logout", post(auth::logout))
            .route("/assets/{name}", get(assets::serve))
            .layer(axum::middleware::map_response(secure_headers))
            .with_state(self.shared.clone())
    }

    /// The admin token to print at start, when tokens are on.
    pub fn admin_token(&self) -> Option<&str> {
        self.shared.auth.admin_token()
    }
}

/// What a browser may load and do on the console's pages: only the console's own scripts,
/// styles and connections (every asset is embedded, so nothing else is ever needed), and
/// no framing by another site.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";

async fn secure_headers(mut r: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// The producer group of the console's test messages.
pub const PRODUCER_GROUP: &str = "CONSOLE_PRODUCER";

/// How long a handler waits for the cluster before it shows an error.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(15);
