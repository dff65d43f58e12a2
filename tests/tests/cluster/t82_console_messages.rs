//! The console's message tools against a real group and a real consumer: a time-range
//! search, its JSON-lines export, a group's connected consumers with their subscriptions,
//! and resending a message (a consumed one, and a dead letter) to one group; and the chaos
//! report viewer over a directory of runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftmq_client::consumer::{ConsumeFrom, ConsumeResult, PushConsumer};
use raftmq_client::{Message, Producer};
use raftmq_proto::clock::now_ms;

use crate::harness::{wait_until, Cluster, Tuning};
use crate::rmq::raftmq;
use crate::t80_console::{between, Console, ADMIN};

const T: Duration = Duration::from_secs(60);

/// Bodies the consumer took, with the redelivery count each arrived with.
type Seen = Arc<Mutex<Vec<(String, u32)>>>;

/// How many times `body` was delivered, and the highest redelivery count among them.
fn deliveries(seen: &Seen, body: &str) -> (usize, u32) {
    let seen = seen.lock().unwrap();
    let of: Vec<u32> = seen
        .iter()
        .filter(|(b, _)| b == body)
        .map(|(_, r)| *r)
        .collect();
    (of.len(), of.iter().copied().max().unwrap_or(0))
}

/// A JSON-lines export's bodies.
fn exported_bodies(jsonl: &str) -> anyhow::Result<Vec<String>> {
    jsonl
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            Ok(v["body"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_time_range_export_subscriptions_and_resend() -> anyhow::Result<()> {
    let c = Cluster::start(&[("broker-a", 1)], Tuning::default()).await?;
    c.wait_leader("broker-a", T).await?;
    // A chaos output directory: one valid run and one that lost two messages.
    let reports = c.dir.path().join("chaos");
    write_run(&reports.join("suite/kill-leader"), true, &[])?;
    write_run(&reports.join("suite/partition"), false, &[7, 9])?;
    let dir = reports.to_string_lossy().into_owned();
    let console = Console::start_with(&c, &["--reports", &dir])?;
    console.ready().await?;
    chaos_reports(&console).await?;
    c.admin()?.create_topic("RangeT", 2, None).await?;
    let p = Producer::builder().namesrv([c.namesrv.clone()]).build()?;

    // Three messages, a moment, two more: the range splits where the clock was between.
    let start = now_ms();
    for i in 0..3 {
        p.send(Message::new("RangeT", format!("early{i}")).with_tag("TagA"))
            .await?;
    }
    let mid = now_ms();
    wait_until("the clock to pass the split", T, || async {
        anyhow::ensure!(now_ms() > mid);
        Ok(())
    })
    .await?;
    for i in 0..2 {
        p.send(Message::new("RangeT", format!("late{i}")).with_tag("TagB"))
            .await?;
    }
    p.send(Message::new("RangeT", "poison").with_tag("TagB"))
        .await?;
    let early = console
        .page(&format!("/c/0/messages?topic=RangeT&from={start}&to={mid}"))
        .await?;
    assert_eq!(early.matches("class=\"msg-id\"").count(), 3, "{early}");
    assert!(
        early.contains("early2") && !early.contains("late0"),
        "{early}"
    );
    assert!(
        early.contains(&format!(
            "raftmq msg range --topic RangeT --from {start} --to {mid}"
        )),
        "{early}"
    );
    let late = console
        .page(&format!("/c/0/messages?topic=RangeT&from={}", mid + 1))
        .await?;
    assert_eq!(late.matches("class=\"msg-id\"").count(), 3, "{late}");
    assert!(!late.contains("early0"), "{late}");
    let bad = console
        .get("/c/0/messages?topic=RangeT&from=yesterday", ADMIN)
        .await?;
    assert_eq!(bad.code, 400, "{}", bad.body);
    let backwards = console
        .get(
            &format!("/c/0/messages?topic=RangeT&from={mid}&to={start}"),
            ADMIN,
        )
        .await?;
    assert_eq!(backwards.code, 400, "{}", backwards.body);

    // The export is what the page shows, one JSON object per line.
    let link = between(&early, "class=\"export\" href=\"", "\"")
        .ok_or_else(|| anyhow::anyhow!("no export link in {early}"))?
        .replace("&#38;", "&");
    let export = console.get(&link, ADMIN).await?;
    assert_eq!(export.code, 200, "{}", export.body);
    assert!(export
        .headers
        .get("content-type")
        .is_some_and(|t| t.starts_with("application/x-ndjson")));
    assert!(export
        .headers
        .get("content-disposition")
        .is_some_and(|d| d.contains("attachment")));
    let mut bodies = exported_bodies(&export.body)?;
    bodies.sort();
    assert_eq!(bodies, ["early0", "early1", "early2"]);
    let by_id = console.get("/c/0/messages.jsonl?id=abc", ADMIN).await?;
    assert_eq!(by_id.code, 400, "{}", by_id.body);
    // The command the page shows finds the same three.
    let (f, t) = (start.to_string(), mid.to_string());
    let cli = raftmq(
        &c.namesrv,
        &[
            "--json", "msg", "range", "--topic", "RangeT", "--from", &f, "--to", &t,
        ],
    )?;
    let mut bodies = exported_bodies(&cli)?;
    bodies.sort();
    assert_eq!(bodies, ["early0", "early1", "early2"], "{cli}");

    // A consumer that fails "poison" the first time, with no retries: it goes to the
    // dead-letter topic; everything else is consumed once.
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let consumer = PushConsumer::builder()
        .namesrv([c.namesrv.clone()])
        .group("web-sub")
        .subscribe("RangeT", "TagA || TagB")
        .consume_from(ConsumeFrom::FirstOffset)
        .max_reconsume_times(0)
        .membership_timing(Duration::from_secs(1), Duration::from_millis(300))
        .persist_every(Duration::from_millis(500))
        .start(move |m| {
            let record = record.clone();
            async move {
                let body = String::from_utf8_lossy(&m.body).into_owned();
                let fail = body == "poison" && m.reconsume_times == 0;
                record.lock().unwrap().push((body, m.reconsume_times));
                if fail {
                    ConsumeResult::ReconsumeLater
                } else {
                    ConsumeResult::Success
                }
            }
        })
        .await?;

    // The group page lists the consumer with its address, language and subscription.
    let group = wait_until("the group page to show the consumer", T, || async {
        let g = console.page("/c/0/groups/web-sub").await?;
        anyhow::ensure!(g.contains(consumer.client_id()), "{g}");
        Ok(g)
    })
    .await?;
    assert!(
        group.contains("<span class=\"subscription\">RangeT: TagA || TagB</span>"),
        "{group}"
    );
    assert!(
        group.contains("127.0.0.1:") && group.contains("RUST"),
        "{group}"
    );
    assert!(group.contains("clustering"), "{group}");
    assert!(
        group.contains("href=\"/c/0/topics/%25DLQ%25web-sub\""),
        "{group}"
    );
    let clients = raftmq(&c.namesrv, &["group", "clients", "web-sub"])?;
    assert!(
        clients.contains(consumer.client_id()) && clients.contains("RangeT:TagA || TagB"),
        "{clients}"
    );

    // Resend a consumed message to the group: it arrives a second time.
    wait_until("every message consumed once", T, || async {
        for b in ["early0", "early1", "early2", "late0", "late1", "poison"] {
            anyhow::ensure!(deliveries(&seen, b).0 >= 1, "{b} not yet");
        }
        Ok(())
    })
    .await?;
    let id = between(&early, "href=\"/c/0/messages/", "\"")
        .ok_or_else(|| anyhow::anyhow!("no message link in {early}"))?;
    let shown = console.page(&format!("/c/0/messages/{id}")).await?;
    let body = between(&shown, "<pre class=\"body\">", "</pre>").unwrap_or_default();
    assert!(shown.contains("/resend"), "no resend form: {shown}");
    let before = deliveries(&seen, &body).0;
    let resent = console
        .post(
            &format!("/c/0/messages/{id}/resend"),
            &[("group", "web-sub")],
        )
        .await?;
    assert_eq!(resent.code, 200, "{}", resent.body);
    assert!(
        resent
            .body
            .contains(&format!("raftmq msg resend {id} --group web-sub")),
        "{}",
        resent.body
    );
    wait_until("the resent message to arrive again", T, || async {
        anyhow::ensure!(deliveries(&seen, &body).0 > before, "{body} not again yet");
        Ok(())
    })
    .await?;

    // The dead letter: browse the DLQ, open it, its page offers its own group, resend it.
    let dlq = wait_until("the poison message in the dead-letter topic", T, || async {
        let r = console
            .page("/c/0/messages?topic=%25DLQ%25web-sub&broker_group=broker-a&queue=0&offset=0")
            .await?;
        anyhow::ensure!(r.contains("poison"), "{r}");
        Ok(r)
    })
    .await?;
    let dead = between(&dlq, "href=\"/c/0/messages/", "\"")
        .ok_or_else(|| anyhow::anyhow!("no message link in {dlq}"))?;
    let page = console.page(&format!("/c/0/messages/{dead}")).await?;
    assert!(
        page.contains("name=\"group\" list=\"resend-groups\" value=\"web-sub\""),
        "{page}"
    );
    let resent = console
        .post(
            &format!("/c/0/messages/{dead}/resend"),
            &[("group", "web-sub")],
        )
        .await?;
    assert_eq!(resent.code, 200, "{}", resent.body);
    wait_until(
        "the dead letter to be consumed on its resend",
        T,
        || async {
            let (n, redeliveries) = deliveries(&seen, "poison");
            anyhow::ensure!(n >= 2 && redeliveries > 0, "{n} deliveries");
            Ok(())
        },
    )
    .await?;
    // A resend to a group name that cannot exist is refused, and nothing is sent.
    let bad = console
        .post(
            &format!("/c/0/messages/{id}/resend"),
            &[("group", "bad name")],
        )
        .await?;
    assert_eq!(bad.code, 400, "{}", bad.body);
    consumer.shutdown().await;
    Ok(())
}

/// A run directory as `raftmq-jepsen` writes it (the jepsen crate's report test checks it
/// writes these files and fields).
fn write_run(dir: &std::path::Path, valid: bool, lost: &[u64]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let results = serde_json::json!({
        "config": {"nemesis": dir.file_name().map(|n| n.to_string_lossy().into_owned()), "workload": "queue"},
        "valid": valid,
        "verdict": if valid { "valid".to_owned() } else { format!("INVALID: {} lost", lost.len()) },
        "analysis": {
            "ok": 1500, "lost": lost, "unexpected": [], "reordered": [], "windows": [{}, {}, {}],
            "stall": {"p50": 310.0, "max": 845.0},
            "unavailability": {"p50": 1.0, "p99": 2.0, "max": 3.0},
            "send_latency": {"p50": 2.5, "p99": 11.0},
        },
    });
    std::fs::write(dir.join("results.json"), results.to_string())?;
    std::fs::write(
        dir.join("latency.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><text>latency</text></svg>",
    )?;
    Ok(())
}

/// The viewer lists both runs with their verdicts, shows one with its stall and plot, and
/// serves only the plots of runs it found.
async fn chaos_reports(console: &Console) -> anyhow::Result<()> {
    let list = console.page("/reports").await?;
    assert!(list.contains("href=\"/reports\""), "no nav link: {list}");
    assert_eq!(list.matches("class=\"run\"").count(), 2, "{list}");
    assert!(list.contains("1 run(s) not valid"), "{list}");
    assert!(list.contains("INVALID: 2 lost"), "{list}");
    let run = console.page("/reports/run?run=suite%2Fpartition").await?;
    assert!(run.contains("<dd class=\"stall\">845 ms</dd>"), "{run}");
    assert!(run.contains("<dd class=\"lost\">2 / 0 / 0</dd>"), "{run}");
    assert!(
        run.contains("src=\"/reports/plot?run=suite%2Fpartition&amp;plot=latency\""),
        "{run}"
    );
    let svg = console
        .get("/reports/plot?run=suite%2Fpartition&plot=latency", ADMIN)
        .await?;
    assert_eq!(svg.code, 200, "{}", svg.body);
    assert_eq!(
        svg.headers.get("content-type").map(String::as_str),
        Some("image/svg+xml")
    );
    assert!(svg.body.contains("<text>latency</text>"));
    for bad in [
        "/reports/plot?run=suite%2Fpartition&plot=throughput",
        "/reports/plot?run=..%2F..%2Fetc&plot=latency",
        "/reports/run?run=suite",
    ] {
        let r = console.get(bad, ADMIN).await?;
        assert_eq!(r.code, 404, "{bad}: {}", r.body);
    }
    Ok(())
}
