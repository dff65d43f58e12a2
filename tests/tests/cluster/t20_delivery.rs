//! Delivery features: retries with back-off into the DLQ, delayed messages across a
//! leader kill, and producers and committed offsets across a leader kill.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raftmq_client::consumer::LitePullConsumer;
use raftmq_client::{ConsumeFrom, ConsumeResult, Message, MessageQueue, Producer, PushConsumer};
use raftmq_proto::{FoundMessage, QueueId, SendResult, TopicName};

use crate::harness::{wait_until, Cluster, Tuning};

const T: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Short delay levels so back-off is observable in seconds: level n = n x 200 ms.
fn short_levels() -> String {
    (1..=18)
        .map(|n| format!("{}ms", n * 200))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_failing_listener_backs_off_then_message_lands_in_dlq() -> anyhow::Result<()> {
    let tuning = Tuning {
        delay_levels: Some(short_levels()),
        ..Tuning::default()
    };
    let c = Cluster::start(&[("broker-a", 3)], tuning).await?;
    c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Flaky", 2, None).await?;
    let attempts: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let a = attempts.clone();
    let consumer = PushConsumer::builder()
        .namesrv([c.namesrv.clone()])
        .group("g-flaky")
        .subscribe("Flaky", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .max_reconsume_times(3)
        .start(move |m| {
            let a = a.clone();
            async move {
                assert_eq!(
                    m.topic.as_str(),
                    "Flaky",
                    "retries are presented with their original topic"
                );
                a.lock().unwrap().push((m.reconsume_times, Instant::now()));
                ConsumeResult::ReconsumeLater
            }
        })
        .await?;
    let producer = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    let sent = wait_until("the send", T, || async {
        Ok(producer
            .send(Message::new("Flaky", "poison").with_key("poison-key"))
            .await?)
    })
    .await?;
    wait_until("four attempts", T, || async {
        let n = attempts.lock().unwrap().len();
        anyhow::ensure!(n >= 4, "{n} attempts so far");
        Ok(())
    })
    .await?;
    let attempts = attempts.lock().unwrap().clone();
    let tries: Vec<u32> = attempts.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        &tries[..4],
        &[0, 1, 2, 3],
        "reconsume_times must grow by one per attempt"
    );
    let gaps: Vec<Duration> = attempts
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .take(3)
        .collect();
    tracing::info!(?gaps, "--- back-off between attempts");
    // Levels 3, 4, 5 are 600, 800, 1000 ms with the short levels.
    for (i, g) in gaps.iter().enumerate() {
        let level_ms = (3 + i as u64) * 200;
        assert!(
            *g >= Duration::from_millis(level_ms - 50),
            "attempt {} came after {g:?}, before its {level_ms} ms back-off",
            i + 1
        );
    }
    assert!(gaps[2] > gaps[0], "the back-off must grow: {gaps:?}");
    tracing::info!("--- after the maximum the message is in %DLQ%g-flaky");
    let admin = c.admin()?;
    let dlq = wait_until("the dead-letter message", T, || async {
        let found = admin.query_by_key("%DLQ%g-flaky", "poison-key", 10).await?;
        anyhow::ensure!(!found.is_empty(), "not in the DLQ yet");
        Ok(found)
    })
    .await?;
    assert_eq!(&dlq[0].body[..], b"poison");
    assert_eq!(dlq[0].property("ORIGIN_MSG_ID"), Some(sent.msg_id.as_str()));
    assert_eq!(dlq[0].reconsume_times, 4);
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_delayed_messages_arrive_on_time_across_a_leader_kill() -> anyhow::Result<()> {
    let tuning = Tuning {
        delay_levels: Some(short_levels()),
        ..Tuning::default()
    };
    let mut c = Cluster::start(&[("broker-a", 3)], tuning).await?;
    c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Later", 2, None).await?;
    let arrivals: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let a = arrivals.clone();
    let consumer = PushConsumer::builder()
        .namesrv([c.namesrv.clone()])
        .group("g-later")
        .subscribe("Later", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start(move |m| {
            let a = a.clone();
            async move {
                a.lock()
                    .unwrap()
                    .entry(String::from_utf8_lossy(&m.body).into_owned())
                    .or_insert_with(now_ms);
                ConsumeResult::Success
            }
        })
        .await?;
    let producer = Producer::builder()
        .namesrv([c.namesrv.clone()])
        .send_timeout(Duration::from_secs(20))
        .build()?;
    wait_until("the first send", T, || async {
        Ok(producer.send(Message::new("Later", "warm-up")).await?)
    })
    .await?;
    // The consumer holds its queues before the clock starts: on a loaded machine its first
    // rebalance can come seconds late, which is not what this test measures.
    wait_until("the warm-up message consumed", T, || async {
        anyhow::ensure!(arrivals.lock().unwrap().contains_key("warm-up"), "not yet");
        Ok(())
    })
    .await?;
    // Deliver-at times 2.5 to 4.5 s ahead, and delay levels 10..18 (2 to 3.6 s).
    let mut due: BTreeMap<String, u64> = BTreeMap::new();
    let base = now_ms();
    let mut sent: Vec<SendResult> = Vec::new();
    for i in 0..5u64 {
        let at = base + 2_500 + i * 500;
        let r = producer
            .send(Message::new("Later", format!("at{i}")).with_deliver_at(at))
            .await?;
        assert_eq!(r.deliver_at_ms, at);
        assert_eq!(r.queue_offset, None, "a waiting message has no offset yet");
        due.insert(format!("at{i}"), at);
        sent.push(r);
    }
    // The id its sender got finds the waiting message, and says when it is due.
    let admin = c.admin()?;
    let last = sent.last().unwrap().clone();
    match admin.get_message(&last.msg_id).await? {
        FoundMessage::Scheduled { message, .. } => {
            assert_eq!(message.deliver_at_ms, last.deliver_at_ms);
            assert_eq!(&message.body[..], b"at4");
        }
        other => anyhow::bail!("expected a scheduled message, got {other:?}"),
    }
    for level in 10..=18u8 {
        let r = producer
            .send(Message::new("Later", format!("level{level}")).with_delay_level(level))
            .await?;
        due.insert(format!("level{level}"), r.deliver_at_ms);
    }
    tracing::info!("--- killing the leader while the messages wait");
    let leader = c.wait_leader("broker-a", T).await?;
    c.kill9("broker-a", leader);
    wait_until("every delayed message", T, || async {
        let a = arrivals.lock().unwrap();
        let n = due.keys().filter(|k| a.contains_key(*k)).count();
        anyhow::ensure!(n == due.len(), "{n} of {} arrived", due.len());
        Ok(())
    })
    .await?;
    // After delivery, both ids the sender got find the delivered copy.
    for r in &sent {
        let uniq = r
            .unique_key
            .clone()
            .expect("the producer sets a client message id");
        let by_uniq = match admin.get_message(&uniq).await? {
            FoundMessage::Stored(m) => m,
            other => anyhow::bail!("{uniq}: expected the delivered message, got {other:?}"),
        };
        let by_id = match admin.get_message(&r.msg_id).await? {
            FoundMessage::Stored(m) => m,
            other => anyhow::bail!(
                "{}: expected the delivered message, got {other:?}",
                r.msg_id
            ),
        };
        assert_eq!(by_id, by_uniq);
        assert_eq!(by_id.property("UNIQ_KEY"), Some(uniq.as_str()));
        assert_eq!(by_id.topic.as_str(), "Later");
    }
    let arrivals = arrivals.lock().unwrap().clone();
    for (body, at) in &due {
        let got = arrivals[body];
        tracing::info!(%body, late_ms = got as i64 - *at as i64, "arrival");
        anyhow::ensure!(got >= *at, "{body} arrived {} ms early", at - got);
        anyhow::ensure!(got <= at + 1_000, "{body} arrived {} ms late", got - at);
    }
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_producer_acks_across_leader_kill_and_offsets_never_rewind() -> anyhow::Result<()> {
    let mut c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Steady", 1, None).await?;
    let producer = Producer::builder()
        .namesrv([c.namesrv.clone()])
        .send_timeout(Duration::from_secs(20))
        .build()?;
    for i in 0..100 {
        wait_until("a send", T, || async {
            Ok(producer
                .send(Message::new("Steady", format!("s{i}")))
                .await?)
        })
        .await?;
    }
    let mut consumer = LitePullConsumer::builder()
        .namesrv([c.namesrv.clone()])
        .group("g-steady")
        .consume_from(ConsumeFrom::FirstOffset)
        .auto_commit(None)
        .build()?;
    let mq = MessageQueue {
        topic: TopicName::from("Steady"),
        broker_group: "broker-a".into(),
        queue_id: QueueId(0),
    };
    consumer.assign(vec![mq.clone()]).await?;
    let mut got = 0;
    while got < 60 {
        got += consumer.poll(Duration::from_secs(5)).await?.len();
    }
    consumer.commit().await?;
    let admin = c.admin()?;
    let before = admin
        .consumer_offset("g-steady", "Steady", "broker-a", 0)
        .await?
        .map(|o| o.0)
        .unwrap_or(0);
    assert!(before >= 60);
    tracing::info!("--- killing the leader while the producer keeps sending");
    let leader = c.wait_leader("broker-a", T).await?;
    c.kill9("broker-a", leader);
    // A plain producer hides the failover: every send is acknowledged.
    for i in 100..200 {
        producer
            .send(Message::new("Steady", format!("s{i}")))
            .await?;
    }
    let after = wait_until("the offset on the new leader", T, || async {
        admin
            .consumer_offset("g-steady", "Steady", "broker-a", 0)
            .await?
            .ok_or_else(|| anyhow::anyhow!("none"))
    })
    .await?;
    assert_eq!(
        after.0, before,
        "the committed offset rewound after failover"
    );
    // The consumer continues exactly where it stopped.
    let next = consumer.poll(Duration::from_secs(10)).await?;
    assert!(!next.is_empty());
    assert_eq!(
        next[0].queue_offset.0, before,
        "the consumer did not resume where it committed"
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}
