//! The native front end: [`NamesrvService`] over tarpc, a thin adapter over [`Namesrv`].

use raftmq_proto::namesrv::{
    ClusterRoute, RegisterBrokerRequest, TopicRoute, UnregisterBrokerRequest,
};
use raftmq_proto::{NamesrvService, TopicName, WireError};
use tarpc::context::Context;

use crate::core::{Namesrv, NamesrvError};

fn to_wire(e: NamesrvError) -> WireError {
    match e {
        NamesrvError::Invalid(m) | NamesrvError::Conflict(m) => WireError::Invalid(m),
        NamesrvError::TopicNotFound(t) => WireError::TopicNotFound(t.0),
    }
}

/// Serves [`NamesrvService`] for one connection.
#[derive(Debug, Clone)]
pub struct NativeNamesrv(pub Namesrv);

impl NamesrvService for NativeNamesrv {
    async fn register_broker(
        self,
        _: Context,
        req: RegisterBrokerRequest,
    ) -> Result<(), WireError> {
        self.0.register(req).map_err(to_wire)
    }

    async fn unregister_broker(
        self,
        _: Context,
        req: UnregisterBrokerRequest,
    ) -> Result<(), WireError> {
        self.0.unregister(&req);
        Ok(())
    }

    async fn get_route(self, _: Context, topic: TopicName) -> Result<TopicRoute, WireError> {
        self.0.route(&topic).map_err(to_wire)
    }

    async fn get_cluster(self, _: Context) -> Result<ClusterRoute, WireError> {
        Ok(self.0.cluster())
    }

    async fn get_topics(self, _: Context) -> Result<Vec<TopicName>, WireError> {
        Ok(self.0.topics())
    }
}
