//! Sends orders by sharding key, then consumes them one at a time per queue, in order.
//!
//! Start a dev cluster (`raftmq dev`), then:
//! `cargo run -p raftmq-client --example orderly_consumer`.

use std::time::Duration;

use raftmq_client::{ConsumeFrom, Message, OrderlyResult, Producer, PushConsumer};

#[tokio::main]
async fn main() -> Result<(), raftmq_client::Error> {
    let namesrv = std::env::var("RAFTMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let producer = Producer::builder().namesrv(namesrv.split(',')).build()?;
    for order in 0..5 {
        for step in ["created", "paid", "shipped"] {
            let key = format!("order-{order}");
            let msg = Message::new("OrderTopic", format!("{key} {step}")).with_key(key.clone());
            producer.send_orderly(msg, &key).await?;
        }
    }
    producer.shutdown().await;

    let consumer = PushConsumer::builder()
        .namesrv(namesrv.split(','))
        .group("example-orderly")
        .subscribe("OrderTopic", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_orderly(|msg| async move {
            println!(
                "queue {} offset {}: {}",
                msg.queue_id,
                msg.queue_offset,
                String::from_utf8_lossy(&msg.body)
            );
            OrderlyResult::Success
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    consumer.shutdown().await;
    Ok(())
}
