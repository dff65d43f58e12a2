//! Consumer groups: the paged list, and a group's exact lag per queue (refreshed in place),
//! its connected clients, offset reset by time, skip backlog and delete.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::Extension;
use axum::Form;
use raftmq_client::admin::QueueProgress;
use raftmq_proto::broker::ConsumerConnection;
use raftmq_proto::ConsumerGroupConfig;

use crate::auth::Session;
use crate::view::{call, cluster, done, html, Nav, Paging, ViewError, ViewResult};
use crate::{AppState, Cluster};

/// Groups per page.
pub const PER_PAGE: usize = 50;
/// The oldest unconsumed message is looked up on at most this many lagging queues.
pub const OLDEST_MAX: usize = 32;
/// How often the progress table refreshes itself, in seconds.
pub const REFRESH_S: u64 = 2;

/// The list's query string.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<usize>,
}

#[derive(Debug, Template)]
#[template(path = "groups.html")]
struct List {
    nav: Nav,
    q: String,
    groups: Vec<ConsumerGroupConfig>,
    paging: Paging,
    prev: Option<String>,
    next: Option<String>,
}

/// `GET /c/{c}/groups?q=&page=`.
pub(crate) async fn list(
    State(s): State<AppState>,
    Extension(me): Extension<Session>,
    Path(c): Path<usize>,
    Query(lq): Query<ListQuery>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let q = lq.q.trim().to_ascii_lowercase();
    let all: Vec<ConsumerGroupConfig> = call(cl.admin.list_groups())
        .await?
        .into_iter()
        .filter(|g| q.is_empty() || g.name.as_str().to_ascii_lowercase().contains(&q))
        .collect();
    let (groups, paging) = Paging::cut(all, lq.page.unwrap_or(1), PER_PAGE);
    let nav = Nav::new(&s, c, &me, "groups");
    let (prev, next) = paging.links(&format!("{}/groups", nav.base), &[("q", &lq.q)]);
    html(&List {
        prev,
        next,
        nav,
        q: lq.q,
        groups,
        paging,
    })
}

/// One queue of a group's progress.
#[derive(Debug, Clone)]
pub struct Row {
    /// Offsets and lag.
    pub p: QueueProgress,
    /// When the oldest unconsumed message was stored (ms since the epoch), if looked up.
    pub oldest_ms: Option<u64>,
}

/// The progress table: refreshed in place every [`REFRESH_S`] seconds.
#[derive(Debug, Template)]
#[template(path = "progress.html")]
pub struct Progress {
    /// Its own URL, for the refresh.
    pub url: String,
    /// Per queue.
    pub rows: Vec<Row>,
    /// Summed lag.
    pub lag: u64,
    /// Oldest unconsumed message of the group.
    pub oldest_ms: Option<u64>,
    /// Lagging queues whose oldest message was not looked up.
    pub unchecked: usize,
}

async fn progress_of(cl: &Cluster, url: String, group: &str) -> Result<Progress, ViewError> {
    let all = call(cl.admin.group_progress(group)).await?;
    let mut rows: Vec<Row> = all
        .into_iter()
        .map(|p| Row { p, oldest_ms: None })
        .collect();
    let lagging: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].p.lag > 0).collect();
    let asks = lagging.iter().take(OLDEST_MAX).map(|&i| {
        let p = &rows[i].p;
        let admin = &cl.admin;
        async move {
            let r = admin
                .read_queue(&p.topic, &p.broker_group, p.queue_id, p.consumer_offset, 1)
                .await;
            (i, r.ok().and_then(|(m, _)| m.first().map(|m| m.store_ms)))
        }
    });
    for (i, oldest) in call(async { Ok(futures::future::join_all(asks).await) }).await? {
        rows[i].oldest_ms = oldest;
    }
    Ok(Progress {
        url,
        lag: rows.iter().map(|r| r.p.lag).sum(),
        oldest_ms: rows.iter().filter_map(|r| r.oldest_ms).min(),
        unchecked: lagging.len().saturating_sub(OLDEST_MAX),
        rows,
    })
}

#[derive(Debug, Template)]
#[template(path = "group.html")]
struct Detail {
    nav: Nav,
    group: String,
    config: Option<ConsumerGroupConfig>,
    clients: Vec<ConsumerConnection>,
    /// The group's dead-letter topic.
    dlq: String,
    topics: Vec<String>,
    progress: Progress,
}

fn progress_url(c: usize, group: &str) -> String {
    format!("/c/{c}/groups/{}/progress", crate::view::seg(group))
}

/// `GET /c/{c}/groups/{group}`.
pub(crate) async fn detail(
    State(s): State<AppState>,
    Extension(me): Extension<Session>,
    Path((c, group)): Path<(usize, String)>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let config = call(cl.admin.list_groups())
        .await?
        .into_iter()
        .find(|g| g.name.as_str() == group);
    let clients = call(cl.admin.consumer_connections(&group)).await?;
    let progress = progress_of(cl, progress_url(c, &group), &group).await?;
    if config.is_none() && progress.rows.is_empty() && clients.is_empty() {
        return Err(ViewError::not_found(format!(
            "no consumer group named {group}: it has no config, no committed offset and no consumer"
        )));
    }
    let mut topics: Vec<String> = progress.rows.iter().map(|r| r.p.topic.clone()).collect();
    topics.dedup();
    html(&Detail {
        nav: Nav::new(&s, c, &me, "groups"),
        dlq: raftmq_proto::names::dlq_topic(&group),
        group,
        config,
        clients,
        topics,
        progress,
    })
}

/// `GET /c/{c}/groups/{group}/progress`: the table alone.
pub(crate) async fn progress(
    State(s): State<AppState>,
    Path((c, group)): Path<(usize, String)>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    html(&progress_of(cl, progress_url(c, &group), &group).await?)
}

/// The reset form: a topic and a time (`now` skips the backlog).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ResetForm {
    topic: String,
    time: String,
}

/// `POST /c/{c}/groups/{group}/reset`.
pub(crate) async fn reset(
    State(s): State<AppState>,
    Path((c, group)): Path<(usize, String)>,
    Form(f): Form<ResetForm>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let time = f.time.trim();
    // `now` (skip the backlog) becomes this moment, so the command shown does the same.
    let ms = if time.eq_ignore_ascii_case("now") {
        crate::view::now_ms()
    } else {
        raftmq_proto::clock::parse_time(time).map_err(ViewError::bad_request)?
    };
    let when = ms.to_string();
    let moved = call(cl.admin.reset_offset_by_time(&group, f.topic.trim(), ms)).await?;
    done(format!(
            "group {group} now starts on {} queue(s) of {} at the first message stored at or after {}",
            moved.len(),
            f.topic.trim(),
            crate::view::utc(ms)
        ), &["group", "reset-offset", &group, "--topic", f.topic.trim(), "--to-time", &when])
}

/// `POST /c/{c}/groups/{group}/delete`.
pub(crate) async fn delete(
    State(s): State<AppState>,
    Path((c, group)): Path<(usize, String)>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let groups = call(cl.admin.delete_group(&group)).await?;
    done(
        format!("group {group} deleted from {}", groups.join(", ")),
        &["group", "delete", &group],
    )
}
