//! A TCP proxy in front of a node's Raft port: adds latency (the kernel here has no
//! netem) and, in loopback mode, cuts links by source IP and resets connections at random.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// What the proxy does to traffic now.
#[derive(Debug, Default)]
pub struct Control {
    /// Added one-way delay, ms.
    pub delay_ms: AtomicU64,
    /// Chance per 100 ms, in thousandths, that a connection is reset.
    pub reset_per_mille: AtomicU64,
    blocked: Mutex<HashSet<IpAddr>>,
    live: Mutex<Vec<(IpAddr, AbortHandle)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Control {
    /// Refuses (and kills) connections from `ip`.
    pub fn block(&self, ip: IpAddr) {
        lock(&self.blocked).insert(ip);
        lock(&self.live).retain(|(src, h)| {
            if *src == ip {
                h.abort();
            }
            *src != ip && !h.is_finished()
        });
    }

    /// Accepts everyone again.
    pub fn unblock_all(&self) {
        lock(&self.blocked).clear();
    }

    fn blocked(&self, ip: &IpAddr) -> bool {
        lock(&self.blocked).contains(ip)
    }
}

/// Copies one direction, holding each chunk back by the current delay.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    control: Arc<Control>,
) {
    let (tx, mut rx) = mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(1024);
    let reader = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = tokio::time::Instant::now()
                + Duration::from_millis(control.delay_ms.load(Ordering::Relaxed));
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}

/// Serves the proxy until the task is dropped.
pub async fn run(listener: TcpListener, target: String, control: Arc<Control>) {
    let _resets = {
        let control = control.clone();
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let p = control.reset_per_mille.load(Ordering::Relaxed);
                if p == 0 {
                    continue;
                }
                lock(&control.live).retain(|(_, h)| {
                    if rand::random::<u64>() % 1000 < p {
                        h.abort();
                    }
                    !h.is_finished()
                });
            }
        }))
    };
    loop {
        let Ok((inbound, peer)) = listener.accept().await else {
            continue;
        };
        if control.blocked(&peer.ip()) {
            continue;
        }
        let (target, c) = (target.clone(), control.clone());
        let task = tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::select! {
                _ = pipe(ri, wo, c.clone()) => {}
                _ = pipe(ro, wi, c) => {}
            }
        });
        lock(&control.live).push((peer.ip(), task.abort_handle()));
        if control.blocked(&peer.ip()) {
            task.abort();
        }
    }
}

/// `raftmq-jepsen proxy`: the proxy as a process (inside a node's namespace), taking its
/// delay from a control file that holds a number of milliseconds.
pub async fn serve_with_control_file(
    listen: &str,
    target: &str,
    control_file: &std::path::Path,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let control = Arc::new(Control::default());
    let watcher = {
        let (control, file) = (control.clone(), control_file.to_owned());
        async move {
            loop {
                let ms = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                control.delay_ms.store(ms, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    tokio::select! {
        _ = run(listener, target.to_owned(), control) => {}
        _ = watcher => {}
        _ = raftmq_proto::transport::shutdown_signal() => {}
    }
    Ok(())
}
