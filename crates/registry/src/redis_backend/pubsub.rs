//! Change push for the Redis backend: the pub/sub connection (keyspace notifications
//! when the server allows, our channel `vramroute:events` otherwise), turning
//! `notify-keyspace-events` on, and the background task that feeds a `ChangeStream`,
//! polling and reconnecting as needed. Message parsing and the polling differ are
//! shared with the memory backend in `crate::watch`.

use futures_util::StreamExt;
#[cfg(feature = "cluster")]
use redis::RedisError;
use tokio::sync::mpsc;

use super::state::{RedisRegistry, Target};
use crate::change::{Change, PushMode};
use crate::config::{KeyspaceEvents, ScanStrategy};
use crate::error::{Error, Result};
use crate::keys;
use crate::registry::Registry;
use crate::watch::{self, Listed, PollState, Sink};

impl RedisRegistry {
    /// Sets up a pub/sub connection for [`Registry::watch`](crate::Registry::watch): keyspace notifications when
    /// possible, our channel otherwise.
    pub(super) async fn subscribe(&self) -> Result<(redis::aio::PubSub, PushMode)> {
        let timeout = self.inner.config.command_timeout;
        let work = async {
            let client = match &self.inner.target {
                Target::Single(c) => c.clone(),
                #[cfg(feature = "cluster")]
                Target::Cluster { seeds, .. } => {
                    // PUBLISH is broadcast to every cluster node: any seed will do.
                    let mut last = None;
                    let mut found = None;
                    for s in seeds {
                        match s.get_async_pubsub().await {
                            Ok(p) => {
                                found = Some(p);
                                break;
                            }
                            Err(e) => last = Some(e),
                        }
                    }
                    return match (found, last) {
                        (Some(mut p), _) => {
                            p.subscribe(keys::EVENTS_CHANNEL).await?;
                            Ok((p, PushMode::ChannelAndPolling))
                        }
                        (None, Some(e)) => Err(e),
                        (None, None) => Err(RedisError::from((
                            redis::ErrorKind::Client,
                            "no seed nodes",
                        ))),
                    };
                }
            };
            let mut pubsub = client.get_async_pubsub().await?;
            let keyspace = self.enable_keyspace().await;
            if keyspace {
                let pattern = format!("__keyspace@{}__:sollol:*", self.inner.db);
                pubsub.psubscribe(pattern).await?;
                Ok((pubsub, PushMode::KeyspaceEvents))
            } else {
                pubsub.subscribe(keys::EVENTS_CHANNEL).await?;
                Ok((pubsub, PushMode::ChannelAndPolling))
            }
        };
        match tokio::time::timeout(timeout * 2, work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_err("SUBSCRIBE", &e)),
            Err(_) => Err(Error::Timeout {
                url: self.inner.url.clone(),
                op: "SUBSCRIBE",
                after: timeout * 2,
            }),
        }
    }

    /// Makes sure `notify-keyspace-events` has K, g, $ and x; returns whether it has.
    async fn enable_keyspace(&self) -> bool {
        let mode = self.inner.config.keyspace_events;
        if mode == KeyspaceEvents::Off || self.is_cluster() {
            return false;
        }
        let current = self
            .run("CONFIG GET", |mut c| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("notify-keyspace-events")
                    .query_async::<Vec<String>>(&mut c)
                    .await
            })
            .await;
        let current = match current {
            Ok(v) => v.get(1).cloned().unwrap_or_default(),
            Err(e) => {
                tracing::info!(error = %e, "cannot read notify-keyspace-events; change push falls back to polling");
                return false;
            }
        };
        let wanted = keyspace_flags(&current);
        if wanted == current {
            return true;
        }
        if mode == KeyspaceEvents::IfEnabled {
            return false;
        }
        let set = self
            .run("CONFIG SET", |mut c| async move {
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("notify-keyspace-events")
                    .arg(wanted)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        match set {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "cannot enable keyspace notifications; change push falls back to our channel plus polling");
                false
            }
        }
    }

    /// Marks what a change names for the next discovery to read again.
    pub(super) fn note_key_seen(&self, change: &Change) {
        // A write or delete by any writer (keyspace mode sees SOLLOL's too, which write
        // no change log) makes the next discovery read the key again.
        match change {
            Change::Updated(id) | Change::Removed(id) => {
                self.dirty().0.insert(id.clone());
            }
            Change::RpcUpdated(m) | Change::RpcRemoved(m) => {
                self.dirty().1.insert(m.clone());
            }
            Change::MetadataChanged => {}
            Change::Resync => self.clear_decode_cache(),
        }
    }
}

/// The `notify-keyspace-events` value with our flags added to `current`.
fn keyspace_flags(current: &str) -> String {
    let mut flags = current.to_owned();
    let all = current.contains('A');
    if !current.contains('K') {
        flags.push('K');
    }
    for f in ['g', '$', 'x'] {
        if !all && !current.contains(f) {
            flags.push(f);
        }
    }
    flags
}

/// What one pass of the polling fallback read: the records no index lists, the
/// metadata, and the ids the indexes list (see `RedisRegistry::poll_reader`).
type Polled = (crate::view::ClusterView, Listed);

/// One pass of the polling fallback in flight.
type PollWork = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Polled>> + Send>>;

/// One read of the polling fallback by `poller` (a [`RedisRegistry::poll_reader`]).
async fn poll_read(poller: RedisRegistry) -> Result<Polled> {
    let view = poller.discover().await?;
    Ok((view, poller.take_listed()))
}

/// One pass of the polling fallback: without keyspace events, new SOLLOL-written keys
/// are only visible to a SCAN, so sweep (unless scanning is off), then read.
async fn poll_once(poller: RedisRegistry) -> Result<Polled> {
    if poller.inner.config.scan != ScanStrategy::Never {
        if let Err(e) = poller.scan_sweep().await {
            tracing::debug!(error = %e, "watch poll sweep failed");
        }
    }
    poll_read(poller).await
}

/// The background task behind a [`ChangeStream`](crate::ChangeStream): forwards
/// pub/sub messages (and, in polling mode, differences between discoveries), and
/// reconnects with capped exponential backoff, announcing a `Resync`.
pub(super) async fn watch_task(
    reg: RedisRegistry,
    mut pubsub: redis::aio::PubSub,
    mut mode: PushMode,
    tx: mpsc::Sender<Change>,
) {
    let mut sink = Sink::new(tx.clone());
    let mut poll_state = PollState::default();
    // The polling fallback reads as a reader of its own: its reads run beside the
    // caller's and must not take what the caller's delta reads rest on, and they read
    // only what no push announces.
    let poller = reg.poll_reader();
    let cfg = reg.inner.config.clone();
    let mut backoff = cfg.reconnect_min_delay;
    loop {
        let mut poll = tokio::time::interval(cfg.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        let mut messages = pubsub.into_on_message();
        // The polling fallback's sweep and discovery run beside the messages, never in
        // front of them: a slow sweep (a SCAN of every master) or discovery must not
        // hold back the push of a write announced meanwhile. Its first pass (a discovery
        // that primes the differ, or after a reconnect reports what changed) starts now.
        let mut polling: Option<PollWork> = (mode == PushMode::ChannelAndPolling)
            .then(|| Box::pin(poll_read(poller.clone())) as PollWork);
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else { break };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    let change = match mode {
                        PushMode::KeyspaceEvents => watch::parse_keyspace(msg.get_channel_name(), &payload),
                        _ => watch::parse_channel_message(&payload),
                    };
                    if let Some(change) = change {
                        reg.note_key_seen(&change);
                        if !sink.send(change) {
                            return;
                        }
                    }
                }
                _ = poll.tick(), if mode == PushMode::ChannelAndPolling && polling.is_none() => {
                    polling = Some(Box::pin(poll_once(poller.clone())));
                }
                view = async { polling.as_mut().expect("guarded by is_some").await }, if polling.is_some() => {
                    polling = None;
                    match view {
                        Ok((view, listed)) => {
                            for change in poll_state.diff(&view, listed) {
                                if !sink.send(change) {
                                    return;
                                }
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "watch poll failed"),
                    }
                }
                _ = tx.closed() => return,
            }
        }
        // The connection is gone: reconnect with capped exponential backoff.
        tracing::warn!(url = %reg.inner.url, "change push lost its Redis connection; reconnecting");
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = tx.closed() => return,
            }
            backoff = (backoff * 2).min(cfg.reconnect_max_delay);
            match reg.subscribe().await {
                Ok((p, m)) => {
                    pubsub = p;
                    mode = m;
                    backoff = cfg.reconnect_min_delay;
                    // Keyspace events may have been missed: read everything next time.
                    reg.note_key_seen(&Change::Resync);
                    if !sink.send(Change::Resync) {
                        return;
                    }
                    break;
                }
                Err(e) => tracing::debug!(error = %e, "change push reconnect failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_flags_are_merged() {
        assert_eq!(keyspace_flags(""), "Kg$x");
        assert_eq!(keyspace_flags("Kg$x"), "Kg$x");
        assert_eq!(keyspace_flags("AKE"), "AKE");
        assert_eq!(keyspace_flags("Ex"), "ExKg$");
    }
}
