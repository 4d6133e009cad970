//! Where a live cluster's records come from ([`Feed`], [`RegistryFeed`]), and what its
//! follow loop keeps of a changes-only read once published ([`settle`]).

use std::sync::Arc;

use async_trait::async_trait;
use vramroute_registry::{unchanged_rpc, unchanged_stats, ClusterView, Registry};

use crate::error::Result;
use crate::view::{OllamaNodeInfo, StatusView};

/// Where a live cluster's records come from. [`RegistryFeed`] wraps any [`Registry`];
/// an application with another source (a probe of this machine, a saved view)
/// implements it.
#[async_trait]
pub trait Feed: Send + Sync {
    /// A short description for logs and the view's `source` (never a password).
    fn describe(&self) -> String;

    /// Reads the cluster; `Ok(None)` when the source has no registry (a saved view).
    async fn discover(&self) -> Result<Option<ClusterView>>;

    /// The registry to watch for changes, if the source has push (else rediscovery on
    /// the timer only).
    fn registry(&self) -> Option<&dyn Registry>;

    /// Whether to subscribe to the registry's change push (default: when it has one).
    fn wants_push(&self) -> bool {
        self.registry().is_some()
    }

    /// What Ollama nodes outside the registry answered (asked every
    /// [`LiveConfig::ollama_every`]); none by default.
    async fn ollama_nodes(&self) -> Vec<OllamaNodeInfo> {
        Vec::new()
    }

    /// A fixed view to serve instead of building one from records.
    fn saved_view(&self) -> Option<StatusView> {
        None
    }

    /// Makes the next [`discover`](Self::discover) hand back every record itself (see
    /// [`Registry::forget_discovered`]): for a follower that lost track of a
    /// changes-only registry's reads. By default, the registry's.
    fn resync(&self) {
        if let Some(registry) = self.registry() {
            registry.forget_discovered();
        }
    }
}

/// A [`Feed`] over a registry.
pub struct RegistryFeed<R> {
    registry: R,
    name: String,
}

impl<R: Registry> RegistryFeed<R> {
    /// Follows `registry`, described as `name` (e.g. a redacted URL).
    pub fn new(registry: R, name: impl Into<String>) -> Self {
        RegistryFeed {
            registry,
            name: name.into(),
        }
    }

    /// The registry.
    pub fn get(&self) -> &R {
        &self.registry
    }
}

#[async_trait]
impl<R: Registry> Feed for RegistryFeed<R> {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn discover(&self) -> Result<Option<ClusterView>> {
        Ok(Some(self.registry.discover().await?))
    }

    fn registry(&self) -> Option<&dyn Registry> {
        Some(&self.registry)
    }
}

/// A changes-only read once published: every record becomes the registry's marker of
/// an unchanged one (the builder has its rows), so that publishing it again (every tick
/// until the next read) rebuilds nothing and the loop holds no record.
pub(crate) fn settle(cluster: &mut ClusterView) {
    if !cluster.changes_only {
        return;
    }
    for (_, r) in &mut cluster.stats {
        *r = Arc::clone(unchanged_stats());
    }
    for e in &mut cluster.rpc_nodes {
        e.record = Arc::clone(unchanged_rpc());
    }
}
