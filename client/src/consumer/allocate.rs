//! Queue allocation among the members of a consumer group (RocketMQ's
//! `AllocateMessageQueueAveragely` and `AllocateMessageQueueAveragelyByCircle`).

use crate::producer::MessageQueue;

/// How queues are split among a group's consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllocateStrategy {
    /// Contiguous blocks, the first `queues % consumers` members getting one more
    /// (RocketMQ "AVG", the default).
    #[default]
    Average,
    /// Round-robin: queue `i` goes to consumer `i % n` ("AVG_BY_CIRCLE").
    RoundRobin,
}

impl AllocateStrategy {
    /// The queues `me` gets. `queues` and `consumers` must be sorted the same way by
    /// every member; `me` not in `consumers` gets nothing.
    pub fn allocate(
        self,
        queues: &[MessageQueue],
        consumers: &[String],
        me: &str,
    ) -> Vec<MessageQueue> {
        let Some(i) = consumers.iter().position(|c| c == me) else {
            return Vec::new();
        };
        let n = consumers.len();
        match self {
            AllocateStrategy::Average => {
                let q = queues.len();
                let base = q / n;
                let extra = q % n;
                let size = base + usize::from(i < extra);
                let start = i * base + i.min(extra);
                queues.iter().skip(start).take(size).cloned().collect()
            }
            AllocateStrategy::RoundRobin => queues.iter().skip(i).step_by(n).cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_proto::{QueueId, TopicName};
    use std::collections::BTreeSet;

    fn queues(n: u32) -> Vec<MessageQueue> {
        (0..n)
            .map(|q| MessageQueue {
                topic: TopicName::from("T"),
                broker_group: "a".into(),
                queue_id: QueueId(q),
            })
            .collect()
    }

    #[test]
    fn every_queue_goes_to_exactly_one_consumer() {
        for strategy in [AllocateStrategy::Average, AllocateStrategy::RoundRobin] {
            for nq in 0..20 {
                for nc in 1..7 {
                    let qs = queues(nq);
                    let cs: Vec<String> = (0..nc).map(|c| format!("c{c}")).collect();
                    let mut seen = BTreeSet::new();
                    let mut sizes = Vec::new();
                    for c in &cs {
                        let mine = strategy.allocate(&qs, &cs, c);
                        sizes.push(mine.len());
                        for q in mine {
                            assert!(
                                seen.insert(q.queue_id),
                                "{strategy:?}: queue assigned twice"
                            );
                        }
                    }
                    assert_eq!(seen.len(), nq as usize);
                    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                    assert!(max - min <= 1, "{strategy:?} is unbalanced: {sizes:?}");
                }
            }
        }
        assert!(AllocateStrategy::Average
            .allocate(&queues(4), &["x".into()], "y")
            .is_empty());
    }
}
