//! Hostile input on every port: forged Raft votes, far-future deadlines, huge announced
//! frames, garbage, and more idle connections than the open-files limit allows. The group
//! keeps its leader, the processes stay up, memory stays bounded, writes keep flowing.

use raftmq_proto::stream::Dialer;
use std::time::Duration;

use bytes::Bytes;
use raftmq_client::{Message, Producer};
use raftmq_proto::raft::RaftCaller;
use raftmq_proto::{RaftServiceClient, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{wait_until, Cluster, Tuning};

const T: Duration = Duration::from_secs(60);

openraft::declare_raft_types!(
    /// A broker group's Raft types as far as a vote's bytes go (standard leader ids, u64
    /// node ids), declared here as an outsider would: tests see only the wire.
    Forged:
        D = String,
        R = String,
        NodeId = u64,
        Node = openraft::BasicNode,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

/// Sends a forged vote or pre-vote (leadership transfer on, no log) to a Raft port.
async fn forge(
    raft_addr: &str,
    rpc: &str,
    candidate: u64,
    term: u64,
) -> anyhow::Result<Result<Bytes, WireError>> {
    let stream = Dialer::plain()
        .connect(raft_addr, Duration::from_secs(5))
        .await?;
    let client =
        RaftServiceClient::new(Default::default(), raftmq_proto::transport::framed(stream)).spawn();
    let vote = openraft::Vote {
        leader_id: openraft::impls::leader_id_std::LeaderId {
            term,
            voted_for: candidate,
        },
        committed: false,
    };
    let mut req = openraft::raft::VoteRequest::<Forged>::new(vote, None);
    req.leadership_transfer = true;
    let body = Bytes::from(bincode::serialize(&req)?);
    let from = RaftCaller {
        group: "broker-a".into(),
        group_id: None,
    };
    let ctx = tarpc::context::current();
    Ok(match rpc {
        "vote" => client.vote(ctx, from, body).await?,
        _ => client.pre_vote(ctx, from, body).await?,
    })
}

async fn leader_term(c: &Cluster) -> anyhow::Result<u64> {
    let nodes = c.admin()?.cluster_nodes().await?;
    nodes
        .iter()
        .find(|n| n.role == "leader")
        .map(|n| n.term)
        .ok_or_else(|| anyhow::anyhow!("no leader in {nodes:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_forged_votes_to_every_raft_port_leave_the_leader_in_place() -> anyhow::Result<()> {
    forged_votes_leave_the_leader_in_place(Tuning::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_forged_votes_with_auth_on_leave_the_leader_in_place() -> anyhow::Result<()> {
    // Client authentication does not guard the Raft port (TLS does): the vote guard must
    // hold by itself there too.
    forged_votes_leave_the_leader_in_place(Tuning {
        auth_admin: Some(("root".into(), "root-secret-for-forged-votes".into())),
        ..Tuning::default()
    })
    .await
}

/// Forged votes and pre-votes to every node's Raft port are refused, the leader and its
/// term stay, writes flow, and each node logs the refusal once or twice.
async fn forged_votes_leave_the_leader_in_place(tuning: Tuning) -> anyhow::Result<()> {
    let (c, leader, producer) = group_with_topic("Forged", tuning).await?;
    let term = leader_term(&c).await?;
    for n in &c.nodes {
        for rpc in ["vote", "pre_vote"] {
            // A stranger at the last term, a member's name at it, a stranger at the next
            // term: what took the group down for good, or made the leader step down.
            for (candidate, at) in [(99, u64::MAX), (n.id % 3 + 1, u64::MAX), (99, term + 1)] {
                let e = forge(&n.raft_listen, rpc, candidate, at)
                    .await?
                    .expect_err("a forged vote was taken");
                assert!(
                    e.to_string().contains("refuses the Raft"),
                    "node {}: {rpc} from {candidate} at {at}: {e}",
                    n.id
                );
            }
        }
    }
    send_20(&producer, "Forged", "after").await?;
    assert_eq!(c.wait_leader("broker-a", T).await?, leader);
    assert_eq!(leader_term(&c).await?, term, "the term moved");
    for n in &c.nodes {
        let log = c.log_text("broker-a", n.id);
        let lines = log
            .matches("refusing a Raft RPC no member would send")
            .count();
        assert!(
            (1..=2).contains(&lines),
            "node {}: {lines} refusal lines",
            n.id
        );
    }
    Ok(())
}

/// A tarpc request frame whose deadline is `Duration::MAX` (then junk where the request
/// body belongs): once enough to panic every server.
fn far_future_request() -> Vec<u8> {
    let mut body = vec![0u8, 253];
    body.extend_from_slice(&u64::MAX.to_le_bytes());
    body.push(252);
    body.extend_from_slice(&999_999_999u32.to_le_bytes());
    body.extend_from_slice(&[7u8; 32]);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// A 3-node group with `topic` (one queue) and a producer whose first send to it succeeded;
/// also the leader's id.
async fn group_with_topic(topic: &str, tuning: Tuning) -> anyhow::Result<(Cluster, u64, Producer)> {
    let c = Cluster::start(&[("broker-a", 3)], tuning).await?;
    let leader = c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic(topic, 1, None).await?;
    let producer = Producer::builder()
        .namesrv([c.namesrv.clone()])
        .with_credentials(c.admin_credentials())
        .build()?;
    wait_until("a first send", T, || async {
        Ok(producer.send(Message::new(topic, "before")).await?)
    })
    .await?;
    Ok((c, leader, producer))
}

/// Sends 20 messages to `topic`, each acknowledged.
async fn send_20(producer: &Producer, topic: &str, tag: &str) -> anyhow::Result<()> {
    for i in 0..20 {
        producer
            .send(Message::new(topic, format!("{tag}{i}")))
            .await?;
    }
    Ok(())
}

/// Whether the server closes the connection `rd` reads within `within`.
async fn closed_within(rd: &mut (impl AsyncRead + Unpin), within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Writes `bytes` and waits for the server to close the connection (or 10 s).
async fn send_and_wait_close(addr: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    anyhow::ensure!(
        closed_within(&mut s, Duration::from_secs(10)).await,
        "{addr} kept a connection open after {bytes:02x?}"
    );
    Ok(())
}

/// `connections` connections to `addr` each write `head` and then `mib` MiB of a frame;
/// those still open are kept in `held`. Returns how many the server closed.
async fn flood(
    addr: &str,
    head: &[u8],
    connections: usize,
    mib: usize,
    held: &mut Vec<TcpStream>,
) -> anyhow::Result<usize> {
    let chunk = vec![0u8; 1 << 20];
    let mut refused = 0;
    for _ in 0..connections {
        let mut s = TcpStream::connect(addr).await?;
        let mut ok = s.write_all(head).await.is_ok();
        for _ in 0..mib {
            ok = ok && s.write_all(&chunk).await.is_ok();
        }
        if ok {
            held.push(s);
        } else {
            refused += 1;
        }
    }
    Ok(refused)
}

fn rss_mib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))?;
    Ok(kib / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_hostile_frames_neither_crash_nor_bloat_a_server() -> anyhow::Result<()> {
    let (mut c, leader, producer) = group_with_topic("Hostile", Tuning::default()).await?;
    let n = c.node("broker-a", leader);
    let (client_port, raft_port) = (n.client_addr.clone(), n.raft_listen.clone());
    let ports = [client_port.clone(), c.namesrv.clone(), raft_port];
    for port in &ports {
        send_and_wait_close(port, &far_future_request()).await?;
        // Over the frame limit, and garbage.
        send_and_wait_close(port, &[0x7f, 0xff, 0xff, 0xff, 9, 9, 9, 9, 9, 9, 9, 9]).await?;
        send_and_wait_close(
            port,
            &[0, 0, 0, 12, 0xff, 0xfe, 0xfd, 0xfc, 1, 2, 3, 4, 5, 6, 7, 8],
        )
        .await?;
    }
    // Unfinished frames: announced near the limits (60 MiB native, 15 MiB remoting) and
    // never sent, held open: nothing is reserved for what was only promised.
    let pid = c.pid("broker-a", leader).expect("leader pid");
    let before = rss_mib(pid)?;
    let mut held = Vec::new();
    for i in 0..16 {
        let mut s = TcpStream::connect(&client_port).await?;
        let head: Vec<u8> = if i % 2 == 0 {
            [
                &(60u32 << 20).to_be_bytes()[..],
                &[0, 253, 1, 2, 3, 4, 5, 6, 7, 8],
            ]
            .concat()
        } else {
            [
                &(15u32 << 20).to_be_bytes()[..],
                &[1, 0, 0, 5, 1, 2, 3, 4, 5, 6],
            ]
            .concat()
        };
        s.write_all(&head).await?;
        held.push(s);
    }
    // And 40 connections sending 24 MiB each of a 60 MiB frame (960 MiB in all): past
    // 256 MiB of unfinished frames the server closes such connections.
    let native = [
        &(60u32 << 20).to_be_bytes()[..],
        &[0, 253, 1, 2, 3, 4, 5, 6, 7, 8],
    ]
    .concat();
    let refused = flood(&client_port, &native, 40, 24, &mut held).await?;
    // And 20 RocketMQ clients sending 12 MiB each of a 15 MiB remoting frame: the
    // remoting codec counts against the same budget, so they are closed too.
    let remoting = [
        &(15u32 << 20).to_be_bytes()[..],
        &[1, 0, 0, 5, 1, 2, 3, 4, 5, 6],
    ]
    .concat();
    let refused_remoting = flood(&client_port, &remoting, 20, 12, &mut held).await?;
    wait_until("writes flowing with the frames held", T, || async {
        Ok(producer.send(Message::new("Hostile", "during")).await?)
    })
    .await?;
    let during = rss_mib(pid)?;
    tracing::info!(
        before,
        during,
        refused,
        refused_remoting,
        "RSS (MiB) with unfinished frames held"
    );
    assert!(
        during < before + 600,
        "RSS went from {before} MiB to {during} MiB with 960 MiB of unfinished frames sent"
    );
    assert!(refused > 0, "no connection was refused past the budget");
    assert!(
        refused_remoting > 0,
        "no remoting connection was refused past the budget"
    );
    drop(held);
    send_20(&producer, "Hostile", "after").await?;
    for id in 1..=3 {
        assert!(c.is_running("broker-a", id), "node {id} exited");
        let log = c.log_text("broker-a", id);
        assert!(!log.contains("panicked"), "node {id} panicked:\n{log}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_a_broker_under_ulimit_1024_refuses_idle_connections_and_stays_up() -> anyhow::Result<()>
{
    // This process opens 1,000 sockets; raise its own soft limit as a broker does.
    raftmq_proto::conn_limit::ConnectionLimit::process();
    let tuning = Tuning {
        open_files: Some(1024),
        ..Tuning::default()
    };
    let (mut c, leader, producer) = group_with_topic("Idle", tuning).await?;
    let addr = c.node("broker-a", leader).client_addr.clone();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        if let Ok(s) = TcpStream::connect(&addr).await {
            idle.push(s);
        }
    }
    wait_until("the leader says why it refuses connections", T, || async {
        let log = c.log_text("broker-a", leader);
        anyhow::ensure!(
            log.contains("refusing a connection") && log.contains("open-files limit of 1024"),
            "no refusal line yet"
        );
        Ok(())
    })
    .await?;
    // The producer's connection is older than the flood: it keeps working.
    send_20(&producer, "Idle", "during").await?;
    drop(idle);
    let fresh = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    wait_until("a new client once the idle ones are gone", T, || async {
        Ok(fresh.send(Message::new("Idle", "after")).await?)
    })
    .await?;
    for id in 1..=3 {
        assert!(c.is_running("broker-a", id), "node {id} exited");
        let log = c.log_text("broker-a", id);
        assert!(!log.contains("Too many open files"), "node {id}:\n{log}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_two_thousand_idle_connections_on_every_port_leave_the_group_serving(
) -> anyhow::Result<()> {
    // 500 idle connections to each of the leader's client, Raft and HTTP ports and to the
    // NameServer, under the default limits: the processes stay up, memory stays bounded,
    // old and new clients keep working.
    raftmq_proto::conn_limit::ConnectionLimit::process();
    const EACH: usize = 500;
    let (mut c, leader, producer) = group_with_topic("Idle2k", Tuning::default()).await?;
    let n = c.node("broker-a", leader);
    let http = n.http_addr.clone();
    let ports = [
        n.client_addr.clone(),
        n.raft_listen.clone(),
        http.clone(),
        c.namesrv.clone(),
    ];
    let pid = c.pid("broker-a", leader).expect("the leader runs");
    let rss_before = rss_mib(pid)?;
    let mut idle = Vec::new();
    for port in &ports {
        for i in 0..EACH {
            let s = TcpStream::connect(port)
                .await
                .map_err(|e| anyhow::anyhow!("connection {i} to {port}: {e}"))?;
            idle.push(s);
        }
    }
    send_20(&producer, "Idle2k", "during").await?;
    let fresh = Producer::builder().namesrv([c.namesrv.clone()]).build()?;
    fresh.send(Message::new("Idle2k", "fresh")).await?;
    let (code, _, body) = crate::harness::http_get(&http, "/metrics", "", None).await?;
    anyhow::ensure!(
        code == 200,
        "/metrics answered {code} with 2,000 idle connections"
    );
    anyhow::ensure!(body.contains("raftmq_raft_is_leader"), "/metrics: {body}");
    let rss_during = rss_mib(pid)?;
    eprintln!(
        "{} idle connections: leader RSS {rss_before} -> {rss_during} MiB",
        idle.len()
    );
    assert!(
        rss_during < rss_before + 100,
        "{rss_before} -> {rss_during} MiB"
    );
    // Every idle one is still open (none over a limit) and the group kept its leader.
    assert_eq!(idle.len(), ports.len() * EACH);
    assert_eq!(c.wait_leader("broker-a", T).await?, leader);
    drop(idle);
    for id in 1..=3 {
        assert!(c.is_running("broker-a", id), "node {id} exited");
    }
    assert!(c.namesrv_running(), "the NameServer exited");
    Ok(())
}

/// Starts a 100-byte frame on `port` (its first bytes at once, enough to tell the
/// protocol), then sends one byte a second (it would take 86 s more); returns how long
/// the server took to close the connection.
async fn trickle(port: String) -> anyhow::Result<Duration> {
    let mut s = TcpStream::connect(&port).await?;
    let start = std::time::Instant::now();
    s.write_all(&[0, 0, 0, 100, 0, 253, 1, 2, 3, 4, 5, 6, 7, 8])
        .await?;
    let (mut rd, mut wr) = s.into_split();
    let dribble = tokio::spawn(async move {
        while wr.write_all(&[0]).await.is_ok() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let closed = closed_within(&mut rd, Duration::from_secs(60)).await;
    dribble.abort();
    anyhow::ensure!(closed, "{port} still reading the trickle after 60 s");
    Ok(start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_a_client_trickling_a_frame_is_cut_off() -> anyhow::Result<()> {
    let c = Cluster::start(&[("broker-a", 1)], Tuning::default()).await?;
    c.wait_leader("broker-a", T).await?;
    let ports = [c.node("broker-a", 1).client_addr.clone(), c.namesrv.clone()];
    let took = futures::future::try_join_all(ports.iter().cloned().map(trickle)).await?;
    for (port, after) in ports.iter().zip(took) {
        assert!(
            after >= Duration::from_secs(29),
            "{port} closed after {after:?}, before the frame's time was up"
        );
    }
    Ok(())
}

/// One call on `core`'s cached connection to `addr`.
async fn status(core: &raftmq_client::core::Core, addr: &str) -> anyhow::Result<()> {
    core.call(addr, Duration::from_secs(5), |b, cx| async move {
        b.topic_status(cx, "Idle".into()).await
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_silent_connections_are_closed_and_idle_clients_redial() -> anyhow::Result<()> {
    const IDLE: Duration = Duration::from_secs(3);
    let tuning = Tuning {
        extra_config: "connection_idle_timeout_ms = 3000\nmax_pull_wait_ms = 1000\n".into(),
        ..Tuning::default()
    };
    let (mut c, leader, producer) = group_with_topic("Idle", tuning).await?;
    send_20(&producer, "Idle", "before").await?;
    let client_port = c.node("broker-a", leader).client_addr.clone();
    let raft_port = c.node("broker-a", leader).raft_addr.clone();
    // A client connection made before the silence, used again after it.
    let core = c.core()?;
    status(&core, &client_port).await?;

    // Silent connections: one that sent half a frame header to the client port, one
    // that sent nothing to the Raft port. Both are closed at the idle limit, not held
    // for the 30 s a frame may take or for ever.
    let t0 = std::time::Instant::now();
    let mut half = TcpStream::connect(&client_port).await?;
    half.write_all(&[0, 0]).await?;
    let mut silent = TcpStream::connect(&raft_port).await?;
    for (name, s) in [("client port", &mut half), ("Raft port", &mut silent)] {
        assert!(
            closed_within(s, Duration::from_secs(20)).await,
            "the {name} kept a silent connection for 20 s"
        );
        assert!(
            t0.elapsed() >= IDLE,
            "the {name} closed it before the limit"
        );
    }
    // The cached client connection, idle since before them, was closed too; the
    // next call re-dials instead of failing (a half second for its close to be read).
    tokio::time::sleep(Duration::from_millis(500)).await;
    status(&core, &client_port)
        .await
        .map_err(|e| anyhow::anyhow!("the first call after the silence failed: {e}"))?;
    send_20(&producer, "Idle", "after").await?;

    // Raft connections that were quiet (votes) are re-dialled too: a failover after the
    // silence elects a new leader and takes writes.
    c.kill9("broker-a", leader);
    let next = wait_until("a new leader", T, || {
        let c = &c;
        async move {
            let l = c.wait_leader("broker-a", Duration::from_secs(5)).await?;
            anyhow::ensure!(l != leader, "still the old leader");
            Ok(l)
        }
    })
    .await?;
    send_20(&producer, "Idle", "failover").await?;
    assert!(c.is_running("broker-a", next));
    Ok(())
}
