//! The leader's transaction check-back: every `transaction_check_interval_ms` it looks at
//! the pending half messages, and for each older than `transaction_timeout_ms` whose last
//! check is at least an interval ago, either asks a live producer of its group
//! ([`crate::core::transactions::Checkers`]) or, after `transaction_check_max` checks,
//! rolls it back.
//!
//! The count and time of each check are replicated (`CheckTransactions`), so a new leader
//! neither checks early nor resets the limit; the decisions producers send back, and the
//! rollbacks, are `EndTransaction` entries, which apply once however many reach the log.

use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::transaction::TransactionCheck;
use raftmq_store::{Command, HalfPosition, PendingTransaction};
use tokio_util::sync::CancellationToken;

use crate::convert::now_ms;
use crate::core::{Broker, Shared};

/// Most half messages one round checks (the rest wait for the next round).
const MAX_PER_ROUND: usize = 10_000;
/// Half messages per `CheckTransactions` entry.
const CHECKS_PER_ENTRY: usize = 1024;

/// Runs until `stop` fires.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let interval = Duration::from_millis(shared.config.transaction_check_interval_ms);
    let broker = Broker::new(shared.clone());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if !shared.replica.is_leader() {
            continue;
        }
        if let Err(e) = round(&broker, &shared).await {
            tracing::warn!(error = %e, "transaction check-back round failed; will retry");
        }
    }
}

/// Which pending transactions are due a check at `now`, and which have used up their checks.
pub(crate) fn due(
    pending: Vec<PendingTransaction>,
    now: u64,
    timeout_ms: u64,
    interval_ms: u64,
    max_checks: u32,
) -> (Vec<PendingTransaction>, Vec<PendingTransaction>) {
    let (mut check, mut give_up) = (Vec::new(), Vec::new());
    for t in pending {
        let old_enough = now.saturating_sub(t.store_ms) >= timeout_ms;
        // A tenth of an interval of slack: rounds are `interval` apart, give or take.
        let rested = t.last_check_ms == 0
            || now.saturating_sub(t.last_check_ms) >= interval_ms - interval_ms / 10;
        if !old_enough || !rested {
            continue;
        }
        if t.checks >= max_checks {
            give_up.push(t);
        } else if check.len() < MAX_PER_ROUND {
            check.push(t);
        }
    }
    (check, give_up)
}

async fn round(broker: &Broker, shared: &Shared) -> Result<(), String> {
    let cfg = &shared.config;
    let now = now_ms();
    let (check, give_up) = due(
        shared.store.pending_transactions(),
        now,
        cfg.transaction_timeout_ms,
        cfg.transaction_check_interval_ms,
        cfg.transaction_check_max,
    );
    for t in give_up {
        tracing::warn!(
            log_index = t.position.0,
            slot = t.position.1,
            producer_group = %t.producer_group,
            topic = %t.topic,
            unique_key = %t.msg_id,
            checks = t.checks,
            "rolling back a transaction nobody decided after the check limit"
        );
        broker
            .end_half(t.position, false, true)
            .await
            .map_err(|e| e.to_string())?;
    }
    if check.is_empty() {
        return Ok(());
    }
    let mut asked = 0usize;
    let mut unheard = std::collections::BTreeSet::new();
    for t in &check {
        let store = shared.store.clone();
        let pos = t.position;
        let view = tokio::task::spawn_blocking(move || store.half_message(pos))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let Some(view) = view else {
            continue;
        };
        let stored = Broker::half_stored(t, view);
        let c = TransactionCheck {
            message: broker.ext_of(stored.clone()),
            checks: t.checks + 1,
        };
        match shared.checkers.dispatch(&t.producer_group, c, &stored) {
            Some(_) => asked += 1,
            None => {
                unheard.insert(t.producer_group.clone());
            }
        }
    }
    let positions: Vec<HalfPosition> = check.iter().map(|t| t.position).collect();
    for chunk in positions.chunks(CHECKS_PER_ENTRY) {
        broker
            .command(Command::CheckTransactions {
                halves: chunk.to_vec(),
                now_ms: now,
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    tracing::info!(
        due = check.len(),
        asked,
        groups_without_producer = ?unheard,
        "checked back pending transactions"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(store_ms: u64, checks: u32, last_check_ms: u64) -> PendingTransaction {
        PendingTransaction {
            position: (store_ms, 0),
            producer_group: "pg".into(),
            msg_id: String::new(),
            topic: "T".into(),
            queue_id: 0,
            store_ms,
            checks,
            last_check_ms,
        }
    }

    #[test]
    fn only_old_enough_rested_transactions_are_checked_and_the_limit_rolls_back() {
        let now = 1_000_000;
        let (check, give_up) = due(
            vec![
                t(now - 1_000, 0, 0),               // too young (timeout 6 s)
                t(now - 7_000, 0, 0),               // first check
                t(now - 60_000, 3, now - 5_000),    // checked 5 s ago (interval 30 s)
                t(now - 60_000, 3, now - 30_000),   // due again
                t(now - 600_000, 15, now - 30_000), // limit reached
                t(now - 600_000, 15, now - 1_000),  // limit reached, not yet rested
            ],
            now,
            6_000,
            30_000,
            15,
        );
        let at = |v: &[PendingTransaction]| v.iter().map(|t| now - t.store_ms).collect::<Vec<_>>();
        assert_eq!(at(&check), vec![7_000, 60_000]);
        assert_eq!(check[1].checks, 3);
        assert_eq!(at(&give_up), vec![600_000]);
    }
}
