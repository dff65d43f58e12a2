//! Taking a node out of service before it is stopped (`raftmq cluster drain`): leadership
//! moves to the most caught-up follower, the node stops standing for election, refuses
//! new pulls (its long polls answer at once, and clients follow the leader hint), and the
//! drain waits for the pulls and sends it is serving. Sends that still reach it are
//! forwarded to the leader as on any follower, so producers see no error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use raftmq_proto::broker::DrainReport;
use raftmq_proto::NodeId;
use raftmq_raft::Replica;
use tokio::sync::{watch, Notify};

use super::{Broker, BrokerError, ConnectionCtx};

/// The longest a drain waits for in-flight work: above the clients' 30 s long poll, which
/// a drain cuts short anyway.
pub const MAX_DRAIN_WAIT: Duration = Duration::from_secs(60);
/// How long a hand-over may take before the drain goes on without it.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether this node is drained, and how many pulls and sends it is serving.
#[derive(Debug)]
pub struct Drain {
    draining: AtomicBool,
    /// Bumped when a drain begins and again once leadership has moved: long polls under
    /// way answer then.
    wake: watch::Sender<u64>,
    in_flight: AtomicU64,
    idle: Notify,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            draining: AtomicBool::new(false),
            wake: watch::Sender::new(0),
            in_flight: AtomicU64::new(0),
            idle: Notify::new(),
        }
    }
}

/// One pull or send being served; counted until dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Drain);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    /// Whether the node is drained.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Marks the node drained (or not); whether it was before.
    fn set_draining(&self, on: bool) -> bool {
        self.draining.swap(on, Ordering::AcqRel)
    }

    fn wake_long_polls(&self) {
        self.wake.send_modify(|n| *n += 1);
    }

    /// Counts a pull or send until the guard drops.
    pub fn track(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    /// Resolves when a drain begins, or moves leadership away, after this call (never
    /// once the node is shutting down): long polls answer then, so the client's next
    /// pull goes to the leader.
    pub fn woken(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.wake.subscribe();
        rx.borrow_and_update();
        async move {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Waits until nothing is in flight, or `wait` passed; returns what is left.
    async fn settle(&self, wait: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Made before the load: a `Notified` receives `notify_waiters` from the moment
            // it exists, polled or not, so the last guard dropping between the load and
            // the wait still wakes this.
            let idle = self.idle.notified();
            if self.in_flight() == 0 {
                return 0;
            }
            tokio::select! {
                _ = idle => {}
                _ = tokio::time::sleep_until(deadline) => return self.in_flight(),
            }
        }
    }
}

/// Hands leadership to the most caught-up follower; returns it when the transfer
/// completed. Used by a drain and by a leader shutting down gracefully, so clients see a
/// transfer (milliseconds) instead of an election timeout.
pub(crate) async fn hand_over(replica: &Replica) -> Option<u64> {
    let status = replica.status();
    let me = replica.node_id();
    let to = status
        .nodes
        .iter()
        .filter(|n| n.node_id.0 != me && n.role == raftmq_proto::Role::Follower)
        .min_by_key(|n| n.lag.unwrap_or(u64::MAX))
        .map(|n| n.node_id.0)?;
    match tokio::time::timeout(HAND_OVER_TIMEOUT, replica.transfer_leader(to)).await {
        Ok(Ok(())) => {
            tracing::info!(to_node = to, "handed leadership over");
            Some(to)
        }
        Ok(Err(e)) => {
            tracing::warn!(to_node = to, error = %e, "leadership hand-over failed");
            None
        }
        Err(_) => {
            tracing::warn!(to_node = to, "leadership hand-over timed out");
            None
        }
    }
}

impl Broker {
    /// `NotLeader` with the leader hint when this node is drained and no longer leads: a
    /// new pull goes to the leader instead. (A drained node whose hand-over failed still
    /// serves, or its group could not be read at all.)
    pub(crate) fn refuse_if_drained(&self) -> Result<(), BrokerError> {
        if self.shared.drain.is_draining() && !self.shared.replica.is_leader() {
            return Err(self.shared.replica.not_leader().into());
        }
        Ok(())
    }

    /// Drains this node (or, `undo`, puts it back in service); see the module docs.
    /// Waits at most `wait` (capped at [`MAX_DRAIN_WAIT`]) for in-flight work.
    ///
    /// # Errors
    /// None today; the signature leaves room for refusals.
    pub async fn drain(
        &self,
        _ctx: &ConnectionCtx,
        undo: bool,
        wait: Duration,
    ) -> Result<DrainReport, BrokerError> {
        let started = Instant::now();
        let replica = &self.shared.replica;
        let drain = &self.shared.drain;
        let report = |was_leader, at_start, left| DrainReport {
            node_id: NodeId(replica.node_id()),
            was_leader,
            leader: replica.leader().map(|(id, _)| NodeId(id)),
            in_flight_at_start: at_start,
            in_flight_left: left,
            waited_ms: started.elapsed().as_millis() as u64,
            draining: drain.is_draining(),
        };
        if undo {
            drain.set_draining(false);
            replica.set_electable(true);
            tracing::info!("back in service: takes pulls and stands for election again");
            return Ok(report(replica.is_leader(), 0, 0));
        }
        let first = !drain.set_draining(true);
        replica.set_electable(false);
        drain.wake_long_polls();
        let was_leader = replica.is_leader();
        if first {
            tracing::info!(
                was_leader,
                "draining: no new pulls, no elections; leadership moves away"
            );
        }
        if was_leader {
            hand_over(replica).await;
            // Pulls that came in while it still led are answered now too.
            drain.wake_long_polls();
        }
        let at_start = drain.in_flight();
        let left = drain.settle(wait.min(MAX_DRAIN_WAIT)).await;
        let r = report(was_leader, at_start, left);
        tracing::info!(
            leader = ?r.leader.map(|l| l.0),
            in_flight_at_start = at_start,
            in_flight_left = left,
            waited_ms = r.waited_ms,
            "drained"
        );
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settle_waits_for_in_flight_work_and_no_longer_than_told() {
        let d = std::sync::Arc::new(Drain::default());
        assert_eq!(
            d.settle(Duration::from_secs(5)).await,
            0,
            "nothing in flight"
        );
        let held = d.track();
        let started = Instant::now();
        assert_eq!(d.settle(Duration::from_millis(100)).await, 1);
        assert!(started.elapsed() >= Duration::from_millis(100));
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { d2.settle(Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(held);
        let left = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("settle returns once the work is done")
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn long_polls_wake_on_each_step_of_a_drain_begun_after_them() {
        let d = Drain::default();
        let woken = d.woken();
        tokio::pin!(woken);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut woken)
                .await
                .is_err(),
            "woken before any drain"
        );
        d.wake_long_polls();
        tokio::time::timeout(Duration::from_secs(1), &mut woken)
            .await
            .expect("a drain wakes a long poll under way");
        // A poll that starts after the last wake waits for the next one.
        let later = d.woken();
        tokio::pin!(later);
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut later)
            .await
            .is_err());
        assert!(!d.set_draining(true));
        assert!(d.is_draining() && d.set_draining(false));
    }
}
