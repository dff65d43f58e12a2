//! The `raftmq` binary end to end: `dev`, the quickstart, admin commands, errors.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::raftmq_bin;

/// A running `raftmq dev`, killed on drop.
pub(crate) struct Dev {
    pub(crate) child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `raftmq dev` on its own loopback IP and waits for its "ready" banner.
pub(crate) fn start_dev(ip: &str) -> anyhow::Result<Dev> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(raftmq_bin()?)
        .args(["dev", "--ip", ip, "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("is ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(90))
        .map_err(|_| anyhow::anyhow!("raftmq dev was not ready within 90 s"))?;
    Ok(Dev { child, _dir: dir })
}

fn raftmq(namesrv: &str, args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(raftmq_bin()?)
        .args(["-n", namesrv])
        .args(args)
        .output()?)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_lines(o: &Output) -> anyhow::Result<Vec<serde_json::Value>> {
    stdout(o)
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

#[test]
fn t30_dev_quickstart_admin_and_errors() -> anyhow::Result<()> {
    let ip = "127.0.99.1";
    let mut dev = start_dev(ip)?;
    let ns = format!("{ip}:9876");

    let o = raftmq(&ns, &["produce", "--topic", "TopicTest", "--count", "1000"])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("SendResult [status=SEND_OK"))
            .count(),
        1000
    );

    let o = raftmq(
        &ns,
        &[
            "consume",
            "--topic",
            "TopicTest",
            "--group",
            "g1",
            "--from",
            "first",
            "--count",
            "1000",
        ],
    )?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("ConsumeMessage ["))
            .count(),
        1000
    );

    // Admin numbers agree with what was sent and consumed.
    let status = json_lines(&raftmq(&ns, &["--json", "topic", "status", "TopicTest"])?)?;
    assert_eq!(status.len(), 8);
    let total: u64 = status
        .iter()
        .map(|q| q["max_offset"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 1000);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let progress = json_lines(&raftmq(&ns, &["group", "progress", "g1", "--json"])?)?;
        let consumed: u64 = progress
            .iter()
            .filter(|r| r["topic"] == "TopicTest")
            .map(|r| r["consumer_offset"].as_u64().unwrap_or(0))
            .sum();
        let lag: u64 = progress
            .iter()
            .map(|r| r["lag"].as_u64().unwrap_or(0))
            .sum();
        if consumed == 1000 && lag == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "group progress never showed 1000 consumed: {progress:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let nodes = json_lines(&raftmq(&ns, &["cluster", "list", "--json"])?)?;
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes.iter().filter(|n| n["role"] == "leader").count(), 1);
    for n in &nodes {
        for field in [
            "cluster",
            "group",
            "node_id",
            "role",
            "term",
            "commit_index",
            "applied_index",
            "addr",
        ] {
            assert!(!n[field].is_null(), "cluster list lacks {field}: {n}");
        }
    }
    let sent = json_lines(&raftmq(
        &ns,
        &[
            "--json",
            "produce",
            "--topic",
            "TopicTest",
            "--count",
            "1",
            "--body",
            "find me",
            "--key",
            "needle",
        ],
    )?)?;
    let id = sent[0]["msg_id"].as_str().unwrap_or_default().to_owned();
    let got = json_lines(&raftmq(&ns, &["--json", "msg", "get", &id])?)?;
    assert_eq!(got[0]["body"], "find me");
    assert_eq!(got[0]["state"], "stored");
    // The producer's id finds it too.
    let uniq = sent[0]["unique_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(uniq.len(), 32, "{:?}", sent[0]);
    let by_uniq = json_lines(&raftmq(&ns, &["--json", "msg", "get", &uniq])?)?;
    assert_eq!(by_uniq[0]["msg_id"], id.as_str());
    assert_eq!(by_uniq[0]["unique_key"], uniq.as_str());
    let found = json_lines(&raftmq(
        &ns,
        &[
            "--json",
            "msg",
            "query",
            "--topic",
            "TopicTest",
            "--key",
            "needle",
        ],
    )?)?;
    assert_eq!(found[0]["msg_id"], id);

    // Bad flags and an unreachable NameServer: clear errors, non-zero exits.
    let o = raftmq(&ns, &["produce", "--count", "3"])?;
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--topic"));
    let o = raftmq("127.0.0.1:1", &["topic", "list"])?;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot connect") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    let o = raftmq(&ns, &["msg", "get", "not-an-id"])?;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no message not-an-id"), "{err}");

    // ctrl-c stops the dev cluster cleanly.
    Command::new("kill")
        .args(["-INT", &dev.child.id().to_string()])
        .status()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = dev.child.try_wait()? {
            assert!(s.success(), "raftmq dev exited with {s}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "raftmq dev did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The last line of a `--json` bench run: its summary.
fn bench_summary(namesrv: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let o = raftmq(namesrv, args)?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = json_lines(&o)?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("bench printed nothing"))?;
    for field in [
        "msgs_per_s",
        "mb_per_s",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "errors",
    ] {
        assert!(
            summary[field].is_number(),
            "bench summary lacks {field}: {summary}"
        );
    }
    Ok(summary)
}

#[test]
fn t30_bench_modes_report_what_they_measure() -> anyhow::Result<()> {
    let ip = "127.0.99.3";
    let _dev = start_dev(ip)?;
    let ns = format!("{ip}:9876");
    let num = |v: &serde_json::Value, f: &str| v[f].as_f64().unwrap_or(-1.0);

    let produced = bench_summary(
        &ns,
        &[
            "--json",
            "bench",
            "produce",
            "-c",
            "8",
            "--duration",
            "2",
            "--topic",
            "BenchT",
        ],
    )?;
    assert!(num(&produced, "messages") > 0.0, "{produced}");
    assert_eq!(num(&produced, "errors"), 0.0, "{produced}");
    assert!(num(&produced, "p50_ms") > 0.0 && num(&produced, "p99_ms") >= num(&produced, "p50_ms"));

    // A new group starts from the first offset: everything produced is there to consume.
    let consumed = bench_summary(
        &ns,
        &[
            "--json",
            "bench",
            "consume",
            "--group",
            "bc",
            "--duration",
            "4",
            "--topic",
            "BenchT",
        ],
    )?;
    assert_eq!(num(&consumed, "errors"), 0.0, "{consumed}");
    assert!(num(&consumed, "messages") > 0.0, "{consumed}");

    // e2e reports deliveries at the offered rate, not sends and deliveries added up.
    let e2e = bench_summary(
        &ns,
        &[
            "--json",
            "bench",
            "e2e",
            "--group",
            "be",
            "--rate",
            "200",
            "-c",
            "4",
            "--duration",
            "4",
            "--topic",
            "BenchE2e",
        ],
    )?;
    let (sent, delivered) = (num(&e2e, "sent"), num(&e2e, "messages"));
    assert!(
        (400.0..=900.0).contains(&sent),
        "sent {sent} at 200/s for 4 s: {e2e}"
    );
    assert!(
        delivered > 0.0 && delivered <= sent,
        "delivered {delivered} of {sent}: {e2e}"
    );
    assert!(num(&e2e, "msgs_per_s") <= 250.0, "{e2e}");
    assert_eq!(num(&e2e, "errors"), 0.0, "{e2e}");
    Ok(())
}

#[test]
fn t30_cli_exits_non_zero_and_says_why_when_it_achieved_nothing() -> anyhow::Result<()> {
    // Nothing listens on port 1.
    let dead = "127.0.0.1:1";
    let o = raftmq(dead, &["bench", "produce", "--duration", "1", "-c", "2"])?;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "bench against nothing succeeded");
    assert!(err.contains("sends failed: Connect x"), "{err}");
    let o = raftmq(dead, &["produce", "--topic", "T", "--count", "2"])?;
    assert!(!o.status.success());
    for args in [&["broker", "-c", "x.toml"][..], &["dev"][..]] {
        let o = raftmq(dead, args)?;
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("does not apply"));
    }

    let ip = "127.0.97.1";
    let _dev = start_dev(ip)?;
    let ns = format!("{ip}:9876");
    let o = raftmq(&ns, &["consume", "--topic", "Typo", "--group", "g"])?;
    assert!(!o.status.success(), "consuming an unknown topic succeeded");
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot consume topic Typo"));
    let o = raftmq(&ns, &["produce", "--topic", "Seen", "--count", "3"])?;
    assert!(o.status.success());
    let o = raftmq(
        &ns,
        &[
            "consume", "--topic", "Seen", "--group", "g", "--from", "first", "--count", "3",
        ],
    )?;
    assert!(o.status.success());
    // The group now has offsets at the end: --from first does not rewind it, and it says so.
    let o = raftmq(
        &ns,
        &[
            "consume",
            "--topic",
            "Seen",
            "--group",
            "g",
            "--from",
            "first",
            "--idle-timeout",
            "2",
        ],
    )?;
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("already consumed everything") && err.contains("--from does not apply"),
        "{err}"
    );
    Ok(())
}
