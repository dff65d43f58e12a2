//! Transactional messages: a message that consumers see only if the producer's local
//! transaction commits.
//!
//! ```no_run
//! # async fn f() -> raftmq_client::Result<()> {
//! use raftmq_client::transaction::{TransactionProducer, TransactionState};
//! use raftmq_client::Message;
//!
//! let producer = TransactionProducer::builder()
//!     .namesrv(["127.0.0.1:9876"])
//!     .group("orders-tx")
//!     // Asked by the broker when a half message was neither committed nor rolled back.
//!     .checker(|m: &raftmq_client::MessageExt| TransactionState::Commit)
//!     .build()?;
//! let r = producer
//!     .send_in_transaction(Message::new("orders", "order 42"), |_sent| {
//!         // ... the local transaction ...
//!         TransactionState::Commit
//!     })
//!     .await?;
//! println!("{} -> {:?}", r.send.msg_id, r.ended);
//! producer.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The half message is stored (replicated, invisible) before the local transaction runs;
//! the decision is sent after it. When the decision does not reach the broker (`Unknown`,
//! a crash, a lost connection) the leader asks a live producer of the same group after
//! `transaction_timeout_ms` (6 s), every `transaction_check_interval_ms` (30 s), and rolls
//! the message back after `transaction_check_max` (15) checks. Every producer of the group
//! holds a long poll on each broker group's leader to receive those checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::message::{PROP_PRODUCER_GROUP, PROP_TRANSACTION_PREPARED};
use raftmq_proto::namesrv::BrokerGroupRoute;
pub use raftmq_proto::transaction::{EndTransactionOutcome, TransactionState};
use raftmq_proto::transaction::{EndTransactionRequest, TransactionCheck, TransactionCheckPoll};
use raftmq_proto::{names, BrokerGroup, Message, MessageExt, SendResult};
use tokio_util::sync::CancellationToken;

use crate::core::{ClientConfig, Core};
use crate::error::{Error, Result};
use crate::producer::Producer;

/// How long the leader may hold a check-back poll.
const POLL_WAIT: Duration = Duration::from_secs(10);
/// How often the set of broker groups to poll is refreshed.
const GROUPS_REFRESH: Duration = Duration::from_secs(10);
/// Deadline of sending a decision.
const END_TIMEOUT: Duration = Duration::from_secs(3);

/// Answers the broker's check-back: what became of the local transaction of this half
/// message? (`Unknown` is asked again later.) Runs on a blocking thread.
pub trait TransactionChecker: Send + Sync + 'static {
    /// The state of the transaction `msg` belongs to.
    fn check(&self, msg: &MessageExt) -> TransactionState;
}

impl<F> TransactionChecker for F
where
    F: Fn(&MessageExt) -> TransactionState + Send + Sync + 'static,
{
    fn check(&self, msg: &MessageExt) -> TransactionState {
        self(msg)
    }
}

/// Builds a [`TransactionProducer`].
pub struct TransactionProducerBuilder {
    client: ClientConfig,
    group: Option<String>,
    checker: Option<Arc<dyn TransactionChecker>>,
    send_timeout: Duration,
}

impl std::fmt::Debug for TransactionProducerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionProducerBuilder")
            .field("group", &self.group)
            .field("checker", &self.checker.is_some())
            .finish_non_exhaustive()
    }
}

impl TransactionProducerBuilder {
    crate::core::client_builder_methods!();

    /// The producer group (required): the broker asks any live producer of this group
    /// about a half message its sender did not decide.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Answers check-backs (required).
    pub fn checker(mut self, checker: impl TransactionChecker) -> Self {
        self.checker = Some(Arc::new(checker));
        self
    }

    /// Total time a half message's send may take, retries included (default 3 s).
    pub fn send_timeout(mut self, t: Duration) -> Self {
        self.send_timeout = t;
        self
    }

    /// Starts the producer and its check-back polls.
    ///
    /// # Errors
    /// No group or checker, an invalid group name, bad client settings.
    pub fn build(self) -> Result<TransactionProducer> {
        let group = self.group.ok_or_else(|| {
            Error::Invalid(
                "a transactional producer needs a producer group: call .group(..) (the broker \
                 asks its members about undecided transactions)"
                    .into(),
            )
        })?;
        names::validate_group(&group).map_err(Error::Invalid)?;
        let checker = self.checker.ok_or_else(|| {
            Error::Invalid(
                "a transactional producer needs a checker: call .checker(..) to answer the \
                 broker's check-backs"
                    .into(),
            )
        })?;
        let producer = Producer::builder()
            .with_config(self.client)
            .group(group.clone())
            .send_timeout(self.send_timeout)
            .build()?;
        let stop = CancellationToken::new();
        tokio::spawn(poll_groups(
            producer.core().clone(),
            group.clone(),
            checker,
            stop.clone(),
        ));
        Ok(TransactionProducer {
            producer,
            group,
            stop,
        })
    }
}

/// What [`TransactionProducer::send_in_transaction`] did.
#[derive(Debug)]
pub struct TransactionSendResult {
    /// The half message's send (its `msg_id` names it at `broker_group`).
    pub send: SendResult,
    /// What the local transaction decided.
    pub state: TransactionState,
    /// What the broker did with the decision, when it answered; `None` with
    /// `end_error` set when it did not (the check-back settles it).
    pub ended: Option<EndTransactionOutcome>,
    /// Why the decision may not have reached the broker.
    pub end_error: Option<Error>,
}

/// Sends transactional messages and answers check-backs for its group.
#[derive(Debug)]
pub struct TransactionProducer {
    producer: Producer,
    group: String,
    stop: CancellationToken,
}

impl TransactionProducer {
    /// A builder; `group` and `checker` are required.
    pub fn builder() -> TransactionProducerBuilder {
        TransactionProducerBuilder {
            client: ClientConfig::default(),
            group: None,
            checker: None,
            send_timeout: Duration::from_secs(3),
        }
    }

    /// Sends `msg` as a half message, runs `local` once it is stored, then sends its
    /// decision. A decision that does not reach the broker is reported in the result, not
    /// as an error: the check-back settles it.
    ///
    /// # Errors
    /// The half message could not be sent (then `local` did not run).
    pub async fn send_in_transaction(
        &self,
        mut msg: Message,
        local: impl FnOnce(&SendResult) -> TransactionState,
    ) -> Result<TransactionSendResult> {
        msg.properties
            .retain(|(k, _)| k != PROP_TRANSACTION_PREPARED && k != PROP_PRODUCER_GROUP);
        msg.properties
            .push((PROP_TRANSACTION_PREPARED.to_owned(), "true".to_owned()));
        msg.properties
            .push((PROP_PRODUCER_GROUP.to_owned(), self.group.clone()));
        let topic = msg.topic.clone();
        let send = self.producer.send(msg).await?;
        let state = local(&send);
        let (ended, end_error) = match self.end(&topic, &send, state).await {
            Ok(o) => (Some(o), None),
            Err(e) => {
                tracing::warn!(msg_id = %send.msg_id, error = %e, "a transaction's decision may not have reached the broker; its check-back will settle it");
                (None, Some(e))
            }
        };
        Ok(TransactionSendResult {
            send,
            state,
            ended,
            end_error,
        })
    }

    /// Sends a decision about a half message this producer's group sent.
    ///
    /// # Errors
    /// No route to its broker group, or the broker refused it.
    pub async fn end(
        &self,
        topic: &raftmq_proto::TopicName,
        send: &SendResult,
        state: TransactionState,
    ) -> Result<EndTransactionOutcome> {
        let core = self.producer.core();
        let route = core.route(topic, false).await?;
        let group = route
            .groups
            .iter()
            .find(|g| g.broker_group == send.broker_group)
            .cloned()
            .ok_or_else(|| Error::NoRoute {
                topic: topic.to_string(),
                reason: format!("broker group {} is not in its route", send.broker_group),
            })?;
        end_at(core, &group, &self.group, &send.msg_id, state, false).await
    }

    /// The producer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Stops answering check-backs, waits for in-flight sends, closes connections.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.producer.shutdown().await;
    }
}

impl Drop for TransactionProducer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn end_at(
    core: &Core,
    group: &BrokerGroupRoute,
    producer_group: &str,
    msg_id: &str,
    state: TransactionState,
    from_check: bool,
) -> Result<EndTransactionOutcome> {
    let req = EndTransactionRequest {
        producer_group: producer_group.to_owned(),
        msg_id: msg_id.to_owned(),
        state,
        from_check,
    };
    core.call_leader(group, END_TIMEOUT, |c, cx| {
        let req = req.clone();
        async move { c.end_transaction(cx, req).await }
    })
    .await
}

/// Keeps one check-back poll running per live broker group until `stop`.
async fn poll_groups(
    core: Arc<Core>,
    producer_group: String,
    checker: Arc<dyn TransactionChecker>,
    stop: CancellationToken,
) {
    let mut polls: HashMap<BrokerGroup, CancellationToken> = HashMap::new();
    loop {
        match core.cluster().await {
            Ok(c) => {
                let live: Vec<BrokerGroup> =
                    c.groups.iter().map(|g| g.broker_group.clone()).collect();
                polls.retain(|g, t| {
                    let keep = live.contains(g);
                    if !keep {
                        t.cancel();
                    }
                    keep
                });
                for g in c.groups {
                    if polls.contains_key(&g.broker_group) {
                        continue;
                    }
                    let t = stop.child_token();
                    polls.insert(g.broker_group.clone(), t.clone());
                    tokio::spawn(poll_group(
                        core.clone(),
                        g,
                        producer_group.clone(),
                        checker.clone(),
                        t,
                    ));
                }
            }
            Err(e) => tracing::debug!(error = %e, "listing broker groups for check-backs failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(GROUPS_REFRESH) => {}
        }
    }
}

/// Polls one broker group's leader for check-backs and answers them.
async fn poll_group(
    core: Arc<Core>,
    mut group: BrokerGroupRoute,
    producer_group: String,
    checker: Arc<dyn TransactionChecker>,
    stop: CancellationToken,
) {
    let poll = TransactionCheckPoll {
        producer_group: producer_group.clone(),
        client_id: core.client_id().to_owned(),
        wait_ms: POLL_WAIT.as_millis() as u64,
    };
    loop {
        let err = match core.leader_addr(&group) {
            None => None,
            Some(addr) => {
                // Longer than the poll itself: the leader holds it up to POLL_WAIT.
                let call = core.call(&addr, POLL_WAIT + Duration::from_secs(5), |c, cx| {
                    let poll = poll.clone();
                    async move { c.transaction_checks(cx, poll).await }
                });
                let r = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = call => r,
                };
                match r {
                    Ok(checks) => {
                        for c in checks {
                            answer(&core, &group, &producer_group, &checker, c).await;
                        }
                        continue;
                    }
                    Err(e) => Some(e),
                }
            }
        };
        if let Some(e) = &err {
            if core.learn_leader(&group.broker_group, e, Some(&group)) {
                continue;
            }
            tracing::debug!(group = %group.broker_group, error = %e, "check-back poll failed; polling again");
        }
        core.forget_leader(&group.broker_group);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if let Ok(c) = core.cluster().await {
            if let Some(g) = c
                .groups
                .into_iter()
                .find(|g| g.broker_group == group.broker_group)
            {
                group = g;
            }
        }
    }
}

async fn answer(
    core: &Core,
    group: &BrokerGroupRoute,
    producer_group: &str,
    checker: &Arc<dyn TransactionChecker>,
    c: TransactionCheck,
) {
    let msg_id = c.message.msg_id.clone();
    let checker = checker.clone();
    let state = match tokio::task::spawn_blocking(move || checker.check(&c.message)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%msg_id, error = %e, "the transaction checker panicked; the broker will ask again");
            return;
        }
    };
    if state == TransactionState::Unknown {
        return;
    }
    if let Err(e) = end_at(core, group, producer_group, &msg_id, state, true).await {
        tracing::warn!(%msg_id, error = %e, "answering a check-back failed; the broker will ask again");
    }
}
