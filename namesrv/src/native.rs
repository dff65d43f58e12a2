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
pub struct NativeNamesrv {
    core: Namesrv,
    may_register: bool,
}

impl NativeNamesrv {
    /// Serves `core`; `may_register` says whether this connection may register and
    /// unregister brokers (with `--client-ca`, only one that presented a certificate).
    pub fn new(core: Namesrv, may_register: bool) -> Self {
        Self { core, may_register }
    }

    fn check_register(&self, req_group: &str) -> Result<(), WireError> {
        if self.may_register {
            return Ok(());
        }
        Err(WireError::NotAuthorized(format!(
            "registering or unregistering broker group {req_group} needs a client certificate \
             signed by the NameServer's --client-ca; give the broker [tls] with a certificate \
             that CA signed"
        )))
    }
}

impl NamesrvService for NativeNamesrv {
    async fn register_broker(
        self,
        _: Context,
        req: RegisterBrokerRequest,
    ) -> Result<(), WireError> {
        self.check_register(&req.broker_group.0)?;
        self.core.register(req).map_err(to_wire)
    }

    async fn unregister_broker(
        self,
        _: Context,
        req: UnregisterBrokerRequest,
    ) -> Result<(), WireError> {
        self.check_register(&req.broker_group.0)?;
        self.core.unregister(&req);
        Ok(())
    }

    async fn get_route(self, _: Context, topic: TopicName) -> Result<TopicRoute, WireError> {
        self.core.route(&topic).map_err(to_wire)
    }

    async fn get_cluster(self, _: Context) -> Result<ClusterRoute, WireError> {
        Ok(self.core.cluster())
    }

    async fn get_topics(self, _: Context) -> Result<Vec<TopicName>, WireError> {
        Ok(self.core.topics())
    }
}
