//! Client connections that know when the server closed them.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A tarpc client and whether its connection is still open. Its dispatch task ends when
/// the server closes the connection (the server's idle limit, a restart); a connection
/// cache that checks [`Live::is_open`] re-dials before the next call instead of failing
/// that call on a dead connection.
#[derive(Debug, Clone)]
pub struct Live<C> {
    client: C,
    open: Arc<AtomicBool>,
}

impl<C> Live<C> {
    /// Spawns `new`'s dispatch task and watches it.
    pub fn spawn<D, E>(new: tarpc::client::NewClient<C, D>) -> Self
    where
        D: Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let open = Arc::new(AtomicBool::new(true));
        let flag = open.clone();
        let dispatch = new.dispatch;
        tokio::spawn(async move {
            // The calls that were in flight report the error themselves.
            if let Err(e) = dispatch.await {
                tracing::debug!(error = %e, "connection broken");
            }
            flag.store(false, Ordering::Release);
        });
        Self {
            client: new.client,
            open,
        }
    }

    /// The client.
    pub fn client(&self) -> &C {
        &self.client
    }

    /// Whether the connection is open (as far as its last read knows).
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NamesrvServiceClient;

    #[tokio::test]
    async fn a_connection_the_server_closed_reads_as_closed() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let live = Live::spawn(NamesrvServiceClient::new(
            tarpc::client::Config::default(),
            crate::transport::framed_io(client),
        ));
        assert!(live.is_open());
        drop(server);
        let t0 = std::time::Instant::now();
        while live.is_open() {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "still open"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
