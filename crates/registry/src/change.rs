//! Change push as consumers see it: [`Change`], [`PushMode`] and the [`ChangeStream`]
//! that owns (and aborts on drop) the background task feeding it. The backends'
//! plumbing (fan-out, message formats, polling) is in `watch`, which builds on this.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A change announced by [`Registry::watch`](crate::Registry::watch).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Change {
    /// The stats record of this node id was written.
    Updated(String),
    /// The stats record of this node id expired or was deleted.
    Removed(String),
    /// The registration of this `host:port` was written.
    RpcUpdated(String),
    /// The registration of this `host:port` expired or was deleted.
    RpcRemoved(String),
    /// `sollol:router:metadata` was written or deleted.
    MetadataChanged,
    /// Changes may have been missed (reconnect, slow consumer): call
    /// [`Registry::discover`](crate::Registry::discover) again.
    Resync,
}

/// How a [`ChangeStream`] learns about changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushMode {
    /// In-process notifications of the memory backend.
    Memory,
    /// Redis keyspace notifications (covers every writer and expiries).
    KeyspaceEvents,
    /// vramroute's channel `vramroute:events` for our writers, plus polling every
    /// `poll_interval` for other writers and expiries.
    ChannelAndPolling,
}

/// A stream of [`Change`]s; stops the background work when dropped.
///
/// Implements [`futures_util::Stream`]; [`ChangeStream::recv`] is the plain async way.
#[derive(Debug)]
pub struct ChangeStream {
    rx: mpsc::Receiver<Change>,
    mode: PushMode,
    _task: Option<AbortOnDrop>,
}

impl ChangeStream {
    pub(crate) fn new(
        rx: mpsc::Receiver<Change>,
        mode: PushMode,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        Self {
            rx,
            mode,
            _task: task.map(AbortOnDrop),
        }
    }

    /// The next change; `None` when the registry is gone.
    pub async fn recv(&mut self) -> Option<Change> {
        self.rx.recv().await
    }

    /// The next change if one is waiting.
    pub fn try_recv(&mut self) -> Option<Change> {
        self.rx.try_recv().ok()
    }

    /// The next change, or `None` if none arrives within `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Option<Change> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// How changes reach this stream (decided when it was created).
    pub fn mode(&self) -> PushMode {
        self.mode
    }
}

impl futures_util::Stream for ChangeStream {
    type Item = Change;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        self.rx.poll_recv(cx)
    }
}

/// Aborts a background task when dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
