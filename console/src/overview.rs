//! The overview (every cluster's broker groups, one card per node, live over server-sent
//! events) and the failover timeline.

use std::convert::Infallible;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Extension;
use futures::stream::{self, Stream, StreamExt};

use crate::auth::Session;
use crate::sampler::{Event, Sample};
use crate::view::{html, Nav, ViewResult};
use crate::AppState;

/// Timeline events the overview shows.
const OVERVIEW_EVENTS: usize = 10;
/// Timeline events the timeline page shows.
const TIMELINE_EVENTS: usize = 200;

/// One cluster's latest sample and newest events.
#[derive(Debug)]
pub struct ClusterView {
    /// The cluster's name.
    pub name: String,
    /// Prefix of its pages.
    pub base: String,
    /// The latest sample.
    pub sample: Arc<Sample>,
    /// Newest events first.
    pub events: Vec<Event>,
}

fn views(s: &AppState, events: usize) -> Vec<ClusterView> {
    s.clusters
        .iter()
        .enumerate()
        .map(|(i, c)| ClusterView {
            name: c.name.clone(),
            base: format!("/c/{i}"),
            sample: c.live.borrow().clone(),
            events: c.history.events(events),
        })
        .collect()
}

/// The live part of the overview: every group card.
#[derive(Debug, Template)]
#[template(path = "nodes.html")]
pub struct Nodes {
    /// Every cluster.
    pub clusters: Vec<ClusterView>,
}

/// The live part of the timeline.
#[derive(Debug, Template)]
#[template(path = "events.html")]
pub struct Events {
    /// Every cluster.
    pub clusters: Vec<ClusterView>,
}

#[derive(Debug, Template)]
#[template(path = "overview.html")]
struct Overview {
    nav: Nav,
    nodes: Nodes,
    events: Events,
}

#[derive(Debug, Template)]
#[template(path = "timeline.html")]
struct Timeline {
    nav: Nav,
    events: Events,
}

/// `GET /`.
pub(crate) async fn page(
    State(s): State<AppState>,
    Extension(me): Extension<Session>,
) -> ViewResult {
    html(&Overview {
        nav: Nav::new(&s, 0, &me, "overview"),
        nodes: Nodes {
            clusters: views(&s, 0),
        },
        events: Events {
            clusters: views(&s, OVERVIEW_EVENTS),
        },
    })
}

/// `GET /timeline`.
pub(crate) async fn timeline(
    State(s): State<AppState>,
    Extension(me): Extension<Session>,
) -> ViewResult {
    html(&Timeline {
        nav: Nav::new(&s, 0, &me, "timeline"),
        events: Events {
            clusters: views(&s, TIMELINE_EVENTS),
        },
    })
}

/// One SSE event per new sample: `nodes` (the cards), `events` (newest timeline events)
/// and `timeline` (the timeline page's list).
fn render(s: &AppState) -> Vec<SseEvent> {
    let mut out = Vec::new();
    let parts: [(&str, Result<String, askama::Error>); 3] = [
        (
            "nodes",
            Nodes {
                clusters: views(s, 0),
            }
            .render(),
        ),
        (
            "events",
            Events {
                clusters: views(s, OVERVIEW_EVENTS),
            }
            .render(),
        ),
        (
            "timeline",
            Events {
                clusters: views(s, TIMELINE_EVENTS),
            }
            .render(),
        ),
    ];
    for (name, r) in parts {
        match r {
            Ok(h) => out.push(SseEvent::default().event(name).data(h)),
            Err(e) => tracing::warn!(error = %e, "console: a live fragment did not render"),
        }
    }
    out
}

/// `GET /events/overview`: server-sent events, one batch per sample of any cluster.
pub(crate) async fn events(State(s): State<AppState>) -> impl IntoResponse {
    let watches: Vec<_> = s
        .clusters
        .iter()
        .map(|c| tokio_stream_of(c.live.clone()))
        .collect();
    let changes = stream::select_all(watches);
    let st = s.clone();
    let body: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(changes.flat_map(move |()| stream::iter(render(&st).into_iter().map(Ok))));
    Sse::new(body).keep_alive(KeepAlive::default())
}

/// A stream that yields once per change of `rx` (and once at once).
fn tokio_stream_of<T: Send + Sync + 'static>(
    rx: tokio::sync::watch::Receiver<T>,
) -> std::pin::Pin<Box<dyn Stream<Item = ()> + Send>> {
    Box::pin(stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        Some(((), (rx, false)))
    }))
}
