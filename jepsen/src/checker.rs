//! The checker: what a history proves about the broker.
//!
//! - **lost**: sends acknowledged ok but never consumed (after heal and drain); in the
//!   transaction workload, acknowledged half messages whose decision was commit;
//! - **unexpected**: deliveries of ids never sent, or of transactions rolled back;
//! - **duplicated**: ids delivered more than once (at-least-once allows it; reported);
//! - **reordered** (ordered workload): a key's message first delivered before an earlier
//!   message of the same key that was also delivered;
//! - failed and unknown send rates, unavailability per fault window, latency percentiles.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::history::{Event, Kind, F};

/// Latency percentiles, ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of `v` (any order).
    pub fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        Self {
            count: v.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: v[v.len() - 1],
        }
    }
}

/// One fault window and how long sends were failing in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// The fault (name and targets).
    pub nemesis: String,
    /// Fault start, ms.
    pub start: f64,
    /// Heal, ms.
    pub stop: f64,
    /// First failed or unknown send in the window to the first ok send after it, ms
    /// (0 when no send failed: the producers' retries hid the fault).
    pub unavailable_ms: f64,
    /// The longest time, ms, without an acknowledged send between the fault's start
    /// and the next fault's (retries included).
    pub stall_ms: f64,
}

/// Everything the checker found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Analysis {
    /// Sends started.
    pub sends: usize,
    /// Sends acknowledged.
    pub ok: usize,
    /// Sends that definitely failed.
    pub failed: usize,
    /// Sends with an unknown outcome.
    pub unknown: usize,
    /// Distinct ids consumed.
    pub consumed: usize,
    /// Deliveries in all.
    pub deliveries: usize,
    /// Acknowledged ids never consumed (of transactions: committed ones).
    pub lost: Vec<u64>,
    /// Acknowledged transactions that were rolled back (never to be consumed).
    pub rolled_back: usize,
    /// Consumed ids never sent.
    pub unexpected: Vec<u64>,
    /// Ids delivered more than once.
    pub duplicated: usize,
    /// Deliveries beyond the first, as a fraction of distinct ids consumed.
    pub duplicate_rate: f64,
    /// Ordering violations, described.
    pub reordered: Vec<String>,
    /// Failed sends / sends.
    pub fail_rate: f64,
    /// Unknown sends / sends.
    pub unknown_rate: f64,
    /// Per fault window.
    pub windows: Vec<Window>,
    /// Percentiles of `unavailable_ms` over the windows.
    pub unavailability: Percentiles,
    /// Percentiles of `stall_ms` over the windows.
    pub stall: Percentiles,
    /// Send to acknowledgement.
    pub send_latency: Percentiles,
    /// Send to first delivery.
    pub e2e_latency: Percentiles,
}

impl Analysis {
    /// Nothing lost, unexpected or reordered.
    pub fn valid(&self) -> bool {
        self.lost.is_empty() && self.unexpected.is_empty() && self.reordered.is_empty()
    }

    /// The one-line verdict.
    pub fn verdict(&self) -> String {
        format!(
            "{}: {} sent, {} ok{}, {} failed, {} unknown; {} lost, {} unexpected, {} duplicated ({:.2}%), {} reordered; unavailability p50 {:.0} ms, max {:.0} ms; longest write stall p50 {:.0} ms, max {:.0} ms",
            if self.valid() { "VALID" } else { "INVALID" },
            self.sends,
            self.ok,
            if self.rolled_back > 0 {
                format!(" ({} rolled back)", self.rolled_back)
            } else {
                String::new()
            },
            self.failed,
            self.unknown,
            self.lost.len(),
            self.unexpected.len(),
            self.duplicated,
            self.duplicate_rate * 100.0,
            self.reordered.len(),
            self.unavailability.p50,
            self.unavailability.max,
            self.stall.p50,
            self.stall.max,
        )
    }
}

/// Analyzes a history. `ordered` checks per-key order.
pub fn check(events: &[Event], ordered: bool) -> Analysis {
    let mut a = Analysis::default();
    let mut invoked: HashMap<u64, &Event> = HashMap::new();
    let mut acked: HashMap<u64, f64> = HashMap::new();
    let mut send_lat = Vec::new();
    // id -> first delivery time; key -> ids in first-delivery order.
    let mut first_delivery: HashMap<u64, f64> = HashMap::new();
    let mut delivery_count: HashMap<u64, usize> = HashMap::new();
    let mut key_order: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut nemesis_open: Vec<(String, f64)> = Vec::new();
    let mut windows = Vec::new();
    let mut completions: Vec<(f64, Kind)> = Vec::new();

    for e in events {
        match (e.f, e.kind) {
            (F::Send, Kind::Invoke) => {
                if let Some(id) = e.id {
                    a.sends += 1;
                    invoked.insert(id, e);
                }
            }
            (F::Send, k) => {
                let Some(id) = e.id else { continue };
                completions.push((e.t, k));
                match k {
                    Kind::Ok => {
                        a.ok += 1;
                        acked.insert(id, e.t);
                        if let Some(inv) = invoked.get(&id) {
                            send_lat.push(e.t - inv.t);
                        }
                    }
                    Kind::Fail => a.failed += 1,
                    Kind::Info => a.unknown += 1,
                    Kind::Invoke => {}
                }
            }
            (F::Recv, Kind::Ok) => {
                let Some(id) = e.id else { continue };
                a.deliveries += 1;
                let n = delivery_count.entry(id).or_default();
                *n += 1;
                if *n == 1 {
                    first_delivery.insert(id, e.t);
                    if let Some(k) = &e.key {
                        key_order.entry(k.clone()).or_default().push(id);
                    }
                }
            }
            (F::Recv, _) => {}
            (F::Nemesis, Kind::Invoke) => {
                nemesis_open.push((e.nemesis.clone().unwrap_or_default(), e.t))
            }
            (F::Nemesis, _) => {
                if let Some((name, start)) = nemesis_open.pop() {
                    windows.push((name, start, e.t));
                }
            }
        }
    }

    let consumed: HashSet<u64> = first_delivery.keys().copied().collect();
    a.consumed = consumed.len();
    let rolled_back =
        |id: &u64| invoked.get(id).and_then(|e| e.decision.as_deref()) == Some("rollback");
    a.rolled_back = acked.keys().filter(|id| rolled_back(id)).count();
    let mut lost: Vec<u64> = acked
        .keys()
        .filter(|id| !consumed.contains(id) && !rolled_back(id))
        .copied()
        .collect();
    lost.sort_unstable();
    a.lost = lost;
    let mut unexpected: Vec<u64> = consumed
        .iter()
        .filter(|id| !invoked.contains_key(id) || rolled_back(id))
        .copied()
        .collect();
    unexpected.sort_unstable();
    a.unexpected = unexpected;
    a.duplicated = delivery_count.values().filter(|n| **n > 1).count();
    let extra: usize = delivery_count.values().map(|n| n - 1).sum();
    a.duplicate_rate = if a.consumed == 0 {
        0.0
    } else {
        extra as f64 / a.consumed as f64
    };
    if a.sends > 0 {
        a.fail_rate = a.failed as f64 / a.sends as f64;
        a.unknown_rate = a.unknown as f64 / a.sends as f64;
    }

    if ordered {
        for (key, ids) in &key_order {
            // Sequence numbers in first-delivery order must never go down.
            let mut highest: Option<(u64, u64)> = None;
            for id in ids {
                let Some(seq) = invoked.get(id).and_then(|e| e.seq) else {
                    continue;
                };
                if let Some((hs, hid)) = highest {
                    if seq < hs {
                        a.reordered.push(format!("key {key}: seq {seq} (id {id}) first delivered after seq {hs} (id {hid})"));
                        continue;
                    }
                }
                highest = Some((seq, *id));
            }
        }
    }

    completions.sort_by(|x, y| x.0.total_cmp(&y.0));
    windows.sort_by(|x, y| x.1.total_cmp(&y.1));
    let acks: Vec<f64> = completions
        .iter()
        .filter(|(_, k)| *k == Kind::Ok)
        .map(|(t, _)| *t)
        .collect();
    let mut unavail = Vec::new();
    let mut stalls = Vec::new();
    for (i, (name, start, stop)) in windows.iter().enumerate() {
        let next_start = windows.get(i + 1).map_or(f64::INFINITY, |w| w.1);
        let first_fail = completions
            .iter()
            .find(|(t, k)| *t >= *start && *t < next_start && matches!(k, Kind::Fail | Kind::Info))
            .map(|(t, _)| *t);
        let ms = match first_fail {
            None => 0.0,
            Some(f) => acks.iter().find(|t| **t > f).map_or(f64::NAN, |t| t - f),
        };
        let stall_ms = longest_stall(&acks, *start, next_start);
        stalls.push(stall_ms);
        unavail.push(ms);
        a.windows.push(Window {
            nemesis: name.clone(),
            start: *start,
            stop: *stop,
            unavailable_ms: ms,
            stall_ms,
        });
    }
    a.unavailability = Percentiles::of(unavail.into_iter().filter(|x| x.is_finite()).collect());
    a.stall = Percentiles::of(stalls.into_iter().filter(|x| x.is_finite()).collect());
    a.send_latency = Percentiles::of(send_lat);
    a.e2e_latency = Percentiles::of(
        first_delivery
            .iter()
            .filter_map(|(id, t)| invoked.get(id).map(|inv| t - inv.t))
            .collect(),
    );
    a
}

/// The longest time without an acknowledged send between `start` (a fault) and `until`
/// (the next fault; a stall running into it counts there): write unavailability as a
/// client sees it, retries included. NaN when no send was ever acknowledged after
/// `start`. At the workload's rate the normal gap is about 1/rate.
fn longest_stall(acks: &[f64], start: f64, until: f64) -> f64 {
    let first = acks.partition_point(|t| *t <= start);
    let mut prev = start;
    let mut longest = f64::NAN;
    for t in &acks[first..] {
        let gap = t.min(until) - prev;
        longest = if longest.is_nan() {
            gap
        } else {
            longest.max(gap)
        };
        if *t >= until {
            break;
        }
        prev = *t;
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: f64, kind: Kind, f: F, id: u64) -> Event {
        let mut e = Event::new(t, "p", kind, f);
        e.id = Some(id);
        e
    }

    fn send(h: &mut Vec<Event>, t: f64, id: u64, outcome: Kind) {
        h.push(ev(t, Kind::Invoke, F::Send, id));
        h.push(ev(t + 1.0, outcome, F::Send, id));
    }

    fn recv(h: &mut Vec<Event>, t: f64, id: u64) {
        h.push(ev(t, Kind::Ok, F::Recv, id));
    }

    #[test]
    fn a_clean_history_is_valid() {
        let mut h = Vec::new();
        for id in 0..10 {
            send(&mut h, id as f64 * 10.0, id, Kind::Ok);
            recv(&mut h, id as f64 * 10.0 + 5.0, id);
        }
        let a = check(&h, false);
        assert!(a.valid(), "{}", a.verdict());
        assert_eq!((a.sends, a.ok, a.consumed, a.duplicated), (10, 10, 10, 0));
        assert!((a.send_latency.p50 - 1.0).abs() < 1e-9);
        assert!((a.e2e_latency.max - 5.0).abs() < 1e-9);
    }

    #[test]
    fn finds_lost_unexpected_and_duplicated() {
        let mut h = Vec::new();
        send(&mut h, 0.0, 1, Kind::Ok); // lost: acknowledged, never consumed
        send(&mut h, 5.0, 2, Kind::Ok);
        recv(&mut h, 10.0, 2);
        recv(&mut h, 11.0, 2); // duplicated
        recv(&mut h, 12.0, 99); // unexpected: never sent
        send(&mut h, 20.0, 3, Kind::Fail); // failed and absent: fine
        send(&mut h, 30.0, 4, Kind::Info); // unknown and delivered: fine
        recv(&mut h, 40.0, 4);
        let a = check(&h, false);
        assert!(!a.valid());
        assert_eq!(a.lost, vec![1]);
        assert_eq!(a.unexpected, vec![99]);
        assert_eq!(a.duplicated, 1);
        assert_eq!((a.failed, a.unknown), (1, 1));
        assert!(a.verdict().starts_with("INVALID"));
    }

    #[test]
    fn a_committed_transaction_must_be_delivered_and_a_rolled_back_one_never() {
        let mut h = Vec::new();
        let tx = |h: &mut Vec<Event>, t: f64, id: u64, decision: &str, outcome: Kind| {
            let mut inv = ev(t, Kind::Invoke, F::Send, id);
            inv.decision = Some(decision.into());
            h.push(inv);
            h.push(ev(t + 1.0, outcome, F::Send, id));
        };
        tx(&mut h, 0.0, 1, "commit", Kind::Ok); // lost: committed, never delivered
        tx(&mut h, 2.0, 2, "commit", Kind::Ok);
        recv(&mut h, 3.0, 2);
        tx(&mut h, 4.0, 3, "rollback", Kind::Ok); // fine: rolled back, not delivered
        tx(&mut h, 6.0, 4, "rollback", Kind::Ok); // unexpected: rolled back, delivered
        recv(&mut h, 7.0, 4);
        tx(&mut h, 8.0, 5, "rollback", Kind::Info); // unknown half message, rolled back
        recv(&mut h, 9.0, 5); // ... yet delivered: unexpected
        let a = check(&h, false);
        assert_eq!(a.lost, vec![1]);
        assert_eq!(a.unexpected, vec![4, 5]);
        assert_eq!(a.rolled_back, 2);
        assert!(!a.valid());
    }

    #[test]
    fn finds_reordering_per_key_but_tolerates_redelivery() {
        let mut h = Vec::new();
        let keyed = |h: &mut Vec<Event>, t: f64, id: u64, seq: u64, kind: Kind, f: F| {
            let mut e = ev(t, kind, f, id);
            e.key = Some("k".into());
            e.seq = Some(seq);
            h.push(e);
        };
        for (id, seq) in [(10, 0), (11, 1), (12, 2)] {
            keyed(&mut h, id as f64, id, seq, Kind::Invoke, F::Send);
            keyed(&mut h, id as f64 + 0.5, id, seq, Kind::Ok, F::Send);
        }
        // 0, 1, (redeliver 0, 1), 2: fine.
        for (t, id) in [(20.0, 10), (21.0, 11), (22.0, 10), (23.0, 11), (24.0, 12)] {
            keyed(&mut h, t, id, 0, Kind::Ok, F::Recv);
        }
        assert!(check(&h, true).valid());
        // Now seq 2 arrives before seq 1 on first delivery: a violation.
        let mut bad: Vec<Event> = h.iter().filter(|e| e.f == F::Send).cloned().collect();
        for (t, id) in [(20.0, 10), (21.0, 12), (22.0, 11)] {
            keyed(&mut bad, t, id, 0, Kind::Ok, F::Recv);
        }
        let a = check(&bad, true);
        assert_eq!(a.reordered.len(), 1, "{:?}", a.reordered);
        assert!(!a.valid());
    }

    #[test]
    fn measures_unavailability_per_fault() {
        let mut h = Vec::new();
        let mut start = Event::new(100.0, "nemesis", Kind::Invoke, F::Nemesis);
        start.nemesis = Some("kill-leader".into());
        h.push(start);
        send(&mut h, 110.0, 1, Kind::Ok); // acked at 111: 11 ms after the fault
        send(&mut h, 150.0, 2, Kind::Fail); // fails at 151
        send(&mut h, 300.0, 3, Kind::Info); // unknown at 301
        send(&mut h, 700.0, 4, Kind::Ok); // acked at 701: a 590 ms stall
        send(&mut h, 710.0, 5, Kind::Ok);
        let mut stop = Event::new(800.0, "nemesis", Kind::Ok, F::Nemesis);
        stop.nemesis = Some("kill-leader".into());
        h.push(stop);
        let a = check(&h, false);
        assert_eq!(a.windows.len(), 1);
        // Sends failed from 151 to the ack at 701.
        assert!(
            (a.windows[0].unavailable_ms - 550.0).abs() < 1e-9,
            "{:?}",
            a.windows
        );
        assert!((a.unavailability.max - 550.0).abs() < 1e-9);
        // No ack from 111 to 701.
        assert!((a.windows[0].stall_ms - 590.0).abs() < 1e-9);
        assert!((a.stall.max - 590.0).abs() < 1e-9);
    }

    #[test]
    fn a_stall_running_into_the_next_fault_counts_there() {
        let acks = [5.0, 20.0, 30.0, 40.0, 400.0, 410.0];
        // Fault at 10, next fault at 100: gaps 10, 10, 10, then 30->100 (the rest of the
        // stall belongs to the next fault, which counts 300 from its start).
        assert!((longest_stall(&acks, 10.0, 100.0) - 60.0).abs() < 1e-9);
        assert!((longest_stall(&acks, 100.0, f64::INFINITY) - 300.0).abs() < 1e-9);
        // Nothing acknowledged after the fault: never recovered.
        assert!(longest_stall(&acks, 500.0, f64::INFINITY).is_nan());
    }
}
