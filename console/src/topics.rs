//! Topics: the paged list with search and kind filter, create and delete, and a topic's
//! route, per-queue offsets and a test-message form.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::Extension;
use axum::Form;
use raftmq_client::Message;
use raftmq_proto::names;
use raftmq_proto::namesrv::TopicRoute;

use crate::auth::Session;
use crate::view::{call, cli, cluster, done, html, query, Nav, Paging, ViewError, ViewResult};
use crate::AppState;

/// Topics per page.
pub const PER_PAGE: usize = 50;

/// What a topic is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Written by producers.
    Normal,
    /// A consumer group's retry topic (`%RETRY%`).
    Retry,
    /// A consumer group's dead-letter topic (`%DLQ%`).
    Dlq,
    /// Used by raftmq or RocketMQ clients themselves (`RMQ_SYS_*`, `TBW102`).
    System,
}

impl Kind {
    /// The kind of `topic`.
    pub fn of(topic: &str) -> Self {
        if topic.starts_with(names::RETRY_PREFIX) {
            Self::Retry
        } else if topic.starts_with(names::DLQ_PREFIX) {
            Self::Dlq
        } else if topic.starts_with("RMQ_SYS_") || topic == "TBW102" {
            Self::System
        } else {
            Self::Normal
        }
    }
    /// The word the filter and the list use.
    pub fn label(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Retry => "retry",
            Self::Dlq => "dlq",
            Self::System => "system",
        }
    }
}

/// The list's query string.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    page: Option<usize>,
}

/// The topics a search shows, sorted, before paging.
pub fn filter(topics: Vec<String>, q: &str, kind: &str) -> Vec<(String, &'static str)> {
    let q = q.trim().to_ascii_lowercase();
    topics
        .into_iter()
        .filter(|t| q.is_empty() || t.to_ascii_lowercase().contains(&q))
        .map(|t| {
            let k = Kind::of(&t).label();
            (t, k)
        })
        .filter(|(_, k)| kind.is_empty() || kind == "all" || *k == kind)
        .collect()
}

#[derive(Debug, Template)]
#[template(path = "topics.html")]
struct List {
    nav: Nav,
    q: String,
    kind: String,
    topics: Vec<(String, &'static str)>,
    paging: Paging,
    prev: Option<String>,
    next: Option<String>,
}

/// `GET /c/{c}/topics?q=&kind=&page=`.
pub(crate) async fn list(
    State(s): State<AppState>,
    Extension(me): Extension<Session>,
    Path(c): Path<usize>,
    Query(lq): Query<ListQuery>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let all = call(cl.admin.list_topics()).await?;
    let (topics, paging) =
        Paging::cut(filter(all, &lq.q, &lq.kind), lq.page.unwrap_or(1), PER_PAGE);
    let nav = Nav::new(&s, c, &me, "topics");
    let (prev, next) = paging.links(
        &format!("{}/topics", nav.base),
        &[("q", &lq.q), ("kind", &lq.kind)],
    );
    html(&List {
        prev,
        next,
        nav,
        q: lq.q,
        kind: lq.kind,
        topics,
        paging,
    })
}

/// The create form.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct CreateForm {
    topic: String,
    queues: u32,
    #[serde(default)]
    group: String,
}

/// `POST /c/{c}/topics`: creates or updates a topic.
pub(crate) async fn create(
    State(s): State<AppState>,
    Path(c): Path<usize>,
    Form(f): Form<CreateForm>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let topic = f.topic.trim();
    let group = Some(f.group.trim()).filter(|g| !g.is_empty());
    let groups = call(cl.admin.create_topic(topic, f.queues, group)).await?;
    let queues = f.queues.to_string();
    let mut args = vec!["topic", "create", topic, "--queues", &queues];
    if let Some(g) = group {
        args.extend(["--group", g]);
    }
    done(
        format!(
            "topic {topic} has {} queues on {}",
            f.queues,
            groups.join(", ")
        ),
        &args,
    )
}

/// One row of the per-queue table.
#[derive(Debug, Clone)]
pub struct QueueRow {
    /// Broker group.
    pub group: String,
    /// Queue.
    pub queue: u32,
    /// First offset retention kept.
    pub min: u64,
    /// One past the last.
    pub max: u64,
    /// The messages page reading it from `min`.
    pub read: String,
}

#[derive(Debug, Template)]
#[template(path = "topic.html")]
struct Detail {
    nav: Nav,
    topic: String,
    kind: &'static str,
    route: TopicRoute,
    queues: Vec<QueueRow>,
    total: u64,
    delete_cli: String,
}

/// `GET /c/{c}/topics/{topic}`.
pub(crate) async fn detail(
    State(s): State<AppState>,
    Extension(me): Extension<Session>,
    Path((c, topic)): Path<(usize, String)>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let route = call(cl.admin.topic_route(&topic)).await?;
    let queues: Vec<QueueRow> = call(cl.admin.topic_status(&topic))
        .await?
        .into_iter()
        .map(|(group, q)| QueueRow {
            read: format!(
                "/c/{c}/messages?{}",
                query(&[
                    ("topic", &topic),
                    ("broker_group", &group),
                    ("queue", &q.queue_id.0.to_string()),
                    ("offset", &q.min_offset.0.to_string()),
                ])
            ),
            group,
            queue: q.queue_id.0,
            min: q.min_offset.0,
            max: q.max_offset.0,
        })
        .collect();
    html(&Detail {
        nav: Nav::new(&s, c, &me, "topics"),
        kind: Kind::of(&topic).label(),
        total: queues.iter().map(|q| q.max - q.min).sum(),
        delete_cli: cli(&["topic", "delete", &topic]),
        topic,
        route,
        queues,
    })
}

/// `POST /c/{c}/topics/{topic}/delete`.
pub(crate) async fn delete(
    State(s): State<AppState>,
    Path((c, topic)): Path<(usize, String)>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let groups = call(cl.admin.delete_topic(&topic)).await?;
    done(
        format!("topic {topic} deleted from {}", groups.join(", ")),
        &["topic", "delete", &topic],
    )
}

/// The test-message form.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct SendForm {
    body: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    key: String,
    /// `NAME=VALUE` per line.
    #[serde(default)]
    properties: String,
}

/// `NAME=VALUE` lines, blank lines skipped.
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(format!("property line {l:?} is not NAME=VALUE")),
        })
        .collect()
}

#[derive(Debug, Template)]
#[template(path = "sent.html")]
struct Sent {
    base: String,
    msg_id: String,
    unique_key: Option<String>,
    group: String,
    queue: u32,
    offset: Option<u64>,
    cli: String,
}

/// `POST /c/{c}/topics/{topic}/send`: sends one message through the console's producer.
pub(crate) async fn send(
    State(s): State<AppState>,
    Path((c, topic)): Path<(usize, String)>,
    Form(f): Form<SendForm>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let properties = parse_properties(&f.properties).map_err(ViewError::bad_request)?;
    let mut m = Message::new(topic.as_str(), f.body.clone().into_bytes());
    let (tag, key) = (f.tag.trim(), f.key.trim());
    if !tag.is_empty() {
        m = m.with_tag(tag);
    }
    if !key.is_empty() {
        m = m.with_key(key);
    }
    for (k, v) in &properties {
        m = m.with_property(k.as_str(), v.as_str());
    }
    let r = call(cl.producer.send(m)).await?;
    let mut args = vec![
        "produce", "--topic", &topic, "--count", "1", "--body", &f.body,
    ];
    if !tag.is_empty() {
        args.extend(["--tag", tag]);
    }
    if !key.is_empty() {
        args.extend(["--key", key]);
    }
    let props: Vec<String> = properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for p in &props {
        args.extend(["--property", p]);
    }
    html(&Sent {
        base: format!("/c/{c}"),
        msg_id: r.msg_id,
        unique_key: r.unique_key,
        group: r.broker_group.0,
        queue: r.queue_id.0,
        offset: r.queue_offset.map(|o| o.0),
        cli: cli(&args),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_search() {
        let all: Vec<String> = [
            "Orders",
            "%RETRY%g",
            "%DLQ%g",
            "RMQ_SYS_TRACE_TOPIC",
            "orders-eu",
        ]
        .map(String::from)
        .into();
        let f = filter(all.clone(), "ORDER", "");
        assert_eq!(
            f,
            vec![("Orders".into(), "normal"), ("orders-eu".into(), "normal")]
        );
        assert_eq!(
            filter(all.clone(), "", "dlq"),
            vec![("%DLQ%g".into(), "dlq")]
        );
        assert_eq!(filter(all.clone(), "", "system").len(), 1);
        assert_eq!(filter(all, "", "all").len(), 5);
    }

    #[test]
    fn properties_are_name_value_lines() {
        assert_eq!(
            parse_properties("a=1\n\n b = x=y \n").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
        assert!(parse_properties("novalue")
            .unwrap_err()
            .contains("NAME=VALUE"));
        assert!(parse_properties("=v").is_err());
    }
}
