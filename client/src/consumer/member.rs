//! What every consumer of a group does the same way: heartbeats, reading the member
//! list, computing its share of the queues, and finding where a new queue starts.

use std::collections::BTreeMap;
use std::sync::Arc;

use raftmq_proto::broker::{ConsumerGroupInfo, HeartbeatRequest};
use raftmq_proto::namesrv::{BrokerGroupRoute, TopicRoute};
use raftmq_proto::{names, BrokerGroup, ConsumerGroup, QueueId, TopicName};

use super::allocate::AllocateStrategy;
use super::filter::TagFilter;
use super::offsets::OffsetStore;
use super::push::{ConsumeFrom, MessageModel};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::producer::MessageQueue;

/// One instance's membership in a consumer group.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) core: Arc<Core>,
    pub(crate) group: ConsumerGroup,
    pub(crate) model: MessageModel,
    pub(crate) strategy: AllocateStrategy,
    pub(crate) consume_from: ConsumeFrom,
}

/// The readable queues of a route, sorted by group then queue id.
pub(crate) fn readable_queues(route: &TopicRoute) -> Vec<MessageQueue> {
    route
        .groups
        .iter()
        .filter(|g| g.perm.readable())
        .flat_map(|g| {
            (0..g.read_queues).map(move |q| MessageQueue {
                topic: route.topic.clone(),
                broker_group: g.broker_group.clone(),
                queue_id: QueueId(q),
            })
        })
        .collect()
}

/// Whether a topic is a retry topic.
pub(crate) fn is_retry(topic: &TopicName) -> bool {
    topic.as_str().starts_with(names::RETRY_PREFIX)
}

impl Member {
    /// The route of the broker group holding `mq`.
    pub(crate) async fn group_route(&self, mq: &MessageQueue) -> Result<BrokerGroupRoute> {
        let route = self.core.route(&mq.topic, false).await?;
        route
            .groups
            .iter()
            .find(|g| g.broker_group == mq.broker_group)
            .cloned()
            .ok_or_else(|| Error::NoRoute {
                topic: mq.topic.to_string(),
                reason: format!("group {} no longer serves it", mq.broker_group),
            })
    }

    /// Every broker group serving one of `topics`.
    pub(crate) async fn broker_groups(&self, topics: &[TopicName]) -> Vec<BrokerGroupRoute> {
        let mut out: BTreeMap<BrokerGroup, BrokerGroupRoute> = BTreeMap::new();
        for t in topics {
            if let Ok(r) = self.core.route(t, false).await {
                for g in &r.groups {
                    out.entry(g.broker_group.clone())
                        .or_insert_with(|| g.clone());
                }
            }
        }
        out.into_values().collect()
    }

    /// Tells every broker group serving the subscriptions that this instance is a member
    /// (or, `leaving`, that it no longer is).
    pub(crate) async fn heartbeat(&self, subs: &[(TopicName, TagFilter)], leaving: bool) {
        let groups = if leaving {
            Vec::new()
        } else {
            vec![ConsumerGroupInfo {
                group: self.group.clone(),
                subscriptions: subs
                    .iter()
                    .map(|(t, f)| (t.clone(), f.expression()))
                    .collect(),
                broadcast: self.model == MessageModel::Broadcasting,
            }]
        };
        let req = HeartbeatRequest {
            client_id: self.core.client_id().to_owned(),
            consumer_groups: groups,
        };
        let topics: Vec<TopicName> = subs.iter().map(|(t, _)| t.clone()).collect();
        for g in self.broker_groups(&topics).await {
            let r = req.clone();
            let res = self
                .core
                .call_leader(&g, self.core.config.rpc_timeout, move |b, cx| {
                    let r = r.clone();
                    async move { b.heartbeat(cx, r).await }
                })
                .await;
            if let Err(e) = res {
                tracing::debug!(broker_group = %g.broker_group, error = %e, "heartbeat failed");
            }
        }
    }

    /// The group's live members as the first broker group of `route` knows them, sorted.
    pub(crate) async fn members(&self, route: &TopicRoute) -> Result<Vec<String>> {
        let g = route.groups.first().ok_or_else(|| Error::NoRoute {
            topic: route.topic.to_string(),
            reason: "no broker group".into(),
        })?;
        let group = self.group.clone();
        let mut list = self
            .core
            .call_leader(g, self.core.config.rpc_timeout, move |b, cx| {
                let group = group.clone();
                async move { b.consumer_list(cx, group).await }
            })
            .await?;
        list.sort();
        Ok(list)
    }

    /// This instance's queues of `route` and the member list used, or `None` while the
    /// brokers do not list this instance yet.
    pub(crate) async fn share(
        &self,
        route: &TopicRoute,
    ) -> Result<Option<(Vec<MessageQueue>, Vec<String>)>> {
        let all = readable_queues(route);
        if self.model == MessageModel::Broadcasting {
            return Ok(Some((all, Vec::new())));
        }
        let members = self.members(route).await?;
        if !members.iter().any(|m| m == self.core.client_id()) {
            return Ok(None);
        }
        let mine = self
            .strategy
            .allocate(&all, &members, self.core.client_id());
        Ok(Some((mine, members)))
    }

    /// Where consumption of `mq` starts: the stored offset, else per `consume_from`
    /// (retry topics always from their first message).
    pub(crate) async fn start_offset(
        &self,
        mq: &MessageQueue,
        offsets: &OffsetStore,
    ) -> Result<u64> {
        if let Some(o) = offsets.read(mq).await? {
            return Ok(o);
        }
        let g = self.group_route(mq).await?;
        let t = mq.topic.clone();
        let status = self
            .core
            .call_leader(&g, self.core.config.rpc_timeout, move |b, cx| {
                let t = t.clone();
                async move { b.topic_status(cx, t).await }
            })
            .await?;
        let q = status.into_iter().find(|s| s.queue_id == mq.queue_id);
        let (min, max) = q.map_or((0, 0), |s| (s.min_offset.0, s.max_offset.0));
        let from = if is_retry(&mq.topic) {
            ConsumeFrom::FirstOffset
        } else {
            self.consume_from
        };
        Ok(match from {
            ConsumeFrom::FirstOffset => min,
            ConsumeFrom::LastOffset => max,
            ConsumeFrom::Timestamp(ms) => {
                let (t, q) = (mq.topic.clone(), mq.queue_id);
                self.core
                    .call_leader(&g, self.core.config.rpc_timeout, move |b, cx| {
                        let t = t.clone();
                        async move { b.offset_for_time(cx, t, q, ms).await }
                    })
                    .await?
                    .0
            }
        })
    }
}
