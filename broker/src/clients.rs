//! Live client instances per consumer group, from heartbeats (for rebalancing).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raftmq_proto::broker::ConsumerGroupInfo;

/// Members of one group: client id -> (last heartbeat, what it reported).
type Members = BTreeMap<String, (Instant, ConsumerGroupInfo)>;

/// Who heartbeated recently.
#[derive(Debug)]
pub struct ClientRegistry {
    expiry: Duration,
    groups: Mutex<HashMap<String, Members>>,
}

impl ClientRegistry {
    /// Forgets instances silent for `expiry`.
    pub fn new(expiry: Duration) -> Self {
        Self {
            expiry,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Records a heartbeat; an instance that lists no group is removed everywhere
    /// (a clean shutdown).
    pub fn heartbeat(&self, client_id: &str, groups: Vec<ConsumerGroupInfo>) {
        let now = Instant::now();
        let mut all = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let named: Vec<String> = groups.iter().map(|g| g.group.as_str().to_owned()).collect();
        for members in all.values_mut() {
            members.retain(|id, _| id != client_id);
        }
        for g in groups {
            all.entry(g.group.as_str().to_owned())
                .or_default()
                .insert(client_id.to_owned(), (now, g));
        }
        all.retain(|name, members| !members.is_empty() || named.contains(name));
    }

    /// Live members of a group, sorted by client id.
    pub fn members(&self, group: &str) -> Vec<String> {
        let now = Instant::now();
        let mut all = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(members) = all.get_mut(group) else {
            return Vec::new();
        };
        members.retain(|_, (seen, _)| now.duration_since(*seen) < self.expiry);
        members.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_proto::GroupName;

    fn info(g: &str) -> ConsumerGroupInfo {
        ConsumerGroupInfo {
            group: GroupName::from(g),
            subscriptions: vec![],
            broadcast: false,
        }
    }

    #[test]
    fn members_join_leave_and_expire() {
        let r = ClientRegistry::new(Duration::from_millis(50));
        r.heartbeat("b", vec![info("g")]);
        r.heartbeat("a", vec![info("g"), info("h")]);
        assert_eq!(r.members("g"), vec!["a", "b"]);
        r.heartbeat("a", vec![]);
        assert_eq!(r.members("g"), vec!["b"]);
        assert!(r.members("h").is_empty());
        std::thread::sleep(Duration::from_millis(80));
        assert!(r.members("g").is_empty());
    }
}
