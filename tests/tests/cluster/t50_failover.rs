//! Failures: leader killed mid-publish, leader partitioned away, offsets across failover,
//! and the failover time over repeated kills.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftmq_client::{Message, Producer};
use raftmq_proto::broker::{CommitOffsetsRequest, SendMessageRequest};
use raftmq_proto::{ConsumerGroup, Offset, QueueId, TopicName};

use crate::harness::{wait_until, Cluster, Tuning};

const T: Duration = Duration::from_secs(60);

/// `body -> (queue, offset)` of every acknowledged send, plus when acks happened.
#[derive(Default)]
struct Acks {
    by_body: BTreeMap<String, (u32, u64)>,
    times: Vec<Instant>,
}

/// Runs `n` sequential senders until `stop`; records every acknowledgement.
fn spawn_senders(
    producer: &Producer,
    topic: &str,
    n: usize,
    acks: Arc<Mutex<Acks>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..n)
        .map(|w| {
            let (p, topic, acks, stop) = (
                producer.clone(),
                topic.to_owned(),
                acks.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut failures = 0;
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let body = format!("w{w}-{i}");
                    i += 1;
                    match p.send(Message::new(topic.as_str(), body.clone())).await {
                        Ok(r) => {
                            let mut a = acks.lock().unwrap();
                            a.by_body.insert(
                                body,
                                (r.queue_id.0, r.queue_offset.expect("not delayed").0),
                            );
                            a.times.push(Instant::now());
                        }
                        Err(e) => {
                            failures += 1;
                            tracing::debug!(error = %e, "send failed");
                        }
                    }
                }
                failures
            })
        })
        .collect()
}

async fn acked(acks: &Arc<Mutex<Acks>>, at_least: usize) -> anyhow::Result<()> {
    wait_until(&format!("{at_least} acknowledgements"), T, || async {
        let n = acks.lock().unwrap().by_body.len();
        anyhow::ensure!(n >= at_least, "{n} so far");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_leader_killed_mid_publish_then_followers_elect() -> anyhow::Result<()> {
    let mut c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Kill", 4, None).await?;
    let producer = Producer::builder()
        .namesrv([c.namesrv.clone()])
        .send_timeout(Duration::from_secs(20))
        .build()?;
    let acks = Arc::new(Mutex::new(Acks::default()));
    let stop = Arc::new(AtomicBool::new(false));
    tracing::info!("--- producing");
    let senders = spawn_senders(&producer, "Kill", 4, acks.clone(), stop.clone());
    acked(&acks, 200).await?;
    let killed_at = Instant::now();
    c.kill9("broker-a", leader);
    let before = acks.lock().unwrap().by_body.len();
    acked(&acks, before + 200).await?;
    let first_after = acks
        .lock()
        .unwrap()
        .times
        .iter()
        .copied()
        .find(|t| *t > killed_at);
    tracing::info!(failover_ms = ?first_after.map(|t| (t - killed_at).as_millis()), "--- new leader acknowledged writes");
    c.restart("broker-a", leader)?;
    acked(&acks, before + 400).await?;
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await?;
    }
    producer.shutdown().await;

    let new_leader = c.wait_leader("broker-a", T).await?;
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    tracing::info!(
        acked = acks.by_body.len(),
        "--- checking every acknowledged message on the leader"
    );
    let leader_addr = c.node("broker-a", new_leader).client_addr.clone();
    let mut queues = Vec::new();
    for q in 0..4 {
        queues.push(c.read_queue(&leader_addr, "Kill", q).await?);
    }
    for (body, (q, off)) in &acks.by_body {
        let found = queues[*q as usize].get(*off as usize);
        anyhow::ensure!(
            found.is_some_and(|(_, b)| b == body.as_bytes()),
            "acknowledged {body} at queue {q} offset {off} is missing or different: {found:?}"
        );
    }
    tracing::info!("--- every replica holds identical, dense queues");
    for n in c
        .nodes
        .iter()
        .map(|n| n.client_addr.clone())
        .collect::<Vec<_>>()
    {
        for q in 0..4u32 {
            let want = queues[q as usize].clone();
            wait_until(&format!("{n} to match the leader on queue {q}"), T, || {
                let (c, n, want) = (&c, &n, &want);
                async move {
                    let got = c.read_queue(n, "Kill", q).await?;
                    anyhow::ensure!(&got == want, "{} vs {} messages", got.len(), want.len());
                    Ok(())
                }
            })
            .await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_partitioned_leader_cannot_ack_and_converges_after_heal() -> anyhow::Result<()> {
    let c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let old = c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Part", 1, None).await?;
    let core = c.core()?;
    let send = |addr: String, body: &str, timeout: Duration| {
        let req = SendMessageRequest {
            producer_group: "p".into(),
            topic: TopicName::from("Part"),
            queue_id: QueueId(0),
            messages: vec![Message::new("Part", body.to_owned())],
        };
        let core = &core;
        async move {
            core.call(&addr, timeout, |b, cx| async move { b.send(cx, req).await })
                .await
        }
    };
    let old_addr = c.node("broker-a", old).client_addr.clone();
    for i in 0..20 {
        send(
            old_addr.clone(),
            &format!("before{i}"),
            Duration::from_secs(10),
        )
        .await?;
    }
    c.isolate("broker-a", old);
    tracing::info!("--- the isolated leader must not acknowledge");
    let r = send(old_addr.clone(), "lost-cause", Duration::from_secs(3)).await;
    anyhow::ensure!(r.is_err(), "an isolated leader acknowledged a write: {r:?}");
    let others: Vec<_> = c
        .nodes
        .iter()
        .filter(|n| n.id != old)
        .map(|n| (n.id, n.client_addr.clone()))
        .collect();
    let new = wait_until("the majority to elect a new leader", T, || {
        let core = &core;
        let others = &others;
        async move {
            for (id, addr) in others {
                if let Ok(s) = core
                    .call(addr, Duration::from_secs(1), |b, cx| async move {
                        b.broker_group_status(cx).await
                    })
                    .await
                {
                    if s.leader == Some(s.node_id) {
                        return Ok((*id, addr.clone()));
                    }
                }
            }
            anyhow::bail!("no leader among the majority")
        }
    })
    .await?;
    for i in 0..20 {
        let body = format!("after{i}");
        wait_until("a write on the new leader", T, || async {
            Ok(send(new.1.clone(), &body, Duration::from_secs(3)).await?)
        })
        .await?;
    }
    c.heal();
    tracing::info!("--- after heal every node converges on the majority's log");
    let want = c.read_queue(&new.1, "Part", 0).await?;
    assert_eq!(want.len(), 40);
    assert!(
        want.iter().all(|(_, b)| b != "lost-cause"),
        "an unacknowledged write was committed"
    );
    for n in &c.nodes {
        wait_until(&format!("node {} to converge", n.id), T, || async {
            let got = c.read_queue(&n.client_addr, "Part", 0).await?;
            anyhow::ensure!(got == want, "{} vs {} messages", got.len(), want.len());
            Ok(())
        })
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_committed_offsets_survive_leader_failover() -> anyhow::Result<()> {
    let mut c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Off", 2, None).await?;
    let core = c.core()?;
    let addr = c.node("broker-a", leader).client_addr.clone();
    let req = CommitOffsetsRequest {
        group: ConsumerGroup::from("g1"),
        offsets: vec![
            (TopicName::from("Off"), QueueId(0), Offset(5)),
            (TopicName::from("Off"), QueueId(1), Offset(7)),
        ],
    };
    core.call(&addr, Duration::from_secs(10), |b, cx| async move {
        b.commit_offsets(cx, req).await
    })
    .await?;
    c.kill9("broker-a", leader);
    let new = c.wait_leader("broker-a", T).await?;
    assert_ne!(new, leader);
    let admin = c.admin()?;
    for (q, want) in [(0u32, 5u64), (1, 7)] {
        let got = wait_until("the offset on the new leader", T, || async {
            admin
                .consumer_offset("g1", "Off", "broker-a", q)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no offset"))
        })
        .await?;
        assert_eq!(got.0, want, "queue {q} rewound after failover");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_failover_time_over_five_kills() -> anyhow::Result<()> {
    let mut c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Fail", 4, None).await?;
    let producer = Producer::builder()
        .namesrv([c.namesrv.clone()])
        .send_timeout(Duration::from_secs(30))
        .build()?;
    wait_until("a first send", T, || async {
        Ok(producer.send(Message::new("Fail", "warm")).await?)
    })
    .await?;
    let mut times = Vec::new();
    for round in 0..5 {
        let leader = c.wait_leader("broker-a", T).await?;
        // Everyone must be caught up, so the kill leaves a healthy majority.
        wait_until("all nodes running and caught up", T, || async {
            let nodes = c.admin()?.cluster_nodes().await?;
            anyhow::ensure!(
                nodes
                    .iter()
                    .all(|n| n.role != "unreachable" && n.lag.unwrap_or(1) == 0),
                "{nodes:?}"
            );
            Ok(())
        })
        .await?;
        for i in 0..20 {
            producer
                .send(Message::new("Fail", format!("r{round}-pre{i}")))
                .await?;
        }
        let killed = Instant::now();
        c.kill9("broker-a", leader);
        loop {
            let started = Instant::now();
            match producer
                .send(Message::new("Fail", format!("r{round}-post")))
                .await
            {
                Ok(_) if started > killed => break,
                Ok(_) => continue,
                Err(e) => tracing::info!(error = %e, "send failed during failover"),
            }
        }
        let took = killed.elapsed();
        tracing::info!(round, ms = took.as_millis(), "--- failover");
        times.push(took);
        c.restart("broker-a", leader)?;
    }
    producer.shutdown().await;
    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!(
        "failover (kill -9 of the leader to the first acknowledged write): median {} ms, max {} ms over {} kills: {:?}",
        median.as_millis(),
        max.as_millis(),
        times.len(),
        times.iter().map(|t| t.as_millis()).collect::<Vec<_>>()
    );
    anyhow::ensure!(max < Duration::from_secs(15), "a failover took {max:?}");
    Ok(())
}
