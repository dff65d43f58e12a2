//! Operating a live cluster: draining a node before stopping it (the rolling-upgrade step),
//! and moving a topic onto a new broker group and off an old one, with producers and a
//! consumer group running throughout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftmq_client::consumer::ConsumeFrom;
use raftmq_client::{
    ClientConfig, ConsumeResult, LitePullConsumer, Message, Producer, PushConsumer,
};
use raftmq_proto::broker::PullMessageRequest;
use raftmq_proto::{ConsumerGroup, Offset, QueueId, TopicName, WireError};

use crate::harness::{http_get, wait_consumed, wait_until, Cluster, Tuning};
use crate::rmq::raftmq;

const T: Duration = Duration::from_secs(60);

/// Clients that look at routes every second, so a test sees a topic's new groups soon.
fn fast_routes(c: &Cluster) -> ClientConfig {
    ClientConfig {
        route_refresh: Duration::from_secs(1),
        ..c.client_config(None)
    }
}

/// Sequential senders and a consumer group, recording where every message went.
struct Load {
    stop: Arc<AtomicBool>,
    senders: Vec<tokio::task::JoinHandle<()>>,
    /// body -> broker group that acknowledged it.
    acked: Arc<Mutex<BTreeMap<String, String>>>,
    /// Every send that failed, with its error.
    errors: Arc<Mutex<Vec<String>>>,
    /// body -> broker groups it was delivered from (one per delivery).
    received: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    producer: Producer,
    consumer: PushConsumer,
}

impl Load {
    async fn start(c: &Cluster, topic: &str, senders: usize) -> anyhow::Result<Self> {
        let received: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
        let r = received.clone();
        let consumer = PushConsumer::builder()
            .with_config(fast_routes(c))
            .group("g-ops")
            .subscribe(topic, "*")
            .consume_from(ConsumeFrom::FirstOffset)
            .membership_timing(Duration::from_secs(1), Duration::from_millis(300))
            .persist_every(Duration::from_millis(300))
            .start(move |m| {
                let r = r.clone();
                async move {
                    r.lock()
                        .unwrap()
                        .entry(String::from_utf8_lossy(&m.body).into_owned())
                        .or_default()
                        .push(m.broker_group.to_string());
                    ConsumeResult::Success
                }
            })
            .await?;
        let producer = Producer::builder().with_config(fast_routes(c)).build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let senders = (0..senders)
            .map(|w| {
                let (p, t, stop, acked, errors) = (
                    producer.clone(),
                    topic.to_owned(),
                    stop.clone(),
                    acked.clone(),
                    errors.clone(),
                );
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let body = format!("w{w}-{i}");
                        match p.send(Message::new(t.as_str(), body.clone())).await {
                            Ok(r) => {
                                acked
                                    .lock()
                                    .unwrap()
                                    .insert(body, r.broker_group.to_string());
                            }
                            Err(e) => errors.lock().unwrap().push(format!("{body}: {e}")),
                        }
                        i += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Ok(Self {
            stop,
            senders,
            acked,
            errors,
            received,
            producer,
            consumer,
        })
    }

    fn acked_on(&self, group: &str) -> usize {
        self.acked
            .lock()
            .unwrap()
            .values()
            .filter(|g| *g == group)
            .count()
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn received_from(&self, group: &str) -> usize {
        self.received
            .lock()
            .unwrap()
            .values()
            .flatten()
            .filter(|g| *g == group)
            .count()
    }

    /// Stops sending, waits until every acknowledged message was consumed, and checks
    /// that no send failed and nothing unknown arrived.
    async fn finish(self) -> anyhow::Result<BTreeMap<String, String>> {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.senders {
            s.await?;
        }
        let acked = self.acked.lock().unwrap().clone();
        let received = self.received.clone();
        wait_consumed(
            acked.keys(),
            |b| received.lock().unwrap().contains_key(b),
            T,
        )
        .await?;
        let errors = self.errors.lock().unwrap().clone();
        assert!(
            errors.is_empty(),
            "{} sends failed: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        let unknown: Vec<String> = received
            .lock()
            .unwrap()
            .keys()
            .filter(|b| !acked.contains_key(*b))
            .cloned()
            .collect();
        // A send may be stored and still fail on the way back: it would be in `errors`.
        assert!(
            unknown.is_empty(),
            "delivered but never acknowledged: {unknown:?}"
        );
        self.consumer.shutdown().await;
        self.producer.shutdown().await;
        Ok(acked)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t52_drain_moves_leadership_refuses_pulls_and_producers_see_no_error() -> anyhow::Result<()>
{
    let mut c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Drained", 4, None).await?;
    let load = Load::start(&c, "Drained", 4).await?;
    wait_until("sends are acknowledged", T, || async {
        anyhow::ensure!(load.acked_count() >= 200, "{} acked", load.acked_count());
        Ok(())
    })
    .await?;

    tracing::info!("--- drain the leader, node {leader}, under load");
    let ns = c.namesrv.clone();
    let node = format!("broker-a/{leader}");
    let out =
        tokio::task::spawn_blocking(move || raftmq(&ns, &["--json", "cluster", "drain", &node]))
            .await??;
    let report: serde_json::Value = serde_json::from_str(out.trim())?;
    assert_eq!(report["was_leader"], true, "{report}");
    assert_eq!(report["draining"], true, "{report}");
    assert_eq!(report["in_flight_left"], 0, "{report}");
    let new_leader = report["leader"].as_u64().expect("a leader after the drain");
    assert_ne!(new_leader, leader, "{report}");
    assert_eq!(c.wait_leader("broker-a", T).await?, new_leader);

    tracing::info!(
        "--- the drained node takes no pulls, says it is not ready, and stands for no election"
    );
    let drained_addr = c.node("broker-a", leader).client_addr.clone();
    let drained_http = c.node("broker-a", leader).http_addr.clone();
    let core = Arc::new(c.core()?);
    let pull = |addr: String| {
        let core = core.clone();
        async move {
            core.call(&addr, Duration::from_secs(5), |b, cx| async move {
                b.pull(
                    cx,
                    PullMessageRequest {
                        consumer_group: ConsumerGroup::from("g-probe"),
                        topic: TopicName::from("Drained"),
                        queue_id: QueueId(0),
                        offset: Offset(0),
                        max_msgs: 1,
                        max_bytes: 1 << 20,
                        max_wait_ms: 0,
                        tags: vec![],
                    },
                )
                .await
            })
            .await
        }
    };
    match pull(drained_addr.clone()).await {
        Err(raftmq_client::Error::Wire(WireError::NotLeader { leader: l, .. })) => {
            assert_eq!(
                l.map(|l| l.0),
                Some(new_leader),
                "the refusal names the leader"
            )
        }
        other => panic!("a drained node served a pull: {other:?}"),
    }
    let (code, _, body) = http_get(&drained_http, "/readyz", "", None).await?;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("drained"), "{body}");
    // Another transfer lands on a node that is not the drained one.
    c.admin()?
        .transfer_leader(
            "broker-a",
            (1..=3).find(|n| *n != leader && *n != new_leader).unwrap(),
        )
        .await?;
    assert_ne!(c.wait_leader("broker-a", T).await?, leader);

    tracing::info!("--- stop it (SIGTERM) and start it again: back in service");
    let acked_before = load.acked_count();
    let status = c.stop("broker-a", leader)?;
    assert!(status.success(), "the drained node exited with {status}");
    c.restart("broker-a", leader)?;
    wait_until("the restarted node serves pulls again", T, || async {
        pull(drained_addr.clone()).await?;
        Ok(())
    })
    .await?;
    wait_until("sends go on", T, || async {
        anyhow::ensure!(
            load.acked_count() >= acked_before + 200,
            "{} acked",
            load.acked_count()
        );
        Ok(())
    })
    .await?;

    tracing::info!("--- drain --undo puts a drained node back without a restart");
    let now_leading = c.wait_leader("broker-a", T).await?;
    let follower = (1..=3).find(|n| *n != now_leading).unwrap();
    let ns = c.namesrv.clone();
    let out = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        raftmq(&ns, &["cluster", "drain", &format!("broker-a/{follower}")])?;
        raftmq(
            &ns,
            &[
                "cluster",
                "drain",
                "--undo",
                &format!("broker-a/{follower}"),
            ],
        )
    })
    .await??;
    assert!(out.contains("back in service"), "{out}");
    pull(c.node("broker-a", follower).client_addr.clone()).await?;

    let acked = load.finish().await?;
    assert!(acked.len() >= 400, "{} acked", acked.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t52_a_topic_grows_onto_a_new_group_and_shrinks_off_the_old_without_loss(
) -> anyhow::Result<()> {
    let c = Cluster::start(&[("broker-a", 1), ("broker-b", 1)], Tuning::default()).await?;
    c.wait_leader("broker-a", T).await?;
    c.wait_leader("broker-b", T).await?;
    let groups = c
        .admin()?
        .create_topic("Moving", 4, Some("broker-a"))
        .await?;
    assert_eq!(groups, ["broker-a"]);
    let load = Load::start(&c, "Moving", 3).await?;
    // A lite-pull consumer of its own group: it must take the new group's queues too,
    // though no member of its group comes or goes.
    let mut lite = LitePullConsumer::builder()
        .with_config(fast_routes(&c))
        .group("g-lite")
        .consume_from(ConsumeFrom::FirstOffset)
        // Commits nothing, so the shrink below does not wait for it.
        .auto_commit(None)
        .build()?;
    lite.subscribe("Moving", "*")?;
    lite.poll(Duration::from_millis(500)).await?;
    assert!(lite
        .assignment()
        .iter()
        .all(|q| q.broker_group.as_str() == "broker-a"));
    wait_until("sends are acknowledged on broker-a", T, || async {
        anyhow::ensure!(
            load.acked_on("broker-a") >= 100,
            "{}",
            load.acked_on("broker-a")
        );
        Ok(())
    })
    .await?;
    assert_eq!(load.acked_on("broker-b"), 0);

    tracing::info!("--- grow: the topic onto broker-b");
    let ns = c.namesrv.clone();
    let out = tokio::task::spawn_blocking(move || {
        raftmq(
            &ns,
            &["topic", "update", "Moving", "--groups", "broker-a,broker-b"],
        )
    })
    .await??;
    assert!(out.contains("broker-b: now serves Moving"), "{out}");
    assert!(out.contains("broker-a: already served Moving"), "{out}");
    wait_until(
        "producers spread onto broker-b and the consumer reads it",
        T,
        || async {
            anyhow::ensure!(
                load.acked_on("broker-b") >= 100 && load.received_from("broker-b") >= 100,
                "acked {} received {} on broker-b",
                load.acked_on("broker-b"),
                load.received_from("broker-b")
            );
            Ok(())
        },
    )
    .await?;

    let mut lite_from_b = 0;
    let deadline = std::time::Instant::now() + T;
    while lite_from_b == 0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the lite-pull consumer never read broker-b; its queues: {:?}",
            lite.assignment()
        );
        lite_from_b += lite
            .poll(Duration::from_millis(500))
            .await?
            .iter()
            .filter(|m| m.broker_group.as_str() == "broker-b")
            .count();
    }
    drop(lite);

    tracing::info!("--- shrink: the topic off broker-a (writes off, consumers finish, reads off)");
    let ns = c.namesrv.clone();
    let out = tokio::task::spawn_blocking(move || {
        raftmq(
            &ns,
            &[
                "--json", "topic", "update", "Moving", "--groups", "broker-b",
            ],
        )
    })
    .await??;
    let changes: BTreeMap<String, serde_json::Value> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["group"].as_str().unwrap().to_owned(), v["change"].clone())
        })
        .collect();
    assert_eq!(changes["broker-a"], "removed", "{out}");
    assert_eq!(changes["broker-b"], "kept", "{out}");
    let route = c.admin()?.topic_route("Moving").await?;
    let perms: BTreeMap<String, u8> = route
        .groups
        .iter()
        .map(|g| (g.broker_group.to_string(), g.perm.0))
        .collect();
    assert_eq!(perms.get("broker-a"), Some(&0), "{perms:?}");
    assert_eq!(perms.get("broker-b"), Some(&6), "{perms:?}");
    // From here on nothing may be stored on broker-a.
    let on_a = load.acked_on("broker-a");
    let total = load.acked_count();
    wait_until("sends go on, to broker-b only", T, || async {
        anyhow::ensure!(
            load.acked_count() >= total + 200,
            "{} acked",
            load.acked_count()
        );
        Ok(())
    })
    .await?;
    assert_eq!(
        load.acked_on("broker-a"),
        on_a,
        "a send was stored on broker-a after it left"
    );

    let acked = load.finish().await?;
    let by_group: BTreeSet<&String> = acked.values().collect();
    assert_eq!(by_group.len(), 2, "{by_group:?}");
    Ok(())
}
