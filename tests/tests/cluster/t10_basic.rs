//! Basic scenarios: election and routes, two groups, clear errors on bad input.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use raftmq_client::{Error, Message, Producer};
use raftmq_proto::broker::SendMessageRequest;
use raftmq_proto::{QueueId, TopicName, WireError, MAX_MESSAGE_BYTES};

use crate::harness::{raftmq_bin, wait_until, Cluster, Tuning};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_three_processes_elect_a_leader_and_routes_show_it() -> anyhow::Result<()> {
    let mut c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    tracing::info!("--- waiting for a leader");
    let leader = c.wait_leader("broker-a", T).await?;
    let admin = c.admin()?;
    admin.create_topic("TopicTest", 4, None).await?;
    let route = wait_until("a route naming the leader", T, || async {
        let r = admin.topic_route("TopicTest").await?;
        let g = &r.groups[0];
        anyhow::ensure!(
            g.leader.map(|l| l.0) == Some(leader),
            "route leader {:?}",
            g.leader
        );
        anyhow::ensure!(g.nodes.len() == 3, "route lists {} nodes", g.nodes.len());
        Ok(r)
    })
    .await?;
    assert_eq!(route.groups[0].write_queues, 4);
    assert_eq!(
        route.groups[0].leader_addr(),
        Some(c.node("broker-a", leader).client_addr.as_str())
    );
    let nodes = admin.cluster_nodes().await?;
    assert_eq!(nodes.iter().filter(|n| n.role == "leader").count(), 1);
    assert_eq!(nodes.iter().filter(|n| n.role == "follower").count(), 2);
    tracing::info!("--- SIGTERM stops a node cleanly");
    let status = c.stop("broker-a", leader)?;
    assert!(status.success(), "exit status {status}");
    let new = c.wait_leader("broker-a", T).await?;
    assert_ne!(new, leader);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_two_groups_share_a_topic_and_fail_over_on_their_own() -> anyhow::Result<()> {
    let mut c = Cluster::start(&[("broker-a", 3), ("broker-b", 3)], Tuning::default()).await?;
    let la = c.wait_leader("broker-a", T).await?;
    let lb = c.wait_leader("broker-b", T).await?;
    let admin = c.admin()?;
    let created = admin.create_topic("Spread", 2, None).await?;
    assert_eq!(created, vec!["broker-a", "broker-b"]);
    let route = wait_until("both groups in the route", T, || async {
        let r = admin.topic_route("Spread").await?;
        anyhow::ensure!(r.groups.len() == 2, "{} groups", r.groups.len());
        Ok(r)
    })
    .await?;
    assert_eq!(
        route
            .groups
            .iter()
            .map(|g| g.broker_group.as_str())
            .collect::<Vec<_>>(),
        vec!["broker-a", "broker-b"]
    );
    let producer = Producer::builder()
        .namesrv([c.namesrv.clone()])
        .send_timeout(Duration::from_secs(20))
        .build()?;
    let mut groups = std::collections::BTreeSet::new();
    for i in 0..20 {
        groups.insert(
            producer
                .send(Message::new("Spread", format!("m{i}")))
                .await?
                .broker_group,
        );
    }
    assert_eq!(groups.len(), 2, "round-robin should use both groups");

    tracing::info!("--- killing broker-a's leader; broker-b must not notice");
    c.kill9("broker-a", la);
    let new_la = c.wait_leader("broker-a", T).await?;
    assert_ne!(new_la, la);
    assert_eq!(
        c.wait_leader("broker-b", T).await?,
        lb,
        "broker-b changed leader"
    );
    for i in 0..20 {
        producer
            .send(Message::new("Spread", format!("after{i}")))
            .await?;
    }
    producer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_bad_input_gets_clear_errors_and_loses_nothing() -> anyhow::Result<()> {
    let c = Cluster::start(&[("broker-a", 3)], Tuning::default()).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    let admin = c.admin()?;
    admin.create_topic("Known", 1, None).await?;
    let producer = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    let ok = wait_until("the first send", T, || async {
        Ok(producer.send(Message::new("Known", "first")).await?)
    })
    .await?;

    // Oversized: refused by the client before sending, and by the broker if sent anyway.
    let big = Bytes::from(vec![b'x'; MAX_MESSAGE_BYTES + 1]);
    match producer.send(Message::new("Known", big.clone())).await {
        Err(Error::Invalid(m)) => assert!(m.contains("exceeds"), "{m}"),
        other => anyhow::bail!("oversized message accepted: {other:?}"),
    }
    let core = c.core()?;
    let leader_addr = c.node("broker-a", leader).client_addr.clone();
    let req = SendMessageRequest {
        producer_group: "p".into(),
        topic: TopicName::from("Known"),
        queue_id: QueueId(0),
        messages: vec![Message::new("Known", big)],
    };
    match core
        .call(&leader_addr, Duration::from_secs(10), |b, cx| async move {
            b.send(cx, req).await
        })
        .await
    {
        Err(Error::Wire(WireError::Invalid(m))) => assert!(m.contains("exceeds"), "{m}"),
        other => anyhow::bail!("broker accepted an oversized message: {other:?}"),
    }

    // Unknown topic.
    match producer.send(Message::new("NoSuchTopic", "x")).await {
        Err(Error::NoRoute { reason, .. }) => assert!(reason.contains("create it"), "{reason}"),
        other => anyhow::bail!("send to an unknown topic: {other:?}"),
    }

    // A write to a follower names the leader.
    let follower = c.nodes.iter().find(|n| n.id != leader).unwrap();
    let req = SendMessageRequest {
        producer_group: "p".into(),
        topic: TopicName::from("Known"),
        queue_id: QueueId(0),
        messages: vec![Message::new("Known", "to-follower")],
    };
    let err = wait_until("a NotLeader naming the leader's address", T, || {
        let req = req.clone();
        let core = &core;
        let follower = &follower.client_addr;
        async move {
            match core
                .call(follower, Duration::from_secs(5), |b, cx| async move {
                    b.send(cx, req).await
                })
                .await
            {
                Err(Error::Wire(
                    e @ WireError::NotLeader {
                        leader_addr: Some(_),
                        ..
                    },
                )) => Ok(e),
                other => anyhow::bail!("{other:?}"),
            }
        }
    })
    .await?;
    assert!(err.to_string().contains(&leader_addr), "{err}");

    // Queue out of range.
    let req = SendMessageRequest {
        producer_group: "p".into(),
        topic: TopicName::from("Known"),
        queue_id: QueueId(7),
        messages: vec![Message::new("Known", "x")],
    };
    match core
        .call(&leader_addr, Duration::from_secs(10), |b, cx| async move {
            b.send(cx, req).await
        })
        .await
    {
        Err(Error::Wire(WireError::Invalid(m))) => {
            assert!(m.contains("queue 7 does not exist"), "{m}")
        }
        other => anyhow::bail!("send to a missing queue: {other:?}"),
    }

    // Malformed config: a clear message and a non-zero exit.
    let bad = c.dir.path().join("bad.toml");
    std::fs::write(&bad, "group = \"g\"\nnode_id = \"one\"\n")?;
    let out = Command::new(raftmq_bin()?)
        .args(["broker", "--config"])
        .arg(&bad)
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("node_id") && stderr.contains("bad.toml"),
        "{stderr}"
    );

    // Nothing accepted earlier was lost.
    let msgs = c.read_queue(&leader_addr, "Known", ok.queue_id.0).await?;
    assert_eq!(msgs.len(), 1);
    assert_eq!(&msgs[0].1[..], b"first");
    producer.shutdown().await;
    Ok(())
}
