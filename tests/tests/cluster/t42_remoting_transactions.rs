//! Transactions over RocketMQ remoting with an independent client: crates.io
//! `rocketmq-client-rust` 1.0.0's `TransactionMQProducer` sends half messages
//! (TRANSACTION_PREPARED sysflag), ends them with END_TRANSACTION, and answers the broker's
//! CHECK_TRANSACTION_STATE for the ones its local transaction left unknown.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::{wait_until, Cluster, Tuning};
use crate::rmq::rr_tx;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remoting_transactional_producer_commits_rolls_back_and_answers_checks(
) -> anyhow::Result<()> {
    let c = Cluster::start(
        &[("broker-a", 3)],
        Tuning {
            extra_config: "transaction_timeout_ms = 1000\ntransaction_check_interval_ms = 1000\ntransaction_check_max = 4\n".into(),
            ..Tuning::default()
        },
    )
    .await?;
    c.wait_leader("broker-a", T).await?;
    let admin = c.admin()?;
    admin.create_topic("RrTx", 1, None).await?;

    // Two unknown ones: the check-back (answered commit) settles them while it runs.
    let ns = c.namesrv.clone();
    let lines = tokio::task::spawn_blocking(move || {
        rr_tx(
            &[
                &ns,
                "RrTx",
                "rr-tx-g",
                "commit,rollback,unknown,unknown",
                "commit",
                "8",
            ],
            T,
        )
    })
    .await??;
    let sends: Vec<_> = lines.iter().filter(|l| l.get("i").is_some()).collect();
    anyhow::ensure!(sends.len() == 4, "{lines:?}");
    for s in &sends {
        anyhow::ensure!(s.get("error").is_none(), "a send failed: {s}");
    }
    let checked: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.get("check").and_then(|v| v.as_str()))
        .collect();
    anyhow::ensure!(
        checked.contains("rr-2-unknown") && checked.contains("rr-3-unknown"),
        "CHECK_TRANSACTION_STATE reached the producer for the unknown ones: {checked:?}"
    );
    wait_until(
        "the committed and checked-and-committed ones on every node",
        T,
        || async {
            let got = c.bodies_everywhere("RrTx", 0).await?;
            let want: BTreeSet<String> = ["rr-0-commit", "rr-2-unknown", "rr-3-unknown"]
                .into_iter()
                .map(String::from)
                .collect();
            anyhow::ensure!(got == want, "delivered {got:?}");
            anyhow::ensure!(admin.pending_transactions(10).await?.is_empty());
            Ok(())
        },
    )
    .await?;

    // A producer whose check-back answers rollback: nothing of it is ever delivered.
    let ns = c.namesrv.clone();
    let lines = tokio::task::spawn_blocking(move || {
        rr_tx(&[&ns, "RrTx", "rr-tx-g2", "unknown", "rollback", "6"], T)
    })
    .await??;
    anyhow::ensure!(
        lines.iter().any(|l| l.get("check").is_some()),
        "the second producer was asked: {lines:?}"
    );
    wait_until("the rolled-back transaction to be gone", T, || async {
        anyhow::ensure!(admin.pending_transactions(10).await?.is_empty());
        Ok(())
    })
    .await?;
    let got = c.bodies_everywhere("RrTx", 0).await?;
    anyhow::ensure!(
        got.len() == 3 && !got.iter().any(|b| b.starts_with("rr-0-unknown")),
        "{got:?}"
    );
    Ok(())
}
