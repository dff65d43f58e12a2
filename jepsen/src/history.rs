//! The history: every operation as invoke / ok / fail / info, with monotonic times, plus
//! nemesis events. Written as JSON lines.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// How an operation ended (Jepsen's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The operation started.
    Invoke,
    /// It definitely happened.
    Ok,
    /// It definitely did not happen.
    Fail,
    /// Unknown: it may or may not have happened.
    Info,
}

/// What the operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    /// A producer send.
    Send,
    /// A consumer delivery.
    Recv,
    /// A fault starting (invoke) or healing (ok).
    Nemesis,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the run started (monotonic).
    pub t: f64,
    /// Who: `p3`, `c1`, `nemesis`.
    pub process: String,
    /// invoke / ok / fail / info.
    pub kind: Kind,
    /// send / recv / nemesis.
    pub f: F,
    /// Message id (unique per run).
    #[serde(default)]
    pub id: Option<u64>,
    /// Sharding key (ordered workload).
    #[serde(default)]
    pub key: Option<String>,
    /// Sequence number within the key.
    #[serde(default)]
    pub seq: Option<u64>,
    /// Queue, `group:queue`.
    #[serde(default)]
    pub queue: Option<String>,
    /// Queue offset.
    #[serde(default)]
    pub offset: Option<u64>,
    /// Error text of fail / info.
    #[serde(default)]
    pub error: Option<String>,
    /// Nemesis name and targets.
    #[serde(default)]
    pub nemesis: Option<String>,
    /// Transaction workload: how the send's transaction ends, `commit` or `rollback`
    /// (decided before sending; by the producer or, when it answers unknown, by its
    /// check-back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

impl Event {
    /// A bare event.
    pub fn new(t: f64, process: &str, kind: Kind, f: F) -> Self {
        Self {
            t,
            process: process.to_owned(),
            kind,
            f,
            id: None,
            key: None,
            seq: None,
            queue: None,
            offset: None,
            error: None,
            nemesis: None,
            decision: None,
        }
    }
}

/// Collects events from every task, in memory and to a file.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            events: Arc::default(),
        }
    }

    /// Milliseconds since the start.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    /// Adds an event.
    pub fn push(&self, e: Event) {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(e);
    }

    /// Every event so far, in time order.
    pub fn snapshot(&self) -> Vec<Event> {
        let mut v = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        v.sort_by(|a, b| a.t.total_cmp(&b.t));
        v
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes a history as JSON lines.
///
/// # Errors
/// The file cannot be written.
pub fn write(path: &Path, events: &[Event]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for e in events {
        serde_json::to_writer(&mut f, e)?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    Ok(())
}

/// Reads a JSON-lines history.
///
/// # Errors
/// Unreadable file or a malformed line.
pub fn read(path: &Path) -> anyhow::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}
