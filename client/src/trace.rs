//! Message trace, RocketMQ's `enableMsgTrace`: a producer or push consumer built with
//! `.trace(topic)` records one event per send (time, cost, status, broker group, queue)
//! and per consumption attempt (time, cost, status, redelivery count) as messages of a
//! trace topic ([`TRACE_TOPIC`] or one the user names), keyed by the message's client id
//! (`UNIQ_KEY`, kept through retries) and its stored id; [`Admin::message_trace`] and
//! `raftmq msg trace ID` read them back as a timeline.
//!
//! Recording never slows or fails the traced call: events go through a bounded queue
//! (events beyond [`QUEUE_MAX`] waiting are dropped and counted in a throttled WARN line)
//! to a background task with its own untraced producer. Events still queued when the
//! process exits are lost, as with RocketMQ's asynchronous trace dispatcher.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::message::{PROP_RETRY_TOPIC, PROP_UNIQ_KEY};
use raftmq_proto::throttle::Throttle;
use raftmq_proto::{FoundMessage, Message, MessageExt, WireError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::admin::Admin;
use crate::core::ClientConfig;
use crate::error::{Error, Result};
use crate::producer::Producer;

/// The default trace topic (RocketMQ's).
pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// Events waiting to be written, at most, per traced client.
pub const QUEUE_MAX: usize = 10_000;
/// Most events one [`Admin::message_trace`] returns.
pub const EVENTS_MAX: u32 = 64;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceKind {
    /// A send, from the call to its answer.
    Send,
    /// One consumption attempt: the listener's run on one delivery.
    Consume,
}

/// One trace event, stored as the JSON body of a trace-topic message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Send or consume.
    pub kind: TraceKind,
    /// When it started, ms since the Unix epoch.
    pub time_ms: u64,
    /// How long it took, ms.
    pub cost_ms: u64,
    /// `ok`, `failed: why` (sends); `success`, `reconsume_later` (consumption).
    pub status: String,
    /// The producer or consumer group.
    pub group: String,
    /// The client instance.
    pub client_id: String,
    /// The message's topic.
    pub topic: String,
    /// The producer's message id (`UNIQ_KEY`), the same on every delivery.
    pub unique_key: String,
    /// The stored-position id of this copy (empty when a send failed).
    pub msg_id: String,
    /// Where it is stored (empty when a send failed).
    pub broker_group: String,
    /// Its queue, when stored.
    pub queue_id: Option<u32>,
    /// Its queue offset, when stored and not delayed.
    pub queue_offset: Option<u64>,
    /// Failed consumption attempts before this one (consume events).
    pub reconsume_times: u32,
    /// Tag.
    pub tag: String,
    /// Keys.
    pub keys: Vec<String>,
}

impl TraceEvent {
    /// A consume event for `m`, started at `time_ms`.
    pub(crate) fn consume(m: &MessageExt, group: &str, client_id: &str, time_ms: u64) -> Self {
        Self {
            kind: TraceKind::Consume,
            time_ms,
            cost_ms: 0,
            status: String::new(),
            group: group.to_owned(),
            client_id: client_id.to_owned(),
            // A retried copy names its original topic.
            topic: m
                .property(PROP_RETRY_TOPIC)
                .unwrap_or(m.topic.as_str())
                .to_owned(),
            unique_key: m.property(PROP_UNIQ_KEY).unwrap_or_default().to_owned(),
            msg_id: m.msg_id.clone(),
            broker_group: m.broker_group.0.clone(),
            queue_id: Some(m.queue_id.0),
            queue_offset: Some(m.queue_offset.0),
            reconsume_times: m.reconsume_times,
            tag: m.tag.clone(),
            keys: m.keys.clone(),
        }
    }

    /// A send event for `m` (already given its `UNIQ_KEY`), not yet answered.
    pub(crate) fn send(m: &Message, group: &str, client_id: &str, time_ms: u64) -> Self {
        Self {
            kind: TraceKind::Send,
            time_ms,
            cost_ms: 0,
            status: String::new(),
            group: group.to_owned(),
            client_id: client_id.to_owned(),
            topic: m.topic.to_string(),
            unique_key: m.property(PROP_UNIQ_KEY).unwrap_or_default().to_owned(),
            msg_id: String::new(),
            broker_group: String::new(),
            queue_id: None,
            queue_offset: None,
            reconsume_times: 0,
            tag: m.tag.clone(),
            keys: m.keys.clone(),
        }
    }
}

/// What the writer is given: an event, or a request to say when all before it are sent.
#[derive(Debug)]
enum Job {
    Event(Box<TraceEvent>),
    Flush(oneshot::Sender<()>),
}

/// How long [`Tracer::flush`] waits at most (a client's shutdown).
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Writes a client's trace events in the background.
#[derive(Debug)]
pub(crate) struct Tracer {
    tx: mpsc::Sender<Job>,
    dropped: AtomicU64,
    full: Throttle,
}

impl Tracer {
    /// Starts the writer: events go to `topic` through a producer of `client`.
    ///
    /// # Errors
    /// An invalid topic, client settings that do not work, or no Tokio runtime.
    pub(crate) fn start(client: ClientConfig, topic: &str) -> Result<Arc<Self>> {
        raftmq_proto::names::validate_topic(topic)
            .map_err(|e| Error::Invalid(format!("trace topic: {e}")))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Invalid(
                "message trace needs a Tokio runtime: build the client inside one".into(),
            )
        })?;
        let producer = Producer::builder()
            .with_config(client)
            .group("_TRACE_PRODUCER")
            .build()?;
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        runtime.spawn(write(producer, topic.to_owned(), rx));
        Ok(Arc::new(Self {
            tx,
            dropped: AtomicU64::new(0),
            full: Throttle::default(),
        }))
    }

    /// Queues an event; drops it (counted) when the queue is full.
    pub(crate) fn record(&self, e: TraceEvent) {
        if self.tx.try_send(Job::Event(Box::new(e))).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if self.full.allow().is_some() {
                tracing::warn!(
                    dropped,
                    "trace events dropped: the trace topic is not keeping up"
                );
            }
        }
    }

    /// Waits (at most 5 s) until every event recorded so far is written: a client's
    /// shutdown calls it, so that a short-lived process keeps its trace.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Job::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(FLUSH_WAIT, wait).await;
        }
    }
}

/// Sends every event until every tracer handle is gone.
async fn write(producer: Producer, topic: String, mut rx: mpsc::Receiver<Job>) {
    let failing = Throttle::default();
    while let Some(job) = rx.recv().await {
        let e = match job {
            Job::Event(e) => e,
            Job::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let Ok(body) = serde_json::to_vec(&*e) else {
            continue;
        };
        let kind = match e.kind {
            TraceKind::Send => "send",
            TraceKind::Consume => "consume",
        };
        let mut m = Message::new(topic.as_str(), body).with_tag(kind);
        for k in [&e.unique_key, &e.msg_id] {
            if !k.is_empty() {
                m = m.with_key(k.as_str());
            }
        }
        if let Err(err) = producer.send(m).await {
            if let Some(more) = failing.allow() {
                tracing::warn!(topic = %topic, error = %err, more, "cannot write a trace event (does the trace topic exist? raftmq topic create {topic})");
            }
        }
    }
}

impl Admin {
    /// The trace of a message (by stored id or client id): its send and every consumption
    /// attempt recorded in `trace_topic`, oldest first (at most [`EVENTS_MAX`]).
    ///
    /// # Errors
    /// The trace topic is unknown, or a broker group unreachable.
    pub async fn message_trace(&self, id: &str, trace_topic: &str) -> Result<Vec<TraceEvent>> {
        let key = match self.get_message(id).await {
            Ok(FoundMessage::Stored(m)) => m.property(PROP_UNIQ_KEY).unwrap_or(id).to_owned(),
            Ok(FoundMessage::Scheduled { message, .. }) => {
                message.property(PROP_UNIQ_KEY).unwrap_or(id).to_owned()
            }
            // Gone by retention, or a client id: its trace may still be there.
            Err(Error::MessageNotFound { .. } | Error::Wire(WireError::MessageNotFound(_))) => {
                id.to_owned()
            }
            Err(e) => return Err(e),
        };
        let found = self.query_by_key(trace_topic, &key, EVENTS_MAX).await?;
        let mut events: Vec<TraceEvent> = found
            .iter()
            .filter_map(|m| serde_json::from_slice::<TraceEvent>(&m.body).ok())
            .filter(|e| e.unique_key == key || e.msg_id == key)
            .collect();
        events.sort_by_key(|e| (e.time_ms, e.kind == TraceKind::Consume));
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_json_with_lowercase_kinds() {
        let m = Message::new("T", "b")
            .with_tag("A")
            .with_key("k")
            .with_property(PROP_UNIQ_KEY, "U1");
        let mut e = TraceEvent::send(&m, "pg", "c1", 7);
        e.status = "ok".into();
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"kind\":\"send\""), "{json}");
        let back: TraceEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.unique_key, "U1");
        assert_eq!(back.keys, ["k"]);
    }
}
