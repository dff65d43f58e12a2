//! Front ends: the ways clients reach the [`Broker`] core. Each is a [`FrontEnd`] that
//! [`crate::run`] is given in a list and serves until shutdown.
//!
//! The client port serves both protocols: raftmq's native tarpc protocol and RocketMQ
//! remoting, told apart by a connection's first bytes ([`raftmq_remoting::detect`]), so
//! clients of either kind need only the one address the NameServer publishes. With
//! `[tls]`, both are spoken inside TLS.
//!
//! # Layout
//! - [`native`]: raftmq's tarpc protocol ([`raftmq_proto::BrokerService`]).

pub mod native;

use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::transport::{serve_with, serving_io, sniff, Serving};
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
        let tls = broker.shared.tls.client_port.clone();
        Box::pin(serve_with(
            self.listener,
            tls,
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
                            let counters = broker.shared.counters.clone();
                            let serve = crate::metrics::Timed::new(
                                NativeConnection::new(broker, conn).serve(),
                                counters,
                            );
                            raftmq_proto::tarpc_connection!(serving_io(io), serve, requests).await
                        }
                    }
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_proto::broker::HelloRequest;
    use raftmq_proto::namesrv::RegisterBrokerRequest;
    use raftmq_proto::transport::framed_io;
    use raftmq_proto::{BrokerGroup, BrokerServiceClient, NamesrvServiceClient, NodeId, Role};
    use tokio::io::AsyncReadExt;

    /// The first bytes a native client sends on a new connection with this deadline.
    async fn first_bytes(deadline: Duration, namesrv: bool) -> Vec<u8> {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut ctx = tarpc::context::current();
        ctx.deadline = std::time::Instant::now() + deadline;
        let call = if namesrv {
            let c = NamesrvServiceClient::new(Default::default(), framed_io(client)).spawn();
            let req = RegisterBrokerRequest {
                cluster: "DefaultCluster".into(),
                broker_group: BrokerGroup::from("broker-a"),
                node_id: NodeId(1),
                group_id: Some(raftmq_proto::GroupId(0x1234_5678_9ABC_DEF0)),
                client_addr: "127.0.0.1:10911".into(),
                role: Role::Leader,
                term: 3,
                leader: Some(NodeId(1)),
                topics: Vec::new(),
            };
            tokio::spawn(async move { drop(c.register_broker(ctx, req).await) })
        } else {
            let c = BrokerServiceClient::new(Default::default(), framed_io(client)).spawn();
            let req = HelloRequest {
                protocol_version: raftmq_proto::PROTOCOL_VERSION,
                client_id: "test".into(),
            };
            tokio::spawn(async move { drop(c.hello(ctx, req).await) })
        };
        let mut buf = vec![0u8; PREFIX_LEN];
        server.read_exact(&mut buf).await.unwrap();
        call.abort();
        buf
    }

    #[tokio::test]
    async fn real_native_first_frames_are_never_taken_for_remoting() {
        // Deadlines from 1 ms to 20 minutes, whatever the nanoseconds happen to be.
        let mut d = Duration::from_micros(997);
        while d < Duration::from_secs(1200) {
            for namesrv in [false, true] {
                let b = first_bytes(d, namesrv).await;
                assert_eq!(
                    detect(&b),
                    Some(Detected::Native),
                    "deadline {d:?}: {b:02x?}"
                );
            }
            d = d * 7 / 3 + Duration::from_nanos(12_345);
        }
    }
}
