//! A 3-node group in one process over real TCP: election, replication, failover.

// Test helpers may unwrap.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftmq_proto::{TopicConfig, TopicName};
use raftmq_raft::{Placement, RaftNode, RaftResponse, Replica, ReplicaConfig, TcpConnector};
use raftmq_store::{BatchWriter, Command, EntryPayload, MessageRef, Store, StoreConfig};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

struct Node {
    replica: Replica,
    stop: CancellationToken,
    _dir: TempDir,
}

async fn start_group(n: u64) -> anyhow::Result<Vec<Node>> {
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?.to_string();
        peers.insert(
            id,
            RaftNode {
                raft_addr: addr.clone(),
                client_addr: format!("client-{id}"),
            },
        );
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for (id, listener) in (1..=n).zip(listeners) {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(Store::open(
            dir.path().join("store"),
            StoreConfig::default(),
        )?);
        let mut cfg = ReplicaConfig::new("c", "g", id, peers.clone());
        cfg.election_timeout_ms = (300, 600);
        cfg.heartbeat_ms = 50;
        let replica =
            Replica::start(cfg, store, dir.path(), Arc::new(TcpConnector::default())).await?;
        let stop = CancellationToken::new();
        let serve = raftmq_proto::serve_tarpc!(
            listener,
            None,
            {
                let server = replica.server();
                move |_| raftmq_proto::RaftService::serve(server.clone())
            },
            stop.clone()
        );
        tokio::spawn(serve);
        let r = replica.clone();
        tokio::spawn(async move { r.bootstrap().await });
        nodes.push(Node {
            replica,
            stop,
            _dir: dir,
        });
    }
    Ok(nodes)
}

async fn wait_leader(nodes: &[Node], skip: Option<usize>) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if Some(i) != skip && n.replica.is_leader() {
                return Ok(i);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no leader elected within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes through whichever node leads, following a leadership change (a fresh group can
/// re-elect once while its election timers settle); returns the writer's index.
async fn write_via_leader(nodes: &[Node], payload: Bytes) -> anyhow::Result<(usize, RaftResponse)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = wait_leader(nodes, None).await?;
        match nodes[leader].replica.write(payload.clone()).await {
            Ok((_, r)) => return Ok((leader, r)),
            Err(raftmq_raft::Error::NotLeader { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn batch(topic: &str, queue: u32, n: usize) -> Bytes {
    let mut w = BatchWriter::new();
    for i in 0..n {
        let body = format!("m{i}");
        w.push(&MessageRef {
            topic,
            queue_id: queue,
            tag: "",
            keys: &[],
            properties: &[],
            body: body.as_bytes(),
            born_ms: 0,
            store_ms: 0,
            flags: 0,
            reconsume_times: 0,
        })
        .unwrap();
    }
    Bytes::from(
        EntryPayload::Messages(Bytes::from(w.finish()))
            .encode()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_and_fail_over() -> anyhow::Result<()> {
    let nodes = start_group(3).await?;
    let topic = Bytes::from(
        EntryPayload::Command(Command::UpsertTopic(TopicConfig::new(
            TopicName::from("T"),
            2,
        )))
        .encode()?,
    );
    let mut leader = write_via_leader(&nodes, topic).await?.0;
    let mut expected = 0u64;
    for _ in 0..20 {
        let (writer, response) = write_via_leader(&nodes, batch("T", 0, 5)).await?;
        leader = writer;
        match response {
            RaftResponse::Messages(m) => {
                assert_eq!(m.len(), 5);
                for (i, o) in m.iter().enumerate() {
                    assert_eq!(
                        *o,
                        Placement::Stored {
                            queue_id: 0,
                            offset: expected + i as u64
                        }
                    );
                }
                expected += 5;
            }
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
    // A follower is told the leader's client address.
    let follower = (leader + 1) % 3;
    match nodes[follower].replica.write(batch("T", 0, 1)).await {
        Err(raftmq_raft::Error::NotLeader { leader_addr, .. }) => {
            assert_eq!(
                leader_addr.as_deref(),
                Some(format!("client-{}", leader + 1).as_str())
            );
        }
        other => anyhow::bail!("a follower accepted a write: {other:?}"),
    }
    // Every replica applies the same offsets.
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in &nodes {
        loop {
            if n.replica.store().queue_bounds("T", 0).ok() == Some((0, expected)) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "replica did not catch up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Stop the leader; the others elect a new one that keeps the offsets going.
    nodes[leader].stop.cancel();
    nodes[leader].replica.shutdown().await;
    let new_leader = wait_leader(&nodes, Some(leader)).await?;
    assert_ne!(new_leader, leader);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match nodes[new_leader].replica.write(batch("T", 0, 1)).await {
            Ok((_, RaftResponse::Messages(m))) => {
                assert_eq!(
                    m,
                    vec![Placement::Stored {
                        queue_id: 0,
                        offset: expected
                    }]
                );
                break;
            }
            Ok(other) => anyhow::bail!("unexpected {other:?}"),
            Err(e) => {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "new leader never accepted a write: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    for n in &nodes {
        n.stop.cancel();
        n.replica.shutdown().await;
    }
    Ok(())
}
