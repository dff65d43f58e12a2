//! The leader's timer scheduler: delivers delayed messages (delay levels, deliver-at
//! times, consumer retries) when they are due.
//!
//! Every 100 ms the leader reads the due timers and proposes one `FireTimers` entry that
//! stores the messages in their real topics and removes the timers together. The entry
//! carries the state machine's fire sequence, so a scheduler racing another around a
//! failover cannot deliver twice, and because the timers live in the replicated state a
//! new leader picks up exactly where the old one stopped.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raftmq_proto::message::PROP_DELIVER_AT;
use raftmq_store::{BatchWriter, Command, EntryPayload, MessageRef, MessageView, TimerKey};
use tokio_util::sync::CancellationToken;

use crate::convert::now_ms;
use crate::core::Shared;

/// How often the scheduler looks for due timers.
const TICK: Duration = Duration::from_millis(100);
/// Most timers delivered per entry.
const MAX_PER_ENTRY: usize = 256;
/// Stop adding messages to an entry past this many bytes.
const MAX_ENTRY_BYTES: usize = 4 << 20;

/// Runs until `stop` fires.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        if !shared.replica.is_leader() {
            continue;
        }
        match fire_due(&shared).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(messages = n, "delivered due delayed messages"),
            Err(e) => tracing::warn!(error = %e, "delivering delayed messages failed; will retry"),
        }
    }
}

/// Delivers what is due now; returns how many timers were fired.
async fn fire_due(shared: &Shared) -> Result<usize, String> {
    let store = shared.store.clone();
    let now = now_ms();
    let due: Vec<(TimerKey, Option<MessageView>)> = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut bytes = 0;
        for t in store.timers_due(now, MAX_PER_ENTRY)? {
            let m = store.timer_message(&t)?;
            bytes += m.as_ref().map_or(0, |m| m.encoded_len);
            out.push((t, m));
            if bytes >= MAX_ENTRY_BYTES {
                break;
            }
        }
        Ok::<_, raftmq_store::Error>(out)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    if due.is_empty() {
        return Ok(0);
    }
    let seq = shared.store.fire_seq();
    let mut w = BatchWriter::new();
    for (t, m) in &due {
        let Some(m) = m else {
            tracing::warn!(
                log_index = t.log_index,
                slot = t.slot,
                "a delayed message is gone from the log; dropping its timer"
            );
            continue;
        };
        let keys: Vec<String> = m.keys().map(str::to_owned).collect();
        let properties: Vec<(String, String)> = m
            .properties()
            .filter(|(k, _)| *k != PROP_DELIVER_AT)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        w.push(&MessageRef {
            topic: m.topic(),
            queue_id: m.queue_id,
            tag: m.tag(),
            keys: &keys,
            properties: &properties,
            body: &m.body,
            born_ms: m.born_ms,
            store_ms: now,
            flags: m.flags,
            reconsume_times: m.reconsume_times,
        })
        .map_err(|e| e.to_string())?;
    }
    let fired: Vec<TimerKey> = due.iter().map(|(t, _)| *t).collect();
    let n = fired.len();
    let payload = EntryPayload::Command(Command::FireTimers {
        seq,
        fired,
        batch: Bytes::from(w.finish()),
    })
    .encode()
    .map_err(|e| e.to_string())?;
    shared
        .replica
        .write(Bytes::from(payload))
        .await
        .map_err(|e| e.to_string())?;
    Ok(n)
}
