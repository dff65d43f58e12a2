//! Failed client calls, tallied by kind: the error summary of `produce` and `bench`.
//!
//! A run that failed a thousand times the same way says so in one line
//! (`Connect x1000 (first: cannot connect to ...)`) instead of a thousand.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Failures by kind: how many, and the first one's message. Shared between tasks.
#[derive(Debug, Default)]
pub struct Failures {
    total: AtomicU64,
    by_kind: Mutex<BTreeMap<String, (u64, String)>>,
}

/// The variant name of an error (`Connect`, `NotLeader`, ...), from its `Debug` form.
pub fn kind(e: &raftmq_client::Error) -> String {
    let d = match e {
        raftmq_client::Error::Wire(w) => format!("{w:?}"),
        other => format!("{other:?}"),
    };
    d.split(|c: char| !c.is_alphanumeric())
        .next()
        .filter(|k| !k.is_empty())
        .unwrap_or("Other")
        .to_owned()
}

impl Failures {
    /// Counts one failure.
    pub fn record(&self, e: &raftmq_client::Error) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.by_kind.lock() {
            let entry = f.entry(kind(e)).or_insert_with(|| (0, e.to_string()));
            entry.0 += 1;
        }
    }

    /// How many failures were recorded.
    pub fn count(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// `Err` naming each kind of failure with its count and first message, if any:
    /// `3 sends failed: Connect x3 (first: cannot connect to 127.0.0.1:1: ...)`.
    ///
    /// # Errors
    /// At least one failure was recorded.
    pub fn verdict(&self, what: &str) -> anyhow::Result<()> {
        let f = self
            .by_kind
            .lock()
            .map_err(|_| anyhow::anyhow!("the failure tally's lock is poisoned"))?;
        if f.is_empty() {
            return Ok(());
        }
        let kinds: Vec<String> = f
            .iter()
            .map(|(k, (n, first))| format!("{k} x{n} (first: {first})"))
            .collect();
        anyhow::bail!("{} {what} failed: {}", self.count(), kinds.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_client::Error;

    #[test]
    fn failures_are_counted_by_kind_with_the_first_message() {
        let f = Failures::default();
        assert!(f.verdict("sends").is_ok());
        for port in [1, 2] {
            f.record(&Error::Connect {
                addr: format!("127.0.0.1:{port}"),
                reason: "refused".into(),
            });
        }
        f.record(&Error::Invalid("message body is empty".into()));
        assert_eq!(f.count(), 3);
        let e = f.verdict("sends").unwrap_err().to_string();
        assert!(e.starts_with("3 sends failed: "), "{e}");
        assert!(
            e.contains("Connect x2 (first: cannot connect to 127.0.0.1:1"),
            "{e}"
        );
        assert!(e.contains("Invalid x1"), "{e}");
    }
}
