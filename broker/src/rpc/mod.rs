//! Front ends: the ways clients reach the [`Broker`] core. Each is a [`FrontEnd`] that
//! [`crate::run`] is given in a list and serves until shutdown.
//!
//! # Layout
//! - [`native`]: raftmq's tarpc protocol ([`raftmq_proto::BrokerService`]).

pub mod native;

use std::sync::Arc;

use raftmq_proto::transport::Serving;
use raftmq_proto::BrokerService as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::core::{Broker, ConnectionCtx, Protocol};
use native::NativeConnection;

/// A front end of the broker core.
pub type FrontEnd = dyn raftmq_proto::transport::FrontEnd<Broker>;

/// The client port: raftmq's native protocol.
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
        Box::pin(raftmq_proto::serve_tarpc!(
            self.listener,
            move |peer| {
                let conn = Arc::new(ConnectionCtx::new(Some(peer), Protocol::Native));
                NativeConnection::new(broker.clone(), conn).serve()
            },
            stop
        ))
    }
}
