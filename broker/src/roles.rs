//! One INFO line per change of who leads, as this node sees it: "became leader", "stepped
//! down", "follows node N", "lost its leader". Campaigning rounds while a node is cut off do
//! not repeat lines: the leader it sees stays "none".

use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::async_runtime::WatchReceiver;
use raftmq_proto::Role;
use raftmq_raft::Replica;
use tokio_util::sync::CancellationToken;

use crate::metrics::NodeCounters;

/// What a line is about: whether this node leads, and whom it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// This node leads.
    pub leading: bool,
    /// The leader it knows of.
    pub leader: Option<u64>,
}

/// The line for a change from `before` to `now` (`None` when nothing worth a line changed).
pub fn describe(
    me: u64,
    group: &str,
    term: u64,
    before: Option<View>,
    now: View,
) -> Option<String> {
    if before == Some(now) {
        return None;
    }
    let was_leading = before.is_some_and(|b| b.leading);
    Some(match (now.leading, now.leader) {
        (true, _) => format!("node {me} became leader of {group} at term {term}"),
        (false, Some(l)) if was_leading => {
            format!("node {me} stepped down as leader of {group}; node {l} leads at term {term}")
        }
        (false, Some(l)) => format!("node {me} follows node {l} in {group} at term {term}"),
        (false, None) if was_leading => {
            format!("node {me} stepped down as leader of {group} at term {term}; no leader yet")
        }
        (false, None) => {
            format!("node {me} has no leader in {group} (term {term}): election under way")
        }
    })
}

/// Logs role changes, and counts changes of leader in `counters`, until `stop` fires.
pub async fn run(replica: Replica, counters: Arc<NodeCounters>, stop: CancellationToken) {
    let mut metrics = replica.raft().server_metrics();
    let (me, group) = (replica.node_id(), replica.group().to_owned());
    let mut before = None;
    let mut last_leader = None;
    loop {
        let leader = metrics.borrow_watched().current_leader;
        let (role, term) = replica.role();
        let now = View {
            leading: role == Role::Leader,
            leader,
        };
        if let Some(l) = leader {
            // Through an election the leader is unknown for a while: a change is a new
            // leader other than the last one known.
            if last_leader.is_some_and(|was| was != l) {
                counters.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            last_leader = Some(l);
        }
        if let Some(line) = describe(me, &group, term, before, now) {
            tracing::info!(node_id = me, broker_group = %group, term, role = %role, leader = ?leader, "{line}");
        }
        before = Some(now);
        tokio::select! {
            _ = stop.cancelled() => return,
            r = metrics.changed() => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_change_of_who_leads() {
        let v = |leading, leader| View { leading, leader };
        let d = |b, n| describe(1, "g", 3, b, n);
        assert_eq!(
            d(None, v(false, None)).unwrap(),
            "node 1 has no leader in g (term 3): election under way"
        );
        assert!(d(Some(v(false, None)), v(false, None)).is_none());
        assert_eq!(
            d(Some(v(false, None)), v(true, Some(1))).unwrap(),
            "node 1 became leader of g at term 3"
        );
        assert_eq!(
            d(Some(v(true, Some(1))), v(false, Some(2))).unwrap(),
            "node 1 stepped down as leader of g; node 2 leads at term 3"
        );
        assert_eq!(
            d(Some(v(false, Some(2))), v(false, Some(3))).unwrap(),
            "node 1 follows node 3 in g at term 3"
        );
    }
}
