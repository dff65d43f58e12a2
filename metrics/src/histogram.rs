//! A latency histogram with fixed buckets, recorded with relaxed atomics (no lock on the
//! paths it measures) and read as a [`Snapshot`] at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds (seconds) for latencies from half a millisecond to ten seconds: fsyncs,
/// requests.
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Durations counted into buckets by upper bound.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// Per bucket, not cumulative; values above the last bound are `count` minus their sum.
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Upper bounds, seconds, ascending.
    pub bounds: Vec<f64>,
    /// Durations in each bucket (not cumulative).
    pub counts: Vec<u64>,
    /// Durations recorded.
    pub count: u64,
    /// Their sum, seconds.
    pub sum: f64,
}

impl Histogram {
    /// Buckets with these upper bounds (seconds, ascending).
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Buckets of [`LATENCY_BOUNDS`].
    pub fn latency() -> Self {
        Self::new(LATENCY_BOUNDS)
    }

    /// Counts one duration.
    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now. Read without a lock, so a scrape racing a record may see the count
    /// one ahead of the buckets; the `+Inf` bucket is the count, so it stays cumulative.
    pub fn snapshot(&self) -> Snapshot {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let count = self.count.load(Ordering::Relaxed).max(counts.iter().sum());
        Snapshot {
            bounds: self.bounds.clone(),
            counts,
            count,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.record(Duration::from_millis(1));
        h.record(Duration::from_micros(1001));
        h.record(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.counts, vec![1, 1]);
        assert_eq!(s.count, 3);
        assert!((s.sum - 60.002_001).abs() < 1e-9, "{}", s.sum);
    }
}
