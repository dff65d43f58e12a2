//! `raftmq produce` and `raftmq consume`: the quickstart.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use raftmq_client::{
    ConsumeFrom, ConsumeResult, Message, MessageExt, MessageModel, OrderlyResult, Producer,
    PushConsumer, SendResult,
};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::admin::message_json;
use crate::output::Out;
use raftmq_proto::transport::shutdown_signal;

/// Options of `raftmq produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to send to (created on first use by `raftmq dev`).
    #[arg(long)]
    pub topic: String,
    /// How many messages.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Body of every message (default: "Hello raftmq <n>").
    #[arg(long, conflicts_with = "size")]
    pub body: Option<String>,
    /// Random-free bodies of this many bytes instead.
    #[arg(long)]
    pub size: Option<usize>,
    /// Tag of every message.
    #[arg(long)]
    pub tag: Option<String>,
    /// Key of every message (for `msg query`).
    #[arg(long)]
    pub key: Option<String>,
    /// Send in order to the queue this key maps to.
    #[arg(long)]
    pub sharding_key: Option<String>,
    /// Deliver after delay level N (1-18: 1s 5s 10s 30s 1m 2m ... 2h).
    #[arg(long)]
    pub delay_level: Option<u8>,
    /// Show a progress bar and a summary instead of one line per message.
    #[arg(long)]
    pub quiet: bool,
}

/// Where a new consumer group starts.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum From {
    /// Every retained message.
    First,
    /// Only new messages.
    Last,
}

/// Options of `raftmq consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to consume.
    #[arg(long)]
    pub topic: String,
    /// Consumer group.
    #[arg(long)]
    pub group: String,
    /// Tag expression: `*` or `TagA || TagB`.
    #[arg(long, default_value = "*")]
    pub tag: String,
    /// Exit after this many messages (a shortfall at the idle timeout is an error).
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit after this many seconds without a message; 0 (the default) keeps consuming
    /// until --count is reached or ctrl-c, like RocketMQ's quickstart consumer.
    #[arg(long, default_value_t = 0)]
    pub idle_timeout: u64,
    /// Where a group without committed offsets starts (a group that has offsets resumes
    /// from them; reset them with `raftmq group reset-offset`).
    #[arg(long, value_enum, default_value = "last")]
    pub from: From,
    /// One message at a time per queue, in order (locks queues at the broker).
    #[arg(long)]
    pub orderly: bool,
    /// Every instance gets every message (offsets kept locally).
    #[arg(long)]
    pub broadcast: bool,
}

fn body_of(args: &ProduceArgs, i: u64) -> Bytes {
    match (&args.body, args.size) {
        (Some(b), _) => Bytes::from(b.clone()),
        (None, Some(n)) => Bytes::from(vec![b'x'; n]),
        (None, None) => Bytes::from(format!("Hello raftmq {i}")),
    }
}

fn result_line(r: &SendResult) -> String {
    let offset = match r.queue_offset {
        Some(o) => o.to_string(),
        None => format!("scheduled@{}ms", r.deliver_at_ms),
    };
    format!(
        "SendResult [status={}, msg_id={}, unique_key={}, queue={}:{}, queue_offset={offset}]",
        r.status,
        r.msg_id,
        r.unique_key.as_deref().unwrap_or("-"),
        r.broker_group,
        r.queue_id
    )
}

/// Sends `count` messages and reports each.
pub async fn produce(namesrv: &[String], out: &Out, args: ProduceArgs) -> anyhow::Result<()> {
    let producer = Producer::builder()
        .namesrv(namesrv.iter().cloned())
        .group("raftmq-cli-producer")
        .build()?;
    let bar = args.quiet.then(|| {
        let b = ProgressBar::new(args.count);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} sent, {per_sec}, eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let started = Instant::now();
    let mut failed = 0u64;
    let mut attempted = 0u64;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    for i in 0..args.count {
        let body = body_of(&args, i);
        let mut m = Message::new(args.topic.as_str(), body.clone());
        if let Some(t) = &args.tag {
            m = m.with_tag(t.clone());
        }
        if let Some(k) = &args.key {
            m = m.with_key(k.clone());
        }
        if let Some(l) = args.delay_level {
            m = m.with_delay_level(l);
        }
        let send = async {
            match &args.sharding_key {
                Some(k) => producer.send_orderly(m, k).await,
                None => producer.send(m).await,
            }
        };
        let r = tokio::select! {
            r = send => r,
            _ = &mut stop => break,
        };
        attempted += 1;
        match r {
            Ok(r) => {
                if let Some(b) = &bar {
                    b.inc(1);
                } else {
                    out.line(
                        json!({"status": r.status.to_string(), "msg_id": r.msg_id, "unique_key": r.unique_key, "topic": r.topic.as_str(), "queue_id": r.queue_id.0,
                               "group": r.broker_group, "queue_offset": r.queue_offset.map(|o| o.0), "deliver_at_ms": r.deliver_at_ms,
                               "body": String::from_utf8_lossy(&body)}),
                        result_line(&r),
                    );
                }
            }
            Err(e) if i == 0 => {
                producer.shutdown().await;
                return Err(
                    anyhow::Error::from(e).context(format!("sending to topic {}", args.topic))
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("send {i} failed: {e}");
            }
        }
    }
    producer.shutdown().await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let sent = attempted - failed;
    if bar.is_some() || attempted < args.count {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "sent {sent} of {} messages to {} in {secs:.2}s ({:.0} msgs/s), {failed} failed{}",
            args.count,
            args.topic,
            sent as f64 / secs.max(1e-9),
            if attempted < args.count {
                "; interrupted"
            } else {
                ""
            },
        );
    }
    anyhow::ensure!(failed == 0, "{failed} of {attempted} sends failed");
    anyhow::ensure!(
        attempted == args.count,
        "interrupted after {attempted} of {} sends",
        args.count
    );
    Ok(())
}

/// Consumes and prints messages until `count`, the idle timeout or ctrl-c.
pub async fn consume(namesrv: &[String], out: &Out, args: ConsumeArgs) -> anyhow::Result<()> {
    let admin = raftmq_client::Admin::new(namesrv.iter().cloned())?;
    if let Err(e) = admin.topic_route(&args.topic).await {
        anyhow::bail!(
            "cannot consume topic {}: {e} (raftmq topic list shows the topics; raftmq topic create {} makes one)",
            args.topic,
            args.topic
        );
    }
    let mut b = PushConsumer::builder()
        .namesrv(namesrv.iter().cloned())
        .group(args.group.as_str())
        .subscribe(args.topic.as_str(), args.tag.as_str())
        .consume_from(match args.from {
            From::First => ConsumeFrom::FirstOffset,
            From::Last => ConsumeFrom::LastOffset,
        })
        .persist_every(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_secs(1));
    if args.broadcast {
        b = b.model(MessageModel::Broadcasting);
    }
    // A message is acknowledged only once printed; ones still waiting when we stop are
    // never acknowledged, so the group gets them again next time.
    let (tx, mut rx) = mpsc::channel::<(MessageExt, oneshot::Sender<()>)>(64);
    let deliver = move |m: MessageExt| {
        let tx = tx.clone();
        async move {
            let (done, printed) = oneshot::channel();
            if tx.send((m, done)).await.is_err() || printed.await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let consumer = if args.orderly {
        b.start_orderly(move |m| {
            let d = deliver.clone();
            async move {
                d(m).await;
                OrderlyResult::Success
            }
        })
        .await?
    } else {
        b.start(move |m| {
            let d = deliver.clone();
            async move {
                d(m).await;
                ConsumeResult::Success
            }
        })
        .await?
    };
    let idle = (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout));
    let mut got = 0u64;
    let mut interrupted = false;
    loop {
        if args.count.is_some_and(|c| got >= c) {
            break;
        }
        let next = async {
            match idle {
                Some(d) => tokio::time::timeout(d, rx.recv()).await.ok().flatten(),
                None => rx.recv().await,
            }
        };
        let received = tokio::select! {
            r = next => r,
            _ = shutdown_signal() => {
                interrupted = true;
                None
            }
        };
        let Some((m, done)) = received else {
            break;
        };
        got += 1;
        out.line(
            message_json(&m),
            format!(
                "ConsumeMessage [topic={}, queue={}:{}, queue_offset={}, msg_id={}, unique_key={}, tag={}, keys={:?}, reconsume_times={}, body={}]",
                m.topic,
                m.broker_group,
                m.queue_id,
                m.queue_offset,
                m.msg_id,
                m.property(raftmq_proto::message::PROP_UNIQ_KEY).unwrap_or("-"),
                m.tag,
                m.keys,
                m.reconsume_times,
                String::from_utf8_lossy(&m.body)
            ),
        );
        let _ = done.send(());
    }
    drop(rx);
    consumer.shutdown().await;
    if got == 0 && !interrupted {
        // Say why nothing came when the group resumed from offsets that are at the end.
        let progress = admin.group_progress(&args.group).await.unwrap_or_default();
        let on_topic: Vec<_> = progress.iter().filter(|q| q.topic == args.topic).collect();
        if !on_topic.is_empty() && on_topic.iter().all(|q| q.lag == 0) {
            eprintln!(
                "group {} already consumed everything on {} (it has committed offsets, so --from does not apply; raftmq group reset-offset {} --topic {} --to-time TIME moves them)",
                args.group, args.topic, args.group, args.topic
            );
        }
    }
    if let Some(c) = args.count {
        anyhow::ensure!(
            got >= c,
            "received {got} of {c} messages before {}s passed without one",
            args.idle_timeout
        );
    }
    if !out.json {
        eprintln!("consumed {got} messages");
    }
    Ok(())
}
