//! Client message ids (RocketMQ's `UNIQ_KEY`): made by the producer for every message that
//! has none, kept by the broker through delay and retry, indexed, and accepted by
//! `Admin::get_message`, so a message keeps one id for its whole life.

use std::sync::atomic::{AtomicU64, Ordering};

use raftmq_proto::message::PROP_UNIQ_KEY;
use raftmq_proto::Message;

/// Makes client message ids: 32 hex digits, a random 64-bit prefix per producer and a
/// counter, so ids never repeat across producers, processes or restarts (short of a
/// 2^-64 prefix collision).
#[derive(Debug)]
pub struct UniqueKeys {
    prefix: u64,
    next: AtomicU64,
}

impl Default for UniqueKeys {
    fn default() -> Self {
        Self {
            prefix: rand::random(),
            next: AtomicU64::new(0),
        }
    }
}

impl UniqueKeys {
    /// A new id.
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:016X}{n:016X}", self.prefix)
    }

    /// Gives `m` a client message id unless it already has one (set by the application,
    /// or kept from the message it copies).
    pub fn stamp(&self, m: &mut Message) {
        if m.property(PROP_UNIQ_KEY).is_none() {
            m.properties.push((PROP_UNIQ_KEY.to_owned(), self.next()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_kept_when_set() {
        let (a, b) = (UniqueKeys::default(), UniqueKeys::default());
        let ids: std::collections::HashSet<String> =
            (0..100).flat_map(|_| [a.next(), b.next()]).collect();
        assert_eq!(ids.len(), 200);
        assert!(ids.iter().all(|i| i.len() == 32));
        let mut m = Message::new("T", "x");
        a.stamp(&mut m);
        let first = m.property(PROP_UNIQ_KEY).map(str::to_owned);
        a.stamp(&mut m);
        assert_eq!(m.property(PROP_UNIQ_KEY).map(str::to_owned), first);
        assert_eq!(m.properties.len(), 1);
    }
}
