//! A userspace TCP fault proxy in front of every node's Raft port. Nodes dial each other
//! from their own loopback IP (127.0.G.N), so the proxy knows which link a connection
//! belongs to and can cut it: `partition`/`heal` without root or iptables.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Which directed links are cut, and the live connections to kill when one is.
#[derive(Debug, Default)]
pub struct Faults {
    blocked: Mutex<HashSet<(IpAddr, IpAddr)>>,
    live: Mutex<Vec<(IpAddr, IpAddr, AbortHandle)>>,
}

impl Faults {
    /// Cuts both directions between `a` and `b`, killing connections between them.
    pub fn cut(&self, a: IpAddr, b: IpAddr) {
        {
            let mut blocked = self.blocked.lock().unwrap();
            blocked.insert((a, b));
            blocked.insert((b, a));
        }
        let mut live = self.live.lock().unwrap();
        live.retain(|(s, d, h)| {
            let hit = (*s == a && *d == b) || (*s == b && *d == a);
            if hit {
                h.abort();
            }
            !hit && !h.is_finished()
        });
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.blocked.lock().unwrap().clear();
    }

    fn is_blocked(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.blocked.lock().unwrap().contains(&(src, dst))
    }
}

/// Forwards `listener` (the address peers dial) to `target` (the node's real Raft port).
pub async fn run(listener: TcpListener, target: String, dst_ip: IpAddr, faults: Arc<Faults>) {
    loop {
        let Ok((inbound, peer)) = listener.accept().await else {
            continue;
        };
        let src_ip = peer.ip();
        if faults.is_blocked(src_ip, dst_ip) {
            drop(inbound);
            continue;
        }
        let target = target.clone();
        let task = tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = outbound.set_nodelay(true);
            let _ = inbound.set_nodelay(true);
            let (mut ri, mut wi) = inbound.into_split();
            let (mut ro, mut wo) = outbound.into_split();
            let a = tokio::io::copy(&mut ri, &mut wo);
            let b = tokio::io::copy(&mut ro, &mut wi);
            tokio::select! {
                _ = a => {}
                _ = b => {}
            }
        });
        faults
            .live
            .lock()
            .unwrap()
            .push((src_ip, dst_ip, task.abort_handle()));
        if faults.is_blocked(src_ip, dst_ip) {
            task.abort();
        }
    }
}
