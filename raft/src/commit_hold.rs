//! Holding back commit-only AppendEntries so that the next append carries the commit.
//!
//! After every commit, openraft's replication stream sends each follower an AppendEntries
//! without entries whose only news is the new commit index. With one publisher waiting
//! for each write, that is half of all Raft RPCs: two extra sends, two receives and two
//! wake-ups per message on the leader, one of each on every follower. The next append
//! follows within a fraction of a millisecond and carries a commit index at least as new
//! (every request carries the leader's current commit), so such a request waits up to a
//! short hold for its successor and is dropped when one comes; with nothing to follow it
//! is sent when the hold ends, so an idle follower learns the commit that much later.
//!
//! Nothing the leader learns is lost by dropping one: openraft tracks in-flight requests by
//! log id, and the successor's acknowledgement (which starts where the dropped request
//! ended) acknowledges both. The first request of a stream is never held: it is a probe or
//! a heartbeat, whose answer the leader waits for.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::raft::AppendEntriesRequest;
use tokio::time::Instant;

use crate::types::TypeConfig;

/// A request of the replication stream.
type Request = AppendEntriesRequest<TypeConfig>;

/// How long a commit-only request waits for a successor by default. A publisher waiting
/// for each acknowledgement sends its next message well within this; an idle follower
/// learns a commit at most this much later than it would have.
pub const DEFAULT_COMMIT_HOLD: Duration = Duration::from_millis(2);

struct Held<S> {
    input: S,
    first: bool,
    ended: bool,
}

/// Wraps a stream of AppendEntries requests: after the first, a request without entries
/// waits up to `hold` for the next request and yields to it if one comes (repeatedly, but
/// never longer than `hold` after the first one held). The end of `input` releases a held
/// request before the stream ends. A zero `hold` passes every request through.
pub fn hold_commit_only<S>(input: S, hold: Duration) -> Pin<Box<dyn Stream<Item = Request> + Send>>
where
    S: Stream<Item = Request> + Send + Unpin + 'static,
{
    let state = Held {
        input,
        first: true,
        ended: false,
    };
    futures::stream::unfold(state, move |mut st| async move {
        if st.ended {
            return None;
        }
        let mut req = st.input.next().await?;
        if std::mem::take(&mut st.first) || hold.is_zero() {
            return Some((req, st));
        }
        let deadline = Instant::now() + hold;
        while req.entries.is_empty() {
            // Dropping `next()` on timeout is safe: the pending request stays in `input`.
            match tokio::time::timeout_at(deadline, st.input.next()).await {
                Ok(Some(next)) => {
                    tracing::trace!(
                        dropped_commit = ?req.leader_commit,
                        carried_commit = ?next.leader_commit,
                        "commit-only AppendEntries superseded"
                    );
                    req = next;
                }
                Ok(None) => {
                    st.ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        Some((req, st))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{log_id, Entry, RaftRequest, Vote};
    use bytes::Bytes;
    use futures::channel::mpsc;
    use openraft::entry::RaftEntry;

    fn req(prev: u64, entries: u64, commit: u64) -> Request {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(1, prev)),
            leader_commit: Some(log_id(1, commit)),
            entries: (prev + 1..=prev + entries)
                .map(|i| Entry::new_normal(log_id(1, i), RaftRequest(Bytes::from_static(b"m"))))
                .collect(),
        }
    }

    fn summary(r: &Request) -> (u64, usize, u64) {
        (
            r.prev_log_id.map_or(0, |l| l.index),
            r.entries.len(),
            r.leader_commit.map_or(0, |l| l.index),
        )
    }

    // Tokio's timer counts whole milliseconds.
    const HOLD: Duration = Duration::from_millis(2);

    #[tokio::test(start_paused = true)]
    async fn first_request_and_appends_pass_at_once() {
        let (tx, rx) = mpsc::unbounded();
        let mut out = hold_commit_only(rx, HOLD);
        // A heartbeat or probe: entry-less, but first.
        tx.unbounded_send(req(5, 0, 5)).unwrap();
        let start = Instant::now();
        assert_eq!(summary(&out.next().await.unwrap()), (5, 0, 5));
        tx.unbounded_send(req(5, 2, 5)).unwrap();
        assert_eq!(summary(&out.next().await.unwrap()), (5, 2, 5));
        assert_eq!(start.elapsed(), Duration::ZERO, "nothing waited");
    }

    #[tokio::test(start_paused = true)]
    async fn commit_only_request_yields_to_the_next_append() {
        let (tx, rx) = mpsc::unbounded();
        let mut out = hold_commit_only(rx, HOLD);
        tx.unbounded_send(req(5, 1, 5)).unwrap();
        assert_eq!(summary(&out.next().await.unwrap()), (5, 1, 5));
        // Commit moves to 6: a commit-only request, then the next append a little later.
        tx.unbounded_send(req(6, 0, 6)).unwrap();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            tx.unbounded_send(req(6, 1, 6)).unwrap();
            tx
        });
        let start = Instant::now();
        assert_eq!(summary(&out.next().await.unwrap()), (6, 1, 6));
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(1),
            "sent with the append"
        );
        drop(sender.await.unwrap());
        assert!(out.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn commit_only_request_goes_out_when_the_hold_ends() {
        let (tx, rx) = mpsc::unbounded();
        let mut out = hold_commit_only(rx, HOLD);
        tx.unbounded_send(req(5, 1, 5)).unwrap();
        out.next().await.unwrap();
        tx.unbounded_send(req(6, 0, 6)).unwrap();
        let start = Instant::now();
        assert_eq!(summary(&out.next().await.unwrap()), (6, 0, 6));
        assert_eq!(start.elapsed(), HOLD);
        // A request produced after the hold ended is not lost.
        tx.unbounded_send(req(6, 1, 6)).unwrap();
        assert_eq!(summary(&out.next().await.unwrap()), (6, 1, 6));
    }

    #[tokio::test(start_paused = true)]
    async fn successive_commits_share_one_hold() {
        let (tx, rx) = mpsc::unbounded();
        let mut out = hold_commit_only(rx, HOLD);
        tx.unbounded_send(req(5, 2, 4)).unwrap();
        out.next().await.unwrap();
        tx.unbounded_send(req(7, 0, 6)).unwrap();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            tx.unbounded_send(req(7, 0, 7)).unwrap();
            tx
        });
        let start = Instant::now();
        // The second commit-only request replaces the first and is sent when the first
        // one's hold ends, not a full hold after its own arrival.
        assert_eq!(summary(&out.next().await.unwrap()), (7, 0, 7));
        assert_eq!(start.elapsed(), HOLD);
        drop(sender.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn end_of_input_releases_the_held_request() {
        let (tx, rx) = mpsc::unbounded();
        let mut out = hold_commit_only(rx, HOLD);
        tx.unbounded_send(req(5, 1, 4)).unwrap();
        out.next().await.unwrap();
        tx.unbounded_send(req(6, 0, 6)).unwrap();
        drop(tx);
        let start = Instant::now();
        assert_eq!(summary(&out.next().await.unwrap()), (6, 0, 6));
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(out.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_hold_passes_everything() {
        let (tx, rx) = mpsc::unbounded();
        let mut out = hold_commit_only(rx, Duration::ZERO);
        for r in [req(5, 1, 4), req(6, 0, 6), req(6, 0, 6)] {
            tx.unbounded_send(r).unwrap();
        }
        drop(tx);
        let got: Vec<_> = out.by_ref().map(|r| summary(&r)).collect().await;
        assert_eq!(got, vec![(5, 1, 4), (6, 0, 6), (6, 0, 6)]);
    }
}
