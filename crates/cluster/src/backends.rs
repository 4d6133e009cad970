//! Health of the llama.cpp rpc backends: each backend of the view is probed (HELLO,
//! device count, device memory; bounded concurrency and time) and the answers are cached,
//! then attached to the view (`RpcBackendView::health`) where `status` shows them and the
//! planner reads them.
//!
//! Caching: an answer is reused for `ttl`; a `busy` answer (rpc-server serves one client
//! at a time, so a server a llama-server is attached to does not answer) for `busy_ttl`,
//! because probing a busy server again fills its one-slot accept queue and the next probe
//! would wrongly look `unreachable`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vramroute_rpc::{probe_all, Probe, ProbeOptions, RpcState};

use crate::view::StatusView;

/// Probes rpc backends and remembers the answers.
#[derive(Debug)]
pub struct BackendProber {
    opts: ProbeOptions,
    ttl: Duration,
    busy_ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Probe)>>,
}

impl Default for BackendProber {
    fn default() -> Self {
        BackendProber::new(ProbeOptions::default())
    }
}

impl BackendProber {
    /// A prober with these probe options, answers kept 10 s (`busy` 30 s).
    pub fn new(opts: ProbeOptions) -> Self {
        BackendProber {
            opts,
            ttl: Duration::from_secs(10),
            busy_ttl: Duration::from_secs(30),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Answers kept `ttl` (`busy` ones `busy_ttl`) instead of 10 s (30 s).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration, busy_ttl: Duration) -> Self {
        self.ttl = ttl;
        self.busy_ttl = busy_ttl;
        self
    }

    /// Backends with a cached answer.
    pub fn cached(&self) -> usize {
        self.locked().len()
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Probe)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Probes every backend of `view` (cached answers reused) and attaches the answers.
    pub async fn probe_view(&self, view: &mut StatusView) {
        let addrs: Vec<String> = view
            .rpc_backends
            .iter()
            .map(|b| addr_of(&b.host, b.port))
            .collect();
        let now = Instant::now();
        let stale: Vec<String> = {
            let cache = self.locked();
            addrs
                .iter()
                .filter(|a| {
                    cache.get(*a).is_none_or(|(at, p)| {
                        let keep = if p.state == RpcState::Busy {
                            self.busy_ttl
                        } else {
                            self.ttl
                        };
                        now.duration_since(*at) >= keep
                    })
                })
                .cloned()
                .collect()
        };
        if !stale.is_empty() {
            let fresh = probe_all(&stale, &self.opts).await;
            let mut cache = self.locked();
            for p in fresh {
                // A connect timeout right after `busy` is the full accept queue of a
                // busy server, not a dead one: keep `busy`.
                let still_busy = p.state == RpcState::Unreachable
                    && cache.get(&p.addr).is_some_and(|(at, old)| {
                        old.state == RpcState::Busy && now.duration_since(*at) < self.busy_ttl * 2
                    });
                if !still_busy {
                    cache.insert(p.addr.clone(), (Instant::now(), p));
                }
            }
        }
        let mut cache = self.locked();
        // Forget backends gone from the view once their answer could no longer be used
        // (`still_busy` looks back 2 × busy_ttl): under churn the cache would otherwise
        // keep every backend ever seen.
        let seen: HashSet<&str> = addrs.iter().map(String::as_str).collect();
        let kept_for = self.busy_ttl * 2;
        cache.retain(|a, (at, _)| seen.contains(a.as_str()) || now.duration_since(*at) < kept_for);
        for b in &mut view.rpc_backends {
            b.health = cache
                .get(&addr_of(&b.host, b.port))
                .map(|(_, p)| Box::new(p.clone()));
        }
    }
}

/// `host:port`, with brackets for an IPv6 host.
fn addr_of(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
