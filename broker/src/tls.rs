//! The node's TLS, built from `[tls]`: the client port's and the Raft port's server sides
//! and the dialer for NameServers, peers and the leader.

use std::sync::Arc;

use raftmq_proto::stream::Dialer;
use raftmq_proto::tls::{ClientCerts, TlsClient, TlsError, TlsFiles, TlsServer, TlsTrust};

/// Everything TLS of one broker node; all plain without `[tls]`.
#[derive(Debug, Clone, Default)]
pub struct NodeTls {
    /// The client port's server side (client certificates as `require_client_cert` says).
    pub client_port: Option<Arc<TlsServer>>,
    /// The Raft port's server side: peers must present a certificate the CA signed.
    pub raft_port: Option<Arc<TlsServer>>,
    /// Outgoing connections: trust the CA and present the node's certificate.
    pub dialer: Dialer,
}

impl NodeTls {
    /// Loads the files `[tls]` names (none: plain TCP everywhere).
    ///
    /// # Errors
    /// A file is missing or malformed, or `ca` is not set.
    pub fn load(files: Option<&TlsFiles>) -> Result<Self, TlsError> {
        let Some(files) = files else {
            return Ok(Self::default());
        };
        let ca = files.ca.clone().ok_or_else(|| {
            TlsError::Config(
                "[tls] needs `ca`: Raft peers check each other's certificates against it".into(),
            )
        })?;
        let trust = TlsTrust {
            ca,
            identity: Some((files.cert.clone(), files.key.clone())),
        };
        Ok(Self {
            client_port: Some(TlsServer::load(
                files,
                if files.require_client_cert {
                    ClientCerts::Required
                } else {
                    ClientCerts::Ignored
                },
            )?),
            raft_port: Some(TlsServer::load(files, ClientCerts::Required)?),
            dialer: Dialer::tls(TlsClient::load(&trust)?),
        })
    }
}
