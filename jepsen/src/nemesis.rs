//! Faults, injected on a schedule: healthy for a while, faulty for a while, repeat.

use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::history::{Event, Kind, Recorder, F};

/// Every fault the harness knows.
pub const ALL: [&str; 14] = [
    "partition-random-node",
    "partition-leader",
    "partition-random-halves",
    "partition-majorities-ring",
    "bridge",
    "kill-random",
    "kill-leader",
    "kill-majority",
    "kill-all",
    "pause-random",
    "pause-leader",
    "packet-loss",
    "slow-network",
    "mixed",
];

/// Faults that need five nodes.
pub fn needs_five(name: &str) -> bool {
    matches!(name, "partition-majorities-ring" | "bridge")
}

/// Checks a name.
///
/// # Errors
/// An unknown name (the error lists the known ones).
pub fn parse(name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        ALL.contains(&name) || name == "none",
        "unknown nemesis {name:?}; choose one of: none, {}",
        ALL.join(", ")
    );
    Ok(name.to_owned())
}

fn random_index(n: usize) -> usize {
    rand::random::<u64>() as usize % n.max(1)
}

/// Starts fault `name`; returns what was done (for the history).
async fn inject(c: &mut Cluster, name: &str) -> anyhow::Result<String> {
    let n = c.nodes.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rng());
    let isolate = |c: &Cluster, i: usize| -> anyhow::Result<()> {
        for j in (0..n).filter(|j| *j != i) {
            c.cut(i, j)?;
        }
        Ok(())
    };
    Ok(match name {
        "partition-random-node" => {
            let i = order[0];
            isolate(c, i)?;
            format!("{name} n{}", i + 1)
        }
        "partition-leader" => {
            let i = c.leader().await.unwrap_or_else(|| random_index(n));
            isolate(c, i)?;
            format!("{name} n{}", i + 1)
        }
        "partition-random-halves" => {
            let (a, b) = order.split_at(n / 2);
            for x in a {
                for y in b {
                    c.cut(*x, *y)?;
                }
            }
            format!(
                "{name} {:?} | {:?}",
                a.iter().map(|i| i + 1).collect::<Vec<_>>(),
                b.iter().map(|i| i + 1).collect::<Vec<_>>()
            )
        }
        "partition-majorities-ring" => {
            // Each node keeps its two ring neighbours: every node sees a majority, no two
            // the same one.
            for (pos, &i) in order.iter().enumerate() {
                for (qos, &j) in order.iter().enumerate() {
                    let d = (pos + n - qos) % n;
                    if i < j && d != 1 && d != n - 1 {
                        c.cut(i, j)?;
                    }
                }
            }
            format!(
                "{name} ring {:?}",
                order.iter().map(|i| i + 1).collect::<Vec<_>>()
            )
        }
        "bridge" => {
            let (a, rest) = order.split_at(n / 2);
            let (bridge, b) = rest.split_at(1);
            for x in a {
                for y in b {
                    c.cut(*x, *y)?;
                }
            }
            format!(
                "{name} {:?} <- n{} -> {:?}",
                a.iter().map(|i| i + 1).collect::<Vec<_>>(),
                bridge[0] + 1,
                b.iter().map(|i| i + 1).collect::<Vec<_>>()
            )
        }
        "kill-random" => {
            c.kill9(order[0]);
            format!("{name} n{}", order[0] + 1)
        }
        "kill-leader" => {
            let i = c.leader().await.unwrap_or_else(|| random_index(n));
            c.kill9(i);
            format!("{name} n{}", i + 1)
        }
        "kill-majority" => {
            let k = n / 2 + 1;
            for &i in &order[..k] {
                c.kill9(i);
            }
            format!(
                "{name} {:?}",
                order[..k].iter().map(|i| i + 1).collect::<Vec<_>>()
            )
        }
        "kill-all" => {
            for i in 0..n {
                c.kill9(i);
            }
            name.to_owned()
        }
        "pause-random" => {
            c.pause(order[0]);
            format!("{name} n{}", order[0] + 1)
        }
        "pause-leader" => {
            let i = c.leader().await.unwrap_or_else(|| random_index(n));
            c.pause(i);
            format!("{name} n{}", i + 1)
        }
        "packet-loss" => {
            c.loss(0.2)?;
            format!("{name} 20%")
        }
        "slow-network" => {
            c.delay(50)?;
            format!("{name} +50 ms each way on Raft links")
        }
        other => anyhow::bail!("nemesis {other} cannot be injected directly"),
    })
}

/// Runs the schedule until `stop`, then heals.
pub async fn run(
    cluster: Arc<Mutex<Cluster>>,
    name: String,
    healthy: Duration,
    faulty: Duration,
    recorder: Recorder,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    if name == "none" {
        stop.cancelled().await;
        return Ok(());
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(healthy) => {}
        }
        let n = cluster.lock().await.nodes.len();
        let fault = if name == "mixed" {
            let choices: Vec<&str> = ALL
                .iter()
                .copied()
                .filter(|f| *f != "mixed" && (n >= 5 || !needs_five(f)))
                .collect();
            choices[random_index(choices.len())].to_owned()
        } else {
            name.clone()
        };
        let what = {
            let mut c = cluster.lock().await;
            inject(&mut c, &fault).await?
        };
        tracing::info!(nemesis = %what, "fault injected");
        let mut e = Event::new(recorder.now(), "nemesis", Kind::Invoke, F::Nemesis);
        e.nemesis = Some(what.clone());
        recorder.push(e);
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(faulty) => {}
        }
        cluster.lock().await.heal()?;
        tracing::info!(nemesis = %what, "healed");
        let mut e = Event::new(recorder.now(), "nemesis", Kind::Ok, F::Nemesis);
        e.nemesis = Some(what);
        recorder.push(e);
        if stop.is_cancelled() {
            return Ok(());
        }
    }
}
