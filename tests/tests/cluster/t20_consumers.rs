//! Consumer groups: clustering splits and rebalances, broadcasting, orderly consumption
//! across a consumer crash and a leader failover.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftmq_client::{
    ConsumeFrom, ConsumeResult, Message, MessageModel, OrderlyResult, Producer, PushConsumer,
};

use crate::harness::{wait_consumed, wait_until, Cluster, Tuning};

const T: Duration = Duration::from_secs(60);

type Seen = Arc<Mutex<HashMap<String, usize>>>;

async fn consumer(
    c: &Cluster,
    group: &str,
    topic: &str,
    seen: Seen,
) -> anyhow::Result<PushConsumer> {
    let pc = PushConsumer::builder()
        .namesrv([c.namesrv.clone()])
        .group(group)
        .subscribe(topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .membership_timing(Duration::from_secs(1), Duration::from_millis(300))
        .persist_every(Duration::from_millis(500))
        .start(move |m| {
            let seen = seen.clone();
            async move {
                *seen
                    .lock()
                    .unwrap()
                    .entry(String::from_utf8_lossy(&m.body).into_owned())
                    .or_default() += 1;
                ConsumeResult::Success
            }
        })
        .await?;
    Ok(pc)
}

fn disjoint_cover(consumers: &[&PushConsumer], queues: usize) -> anyhow::Result<()> {
    let mut all = BTreeSet::new();
    for c in consumers {
        let mine: Vec<_> = c
            .assigned()
            .into_iter()
            .filter(|q| q.topic.as_str() == "Split")
            .collect();
        anyhow::ensure!(!mine.is_empty(), "a consumer has no queue");
        for q in mine {
            anyhow::ensure!(all.insert(q.clone()), "queue {q} assigned twice");
        }
    }
    anyhow::ensure!(
        all.len() == queues,
        "{} of {queues} queues assigned",
        all.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_clustering_group_splits_queues_and_rebalances_without_losing_messages(
) -> anyhow::Result<()> {
    let c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Split", 8, None).await?;
    let producer = Producer::builder()
        .namesrv([c.namesrv.clone()])
        .send_timeout(Duration::from_secs(20))
        .build()?;
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (p, acked, stop) = (producer.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let body = format!("m{i}");
                if p.send(Message::new("Split", body.clone())).await.is_ok() {
                    acked.lock().unwrap().insert(body);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let seen: Seen = Arc::default();
    let c1 = consumer(&c, "g-split", "Split", seen.clone()).await?;
    let c2 = consumer(&c, "g-split", "Split", seen.clone()).await?;
    let c3 = consumer(&c, "g-split", "Split", seen.clone()).await?;
    tracing::info!("--- three consumers split the eight queues");
    wait_until("a disjoint split over 3", T, || async {
        disjoint_cover(&[&c1, &c2, &c3], 8)
    })
    .await?;
    tracing::info!("--- a fourth joins");
    let c4 = consumer(&c, "g-split", "Split", seen.clone()).await?;
    wait_until("a disjoint split over 4", T, || async {
        disjoint_cover(&[&c1, &c2, &c3, &c4], 8)
    })
    .await?;
    tracing::info!("--- one leaves");
    c2.shutdown().await;
    wait_until("a disjoint split over 3 again", T, || async {
        disjoint_cover(&[&c1, &c3, &c4], 8)
    })
    .await?;
    stop.store(true, Ordering::SeqCst);
    sender.await?;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    anyhow::ensure!(acked.len() > 20, "only {} sends acknowledged", acked.len());
    wait_consumed(&acked, |b| seen.lock().unwrap().contains_key(b), T).await?;
    for pc in [c1, c3, c4] {
        pc.shutdown().await;
    }
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_broadcasting_delivers_everything_to_every_instance() -> anyhow::Result<()> {
    let c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Bcast", 4, None).await?;
    let mut instances = Vec::new();
    for i in 0..2 {
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let pc = PushConsumer::builder()
            .namesrv([c.namesrv.clone()])
            .group("g-bcast")
            .subscribe("Bcast", "*")
            .model(MessageModel::Broadcasting)
            .consume_from(ConsumeFrom::FirstOffset)
            .offset_dir(c.dir.path().join(format!("offsets-{i}")))
            .start(move |m| {
                let s = s.clone();
                async move {
                    *s.lock()
                        .unwrap()
                        .entry(String::from_utf8_lossy(&m.body).into_owned())
                        .or_default() += 1;
                    ConsumeResult::Success
                }
            })
            .await?;
        instances.push((pc, seen));
    }
    let producer = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    for i in 0..60 {
        producer
            .send(Message::new("Bcast", format!("b{i}")))
            .await?;
    }
    for (pc, seen) in &instances {
        wait_until("every message at every instance", T, || async {
            let n = seen.lock().unwrap().len();
            anyhow::ensure!(n == 60, "{n} of 60");
            Ok(())
        })
        .await?;
        assert_eq!(
            pc.assigned().len(),
            4,
            "a broadcasting instance consumes every queue"
        );
    }
    for (pc, _) in instances {
        pc.shutdown().await;
    }
    producer.shutdown().await;
    Ok(())
}

/// Per key, the sequence numbers in delivery order.
type Order = Arc<Mutex<BTreeMap<String, Vec<u32>>>>;

async fn orderly(c: &Cluster, order: Order) -> anyhow::Result<PushConsumer> {
    Ok(PushConsumer::builder()
        .namesrv([c.namesrv.clone()])
        .group("g-orderly")
        .subscribe("Ordered", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .membership_timing(Duration::from_secs(1), Duration::from_millis(300))
        .persist_every(Duration::from_millis(300))
        .start_orderly(move |m| {
            let order = order.clone();
            async move {
                let key = m.keys.first().cloned().unwrap_or_default();
                let seq: u32 = String::from_utf8_lossy(&m.body).parse().unwrap_or(u32::MAX);
                order.lock().unwrap().entry(key).or_default().push(seq);
                OrderlyResult::Success
            }
        })
        .await?)
}

/// No message of a key was delivered before every earlier message of that key had been.
fn check_order(order: &BTreeMap<String, Vec<u32>>, sent_per_key: u32) -> anyhow::Result<()> {
    for (key, seqs) in order {
        let mut next = 0;
        for s in seqs {
            anyhow::ensure!(
                *s <= next,
                "key {key}: {s} delivered before {next}; deliveries {seqs:?}"
            );
            if *s == next {
                next += 1;
            }
        }
        anyhow::ensure!(
            next == sent_per_key,
            "key {key}: only {next} of {sent_per_key} delivered"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_orderly_keeps_per_key_order_across_consumer_crash_and_leader_failover(
) -> anyhow::Result<()> {
    let tuning = Tuning {
        fast_expiry: true,
        ..Tuning::default()
    };
    let mut c = Cluster::start(&[("broker-a", 3)], tuning).await?;
    c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Ordered", 4, None).await?;
    let producer = Producer::builder()
        .namesrv([c.namesrv.clone()])
        .send_timeout(Duration::from_secs(30))
        .build()?;
    let order: Order = Arc::default();
    let a = orderly(&c, order.clone()).await?;
    let b = orderly(&c, order.clone()).await?;
    const KEYS: u32 = 8;
    const PER_KEY: u32 = 60;
    let send = |from: u32, to: u32| {
        let p = producer.clone();
        async move {
            for seq in from..to {
                for k in 0..KEYS {
                    let key = format!("k{k}");
                    p.send_orderly(
                        Message::new("Ordered", seq.to_string()).with_key(key.clone()),
                        &key,
                    )
                    .await?;
                }
            }
            anyhow::Ok(())
        }
    };
    send(0, 20).await?;
    tracing::info!("--- consumer A crashes");
    a.abort();
    send(20, 40).await?;
    tracing::info!("--- the broker leader is killed");
    let leader = c.wait_leader("broker-a", T).await?;
    c.kill9("broker-a", leader);
    send(40, PER_KEY).await?;
    c.restart("broker-a", leader)?;
    wait_until(
        "every key fully delivered in order",
        Duration::from_secs(120),
        || async { check_order(&order.lock().unwrap(), PER_KEY) },
    )
    .await?;
    b.shutdown().await;
    producer.shutdown().await;
    Ok(())
}
