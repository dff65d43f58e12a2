//! Running the store's synchronous calls from async code.

use std::io;

use crate::codec::io_err;

/// Runs blocking storage work. On a multi-threaded runtime it runs in place (the worker
/// hands its other tasks to the rest of the pool), which saves a thread hop on the write
/// path; elsewhere it goes to the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        tokio::task::block_in_place(f)
    } else {
        tokio::task::spawn_blocking(f).await.map_err(io_err)?
    }
}

/// Runs storage work that is usually short: in place when `small` (a few records from the
/// page cache or a memtable write cost less than `block_in_place` handing the worker's
/// other tasks to another thread, which is a thread wake-up per call), else as
/// [`blocking`].
pub(crate) async fn inline_if_small<T: Send + 'static>(
    small: bool,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    if small {
        f()
    } else {
        blocking(f).await
    }
}
