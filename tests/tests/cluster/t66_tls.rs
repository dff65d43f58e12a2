//! TLS on every port (`[tls]` on the brokers, `--cert/--key` on the NameServer): clients
//! that trust the CA work, Raft runs over mutual TLS (an election after kill -9 included),
//! strangers are refused with a clear error rather than a hang, and a replaced certificate
//! is served without a restart.

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Context as _;
use raftmq_client::core::ctx;
use raftmq_client::{Admin, ClientConfig, Message, Producer, TlsTrust};
use raftmq_proto::namesrv::RegisterBrokerRequest;
use raftmq_proto::stream::Dialer;
use raftmq_proto::tls::TlsClient;
use raftmq_proto::{BrokerGroup, NamesrvServiceClient, NodeId, Role, WireError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{http_get, raftmq_bin, wait_until, Cluster, Tuning};

const T: Duration = Duration::from_secs(60);

fn raftmq(c: &Cluster, args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(raftmq_bin()?)
        .args(["-n", &c.namesrv])
        .args(args)
        .env_remove("RAFTMQ_TLS_CA")
        .output()?)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Sends `n` messages to `topic` over TLS; returns how many were acknowledged.
async fn send(c: &Cluster, topic: &str, n: usize) -> anyhow::Result<usize> {
    let p = Producer::builder()
        .namesrv([c.namesrv.clone()])
        .with_tls(c.tls_trust())
        .build()?;
    let mut ok = 0;
    for i in 0..n {
        if p.send(Message::new(topic, format!("m{i}"))).await.is_ok() {
            ok += 1;
        }
    }
    Ok(ok)
}

/// TLS trusting the cluster's CA, presenting no certificate.
fn anonymous_dialer(c: &Cluster) -> anyhow::Result<Dialer> {
    let trust = c.tls_trust().context("a TLS cluster")?;
    Ok(Dialer::tls(TlsClient::load(&trust)?))
}

/// Reads from a TLS or plain stream until it closes or fails: how many bytes came first.
async fn read_until_closed(s: &mut (impl AsyncReadExt + Unpin)) -> anyhow::Result<usize> {
    let mut buf = [0u8; 256];
    let mut total = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await {
            Err(_) => anyhow::bail!("the server kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(total),
            Ok(Ok(n)) => total += n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t66_tls_on_every_port_refuses_strangers_and_reloads_certificates() -> anyhow::Result<()> {
    let mut c = Cluster::start(
        &[("broker-a", 3)],
        Tuning {
            tls: true,
            auto_create: true,
            ..Tuning::default()
        },
    )
    .await?;
    // The harness's clients trust the CA: finding a leader means the NameServer and client
    // ports speak TLS, and an election over the Raft port's mutual TLS took place.
    let leader = c.wait_leader("broker-a", T).await?;
    c.admin()?.create_topic("Tls", 4, None).await?;
    assert_eq!(send(&c, "Tls", 50).await?, 50);

    // The HTTP listeners of the nodes and the NameServer speak HTTPS with their
    // certificates; plain HTTP is answered with what to do.
    let https = TlsClient::load(&c.tls_trust().context("a TLS cluster")?)?;
    let ns_http = c.namesrv_http.clone();
    for (addr, series) in [
        (&c.node("broker-a", leader).http_addr, "raftmq_raft_term{"),
        (&ns_http, "raftmq_namesrv_brokers{"),
    ] {
        let (code, _, body) = http_get(addr, "/metrics", "", Some(&https)).await?;
        assert_eq!(code, 200, "{addr}: {body}");
        assert!(body.contains(series), "{addr}: {body}");
        let (code, _, body) = http_get(addr, "/metrics", "", None).await?;
        assert_eq!(code, 400, "{addr}: {body}");
        assert!(body.contains("use https://"), "{addr}: {body}");
    }

    // The CLI with the CA works; without it, it fails at once and says what to do.
    let ca = c.cert_dir().join("ca.pem");
    let ca = ca.to_str().unwrap_or_default();
    let ok = raftmq(&c, &["--tls-ca", ca, "cluster", "list"])?;
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout)
            .matches("broker-a")
            .count(),
        3,
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let started = std::time::Instant::now();
    let plain = raftmq(&c, &["topic", "status", "Tls"])?;
    assert!(!plain.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a plaintext client hung"
    );
    assert!(stderr(&plain).contains("--tls-ca"), "{}", stderr(&plain));

    // A client trusting another CA is refused by every port it tries.
    let other = c.dir.path().join("other-ca");
    let made = Command::new(raftmq_bin()?)
        .args(["certs", "dev"])
        .arg(&other)
        .output()?;
    assert!(made.status.success(), "{}", stderr(&made));
    let stranger = Admin::with_config(ClientConfig {
        namesrv: vec![c.namesrv.clone()],
        tls: Some(TlsTrust {
            ca: other.join("ca.pem"),
            identity: None,
        }),
        ..ClientConfig::default()
    })?;
    let e = stranger.cluster_nodes().await.unwrap_err().to_string();
    assert!(e.contains("TLS handshake"), "{e}");
    let stranger = Dialer::tls(TlsClient::load(&TlsTrust {
        ca: other.join("ca.pem"),
        identity: None,
    })?);
    let client_port = c.node("broker-a", leader).client_addr.clone();
    let e = stranger
        .connect(&client_port, Duration::from_secs(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");

    // The NameServer takes registrations only from clients with a certificate the CA
    // signed: a TLS client without one may read routes but not register a fake broker.
    let ns = NamesrvServiceClient::new(
        Default::default(),
        raftmq_proto::transport::connect(
            &anonymous_dialer(&c)?,
            &c.namesrv,
            Duration::from_secs(10),
        )
        .await?,
    )
    .spawn();
    let fake = RegisterBrokerRequest {
        cluster: "TestCluster".into(),
        broker_group: BrokerGroup::from("broker-evil"),
        node_id: NodeId(1),
        group_id: None,
        client_addr: "127.0.0.1:1".into(),
        role: Role::Leader,
        term: 1,
        leader: Some(NodeId(1)),
        topics: Vec::new(),
    };
    let refused = ns
        .register_broker(ctx(Duration::from_secs(5)), fake)
        .await?;
    assert!(
        matches!(&refused, Err(WireError::NotAuthorized(m)) if m.contains("--client-ca")),
        "{refused:?}"
    );
    assert!(ns.get_cluster(ctx(Duration::from_secs(5))).await?.is_ok());
    let groups = c.admin()?.cluster_nodes().await?;
    assert!(groups.iter().all(|n| n.group == "broker-a"), "{groups:?}");

    // The Raft port: plaintext is closed at once; TLS without a node certificate is
    // refused; writes keep flowing.
    let raft = c.node("broker-a", leader).raft_listen.clone();
    let mut s = TcpStream::connect(&raft).await?;
    // One write: the server drops the connection on the first bytes it reads, so a second
    // write could meet its reset (a read of that reset counts as closed).
    let mut frame = vec![0, 0, 0, 60];
    frame.extend([7u8; 60]);
    s.write_all(&frame).await?;
    assert_eq!(read_until_closed(&mut s).await?, 0);
    match anonymous_dialer(&c)?
        .connect(&raft, Duration::from_secs(10))
        .await
    {
        Err(_) => {}
        Ok(mut s) => {
            // TLS 1.3: the client's half completes; the server's alert ends it.
            let _ = s.write_all(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]).await;
            assert_eq!(read_until_closed(&mut s).await?, 0);
        }
    }
    let log = c.log_text("broker-a", leader);
    wait_until("the refused Raft connections logged", T, || {
        let log = c.log_text("broker-a", leader);
        async move {
            anyhow::ensure!(log.contains("TLS connection refused"), "not yet");
            Ok(())
        }
    })
    .await
    .map_err(|e| e.context(log))?;
    assert_eq!(send(&c, "Tls", 10).await?, 10);

    // Kill -9 the leader: the others elect a new one over mutual TLS; nothing is lost.
    c.kill9("broker-a", leader);
    let next = c.wait_leader("broker-a", T).await?;
    assert_ne!(next, leader);
    let sent = wait_until("writes on the new leader", T, || {
        let c = &c;
        async move {
            let n = send(c, "Tls", 10).await?;
            anyhow::ensure!(n == 10, "{n} of 10");
            Ok(n)
        }
    })
    .await?;
    c.restart("broker-a", leader)?;
    let stored: u64 = c
        .admin()?
        .topic_status("Tls")
        .await?
        .iter()
        .map(|(_, q)| q.max_offset.0 - q.min_offset.0)
        .sum();
    assert!(stored >= (50 + 10 + sent) as u64, "{stored} stored");

    // Replace every certificate with one of a new CA, in place: within the reload check
    // the NameServer, the client ports and the Raft peers serve and trust the new ones,
    // with no restart, and a client trusting only the old CA is refused.
    let old_ca = c.dir.path().join("old-ca.pem");
    std::fs::copy(c.cert_dir().join("ca.pem"), &old_ca)?;
    let kept = Command::new(raftmq_bin()?)
        .args(["certs", "dev"])
        .arg(c.cert_dir())
        .output()?;
    assert!(
        !kept.status.success() && stderr(&kept).contains("--force"),
        "{kept:?}"
    );
    let mut renew = Command::new(raftmq_bin()?);
    renew.args(["certs", "dev", "--force"]).arg(c.cert_dir());
    for n in &c.nodes {
        renew.args(["--name", &n.ip.to_string()]);
    }
    let renewed = renew.output()?;
    assert!(renewed.status.success(), "{}", stderr(&renewed));
    // A fresh client each time: open connections keep the session they began with.
    let old_trust = || {
        Admin::with_config(ClientConfig {
            namesrv: vec![c.namesrv.clone()],
            tls: Some(TlsTrust {
                ca: old_ca.clone(),
                identity: None,
            }),
            ..ClientConfig::default()
        })
    };
    wait_until("the new certificates served", T, || {
        let (c, old_trust) = (&c, old_trust());
        async move {
            anyhow::ensure!(
                old_trust?.cluster_nodes().await.is_err(),
                "the old certificate is still served"
            );
            let nodes = c.admin()?.cluster_nodes().await?;
            anyhow::ensure!(nodes.len() == 3, "{} nodes", nodes.len());
            Ok(())
        }
    })
    .await?;
    // Raft works on the new certificates: a restarted follower dials its peers afresh and
    // is dialled afresh; with the leader then killed, it must take part in the election.
    let now = c.wait_leader("broker-a", T).await?;
    let follower = (1..=3).find(|&i| i != now).unwrap_or(1);
    c.kill9("broker-a", follower);
    c.restart("broker-a", follower)?;
    wait_until("the restarted follower caught up", T, || {
        let c = &c;
        async move {
            let nodes = c.admin()?.cluster_nodes().await?;
            let seen = nodes
                .iter()
                .find(|n| n.node_id == follower)
                .map(|n| (n.role.clone(), n.lag));
            // Caught up on the new certificates; it may have won an election meanwhile
            // (seen once: its restart raced a heartbeat), which is just as good.
            anyhow::ensure!(
                matches!(&seen, Some((r, Some(0))) if r == "follower" || r == "leader"),
                "follower {follower}: {seen:?}"
            );
            Ok(())
        }
    })
    .await?;
    let now = c.wait_leader("broker-a", T).await?;
    c.kill9("broker-a", now);
    assert_ne!(c.wait_leader("broker-a", T).await?, now);
    wait_until("writes after the certificate change", T, || {
        let c = &c;
        async move {
            let n = send(c, "Tls", 5).await?;
            anyhow::ensure!(n == 5, "{n} of 5");
            Ok(())
        }
    })
    .await?;
    Ok(())
}
