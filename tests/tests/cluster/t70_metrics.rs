//! Prometheus metrics of a 3-process group and its NameServer: each node's `/metrics`,
//! read by a Prometheus text parser, agrees with `raftmq cluster list --json` and `raftmq
//! group progress --json`; a kill -9 shows as a leader change; `/healthz` answers; and the
//! shipped Grafana dashboard and alert rules name only series that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{http_get, wait_until, Cluster, Tuning};
use crate::rmq::raftmq;

const T: Duration = Duration::from_secs(60);

/// `GET path` over plain HTTP/1.1: (status code, body).
async fn get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let (code, _, body) = http_get(addr, path, "", None).await?;
    Ok((code, body))
}

/// One scrape: samples by metric name, each with its labels and value.
struct Scrape(Vec<prometheus_parse::Sample>);

impl Scrape {
    async fn of(addr: &str) -> anyhow::Result<Self> {
        let (code, body) = get(addr, "/metrics").await?;
        anyhow::ensure!(code == 200, "/metrics of {addr} answered {code}: {body}");
        let lines = body.lines().map(|l| Ok(l.to_owned()));
        Ok(Self(prometheus_parse::Scrape::parse(lines)?.samples))
    }

    fn names(&self) -> BTreeSet<String> {
        self.0.iter().map(|s| s.metric.clone()).collect()
    }

    /// The value of `metric` whose labels include every pair of `labels`.
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.all(metric, labels).first().map(|(_, v)| *v)
    }

    /// Every sample of `metric` whose labels include `labels`: (labels, value).
    fn all(&self, metric: &str, labels: &[(&str, &str)]) -> Vec<(BTreeMap<String, String>, f64)> {
        use prometheus_parse::Value as V;
        self.0
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .filter_map(|s| {
                let v = match &s.value {
                    V::Counter(v) | V::Gauge(v) | V::Untyped(v) => *v,
                    V::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
                    V::Summary(_) => return None,
                };
                let l = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Some((l, v))
            })
            .collect()
    }
}

fn json_lines(s: &str) -> anyhow::Result<Vec<Value>> {
    s.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

/// Every node's Raft series equal what `cluster list --json` says, exactly one leads, and
/// every node has synced its log and measured its disk.
async fn raft_series_agree(c: &Cluster) -> anyhow::Result<()> {
    let listed = json_lines(&raftmq(&c.namesrv, &["cluster", "list", "--json"])?)?;
    let mut leaders = 0;
    for n in c.nodes.iter().filter(|n| n.group == "broker-a") {
        let row = listed
            .iter()
            .find(|r| r["node_id"].as_u64() == Some(n.id))
            .ok_or_else(|| anyhow::anyhow!("node {} not listed: {listed:?}", n.id))?;
        let s = Scrape::of(&n.http_addr).await?;
        let id = n.id.to_string();
        let me = [
            ("cluster", "TestCluster"),
            ("broker_group", "broker-a"),
            ("node", id.as_str()),
        ];
        let val = |m: &str| {
            s.value(m, &me)
                .ok_or_else(|| anyhow::anyhow!("node {id} exports no {m}"))
        };
        let leading = val("raftmq_raft_is_leader")? == 1.0;
        anyhow::ensure!(
            leading == (row["role"] == "leader"),
            "node {id}: is_leader {leading} but listed as {}",
            row["role"]
        );
        leaders += usize::from(leading);
        for (metric, field) in [
            ("raftmq_raft_term", "term"),
            ("raftmq_raft_commit_index", "commit_index"),
            ("raftmq_raft_last_applied_index", "applied_index"),
        ] {
            let listed = row[field].as_f64();
            anyhow::ensure!(
                Some(val(metric)?) == listed,
                "node {id}: {metric} {} but cluster list says {field} {listed:?}",
                val(metric)?
            );
        }
        anyhow::ensure!(val("raftmq_raft_voters")? == 3.0);
        anyhow::ensure!(
            val("raftmq_store_fsync_seconds")? > 0.0,
            "node {id}: no fsync counted"
        );
        anyhow::ensure!(
            val("raftmq_store_disk_free_bytes")? > 0.0,
            "node {id}: disk not measured"
        );
        if leading {
            let lags = s.all("raftmq_raft_follower_lag_entries", &me);
            anyhow::ensure!(lags.len() == 2, "leader {id} reports lag of {lags:?}");
            anyhow::ensure!(
                lags.iter().all(|(_, v)| *v == 0.0),
                "an idle group's followers lag: {lags:?}"
            );
        }
    }
    anyhow::ensure!(leaders == 1, "{leaders} nodes report leading");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_metrics_agree_with_the_cli_and_show_a_failover() -> anyhow::Result<()> {
    let mut c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    let admin = c.admin()?;
    admin.create_topic("Metered", 4, None).await?;
    let ns = c.namesrv.clone();
    raftmq(&ns, &["produce", "--topic", "Metered", "--count", "100"])?;
    raftmq(
        &ns,
        &[
            "consume", "--topic", "Metered", "--group", "g1", "--from", "first", "--count", "40",
        ],
    )?;

    tracing::info!("--- Raft series agree with cluster list");
    wait_until("metrics agree with cluster list", T, || {
        raft_series_agree(&c)
    })
    .await?;

    tracing::info!("--- queue and group series agree with group progress");
    let leader_http = c.node("broker-a", leader).http_addr.clone();
    let mut names = wait_until("metrics agree with group progress", T, || async {
        let progress = json_lines(&raftmq(&ns, &["group", "progress", "g1", "--json"])?)?;
        let s = Scrape::of(&leader_http).await?;
        let rows: Vec<&Value> = progress
            .iter()
            .filter(|r| r["topic"] == "Metered")
            .collect();
        anyhow::ensure!(rows.len() == 4, "progress: {progress:?}");
        let mut consumed = 0.0;
        for r in rows {
            let q = r["queue_id"].to_string();
            let l = [
                ("topic", "Metered"),
                ("queue", q.as_str()),
                ("consumer_group", "g1"),
            ];
            for (metric, field) in [
                ("raftmq_group_lag", "lag"),
                ("raftmq_group_committed_offset", "consumer_offset"),
            ] {
                let got = s.value(metric, &l);
                anyhow::ensure!(
                    got == r[field].as_f64(),
                    "queue {q}: {metric} {got:?}, group progress {field} {}",
                    r[field]
                );
            }
            let max = s.value("raftmq_queue_max_offset", &l[..2]);
            anyhow::ensure!(
                max == r["broker_offset"].as_f64(),
                "queue {q}: max offset {max:?} vs {r}"
            );
            consumed += r["consumer_offset"].as_f64().unwrap_or_default();
        }
        // `consume --count 40` commits what it acknowledged, which may trail by a batch.
        anyhow::ensure!(consumed > 0.0, "nothing committed");
        let stored: f64 = s
            .all("raftmq_queue_max_offset", &[("topic", "Metered")])
            .iter()
            .map(|(_, v)| v)
            .sum();
        anyhow::ensure!(stored == 100.0, "{stored} stored");
        let produced = s.value("raftmq_messages_produced_total", &[("topic", "Metered")]);
        anyhow::ensure!(produced == Some(100.0), "produced {produced:?}");
        let sends: f64 = s
            .all("raftmq_rpc_request_seconds", &[("protocol", "native")])
            .iter()
            .filter(|(l, _)| l.get("op").is_some_and(|op| op.starts_with("send")))
            .map(|(_, n)| n)
            .sum();
        anyhow::ensure!(sends >= 1.0, "no native send timed: {sends}");
        Ok(s.names())
    })
    .await?;
    let pulled: f64 = {
        let mut total = 0.0;
        for n in &c.nodes {
            let s = Scrape::of(&n.http_addr).await?;
            total += s
                .all("raftmq_messages_consumed_total", &[("topic", "Metered")])
                .iter()
                .map(|(_, v)| v)
                .sum::<f64>();
            names.extend(s.names());
        }
        total
    };
    assert!(pulled >= 40.0, "{pulled} messages counted as consumed");

    tracing::info!("--- the NameServer's series and every /healthz");
    let s = Scrape::of(&c.namesrv_http).await?;
    assert_eq!(
        s.value("raftmq_namesrv_brokers", &[("cluster", "TestCluster")]),
        Some(3.0)
    );
    assert!(s.value("raftmq_namesrv_route_queries_total", &[]) > Some(0.0));
    names.extend(s.names());
    for n in &c.nodes {
        let (code, body) = get(&n.http_addr, "/healthz").await?;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(&format!("broker-a node {}:", n.id)), "{body}");
        // Every member of a group with a leader is ready for traffic.
        let (code, body) = get(&n.http_addr, "/readyz").await?;
        assert_eq!(code, 200, "{body}");
    }
    // `raftmq probe`, the image's health check, agrees; and fails where nothing answers.
    let probe = |url: String| {
        std::process::Command::new(crate::harness::raftmq_bin()?)
            .args(["probe", &url, "--timeout-ms", "2000"])
            .output()
            .map_err(anyhow::Error::from)
    };
    let ok = probe(format!("http://{}/readyz", c.nodes[0].http_addr))?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("broker-a node"));
    let port = crate::harness::free_port("127.0.0.1")?;
    assert!(!probe(format!("http://127.0.0.1:{port}/healthz"))?
        .status
        .success());
    assert_eq!(get(&c.namesrv_http, "/healthz").await?.0, 200);
    assert_eq!(get(&c.namesrv_http, "/readyz").await?.0, 200);

    tracing::info!("--- kill -9 the leader: the survivors count a leader change");
    c.kill9("broker-a", leader);
    let new = c.wait_leader("broker-a", T).await?;
    let survivors: Vec<String> = c
        .nodes
        .iter()
        .filter(|n| n.id != leader)
        .map(|n| n.http_addr.clone())
        .collect();
    wait_until("survivors count the change", T, || async {
        for addr in &survivors {
            let s = Scrape::of(addr).await?;
            let changes = s.value("raftmq_raft_leader_changes_total", &[]);
            anyhow::ensure!(changes >= Some(1.0), "{addr}: {changes:?} leader changes");
        }
        Ok(())
    })
    .await?;
    let s = Scrape::of(&c.node("broker-a", new).http_addr).await?;
    assert_eq!(s.value("raftmq_raft_is_leader", &[]), Some(1.0));
    let lags = s.all("raftmq_raft_follower_lag_entries", &[]);
    assert!(
        lags.iter()
            .any(|(l, _)| l.get("follower") == Some(&leader.to_string())),
        "the new leader reports no lag for the killed node: {lags:?}"
    );

    tracing::info!("--- deploy/ names only series that exist");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in ["deploy/grafana/raftmq.json", "deploy/prometheus/alerts.yml"] {
        let text = std::fs::read_to_string(repo.join(file))?;
        if file.ends_with(".json") {
            serde_json::from_str::<Value>(&text)?;
        }
        let used = metric_names_in(&text);
        assert!(!used.is_empty(), "{file} names no raftmq series");
        for m in used {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| m.strip_suffix(suffix))
                .filter(|f| names.contains(*f))
                .unwrap_or(&m);
            assert!(
                names.contains(family),
                "{file} uses {m}, which no server exports"
            );
        }
    }
    Ok(())
}

/// Every `raftmq_...` identifier in a text.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("raftmq_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let before = rest[..i].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// Reads until the server closes (end of stream or an error) or `within` passes.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_hostile_bytes_on_the_http_listener_leave_it_serving() -> anyhow::Result<()> {
    use tokio::net::TcpStream;
    let c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    c.wait_leader("broker-a", T).await?;
    let addr = c.nodes[0].http_addr.clone();

    tracing::info!("--- garbage and a 1 MiB header are answered and closed");
    let mut s = TcpStream::connect(&addr).await?;
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    s.write_all(&garbage).await?;
    assert!(
        closed_within(&mut s, Duration::from_secs(10)).await,
        "garbage kept open"
    );
    let mut s = TcpStream::connect(&addr).await?;
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    huge.resize(1 << 20, b'a');
    // The server may close while the header is still being written.
    let _ = s.write_all(&huge).await;
    assert!(
        closed_within(&mut s, Duration::from_secs(10)).await,
        "a 1 MiB header kept open"
    );

    tracing::info!("--- a client trickling header lines is closed by the header timeout");
    let mut slow = TcpStream::connect(&addr).await?;
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let started = std::time::Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(45) {
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err()
            || closed_within(&mut slow, Duration::from_secs(2)).await
        {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "a header trickled for {took:?} kept its connection");
    println!("HTTP listener: a client trickling a header line every 2 s was closed after {took:?}");

    tracing::info!("--- with 500 idle connections open, /metrics answers");
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(TcpStream::connect(&addr).await?);
    }
    let (code, body) = get(&addr, "/metrics").await?;
    assert_eq!(code, 200);
    assert!(body.contains("raftmq_raft_term"), "{body}");
    drop(idle);
    Ok(())
}
