//! Operator mistakes the broker must survive: a second process on a live data dir, a node
//! of another cluster under a live node's name; and the log lines that tell the story.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use raftmq_client::{Message, Producer};

use crate::harness::{free_port, raftmq_bin, wait_until, Cluster, Tuning};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_second_process_on_a_live_data_dir_fails_at_once_and_the_first_loses_nothing(
) -> anyhow::Result<()> {
    let c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Locked", 1, None).await?;
    let producer = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    for i in 0..100 {
        producer
            .send(Message::new("Locked", format!("before-{i}")))
            .await?;
    }

    tracing::info!("--- a copy of the leader's config on other ports, same data_dir");
    let n = c.node("broker-a", leader);
    let ip = n.ip.to_string();
    let mut toml = std::fs::read_to_string(&n.config)?;
    for addr in [&n.client_addr, &n.raft_listen, &n.http_addr] {
        toml = toml.replace(addr.as_str(), &format!("{ip}:{}", free_port(&ip)?));
    }
    let copy = c.dir.path().join("copy.toml");
    std::fs::write(&copy, toml)?;
    let started = Instant::now();
    let out = Command::new(raftmq_bin()?)
        .args(["broker", "--config"])
        .arg(&copy)
        .stdin(Stdio::null())
        .output()?;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second process ran: {stderr}");
    assert!(stderr.contains("is in use by pid"), "{stderr}");
    assert!(took < Duration::from_secs(1), "it took {took:?} to refuse");

    tracing::info!("--- the first keeps serving and lost nothing");
    for i in 0..100 {
        producer
            .send(Message::new("Locked", format!("after-{i}")))
            .await?;
    }
    let leader = c.wait_leader("broker-a", T).await?;
    let got: BTreeSet<String> = c
        .read_queue(&c.node("broker-a", leader).client_addr, "Locked", 0)
        .await?
        .into_iter()
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .collect();
    assert_eq!(got.len(), 200);
    assert!((0..100)
        .all(|i| got.contains(&format!("before-{i}")) && got.contains(&format!("after-{i}"))));
    producer.shutdown().await;
    Ok(())
}

/// Role-change lines in a log.
fn role_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            [
                "became leader",
                "stepped down",
                "follows node",
                "has no leader",
            ]
            .iter()
            .any(|p| l.contains(p))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_a_leader_kill_logs_one_line_per_role_change_and_few_warnings() -> anyhow::Result<()> {
    let mut c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    let survivors: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    // A follower may learn of the leader (and log it) after the leader is elected: count
    // lines only from when every survivor has said whom it follows.
    wait_until("every survivor logs whom it follows", T, || async {
        for n in &survivors {
            let line = format!("node {n} follows node {leader} in broker-a");
            anyhow::ensure!(
                c.log_text("broker-a", *n).contains(&line),
                "node {n} has not logged {line:?} yet"
            );
        }
        Ok(())
    })
    .await?;
    let before: Vec<usize> = survivors
        .iter()
        .map(|n| c.log_text("broker-a", *n).len())
        .collect();
    assert!(
        role_lines(&c.log_text("broker-a", leader))
            .iter()
            .any(|l| l.contains(&format!("node {leader} became leader of broker-a"))),
        "no line says who leads: {}",
        c.log_tail("broker-a", leader)
    );
    c.kill9("broker-a", leader);
    let new = c.wait_leader("broker-a", T).await?;
    tracing::info!("--- watching the survivors' logs for 20 s with a peer down");
    tokio::time::sleep(Duration::from_secs(20)).await;
    for (n, from) in survivors.iter().zip(before) {
        let log = c.log_text("broker-a", *n);
        let since = &log[from..];
        let roles = role_lines(since);
        let expected = if *n == new {
            format!("node {n} became leader of broker-a")
        } else {
            format!("node {n} follows node {new} in broker-a")
        };
        assert_eq!(
            roles.iter().filter(|l| l.contains(&expected)).count(),
            1,
            "node {n}: {roles:#?}"
        );
        assert!(
            roles.len() <= 2,
            "node {n} logged {} role lines: {roles:#?}",
            roles.len()
        );
        let warns: Vec<&str> = since.lines().filter(|l| l.contains("WARN")).collect();
        assert!(
            warns.len() <= 3,
            "node {n} warned {} times in 20 s: {warns:#?}",
            warns.len()
        );
        if *n == new {
            assert!(
                warns.iter().any(
                    |l| l.contains("peer unreachable") && l.contains(&format!("peer={leader}"))
                ),
                "the new leader did not say it lost node {leader}: {warns:#?}"
            );
        }
    }
    Ok(())
}

async fn group_id(admin: &raftmq_client::Admin) -> anyhow::Result<raftmq_proto::GroupId> {
    wait_until("the group id", T, || async {
        admin
            .group_status("broker-a")
            .await?
            .group_id
            .ok_or_else(|| anyhow::anyhow!("no group id yet"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_a_node_of_another_cluster_cannot_join_and_its_registration_is_refused(
) -> anyhow::Result<()> {
    let mut a = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let mut b = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    a.wait_leader("broker-a", T).await?;
    b.wait_leader("broker-a", T).await?;
    let (admin_a, admin_b) = (a.admin()?, b.admin()?);
    let (id_a, id_b) = (group_id(&admin_a).await?, group_id(&admin_b).await?);
    assert_ne!(id_a, id_b, "two clusters made the same group id");

    tracing::info!("--- two clusters with the same group name issue different message ids");
    admin_a.create_topic("Ids", 1, None).await?;
    admin_b.create_topic("Ids", 1, None).await?;
    let pa = Producer::builder().namesrv([a.namesrv.clone()]).build()?;
    let pb = Producer::builder().namesrv([b.namesrv.clone()]).build()?;
    let ra = pa.send(Message::new("Ids", "a")).await?;
    let rb = pb.send(Message::new("Ids", "b")).await?;
    assert_ne!(
        ra.msg_id[..8],
        rb.msg_id[..8],
        "{} vs {}",
        ra.msg_id,
        rb.msg_id
    );
    assert_ne!(ra.unique_key, rb.unique_key);
    pb.shutdown().await;

    tracing::info!("--- node 3 of cluster a restarted on a copy of cluster b's node 3");
    b.stop("broker-a", 3)?;
    a.kill9("broker-a", 3);
    let (from, to) = (
        b.node("broker-a", 3).data_dir.clone(),
        a.node("broker-a", 3).data_dir.clone(),
    );
    std::fs::remove_dir_all(&to)?;
    let cp = Command::new("cp").arg("-a").arg(&from).arg(&to).status()?;
    anyhow::ensure!(cp.success(), "cp -a failed");
    drop(b);
    a.restart("broker-a", 3)?;

    for i in 0..20 {
        pa.send(Message::new("Ids", format!("after-{i}"))).await?;
    }
    wait_until(
        "the stray refuses the leader and is refused by the NameServer",
        T,
        || async {
            let log = a.log_text("broker-a", 3);
            anyhow::ensure!(
                log.contains("refusing Raft RPCs from a node of another group")
                    && log.contains("NameServer refused the registration"),
                "not yet: {}",
                a.log_tail("broker-a", 3)
            );
            Ok(())
        },
    )
    .await?;
    // Routes keep cluster a's identity and leader while the stray keeps registering (every
    // 2 s in these tests).
    let leader = a.wait_leader("broker-a", T).await?;
    for _ in 0..3 {
        let route = admin_a.topic_route("Ids").await?;
        assert_eq!(route.groups[0].group_id, Some(id_a));
        assert_eq!(route.groups[0].leader.map(|n| n.0), Some(leader));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let namesrv_log = std::fs::read_to_string(a.dir.path().join("namesrv.log"))?;
    assert_eq!(
        namesrv_log.matches("registration refused").count(),
        1,
        "refusals are logged once: {namesrv_log}"
    );
    // The stray took none of cluster a's entries: the leader cannot replicate to it.
    let status = admin_a.group_status("broker-a").await?;
    let lag = status
        .nodes
        .iter()
        .find(|n| n.node_id.0 == 3)
        .and_then(|n| n.lag);
    assert!(
        lag.unwrap_or(u64::MAX) >= 20,
        "node 3 caught up: lag {lag:?}"
    );
    pa.shutdown().await;
    Ok(())
}
