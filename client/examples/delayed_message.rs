//! Sends a message with delay level 2 (5 s) and one due at an exact time, then waits for
//! both.
//!
//! Start a dev cluster (`raftmq dev`), then:
//! `cargo run -p raftmq-client --example delayed_message`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use raftmq_client::{ConsumeFrom, Message, Producer, PushConsumer};

#[tokio::main]
async fn main() -> Result<(), raftmq_client::Error> {
    let namesrv = std::env::var("RAFTMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let producer = Producer::builder().namesrv(namesrv.split(',')).build()?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let r = producer
        .send(Message::new("DelayTopic", "in five seconds").with_delay_level(2))
        .await?;
    println!("level 2: due at {} ms", r.deliver_at_ms);
    let r = producer
        .send(Message::new("DelayTopic", "at +3 s").with_deliver_at(now_ms + 3_000))
        .await?;
    println!("deliver-at: due at {} ms", r.deliver_at_ms);
    producer.shutdown().await;

    let mut stream = PushConsumer::builder()
        .namesrv(namesrv.split(','))
        .group("example-delay")
        .subscribe("DelayTopic", "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .stream()
        .await?;
    let mut got = 0;
    while got < 2 {
        match tokio::time::timeout(Duration::from_secs(15), stream.next()).await {
            Ok(Some(d)) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                println!(
                    "{} arrived {} ms after sending",
                    String::from_utf8_lossy(&d.body),
                    now - now_ms
                );
                d.ack();
                got += 1;
            }
            _ => break,
        }
    }
    stream.shutdown().await;
    Ok(())
}
