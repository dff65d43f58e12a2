//! openraft's storage conformance suite against our log store and state machine.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use raftmq_raft::log_store::LogStore;
use raftmq_raft::state_machine::StateMachine;
use raftmq_raft::types::TypeConfig;
use raftmq_store::{Store, StoreConfig};
use tempfile::TempDir;

struct Builder;

fn storage_err(e: impl std::fmt::Display) -> StorageError<TypeConfig> {
    StorageError::from_io_error(
        ErrorSubject::Store,
        ErrorVerb::Write,
        std::io::Error::other(e.to_string()),
    )
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(storage_err)?;
        let store = Arc::new(
            Store::open(dir.path().join("data"), StoreConfig::default()).map_err(storage_err)?,
        );
        let (tx, _rx) = tokio::sync::watch::channel(0);
        let sm = StateMachine::new(store.clone(), dir.path().join("snapshot"), tx)
            .map_err(storage_err)?;
        Ok((dir, LogStore::new(store), sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(Builder).await?;
    Ok(())
}
