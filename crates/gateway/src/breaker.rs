//! The circuit breaker: a node that failed before its first byte is kept out of routing
//! for a backoff; after it, the node is tried again (and kept out again if it fails).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(crate) struct Breaker {
    open_until: Mutex<HashMap<String, Instant>>,
}

impl Breaker {
    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.open_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `node` out for `backoff`.
    pub(crate) fn trip(&self, node: &str, backoff: Duration) {
        self.locked()
            .insert(node.to_owned(), Instant::now() + backoff);
    }

    /// The node served a request: close its breaker.
    pub(crate) fn reset(&self, node: &str) {
        let mut map = self.locked();
        if !map.is_empty() {
            map.remove(node);
        }
    }

    /// Nodes kept out now (expired entries are dropped).
    pub(crate) fn open_nodes(&self) -> Vec<String> {
        let now = Instant::now();
        let mut map = self.locked();
        if map.is_empty() {
            return Vec::new();
        }
        map.retain(|_, until| *until > now);
        map.keys().cloned().collect()
    }
}
