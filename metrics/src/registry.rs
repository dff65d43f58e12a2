//! What an HTTP listener serves: the metrics sources of this process (one per broker node
//! and NameServer it runs), each added while it runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use crate::exposition::Exposition;

/// A boxed future, as [`Source`] returns them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One server's health, for `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Serving; `false` makes `/healthz` answer 503 (restart me).
    pub ok: bool,
    /// Ready for traffic: for a broker node, a voting member of a group that has a leader;
    /// `false` makes `/readyz` answer 503 (route no clients here yet).
    pub ready: bool,
    /// One line: who it is and how it is (`broker-a node 1: leader at term 3`).
    pub line: String,
}

/// Something that reports metrics: a broker node, a NameServer.
pub trait Source: Send + Sync {
    /// Its samples now, with its own identifying labels.
    fn collect(&self) -> BoxFuture<'_, Exposition>;
    /// Its health now.
    fn health(&self) -> Health;
}

type Entries = Vec<(u64, Arc<dyn Source>)>;

/// The sources of one HTTP listener.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<(u64, Entries)>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.sources().len())
            .finish()
    }
}

/// Keeps a source in its registry; dropping it takes the source out.
#[derive(Debug)]
#[must_use = "the source leaves the registry when this is dropped"]
pub struct Registration {
    registry: Registry,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut g = self
            .registry
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        g.1.retain(|(id, _)| *id != self.id);
    }
}

impl Registry {
    /// No sources yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `source` until the returned registration is dropped.
    pub fn register(&self, source: Arc<dyn Source>) -> Registration {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 += 1;
        let id = g.0;
        g.1.push((id, source));
        Registration {
            registry: self.clone(),
            id,
        }
    }

    fn sources(&self) -> Vec<Arc<dyn Source>> {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.1.iter().map(|(_, s)| s.clone()).collect()
    }

    /// Every source's samples, merged into families.
    pub async fn collect(&self) -> Exposition {
        let mut all = Exposition::new();
        for s in self.sources() {
            all.merge(s.collect().await);
        }
        all
    }

    /// Every source's health, in registration order.
    pub fn health(&self) -> Vec<Health> {
        self.sources().iter().map(|s| s.health()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::Labels;

    struct Fixed(&'static str);

    impl Source for Fixed {
        fn collect(&self) -> BoxFuture<'_, Exposition> {
            Box::pin(async move {
                let mut e = Exposition::new();
                e.gauge("up", "Up.", &Labels::new().with("node", self.0), 1.0);
                e
            })
        }
        fn health(&self) -> Health {
            Health {
                ok: true,
                ready: true,
                line: self.0.to_owned(),
            }
        }
    }

    #[test]
    fn sources_leave_when_their_registration_is_dropped() {
        let r = Registry::new();
        let a = r.register(Arc::new(Fixed("a")));
        let b = r.register(Arc::new(Fixed("b")));
        let lines = |r: &Registry| r.health().into_iter().map(|h| h.line).collect::<Vec<_>>();
        assert_eq!(lines(&r), ["a", "b"]);
        drop(a);
        assert_eq!(lines(&r), ["b"]);
        drop(b);
        assert!(lines(&r).is_empty());
    }
}
