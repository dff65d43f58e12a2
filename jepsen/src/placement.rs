//! Where grow-online's messages went: acknowledged sends and deliveries per broker group,
//! before and after each step, so a run proves producers spread onto the new group,
//! consumers read it, and nothing was written to the group the topic left.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::history::{Event, Kind, F};

/// Per-group counts around grow-online's two steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    /// The group the topic started on and then left.
    pub first: String,
    /// The group it grew onto.
    pub second: String,
    /// When the grow finished, ms (`None`: it did not).
    pub grow_at: Option<f64>,
    /// When the shrink finished, ms (`None`: it did not).
    pub shrink_at: Option<f64>,
    /// Acknowledged sends invoked after the grow finished, per group.
    pub acked_after_grow: BTreeMap<String, usize>,
    /// Acknowledged sends invoked after the shrink finished, per group.
    pub acked_after_shrink: BTreeMap<String, usize>,
    /// Deliveries over the whole run, per group.
    pub consumed: BTreeMap<String, usize>,
}

fn group_of(queue: &Option<String>) -> Option<String> {
    queue
        .as_deref()
        .and_then(|q| q.rsplit_once(':'))
        .map(|(g, _)| g.to_owned())
}

/// Counts `events` around the nemesis steps named `grow` and `shrink`.
pub fn placement(
    events: &[Event],
    first: &str,
    second: &str,
    grow: &str,
    shrink: &str,
) -> Placement {
    let finished = |name: &str| {
        events
            .iter()
            .find(|e| e.f == F::Nemesis && e.kind == Kind::Ok && e.nemesis.as_deref() == Some(name))
            .map(|e| e.t)
    };
    let (grow_at, shrink_at) = (finished(grow), finished(shrink));
    let mut invoked: HashMap<u64, f64> = HashMap::new();
    let mut p = Placement {
        first: first.to_owned(),
        second: second.to_owned(),
        grow_at,
        shrink_at,
        acked_after_grow: BTreeMap::new(),
        acked_after_shrink: BTreeMap::new(),
        consumed: BTreeMap::new(),
    };
    for e in events {
        match (e.f, e.kind) {
            (F::Send, Kind::Invoke) => {
                if let Some(id) = e.id {
                    invoked.insert(id, e.t);
                }
            }
            (F::Send, Kind::Ok) => {
                let (Some(g), Some(at)) =
                    (group_of(&e.queue), e.id.and_then(|id| invoked.get(&id)))
                else {
                    continue;
                };
                if grow_at.is_some_and(|t| *at >= t) {
                    *p.acked_after_grow.entry(g.clone()).or_default() += 1;
                }
                if shrink_at.is_some_and(|t| *at >= t) {
                    *p.acked_after_shrink.entry(g).or_default() += 1;
                }
            }
            (F::Recv, Kind::Ok) => {
                if let Some(g) = group_of(&e.queue) {
                    *p.consumed.entry(g).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    p
}

impl Placement {
    /// What grow-online must show: both steps finished, sends acknowledged by and
    /// deliveries from the new group, and no send stored on the old one after it left.
    ///
    /// # Errors
    /// The first of those that does not hold.
    pub fn check(&self) -> anyhow::Result<()> {
        let n = |m: &BTreeMap<String, usize>, g: &str| m.get(g).copied().unwrap_or(0);
        anyhow::ensure!(self.grow_at.is_some(), "the grow did not finish");
        anyhow::ensure!(
            n(&self.acked_after_grow, &self.second) > 0,
            "no send after the grow landed on {}: producers did not spread onto it",
            self.second
        );
        anyhow::ensure!(
            n(&self.consumed, &self.second) > 0,
            "nothing was consumed from {}: consumers did not rebalance onto it",
            self.second
        );
        anyhow::ensure!(self.shrink_at.is_some(), "the shrink did not finish");
        anyhow::ensure!(
            n(&self.acked_after_shrink, &self.first) == 0,
            "{} sends were stored on {} after the topic left it",
            n(&self.acked_after_shrink, &self.first),
            self.first
        );
        anyhow::ensure!(
            n(&self.acked_after_shrink, &self.second) > 0,
            "no send was acknowledged after the shrink"
        );
        Ok(())
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "acked after the grow {:?}, after the shrink {:?}; consumed {:?}",
            self.acked_after_grow, self.acked_after_shrink, self.consumed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(h: &mut Vec<Event>, t: f64, id: u64, queue: &str) {
        let mut e = Event::new(t, "p1", Kind::Invoke, F::Send);
        e.id = Some(id);
        h.push(e);
        let mut e = Event::new(t + 1.0, "p1", Kind::Ok, F::Send);
        e.id = Some(id);
        e.queue = Some(queue.to_owned());
        h.push(e);
    }

    fn step(h: &mut Vec<Event>, t: f64, name: &str) {
        let mut e = Event::new(t, "nemesis", Kind::Ok, F::Nemesis);
        e.nemesis = Some(name.to_owned());
        h.push(e);
    }

    fn recv(h: &mut Vec<Event>, t: f64, id: u64, queue: &str) {
        let mut e = Event::new(t, "c1", Kind::Ok, F::Recv);
        e.id = Some(id);
        e.queue = Some(queue.to_owned());
        h.push(e);
    }

    #[test]
    fn counts_sends_by_when_they_were_invoked() {
        let mut h = Vec::new();
        send(&mut h, 1.0, 1, "broker-a:0");
        step(&mut h, 10.0, "grow");
        send(&mut h, 11.0, 2, "broker-a:1");
        send(&mut h, 12.0, 3, "broker-b:1");
        recv(&mut h, 13.0, 3, "broker-b:1");
        step(&mut h, 20.0, "shrink");
        send(&mut h, 21.0, 4, "broker-b:2");
        let p = placement(&h, "broker-a", "broker-b", "grow", "shrink");
        assert_eq!(p.acked_after_grow.get("broker-a"), Some(&1));
        assert_eq!(p.acked_after_grow.get("broker-b"), Some(&2));
        assert_eq!(p.acked_after_shrink.get("broker-a"), None);
        assert_eq!(p.acked_after_shrink.get("broker-b"), Some(&1));
        p.check().unwrap();
    }

    #[test]
    fn a_send_stored_on_the_group_left_fails_the_check() {
        let mut h = Vec::new();
        step(&mut h, 10.0, "grow");
        send(&mut h, 12.0, 1, "broker-b:1");
        recv(&mut h, 13.0, 1, "broker-b:1");
        step(&mut h, 20.0, "shrink");
        send(&mut h, 21.0, 2, "broker-a:2");
        send(&mut h, 22.0, 3, "broker-b:2");
        let e = placement(&h, "broker-a", "broker-b", "grow", "shrink")
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("after the topic left it"), "{e}");
    }

    #[test]
    fn no_spread_onto_the_new_group_fails_the_check() {
        let mut h = Vec::new();
        step(&mut h, 10.0, "grow");
        send(&mut h, 12.0, 1, "broker-a:1");
        let e = placement(&h, "broker-a", "broker-b", "grow", "shrink")
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not spread"), "{e}");
    }
}
