//! `raftmq produce` and `raftmq consume`: the quickstart.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use raftmq_client::{
    ConsumeFrom, ConsumeResult, Message, MessageExt, MessageModel, OrderlyResult, Producer,
    PushConsumer, Selector, SendResult,
};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::failures::Failures;
use crate::output::Out;
use crate::when::{now_ms, DeliverAt};
use raftmq_client::message_tools::message_json;
use raftmq_client::transaction::{TransactionProducer, TransactionState};
use raftmq_proto::transport::shutdown_signal;

/// Options of `raftmq produce`.
#[derive(Debug, Args)]
#[command(after_help = PRODUCE_HELP)]
pub struct ProduceArgs {
    /// Topic to send to (created on first use by `raftmq dev`).
    #[arg(long)]
    pub topic: String,
    /// How many messages [default: 1000; with --body -, every line until end of input].
    #[arg(long)]
    pub count: Option<u64>,
    /// Body of every message (default: "Hello raftmq <n>"); `-` reads bodies from stdin, one
    /// message per line.
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
    /// A user property NAME=VALUE on every message; repeat for more. Names the brokers or
    /// RocketMQ give a meaning (TAGS, KEYS, UNIQ_KEY, DELAY, __*, ...) are refused.
    #[arg(long = "property", value_name = "NAME=VALUE", value_parser = crate::property::parse)]
    pub properties: Vec<(String, String)>,
    /// Send in order to the queue this key maps to.
    #[arg(long)]
    pub sharding_key: Option<String>,
    /// Deliver after delay level N (1-18: 1s 5s 10s 30s 1m 2m ... 2h).
    #[arg(long, conflicts_with = "deliver_at")]
    pub delay_level: Option<u8>,
    /// Deliver at a time: an offset from each send (+30s, +5m, +2h; units ms s m h d), or an
    /// RFC 3339 time (2026-11-24T08:00:00Z). In the future and at most 3 days ahead.
    #[arg(long, value_name = "WHEN", value_parser = crate::when::deliver_at_arg)]
    pub deliver_at: Option<DeliverAt>,
    /// Give up on a message after this many ms without an acknowledgement (the client
    /// retries within it).
    #[arg(long, default_value_t = 3000)]
    pub send_timeout_ms: u64,
    /// Record a trace event for every send in the trace topic (`--trace` alone:
    /// RMQ_SYS_TRACE_TOPIC, which must exist; `raftmq msg trace ID` shows them).
    #[arg(long, value_name = "TOPIC", num_args = 0..=1, default_missing_value = raftmq_client::trace::TRACE_TOPIC)]
    pub trace: Option<String>,
    /// Send each message in a transaction and decide it: commit (consumers get it),
    /// rollback (they never do) or unknown (left to the broker's check-back, which this
    /// process answers with --check-answer while it runs; `raftmq tx list` shows it).
    #[arg(long, value_name = "STATE", conflicts_with = "sharding_key")]
    pub transaction: Option<TransactionState>,
    /// Producer group of transactional sends: the broker asks its live members about
    /// undecided transactions.
    #[arg(long, default_value = "raftmq-cli-tx", requires = "transaction")]
    pub producer_group: String,
    /// How this process answers check-backs while it runs [default: --transaction's state].
    #[arg(long, value_name = "STATE", requires = "transaction")]
    pub check_answer: Option<TransactionState>,
    /// Show a progress bar and a summary instead of one line per message.
    #[arg(long)]
    pub quiet: bool,
}

/// The rules of `produce` (shown by `--help`).
const PRODUCE_HELP: &str = "Bodies from stdin: only with --body - (never guessed from a piped stdin); each line is one message, without its line ending; empty lines are skipped; input ends at end of file or after --count messages. e.g. printf 'a\nb\n' | raftmq produce --topic T --body -

Failures: a message the brokers refuse for itself (too large, say) is counted and the rest are sent. Any other failure (no NameServer or broker answered within --send-timeout-ms, no route) stops produce. It exits non-zero naming each kind of failure with its count and the first one's message; ctrl-c stops it with a summary.";

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
    #[arg(long, default_value = "*", conflicts_with = "sql")]
    pub tag: String,
    /// Record a trace event for every consumption attempt in the trace topic (`--trace` alone:
    /// RMQ_SYS_TRACE_TOPIC, which must exist; `raftmq msg trace ID` shows them).
    #[arg(long, value_name = "TOPIC", num_args = 0..=1, default_missing_value = raftmq_client::trace::TRACE_TOPIC)]
    pub trace: Option<String>,
    /// An SQL92 filter over message properties instead of tags, e.g. "a > 5 AND b = 'x'"
    /// (numbers: > >= < <= = <> BETWEEN; strings: = <> IN; IS [NOT] NULL; AND OR NOT;
    /// TAGS is the tag). The broker delivers only the messages it is TRUE for.
    #[arg(long, value_name = "EXPR")]
    pub sql: Option<String>,
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

/// Where message bodies come from.
#[derive(Debug)]
enum Bodies {
    /// `--body TEXT`, `--size N` or the numbered default, `count` times.
    Made { next: u64, count: u64 },
    /// `--body -`: lines of stdin, at most `cap`.
    Stdin {
        lines: mpsc::Receiver<std::io::Result<Vec<u8>>>,
        cap: Option<u64>,
        read: u64,
    },
}

impl Bodies {
    fn new(args: &ProduceArgs) -> Self {
        if args.body.as_deref() == Some("-") {
            Self::Stdin {
                lines: stdin_lines(),
                cap: args.count,
                read: 0,
            }
        } else {
            Self::Made {
                next: 0,
                count: args.count.unwrap_or(1000),
            }
        }
    }

    /// How many bodies there will be, when known.
    fn len(&self) -> Option<u64> {
        match self {
            Self::Made { count, .. } => Some(*count),
            Self::Stdin { cap, .. } => *cap,
        }
    }

    /// The next body; `None` at the end.
    async fn next(&mut self, args: &ProduceArgs) -> anyhow::Result<Option<Bytes>> {
        match self {
            Self::Made { next, count } => {
                if *next >= *count {
                    return Ok(None);
                }
                let i = *next;
                *next += 1;
                Ok(Some(match (&args.body, args.size) {
                    (Some(b), _) => Bytes::from(b.clone()),
                    (None, Some(n)) => Bytes::from(vec![b'x'; n]),
                    (None, None) => Bytes::from(format!("Hello raftmq {i}")),
                }))
            }
            Self::Stdin { lines, cap, read } => {
                if cap.is_some_and(|c| *read >= c) {
                    return Ok(None);
                }
                match lines.recv().await {
                    None => Ok(None),
                    Some(Ok(line)) => {
                        *read += 1;
                        Ok(Some(Bytes::from(line)))
                    }
                    Some(Err(e)) => Err(anyhow::Error::from(e).context("reading stdin")),
                }
            }
        }
    }
}

/// The non-empty lines of stdin, without their line endings, read on a thread of their own.
fn stdin_lines() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(64);
    // WHY a detached std thread: a blocking read of stdin cannot be cancelled, and tokio's
    // stdin would make the runtime's shutdown wait for the next line after a ctrl-c. This
    // thread ends at end of input, when the receiver is gone, or with the process.
    let spawned = std::thread::Builder::new()
        .name("stdin-lines".into())
        .spawn(move || {
            use std::io::BufRead as _;
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut line = Vec::new();
                let item = match stdin.read_until(b'\n', &mut line) {
                    Ok(0) => return,
                    Ok(_) => {
                        if line.ends_with(b"\n") {
                            line.pop();
                        }
                        if line.ends_with(b"\r") {
                            line.pop();
                        }
                        if line.is_empty() {
                            continue;
                        }
                        Ok(line)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Err(e));
        return rx;
    }
    rx
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

/// Whether a failed send is about the message itself (so the next one may succeed) rather
/// than about reaching the cluster, which the client already retried for the send timeout.
fn about_the_message(e: &raftmq_client::Error) -> bool {
    use raftmq_client::Error;
    use raftmq_proto::WireError;
    matches!(e, Error::Invalid(_) | Error::Wire(WireError::Invalid(_)))
}

/// Sends messages and reports each; see [`PRODUCE_HELP`] for what stops it.
///
/// # Errors
/// Bad options, unreadable stdin, any failed send (counted by kind), or a ctrl-c.
pub async fn produce(ep: &crate::Endpoint, out: &Out, args: ProduceArgs) -> anyhow::Result<()> {
    crate::property::check_unique(&args.properties).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        args.send_timeout_ms > 0,
        "--send-timeout-ms must be at least 1"
    );
    let mut pb = Producer::builder()
        .namesrv(ep.namesrv.iter().cloned())
        .with_credentials(ep.credentials.clone())
        .with_tls(ep.tls.clone())
        .group("raftmq-cli-producer")
        .send_timeout(Duration::from_millis(args.send_timeout_ms))
        // The route lookup before the first send is one NameServer RPC: a shorter send
        // timeout shortens it too, so a dead NameServer is given up on within it.
        .rpc_timeout(Duration::from_millis(args.send_timeout_ms).min(Duration::from_secs(3)));
    if let Some(t) = &args.trace {
        pb = pb.trace(t.as_str());
    }
    let producer = pb.build()?;
    let txp = match args.transaction {
        Some(state) => {
            let answer = args.check_answer.unwrap_or(state);
            Some(
                TransactionProducer::builder()
                    .namesrv(ep.namesrv.iter().cloned())
                    .with_credentials(ep.credentials.clone())
                    .with_tls(ep.tls.clone())
                    .group(args.producer_group.clone())
                    .send_timeout(Duration::from_millis(args.send_timeout_ms))
                    .checker(move |_: &MessageExt| answer)
                    .build()?,
            )
        }
        None => None,
    };
    let mut bodies = Bodies::new(&args);
    let bar = args.quiet.then(|| {
        let (b, template) = match bodies.len() {
            Some(n) => (
                ProgressBar::new(n),
                "{bar:40} {pos}/{len} sent, {per_sec}, eta {eta}",
            ),
            None => (ProgressBar::no_length(), "{pos} sent, {per_sec}"),
        };
        b.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let started = Instant::now();
    let failures = Failures::default();
    let mut attempted = 0u64;
    let mut interrupted = false;
    let mut gave_up = false;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let body = tokio::select! {
            b = bodies.next(&args) => b,
            _ = &mut stop => { interrupted = true; break; }
        };
        let body = match body {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                producer.shutdown().await;
                return Err(e);
            }
        };
        let i = attempted;
        let mut m = Message::new(args.topic.as_str(), body.clone());
        if let Some(t) = &args.tag {
            m = m.with_tag(t.clone());
        }
        if let Some(k) = &args.key {
            m = m.with_key(k.clone());
        }
        for (k, v) in &args.properties {
            m = m.with_property(k.clone(), v.clone());
        }
        if let Some(l) = args.delay_level {
            m = m.with_delay_level(l);
        }
        if let Some(at) = args.deliver_at {
            m = m.with_deliver_at(at.resolve(now_ms()));
        }
        let send = async {
            match (&txp, args.transaction, &args.sharding_key) {
                (Some(tx), Some(state), _) => tx.send_in_transaction(m, |_| state).await.map(|r| {
                    if let Some(e) = &r.end_error {
                        eprintln!("message {i}: its {} decision may not have reached the broker ({e}); the check-back settles it", state.as_str());
                    }
                    let ended = r.ended.map(|o| format!("{o:?}"));
                    (r.send, Some(json!({"state": state.as_str(), "ended": ended})))
                }),
                (_, _, Some(k)) => producer.send_orderly(m, k).await.map(|r| (r, None)),
                _ => producer.send(m).await.map(|r| (r, None)),
            }
        };
        let r = tokio::select! {
            r = send => r,
            _ = &mut stop => { interrupted = true; break; }
        };
        attempted += 1;
        match r {
            Ok((r, transaction)) => {
                if let Some(b) = &bar {
                    b.inc(1);
                } else {
                    let mut line = json!({"status": r.status.to_string(), "msg_id": r.msg_id, "unique_key": r.unique_key, "topic": r.topic.as_str(), "queue_id": r.queue_id.0,
                               "group": r.broker_group, "queue_offset": r.queue_offset.map(|o| o.0), "deliver_at_ms": r.deliver_at_ms,
                               "body": String::from_utf8_lossy(&body)});
                    let mut text = result_line(&r);
                    if let Some(t) = transaction {
                        text.push_str(&format!(
                            " transaction {}",
                            t["state"].as_str().unwrap_or("")
                        ));
                        line["transaction"] = t;
                    }
                    out.line(line, text);
                }
            }
            Err(e) => {
                failures.record(&e);
                if about_the_message(&e) {
                    eprintln!("message {i} not sent: {e}");
                } else {
                    gave_up = true;
                    break;
                }
            }
        }
    }
    producer.shutdown().await;
    if let Some(tx) = &txp {
        tx.shutdown().await;
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let failed = failures.count();
    let sent = attempted - failed;
    if bar.is_some() || interrupted || failed > 0 {
        let secs = started.elapsed().as_secs_f64();
        let of = match bodies.len() {
            Some(n) => format!(" of {n}"),
            None => String::new(),
        };
        eprintln!(
            "sent {sent}{of} messages to {} in {secs:.2}s ({:.0} msgs/s), {failed} failed{}",
            args.topic,
            sent as f64 / secs.max(1e-9),
            if interrupted {
                "; interrupted"
            } else if gave_up {
                "; gave up"
            } else {
                ""
            },
        );
    }
    failures
        .verdict("sends")
        .with_context(|| format!("sending to topic {}", args.topic))?;
    anyhow::ensure!(!interrupted, "interrupted after {attempted} sends");
    anyhow::ensure!(
        attempted > 0,
        "no message was sent: --count is 0, or stdin had no non-empty line"
    );
    Ok(())
}

/// Consumes and prints messages until `count`, the idle timeout or ctrl-c.
pub async fn consume(ep: &crate::Endpoint, out: &Out, args: ConsumeArgs) -> anyhow::Result<()> {
    let admin = ep.admin()?;
    if let Err(e) = admin.topic_route(&args.topic).await {
        anyhow::bail!(
            "cannot consume topic {}: {e} (raftmq topic list shows the topics; raftmq topic create {} makes one)",
            args.topic,
            args.topic
        );
    }
    let mut b = PushConsumer::builder()
        .namesrv(ep.namesrv.iter().cloned())
        .with_credentials(ep.credentials.clone())
        .with_tls(ep.tls.clone())
        .group(args.group.as_str())
        .subscribe(
            args.topic.as_str(),
            match &args.sql {
                Some(e) => Selector::sql(e.as_str()),
                None => Selector::tag(args.tag.as_str()),
            },
        )
        .consume_from(match args.from {
            From::First => ConsumeFrom::FirstOffset,
            From::Last => ConsumeFrom::LastOffset,
        })
        .persist_every(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_secs(1));
    if args.broadcast {
        b = b.model(MessageModel::Broadcasting);
    }
    if let Some(t) = &args.trace {
        b = b.trace(t.as_str());
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
