//! Sends ten messages and prints where each went.
//!
//! Start a dev cluster (`raftmq dev`), then: `cargo run -p raftmq-client --example producer`.

use raftmq_client::{Message, Producer};

#[tokio::main]
async fn main() -> Result<(), raftmq_client::Error> {
    let namesrv = std::env::var("RAFTMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let producer = Producer::builder()
        .namesrv(namesrv.split(','))
        .group("example-producer")
        .build()?;
    for i in 0..10 {
        let msg = Message::new("TopicTest", format!("Hello raftmq {i}"))
            .with_tag("TagA")
            .with_key(format!("order-{i}"))
            .with_property("source", "example");
        let r = producer.send(msg).await?;
        println!(
            "{} {} queue={}:{} offset={:?}",
            r.status, r.msg_id, r.broker_group, r.queue_id, r.queue_offset
        );
    }
    // Pipelined: start many sends, then collect the results.
    let mut handles = Vec::new();
    for i in 0..100 {
        handles.push(
            producer
                .send_async(Message::new("TopicTest", format!("async {i}")))
                .await?,
        );
    }
    for h in handles {
        h.await?;
    }
    producer.shutdown().await;
    Ok(())
}
