//! [`PeerHealth`]: one log line when a peer stops answering, a reminder at most every
//! [`REMIND_EVERY`] while it stays away, one when it is back; not a line per heartbeat.
//!
//! A leader sends each peer a heartbeat every 100 ms: logging each failure wrote about ten
//! WARN lines a second per lost peer. State is per peer and shared by every connection to
//! it (replication, votes), so a re-created connection does not warn again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a peer that stays unreachable is mentioned again.
pub const REMIND_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Down {
    since: Instant,
    last_said: Instant,
}

/// What to say about a peer after an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Nothing new.
    Quiet,
    /// It just stopped answering.
    Lost,
    /// Still unreachable, this long.
    StillDown(Duration),
    /// It answers again after this long.
    Back(Duration),
}

/// Reachability of every peer of a node.
#[derive(Debug, Clone, Default)]
pub struct PeerHealth {
    down: Arc<Mutex<HashMap<u64, Down>>>,
}

impl PeerHealth {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<u64, Down>) -> T) -> T {
        // Soft state for logs only.
        f(&mut self
            .down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Records an answer from `peer` at `now`.
    pub fn answered(&self, peer: u64, now: Instant) -> Report {
        self.with(|d| match d.remove(&peer) {
            Some(down) => Report::Back(now.duration_since(down.since)),
            None => Report::Quiet,
        })
    }

    /// Records a failed RPC to `peer` at `now`.
    pub fn failed(&self, peer: u64, now: Instant) -> Report {
        self.with(|d| match d.get_mut(&peer) {
            None => {
                d.insert(
                    peer,
                    Down {
                        since: now,
                        last_said: now,
                    },
                );
                Report::Lost
            }
            Some(down) if now.duration_since(down.last_said) >= REMIND_EVERY => {
                down.last_said = now;
                Report::StillDown(now.duration_since(down.since))
            }
            Some(_) => Report::Quiet,
        })
    }

    /// Logs what an RPC outcome says about `peer` (`node_id` is this node).
    pub fn log(&self, node_id: u64, peer: u64, addr: &str, ok: Result<(), &str>) {
        let now = Instant::now();
        match ok {
            Ok(()) => {
                if let Report::Back(after) = self.answered(peer, now) {
                    tracing::info!(node_id, peer, %addr, down_ms = after.as_millis() as u64, "peer reachable again");
                }
            }
            Err(e) => match self.failed(peer, now) {
                Report::Lost => {
                    tracing::warn!(node_id, peer, %addr, error = %e, "peer unreachable")
                }
                Report::StillDown(d) => {
                    tracing::warn!(node_id, peer, %addr, down_s = d.as_secs(), error = %e, "peer still unreachable")
                }
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_when_lost_a_reminder_every_30_s_one_when_back() {
        let h = PeerHealth::default();
        let t0 = Instant::now();
        assert_eq!(h.answered(2, t0), Report::Quiet);
        assert_eq!(h.failed(2, t0), Report::Lost);
        for ms in (100..29_900).step_by(100) {
            assert_eq!(h.failed(2, t0 + Duration::from_millis(ms)), Report::Quiet);
        }
        assert_eq!(
            h.failed(2, t0 + Duration::from_secs(30)),
            Report::StillDown(Duration::from_secs(30))
        );
        assert_eq!(h.failed(3, t0 + Duration::from_secs(30)), Report::Lost);
        assert_eq!(
            h.answered(2, t0 + Duration::from_secs(31)),
            Report::Back(Duration::from_secs(31))
        );
        assert_eq!(h.failed(2, t0 + Duration::from_secs(32)), Report::Lost);
    }
}
