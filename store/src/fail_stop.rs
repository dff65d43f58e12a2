//! Fail-stop on a poisoned lock. A thread that panicked while holding the store's state,
//! the log's segment table or its sync queue may have left them half updated (an index
//! advanced past an entry it did not write, a waiter told "synced" too early). Going on
//! with that state could acknowledge what is not durable, so the process stops at once,
//! as after a failed fsync; a restart recovers from what is on disk, which is built to
//! survive a kill at any instant.

use std::sync::LockResult;

/// The guard of `locked`, or the process stops if a holder panicked; `what` names the
/// lock in the last log line.
pub(crate) fn guard<G>(locked: LockResult<G>, what: &'static str) -> G {
    match locked {
        Ok(g) => g,
        Err(_) => stop(what),
    }
}

#[cold]
fn stop(what: &'static str) -> ! {
    tracing::error!(
        lock = what,
        "a thread panicked while holding the store's {what}; stopping the process so that a \
         restart recovers from the durable log instead of using half-updated state"
    );
    eprintln!("raftmq: the store's {what} is poisoned by a panic; aborting (restart the node)");
    std::process::abort()
}
