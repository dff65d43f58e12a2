//! The `Stream` face of a push consumer: `while let Some(d) = stream.next().await`.

use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use raftmq_proto::MessageExt;
use tokio::sync::{mpsc, oneshot};

use super::push::{ConsumeResult, PushConsumer, PushConsumerBuilder};
use crate::error::Result;

/// One message from a [`MessageStream`]. Acknowledge it with [`Delivery::ack`]; dropping it
/// unacknowledged (or [`Delivery::retry_later`]) returns it for redelivery with back-off.
#[derive(Debug)]
pub struct Delivery {
    msg: MessageExt,
    reply: Option<oneshot::Sender<ConsumeResult>>,
}

impl Delivery {
    /// Marks the message consumed.
    pub fn ack(mut self) {
        if let Some(r) = self.reply.take() {
            let _ = r.send(ConsumeResult::Success);
        }
    }

    /// Asks for redelivery later (through the retry topic).
    pub fn retry_later(mut self) {
        if let Some(r) = self.reply.take() {
            let _ = r.send(ConsumeResult::ReconsumeLater);
        }
    }

    /// The message.
    pub fn message(&self) -> &MessageExt {
        &self.msg
    }
}

impl Deref for Delivery {
    type Target = MessageExt;

    fn deref(&self) -> &MessageExt {
        &self.msg
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(r) = self.reply.take() {
            let _ = r.send(ConsumeResult::ReconsumeLater);
        }
    }
}

/// Messages of a push consumer as a `Stream`.
#[derive(Debug)]
pub struct MessageStream {
    consumer: PushConsumer,
    rx: mpsc::Receiver<Delivery>,
}

impl MessageStream {
    /// The consumer behind the stream.
    pub fn consumer(&self) -> &PushConsumer {
        &self.consumer
    }

    /// Stops the consumer (see [`PushConsumer::shutdown`]).
    pub async fn shutdown(self) {
        let MessageStream { consumer, rx } = self;
        drop(rx);
        consumer.shutdown().await;
    }
}

impl Stream for MessageStream {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.rx.poll_recv(cx)
    }
}

impl PushConsumerBuilder {
    /// Starts consuming and returns the messages as a stream; at most `concurrency`
    /// deliveries are outstanding at once.
    ///
    /// # Errors
    /// Invalid settings.
    pub async fn stream(self) -> Result<MessageStream> {
        let (tx, rx) = mpsc::channel(64);
        let consumer = self
            .start(move |msg| {
                let tx = tx.clone();
                async move {
                    let (reply, answer) = oneshot::channel();
                    if tx
                        .send(Delivery {
                            msg,
                            reply: Some(reply),
                        })
                        .await
                        .is_err()
                    {
                        return ConsumeResult::ReconsumeLater;
                    }
                    answer.await.unwrap_or(ConsumeResult::ReconsumeLater)
                }
            })
            .await?;
        Ok(MessageStream { consumer, rx })
    }
}
