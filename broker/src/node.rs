//! Running a broker node: store + Raft + the front ends + background duties, with an
//! orderly shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use raftmq_proto::RaftService;
use raftmq_raft::{Connector, RaftNode, Replica, ReplicaConfig, TcpConnector};
use raftmq_store::{FlushMode, LogConfig, RetentionPolicy, Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clients::ClientRegistry;
use crate::config::{BrokerConfig, Flush};
use crate::core::{Broker, Shared};
use crate::data_lock::DataDirLock;
use crate::error::Error;
use crate::rpc::FrontEnd;
use crate::send::Proposer;

/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// Retention woken early (the disk above its high-water mark) runs at most this often.
const RETENTION_MIN_GAP: Duration = Duration::from_secs(5);
/// How often retention looks whether a topic was deleted (an atomic read).
const TOPIC_DELETION_CHECK: Duration = Duration::from_secs(2);
/// How long retention waits for a snapshot, and then for the log purge, under pressure.
const RETENTION_COMPACT_WAIT: Duration = Duration::from_secs(30);

fn store_config(cfg: &BrokerConfig) -> StoreConfig {
    StoreConfig {
        log: LogConfig {
            segment_bytes: cfg.segment_bytes,
            flush: match cfg.flush {
                Flush::Sync => FlushMode::Sync,
                Flush::Async => FlushMode::Async,
            },
            page_cache_keep: (cfg.page_cache_keep_bytes > 0).then_some(cfg.page_cache_keep_bytes),
            ..LogConfig::default()
        },
        ..StoreConfig::default()
    }
}

fn replica_config(cfg: &BrokerConfig) -> Result<ReplicaConfig, Error> {
    let peers: BTreeMap<u64, RaftNode> = cfg
        .peer_map()?
        .into_iter()
        .map(|(id, raft_addr)| {
            let client_addr = if id == cfg.node_id {
                cfg.advertise_addr().to_owned()
            } else {
                String::new()
            };
            (
                id,
                RaftNode {
                    raft_addr,
                    client_addr,
                },
            )
        })
        .collect();
    let mut rc = ReplicaConfig::new(&cfg.cluster, &cfg.group, cfg.node_id, peers);
    rc.heartbeat_ms = cfg.raft_heartbeat_ms;
    rc.election_timeout_ms = (cfg.raft_election_min_ms, cfg.raft_election_max_ms);
    rc.snapshot_every_entries = cfg.raft_snapshot_every_entries;
    rc.follower_inline_sync = cfg.follower_inline_sync;
    rc.commit_hold = Duration::from_millis(cfg.raft_commit_hold_ms);
    Ok(rc)
}

/// Runs a broker node until `shutdown` resolves: Raft on `raft_listener`, clients on each
/// of `front_ends` (the client port, and any other listener that serves the core). On
/// shutdown it stops accepting, finishes in-flight requests, hands leadership away, stops
/// Raft and syncs the store.
///
/// # Errors
/// The store or Raft failed to start.
pub async fn run(
    config: BrokerConfig,
    raft_listener: TcpListener,
    front_ends: Vec<Box<FrontEnd>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let data_dir = config.data_dir();
    raftmq_proto::transport::set_idle_limit(Duration::from_millis(
        config.connection_idle_timeout_ms,
    ));
    // Before anything under it is opened: a second process must not touch a live log.
    let _lock = DataDirLock::acquire(&data_dir)?;
    let store_dir = data_dir.join("store");
    let mut sc = store_config(&config);
    sc.log.segment_bytes = crate::disk::segment_bytes_for(&data_dir, config.segment_bytes);
    let store = Arc::new(
        tokio::task::spawn_blocking(move || Store::open(store_dir, sc))
            .await
            .map_err(std::io::Error::other)??,
    );
    let bind_ip = config
        .raft_listen
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified());
    let tls = crate::tls::NodeTls::load(config.tls.as_ref())?;
    let connector: Arc<dyn Connector> = Arc::new(TcpConnector {
        bind_ip,
        dialer: tls.dialer.clone(),
    });
    let replica = Replica::start(
        replica_config(&config)?,
        store.clone(),
        &data_dir,
        connector.clone(),
    )
    .await?;
    tracing::info!(
        cluster = %config.cluster, group = %config.group, node_id = config.node_id,
        client = %config.listen, raft = %config.raft_listen, data_dir = %data_dir.display(),
        "broker node started"
    );

    let raft_stop = CancellationToken::new();
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let disk = Arc::new(crate::disk::DiskGuard::new(
        config.disk_write_limit_percent,
        config.disk_high_water_percent,
    ));
    let raft_server = {
        let server = replica
            .server()
            .with_gate(Arc::new(crate::disk::ReplicaGate {
                guard: disk.clone(),
                node_id: config.node_id,
            }));
        tasks.spawn(raftmq_proto::serve_tarpc!(
            raft_listener,
            tls.raft_port.clone(),
            move |_| server.clone().serve(),
            raft_stop.clone()
        ))
    };

    let proposer = Proposer::start(replica.clone(), stop.clone(), &tasks);
    let delay_levels = config.delay_levels_ms()?;
    let auth = crate::auth::Authorizer::new(&config.auth, store.clone());
    let counters = Arc::new(crate::metrics::NodeCounters::default());
    let shared = Arc::new(Shared {
        delay_levels,
        clients: ClientRegistry::new(Duration::from_millis(config.client_expiry_ms)),
        config,
        replica: replica.clone(),
        store: store.clone(),
        proposer,
        topics_changed: Notify::new(),
        forwarder: crate::core::forward::Forwarder::new(tls.dialer.clone()),
        pending_commits: Default::default(),
        auth,
        user_writes: Default::default(),
        tls,
        disk,
        counters: counters.clone(),
        checkers: Default::default(),
        drain: Default::default(),
        tx_ends: crate::tx_batcher::EndBatcher::start(replica.clone(), stop.clone(), &tasks),
    });
    let broker = Broker::new(shared.clone());
    let front_end_tasks = TaskTracker::new();
    for f in front_ends {
        tracing::info!(serving = %f.describe(), "front end started");
        front_end_tasks.spawn(f.serve(broker.clone(), stop.clone()));
    }
    front_end_tasks.close();
    let commits = tasks.spawn(crate::core::offsets::run_commits(
        broker.clone(),
        stop.clone(),
    ));
    {
        let r = replica.clone();
        tasks.spawn(async move {
            if let Err(e) = r.bootstrap().await {
                tracing::error!(error = %e, "bootstrap failed");
            }
        });
    }
    tasks.spawn(crate::registration::run(shared.clone(), stop.clone()));
    tasks.spawn(publish_client_addr(shared.clone(), connector, stop.clone()));
    tasks.spawn(retention(shared.clone(), stop.clone()));
    tasks.spawn(crate::disk::run(shared.clone(), stop.clone()));
    tasks.spawn(crate::scheduler::run(shared.clone(), stop.clone()));
    tasks.spawn(crate::tx_checker::run(shared.clone(), stop.clone()));
    tasks.spawn(crate::roles::run(replica.clone(), counters, stop.clone()));

    let fatal = tokio::select! {
        _ = shutdown => None,
        why = replica.stopped() => Some(why),
    };
    match &fatal {
        None => tracing::info!("shutting down: no new connections, finishing in-flight requests"),
        Some(why) => {
            tracing::error!(reason = %why, "the Raft core stopped; shutting the node down")
        }
    }
    if fatal.is_none() && shared.config.hand_over_on_shutdown && replica.is_leader() {
        crate::core::drain::hand_over(&replica).await;
    }
    stop.cancel();
    front_end_tasks.wait().await;
    let _ = commits.await;
    replica.shutdown().await;
    raft_stop.cancel();
    let _ = raft_server.await;
    tasks.close();
    tasks.wait().await;
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.close())
        .await
        .map_err(std::io::Error::other)??;
    if let Some(why) = fatal {
        return Err(Error::Raft(raftmq_raft::Error::Fatal(why)));
    }
    tracing::info!("broker node stopped cleanly");
    Ok(())
}

/// Makes sure the Raft membership carries this node's client address (peers in the config
/// only name Raft addresses).
async fn publish_client_addr(
    shared: Arc<Shared>,
    connector: Arc<dyn Connector>,
    stop: CancellationToken,
) {
    let addr = shared.config.advertise_addr().to_owned();
    let mut backoff = Duration::from_millis(200);
    loop {
        match shared
            .replica
            .publish_client_addr(&addr, connector.as_ref())
            .await
        {
            Ok(true) => backoff = Duration::from_secs(10),
            Ok(false) => backoff = Duration::from_millis(500),
            Err(e) => {
                tracing::debug!(error = %e, "client address not published yet");
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Whether segments holding no live message (a deleted topic's) lie beyond Raft's purge
/// point, so that only a log compaction lets retention free them.
async fn dead_segments_held_by_raft(shared: &Arc<Shared>) -> bool {
    let store = shared.store.clone();
    let dead = match tokio::task::spawn_blocking(move || store.dead_prefix_end()).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot find segments of deleted topics");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the dead-segment scan failed");
            None
        }
    };
    match (dead, shared.replica.purge_limit()) {
        (Some(dead), Ok(purged)) => dead > purged,
        _ => false,
    }
}

async fn retention(shared: Arc<Shared>, stop: CancellationToken) {
    let max_age = Duration::from_secs(shared.config.retention_hours * 3600);
    let mut ran = std::time::Instant::now();
    let mut deletions = shared.store.topic_deletions();
    loop {
        // A deleted topic may leave whole segments to free: look within seconds.
        let topic_deleted = async {
            loop {
                tokio::time::sleep(TOPIC_DELETION_CHECK).await;
                if shared.store.topic_deletions() != deletions {
                    return;
                }
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETENTION_EVERY) => {}
            // Above the high-water mark: free space now, not within the minute.
            _ = shared.disk.retention_due.notified() => {}
            _ = topic_deleted => {}
        }
        deletions = shared.store.topic_deletions();
        let wait = RETENTION_MIN_GAP.saturating_sub(ran.elapsed());
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        ran = std::time::Instant::now();
        let dir = shared.store.dir().to_owned();
        let disk = match tokio::task::spawn_blocking(move || raftmq_store::disk_usage(&dir)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot measure the data disk; skipping retention");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "disk measurement task failed; skipping retention");
                continue;
            }
        };
        let high_water = shared.disk.high_water_bytes(disk.total_bytes);
        if disk.used_bytes > high_water || dead_segments_held_by_raft(&shared).await {
            // Raft keeps entries behind its last snapshot for followers; under pressure,
            // or when deleted topics left whole segments, only what a fresh snapshot does
            // not cover is kept (a follower that needs more gets the snapshot and the
            // segments it lacks).
            if let Err(e) = shared.replica.compact_log(RETENTION_COMPACT_WAIT).await {
                tracing::warn!(error = %e, "cannot purge the Raft log for retention");
            }
        }
        let limit = match shared.replica.purge_limit() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Raft purge point; skipping retention");
                continue;
            }
        };
        let policy = RetentionPolicy {
            max_age,
            disk_high_water: high_water as f64 / disk.total_bytes.max(1) as f64,
        };
        let store = shared.store.clone();
        let res = tokio::task::spawn_blocking(move || {
            store.enforce_retention(SystemTime::now(), &policy, disk, limit)
        })
        .await;
        match res {
            Ok(Ok(r)) if r.segments_deleted > 0 => {
                tracing::info!(
                    segments = r.segments_deleted,
                    bytes = r.bytes_freed,
                    "retention freed space"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
            Err(e) => tracing::warn!(error = %e, "retention task panicked"),
        }
    }
}
