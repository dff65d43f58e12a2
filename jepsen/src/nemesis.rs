//! Faults, injected on a schedule: healthy for a while, faulty for a while, repeat; and
//! two operator procedures run the same way against live load: `rolling-restart` (every
//! node of every group in turn: drain, SIGTERM, start, wait until caught up) and
//! `grow-online` (the topic moves onto a second broker group, then off the first).

use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::history::{Event, Kind, Recorder, F};

/// Every fault and procedure the harness knows.
pub const ALL: [&str; 16] = [
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
    "rolling-restart",
    "grow-online",
];

/// Operator procedures: they replace the fault schedule and are never picked by `mixed`.
fn is_procedure(name: &str) -> bool {
    matches!(name, "rolling-restart" | "grow-online")
}

/// Procedures that need two broker groups and two NameServers (the multi-host layout).
pub fn needs_two_groups(name: &str) -> bool {
    name == "grow-online"
}

/// The `nemesis` text of grow-online's two steps (the checker's windows are named so).
pub const GROW: &str = "grow-online: the topic onto every group";
/// See [`GROW`].
pub const SHRINK: &str = "grow-online: the topic off the first group";

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
    match name.as_str() {
        "none" => {
            stop.cancelled().await;
            return Ok(());
        }
        "rolling-restart" => return rolling_restart(cluster, healthy, recorder, stop).await,
        "grow-online" => return grow_online(cluster, healthy, faulty, recorder, stop).await,
        _ => {}
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
                .filter(|f| *f != "mixed" && !is_procedure(f) && (n >= 5 || !needs_five(f)))
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

fn record(recorder: &Recorder, kind: Kind, what: String) {
    let mut e = Event::new(recorder.now(), "nemesis", kind, F::Nemesis);
    e.nemesis = Some(what);
    recorder.push(e);
}

/// Waits `d`; `false` when `stop` fired first.
async fn pause(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Every node of every group in turn, as an upgrade does it: drain, SIGTERM, start, wait
/// until caught up; then `healthy` and again. A drain that fails, or a node SIGTERM does
/// not stop within 30 s, fails the run. A stop mid-roll finishes the node at hand.
async fn rolling_restart(
    cluster: Arc<Mutex<Cluster>>,
    healthy: Duration,
    recorder: Recorder,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        if !pause(healthy, &stop).await {
            return Ok(());
        }
        let n = cluster.lock().await.nodes.len();
        for i in 0..n {
            let mut c = cluster.lock().await;
            let what = format!(
                "rolling-restart {}/{}",
                c.nodes[i].group, c.nodes[i].node_id
            );
            record(&recorder, Kind::Invoke, what.clone());
            let started = std::time::Instant::now();
            let r = c
                .drain(i)
                .await
                .map_err(|e| anyhow::anyhow!("{what}: the drain failed: {e:#}"))?;
            let drained_ms = started.elapsed().as_millis();
            anyhow::ensure!(
                c.stop(i).await,
                "{what}: the node did not stop within 30 s of SIGTERM; see its log"
            );
            let stopped_ms = started.elapsed().as_millis();
            c.restart(i)?;
            c.wait_caught_up(i, Duration::from_secs(90)).await?;
            drop(c);
            let done = format!(
                "{what}: {}, {} in-flight finished, drained in {drained_ms} ms, stopped at {stopped_ms} ms, caught up at {} ms",
                if r.was_leader {
                    format!(
                        "led, leadership to node {}",
                        r.leader.map_or("?".to_owned(), |l| l.to_string())
                    )
                } else {
                    "follower".to_owned()
                },
                r.in_flight_at_start - r.in_flight_left,
                started.elapsed().as_millis()
            );
            tracing::info!(step = %done, "rolling restart");
            record(&recorder, Kind::Ok, done);
            if stop.is_cancelled() {
                return Ok(());
            }
        }
    }
}

/// After `healthy`, the topic (created on the first group only) is put on every group;
/// `max(faulty, 40 s)` later (time for every producer's route refresh) it is shrunk off
/// the first group: writes off, consumers finish, reads off.
async fn grow_online(
    cluster: Arc<Mutex<Cluster>>,
    healthy: Duration,
    faulty: Duration,
    recorder: Recorder,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (namesrvs, mut groups) = {
        let c = cluster.lock().await;
        let g: Vec<String> = c.nodes.iter().map(|n| n.group.clone()).collect();
        (c.namesrvs.clone(), g)
    };
    groups.dedup();
    anyhow::ensure!(
        groups.len() >= 2,
        "grow-online needs two broker groups (--groups 2)"
    );
    let admin = raftmq_client::Admin::new(namesrvs)?;
    if !pause(healthy, &stop).await {
        return Ok(());
    }
    record(&recorder, Kind::Invoke, GROW.to_owned());
    let changes = admin
        .update_topic_groups(
            crate::workload::TOPIC,
            &groups,
            None,
            Duration::ZERO,
            |_| {},
        )
        .await?;
    tracing::info!(?changes, "grew the topic onto every group");
    record(&recorder, Kind::Ok, GROW.to_owned());
    if !pause(faulty.max(Duration::from_secs(40)), &stop).await {
        return Ok(());
    }
    record(&recorder, Kind::Invoke, SHRINK.to_owned());
    let changes = admin
        .update_topic_groups(
            crate::workload::TOPIC,
            &groups[1..],
            None,
            Duration::from_secs(120),
            |p| tracing::info!(group = %p.group, lag = p.lag, "shrink: waiting for consumers"),
        )
        .await?;
    anyhow::ensure!(
        changes.get(&groups[0]) == Some(&raftmq_client::topic_groups::GroupChange::Removed),
        "the shrink off {} did not finish: {changes:?}",
        groups[0]
    );
    tracing::info!(?changes, "shrank the topic off the first group");
    record(&recorder, Kind::Ok, SHRINK.to_owned());
    stop.cancelled().await;
    Ok(())
}
