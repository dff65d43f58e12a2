//! The web console (`raftmq console`, a real process) against a 3-process group: sign-in,
//! roles and CSRF; every page and action over HTTP as a browser's htmx would send them; the
//! live overview stream; exact lag after a consumer commits; and a kill -9 of the leader
//! showing as a new leader and a timeline entry.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{free_port, raftmq_bin, wait_until, Cluster, Tuning};
use crate::rmq::raftmq;

const T: Duration = Duration::from_secs(60);
pub(crate) const ADMIN: &str = "admin-token-0123456789";
pub(crate) const READER: &str = "read-token-0123456789";

/// One HTTP/1.1 answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) code: u16,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
}

/// A request to the console: a method, a path, extra headers and a form body.
pub(crate) async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> anyhow::Result<Answer> {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(req.as_bytes()).await?;
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut raw)).await??;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP header end in {raw:?}"))?;
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        code,
        headers,
        body: body.to_owned(),
    })
}

fn enc(s: &str) -> String {
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

/// The console process; killed on drop.
pub(crate) struct Console {
    child: Child,
    /// Where it listens.
    pub(crate) addr: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Console {
    pub(crate) fn start(c: &Cluster) -> anyhow::Result<Self> {
        Self::start_with(c, &[])
    }

    /// With more `raftmq console` arguments.
    pub(crate) fn start_with(c: &Cluster, extra: &[&str]) -> anyhow::Result<Self> {
        let addr = format!("127.0.0.1:{}", free_port("127.0.0.1")?);
        let log = std::fs::File::create(c.dir.path().join("console.log"))?;
        let child = Command::new(raftmq_bin()?)
            .args(["-n", &c.namesrv, "console", "--listen", &addr])
            .args(["--sample-interval-ms", "200"])
            .args(extra)
            .env("RAFTMQ_CONSOLE_ADMIN_TOKEN", ADMIN)
            .env("RAFTMQ_CONSOLE_READ_TOKEN", READER)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Self { child, addr })
    }

    /// Waits until it answers.
    pub(crate) async fn ready(&self) -> anyhow::Result<()> {
        wait_until("the console to listen", T, || async {
            http(&self.addr, "GET", "/login", &[], &[]).await
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> anyhow::Result<Answer> {
        let auth = format!("Bearer {token}");
        http(&self.addr, "GET", path, &[("Authorization", &auth)], &[]).await
    }

    /// A 200 page's body.
    pub(crate) async fn page(&self, path: &str) -> anyhow::Result<String> {
        let a = self.get(path, ADMIN).await?;
        anyhow::ensure!(a.code == 200, "GET {path}: {} {}", a.code, a.body);
        Ok(a.body)
    }

    /// A mutation as a signed-in admin browser sends it: the cookie and the CSRF header.
    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Answer> {
        let page = self.page("/").await?;
        let csrf = between(&page, "x-csrf-token&#34;: &#34;", "&#34;")
            .ok_or_else(|| anyhow::anyhow!("no CSRF value in the page"))?;
        let cookie = format!("raftmq_console={ADMIN}");
        http(
            &self.addr,
            "POST",
            path,
            &[
                ("Cookie", &cookie),
                ("x-csrf-token", &csrf),
                ("HX-Request", "true"),
            ],
            form,
        )
        .await
    }
}

pub(crate) fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(s[from..from + len].to_owned())
}

/// How many nodes the overview shows in `role`.
fn count_role(page: &str, role: &str) -> usize {
    page.matches(&format!("<span class=\"node-role\">{role}</span>"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_actions_roles_and_failover() -> anyhow::Result<()> {
    let mut c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let first = c.wait_leader("broker-a", T).await?;
    let console = Console::start(&c)?;
    console.ready().await?;

    // Sign-in: pages redirect, fragments and scripts get 401, a wrong token is refused,
    // the right one sets an HttpOnly SameSite cookie.
    let anon = http(&console.addr, "GET", "/", &[], &[]).await?;
    assert_eq!(
        (anon.code, anon.headers.get("location").map(String::as_str)),
        (303, Some("/login"))
    );
    let anon = http(
        &console.addr,
        "GET",
        "/c/0/topics",
        &[("HX-Request", "true")],
        &[],
    )
    .await?;
    assert_eq!(anon.code, 401, "{}", anon.body);
    let bad = http(
        &console.addr,
        "POST",
        "/login",
        &[],
        &[("token", "wrong-token-0000000")],
    )
    .await?;
    assert_eq!(bad.code, 401);
    assert!(bad.body.contains("not valid"), "{}", bad.body);
    let ok = http(&console.addr, "POST", "/login", &[], &[("token", ADMIN)]).await?;
    assert_eq!(ok.code, 303);
    let cookie = ok.headers.get("set-cookie").cloned().unwrap_or_default();
    assert!(
        cookie.starts_with(&format!("raftmq_console={ADMIN};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let csp = console
        .get("/", ADMIN)
        .await?
        .headers
        .get("content-security-policy")
        .cloned();
    assert!(csp.is_some_and(|p| p.contains("default-src 'self'")));

    // The overview: three nodes, one leader, one term, live over server-sent events.
    let overview = wait_until("the overview to show the group", T, || async {
        let p = console.page("/").await?;
        anyhow::ensure!(
            count_role(&p, "leader") == 1 && count_role(&p, "follower") == 2,
            "{p}"
        );
        Ok(p)
    })
    .await?;
    assert!(overview.contains(&format!("<span class=\"leader\">node {first}</span>")));
    assert!(overview.contains("badge ok"), "a healthy group");
    assert!(overview.contains("sse-connect=\"/events/overview\""));
    let sse = sse_first_events(&console.addr).await?;
    assert!(
        sse.contains("event: nodes") && sse.contains("node-role"),
        "{sse}"
    );

    // Topics: create, list with search and kind, detail with queues, send, delete.
    let created = console
        .post(
            "/c/0/topics",
            &[("topic", "WebT"), ("queues", "4"), ("group", "")],
        )
        .await?;
    assert_eq!(created.code, 200, "{}", created.body);
    assert!(
        created.body.contains("raftmq topic create WebT --queues 4"),
        "{}",
        created.body
    );
    let bad = console
        .post("/c/0/topics", &[("topic", "bad name"), ("queues", "4")])
        .await?;
    assert_eq!(bad.code, 400, "{}", bad.body);
    let list = console.page("/c/0/topics?q=webt&kind=normal").await?;
    assert!(list.contains("href=\"/c/0/topics/WebT\""), "{list}");
    assert!(!console
        .page("/c/0/topics?q=webt&kind=dlq")
        .await?
        .contains("/c/0/topics/WebT\""));
    let sent = console
        .post(
            "/c/0/topics/WebT/send",
            &[
                ("body", "hello console"),
                ("tag", "TagA"),
                ("key", "K-42"),
                ("properties", "color=blue"),
            ],
        )
        .await?;
    assert_eq!(sent.code, 200, "{}", sent.body);
    let id = between(&sent.body, "class=\"msg-id\" href=\"/c/0/messages/", "\"")
        .ok_or_else(|| anyhow::anyhow!("no message id in {}", sent.body))?;
    let uniq = between(&sent.body, "<span class=\"unique-key\">", "<").unwrap_or_default();
    assert!(
        sent.body.contains("--key K-42 --property color=blue"),
        "{}",
        sent.body
    );
    let topic = console.page("/c/0/topics/WebT").await?;
    assert_eq!(topic.matches("class=\"max-offset\"").count(), 4, "{topic}");
    assert!(topic.contains("1 messages kept"), "{topic}");

    // Messages: by key, by both ids, from an offset; the detail page.
    let by_key = console.page("/c/0/messages?topic=WebT&key=K-42").await?;
    assert!(
        by_key.contains(&id) && by_key.contains("hello console"),
        "{by_key}"
    );
    for lookup in [&id, &uniq] {
        let r = console
            .get(&format!("/c/0/messages?id={lookup}"), ADMIN)
            .await?;
        assert_eq!(r.code, 303, "{}", r.body);
        assert_eq!(
            r.headers.get("location"),
            Some(&format!("/c/0/messages/{id}"))
        );
    }
    let detail = console.page(&format!("/c/0/messages/{id}")).await?;
    for want in [
        "hello console",
        "<th>color</th><td>blue</td>",
        "TagA",
        "K-42",
    ] {
        assert!(detail.contains(want), "{want} missing from {detail}");
    }
    let stored = between(&detail, "<dt>stored on</dt><dd>", " offset").unwrap_or_default();
    let (group, queue) = stored
        .split_once(" queue ")
        .ok_or_else(|| anyhow::anyhow!("no queue in {stored:?}"))?;
    let read = console
        .page(&format!(
            "/c/0/messages?topic=WebT&broker_group={group}&queue={queue}&offset=0"
        ))
        .await?;
    assert!(read.contains(&id), "{read}");
    let missing = console.get("/c/0/messages?id=0000", ADMIN).await?;
    assert_eq!(missing.code, 404, "{}", missing.body);

    // Groups: a consumer run brings the lag to 0, as the progress fragment shows.
    raftmq(
        &c.namesrv,
        &["produce", "--topic", "WebT", "--count", "9", "--quiet"],
    )?;
    let lagging = console.get("/c/0/groups/web-g/progress", ADMIN).await?;
    assert_eq!(lagging.code, 200);
    raftmq(
        &c.namesrv,
        &[
            "consume",
            "--topic",
            "WebT",
            "--group",
            "web-g",
            "--from",
            "first",
            "--idle-timeout",
            "3",
        ],
    )?;
    wait_until("the group's lag to reach 0", T, || async {
        let p = console.page("/c/0/groups/web-g/progress").await?;
        anyhow::ensure!(p.contains("<strong class=\"total-lag\">0</strong>"), "{p}");
        Ok(())
    })
    .await?;
    let groups = console.page("/c/0/groups?q=web").await?;
    assert!(groups.contains("href=\"/c/0/groups/web-g\""), "{groups}");
    let g = console.page("/c/0/groups/web-g").await?;
    assert!(
        g.contains("hx-trigger=\"every 2s\"") && g.contains("WebT"),
        "{g}"
    );
    // The message is consumed by the group now.
    assert!(console
        .page(&format!("/c/0/messages/{id}"))
        .await?
        .contains("<th>web-g</th><td>consumed</td>"));
    // Reset to the first message: the lag is back to 10.
    let reset = console
        .post(
            "/c/0/groups/web-g/reset",
            &[("topic", "WebT"), ("time", "0")],
        )
        .await?;
    assert_eq!(reset.code, 200, "{}", reset.body);
    assert!(reset
        .body
        .contains("raftmq group reset-offset web-g --topic WebT --to-time 0"));
    let p = console.page("/c/0/groups/web-g/progress").await?;
    assert!(p.contains("<strong class=\"total-lag\">10</strong>"), "{p}");
    let bad = console
        .post(
            "/c/0/groups/web-g/reset",
            &[("topic", "WebT"), ("time", "soon")],
        )
        .await?;
    assert_eq!(bad.code, 400);

    // The read-only token sees every page, no mutating button, and every mutation is 403.
    let ro = console.get("/c/0/topics/WebT", READER).await?;
    assert_eq!(ro.code, 200);
    assert!(
        !ro.body.contains("hx-post"),
        "read-only page offers a mutation"
    );
    assert!(ro.body.contains("read-only"));
    let auth = format!("Bearer {READER}");
    let denied = http(
        &console.addr,
        "POST",
        "/c/0/topics/WebT/delete",
        &[("Authorization", &auth)],
        &[],
    )
    .await?;
    assert_eq!(denied.code, 403, "{}", denied.body);
    // A signed-in browser's cookie without the CSRF header is refused too.
    let cookie = format!("raftmq_console={ADMIN}");
    let forged = http(
        &console.addr,
        "POST",
        "/c/0/topics/WebT/delete",
        &[("Cookie", &cookie)],
        &[],
    )
    .await?;
    assert_eq!(forged.code, 403, "{}", forged.body);
    assert!(
        console.page("/c/0/topics/WebT").await.is_ok(),
        "the topic survived"
    );

    // kill -9 the leader: the overview shows the new one and the timeline a leader change.
    c.kill9("broker-a", first);
    let next = wait_until("the console to show a new leader", T, || async {
        let p = console.page("/").await?;
        let l = between(&p, "<span class=\"leader\">node ", "<").unwrap_or_default();
        anyhow::ensure!(!l.is_empty() && l != first.to_string(), "leader {l:?}");
        anyhow::ensure!(
            p.contains("badge warn"),
            "a group with a dead node is degraded"
        );
        Ok(l)
    })
    .await?;
    let timeline = console.page("/timeline").await?;
    assert!(
        timeline.contains(&format!("leader {first} → {next}")),
        "{timeline}"
    );

    // Charts: the page loads uPlot, and the ring has points with the failover's lag.
    let charts = console.page("/c/0/charts").await?;
    assert!(charts.contains("uPlot.iife.min.js") && charts.contains("/c/0/charts.json"));
    let cols: serde_json::Value = serde_json::from_str(&console.page("/c/0/charts.json").await?)?;
    let points = cols["t"].as_array().map_or(0, Vec::len);
    assert!(points > 1, "{cols}");
    for series in ["produced", "consumed", "follower_lag", "group_lag"] {
        assert_eq!(
            cols[series].as_array().map_or(0, Vec::len),
            points,
            "{series}"
        );
    }
    assert!(
        cols["produced"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v.as_f64() > Some(0.0)),
        "{cols}"
    );

    // Deletes, with the commands shown.
    let del = console.post("/c/0/groups/web-g/delete", &[]).await?;
    assert_eq!(del.code, 200, "{}", del.body);
    assert!(del.body.contains("raftmq group delete web-g"));
    let del = console.post("/c/0/topics/WebT/delete", &[]).await?;
    assert_eq!(del.code, 200, "{}", del.body);
    let gone = console.get("/c/0/topics/WebT", ADMIN).await?;
    assert_eq!(gone.code, 404, "{}", gone.body);
    Ok(())
}

/// The first bytes of the overview's event stream.
async fn sse_first_events(addr: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "GET /events/overview HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut got = String::new();
    let mut buf = vec![0u8; 64 << 10];
    tokio::time::timeout(Duration::from_secs(30), async {
        while !got.contains("event: timeline") {
            let n = s.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "the stream ended: {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        Ok(())
    })
    .await??;
    Ok(got)
}
