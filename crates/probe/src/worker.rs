//! Probing off the caller's thread: a [`ProbeWorker`] owns a [`Prober`] on a thread of
//! its own, and each probe is awaited with a timeout, so a read that blocks (a FIFO in
//! sysfs, a wedged GPU driver) stalls no async task of the caller (publishing, metrics,
//! signal handling). A probe that does not answer in time is left running (a thread
//! blocked in the kernel cannot be stopped); no new probe is sent until it returns, and
//! its answer, when it comes, is used: it carries the time it was measured.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::{GpuDevice, HostMemory, Prober};

/// One probe's answer: the GPUs and host memory, read on the probing thread.
#[derive(Debug)]
#[non_exhaustive]
pub struct ProbeAnswer {
    /// [`Prober::probe_gpus`]'s result.
    pub gpus: crate::Result<Vec<GpuDevice>>,
    /// [`Prober::probe_host`]'s result.
    pub host: crate::Result<HostMemory>,
    /// When the probe ended, Unix seconds.
    pub at: f64,
    /// How long the probe took.
    pub took: Duration,
}

/// What [`ProbeWorker::probe`] gives.
#[derive(Debug)]
pub enum ProbeOutcome {
    /// The probe answered.
    Done(ProbeAnswer),
    /// The probe has not answered since `since` (this call's or an earlier one's).
    Stuck {
        /// When the unanswered probe was sent.
        since: Instant,
    },
}

struct Request {
    reply: oneshot::Sender<ProbeAnswer>,
}

/// Builds the thread's `Prober` (on the thread: NVML is loaded there, once).
type MakeProber = Arc<dyn Fn() -> Prober + Send + Sync>;

/// The probing thread and the probe it has not answered yet.
///
/// Needs a tokio runtime with the time driver for [`ProbeWorker::probe`]. A thread that
/// dies (a panicking backend) is replaced by a new one on the next call.
pub struct ProbeWorker {
    make: MakeProber,
    timeout: Duration,
    tx: mpsc::Sender<Request>,
    pending: Option<(oneshot::Receiver<ProbeAnswer>, Instant)>,
}

impl std::fmt::Debug for ProbeWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeWorker")
            .field("timeout", &self.timeout)
            .field("pending", &self.pending.as_ref().map(|(_, since)| since))
            .finish_non_exhaustive()
    }
}

impl ProbeWorker {
    /// Starts the probing thread, which builds its `Prober` with `make`; each probe may
    /// take at most `timeout`. Fails only when the thread cannot be spawned.
    pub fn start(
        make: impl Fn() -> Prober + Send + Sync + 'static,
        timeout: Duration,
    ) -> std::io::Result<ProbeWorker> {
        let make: MakeProber = Arc::new(make);
        let tx = spawn(&make)?;
        Ok(ProbeWorker {
            make,
            timeout,
            tx,
            pending: None,
        })
    }

    /// Probes the GPUs and host memory, waiting at most the timeout. While an earlier
    /// probe is still unanswered, answers [`ProbeOutcome::Stuck`] at once (with that
    /// probe's start) and sends no new one.
    pub async fn probe(&mut self) -> ProbeOutcome {
        if let Some((mut rx, since)) = self.pending.take() {
            match rx.try_recv() {
                // The late answer of a probe that timed out: fresh enough to use (it
                // carries its own time), and the thread is free again.
                Ok(p) => return ProbeOutcome::Done(p),
                Err(oneshot::error::TryRecvError::Empty) => {
                    self.pending = Some((rx, since));
                    return ProbeOutcome::Stuck { since };
                }
                Err(oneshot::error::TryRecvError::Closed) => self.restart(),
            }
        }
        let (reply, mut rx) = oneshot::channel();
        let since = Instant::now();
        if self.tx.send(Request { reply }).is_err() {
            // The thread is gone (a panic in a backend): start another, once per call.
            self.restart();
            let (reply, again) = oneshot::channel();
            if self.tx.send(Request { reply }).is_err() {
                return ProbeOutcome::Stuck { since };
            }
            rx = again;
        }
        match tokio::time::timeout(self.timeout, &mut rx).await {
            Ok(Ok(p)) => ProbeOutcome::Done(p),
            Ok(Err(_)) => {
                self.restart();
                ProbeOutcome::Stuck { since }
            }
            Err(_) => {
                self.pending = Some((rx, since));
                ProbeOutcome::Stuck { since }
            }
        }
    }

    fn restart(&mut self) {
        match spawn(&self.make) {
            Ok(tx) => self.tx = tx,
            Err(e) => tracing::warn!("cannot start a new probe thread: {e}"),
        }
    }
}

/// Seconds since the Unix epoch (0 before it).
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Starts the probing thread; it owns the `Prober`.
fn spawn(make: &MakeProber) -> std::io::Result<mpsc::Sender<Request>> {
    let (tx, rx) = mpsc::channel::<Request>();
    let make = make.clone();
    std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || {
            let prober = make();
            while let Ok(req) = rx.recv() {
                let start = Instant::now();
                let gpus = prober.probe_gpus();
                let host = prober.probe_host();
                let _ = req.reply.send(ProbeAnswer {
                    gpus,
                    host,
                    at: unix_now(),
                    took: start.elapsed(),
                });
            }
        })?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::{GpuBackend, ProberConfig, Vendor};

    use super::*;

    /// A GPU backend that blocks while the flag is set (a wedged driver).
    struct Wedged(Arc<AtomicBool>);

    impl GpuBackend for Wedged {
        fn name(&self) -> &'static str {
            "wedged"
        }
        fn probe(&self) -> crate::Result<Vec<GpuDevice>> {
            while self.0.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(vec![GpuDevice::new(Vendor::Amd, 0, "Test GPU", "amdgpu")])
        }
    }

    #[tokio::test]
    async fn a_blocked_probe_times_out_stays_single_and_its_late_answer_is_used() {
        let wedged = Arc::new(AtomicBool::new(false));
        let root = std::env::temp_dir();
        let flag = wedged.clone();
        let mut w = ProbeWorker::start(
            move || {
                Prober::with_backends(
                    ProberConfig::with_sysfs_root(root.clone()),
                    vec![Box::new(Wedged(flag.clone()))],
                )
            },
            Duration::from_millis(100),
        )
        .expect("thread");
        assert!(matches!(w.probe().await, ProbeOutcome::Done(p) if p.gpus.is_ok()));

        wedged.store(true, Ordering::SeqCst);
        let first = match w.probe().await {
            ProbeOutcome::Stuck { since } => since,
            ProbeOutcome::Done(_) => panic!("a blocked probe answered"),
        };
        // Still blocked: answered at once with the same start, no second probe queued.
        match w.probe().await {
            ProbeOutcome::Stuck { since } => assert_eq!(since, first),
            ProbeOutcome::Done(_) => panic!("a blocked probe answered"),
        }
        wedged.store(false, Ordering::SeqCst);
        // The blocked probe ends: its answer comes with one of the next calls (bounded).
        let mut answered = false;
        for _ in 0..200 {
            if let ProbeOutcome::Done(p) = w.probe().await {
                assert_eq!(p.gpus.expect("gpus").len(), 1);
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(answered, "the probe never answered after it was released");
        assert!(matches!(w.probe().await, ProbeOutcome::Done(_)));
    }
}
