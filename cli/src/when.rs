//! Times on the command line: RFC 3339, ms since the epoch, and `+30s`-style offsets.

use raftmq_proto::clock;
pub use raftmq_proto::clock::{now_ms, utc};
use raftmq_proto::message::MAX_DELAY_MS;

/// Parses ms since the epoch or an RFC 3339 time ([`raftmq_proto::clock::parse_time`]).
///
/// # Errors
/// Anything else, with an example of what is accepted.
pub fn parse_time(s: &str) -> anyhow::Result<u64> {
    clock::parse_time(s).map_err(anyhow::Error::msg)
}

/// When `produce --deliver-at` wants a message delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverAt {
    /// At this time, ms since the epoch.
    At(u64),
    /// This many ms after each message is sent.
    After(u64),
}

/// A relative duration `+30s`: a number and a unit `ms`, `s`, `m`, `h` or `d`, in ms.
fn offset_ms(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = match n.parse() {
        Ok(n) => n,
        Err(_) if n.is_empty() => {
            return Err(format!("+{s} has no number after the +; write e.g. +30s"))
        }
        Err(_) => return Err(format!("+{s} is too long a delay (at most +3d; e.g. +30s)")),
    };
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "+{s}: the unit must be ms, s, m, h or d (e.g. +30s)"
            ))
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("+{s} is too long a delay (at most +3d; e.g. +30s)"))
}

impl DeliverAt {
    /// Parses `+30s`/`+5m`/`+2h` (also `ms` and `d`), an RFC 3339 time or ms since the
    /// epoch. Only the syntax is checked; see [`DeliverAt::check`].
    ///
    /// # Errors
    /// A malformed value, described with examples.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rel) = s.trim().strip_prefix('+') {
            return offset_ms(rel).map(Self::After);
        }
        parse_time(s.trim()).map(Self::At).map_err(|_| {
            format!(
                "{s:?} is not a time: give an offset like +30s, +5m or +2h, or an RFC 3339 \
                 time like 2026-11-24T08:00:00Z"
            )
        })
    }

    /// Checks that the delivery time is in the future and at most 3 days (the brokers'
    /// `MAX_DELAY_MS`, RocketMQ's limit) after `now_ms`.
    ///
    /// # Errors
    /// A time in the past or too far ahead, with the time it means.
    pub fn check(self, now_ms: u64) -> Result<Self, String> {
        let max_h = MAX_DELAY_MS / 3_600_000;
        match self {
            Self::After(0) => {
                Err("+0 is now: leave --deliver-at out to deliver at once".to_owned())
            }
            Self::After(d) if d > MAX_DELAY_MS => Err(format!(
                "a delay of {} s is more than the {max_h} h (3 days) brokers allow",
                d / 1000
            )),
            Self::At(at) if at <= now_ms => Err(format!(
                "that time is {} s in the past; give a future time or an offset like +30s",
                (now_ms - at).div_ceil(1000)
            )),
            Self::At(at) if at - now_ms > MAX_DELAY_MS => Err(format!(
                "that time is {} h ahead, more than the {max_h} h (3 days) brokers allow",
                (at - now_ms) / 3_600_000
            )),
            ok => Ok(ok),
        }
    }

    /// The delivery time of a message sent at `now_ms`, ms since the epoch.
    pub fn resolve(self, now_ms: u64) -> u64 {
        match self {
            Self::At(at) => at,
            Self::After(d) => now_ms.saturating_add(d),
        }
    }
}

/// The clap parser of `--deliver-at`: syntax and range, against the clock now.
///
/// # Errors
/// As [`DeliverAt::parse`] and [`DeliverAt::check`].
pub fn deliver_at_arg(s: &str) -> Result<DeliverAt, String> {
    DeliverAt::parse(s)?.check(now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_at_takes_offsets_and_times() {
        assert_eq!(DeliverAt::parse("+30s"), Ok(DeliverAt::After(30_000)));
        assert_eq!(DeliverAt::parse("+5m"), Ok(DeliverAt::After(300_000)));
        assert_eq!(DeliverAt::parse("+2h"), Ok(DeliverAt::After(7_200_000)));
        assert_eq!(DeliverAt::parse("+1d"), Ok(DeliverAt::After(86_400_000)));
        assert_eq!(DeliverAt::parse("+250ms"), Ok(DeliverAt::After(250)));
        assert_eq!(
            DeliverAt::parse("2026-11-24T08:00:00Z"),
            Ok(DeliverAt::At(1_795_507_200_000))
        );
        for bad in [
            "+",
            "+s",
            "+30",
            "+30x",
            "+-3s",
            "soon",
            "+99999999999999999999d",
        ] {
            let e = DeliverAt::parse(bad).unwrap_err();
            assert!(e.contains("+30s"), "{bad}: {e}");
        }
        assert_eq!(DeliverAt::After(2000).resolve(1000), 3000);
        assert_eq!(DeliverAt::At(5).resolve(1000), 5);
    }

    #[test]
    fn deliver_at_refuses_the_past_and_more_than_three_days() {
        let now = 1_795_507_200_000;
        assert!(DeliverAt::At(now + 1).check(now).is_ok());
        assert!(DeliverAt::At(now + MAX_DELAY_MS).check(now).is_ok());
        assert!(DeliverAt::After(MAX_DELAY_MS).check(now).is_ok());
        let e = DeliverAt::At(now - 5_000).check(now).unwrap_err();
        assert!(e.contains("5 s in the past"), "{e}");
        assert!(DeliverAt::At(now).check(now).is_err());
        let e = DeliverAt::At(now + MAX_DELAY_MS + 1)
            .check(now)
            .unwrap_err();
        assert!(e.contains("3 days"), "{e}");
        let e = DeliverAt::After(MAX_DELAY_MS + 1).check(now).unwrap_err();
        assert!(e.contains("3 days"), "{e}");
        assert!(DeliverAt::After(0).check(now).is_err());
        assert!(deliver_at_arg("+4d").is_err());
        assert!(deliver_at_arg("1970-01-02T00:00:00Z").is_err());
        assert!(deliver_at_arg("+1m").is_ok());
    }
}
