//! Messages: find by id, by key, by time range or from a queue offset (each bounded), export
//! what a search shows as JSON lines, and one message with its properties, body and whether
//! each consumer group has consumed it, which an admin can send to a group again.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use raftmq_client::admin::READ_QUEUE_MAX;
use raftmq_client::message_tools::message_json;
use raftmq_proto::message::PROP_UNIQ_KEY;
use raftmq_proto::{names, FoundMessage, MessageExt};

use crate::auth::Session;
use crate::view::{call, cli, cluster, done, html, Nav, ViewError, ViewResult};
use crate::AppState;

/// Most messages a key search shows.
pub const KEY_MAX: u32 = 64;
/// Most bytes of a body the detail page shows.
pub const BODY_SHOWN: usize = 64 << 10;
/// Most messages a time-range search shows.
pub const RANGE_SHOWN: u32 = 100;
/// Consume status is shown for at most this many consumer groups.
pub const GROUPS_MAX: usize = 50;

/// The search form; which fields are set chooses the search.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    id: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    broker_group: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    offset: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

impl SearchQuery {
    /// The query string that repeats this search (for the export link).
    fn repeat(&self) -> String {
        crate::view::query(&[
            ("id", self.id.trim()),
            ("topic", self.topic.trim()),
            ("key", self.key.trim()),
            ("broker_group", self.broker_group.trim()),
            ("queue", self.queue.trim()),
            ("offset", self.offset.trim()),
            ("from", self.from.trim()),
            ("to", self.to.trim()),
        ])
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Stored-position id.
    pub msg_id: String,
    /// Topic.
    pub topic: String,
    /// Where: group, queue, offset.
    pub group: String,
    /// Queue.
    pub queue: u32,
    /// Offset in the queue.
    pub offset: u64,
    /// Tag.
    pub tag: String,
    /// Keys, space-separated.
    pub keys: String,
    /// Stored at, RFC 3339.
    pub stored: String,
    /// The body's start.
    pub preview: String,
}

impl From<&MessageExt> for Row {
    fn from(m: &MessageExt) -> Self {
        let body = String::from_utf8_lossy(&m.body);
        let mut preview: String = body.chars().take(80).collect();
        if body.chars().nth(80).is_some() {
            preview.push('…');
        }
        Self {
            msg_id: m.msg_id.clone(),
            topic: m.topic.to_string(),
            group: m.broker_group.0.clone(),
            queue: m.queue_id.0,
            offset: m.queue_offset.0,
            tag: m.tag.clone(),
            keys: m.keys.join(" "),
            stored: crate::view::utc(m.store_ms),
            preview,
        }
    }
}

#[derive(Debug, Template)]
#[template(path = "messages.html")]
struct Search {
    nav: Nav,
    id: String,
    topic: String,
    key: String,
    broker_group: String,
    queue: String,
    offset: String,
    from: String,
    to: String,
    searched: bool,
    rows: Vec<Row>,
    next: Option<String>,
    more: Option<String>,
    export: String,
    cli: String,
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ViewError> {
    v.trim()
        .parse()
        .map_err(|_| ViewError::bad_request(format!("{name} = {v:?}: not a number")))
}

fn time(name: &str, v: &str) -> Result<u64, ViewError> {
    raftmq_proto::clock::parse_time(v.trim())
        .map_err(|e| ViewError::bad_request(format!("{name}: {e}")))
}

/// What a key, offset or time-range search found.
#[derive(Debug, Default)]
struct Found {
    messages: Vec<MessageExt>,
    /// The link to the next page (offset reads).
    next: Option<String>,
    /// Why more may exist than shown.
    more: Option<String>,
    /// The equivalent `raftmq` command.
    cli: String,
}

/// Runs a search other than by id: by `topic` and `key`; from `topic`, `broker_group`,
/// `queue` and `offset`; or of `topic` from `from` to `to` (default now).
async fn find(cl: &crate::Cluster, c: usize, q: &SearchQuery) -> Result<Found, ViewError> {
    let (topic, key) = (q.topic.trim(), q.key.trim());
    if topic.is_empty() {
        return Err(ViewError::bad_request(
            "give a message id, or a topic with a key, a time range or a queue and offset",
        ));
    }
    if !key.is_empty() {
        let found = call(cl.admin.query_by_key(topic, key, KEY_MAX)).await?;
        return Ok(Found {
            more: (found.len() == KEY_MAX as usize)
                .then(|| format!("the first {KEY_MAX} with this key are shown")),
            messages: found,
            cli: cli(&["msg", "query", "--topic", topic, "--key", key]),
            next: None,
        });
    }
    if !q.from.trim().is_empty() {
        let from = time("from", &q.from)?;
        let to = if q.to.trim().is_empty() {
            crate::view::now_ms()
        } else {
            time("to", &q.to)?
        };
        let range = call(cl.admin.messages_between(topic, from, to, RANGE_SHOWN)).await?;
        let (f, t) = (from.to_string(), to.to_string());
        return Ok(Found {
            messages: range.messages,
            more: range.truncated.then(|| {
                format!("the first {RANGE_SHOWN} of the range are shown: narrow it to see the rest")
            }),
            cli: cli(&[
                "msg", "range", "--topic", topic, "--from", &f, "--to", &t, "--max", "100",
            ]),
            next: None,
        });
    }
    if q.broker_group.trim().is_empty() || q.queue.trim().is_empty() {
        return Err(ViewError::bad_request(
            "to read from an offset give the topic, broker group and queue (or a key, a time range, or an id)",
        ));
    }
    let queue: u32 = number("queue", &q.queue)?;
    let offset: u64 = if q.offset.trim().is_empty() {
        0
    } else {
        number("offset", &q.offset)?
    };
    let bg = q.broker_group.trim();
    let (found, after) = call(
        cl.admin
            .read_queue(topic, bg, queue, offset, READ_QUEUE_MAX),
    )
    .await?;
    let next = (found.len() == READ_QUEUE_MAX as usize).then(|| {
        format!(
            "/c/{c}/messages?{}",
            crate::view::query(&[
                ("topic", topic),
                ("broker_group", bg),
                ("queue", &queue.to_string()),
                ("offset", &after.to_string()),
            ])
        )
    });
    let (qs, os) = (queue.to_string(), offset.to_string());
    Ok(Found {
        messages: found,
        next,
        more: None,
        cli: cli(&[
            "msg",
            "read",
            "--topic",
            topic,
            "--broker-group",
            bg,
            "--queue",
            &qs,
            "--offset",
            &os,
            "--max",
            "100",
        ]),
    })
}

/// `GET /c/{c}/messages?...`: by `id` (to its page), or [`find`]'s searches.
pub(crate) async fn search(
    State(s): State<AppState>,
    Extension(me): Extension<Session>,
    Path(c): Path<usize>,
    Query(q): Query<SearchQuery>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let id = q.id.trim();
    if !id.is_empty() {
        // A stored-position id or a producer's id: open the message itself.
        let found = call(cl.admin.get_message(id)).await?;
        let m_id = match &found {
            FoundMessage::Stored(m) => m.msg_id.clone(),
            FoundMessage::Scheduled { msg_id, .. } => msg_id.clone(),
        };
        let to = format!("/c/{c}/messages/{}", crate::view::seg(&m_id));
        return Ok(Redirect::to(&to).into_response());
    }
    let searched = !q.topic.trim().is_empty();
    let found = if searched {
        find(cl, c, &q).await?
    } else {
        Found::default()
    };
    html(&Search {
        nav: Nav::new(&s, c, &me, "messages"),
        id: q.id.clone(),
        topic: q.topic.clone(),
        key: q.key.clone(),
        broker_group: q.broker_group.clone(),
        queue: q.queue.clone(),
        offset: q.offset.clone(),
        from: q.from.clone(),
        to: q.to.clone(),
        searched,
        rows: found.messages.iter().map(Row::from).collect(),
        next: found.next,
        more: found.more,
        export: format!("/c/{c}/messages.jsonl?{}", q.repeat()),
        cli: found.cli,
    })
}

/// `GET /c/{c}/messages.jsonl?...`: the messages a search shows (same query), one JSON
/// object per line (bodies as UTF-8 text), as a download.
pub(crate) async fn export(
    State(s): State<AppState>,
    Path(c): Path<usize>,
    Query(q): Query<SearchQuery>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    if !q.id.trim().is_empty() {
        return Err(ViewError::bad_request(
            "an id search opens one message: export a key, time-range or offset search",
        ));
    }
    let found = find(cl, c, &q).await?;
    let mut out = String::new();
    for m in &found.messages {
        out.push_str(&message_json(m).to_string());
        out.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"messages.jsonl\"",
            ),
        ],
        out,
    )
        .into_response())
}

/// Whether one consumer group has consumed the message.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// Group.
    pub group: String,
    /// `consumed`, `not yet` or `no offset`.
    pub status: &'static str,
}

#[derive(Debug, Template)]
#[template(path = "message.html")]
struct Detail {
    nav: Nav,
    msg_id: String,
    unique_key: Option<String>,
    topic: String,
    group: String,
    queue: u32,
    offset: Option<u64>,
    tag: String,
    keys: String,
    properties: Vec<(String, String)>,
    born: String,
    stored: String,
    due: Option<String>,
    reconsume_times: u32,
    body: String,
    body_len: usize,
    truncated: bool,
    consumed: Vec<Consumed>,
    /// Groups offered for a resend, and the one chosen first (a dead letter's own).
    groups: Vec<String>,
    resend_to: String,
    cli: String,
}

/// `GET /c/{c}/messages/{id}`.
pub(crate) async fn detail(
    State(s): State<AppState>,
    Extension(me): Extension<Session>,
    Path((c, id)): Path<(usize, String)>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let found = call(cl.admin.get_message(&id)).await?;
    let utc = crate::view::utc;
    let body_of = |b: &[u8]| {
        let shown = &b[..b.len().min(BODY_SHOWN)];
        (
            String::from_utf8_lossy(shown).into_owned(),
            b.len(),
            b.len() > BODY_SHOWN,
        )
    };
    let d = match found {
        FoundMessage::Stored(m) => {
            let mut consumed = Vec::new();
            let groups = call(cl.admin.list_groups()).await?;
            let resend_to = names::owner_group(m.topic.as_str()).unwrap_or_default();
            for g in groups.iter().take(GROUPS_MAX) {
                let o = cl
                    .admin
                    .consumer_offset(
                        g.name.as_str(),
                        m.topic.as_str(),
                        m.broker_group.as_str(),
                        m.queue_id.0,
                    )
                    .await;
                let status = match o {
                    Ok(Some(o)) if o.0 > m.queue_offset.0 => "consumed",
                    Ok(Some(_)) => "not yet",
                    _ => continue,
                };
                consumed.push(Consumed {
                    group: g.name.to_string(),
                    status,
                });
            }
            let (body, body_len, truncated) = body_of(&m.body);
            Detail {
                nav: Nav::new(&s, c, &me, "messages"),
                unique_key: m.property(PROP_UNIQ_KEY).map(str::to_owned),
                cli: cli(&["msg", "get", &m.msg_id]),
                msg_id: m.msg_id,
                topic: m.topic.to_string(),
                group: m.broker_group.0,
                queue: m.queue_id.0,
                offset: Some(m.queue_offset.0),
                tag: m.tag,
                keys: m.keys.join(" "),
                properties: m.properties,
                born: utc(m.born_ms),
                stored: utc(m.store_ms),
                due: None,
                reconsume_times: m.reconsume_times,
                body,
                body_len,
                truncated,
                consumed,
                groups: groups.iter().map(|g| g.name.to_string()).collect(),
                resend_to: resend_to.to_owned(),
            }
        }
        FoundMessage::Scheduled {
            msg_id,
            broker_group,
            queue_id,
            store_ms,
            message,
        } => {
            let (body, body_len, truncated) = body_of(&message.body);
            Detail {
                nav: Nav::new(&s, c, &me, "messages"),
                unique_key: message.property(PROP_UNIQ_KEY).map(str::to_owned),
                cli: cli(&["msg", "get", &msg_id]),
                msg_id,
                topic: message.topic.to_string(),
                group: broker_group.0,
                queue: queue_id.0,
                offset: None,
                tag: message.tag,
                keys: message.keys.join(" "),
                properties: message.properties,
                born: utc(store_ms),
                stored: utc(store_ms),
                due: Some(utc(message.deliver_at_ms)),
                reconsume_times: 0,
                body,
                body_len,
                truncated,
                consumed: Vec::new(),
                groups: Vec::new(),
                resend_to: String::new(),
            }
        }
    };
    html(&d)
}

/// The resend form: the consumer group to deliver the message to again.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ResendForm {
    group: String,
}

/// `POST /c/{c}/messages/{id}/resend`.
pub(crate) async fn resend(
    State(s): State<AppState>,
    Path((c, id)): Path<(usize, String)>,
    Form(f): Form<ResendForm>,
) -> ViewResult {
    let cl = cluster(&s, c)?;
    let group = f.group.trim();
    call(cl.admin.resend_to_group(&id, group)).await?;
    done(
        format!("message {id} will be delivered to group {group} again in about a second"),
        &["msg", "resend", &id, "--group", group],
    )
}
