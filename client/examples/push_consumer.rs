//! Consumes `TopicTest` (tags A or B) in a clustering group until ctrl-c.
//!
//! Start a dev cluster (`raftmq dev`), then:
//! `cargo run -p raftmq-client --example push_consumer`.

use raftmq_client::{ConsumeFrom, ConsumeResult, PushConsumer};

#[tokio::main]
async fn main() -> Result<(), raftmq_client::Error> {
    let namesrv = std::env::var("RAFTMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let consumer = PushConsumer::builder()
        .namesrv(namesrv.split(','))
        .group("example-consumer")
        .subscribe("TopicTest", "TagA || TagB")
        .consume_from(ConsumeFrom::FirstOffset)
        .start(|msg| async move {
            println!(
                "{} {} {}",
                msg.msg_id,
                msg.tag,
                String::from_utf8_lossy(&msg.body)
            );
            ConsumeResult::Success
        })
        .await?;
    let _ = tokio::signal::ctrl_c().await;
    consumer.shutdown().await;
    Ok(())
}
