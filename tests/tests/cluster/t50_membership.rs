//! A wiped follower catches up (snapshot + log entries); nodes join and leave while
//! producers keep going.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftmq_client::{Message, Producer};

use crate::harness::{wait_until, Cluster, Tuning};

const T: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_wiped_follower_catches_up_and_membership_changes_keep_availability(
) -> anyhow::Result<()> {
    let tuning = Tuning {
        snapshot_every: Some(50),
        ..Tuning::default()
    };
    let mut c = Cluster::start(&[("broker-a", 3)], tuning).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    let admin = c.admin()?;
    admin.create_topic("Wipe", 2, None).await?;
    let producer = Producer::builder()
        .namesrv([c.namesrv.clone()])
        .send_timeout(Duration::from_secs(20))
        .build()?;
    for i in 0..300 {
        producer.send(Message::new("Wipe", format!("m{i}"))).await?;
    }
    let follower = c
        .nodes
        .iter()
        .find(|n| n.id != leader)
        .map(|n| n.id)
        .unwrap();
    c.kill9("broker-a", follower);
    c.wipe("broker-a", follower)?;
    for i in 300..400 {
        producer.send(Message::new("Wipe", format!("m{i}"))).await?;
    }
    c.restart("broker-a", follower)?;
    let leader_addr = c.node("broker-a", leader).client_addr.clone();
    let follower_addr = c.node("broker-a", follower).client_addr.clone();
    for q in 0..2 {
        let want = c.read_queue(&leader_addr, "Wipe", q).await?;
        wait_until("the wiped follower to serve the same data", T, || async {
            let got = c.read_queue(&follower_addr, "Wipe", q).await?;
            anyhow::ensure!(got == want, "{} vs {} messages", got.len(), want.len());
            Ok(())
        })
        .await?;
    }
    let flog = c.log_tail("broker-a", follower);
    assert!(
        std::fs::read_to_string(c.dir.path().join(format!("broker-a-n{follower}.log")))?
            .contains("installed a snapshot"),
        "the wiped follower caught up without a snapshot; log tail:\n{flog}"
    );

    tracing::info!("--- adding node 4 and removing a follower while producing");
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (p, stop, failures, sent) = (
            producer.clone(),
            stop.clone(),
            failures.clone(),
            sent.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                match p.send(Message::new("Wipe", format!("live{i}"))).await {
                    Ok(_) => sent.fetch_add(1, Ordering::SeqCst),
                    Err(_) => failures.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
    };
    let joiner = c.spawn_joiner("broker-a", 4).await?;
    let (raft, client) = (
        c.nodes[joiner].raft_addr.clone(),
        c.nodes[joiner].client_addr.clone(),
    );
    admin.add_node("broker-a", 4, &raft, &client).await?;
    let removed = c
        .nodes
        .iter()
        .find(|n| n.id != leader && n.id != 4)
        .map(|n| n.id)
        .unwrap();
    admin.remove_node("broker-a", removed).await?;
    let before = sent.load(Ordering::SeqCst);
    wait_until("sends to keep succeeding", T, || async {
        anyhow::ensure!(sent.load(Ordering::SeqCst) > before + 50, "stalled");
        Ok(())
    })
    .await?;
    stop.store(true, Ordering::SeqCst);
    sender.await?;
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "sends failed during membership changes"
    );
    let status = admin.group_status("broker-a").await?;
    let ids: Vec<u64> = status.nodes.iter().map(|n| n.node_id.0).collect();
    assert!(
        ids.contains(&4) && !ids.contains(&removed),
        "members now {ids:?}"
    );
    for q in 0..2 {
        let want = c.read_queue(&leader_addr, "Wipe", q).await?;
        wait_until("node 4 to hold everything", T, || async {
            let got = c.read_queue(&client, "Wipe", q).await?;
            anyhow::ensure!(got == want, "{} vs {} messages", got.len(), want.len());
            Ok(())
        })
        .await?;
    }
    producer.shutdown().await;
    Ok(())
}
