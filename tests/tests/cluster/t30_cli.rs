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

/// `raftmq -n NAMESRV ARGS...` with `input` on its stdin.
fn raftmq_stdin(namesrv: &str, args: &[&str], input: &str) -> anyhow::Result<Output> {
    use std::io::Write as _;
    let mut child = Command::new(raftmq_bin()?)
        .args(["-n", namesrv])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    stdin.write_all(input.as_bytes())?;
    drop(stdin);
    Ok(child.wait_with_output()?)
}

/// `raftmq ARGS...` without `-n` (which `completions`, `man` and servers refuse).
fn bare(args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(raftmq_bin()?).args(args).output()?)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
    // Read from its queue at its offset: the same message, and no group appears for it.
    let (bg, q, off) = (
        found[0]["group"].as_str().unwrap_or_default().to_owned(),
        found[0]["queue_id"].to_string(),
        found[0]["queue_offset"].to_string(),
    );
    let read = json_lines(&raftmq(
        &ns,
        &[
            "--json",
            "msg",
            "read",
            "--topic",
            "TopicTest",
            "--broker-group",
            &bg,
            "--queue",
            &q,
            "--offset",
            &off,
            "--max",
            "1",
        ],
    )?)?;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["msg_id"], id);
    assert_eq!(read[0]["body"], "find me");

    // Delete the (stopped) consumer group g1, known by its offsets only: gone from the
    // list; a second delete says it does not exist.
    let deleted = json_lines(&raftmq(&ns, &["--json", "group", "delete", "g1"])?)?;
    assert!(!deleted[0]["deleted_from"]
        .as_array()
        .is_none_or(Vec::is_empty));
    let groups = json_lines(&raftmq(&ns, &["--json", "group", "list"])?)?;
    assert!(groups.iter().all(|g| g["group"] != "g1"), "{groups:?}");
    let o = raftmq(&ns, &["group", "delete", "g1"])?;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("g1"), "{err}");

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
    // produce gives up within its send timeout, naming the kind of failure and its count.
    let started = Instant::now();
    let o = raftmq(
        dead,
        &[
            "produce",
            "--topic",
            "T",
            "--count",
            "5",
            "--send-timeout-ms",
            "2000",
        ],
    )?;
    let took = started.elapsed();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        took < Duration::from_secs(8),
        "produce against a dead NameServer took {took:?}"
    );
    assert!(
        err.contains("sending to topic T: 1 sends failed: "),
        "{err}"
    );
    assert!(
        err.contains(" x1 (first: ") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    assert!(
        err.contains("sent 0 of 5 messages") && err.contains("gave up"),
        "{err}"
    );
    // A NameServer that accepts connections and never answers: given up on after the
    // send timeout, not before and not much after.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let silent_addr = silent.local_addr()?.to_string();
    let started = Instant::now();
    let o = raftmq(
        &silent_addr,
        &["produce", "--topic", "T", "--send-timeout-ms", "1500"],
    )?;
    let took = started.elapsed();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(8),
        "produce against a silent NameServer took {took:?}: {err}"
    );
    assert!(
        err.contains("1 sends failed: ") && err.contains(&silent_addr),
        "{err}"
    );
    drop(silent);
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

#[test]
fn t30_completions_man_pages_print_config_and_json_logs() -> anyhow::Result<()> {
    let none = "127.0.0.1:1";
    for shell in ["bash", "zsh", "fish"] {
        let o = bare(&["completions", shell])?;
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        for sub in [
            "produce",
            "consume",
            "topic",
            "cluster",
            "completions",
            "man",
        ] {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let help = stdout(&bare(&["completions", "--help"])?);
    assert!(help.contains("> /etc/bash_completion.d/raftmq"), "{help}");
    let o = Command::new(raftmq_bin()?)
        .args(["completions", "bash", "-n", "x:1"])
        .output()?;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does not apply to `raftmq completions`"));

    let o = bare(&["man"])?;
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(
        page.starts_with(".ie") || page.contains(".TH raftmq"),
        "{page}"
    );
    for sub in [
        "namesrv",
        "broker",
        "produce",
        "consume",
        "bench",
        "completions",
    ] {
        assert!(page.contains(sub), "the man page lacks {sub}");
    }
    let dir = tempfile::tempdir()?;
    let o = Command::new(raftmq_bin()?)
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()?;
    assert!(o.status.success(), "{}", stderr(&o));
    for file in [
        "raftmq.1",
        "raftmq-produce.1",
        "raftmq-topic.1",
        "raftmq-topic-create.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(file))?;
        assert!(text.contains(".SH"), "{file}: {text}");
    }
    assert!(stdout(&o).contains("raftmq-broker.1"));
    assert!(stdout(&bare(&["man", "--help"])?).contains("man -l -"));

    // The defaults, each setting under its comment.
    let o = bare(&["broker", "--print-config"])?;
    assert!(o.status.success(), "{}", stderr(&o));
    let config = stdout(&o);
    assert!(
        config.contains("# Cluster name. Default: `DefaultCluster`.\ncluster = \"DefaultCluster\""),
        "{config}"
    );

    // --log-format json: every line one JSON object.
    let listen = format!("127.0.0.1:{}", crate::harness::free_port("127.0.0.1")?);
    let mut ns = Command::new(raftmq_bin()?)
        .args(["namesrv", "--listen", &listen, "--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let err = ns
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let first = BufReader::new(err).lines().next();
    let _ = ns.kill();
    let _ = ns.wait();
    let line = first.ok_or_else(|| anyhow::anyhow!("namesrv logged nothing"))??;
    let event: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("not JSON ({e}): {line}"))?;
    assert_eq!(event["message"], "NameServer listening", "{line}");
    assert_eq!(event["level"], "INFO", "{line}");
    let o = raftmq(none, &["topic", "list", "--log-format", "json"])?;
    assert_eq!(o.status.code(), Some(2), "--log-format is for servers only");
    Ok(())
}

#[test]
fn t30_produce_reads_stdin_sets_properties_and_delivery_times() -> anyhow::Result<()> {
    let ip = "127.0.96.1";
    let _dev = start_dev(ip)?;
    let ns = format!("{ip}:9876");

    tracing::info!("--- bodies from stdin, one per line, with properties");
    let o = raftmq_stdin(
        &ns,
        &[
            "--json",
            "produce",
            "--topic",
            "StdinT",
            "--body",
            "-",
            "--property",
            "order=42",
            "--property",
            "src=cli",
        ],
        "first\n\nsecond\r\nthird\n",
    )?;
    assert!(o.status.success(), "{}", stderr(&o));
    let sent: Vec<_> = json_lines(&o)?.iter().map(|l| l["body"].clone()).collect();
    assert_eq!(sent, ["first", "second", "third"], "{}", stdout(&o));
    let o = raftmq(
        &ns,
        &[
            "--json",
            "consume",
            "--topic",
            "StdinT",
            "--group",
            "gs",
            "--from",
            "first",
            "--count",
            "3",
            "--idle-timeout",
            "60",
        ],
    )?;
    assert!(o.status.success(), "{}", stderr(&o));
    let got = json_lines(&o)?;
    let mut bodies: Vec<_> = got
        .iter()
        .map(|m| m["body"].as_str().unwrap_or("").to_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["first", "second", "third"]);
    for m in &got {
        assert_eq!(m["properties"]["order"], "42", "{m}");
        assert_eq!(m["properties"]["src"], "cli", "{m}");
    }
    let o = raftmq_stdin(
        &ns,
        &[
            "produce", "--topic", "StdinT", "--body", "-", "--count", "2",
        ],
        "a\nb\nc\nd\n",
    )?;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("SendResult [status=SEND_OK"))
            .count(),
        2
    );

    tracing::info!("--- bad properties and times are refused before anything is sent");
    for (args, says) in [
        (&["--property", "novalue"][..], "not NAME=VALUE"),
        (&["--property", "UNIQ_KEY=x"][..], "UNIQ_KEY is reserved"),
        (&["--property", "__DELIVER_AT=1"][..], "reserved"),
        (&["--deliver-at", "+5x"][..], "the unit must be"),
        (&["--deliver-at", "2020-01-01T00:00:00Z"][..], "in the past"),
        (&["--deliver-at", "+4d"][..], "3 days"),
        (
            &["--deliver-at", "+5s", "--delay-level", "2"][..],
            "cannot be used with",
        ),
    ] {
        let o = raftmq(
            &ns,
            &[&["produce", "--topic", "StdinT", "--count", "1"][..], args].concat(),
        )?;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    let o = raftmq(
        &ns,
        &[
            "produce",
            "--topic",
            "StdinT",
            "--count",
            "1",
            "--property",
            "a=1",
            "--property",
            "a=2",
        ],
    )?;
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("property a is given twice"),
        "{}",
        stderr(&o)
    );

    tracing::info!("--- --deliver-at +4s: held until then, delivered after");
    let o = raftmq(&ns, &["topic", "create", "DelayT", "--queues", "2"])?;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = raftmq(
        &ns,
        &[
            "--json",
            "produce",
            "--topic",
            "DelayT",
            "--count",
            "1",
            "--body",
            "later",
            "--deliver-at",
            "+4s",
        ],
    )?;
    assert!(o.status.success(), "{}", stderr(&o));
    let due = json_lines(&o)?[0]["deliver_at_ms"].as_u64().unwrap_or(0);
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let asked_at = now_ms();
    assert!(
        due > asked_at,
        "due {due} is not after {asked_at}: nothing would be proven"
    );
    let mut consumer = Command::new(raftmq_bin()?)
        .args([
            "-n", &ns, "--json", "consume", "--topic", "DelayT", "--group", "gd",
        ])
        .args(["--from", "first", "--count", "1", "--idle-timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = consumer
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let line = BufReader::new(out).lines().next();
    let received_at = now_ms();
    let status = consumer.wait()?;
    let line = line.ok_or_else(|| anyhow::anyhow!("consume printed nothing"))??;
    assert!(status.success(), "consume failed; it printed {line}");
    let m: serde_json::Value = serde_json::from_str(&line)?;
    assert_eq!(m["body"], "later", "{m}");
    // The consumer was waiting from before the due time and got it only at or after it.
    assert!(
        received_at >= due,
        "delivered {} ms early",
        due - received_at
    );
    Ok(())
}

#[test]
fn t30_local_run_script_stops_and_says_why_when_a_process_cannot_start() -> anyhow::Result<()> {
    // A copy of deploy/local in a temp dir: the script works relative to its own place.
    let root = tempfile::tempdir()?;
    let local = root.path().join("deploy/local");
    std::fs::create_dir_all(&local)?;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for f in [
        "run.sh",
        "broker-n1.toml",
        "broker-n2.toml",
        "broker-n3.toml",
    ] {
        std::fs::copy(repo.join("deploy/local").join(f), local.join(f))?;
    }
    // Something else holds the NameServer's port (if another process already does, the
    // script must fail the same way).
    let _holder = std::net::TcpListener::bind("127.0.0.1:9876").ok();
    let started = Instant::now();
    let o = Command::new("bash")
        .arg(local.join("run.sh"))
        .env("RAFTMQ_BIN", raftmq_bin()?)
        .env("RAFTMQ_START_TIMEOUT", "60")
        .env_remove("RUST_LOG")
        .output()?;
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("NameServer") && err.contains("exited during start-up"),
        "{err}"
    );
    assert!(err.contains("Address already in use"), "{err}");
    assert!(
        !out.contains("NameServer 127.0.0.1:9876; brokers"),
        "banner printed: {out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    // The brokers it started were stopped: their ports are free again.
    for port in [10911, 20911, 30911] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "a broker still listens on {port}"
        );
    }
    Ok(())
}
