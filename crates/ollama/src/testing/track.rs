//! How a reply goes out and is accounted for: per-path counters, and a response body
//! that sends pre-rendered frames with a delay between them, can abort the connection
//! after some of them, and counts a client that went away before the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};

/// What one path of the fake server has seen. Counters only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PathStats {
    /// Requests received (counted before any delay or fault).
    pub received: u64,
    /// Requests answered to the end: the last byte of the reply was handed to the
    /// connection (error answers such as 404 included, injected faults not).
    pub completed: u64,
    /// Requests that ended because the client went away first: the reply (or the wait
    /// before it) was dropped before its last byte.
    pub cancelled: u64,
    /// Requests answered with an injected fault ([`super::Fault`] or
    /// [`super::Behaviour`] other than `Normal`).
    pub failed: u64,
    /// The raw body of the last request received, exactly as it arrived.
    pub last_body: Option<Vec<u8>>,
}

/// Counters of every path, shared by the handlers and the handle.
pub(super) type Stats = Arc<Mutex<BTreeMap<String, PathStats>>>;

pub(super) fn lock_stats(stats: &Stats) -> MutexGuard<'_, BTreeMap<String, PathStats>> {
    // Counters stay meaningful after a panicking holder, so a poisoned lock is still used.
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a request ended.
#[derive(Debug, Clone, Copy)]
pub(super) enum Outcome {
    Completed,
    Failed,
    Cancelled,
}

/// One request in flight. Dropped without [`Tracker::finish`], it counts as cancelled.
#[derive(Debug)]
pub(super) struct Tracker {
    stats: Stats,
    path: &'static str,
    finished: bool,
}

impl Tracker {
    /// Count a request to `path` with `body`; returns the tracker and the request's
    /// number on that path (1 for the first).
    pub(super) fn start(stats: &Stats, path: &'static str, body: &Bytes) -> (Self, u64) {
        let seq = {
            let mut all = lock_stats(stats);
            let entry = all.entry(path.to_owned()).or_default();
            entry.received += 1;
            entry.last_body = Some(body.to_vec());
            entry.received
        };
        let tracker = Tracker {
            stats: stats.clone(),
            path,
            finished: false,
        };
        (tracker, seq)
    }

    /// Record how the request ended.
    pub(super) fn finish(mut self, outcome: Outcome) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut all = lock_stats(&self.stats);
        let entry = all.entry(self.path.to_owned()).or_default();
        match outcome {
            Outcome::Completed => entry.completed += 1,
            Outcome::Failed => entry.failed += 1,
            Outcome::Cancelled => entry.cancelled += 1,
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.record(Outcome::Cancelled);
    }
}

/// A body that sends `frames` with `delay` before each one but the first, and, with
/// `abort_after: Some(n)`, aborts the connection after `n` frames (hyper then closes
/// it without finishing the reply; with `n == 0` before anything, the status line
/// included). The tracker is finished when the last frame is handed over (as `end`:
/// completed, or failed for an in-band error) or at the abort (failed); dropped earlier,
/// it counts the request as cancelled.
pub(super) fn body(
    frames: Vec<String>,
    delay: Duration,
    abort_after: Option<usize>,
    tracker: Tracker,
    end: Outcome,
) -> Body {
    struct Emit {
        frames: std::vec::IntoIter<String>,
        sent: usize,
        delay: Duration,
        abort_after: Option<usize>,
        tracker: Option<Tracker>,
        end: Outcome,
    }
    let start = Emit {
        frames: frames.into_iter(),
        sent: 0,
        delay,
        abort_after,
        tracker: Some(tracker),
        end,
    };
    let stream = futures_util::stream::unfold(start, |mut st| async move {
        let tracker = st.tracker.take()?;
        if st.abort_after == Some(st.sent) {
            if st.sent > 0 {
                // Pending once, so hyper flushes what was handed over before the abort
                // (it writes buffered frames when the body is not ready).
                tokio::task::yield_now().await;
            }
            tracker.finish(Outcome::Failed);
            let err = std::io::Error::other("fake ollama: connection aborted on purpose");
            return Some((Err(err), st));
        }
        if st.sent > 0 && !st.delay.is_zero() {
            // Dropped here (client gone), `tracker` counts a cancellation.
            tokio::time::sleep(st.delay).await;
        }
        let Some(frame) = st.frames.next() else {
            tracker.finish(st.end);
            return None;
        };
        st.sent += 1;
        if st.frames.len() == 0 && st.abort_after != Some(st.sent) {
            tracker.finish(st.end);
        } else {
            st.tracker = Some(tracker);
        }
        Some((Ok(Bytes::from(frame)), st))
    });
    Body::from_stream(stream)
}
