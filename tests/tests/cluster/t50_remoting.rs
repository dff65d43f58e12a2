//! RocketMQ clients through failures: leadership moving and the leader killed while the
//! C++ producer sends, and hostile bytes on the remoting ports.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{wait_until, Cluster, Tuning};
use crate::rmq::Rmq;

const T: Duration = Duration::from_secs(60);

fn ok_bodies(records: &[Value], prefix: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.get("status").and_then(Value::as_str) == Some("OK"))
        .map(|r| format!("{prefix}{}", r["i"]))
        .collect()
}

/// The distinct send errors (first 160 characters), each with its count and the
/// `t_ms` of its first and last occurrence: what a failure report needs to tell a
/// routing problem from a broker refusing.
fn error_kinds(records: &[Value]) -> String {
    let mut kinds: std::collections::BTreeMap<String, (usize, i64, i64)> = Default::default();
    for r in records {
        if let Some(e) = r.get("error").and_then(Value::as_str) {
            let t = r["t_ms"].as_f64().unwrap_or_default() as i64;
            let k = kinds
                .entry(e.chars().take(160).collect())
                .or_insert((0, t, t));
            k.0 += 1;
            k.2 = t;
        }
    }
    kinds
        .iter()
        .map(|(e, (n, first, last))| format!("{n}x [{first}..{last} ms] {e}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

async fn stored_bodies(c: &Cluster, addr: &str, topic: &str) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for q in 0..4 {
        for (_, b) in c.read_queue(addr, topic, q).await? {
            out.insert(String::from_utf8_lossy(&b).into_owned());
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_cpp_producer_keeps_every_acknowledged_send_through_leader_changes(
) -> anyhow::Result<()> {
    let mut c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    let admin = c.admin()?;
    admin.create_topic("CppFail", 4, None).await?;
    let rmq = std::sync::Arc::new(Rmq::new(&c.namesrv)?);

    tracing::info!("--- leadership moves while the C++ producer sends: no send fails");
    let producer = {
        let rmq = rmq.clone();
        tokio::task::spawn_blocking(move || {
            rmq.run(&[
                "produce",
                "--topic",
                "CppFail",
                "--count",
                "300",
                "--interval-ms",
                "20",
                "--body-prefix",
                "t",
            ])
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to = if leader == 1 { 2 } else { 1 };
    admin.transfer_leader("broker-a", to).await?;
    let lines = producer.await??;
    let errors: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert!(
        errors.is_empty(),
        "sends failed across a leadership transfer: {errors:?}"
    );
    let leader = c.wait_leader("broker-a", T).await?;
    assert_eq!(leader, to);

    tracing::info!("--- kill -9 the leader while the C++ producer sends");
    let producer = {
        let rmq = rmq.clone();
        tokio::task::spawn_blocking(move || {
            rmq.run(&[
                "produce",
                "--topic",
                "CppFail",
                "--duration-s",
                "75",
                "--interval-ms",
                "20",
                "--body-prefix",
                "k",
                "--timeout-ms",
                "3000",
            ])
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let killed_at = Instant::now();
    let killed_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    c.kill9("broker-a", leader);
    let new = c.wait_leader("broker-a", T).await?;
    tracing::info!(
        new_leader = new,
        after_ms = killed_at.elapsed().as_millis() as u64,
        "--- new leader"
    );
    let lines = producer.await??;
    let summary = lines
        .iter()
        .find(|l| l.get("summary").is_some())
        .cloned()
        .unwrap_or_default();
    let records: Vec<Value> = lines
        .into_iter()
        .filter(|l| l.get("summary").is_none() && l.get("event").is_none())
        .collect();
    let failed = records.iter().filter(|r| r.get("error").is_some()).count();
    let errors = error_kinds(&records);
    println!(
        "C++ producer through a leader kill -9: {} sends acknowledged, {failed} failed, longest gap between acknowledgements {} ms; leader killed at {killed_at_ms} ms; errors: {errors}",
        ok_bodies(&records, "").len(),
        summary["longest_gap_ms"]
    );
    let new_addr = c.node("broker-a", new).client_addr.clone();
    let acked = ok_bodies(&records, "k");
    let stored = stored_bodies(&c, &new_addr, "CppFail").await?;
    let lost: Vec<&String> = acked.iter().filter(|b| !stored.contains(*b)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged sends lost: {lost:?}",
        lost.len()
    );
    // The C++ client (1.2.4) re-reads routes on a fixed schedule, 3 s after its start and
    // every 30 s from then, and only then learns the new leader (a 28 s gap here). One CI
    // run under load had not resumed 40 s after the kill, one refresh after it (a refresh's
    // NameServer call can time out on the client's transport lock while sends fail against
    // the dead address), so the run spans two refreshes after the kill: by its end sends
    // succeed again. The error summary above tells a missed refresh from a refusing broker.
    let last_ok = records
        .iter()
        .rev()
        .find(|r| r.get("status").and_then(Value::as_str) == Some("OK"));
    let last_err = records.iter().rev().find(|r| r.get("error").is_some());
    if let (Some(ok), Some(err)) = (last_ok, last_err) {
        assert!(
            ok["i"].as_i64() > err["i"].as_i64(),
            "sends did not resume: last error {err}; errors: {errors}"
        );
    }
    Ok(())
}

/// Writes `bytes` and reports whether the server closed the connection within 10 s.
async fn closes_after(addr: &str, bytes: &[u8]) -> anyhow::Result<bool> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(true),
            _ => {}
        }
    }
    Ok(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_hostile_bytes_on_remoting_ports_leave_the_servers_serving() -> anyhow::Result<()> {
    let c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    let admin = c.admin()?;
    admin.create_topic("Hostile", 4, None).await?;
    let broker = c.node("broker-a", leader).client_addr.clone();
    let mut hanging = Vec::new();
    for addr in [c.namesrv.clone(), broker.clone()] {
        tracing::info!(%addr, "--- garbage, a 2 GiB length prefix, a frame cut short");
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        closes_after(&addr, &garbage).await?;
        let huge_remoting = [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0x10, b'{', b'"'];
        assert!(
            closes_after(&addr, &huge_remoting).await?,
            "{addr} kept a 2 GiB frame open"
        );
        let huge_native = [0x7f, 0xff, 0xff, 0xff, 0, 10, 0xfc, 1, 2, 3];
        assert!(
            closes_after(&addr, &huge_native).await?,
            "{addr} kept a 2 GiB frame open"
        );
        let bad_json = b"\x00\x00\x00\x0e\x00\x00\x00\x0a{\"code\":x}";
        assert!(
            closes_after(&addr, bad_json).await?,
            "{addr} kept a bad header open"
        );
        let mut cut = TcpStream::connect(&addr).await?;
        cut.write_all(&[0, 0, 3, 0xe8, 0, 0, 0, 0x20, b'{', b'"', b'c'])
            .await?;
        hanging.push(cut);
    }
    tracing::info!("--- with the cut frames still open, clients of both kinds are served");
    let ns = c.namesrv.clone();
    let (sent, _) =
        tokio::task::spawn_blocking(move || Rmq::new(&ns)?.produce("Hostile", &["--count", "5"]))
            .await??;
    assert_eq!(sent.len(), 5);
    let nodes = wait_until("every node up", T, || async {
        let n = admin.cluster_nodes().await?;
        anyhow::ensure!(
            n.iter().filter(|x| x.role != "unreachable").count() == 3,
            "{n:?}"
        );
        Ok(n)
    })
    .await?;
    assert_eq!(nodes.len(), 3);
    assert_eq!(stored_bodies(&c, &broker, "Hostile").await?.len(), 5);
    drop(hanging);
    Ok(())
}
