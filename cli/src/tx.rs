//! `raftmq tx ...`: transactions (half messages) waiting for their producer's decision.

use clap::Subcommand;
use raftmq_client::Admin;
use raftmq_proto::clock;
use serde_json::json;

use crate::output::Out;

/// `raftmq tx ...`
#[derive(Debug, Subcommand)]
pub enum TxCmd {
    /// Pending half messages of every broker group: age, producer group and how many
    /// times the leader checked back (rolled back at `transaction_check_max`, 15).
    List {
        /// At most this many per broker group, oldest first.
        #[arg(long, default_value_t = 1000)]
        max: u32,
    },
}

/// Runs a `tx` subcommand.
///
/// # Errors
/// A broker group unreachable, or not admin.
pub async fn tx(admin: &Admin, out: &Out, cmd: TxCmd) -> anyhow::Result<()> {
    match cmd {
        TxCmd::List { max } => {
            let pending = admin.pending_transactions(max).await?;
            let now = clock::now_ms();
            if pending.is_empty() {
                out.text("no pending transactions".into());
            } else {
                out.text(format!(
                    "{:<10} {:<26} {:<20} {:<16} {:>9} {:>6}",
                    "GROUP", "MSG ID", "PRODUCER GROUP", "TOPIC", "AGE", "CHECKS"
                ));
            }
            for (group, p) in pending {
                let age_ms = now.saturating_sub(p.store_ms);
                out.line(
                    json!({"broker_group": group, "msg_id": p.msg_id, "unique_key": p.unique_key,
                           "producer_group": p.producer_group, "topic": p.topic, "queue_id": p.queue_id,
                           "store_ms": p.store_ms, "age_ms": age_ms, "checks": p.checks,
                           "last_check_ms": p.last_check_ms}),
                    format!(
                        "{group:<10} {:<26} {:<20} {:<16} {:>8.1}s {:>6}",
                        p.msg_id,
                        p.producer_group,
                        p.topic,
                        age_ms as f64 / 1000.0,
                        p.checks
                    ),
                );
            }
            Ok(())
        }
    }
}
