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
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a message id"));

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
