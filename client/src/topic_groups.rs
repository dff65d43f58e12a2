//! Moving a topic between broker groups while it is in use ([`Admin::update_topic_groups`]):
//! growing onto a new group, and shrinking off one without losing a message.
//!
//! Growing is one step: the topic is created on the new group, the group registers it with
//! the NameServers at once, producers spread onto its queues at their next route refresh,
//! and consumers rebalance onto them. Shrinking follows RocketMQ's read/write split: the
//! leaving group's write permission goes first (producers move to the other groups; a send
//! on a stale route is refused and sent elsewhere), then, once every consumer group has
//! committed up to the end of its queues, its read permission. The data stays on the group
//! (`msg get` still finds it) until `raftmq topic delete` or retention removes it.

use std::collections::BTreeMap;
use std::time::Duration;

use raftmq_proto::namesrv::BrokerGroupRoute;
use raftmq_proto::{names, Perm, TopicConfig, WireError};

use crate::admin::{Admin, ADMIN_TIMEOUT};
use crate::error::{Error, Result};

/// How often a shrink re-reads the consumer groups' progress.
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// What [`Admin::update_topic_groups`] did to one broker group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupChange {
    /// The topic was created on it (or given back its read and write permissions).
    Added,
    /// It already served the topic, readable and writable.
    Kept,
    /// It takes no writes for the topic now; consumers still read it (`lag` messages
    /// not yet committed by every consumer group when the wait ended).
    WritesOff {
        /// Messages on its queues not yet committed by every consumer group.
        lag: u64,
    },
    /// Writes, then (once every consumer group had caught up) reads were turned off.
    Removed,
}

/// Where a shrink stands, for progress lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShrinkProgress {
    /// The leaving group.
    pub group: String,
    /// Messages on its queues not yet committed by every consumer group.
    pub lag: u64,
    /// The consumer groups still behind.
    pub behind: Vec<String>,
}

impl Admin {
    /// Makes `topic` served by exactly `groups`: creates it on those that lack it (with
    /// `queues` queues, or as many as the groups serving it now have), and moves it off
    /// the others: writes off at once, then reads off once every consumer group has
    /// consumed what is left, waiting up to `wait` (`Duration::ZERO`: writes off only;
    /// calling again later finishes). `progress` hears the lag while it waits.
    ///
    /// # Errors
    /// Unknown topic, a group not registered, an empty list, or a group refused.
    pub async fn update_topic_groups(
        &self,
        topic: &str,
        groups: &[String],
        queues: Option<u32>,
        wait: Duration,
        mut progress: impl FnMut(&ShrinkProgress),
    ) -> Result<BTreeMap<String, GroupChange>> {
        names::validate_topic(topic).map_err(Error::Invalid)?;
        if groups.is_empty() {
            return Err(Error::Invalid(
                "name at least one broker group to serve the topic".into(),
            ));
        }
        let route = self.topic_route(topic).await?;
        let live = self.groups().await?;
        let find = |name: &str| live.iter().find(|g| g.broker_group.as_str() == name);
        for g in groups {
            if find(g).is_none() {
                return Err(Error::NoRoute {
                    topic: topic.into(),
                    reason: format!(
                        "no live broker group named {g} is registered with the NameServers (live: {})",
                        live.iter()
                            .map(|g| g.broker_group.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        let serving = |name: &str| {
            route
                .groups
                .iter()
                .find(|g| g.broker_group.as_str() == name)
        };
        let queues = match queues {
            Some(q) if q == 0 || q > 1024 => {
                return Err(Error::Invalid(format!(
                    "queues = {q}: must be between 1 and 1024"
                )))
            }
            Some(q) => q,
            None => route
                .groups
                .iter()
                .filter(|g| g.perm.writable())
                .map(|g| g.write_queues)
                .max()
                .unwrap_or(8),
        };
        let mut out = BTreeMap::new();
        for name in groups {
            let change = match serving(name) {
                Some(g) if g.perm == Perm::RW => GroupChange::Kept,
                Some(g) => {
                    let mut c = self.topic_config_on(g, topic).await?;
                    c.perm = Perm::RW;
                    self.upsert_on(g, c).await?;
                    GroupChange::Added
                }
                None => {
                    let g = find(name).expect("checked above");
                    self.upsert_on(g, TopicConfig::new(topic, queues)).await?;
                    GroupChange::Added
                }
            };
            out.insert(name.clone(), change);
        }
        let leaving: Vec<&BrokerGroupRoute> = route
            .groups
            .iter()
            .filter(|g| !groups.contains(&g.broker_group.0) && g.perm.0 != 0)
            .collect();
        for g in leaving {
            let change = self.shrink_off(g, topic, wait, &mut progress).await?;
            out.insert(g.broker_group.0.clone(), change);
        }
        Ok(out)
    }

    async fn shrink_off(
        &self,
        g: &BrokerGroupRoute,
        topic: &str,
        wait: Duration,
        progress: &mut impl FnMut(&ShrinkProgress),
    ) -> Result<GroupChange> {
        let mut config = self.topic_config_on(g, topic).await?;
        if config.perm.writable() {
            config.perm = Perm(Perm::READ);
            self.upsert_on(g, config.clone()).await?;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let p = self.unconsumed(g, topic).await?;
            if p.lag == 0 {
                config.perm = Perm(0);
                self.upsert_on(g, config).await?;
                return Ok(GroupChange::Removed);
            }
            progress(&p);
            if tokio::time::Instant::now() >= deadline {
                return Ok(GroupChange::WritesOff { lag: p.lag });
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    /// Messages of `topic` on group `g` some consumer group has not committed yet. A
    /// consumer group counts once it has committed an offset on the topic there (what
    /// [`Admin::group_progress`] lists).
    async fn unconsumed(&self, g: &BrokerGroupRoute, topic: &str) -> Result<ShrinkProgress> {
        let configs = self
            .core
            .call_leader(
                g,
                ADMIN_TIMEOUT,
                |b, cx| async move { b.list_groups(cx).await },
            )
            .await?;
        let mut lag = 0;
        let mut behind = Vec::new();
        for c in configs {
            let group_lag: u64 = self
                .group_progress(c.name.as_str())
                .await?
                .iter()
                .filter(|q| q.topic == topic && q.broker_group == g.broker_group.0)
                .map(|q| q.lag)
                .sum();
            if group_lag > 0 {
                lag += group_lag;
                behind.push(c.name.0);
            }
        }
        Ok(ShrinkProgress {
            group: g.broker_group.0.clone(),
            lag,
            behind,
        })
    }

    /// The topic's config as group `g` has it.
    async fn topic_config_on(&self, g: &BrokerGroupRoute, topic: &str) -> Result<TopicConfig> {
        let all = self
            .core
            .call_leader(
                g,
                ADMIN_TIMEOUT,
                |b, cx| async move { b.list_topics(cx).await },
            )
            .await?;
        all.into_iter()
            .find(|c| c.name.as_str() == topic)
            .ok_or_else(|| Error::Wire(WireError::TopicNotFound(topic.to_owned())))
    }

    pub(crate) async fn upsert_on(&self, g: &BrokerGroupRoute, config: TopicConfig) -> Result<()> {
        self.core
            .call_leader(g, ADMIN_TIMEOUT, move |b, cx| {
                let c = config.clone();
                async move { b.upsert_topic(cx, c).await }
            })
            .await
    }
}
