//! Live client instances per consumer group, from heartbeats: for rebalancing (the
//! consumer list), for pulls that carry no subscription (Java's push consumer relies on
//! the heartbeat's), and for telling members at once when their group changes.
//!
//! Each node keeps its own registry: consumers heartbeat every node of a group.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raftmq_proto::broker::ConsumerGroupInfo;
use raftmq_proto::ConsumerGroup;
use tokio::sync::mpsc;

/// A message the broker pushes to a client over its connection (remoting clients only;
/// native clients poll).
#[derive(Debug, Clone)]
pub enum Push {
    /// The group's members changed: rebalance now (NOTIFY_CONSUMER_IDS_CHANGED).
    ConsumerIdsChanged(ConsumerGroup),
    /// What became of this half message? (CHECK_TRANSACTION_STATE)
    CheckTransaction {
        /// The producer group asked.
        producer_group: String,
        /// The half message.
        message: Box<raftmq_store::StoredMessage>,
    },
}

/// Where pushes to one client connection go. Bounded: a client that does not read gets
/// no more pushes (it still rebalances on its own timer).
pub type PushSender = mpsc::Sender<Push>;

/// Where a client instance connects from, as admin tools show it.
#[derive(Debug, Clone, Default)]
pub struct ClientOrigin {
    /// Its address, when the transport knows it.
    pub addr: Option<SocketAddr>,
    /// Its language (`JAVA`, `CPP`, `RUST` ...).
    pub language: String,
    /// Its protocol version (RocketMQ's `MQVersion` ordinal, or raftmq's protocol version).
    pub version: i32,
    /// Where pushes to its connection go (remoting clients only).
    pub push: Option<PushSender>,
}

/// One live member of a consumer group, as admin tools show it.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    /// The client instance.
    pub client_id: String,
    /// Where it connects from.
    pub origin: ClientOrigin,
    /// What it reported for the group.
    pub info: ConsumerGroupInfo,
}

#[derive(Debug)]
struct Member {
    seen: Instant,
    info: ConsumerGroupInfo,
    origin: ClientOrigin,
}

/// Members of one group by client id.
type Members = BTreeMap<String, Member>;

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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Members>> {
        // A registry of soft state: a panic elsewhere leaves nothing inconsistent in it.
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a heartbeat at `now`; an instance that lists no group is removed everywhere
    /// (a clean shutdown). Returns the groups whose member set changed.
    pub fn heartbeat(
        &self,
        client_id: &str,
        groups: Vec<ConsumerGroupInfo>,
        origin: ClientOrigin,
        now: Instant,
    ) -> Vec<ConsumerGroup> {
        let mut all = self.lock();
        let named: Vec<String> = groups.iter().map(|g| g.group.as_str().to_owned()).collect();
        let mut changed = Vec::new();
        for (name, members) in all.iter_mut() {
            if !named.contains(name) && members.remove(client_id).is_some() {
                changed.push(ConsumerGroup::from(name.as_str()));
            }
        }
        for g in groups {
            let name = g.group.as_str().to_owned();
            let members = all.entry(name.clone()).or_default();
            let member = Member {
                seen: now,
                info: g,
                origin: origin.clone(),
            };
            if members.insert(client_id.to_owned(), member).is_none() {
                changed.push(ConsumerGroup::from(name));
            }
        }
        all.retain(|_, members| !members.is_empty());
        changed
    }

    /// Removes an instance from one group (or from all); returns the groups it left.
    pub fn unregister(&self, client_id: &str, group: Option<&str>) -> Vec<ConsumerGroup> {
        let mut all = self.lock();
        let mut changed = Vec::new();
        for (name, members) in all.iter_mut() {
            if group.is_none_or(|g| g == name) && members.remove(client_id).is_some() {
                changed.push(ConsumerGroup::from(name.as_str()));
            }
        }
        all.retain(|_, members| !members.is_empty());
        changed
    }

    /// Live members of a group at `now`, sorted by client id.
    pub fn members(&self, group: &str, now: Instant) -> Vec<String> {
        let mut all = self.lock();
        let Some(members) = all.get_mut(group) else {
            return Vec::new();
        };
        members.retain(|_, m| now.duration_since(m.seen) < self.expiry);
        members.keys().cloned().collect()
    }

    /// Live members of a group at `now`, with where they connect from.
    pub fn member_infos(&self, group: &str, now: Instant) -> Vec<MemberInfo> {
        let all = self.lock();
        all.get(group)
            .into_iter()
            .flatten()
            .filter(|(_, m)| now.duration_since(m.seen) < self.expiry)
            .map(|(id, m)| MemberInfo {
                client_id: id.clone(),
                origin: m.origin.clone(),
                info: m.info.clone(),
            })
            .collect()
    }

    /// The expression a live member of `group` subscribed `topic` with.
    pub fn subscription(&self, group: &str, topic: &str, now: Instant) -> Option<String> {
        let all = self.lock();
        all.get(group)?
            .values()
            .filter(|m| now.duration_since(m.seen) < self.expiry)
            .flat_map(|m| m.info.subscriptions.iter())
            .find(|(t, _)| t.as_str() == topic)
            .map(|(_, expr)| expr.clone())
    }

    /// Tells every member of these groups that can be pushed to that its group changed.
    pub fn notify(&self, groups: &[ConsumerGroup]) {
        if groups.is_empty() {
            return;
        }
        let all = self.lock();
        for g in groups {
            for m in all.get(g.as_str()).into_iter().flat_map(|m| m.values()) {
                if let Some(push) = &m.origin.push {
                    // Full or closed: the client rebalances on its own timer anyway.
                    let _ = push.try_send(Push::ConsumerIdsChanged(g.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_proto::TopicName;

    fn info(g: &str) -> ConsumerGroupInfo {
        ConsumerGroupInfo {
            group: ConsumerGroup::from(g),
            subscriptions: vec![(TopicName::from("T"), format!("{g}-tags"))],
            broadcast: false,
        }
    }

    fn names(v: Vec<ConsumerGroup>) -> Vec<String> {
        let mut v: Vec<String> = v.into_iter().map(|g| g.0).collect();
        v.sort();
        v
    }

    #[test]
    fn members_join_leave_and_expire() {
        let r = ClientRegistry::new(Duration::from_millis(50));
        let t0 = Instant::now();
        assert_eq!(
            names(r.heartbeat("b", vec![info("g")], ClientOrigin::default(), t0)),
            ["g"]
        );
        assert_eq!(
            names(r.heartbeat("a", vec![info("g"), info("h")], ClientOrigin::default(), t0)),
            ["g", "h"]
        );
        assert!(r
            .heartbeat("a", vec![info("g"), info("h")], ClientOrigin::default(), t0)
            .is_empty());
        assert_eq!(r.member_infos("g", t0).len(), 2);
        assert_eq!(r.members("g", t0), vec!["a", "b"]);
        assert_eq!(r.subscription("h", "T", t0).as_deref(), Some("h-tags"));
        assert_eq!(
            names(r.heartbeat("a", vec![], ClientOrigin::default(), t0)),
            ["g", "h"]
        );
        assert_eq!(r.members("g", t0), vec!["b"]);
        assert!(r.members("h", t0).is_empty());
        assert!(r.members("g", t0 + Duration::from_millis(80)).is_empty());
        assert_eq!(
            r.subscription("g", "T", t0 + Duration::from_millis(80)),
            None
        );
    }

    #[test]
    fn unregistering_and_pushes() {
        let r = ClientRegistry::new(Duration::from_secs(120));
        let now = Instant::now();
        let (tx, mut rx) = mpsc::channel(4);
        let pushed = ClientOrigin {
            push: Some(tx),
            ..ClientOrigin::default()
        };
        r.heartbeat("a", vec![info("g"), info("h")], pushed, now);
        r.heartbeat("b", vec![info("g")], ClientOrigin::default(), now);
        assert_eq!(names(r.unregister("b", Some("g"))), ["g"]);
        assert!(r.unregister("b", None).is_empty());
        r.notify(&[ConsumerGroup::from("g")]);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Push::ConsumerIdsChanged(g) if g == ConsumerGroup::from("g")
        ));
        assert_eq!(names(r.unregister("a", None)), ["g", "h"]);
        assert!(r.members("g", now).is_empty());
    }
}
