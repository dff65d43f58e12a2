//! The real Apache RocketMQ C++ client (PyPI `rocketmq==0.4.4`) driven through
//! `tests/remoting/rmq.py`, whose stdout is one JSON object per line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::harness::raftmq_bin;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The driver: the venv's python (scripts/remoting-venv.sh makes it; `make test` runs it)
/// and a HOME per run under a temp dir (the C++ client writes its logs there).
pub struct Rmq {
    python: PathBuf,
    script: PathBuf,
    home: tempfile::TempDir,
    namesrv: String,
}

impl Rmq {
    /// A driver for clients pointed at `namesrv`.
    pub fn new(namesrv: &str) -> anyhow::Result<Self> {
        let venv = std::env::var_os("RAFTMQ_VENV")
            .map(PathBuf::from)
            .map(|v| {
                if v.is_absolute() {
                    v
                } else {
                    repo_root().join(v)
                }
            })
            .unwrap_or_else(|| repo_root().join("target/venv-rocketmq"));
        let python = venv.join("bin/python");
        anyhow::ensure!(
            python.exists(),
            "{} is missing: run scripts/remoting-venv.sh (make test runs it) to install the RocketMQ C++ client",
            python.display()
        );
        Ok(Self {
            python,
            script: repo_root().join("tests/remoting/rmq.py"),
            home: tempfile::tempdir()?,
            namesrv: namesrv.to_owned(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.python);
        c.arg(&self.script)
            .args(args)
            .args(["--namesrv", &self.namesrv])
            .env("RMQ_HOME", self.home.path())
            .stdin(Stdio::null());
        c
    }

    /// Runs the driver to its end; its JSON lines.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Vec<Value>> {
        let out = self.command(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "rmq.py {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect()
    }

    /// `produce` to its end; (records, summary). Fails if any send failed.
    pub fn produce(&self, topic: &str, args: &[&str]) -> anyhow::Result<(Vec<Value>, Value)> {
        let mut all = vec!["produce", "--topic", topic];
        all.extend_from_slice(args);
        let lines = self.run(&all)?;
        let (records, summary) = split(lines)?;
        if let Some(e) = records.iter().find(|r| r.get("error").is_some()) {
            bail!("a C++ send failed: {e}");
        }
        Ok((records, summary))
    }

    /// Starts a consumer and waits until it has its queues ("started").
    pub fn consumer(&self, topic: &str, group: &str, args: &[&str]) -> anyhow::Result<Consumer> {
        let mut all = vec!["consume", "--topic", topic, "--group", group];
        all.extend_from_slice(args);
        let mut child = self
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&l) {
                        lines.lock().unwrap().push(v);
                    }
                }
            })
        };
        let c = Consumer {
            child,
            lines,
            reader: Some(reader),
        };
        c.wait_for("the consumer to start", Duration::from_secs(60), |ls| {
            ls.iter()
                .any(|l| l.get("event").and_then(Value::as_str) == Some("started"))
        })?;
        Ok(c)
    }
}

/// Records and the summary line of a finished run.
fn split(lines: Vec<Value>) -> anyhow::Result<(Vec<Value>, Value)> {
    let mut records = Vec::new();
    let mut summary = None;
    for l in lines {
        if l.get("summary").is_some() {
            summary = Some(l);
        } else if l.get("event").is_none() {
            records.push(l);
        }
    }
    Ok((records, summary.context("no summary line")?))
}

/// A running C++ push consumer; killed on drop.
pub struct Consumer {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Consumer {
    /// Deliveries so far.
    pub fn records(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.get("summary").is_none() && l.get("event").is_none())
            .cloned()
            .collect()
    }

    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.lines.lock().unwrap()) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `n` distinct bodies were acknowledged.
    pub fn wait_acked(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("{n} acknowledged messages"), timeout, |ls| {
            acked_bodies(ls).len() >= n
        })
    }

    /// Asks it to stop (SIGTERM: it shuts down cleanly, committing offsets) and waits;
    /// (records, summary).
    pub fn stop(self) -> anyhow::Result<(Vec<Value>, Value)> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.finish()
    }

    /// Waits for it to end on its own (`--count`, `--idle-exit-s`).
    pub fn finish(mut self) -> anyhow::Result<(Vec<Value>, Value)> {
        let status = self.child.wait()?;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        anyhow::ensure!(status.success(), "the C++ consumer exited with {status}");
        split(self.lines.lock().unwrap().clone())
    }
}

/// The bodies of acknowledged deliveries, sorted, without duplicates.
pub fn acked_bodies(lines: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = lines
        .iter()
        .filter(|l| l.get("result").and_then(Value::as_str) == Some("CONSUME_SUCCESS"))
        .filter_map(|l| l.get("body").and_then(Value::as_str).map(str::to_owned))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Runs the native `raftmq` CLI; its stdout (fails on a non-zero exit).
pub fn raftmq(namesrv: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(raftmq_bin()?)
        .args(["-n", namesrv])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "raftmq {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the rocketmq-client-rust transactional producer driver (`tests/remoting-rust`,
/// built by scripts/remoting-rust.sh, which `make test` runs) with `args` and returns its
/// JSON lines. It must finish within `timeout`.
pub fn rr_tx(args: &[&str], timeout: Duration) -> anyhow::Result<Vec<Value>> {
    let bin = repo_root().join("target/remoting-rust/debug/rr-tx");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run scripts/remoting-rust.sh (make test runs it) to build the rocketmq-client-rust driver",
        bin.display()
    );
    let home = tempfile::tempdir()?;
    let mut child = Command::new(&bin)
        .args(args)
        .env("HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let deadline = Instant::now() + timeout;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            bail!("rr-tx {args:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "rr-tx {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("rr-tx line {l:?}")))
        .collect()
}
