//! Transactional messages on a 3-node group: what consumers see is exactly what was
//! committed, through check-backs, producer deaths and kill -9 of the leader.
//!
//! The brokers check back after 1 s every second and roll back after a few checks, so the
//! slow paths take seconds, not minutes. Queues are read from every node
//! ([`Cluster::bodies_everywhere`]), so "delivered" means "in the queue on every replica".

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftmq_client::transaction::{EndTransactionOutcome, TransactionProducer, TransactionState};
use raftmq_client::{Message, MessageExt};

use crate::harness::{wait_until, Cluster, Tuning};
use crate::rmq::raftmq;

const T: Duration = Duration::from_secs(60);

fn tuning(check_max: u32) -> Tuning {
    Tuning {
        delay_levels: Some(vec!["1s"; 18].join(" ")),
        extra_config: format!(
            "transaction_timeout_ms = 1000\ntransaction_check_interval_ms = 1000\ntransaction_check_max = {check_max}\n"
        ),
        ..Tuning::default()
    }
}

/// Check-back answers by body; `Unknown` for bodies not listed.
#[derive(Clone, Default)]
struct Answers(Arc<Mutex<HashMap<String, TransactionState>>>);

impl Answers {
    fn set(&self, body: &str, s: TransactionState) {
        self.0.lock().unwrap().insert(body.to_owned(), s);
    }

    fn checker(&self) -> impl Fn(&MessageExt) -> TransactionState + Send + Sync + 'static {
        let map = self.0.clone();
        move |m: &MessageExt| {
            let body = String::from_utf8_lossy(&m.body).into_owned();
            map.lock()
                .unwrap()
                .get(&body)
                .copied()
                .unwrap_or(TransactionState::Unknown)
        }
    }
}

fn producer(c: &Cluster, answers: &Answers) -> anyhow::Result<TransactionProducer> {
    Ok(TransactionProducer::builder()
        .namesrv([c.namesrv.clone()])
        .group("tx-g")
        .checker(answers.checker())
        .build()?)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_rollbacks_and_check_backs_decide_exactly_what_consumers_see() -> anyhow::Result<()>
{
    let c = Cluster::start(&[("broker-a", 3)], tuning(3)).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    let admin = c.admin()?;
    admin.create_topic("Tx", 1, None).await?;
    let answers = Answers::default();
    answers.set("checked-commit", TransactionState::Commit);
    answers.set("checked-rollback", TransactionState::Rollback);
    let p = producer(&c, &answers)?;

    let mut sends = HashMap::new();
    for (body, local) in [
        ("commit", TransactionState::Commit),
        ("rollback", TransactionState::Rollback),
        ("checked-commit", TransactionState::Unknown),
        ("checked-rollback", TransactionState::Unknown),
        ("never-decided", TransactionState::Unknown),
    ] {
        let r = p
            .send_in_transaction(Message::new("Tx", body), |_| local)
            .await?;
        anyhow::ensure!(r.end_error.is_none(), "{body}: {:?}", r.end_error);
        let expected = match local {
            TransactionState::Commit => EndTransactionOutcome::Committed,
            TransactionState::Rollback => EndTransactionOutcome::RolledBack,
            TransactionState::Unknown => EndTransactionOutcome::LeftPending,
        };
        anyhow::ensure!(r.ended == Some(expected), "{body}: {:?}", r.ended);
        anyhow::ensure!(
            r.send.queue_offset.is_none(),
            "a half message has no offset yet"
        );
        sends.insert(body, r.send);
    }
    // A delayed transactional message with a tag: the delay runs from the commit.
    let r = p
        .send_in_transaction(
            Message::new("Tx", "delayed")
                .with_tag("TagA")
                .with_delay_level(1),
            |_| TransactionState::Commit,
        )
        .await?;
    anyhow::ensure!(r.ended == Some(EndTransactionOutcome::Committed));

    // The committed one is there at once; undecided ones are not, and are listed.
    anyhow::ensure!(c.bodies_everywhere("Tx", 0).await?.contains("commit"));
    let listed = raftmq(&c.namesrv, &["--json", "tx", "list"])?;
    let never = &sends["never-decided"].msg_id;
    anyhow::ensure!(listed.contains(never.as_str()), "tx list: {listed}");
    anyhow::ensure!(
        listed.contains("\"producer_group\":\"tx-g\""),
        "tx list: {listed}"
    );

    // Check-backs settle the rest; the undecided one is rolled back after 3 checks.
    wait_until("check-backs to settle every transaction", T, || async {
        let got = c.bodies_everywhere("Tx", 0).await?;
        let want = set(&["commit", "checked-commit", "delayed"]);
        anyhow::ensure!(got == want, "delivered {got:?}");
        let pending = admin.pending_transactions(100).await?;
        anyhow::ensure!(pending.is_empty(), "still pending: {pending:?}");
        Ok(())
    })
    .await?;
    let log = c.log_text("broker-a", leader);
    anyhow::ensure!(
        log.contains("rolling back a transaction nobody decided after the check limit"),
        "the limit's rollback is logged"
    );
    // The delayed one kept its tag and lost its prepared mark.
    let core = c.core()?;
    let node = &c.nodes[0].client_addr;
    let msgs = core
        .call(node, Duration::from_secs(5), |b, cx| async move {
            b.pull(
                cx,
                raftmq_proto::broker::PullMessageRequest {
                    consumer_group: "t27-reader".into(),
                    topic: "Tx".into(),
                    queue_id: raftmq_proto::QueueId(0),
                    offset: raftmq_proto::Offset(0),
                    max_msgs: 100,
                    max_bytes: 1 << 20,
                    max_wait_ms: 0,
                    tags: vec![],
                },
            )
            .await
        })
        .await?
        .messages;
    let delayed = msgs
        .iter()
        .find(|m| m.body.as_ref() == b"delayed")
        .ok_or_else(|| anyhow::anyhow!("no delayed message"))?;
    anyhow::ensure!(delayed.tag == "TagA", "tag {:?}", delayed.tag);
    anyhow::ensure!(
        !delayed.properties.iter().any(|(k, _)| k == "TRAN_MSG"),
        "a committed message is not marked prepared: {:?}",
        delayed.properties
    );

    // Deciding again changes nothing, whatever the decision.
    for body in ["commit", "rollback", "checked-commit"] {
        let o = p
            .end(&"Tx".into(), &sends[body], TransactionState::Rollback)
            .await?;
        anyhow::ensure!(o == EndTransactionOutcome::AlreadyEnded, "{body}: {o:?}");
    }
    anyhow::ensure!(
        c.bodies_everywhere("Tx", 0).await? == set(&["commit", "checked-commit", "delayed"])
    );

    // The CLI: a committed and a rolled-back transactional send.
    for state in ["commit", "rollback"] {
        let body = format!("cli-{state}");
        raftmq(
            &c.namesrv,
            &[
                "produce",
                "--topic",
                "Tx",
                "--body",
                &body,
                "--count",
                "1",
                "--transaction",
                state,
            ],
        )?;
    }
    let got = c.bodies_everywhere("Tx", 0).await?;
    anyhow::ensure!(
        got.contains("cli-commit") && !got.contains("cli-rollback"),
        "{got:?}"
    );
    p.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_the_leader_and_of_the_producer_lose_no_decision() -> anyhow::Result<()> {
    let mut c = Cluster::start(&[("broker-a", 3)], tuning(30)).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("TxKill", 1, None).await?;
    let answers = Answers::default();
    let p = producer(&c, &answers)?;

    // Between the half message and the decision: the new leader has the half message.
    let half = p
        .send_in_transaction(Message::new("TxKill", "decided-after-failover"), |_| {
            TransactionState::Unknown
        })
        .await?
        .send;
    // Between the commit and any delivery.
    let committed = p
        .send_in_transaction(Message::new("TxKill", "committed-before-failover"), |_| {
            TransactionState::Commit
        })
        .await?;
    anyhow::ensure!(committed.ended == Some(EndTransactionOutcome::Committed));
    let rolled = p
        .send_in_transaction(
            Message::new("TxKill", "rolled-back-before-failover"),
            |_| TransactionState::Rollback,
        )
        .await?;
    anyhow::ensure!(rolled.ended == Some(EndTransactionOutcome::RolledBack));
    c.kill9("broker-a", leader);
    let new_leader = c.wait_leader("broker-a", T).await?;
    anyhow::ensure!(new_leader != leader);
    let o = wait_until("the new leader to take the decision", T, || async {
        Ok(p.end(&"TxKill".into(), &half, TransactionState::Commit)
            .await?)
    })
    .await?;
    anyhow::ensure!(o == EndTransactionOutcome::Committed, "{o:?}");

    // A producer that dies undecided: another instance of its group answers the check.
    let orphan = p
        .send_in_transaction(Message::new("TxKill", "orphan"), |_| {
            TransactionState::Unknown
        })
        .await?;
    anyhow::ensure!(orphan.ended == Some(EndTransactionOutcome::LeftPending));
    p.shutdown().await;
    drop(p);
    let heir_answers = Answers::default();
    heir_answers.set("orphan", TransactionState::Commit);
    let heir = producer(&c, &heir_answers)?;

    c.restart("broker-a", leader)?;
    wait_until("exactly the committed ones, on every node", T, || async {
        let got = c.bodies_everywhere("TxKill", 0).await?;
        let want = set(&[
            "decided-after-failover",
            "committed-before-failover",
            "orphan",
        ]);
        anyhow::ensure!(got == want, "delivered {got:?}");
        Ok(())
    })
    .await?;
    // The checks of the orphan were counted in the replicated state and it is settled.
    anyhow::ensure!(c.admin()?.pending_transactions(10).await?.is_empty());
    heir.shutdown().await;
    Ok(())
}
