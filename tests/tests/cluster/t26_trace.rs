//! Message trace end to end: `raftmq produce --trace` sends a message, a tracing push
//! consumer fails it once and then consumes it from the retry topic, and
//! `raftmq msg trace ID` prints the timeline: the send, the failed attempt, the retried one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftmq_client::consumer::{ConsumeFrom, ConsumeResult, PushConsumer};
use raftmq_client::trace::TRACE_TOPIC;

use crate::harness::{wait_until, Cluster, Tuning};
use crate::rmq::raftmq;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_message_retried_once_shows_its_send_and_both_attempts() -> anyhow::Result<()> {
    // Every delay level is 1 s, so the retry comes back within seconds.
    let c = Cluster::start(
        &[("broker-a", 1)],
        Tuning {
            delay_levels: Some(vec!["1s"; 18].join(" ")),
            ..Tuning::default()
        },
    )
    .await?;
    c.wait_leader("broker-a", T).await?;
    let admin = c.admin()?;
    admin.create_topic("Traced", 1, None).await?;
    admin.create_topic(TRACE_TOPIC, 1, None).await?;

    let attempts: Arc<Mutex<Vec<u32>>> = Arc::default();
    let seen = attempts.clone();
    let consumer = PushConsumer::builder()
        .namesrv([c.namesrv.clone()])
        .group("trace-g")
        .subscribe("Traced", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .membership_timing(Duration::from_secs(1), Duration::from_millis(300))
        .trace(TRACE_TOPIC)
        .start(move |m| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(m.reconsume_times);
                if m.reconsume_times == 0 {
                    ConsumeResult::ReconsumeLater
                } else {
                    ConsumeResult::Success
                }
            }
        })
        .await?;
    let sent = raftmq(
        &c.namesrv,
        &[
            "--json", "produce", "--topic", "Traced", "--body", "traced", "--count", "1", "--trace",
        ],
    )?;
    // The first line is the send's result (a summary follows).
    let sent: serde_json::Value = serde_json::from_str(sent.lines().next().unwrap_or(""))?;
    let id = sent["msg_id"].as_str().unwrap_or_default().to_owned();
    wait_until("the failed attempt and the retried one", T, || async {
        let a = attempts.lock().unwrap().clone();
        anyhow::ensure!(a == [0, 1], "attempts so far: {a:?}");
        Ok(())
    })
    .await?;
    // Shutting down writes the consumer's queued events.
    consumer.shutdown().await;

    let events = wait_until("the trace to hold all three events", T, || async {
        let out = raftmq(&c.namesrv, &["--json", "msg", "trace", &id])?;
        let events: Vec<serde_json::Value> = out
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        anyhow::ensure!(events.len() == 3, "{out}");
        Ok(events)
    })
    .await?;
    let field = |i: usize, k: &str| events[i][k].clone();
    assert_eq!(
        (field(0, "kind"), field(0, "status"), field(0, "msg_id")),
        ("send".into(), "ok".into(), id.clone().into()),
        "{events:?}"
    );
    assert_eq!(field(0, "group"), "raftmq-cli-producer");
    for (i, (status, redeliveries)) in [(1, ("reconsume_later", 0)), (2, ("success", 1))] {
        assert_eq!(field(i, "kind"), "consume", "{events:?}");
        assert_eq!(field(i, "status"), status, "{events:?}");
        assert_eq!(field(i, "reconsume_times"), redeliveries, "{events:?}");
        assert_eq!(field(i, "group"), "trace-g");
        assert_eq!(field(i, "topic"), "Traced");
    }
    // The retried copy is stored elsewhere (the retry topic) under its own id.
    assert_eq!(field(1, "msg_id"), id.as_str());
    assert_ne!(field(2, "msg_id"), id.as_str());
    let times: Vec<u64> = events
        .iter()
        .map(|e| e["time_ms"].as_u64().unwrap_or(0))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // The text form, by the client id too.
    let uniq = sent["unique_key"].as_str().unwrap_or_default();
    let text = raftmq(&c.namesrv, &["msg", "trace", uniq])?;
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains("send") && text.contains("reconsume_later"),
        "{text}"
    );
    // An untraced message has no trace, and says so.
    let plain = raftmq(
        &c.namesrv,
        &[
            "--json", "produce", "--topic", "Traced", "--body", "plain", "--count", "1",
        ],
    )?;
    let plain: serde_json::Value = serde_json::from_str(plain.lines().next().unwrap_or(""))?;
    let none = raftmq(
        &c.namesrv,
        &["msg", "trace", plain["msg_id"].as_str().unwrap_or_default()],
    )
    .expect_err("an untraced message has a trace");
    assert!(none.to_string().contains("no trace of"), "{none}");
    Ok(())
}
