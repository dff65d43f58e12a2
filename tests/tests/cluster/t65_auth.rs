//! Authentication and access control with `[auth] enabled = true`: no credential, a wrong
//! secret, a replayed or tampered answer are refused with nothing applied; the permission
//! matrix holds; users survive a failover; the C++ RocketMQ client signs its way in.

use std::time::Duration;

use raftmq_client::core::{ctx, Credentials};
use raftmq_client::{Error, Message, Producer};
use raftmq_proto::auth::{self, AclPerm, AclResource, UserUpdate};
use raftmq_proto::broker::{HelloRequest, PullMessageRequest};
use raftmq_proto::{
    BrokerServiceClient, ConsumerGroup, Offset, QueueId, TopicName, WireError, PROTOCOL_VERSION,
};

use crate::harness::{http_get, wait_until, Cluster, Tuning};
use crate::rmq::{acked_bodies, Rmq};

const T: Duration = Duration::from_secs(60);
const ROOT: (&str, &str) = ("root", "root-secret-1");

fn creds(k: &str, s: &str) -> Option<Credentials> {
    Some(Credentials {
        access_key: k.into(),
        secret_key: s.into(),
    })
}

async fn auth_cluster() -> anyhow::Result<Cluster> {
    let c = Cluster::start(
        &[("broker-a", 3)],
        Tuning {
            auth_admin: Some((ROOT.0.into(), ROOT.1.into())),
            ..Tuning::default()
        },
    )
    .await?;
    c.wait_leader("broker-a", T).await?;
    Ok(c)
}

async fn add_user(c: &Cluster, name: &str, secret: &str) -> anyhow::Result<()> {
    c.admin()?
        .put_user(UserUpdate {
            access_key: name.into(),
            create: Some(true),
            secret_key: Some(secret.into()),
            ..UserUpdate::default()
        })
        .await?;
    Ok(())
}

async fn producer(c: &Cluster, who: Option<Credentials>) -> anyhow::Result<Producer> {
    Ok(Producer::builder()
        .namesrv([c.namesrv.clone()])
        .with_credentials(who)
        .build()?)
}

fn refused(e: &Error) -> bool {
    matches!(e, Error::Wire(WireError::NotAuthorized(_)))
        || e.to_string().contains("not authorized")
}

/// Messages stored in every queue of `topic`, as the admin sees them.
async fn stored(c: &Cluster, topic: &str) -> anyhow::Result<u64> {
    let s = c.admin()?.topic_status(topic).await?;
    Ok(s.iter().map(|(_, q)| q.max_offset.0 - q.min_offset.0).sum())
}

/// A pull from the leader as `who`.
async fn pull(
    c: &Cluster,
    who: Option<Credentials>,
    topic: &str,
    group: &str,
) -> Result<usize, Error> {
    let leader = c
        .wait_leader("broker-a", T)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let addr = c.node("broker-a", leader).client_addr.clone();
    let core = c.core_as(who).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut n = 0;
    for q in 0..4 {
        let req = PullMessageRequest {
            consumer_group: ConsumerGroup::from(group),
            topic: TopicName::from(topic),
            queue_id: QueueId(q),
            offset: Offset(0),
            max_msgs: 100,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
            tags: vec![],
        };
        n += core
            .call(&addr, Duration::from_secs(5), |b, cx| async move {
                b.pull(cx, req).await
            })
            .await?
            .messages
            .len();
    }
    Ok(n)
}

async fn grant(c: &Cluster, user: &str, on: AclResource, perm: AclPerm) -> anyhow::Result<()> {
    c.admin()?.set_acl(user, on, Some(perm)).await?;
    Ok(())
}

/// A raw native connection to `addr` that said hello.
async fn raw(addr: &str) -> anyhow::Result<BrokerServiceClient> {
    let t = raftmq_proto::transport::connect(
        &raftmq_proto::stream::Dialer::plain(),
        addr,
        Duration::from_secs(2),
    )
    .await?;
    let b = BrokerServiceClient::new(Default::default(), t).spawn();
    b.hello(
        ctx(Duration::from_secs(2)),
        HelloRequest {
            protocol_version: PROTOCOL_VERSION,
            client_id: "t65".into(),
        },
    )
    .await??;
    Ok(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t65_native_auth_refuses_strangers_and_enforces_the_acl() -> anyhow::Result<()> {
    let mut c = auth_cluster().await?;
    let admin = c.admin()?;
    admin.create_topic("AuthT", 4, None).await?;
    admin.create_topic("Other", 4, None).await?;

    tracing::info!("--- /metrics asks for the admin's keys; /healthz stays open for probes");
    let basic = |k: &str, s: &str| {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{k}:{s}"));
        format!("Authorization: Basic {b}\r\n")
    };
    for n in &c.nodes {
        let (code, head, _) = http_get(&n.http_addr, "/metrics", "", None).await?;
        assert_eq!(code, 401, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: basic"),
            "{head}"
        );
        let wrong = basic(ROOT.0, "not-the-secret");
        assert_eq!(
            http_get(&n.http_addr, "/metrics", &wrong, None).await?.0,
            401
        );
        let (code, _, body) =
            http_get(&n.http_addr, "/metrics", &basic(ROOT.0, ROOT.1), None).await?;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("raftmq_raft_term{"), "{body}");
        assert_eq!(http_get(&n.http_addr, "/healthz", "", None).await?.0, 200);
    }

    tracing::info!("--- no credential: refused, nothing stored");
    let anon = producer(&c, None).await?;
    let e = anon
        .send(Message::new("AuthT", "anon"))
        .await
        .expect_err("an anonymous send must be refused");
    assert!(refused(&e), "{e}");
    assert!(e.to_string().contains("has not authenticated"), "{e}");
    let e = c
        .admin_as(None)?
        .delete_topic("AuthT")
        .await
        .expect_err("anonymous admin");
    assert!(refused(&e), "{e}");

    add_user(&c, "alice", "alice-secret").await?;
    add_user(&c, "bob", "bob-secret-1").await?;
    add_user(&c, "carol", "carol-secret").await?;
    grant(
        &c,
        "alice",
        AclResource::Topic("AuthT".into()),
        AclPerm::Pub,
    )
    .await?;
    grant(&c, "bob", AclResource::Topic("AuthT".into()), AclPerm::Sub).await?;
    grant(&c, "bob", AclResource::Group("g-bob".into()), AclPerm::Sub).await?;

    tracing::info!("--- a wrong secret: refused");
    let wrong = producer(&c, creds("alice", "not-her-secret")).await?;
    let e = wrong
        .send(Message::new("AuthT", "wrong"))
        .await
        .expect_err("a wrong secret must be refused");
    assert!(
        e.to_string().contains("wrong signature for user alice"),
        "{e}"
    );
    assert_eq!(stored(&c, "AuthT").await?, 0, "nothing applied");

    tracing::info!("--- the permission matrix");
    let alice = producer(&c, creds("alice", "alice-secret")).await?;
    for i in 0..10 {
        alice.send(Message::new("AuthT", format!("m{i}"))).await?;
    }
    assert_eq!(stored(&c, "AuthT").await?, 10);
    let e = alice
        .send(Message::new("Other", "x"))
        .await
        .expect_err("alice has no PUB on Other");
    assert!(
        e.to_string()
            .contains("not authorized: user alice lacks PUB on topic Other"),
        "{e}"
    );
    let e = pull(&c, creds("alice", "alice-secret"), "AuthT", "g-bob")
        .await
        .expect_err("PUB-only cannot consume");
    assert!(
        e.to_string()
            .contains("user alice lacks SUB on topic AuthT"),
        "{e}"
    );
    let bob = producer(&c, creds("bob", "bob-secret-1")).await?;
    let e = bob
        .send(Message::new("AuthT", "x"))
        .await
        .expect_err("SUB-only cannot send");
    assert!(
        e.to_string().contains("user bob lacks PUB on topic AuthT"),
        "{e}"
    );
    assert_eq!(
        pull(&c, creds("bob", "bob-secret-1"), "AuthT", "g-bob").await?,
        10
    );
    let e = pull(&c, creds("bob", "bob-secret-1"), "AuthT", "g-other")
        .await
        .expect_err("no SUB on that group");
    assert!(
        e.to_string()
            .contains("user bob lacks SUB on group g-other"),
        "{e}"
    );
    let e = bob
        .send(Message::new("%RETRY%g-other", "x"))
        .await
        .expect_err("another group's retry topic");
    assert!(refused(&e), "{e}");
    let carol = c.admin_as(creds("carol", "carol-secret"))?;
    let e = carol.delete_topic("AuthT").await.expect_err("normal user");
    assert!(
        e.to_string().contains("user carol lacks admin rights"),
        "{e}"
    );
    let leader = c.wait_leader("broker-a", T).await?;
    let other = (1..=3).find(|n| *n != leader).unwrap_or(1);
    let e = carol
        .remove_node("broker-a", other)
        .await
        .expect_err("normal user");
    assert!(refused(&e), "{e}");
    let e = carol
        .transfer_leader("broker-a", other)
        .await
        .expect_err("normal user");
    assert!(refused(&e), "{e}");
    let e = carol
        .put_user(UserUpdate {
            access_key: "mallory".into(),
            create: Some(true),
            secret_key: Some("mallory-secret".into()),
            admin: Some(true),
            ..UserUpdate::default()
        })
        .await
        .expect_err("normal user");
    assert!(refused(&e), "{e}");
    assert_eq!(
        stored(&c, "AuthT").await?,
        10,
        "nothing applied by refusals"
    );
    assert_eq!(c.admin()?.group_status("broker-a").await?.nodes.len(), 3);

    tracing::info!("--- replayed and tampered challenge answers");
    let addr = c.node("broker-a", leader).client_addr.clone();
    let a = raw(&addr).await?;
    let nonce_a = a.auth_challenge(ctx(T)).await??;
    let answer = auth::sign_challenge("alice-secret", &nonce_a, "alice");
    a.authenticate(ctx(T), "alice".into(), answer.clone())
        .await??;
    let b = raw(&addr).await?;
    let _nonce_b = b.auth_challenge(ctx(T)).await??;
    let e = b
        .authenticate(ctx(T), "alice".into(), answer.clone())
        .await?
        .expect_err("a replayed answer");
    assert!(matches!(e, WireError::NotAuthorized(_)), "{e}");
    let e = b
        .authenticate(ctx(T), "alice".into(), answer)
        .await?
        .expect_err("a challenge is single-use");
    assert!(e.to_string().contains("no challenge"), "{e}");
    let nonce_b = b.auth_challenge(ctx(T)).await??;
    let for_bob = auth::sign_challenge("alice-secret", &nonce_b, "alice");
    let e = b
        .authenticate(ctx(T), "bob".into(), for_bob)
        .await?
        .expect_err("an answer for another user");
    assert!(matches!(e, WireError::NotAuthorized(_)), "{e}");
    let e = b
        .topic_status(ctx(T), TopicName::from("AuthT"))
        .await?
        .expect_err("b never authenticated");
    assert!(matches!(e, WireError::NotAuthorized(_)), "{e}");

    tracing::info!("--- users survive the loss of the leader");
    c.kill9("broker-a", leader);
    let new = c.wait_leader("broker-a", T).await?;
    assert_ne!(new, leader);
    let alice2 = producer(&c, creds("alice", "alice-secret")).await?;
    wait_until("alice sends through the new leader", T, || async {
        Ok(alice2.send(Message::new("AuthT", "after")).await?)
    })
    .await?;

    tracing::info!("--- a deleted user loses its open connections' rights at once");
    c.admin()?.delete_user("alice").await?;
    let e = alice2
        .send(Message::new("AuthT", "gone"))
        .await
        .expect_err("deleted user");
    assert!(refused(&e), "{e}");
    c.restart("broker-a", leader)?;
    wait_until("the restarted node knows the users", T, || async {
        let users = c.admin()?.list_users().await?;
        let names: Vec<_> = users[0].1.iter().map(|u| u.access_key.clone()).collect();
        anyhow::ensure!(names == ["bob", "carol"], "{names:?}");
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t65_cpp_client_signs_its_requests_and_strangers_are_refused() -> anyhow::Result<()> {
    let c = auth_cluster().await?;
    let admin = c.admin()?;
    admin.create_topic("CppAuth", 4, None).await?;
    for (name, secret) in [("app", "app-secret-1"), ("reader", "reader-secret")] {
        add_user(&c, name, secret).await?;
    }
    grant(
        &c,
        "app",
        AclResource::Topic("CppAuth".into()),
        AclPerm::PubSub,
    )
    .await?;
    grant(
        &c,
        "app",
        AclResource::Group("cpp-auth".into()),
        AclPerm::Sub,
    )
    .await?;
    let rmq = Rmq::new(&c.namesrv)?;

    tracing::info!("--- signed sends and consumption");
    let signed = ["--access-key", "app", "--secret-key", "app-secret-1"];
    let consumer = rmq.consumer(
        "CppAuth",
        "cpp-auth",
        &[&signed[..], &["--max-s", "120"]].concat(),
    )?;
    rmq.produce("CppAuth", &[&signed[..], &["--count", "20"]].concat())?;
    consumer.wait_acked(20, T)?;
    let (records, _) = consumer.stop()?;
    assert_eq!(acked_bodies(&records).len(), 20);
    assert_eq!(stored(&c, "CppAuth").await?, 20);

    tracing::info!("--- unsigned, wrongly signed and unpermitted sends are refused");
    for args in [
        vec!["--count", "1", "--op-timeout-s", "60"],
        vec![
            "--access-key",
            "app",
            "--secret-key",
            "wrong-secret",
            "--count",
            "1",
            "--op-timeout-s",
            "60",
        ],
        vec![
            "--access-key",
            "reader",
            "--secret-key",
            "reader-secret",
            "--count",
            "1",
            "--op-timeout-s",
            "60",
        ],
    ] {
        let mut all = vec!["produce", "--topic", "CppAuth"];
        all.extend_from_slice(&args);
        let lines = rmq.run(&all)?;
        let failed = lines
            .iter()
            .filter_map(|l| l.get("error").and_then(|e| e.as_str()))
            .collect::<Vec<_>>();
        assert!(!failed.is_empty(), "{args:?}: {lines:?}");
    }
    assert_eq!(
        stored(&c, "CppAuth").await?,
        20,
        "nothing applied by refusals"
    );
    Ok(())
}
