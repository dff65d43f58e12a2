//! rr-tx: drives the transactional producer of the crates.io client `rocketmq-client-rust`
//! (a RocketMQ remoting client, independent of raftmq) against a broker, for raftmq's
//! remoting tests. Every stdout line is one JSON object.
//!
//!     rr-tx NAMESRV TOPIC GROUP PLAN CHECK_ANSWER WAIT_S
//!
//! PLAN is a comma list of commit|rollback|unknown: message i has body `rr-<i>-<plan>` and
//! its local transaction answers plan i. CHECK_ANSWER is what the check-back answers for
//! every message. After the sends it keeps running WAIT_S seconds to answer check-backs.

use std::any::Any;
use std::time::Duration;

use rocketmq_client_rust::{
    ClientRuntime, ClientRuntimeConfig, LocalTransactionState, TransactionListener,
    TransactionMQProducer,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

fn state(s: &str) -> LocalTransactionState {
    match s {
        "commit" => LocalTransactionState::CommitMessage,
        "rollback" => LocalTransactionState::RollbackMessage,
        _ => LocalTransactionState::Unknown,
    }
}

fn body_of(m: &dyn MessageTrait) -> String {
    m.get_body()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

struct Listener {
    check_answer: String,
}

impl TransactionListener for Listener {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let body = body_of(msg);
        let plan = body.rsplit('-').next().unwrap_or("unknown").to_owned();
        state(&plan)
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        println!(
            "{}",
            serde_json::json!({"check": body_of(msg), "answer": self.check_answer})
        );
        state(&self.check_answer)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 6 {
        return Err("usage: rr-tx NAMESRV TOPIC GROUP PLAN CHECK_ANSWER WAIT_S".into());
    }
    let (namesrv, topic, group, plan, answer) = (&args[0], &args[1], &args[2], &args[3], &args[4]);
    let wait_s: u64 = args[5].parse()?;
    let owner = RuntimeOwner::plan(RuntimeConfig {
        thread_name: "rr-tx".into(),
        ..Default::default()
    })?
    .build()?;
    let telemetry = rocketmq_observability::install_global(
        &rocketmq_observability::TelemetryBootstrapConfig::default(),
    )?;
    let runtime = ClientRuntime::try_new(
        owner.root_context().component("client"),
        ClientRuntimeConfig::default(),
        telemetry.handle(),
    )?;
    let mut producer = TransactionMQProducer::builder(runtime.clone())
        .producer_group(group.clone())
        .name_server_addr(namesrv.clone())
        .topics(vec![topic.clone()])
        .transaction_listener(Listener {
            check_answer: answer.clone(),
        })
        .build();
    producer.start().await?;
    for (i, p) in plan.split(',').enumerate() {
        let body = format!("rr-{i}-{p}");
        let msg = Message::builder()
            .topic(topic.as_str())
            .body_slice(body.as_bytes())
            .build_unchecked();
        let line = match producer
            .send_message_in_transaction::<(), _>(msg, None)
            .await
        {
            Ok(r) => serde_json::json!({"i": i, "body": body, "result": r}),
            Err(e) => serde_json::json!({"i": i, "body": body, "error": e.to_string()}),
        };
        println!("{line}");
    }
    tokio::time::sleep(Duration::from_secs(wait_s)).await;
    producer.shutdown().await;
    println!("{}", serde_json::json!({"done": true}));
    Ok(())
}
