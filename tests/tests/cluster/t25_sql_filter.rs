//! SQL92 property filters end to end: real broker, real consumers, one group per
//! expression; each group's set of delivered messages is exact once its lag is 0 (the
//! broker moves the offset past what it filtered out). The matrix covers every operator,
//! NULLs and type mismatches as RocketMQ's evaluator treats them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftmq_client::consumer::{ConsumeFrom, ConsumeResult, PushConsumer};
use raftmq_client::{Message, Producer, Selector};

use crate::harness::{wait_until, Cluster, Tuning};
use crate::rmq::raftmq;

const T: Duration = Duration::from_secs(60);

/// One test message: its id, tag and properties.
type Case = (u32, &'static str, &'static [(&'static str, &'static str)]);

/// The messages.
const MESSAGES: [Case; 7] = [
    (0, "TagA", &[("a", "1"), ("b", "abc")]),
    (1, "TagB", &[("a", "5"), ("b", "xyz")]),
    (2, "TagA", &[("a", "10")]),
    (3, "TagB", &[("a", "2.5"), ("b", "abc")]),
    (4, "TagA", &[("a", "hello")]),
    (5, "", &[("b", "abc")]),
    (6, "TagA", &[("a", "-3"), ("b", "it's")]),
];

/// Each expression with the ids it must deliver, by RocketMQ's semantics: properties are
/// strings read as numbers against numbers (an integer constant wants an integer), NULL
/// is unknown, and a property that cannot be read as its comparison needs excludes the
/// message whatever the rest says.
const MATRIX: [(&str, &[u32]); 16] = [
    ("a > 4", &[1, 2]),
    ("a >= 1.0 AND a < 6.0", &[0, 1, 3]),
    ("a >= 1.0 AND a < 6", &[0, 1]),
    ("a <= 1", &[0, 6]),
    ("a = 10", &[2]),
    ("a BETWEEN -5 AND 1", &[0, 6]),
    ("a NOT BETWEEN 0 AND 5", &[2, 6]),
    ("b = 'abc'", &[0, 3, 5]),
    ("b <> 'abc'", &[1, 6]),
    ("b IN ('xyz', 'it''s')", &[1, 6]),
    ("b NOT IN ('abc')", &[1, 6]),
    ("a IS NULL", &[5]),
    ("b IS NOT NULL AND TAGS = 'TagA'", &[0, 6]),
    ("TAGS IS NULL OR a = 5", &[1, 5]),
    ("NOT (a > 4)", &[0, 6]),
    ("a > 4 OR TRUE", &[0, 1, 2, 5, 6]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql92_filters_deliver_exactly_what_rocketmq_semantics_select() -> anyhow::Result<()> {
    let c = Cluster::start(&[("broker-a", 1)], Tuning::default()).await?;
    c.wait_leader("broker-a", T).await?;
    let admin = c.admin()?;
    admin.create_topic("Sql", 2, None).await?;
    let p = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    for (id, tag, props) in MESSAGES {
        let mut m = Message::new("Sql", id.to_string()).with_property("id", id.to_string());
        if !tag.is_empty() {
            m = m.with_tag(tag);
        }
        for (k, v) in props {
            m = m.with_property(*k, *v);
        }
        p.send(m).await?;
    }

    // A bad expression is refused when the consumer starts, saying where.
    let bad = PushConsumer::builder()
        .namesrv([c.namesrv.clone()])
        .group("sql-bad")
        .subscribe("Sql", Selector::sql("a > 'x'"))
        .start(|_| async { ConsumeResult::Success })
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a consumer started with a bad expression"))?;
    assert!(
        bad.to_string()
            .contains("compares numbers only at position 2"),
        "{bad}"
    );

    let mut consumers = Vec::new();
    for (i, (expr, _)) in MATRIX.iter().enumerate() {
        let seen: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
        let record = seen.clone();
        let pc = PushConsumer::builder()
            .namesrv([c.namesrv.clone()])
            .group(format!("sql-{i}"))
            .subscribe("Sql", Selector::sql(*expr))
            .consume_from(ConsumeFrom::FirstOffset)
            .persist_every(Duration::from_millis(200))
            .start(move |m| {
                let record = record.clone();
                async move {
                    let id: Option<u32> = m.property("id").and_then(|v| v.parse().ok());
                    record.lock().unwrap().extend(id);
                    ConsumeResult::Success
                }
            })
            .await?;
        consumers.push((pc, seen));
    }
    for (i, ((expr, want), (_, seen))) in MATRIX.iter().zip(&consumers).enumerate() {
        let group = format!("sql-{i}");
        wait_until(
            &format!("{expr}: the group through both queues"),
            T,
            || async {
                let progress = admin.group_progress(&group).await?;
                let sql: Vec<_> = progress.iter().filter(|q| q.topic == "Sql").collect();
                anyhow::ensure!(
                    sql.len() == 2 && sql.iter().all(|q| q.lag == 0),
                    "{progress:?}"
                );
                Ok(())
            },
        )
        .await?;
        let got: Vec<u32> = seen.lock().unwrap().iter().copied().collect();
        assert_eq!(got, *want, "{expr}");
    }
    for (pc, _) in &consumers {
        pc.shutdown().await;
    }

    // The CLI's --sql: the same filter, and a bad one fails at once with its position.
    let out = raftmq(
        &c.namesrv,
        &[
            "--json",
            "consume",
            "--topic",
            "Sql",
            "--group",
            "sql-cli",
            "--sql",
            "a > 4",
            "--from",
            "first",
            "--idle-timeout",
            "3",
        ],
    )?;
    let ids: BTreeSet<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["1".to_owned(), "2".to_owned()]),
        "{out}"
    );
    let refused = raftmq(
        &c.namesrv,
        &[
            "consume", "--topic", "Sql", "--group", "sql-cli", "--sql", "a >",
        ],
    )
    .expect_err("a bad --sql was taken");
    assert!(refused.to_string().contains("position 3"), "{refused}");
    Ok(())
}
