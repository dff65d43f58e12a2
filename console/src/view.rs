//! What every page shares: the navigation bar, errors as pages, paging, formatting, and
//! the `raftmq` command equivalent to an action.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use raftmq_client::Error as ClientError;
use raftmq_proto::WireError;

use crate::auth::Session;
use crate::{AppState, Cluster};

pub use raftmq_proto::clock::now_ms;

/// A count of ms however a template holds it (templates pass values by reference, at
/// whatever depth their loops and `if let`s reached).
pub trait Ms {
    /// The value.
    fn ms(&self) -> u64;
}

impl Ms for u64 {
    fn ms(&self) -> u64 {
        *self
    }
}

impl<T: Ms + ?Sized> Ms for &T {
    fn ms(&self) -> u64 {
        (**self).ms()
    }
}

/// A time in ms since the epoch as RFC 3339 UTC.
pub fn utc(ms: impl Ms) -> String {
    raftmq_proto::clock::utc(ms.ms())
}

/// The navigation bar and session facts of a page.
#[derive(Debug, Clone)]
pub struct Nav {
    /// Path prefix of the cluster's pages, `/c/N`.
    pub base: String,
    /// The cluster's name.
    pub cluster: String,
    /// Every cluster: (prefix, name).
    pub clusters: Vec<(String, String)>,
    /// Mutations allowed: mutating buttons are shown.
    pub admin: bool,
    /// The CSRF value htmx sends with every request.
    pub csrf: String,
    /// Which tab is current.
    pub tab: &'static str,
    /// Sign-in is on (a sign-out button is shown).
    pub signed_in: bool,
    /// Asset URLs.
    pub assets: crate::assets::Urls,
    /// A chaos report directory is shown (`--reports`).
    pub reports: bool,
}

impl Nav {
    /// The navigation of cluster `c` for `session`.
    pub(crate) fn new(s: &AppState, c: usize, session: &Session, tab: &'static str) -> Self {
        Self {
            base: format!("/c/{c}"),
            cluster: s
                .clusters
                .get(c)
                .map(|x| x.name.clone())
                .unwrap_or_default(),
            clusters: s
                .clusters
                .iter()
                .enumerate()
                .map(|(i, x)| (format!("/c/{i}"), x.name.clone()))
                .collect(),
            admin: session.admin,
            csrf: session.csrf.clone(),
            tab,
            signed_in: s.auth.admin_token().is_some(),
            assets: crate::assets::Urls,
            reports: s.reports.is_some(),
        }
    }

    /// `{"x-csrf-token": "..."}` for `hx-headers`.
    pub fn hx_headers(&self) -> String {
        format!("{{\"{}\": \"{}\"}}", crate::auth::CSRF_HEADER, self.csrf)
    }
}

/// An error shown as a page or fragment with its status.
#[derive(Debug)]
pub struct ViewError {
    /// HTTP status.
    pub status: StatusCode,
    /// What happened and what to do.
    pub message: String,
}

impl ViewError {
    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    /// 500: the console itself failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<ClientError> for ViewError {
    fn from(e: ClientError) -> Self {
        let status = match &e {
            ClientError::Invalid(_) => StatusCode::BAD_REQUEST,
            ClientError::MessageNotFound { .. }
            | ClientError::Wire(
                WireError::TopicNotFound(_)
                | WireError::GroupNotFound(_)
                | WireError::MessageNotFound(_),
            ) => StatusCode::NOT_FOUND,
            ClientError::Wire(WireError::Invalid(_) | WireError::OffsetTooLarge { .. }) => {
                StatusCode::BAD_REQUEST
            }
            ClientError::Wire(WireError::NotAuthorized(_)) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_GATEWAY,
        };
        Self {
            status,
            message: e.to_string(),
        }
    }
}

impl From<askama::Error> for ViewError {
    fn from(e: askama::Error) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the page could not be rendered: {e}"),
        }
    }
}

impl From<tokio::time::error::Elapsed> for ViewError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        Self {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: format!(
                "the cluster did not answer within {} s; is a broker group without a leader?",
                crate::CALL_TIMEOUT.as_secs()
            ),
        }
    }
}

#[derive(Debug, Template)]
#[template(path = "error.html")]
struct ErrorFragment<'a> {
    status: u16,
    message: &'a str,
}

impl IntoResponse for ViewError {
    fn into_response(self) -> Response {
        let body = ErrorFragment {
            status: self.status.as_u16(),
            message: &self.message,
        }
        .render()
        .unwrap_or_else(|_| self.message.clone());
        (self.status, Html(body)).into_response()
    }
}

/// A handler's result.
pub type ViewResult = Result<Response, ViewError>;

/// Renders a template as a 200 page or fragment.
pub fn html(t: &impl Template) -> ViewResult {
    Ok(Html(t.render()?).into_response())
}

/// Cluster `c`, or 404.
pub(crate) fn cluster(s: &AppState, c: usize) -> Result<&Cluster, ViewError> {
    s.clusters
        .get(c)
        .ok_or_else(|| ViewError::not_found(format!("no cluster number {c} in this console")))
}

/// Runs an admin call with the console's time limit.
pub(crate) async fn call<T>(
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ViewError> {
    Ok(tokio::time::timeout(crate::CALL_TIMEOUT, f).await??)
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    /// 1-based page shown.
    pub page: usize,
    /// Pages in all (at least 1).
    pub pages: usize,
    /// Items in all.
    pub total: usize,
}

impl Paging {
    /// Cuts page `page` (1-based, clamped) of `per_page` out of `items`.
    pub fn cut<T>(items: Vec<T>, page: usize, per_page: usize) -> (Vec<T>, Self) {
        let total = items.len();
        let pages = total.div_ceil(per_page).max(1);
        let page = page.clamp(1, pages);
        let shown = items
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        (shown, Self { page, pages, total })
    }
    /// The previous page, if any.
    pub fn prev(&self) -> Option<usize> {
        (self.page > 1).then(|| self.page - 1)
    }
    /// The next page, if any.
    pub fn next(&self) -> Option<usize> {
        (self.page < self.pages).then(|| self.page + 1)
    }
    /// Links to the previous and next pages: `path?` the filter `pairs` and `page=N`.
    pub fn links(&self, path: &str, pairs: &[(&str, &str)]) -> (Option<String>, Option<String>) {
        let link = |page: Option<usize>| {
            page.map(|p| {
                let p = p.to_string();
                let mut all = pairs.to_vec();
                all.push(("page", &p));
                format!("{path}?{}", query(&all))
            })
        };
        (link(self.prev()), link(self.next()))
    }
}

/// A query string from pairs, encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(_, v)| !v.is_empty()))
        .finish()
}

/// A path segment, encoded (topic and group names may hold `%`).
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The `raftmq` command line equivalent to an action, each argument quoted for a POSIX
/// shell when it needs to be.
pub fn cli(args: &[&str]) -> String {
    let quote = |a: &str| {
        if !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.,:/=@%+".contains(&b))
        {
            a.to_owned()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    std::iter::once("raftmq".to_owned())
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes with a binary unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// How long ago `ms` (since the epoch) was, briefly: `850 ms`, `12.3 s`, `4 min`, `2.5 h`.
pub fn age(ms: impl Ms) -> String {
    duration(now_ms().saturating_sub(ms.ms()))
}

/// A duration in ms, briefly.
pub fn duration(d: impl Ms) -> String {
    let d = d.ms();
    match d {
        0..1000 => format!("{d} ms"),
        1000..60_000 => format!("{:.1} s", d as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min", d / 60_000),
        _ => format!("{:.1} h", d as f64 / 3_600_000.0),
    }
}

/// Answers a mutation with what was done and the `raftmq` command that does the same.
pub fn done(message: String, args: &[&str]) -> ViewResult {
    html(&Done {
        message,
        cli: cli(args),
    })
}

/// The answer to a mutation: what was done and the equivalent command.
#[derive(Debug, Template)]
#[template(path = "done.html")]
pub struct Done {
    /// What was done.
    pub message: String,
    /// The equivalent `raftmq` command.
    pub cli: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_quoted_for_a_shell() {
        assert_eq!(
            cli(&["topic", "create", "T1", "--queues", "8"]),
            "raftmq topic create T1 --queues 8"
        );
        assert_eq!(
            cli(&["produce", "--body", "it's here", "--topic", "%RETRY%g"]),
            r"raftmq produce --body 'it'\''s here' --topic %RETRY%g"
        );
        assert_eq!(cli(&["x", ""]), "raftmq x ''");
        assert_eq!(cli(&["a;rm -rf /"]), "raftmq 'a;rm -rf /'");
    }

    #[test]
    fn paging_clamps_and_cuts() {
        let (shown, p) = Paging::cut((0..120).collect(), 3, 50);
        assert_eq!(shown, (100..120).collect::<Vec<_>>());
        assert_eq!(
            (p.page, p.pages, p.total, p.prev(), p.next()),
            (3, 3, 120, Some(2), None)
        );
        let (shown, p) = Paging::cut(Vec::<u8>::new(), 9, 50);
        assert!(shown.is_empty());
        assert_eq!((p.page, p.pages, p.prev(), p.next()), (1, 1, None, None));
        let (_, p) = Paging::cut((0..51).collect::<Vec<_>>(), 0, 50);
        assert_eq!((p.page, p.next()), (1, Some(2)));
        assert_eq!(
            p.links("/c/0/topics", &[("q", "a b"), ("kind", "")]),
            (None, Some("/c/0/topics?q=a+b&page=2".to_owned()))
        );
    }

    #[test]
    fn formats() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(240_000), "4 min");
        assert_eq!(seg("%RETRY%g 1"), "%25RETRY%25g%201");
        assert_eq!(
            query(&[("q", "a b"), ("kind", ""), ("page", "2")]),
            "q=a+b&page=2"
        );
    }
}
