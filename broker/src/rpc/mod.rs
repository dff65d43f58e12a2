//! Front ends: the ways clients reach the [`Broker`] core. Each is a [`FrontEnd`] that
//! [`crate::run`] is given in a list and serves until shutdown.
//!
//! The client port serves both protocols: raftmq's native tarpc protocol and RocketMQ
//! remoting, told apart by a connection's first bytes ([`raftmq_remoting::detect`]), so
//! clients of either kind need only the one address the NameServer publishes.
//!
//! # Layout
//! - [`native`]: raftmq's tarpc protocol ([`raftmq_proto::BrokerService`]).

pub mod native;

use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::transport::{framed_io, serve_with, sniff, Serving};
use raftmq_proto::BrokerService as _;
use raftmq_remoting::detect::{detect, Protocol as Detected, PREFIX_LEN};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::core::{Broker, ConnectionCtx, Protocol};
use native::NativeConnection;

/// A front end of the broker core.
pub type FrontEnd = dyn raftmq_proto::transport::FrontEnd<Broker>;

/// How long a new connection may take to send the bytes that tell its protocol.
const DETECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The client port: raftmq's native protocol and RocketMQ remoting.
#[derive(Debug)]
pub struct ClientPort {
    listener: TcpListener,
}

impl ClientPort {
    /// Serves the client protocol on `listener`.
    pub fn new(listener: TcpListener) -> Self {
        Self { listener }
    }
}

impl raftmq_proto::transport::FrontEnd<Broker> for ClientPort {
    fn describe(&self) -> String {
        match self.listener.local_addr() {
            Ok(a) => format!("client port {a}"),
            Err(_) => "client port".to_owned(),
        }
    }

    fn serve(self: Box<Self>, broker: Broker, stop: CancellationToken) -> Serving {
        let accept_stop = stop.clone();
        Box::pin(serve_with(
            self.listener,
            accept_stop,
            move |stream, peer, requests| {
                let (broker, stop) = (broker.clone(), stop.clone());
                async move {
                    let Some((protocol, io)) =
                        sniff(stream, PREFIX_LEN, detect, DETECT_TIMEOUT).await
                    else {
                        tracing::trace!(%peer, "connection closed before saying anything");
                        return;
                    };
                    match protocol {
                        Detected::Remoting => {
                            crate::remoting::serve_connection(io, peer, broker, stop, requests)
                                .await
                        }
                        Detected::Native => {
                            let conn = Arc::new(ConnectionCtx::new(Some(peer), Protocol::Native));
                            let serve = NativeConnection::new(broker, conn).serve();
                            raftmq_proto::tarpc_connection!(framed_io(io), serve, requests).await
                        }
                    }
                }
            },
        ))
    }
}
