//! Who may use the console: an admin token (every page and action) and an optional
//! read-only token (pages only), or open access (`raftmq dev` on loopback).
//!
//! A browser signs in at `/login` with a token; the console answers with an `HttpOnly`,
//! `SameSite=Strict` cookie holding it. Scripts send `Authorization: Bearer TOKEN` instead.
//! Every mutation is a `POST` that must carry the header `x-csrf-token`, an HMAC of the
//! session's token under a key made at start (the pages put it in every htmx request), so
//! another site cannot make a signed-in browser act: it can neither read the value nor set
//! a custom header on a cross-site request. Read-only sessions get 403 on every mutation
//! and are shown no mutating buttons.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "raftmq_console";
/// The header every mutation carries.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who may use the console.
#[derive(Clone, PartialEq, Eq)]
pub enum Access {
    /// No sign-in; everyone is admin. Only for a console listening on loopback.
    Open,
    /// Sign-in with one of the tokens.
    Tokens {
        /// Every page and action.
        admin: String,
        /// Pages only, when set.
        read: Option<String>,
    },
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open => f.write_str("Open"),
            Self::Tokens { read, .. } => f
                .debug_struct("Tokens")
                .field("admin", &"<hidden>")
                .field("read", &read.as_ref().map(|_| "<hidden>"))
                .finish(),
        }
    }
}

impl Access {
    /// A fresh random token (32 hex digits) for a console started without one.
    pub fn generate_token() -> String {
        let bytes: [u8; 16] = rand::random();
        hex(&bytes)
    }
}

/// What a request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Mutations allowed.
    pub admin: bool,
    /// The value mutations must carry in [`CSRF_HEADER`].
    pub csrf: String,
}

/// The console's access rules and CSRF key.
#[derive(Debug)]
pub(crate) struct Auth {
    access: Access,
    csrf_key: [u8; 32],
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal without an early exit on the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Auth {
    pub(crate) fn new(access: Access) -> Self {
        Self {
            access,
            csrf_key: rand::random(),
        }
    }

    pub(crate) fn admin_token(&self) -> Option<&str> {
        match &self.access {
            Access::Open => None,
            Access::Tokens { admin, .. } => Some(admin),
        }
    }

    fn csrf_for(&self, token: &str) -> String {
        // HMAC accepts a key of any length: new_from_slice cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.csrf_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(token.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The session a token opens, if any.
    fn session(&self, token: Option<&str>) -> Option<Session> {
        match &self.access {
            Access::Open => Some(Session {
                admin: true,
                csrf: self.csrf_for("open"),
            }),
            Access::Tokens { admin, read } => {
                let token = token?;
                let is_admin = same(token, admin);
                let is_read = read.as_deref().is_some_and(|r| same(token, r));
                (is_admin || is_read).then(|| Session {
                    admin: is_admin,
                    csrf: self.csrf_for(token),
                })
            }
        }
    }
}

/// The token a request carries: `Authorization: Bearer` or the session cookie.
fn token(headers: &HeaderMap) -> Option<&str> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The middleware of every page and action: a session, and for a `POST` an admin one
/// with the right CSRF value (Bearer requests carry no ambient credential and need none).
pub(crate) async fn require(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let Some(session) = s.auth.session(token(headers)) else {
        let page = req.method() == Method::GET && !headers.contains_key("hx-request");
        return if page {
            Redirect::to("/login").into_response()
        } else {
            (
                StatusCode::UNAUTHORIZED,
                "not signed in: open /login, or send Authorization: Bearer TOKEN",
            )
                .into_response()
        };
    };
    if req.method() != Method::GET {
        if !session.admin {
            return (
                StatusCode::FORBIDDEN,
                "this is a read-only session: sign in with the admin token to change anything",
            )
                .into_response();
        }
        let bearer = headers.contains_key(header::AUTHORIZATION);
        let csrf_ok = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| same(v, &session.csrf));
        if !bearer && !csrf_ok {
            return (
                StatusCode::FORBIDDEN,
                "missing or wrong x-csrf-token header: reload the page and try again",
            )
                .into_response();
        }
    }
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// The sign-in form's fields.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

#[derive(askama::Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: Option<&'a str>,
    assets: crate::assets::Urls,
}

fn login_html(error: Option<&str>) -> Response {
    use askama::Template as _;
    match (LoginPage {
        error,
        assets: crate::assets::Urls,
    })
    .render()
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /login`.
pub(crate) async fn login_page(State(s): State<AppState>) -> Response {
    if s.auth.access == Access::Open {
        return Redirect::to("/").into_response();
    }
    login_html(None)
}

/// `POST /login`: a valid token sets the cookie and goes to the overview.
pub(crate) async fn login(State(s): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim();
    if s.auth.session(Some(token)).is_none() || token.contains([';', ' ', '\r', '\n']) {
        let mut r = login_html(Some("that token is not valid for this console"));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    }
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// `POST /logout`: clears the cookie.
pub(crate) async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Auth {
        Auth::new(Access::Tokens {
            admin: "adm".into(),
            read: Some("ro".into()),
        })
    }

    #[test]
    fn tokens_open_sessions_of_their_role() {
        let a = tokens();
        assert!(a.session(Some("adm")).is_some_and(|s| s.admin));
        assert!(a.session(Some("ro")).is_some_and(|s| !s.admin));
        assert_eq!(a.session(Some("nope")), None);
        assert_eq!(a.session(Some("")), None);
        assert_eq!(a.session(None), None);
        // Each token has its own CSRF value; another console's key gives another.
        let (x, y) = (a.csrf_for("adm"), a.csrf_for("ro"));
        assert_ne!(x, y);
        assert_ne!(x, tokens().csrf_for("adm"));
        assert_eq!(x.len(), 64);
        let open = Auth::new(Access::Open);
        assert!(open.session(None).is_some_and(|s| s.admin));
    }

    #[test]
    fn the_token_comes_from_bearer_or_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(token(&h), None);
        h.insert(
            header::COOKIE,
            "a=1; raftmq_console=tok; b=2".parse().unwrap(),
        );
        assert_eq!(token(&h), Some("tok"));
        h.insert(header::AUTHORIZATION, "Bearer other".parse().unwrap());
        assert_eq!(token(&h), Some("other"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert_eq!(Access::generate_token().len(), 32);
        assert!(!format!(
            "{:?}",
            Access::Tokens {
                admin: "secret".into(),
                read: None
            }
        )
        .contains("secret"));
    }
}
