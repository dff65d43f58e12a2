//! How many connections a process serves at once, over all its listeners, so that open
//! connections can never use up the file descriptors the store needs: under the common
//! 1,024 open-files limit, ~1,000 idle connections to a leader's client port once made
//! RocksDB fail with "Too many open files" and the node shut down. At start-up the soft
//! open-files limit is raised to the hard one where allowed; the limit on connections
//! leaves [`RESERVED_FDS`] of it to everything else (commit-log segments, RocksDB files,
//! outgoing connections). A connection over the limit is accepted and closed at once (the
//! client sees a reset, not a hang), with a WARN line at most every 30 s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::throttle::Throttle;

/// File descriptors kept for everything but served connections.
pub const RESERVED_FDS: u64 = 512;

/// The most connections a process serves however high its open-files limit.
pub const MAX_CONNECTIONS: u64 = 65_536;

/// The process-wide connection limit; see the module docs.
#[derive(Debug)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    open_files: u64,
    refused: AtomicU64,
    warned: Throttle,
}

impl ConnectionLimit {
    /// A limit of `max` connections, for a process that may open `open_files` files.
    pub fn new(max: usize, open_files: u64) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            open_files,
            refused: AtomicU64::new(0),
            warned: Throttle::default(),
        }
    }

    /// The process's limit: on first use it raises the open-files limit (see the module
    /// docs) and logs the figures once.
    pub fn process() -> &'static ConnectionLimit {
        static LIMIT: OnceLock<ConnectionLimit> = OnceLock::new();
        LIMIT.get_or_init(|| {
            let open_files = raise_open_files_limit();
            let max = for_open_files(open_files);
            tracing::info!(
                open_files,
                max_connections = max,
                "serving at most {max} connections at once (open-files limit {open_files})"
            );
            ConnectionLimit::new(max, open_files)
        })
    }

    /// A slot for a connection from `peer`, or `None` (and a WARN line, at most every
    /// 30 s) when every slot is taken.
    pub fn admit(&self, peer: SocketAddr) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if self.warned.allow().is_some() {
            tracing::warn!(
                %peer,
                max_connections = self.max,
                open_files = self.open_files,
                refused_so_far = refused,
                "refusing a connection: {} connections are open, the most this process \
                 serves with an open-files limit of {} (raise it with `ulimit -n` or \
                 LimitNOFILE=; at most one such line every 30 s)",
                self.max,
                self.open_files
            );
        }
        None
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The connection limit for an open-files limit: all but [`RESERVED_FDS`], never less than
/// half of it, never more than [`MAX_CONNECTIONS`].
pub fn for_open_files(open_files: u64) -> usize {
    let max = open_files
        .saturating_sub(RESERVED_FDS)
        .max(open_files / 2)
        .clamp(1, MAX_CONNECTIONS);
    usize::try_from(max).unwrap_or(usize::MAX)
}

/// Raises the soft open-files limit to the hard one where allowed; returns the soft limit
/// in force.
fn raise_open_files_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let soft = now.current.unwrap_or(u64::MAX);
    let Some(hard) = now.maximum.filter(|&h| h > soft) else {
        return soft;
    };
    let raised = Rlimit {
        current: Some(hard),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => hard,
        Err(e) => {
            tracing::debug!(error = %e, soft, hard, "could not raise the open-files limit");
            soft
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_leaves_room_for_files() {
        assert_eq!(for_open_files(1024), 512);
        assert_eq!(for_open_files(4096), 4096 - 512);
        assert_eq!(for_open_files(1 << 20), 65_536);
        assert_eq!(for_open_files(0), 1);
    }

    #[test]
    fn connections_over_the_limit_are_refused_and_counted() {
        let limit = ConnectionLimit::new(2, 100);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = limit.admit(peer).unwrap();
        let _b = limit.admit(peer).unwrap();
        assert!(limit.admit(peer).is_none());
        assert_eq!(limit.refused(), 1);
        drop(a);
        assert!(limit.admit(peer).is_some());
    }
}
