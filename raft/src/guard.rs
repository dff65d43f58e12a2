//! Refuses Raft RPCs no honest peer sends, before openraft sees them: a vote, pre-vote or
//! leadership transfer from a node that is not a voter of this node's membership, and any
//! RPC whose term is far beyond this node's. Without this, two forged ~60-byte votes
//! (candidate 99, term `u64::MAX`, `leadership_transfer`) were accepted by every node and
//! no node could be elected again, even after restarts: the term cannot grow past
//! `u64::MAX`.
//!
//! This checks what a peer claims, not who it is: a forger who names a member needs the
//! authentication of the security issue to be stopped. It does stop strays (a removed
//! node, a misconfigured process, a scanner) from disrupting the group, and bounds what
//! any one RPC can do to the term.

use std::collections::BTreeSet;

use openraft::async_runtime::WatchReceiver;
use raftmq_proto::throttle::Throttle;
use raftmq_proto::WireError;

use crate::Raft;

/// The most a term may be ahead of this node's. An honest term grows by one per election,
/// a few per second at worst; 2^20 is days of back-to-back elections, and far from
/// `u64::MAX`, so no RPC can exhaust the terms.
pub const MAX_TERM_STEP: u64 = 1 << 20;

/// What a Raft RPC claims about its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Which RPC (`"vote"`, `"append_entries"`, ...), for errors and logs.
    pub rpc: &'static str,
    /// The term it carries.
    pub term: u64,
    /// The node it asks this one to follow or elect, when it must be a voter (votes,
    /// pre-votes, leadership transfers); `None` for appends, which a node that is joining
    /// takes from a leader it does not know yet.
    pub candidate: Option<u64>,
}

/// Checks claims against this node's term and membership; see the module docs.
#[derive(Debug)]
pub struct RpcGuard {
    node_id: u64,
    warned: Throttle,
}

impl RpcGuard {
    /// The guard of node `node_id`.
    pub fn new(node_id: u64) -> Self {
        Self {
            node_id,
            warned: Throttle::default(),
        }
    }

    /// `Ok` if `raft`'s node may act on `claim`.
    ///
    /// # Errors
    /// `Invalid`, saying what was refused and why.
    pub fn check(&self, raft: &Raft, claim: Claim) -> Result<(), WireError> {
        let (term, voters) = {
            let metrics = raft.metrics();
            let m = metrics.borrow_watched();
            let voters: BTreeSet<u64> = match claim.candidate {
                Some(_) => m.membership_config.membership().voter_ids().collect(),
                None => BTreeSet::new(),
            };
            (m.current_term, voters)
        };
        judge(term, &voters, claim).map_err(|why| {
            self.warn(&claim, &why);
            WireError::Invalid(format!(
                "node {} refuses the Raft {} RPC: {why}",
                self.node_id, claim.rpc
            ))
        })
    }

    fn warn(&self, claim: &Claim, why: &str) {
        let Some(suppressed) = self.warned.allow() else {
            return;
        };
        tracing::warn!(
            node_id = self.node_id,
            rpc = claim.rpc,
            term = claim.term,
            candidate = ?claim.candidate,
            refused_since_last_line = suppressed,
            "refusing a Raft RPC no member would send: {why}"
        );
    }
}

/// Why `claim` is refused by a node at `term` whose voters are `voters` (empty: not known
/// yet, so not checked), if it is.
fn judge(term: u64, voters: &BTreeSet<u64>, claim: Claim) -> Result<(), String> {
    if claim.term > term.saturating_add(MAX_TERM_STEP) {
        return Err(format!(
            "its term {} is more than {MAX_TERM_STEP} beyond this node's term {term}",
            claim.term
        ));
    }
    match claim.candidate {
        Some(c) if !voters.is_empty() && !voters.contains(&c) => Err(format!(
            "node {c} is not a voter of this group (voters: {voters:?})"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(term: u64, candidate: Option<u64>) -> Claim {
        Claim {
            rpc: "vote",
            term,
            candidate,
        }
    }

    #[test]
    fn strays_and_impossible_terms_are_refused() {
        let voters: BTreeSet<u64> = [1, 2, 3].into();
        assert!(judge(5, &voters, claim(6, Some(2))).is_ok());
        assert!(judge(5, &voters, claim(5 + MAX_TERM_STEP, Some(2))).is_ok());
        let e = judge(5, &voters, claim(u64::MAX, Some(2))).unwrap_err();
        assert!(e.contains("beyond this node's term 5"), "{e}");
        let e = judge(5, &voters, claim(6, Some(99))).unwrap_err();
        assert!(e.contains("node 99 is not a voter"), "{e}");
        // Appends name no candidate; a node that knows no voters yet checks only terms.
        assert!(judge(5, &voters, claim(6, None)).is_ok());
        assert!(judge(0, &BTreeSet::new(), claim(1, Some(99))).is_ok());
        assert!(judge(u64::MAX, &voters, claim(u64::MAX, Some(1))).is_ok());
    }
}
