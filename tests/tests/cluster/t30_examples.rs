//! The client crate's examples (`client/examples/`) run against `raftmq dev` and do what
//! their doc comments promise.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::harness::raftmq_bin;
use crate::t30_cli::start_dev;

/// An example binary, built next to `raftmq` by `cargo build --workspace --all-targets`.
fn example(name: &str) -> anyhow::Result<PathBuf> {
    let bin = raftmq_bin()?
        .parent()
        .context("raftmq has no directory")?
        .join("examples")
        .join(name);
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --all-targets` first",
        bin.display()
    );
    Ok(bin)
}

/// Runs an example to completion against `namesrv`; it must exit 0.
fn run(name: &str, namesrv: &str) -> anyhow::Result<Vec<String>> {
    let o: Output = Command::new(example(name)?)
        .env("RAFTMQ_NAMESRV", namesrv)
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "example {name} failed with {}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

#[test]
fn t30_client_examples_run_against_dev() -> anyhow::Result<()> {
    let ip = "127.0.99.2";
    let _dev = start_dev(ip)?;
    let ns = format!("{ip}:9876");

    // producer: ten tagged sync sends (one line each), then 100 pipelined ones.
    let lines = run("producer", &ns)?;
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("SEND_OK ")).count(),
        10,
        "{lines:?}"
    );

    // push_consumer: receives the ten TagA messages, then stops cleanly on ctrl-c.
    let mut child = Command::new(example("push_consumer")?)
        .env("RAFTMQ_NAMESRV", &ns)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut got = std::collections::BTreeSet::new();
    while got.len() < 10 {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| anyhow::anyhow!("push_consumer received only {got:?}"))?;
        assert!(line.contains(" TagA Hello raftmq "), "{line}");
        got.insert(line);
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    let status = child.wait()?;
    assert!(status.success(), "push_consumer exited with {status}");

    // lite_pull: polls from the first offset and commits.
    let lines = run("lite_pull", &ns)?;
    assert!(
        lines.iter().any(|l| l.contains("Hello raftmq")),
        "lite_pull printed {lines:?}"
    );

    // orderly_consumer: each order's steps arrive in the order they were sent.
    let lines = run("orderly_consumer", &ns)?;
    for order in 0..5 {
        let steps: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.split_once(&format!(": order-{order} ")).map(|(_, s)| s))
            .collect();
        assert_eq!(steps, ["created", "paid", "shipped"], "{lines:?}");
    }

    // delayed_message: both messages arrive, neither before it was due.
    let lines = run("delayed_message", &ns)?;
    let arrived = |body: &str| -> Option<u64> {
        let l = lines.iter().find(|l| l.starts_with(body))?;
        l.split_whitespace().rev().nth(3)?.parse().ok()
    };
    let five = arrived("in five seconds arrived").context(format!("{lines:?}"))?;
    let three = arrived("at +3 s arrived").context(format!("{lines:?}"))?;
    assert!((5_000..9_000).contains(&five), "{lines:?}");
    assert!((3_000..7_000).contains(&three), "{lines:?}");
    Ok(())
}
