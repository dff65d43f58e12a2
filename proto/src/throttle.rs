//! Log lines about repeated events (refused connections, refused RPCs) at most once per
//! interval, counting the events in between, so a flood writes a line every 30 s, not one
//! per event.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a throttled line is written at most.
pub const EVERY: Duration = Duration::from_secs(30);

/// Says when a throttled line is due; see the module docs.
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    said_at: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// Notes one event: `Some(n)` when a line is due now (`n` events went unlogged since
    /// the last one), `None` when it was logged less than [`EVERY`] ago.
    pub fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.said_at.is_some_and(|t| t.elapsed() < EVERY) {
            s.suppressed += 1;
            return None;
        }
        s.said_at = Some(Instant::now());
        Some(std::mem::take(&mut s.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_then_silence_counting_the_rest() {
        let t = Throttle::default();
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        t.state.lock().unwrap().said_at = Instant::now().checked_sub(EVERY);
        assert_eq!(t.allow(), Some(2));
    }
}
