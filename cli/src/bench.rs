//! `raftmq bench`: throughput and latency percentiles (HDR histograms).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use raftmq_client::transaction::{TransactionProducer, TransactionState};
use raftmq_client::{ConsumeFrom, ConsumeResult, Message, Producer, PushConsumer};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::failures::Failures;
use crate::output::Out;

/// What to measure.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    /// Send as fast as allowed; latency = send to quorum acknowledgement.
    Produce,
    /// Consume what is there and what arrives; latency = broker store time to delivery.
    Consume,
    /// Both at once; msgs/s and latency are of deliveries (send to delivery), `sent` counts
    /// the sends.
    E2e,
}

/// Options of `raftmq bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub mode: Mode,
    /// Topic (created on first use by `raftmq dev`; create it elsewhere).
    #[arg(long, default_value = "BenchTopic")]
    pub topic: String,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Concurrent senders (each waits for its acknowledgement before the next send).
    #[arg(long, short = 'c', default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Target total sends per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Consumer group for consume and e2e.
    #[arg(long, default_value = "raftmq-bench")]
    pub group: String,
    /// Send each message in a transaction committed at once (half message, then commit:
    /// two replicated writes); latency is to the commit's acknowledgement.
    #[arg(long)]
    pub transaction: bool,
}

/// What the bench sends with.
enum Sender {
    Plain(Producer),
    Transactional(Arc<TransactionProducer>),
}

impl Sender {
    fn new(args: &BenchArgs, ep: &crate::Endpoint) -> anyhow::Result<Self> {
        if args.transaction {
            return Ok(Sender::Transactional(Arc::new(
                TransactionProducer::builder()
                    .namesrv(ep.namesrv.iter().cloned())
                    .with_credentials(ep.credentials.clone())
                    .with_tls(ep.tls.clone())
                    .group("raftmq-bench-tx")
                    // The bench commits every transaction itself; a check-back finds one
                    // whose commit was lost in flight, which committed too.
                    .checker(|_: &raftmq_client::MessageExt| TransactionState::Commit)
                    .build()?,
            )));
        }
        Ok(Sender::Plain(
            Producer::builder()
                .namesrv(ep.namesrv.iter().cloned())
                .with_credentials(ep.credentials.clone())
                .with_tls(ep.tls.clone())
                .group("raftmq-bench")
                .max_in_flight(args.concurrency.max(1))
                .build()?,
        ))
    }

    fn clone_handle(&self) -> Self {
        match self {
            Sender::Plain(p) => Sender::Plain(p.clone()),
            Sender::Transactional(p) => Sender::Transactional(p.clone()),
        }
    }

    async fn send(&self, m: Message) -> raftmq_client::Result<()> {
        match self {
            Sender::Plain(p) => p.send(m).await.map(|_| ()),
            Sender::Transactional(p) => {
                let r = p
                    .send_in_transaction(m, |_| TransactionState::Commit)
                    .await?;
                r.end_error.map_or(Ok(()), Err)
            }
        }
    }

    async fn shutdown(&self) {
        match self {
            Sender::Plain(p) => p.shutdown().await,
            Sender::Transactional(p) => p.shutdown().await,
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // Microseconds, 1 µs to 10 minutes, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

struct Totals {
    done: AtomicU64,
    failures: Failures,
    hist: Mutex<Histogram<u64>>,
}

impl Totals {
    fn new() -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            done: AtomicU64::new(0),
            failures: Failures::default(),
            hist: Mutex::new(histogram()?),
        }))
    }
}

fn progress(label: &str) -> ProgressBar {
    let b = ProgressBar::new_spinner();
    b.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    b.set_message(label.to_owned());
    b.enable_steady_tick(Duration::from_millis(200));
    b
}

async fn producers(
    args: &BenchArgs,
    ep: &crate::Endpoint,
    totals: Arc<Totals>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let producer = Sender::new(args, ep)?;
    let started = Instant::now();
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (p, totals, stop, issued) = (
            producer.clone_handle(),
            totals.clone(),
            stop.clone(),
            issued.clone(),
        );
        let (topic, size, rate) = (args.topic.clone(), args.size.max(8), args.rate);
        tasks.push(tokio::spawn(async move {
            let mut local = histogram().ok();
            while !stop.is_cancelled() {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep_until(due.into()) => {}
                    }
                }
                let mut body = vec![b'x'; size];
                body[..8].copy_from_slice(&now_ns().to_le_bytes());
                let t = Instant::now();
                match p
                    .send(Message::new(topic.as_str(), Bytes::from(body)))
                    .await
                {
                    Ok(_) => {
                        totals.done.fetch_add(1, Ordering::Relaxed);
                        if let Some(h) = local.as_mut() {
                            let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                        }
                    }
                    Err(e) => {
                        totals.failures.record(&e);
                        tracing::debug!(error = %e, "send failed");
                    }
                }
            }
            if let Some(h) = local {
                if let Ok(mut all) = totals.hist.lock() {
                    let _ = all.add(h);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    producer.shutdown().await;
    Ok(())
}

/// Sends one message to `args.topic` (auto-creating it where the brokers allow).
async fn warm_up(args: &BenchArgs, ep: &crate::Endpoint) -> anyhow::Result<()> {
    let producer = Producer::builder()
        .namesrv(ep.namesrv.iter().cloned())
        .with_credentials(ep.credentials.clone())
        .with_tls(ep.tls.clone())
        .group("raftmq-bench")
        .build()?;
    let body = vec![b'x'; args.size.max(8)];
    let res = producer
        .send(Message::new(args.topic.as_str(), Bytes::from(body)))
        .await;
    producer.shutdown().await;
    res.map_err(|e| anyhow::anyhow!("cannot send to topic {}: {e}", args.topic))?;
    Ok(())
}

/// Waits until the consumer has queues, so the measured time is all consuming.
async fn wait_assigned(consumer: &PushConsumer, topic: &str) -> anyhow::Result<()> {
    const LIMIT: Duration = Duration::from_secs(30);
    let deadline = Instant::now() + LIMIT;
    while consumer.assigned().is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the consumer got no queue of topic {topic} within {}s: does the topic exist \
             (raftmq topic create {topic})?",
            LIMIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn consumer(
    args: &BenchArgs,
    ep: &crate::Endpoint,
    totals: Arc<Totals>,
    e2e: bool,
) -> anyhow::Result<PushConsumer> {
    let from = if e2e {
        ConsumeFrom::LastOffset
    } else {
        ConsumeFrom::FirstOffset
    };
    Ok(PushConsumer::builder()
        .namesrv(ep.namesrv.iter().cloned())
        .with_credentials(ep.credentials.clone())
        .with_tls(ep.tls.clone())
        .group(args.group.as_str())
        .subscribe(args.topic.as_str(), "*")
        .consume_from(from)
        .concurrency(64)
        .shutdown_timeout(Duration::from_secs(2))
        .start(move |m| {
            let totals = totals.clone();
            async move {
                let lat_us = if e2e && m.body.len() >= 8 {
                    let mut ts = [0u8; 8];
                    ts.copy_from_slice(&m.body[..8]);
                    now_ns().saturating_sub(u64::from_le_bytes(ts)) / 1000
                } else {
                    (now_ns() / 1_000_000).saturating_sub(m.store_ms) * 1000
                };
                totals.done.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut h) = totals.hist.lock() {
                    let _ = h.record(lat_us.max(1));
                }
                ConsumeResult::Success
            }
        })
        .await?)
}

/// Runs the benchmark and prints the summary.
pub async fn run(ep: &crate::Endpoint, out: &Out, args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.duration > 0, "--duration must be at least 1 second");
    // What is reported: sends (produce) or deliveries (consume, e2e). In e2e the sends
    // are counted apart, so neither their count nor their latency mixes in.
    let totals = Totals::new()?;
    let sent = match args.mode {
        Mode::E2e => Totals::new()?,
        Mode::Produce | Mode::Consume => totals.clone(),
    };
    let stop = CancellationToken::new();
    let label = match args.mode {
        Mode::Produce => "producing",
        Mode::Consume => "consuming",
        Mode::E2e => "producing and consuming",
    };
    let bar = progress(label);
    if matches!(args.mode, Mode::E2e) {
        // The topic must exist before the consumer can be given its queues.
        bar.set_message("sending a first message (creates the topic where allowed)");
        warm_up(&args, ep).await?;
    }
    let consumer = match args.mode {
        Mode::Consume | Mode::E2e => {
            let c = consumer(&args, ep, totals.clone(), matches!(args.mode, Mode::E2e)).await?;
            bar.set_message("waiting for the consumer's queues");
            wait_assigned(&c, &args.topic).await?;
            Some(c)
        }
        Mode::Produce => None,
    };
    let started = Instant::now();
    let ticker = {
        let (totals, stop, bar) = (totals.clone(), stop.clone(), bar.clone());
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            while !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(1000)).await;
                let done = totals.done.load(Ordering::Relaxed);
                let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), done);
                bar.set_message(format!(
                    "{done} msgs, {rate:.0} msgs/s now, {} errors",
                    totals.failures.count()
                ));
            }
        })
    };
    let timer = {
        let stop = stop.clone();
        let d = Duration::from_secs(args.duration);
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            stop.cancel();
        })
    };
    match args.mode {
        Mode::Produce | Mode::E2e => producers(&args, ep, sent.clone(), stop.clone()).await?,
        Mode::Consume => stop.cancelled().await,
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(c) = consumer {
        c.shutdown().await;
    }
    let _ = timer.await;
    let _ = ticker.await;
    bar.finish_and_clear();
    let done = totals.done.load(Ordering::Relaxed);
    let mut errors = totals.failures.count();
    if matches!(args.mode, Mode::E2e) {
        errors += sent.failures.count();
    }
    let sent_totals = sent.clone();
    let sent = sent.done.load(Ordering::Relaxed);
    let h = totals
        .hist
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock poisoned"))?
        .clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let msgs_per_s = done as f64 / elapsed;
    let mb_per_s = msgs_per_s * args.size as f64 / (1 << 20) as f64;
    let summary = json!({
        "mode": format!("{:?}", args.mode).to_lowercase(), "topic": args.topic, "size": args.size,
        "concurrency": args.concurrency, "transaction": args.transaction, "duration_s": elapsed, "messages": done, "sent": sent, "errors": errors,
        "msgs_per_s": msgs_per_s, "mb_per_s": mb_per_s,
        "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": h.max() as f64 / 1000.0,
    });
    out.line(
        summary,
        format!(
            "{:?}: {done} msgs in {elapsed:.1}s = {msgs_per_s:.0} msgs/s, {mb_per_s:.1} MB/s ({} B, concurrency {}), {errors} errors\n\
             latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            args.mode,
            args.size,
            args.concurrency,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            h.max() as f64 / 1000.0
        ),
    );
    // A benchmark that measured failures, or nothing, is not a result.
    if matches!(args.mode, Mode::E2e) {
        sent_totals.failures.verdict("sends")?;
    }
    totals.failures.verdict(match args.mode {
        Mode::Produce => "sends",
        Mode::Consume | Mode::E2e => "deliveries",
    })?;
    anyhow::ensure!(
        done > 0,
        "nothing was acknowledged or delivered in {elapsed:.1}s: is the cluster up and the topic there? (raftmq cluster list)"
    );
    Ok(())
}
