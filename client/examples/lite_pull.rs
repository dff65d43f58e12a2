//! Polls `TopicTest` with a lite pull consumer and commits by hand.
//!
//! Start a dev cluster (`raftmq dev`), then: `cargo run -p raftmq-client --example lite_pull`.

use std::time::Duration;

use raftmq_client::{ConsumeFrom, LitePullConsumer};

#[tokio::main]
async fn main() -> Result<(), raftmq_client::Error> {
    let namesrv = std::env::var("RAFTMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let mut consumer = LitePullConsumer::builder()
        .namesrv(namesrv.split(','))
        .group("example-lite")
        .consume_from(ConsumeFrom::FirstOffset)
        .auto_commit(None)
        .build()?;
    consumer.subscribe("TopicTest", "*")?;
    for _ in 0..5 {
        let msgs = consumer.poll(Duration::from_secs(2)).await?;
        for m in &msgs {
            println!(
                "{}:{} {}",
                m.queue_id,
                m.queue_offset,
                String::from_utf8_lossy(&m.body)
            );
        }
        consumer.commit().await?;
    }
    consumer.shutdown().await;
    Ok(())
}
