//! Workloads: producers sending unique messages at a target rate and a clustering consumer
//! group (restarted now and then, so it rebalances), every operation recorded.
//!
//! - `queue`: unordered sends to an 8-queue topic, a concurrent consumer group;
//! - `ordered`: sends by sharding key (one sequence per key), an orderly consumer group;
//! - `transaction`: unordered transactional sends, each committed, rolled back, or left
//!   unknown and settled by the check-back (the decision is recorded before the send).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use raftmq_client::transaction::{TransactionProducer, TransactionState};
use raftmq_client::{
    Admin, ConsumeFrom, ConsumeResult, Error, Message, OrderlyResult, Producer, PushConsumer,
    SendResult,
};
use raftmq_proto::{MessageExt, Outcome};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::history::{Event, Kind, Recorder, F};

/// The topic every run uses.
pub const TOPIC: &str = "jepsen";
const GROUP: &str = "jepsen-consumers";

/// Workload settings.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Sends by sharding key, consumed orderly.
    pub ordered: bool,
    /// Transactional sends (not ordered).
    pub transactional: bool,
    /// Target sends per second, all producers together.
    pub rate: u64,
    /// Producer tasks.
    pub producers: usize,
    /// Consumer instances.
    pub consumers: usize,
    /// Sharding keys (ordered).
    pub keys: usize,
    /// Restart one consumer this often (forces rebalances).
    pub consumer_restart_every: Duration,
}

/// Creates the topic, retrying until the group accepts it.
///
/// # Errors
/// No success within 60 s.
pub async fn create_topic(namesrv: &[String], group: Option<&str>) -> anyhow::Result<()> {
    let admin = Admin::new(namesrv.to_vec())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match admin.create_topic(TOPIC, 8, group).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "topic not created yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn body(id: u64, key: &str, seq: u64) -> String {
    format!("{id}:{key}:{seq}")
}

fn parse(m: &MessageExt) -> Option<(u64, String, u64)> {
    let s = std::str::from_utf8(&m.body).ok()?;
    let mut parts = s.splitn(3, ':');
    let id = parts.next()?.parse().ok()?;
    let key = parts.next()?.to_owned();
    let seq = parts.next()?.parse().ok()?;
    Some((id, key, seq))
}

/// Sends until `stop`, recording every operation.
pub async fn produce(
    w: Workload,
    namesrv: Vec<String>,
    rec: Recorder,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    if w.transactional {
        return produce_transactions(w, namesrv, rec, stop).await;
    }
    let producer = Producer::builder()
        .namesrv(namesrv)
        .send_timeout(Duration::from_secs(10))
        .build()?;
    let ids = Arc::new(AtomicU64::new(0));
    let started = tokio::time::Instant::now();
    let per = (w.rate as f64 / w.producers.max(1) as f64).max(0.1);
    let mut tasks = Vec::new();
    for p in 0..w.producers.max(1) {
        let (producer, ids, rec, stop, w) = (
            producer.clone(),
            ids.clone(),
            rec.clone(),
            stop.clone(),
            w.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let process = format!("p{p}");
            // Producer p owns keys p, p + producers, ...: one sender per key keeps its order.
            let my_keys: Vec<String> = (0..w.keys)
                .filter(|k| k % w.producers.max(1) == p)
                .map(|k| format!("k{k}"))
                .collect();
            let mut seqs = vec![0u64; my_keys.len().max(1)];
            let mut n = 0u64;
            while !stop.is_cancelled() {
                let due = started + Duration::from_secs_f64(n as f64 / per);
                n += 1;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until(due) => {}
                }
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let slot = (n as usize) % seqs.len();
                let (key, seq) = if w.ordered && !my_keys.is_empty() {
                    let s = seqs[slot];
                    seqs[slot] += 1;
                    (my_keys[slot].clone(), s)
                } else {
                    (String::new(), 0)
                };
                let mut e = Event::new(rec.now(), &process, Kind::Invoke, F::Send);
                e.id = Some(id);
                if w.ordered {
                    e.key = Some(key.clone());
                    e.seq = Some(seq);
                }
                rec.push(e.clone());
                let msg = Message::new(TOPIC, body(id, &key, seq));
                let res = if w.ordered {
                    producer.send_orderly(msg, &key).await
                } else {
                    producer.send(msg).await
                };
                complete(&rec, e, res.as_ref());
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    producer.shutdown().await;
    Ok(())
}

/// Records how a send ended: `ok` with where it was stored, else `fail` or `info` as the
/// error says it did not apply or may have.
fn complete(rec: &Recorder, mut e: Event, res: Result<&SendResult, &Error>) {
    e.t = rec.now();
    match res {
        Ok(r) => {
            e.kind = Kind::Ok;
            e.queue = Some(format!("{}:{}", r.broker_group, r.queue_id));
            e.offset = r.queue_offset.map(|o| o.0);
        }
        Err(err) => {
            e.kind = if err.outcome() == Outcome::NotApplied {
                Kind::Fail
            } else {
                Kind::Info
            };
            e.error = Some(err.to_string());
        }
    }
    rec.push(e);
}

/// How a transaction of the `transaction` workload goes.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// The producer commits.
    Commit,
    /// The producer rolls back.
    Rollback,
    /// The producer answers unknown; its check-back answers commit (`true`) or rollback.
    Unknown(bool),
}

impl Plan {
    fn random() -> Self {
        match rand::random_range(0..10u32) {
            0..=3 => Plan::Commit,
            4..=6 => Plan::Rollback,
            n => Plan::Unknown(n % 2 == 0),
        }
    }

    fn commits(self) -> bool {
        matches!(self, Plan::Commit | Plan::Unknown(true))
    }

    fn local(self) -> TransactionState {
        match self {
            Plan::Commit => TransactionState::Commit,
            Plan::Rollback => TransactionState::Rollback,
            Plan::Unknown(_) => TransactionState::Unknown,
        }
    }
}

/// The `transaction` workload's producers: like [`produce`], each send a transaction. Once
/// stopped, the producers keep answering check-backs until nothing is pending (a decision
/// that did not reach the broker is still settled), at most 90 s.
async fn produce_transactions(
    w: Workload,
    namesrv: Vec<String>,
    rec: Recorder,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let decisions: Arc<std::sync::Mutex<HashMap<u64, bool>>> = Arc::default();
    let checker = {
        let decisions = decisions.clone();
        move |m: &MessageExt| {
            let commit = parse(m).and_then(|(id, _, _)| {
                decisions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&id)
                    .copied()
            });
            match commit {
                Some(true) => TransactionState::Commit,
                Some(false) => TransactionState::Rollback,
                None => TransactionState::Unknown,
            }
        }
    };
    let producer = Arc::new(
        TransactionProducer::builder()
            .namesrv(namesrv.clone())
            .group("jepsen-tx")
            .send_timeout(Duration::from_secs(10))
            .checker(checker)
            .build()?,
    );
    let ids = Arc::new(AtomicU64::new(0));
    let started = tokio::time::Instant::now();
    let per = (w.rate as f64 / w.producers.max(1) as f64).max(0.1);
    let mut tasks = Vec::new();
    for p in 0..w.producers.max(1) {
        let (producer, ids, rec, stop, decisions) = (
            producer.clone(),
            ids.clone(),
            rec.clone(),
            stop.clone(),
            decisions.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let process = format!("p{p}");
            let mut n = 0u64;
            while !stop.is_cancelled() {
                let due = started + Duration::from_secs_f64(n as f64 / per);
                n += 1;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until(due) => {}
                }
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let plan = Plan::random();
                decisions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id, plan.commits());
                let mut e = Event::new(rec.now(), &process, Kind::Invoke, F::Send);
                e.id = Some(id);
                e.decision = Some(if plan.commits() { "commit" } else { "rollback" }.into());
                rec.push(e.clone());
                let res = producer
                    .send_in_transaction(Message::new(TOPIC, body(id, "", 0)), |_| plan.local())
                    .await;
                // Ok: the half message is stored; its fate is the decision, by the
                // producer or by the check-back.
                complete(&rec, e, res.as_ref().map(|r| &r.send));
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let admin = Admin::new(namesrv)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        match admin.pending_transactions(10).await {
            Ok(p) if p.is_empty() => break,
            Ok(p) => tracing::info!(
                pending = p.len(),
                "waiting for check-backs to settle the pending transactions"
            ),
            Err(e) => tracing::info!(error = %e, "listing pending transactions failed"),
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("transactions still pending after 90 s");
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    producer.shutdown().await;
    Ok(())
}

async fn start_consumer(
    w: &Workload,
    namesrv: &[String],
    rec: &Recorder,
    process: String,
) -> Result<PushConsumer, Error> {
    let b = PushConsumer::builder()
        .namesrv(namesrv.to_vec())
        .group(GROUP)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .membership_timing(Duration::from_secs(2), Duration::from_secs(1))
        .persist_every(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_secs(5));
    let record = {
        let rec = rec.clone();
        move |m: MessageExt| {
            let mut e = Event::new(rec.now(), &process, Kind::Ok, F::Recv);
            if let Some((id, key, seq)) = parse(&m) {
                e.id = Some(id);
                if !key.is_empty() {
                    e.key = Some(key);
                    e.seq = Some(seq);
                }
            }
            e.queue = Some(format!("{}:{}", m.broker_group, m.queue_id));
            e.offset = Some(m.queue_offset.0);
            rec.push(e);
        }
    };
    if w.ordered {
        b.start_orderly(move |m| {
            record(m);
            async { OrderlyResult::Success }
        })
        .await
    } else {
        b.start(move |m| {
            record(m);
            async { ConsumeResult::Success }
        })
        .await
    }
}

/// Consumes until `stop`, restarting one instance every `consumer_restart_every`.
pub async fn consume(
    w: Workload,
    namesrv: Vec<String>,
    rec: Recorder,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let consumers = Arc::new(Mutex::new(Vec::new()));
    let mut generation = 0;
    for i in 0..w.consumers.max(1) {
        let c = start_consumer(&w, &namesrv, &rec, format!("c{i}")).await?;
        consumers.lock().await.push(c);
        generation += 1;
    }
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(w.consumer_restart_every) => {}
        }
        let slot = next % w.consumers.max(1);
        next += 1;
        let old = consumers.lock().await[slot].clone();
        old.shutdown().await;
        let fresh = start_consumer(&w, &namesrv, &rec, format!("c{generation}")).await?;
        generation += 1;
        consumers.lock().await[slot] = fresh;
        tracing::info!(consumer = slot, "restarted a consumer to force a rebalance");
    }
    for c in consumers.lock().await.iter() {
        c.shutdown().await;
    }
    Ok(())
}
