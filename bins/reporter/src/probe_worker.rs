//! Hardware probing off the publish path: the `Prober` lives on its own thread, and
//! each probe is awaited with a timeout, so a read that blocks (a FIFO in sysfs, a wedged
//! GPU driver) stalls neither publishing, `/metrics` nor SIGTERM. A probe that does not
//! answer in time is left running (a thread blocked in the kernel cannot be stopped); no
//! new probe is sent until it returns, and its answer, when it comes, is used.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use vramroute_probe::{GpuDevice, HostMemory};

use vramroute_probe::Prober;

use crate::run::unix_now;

/// One probe's answer: the GPUs and host memory, read on the probing thread.
pub(crate) struct Probed {
    pub(crate) gpus: Result<Vec<GpuDevice>, vramroute_probe::Error>,
    pub(crate) host: Result<HostMemory, vramroute_probe::Error>,
    /// When the probe ended, Unix seconds.
    pub(crate) at: f64,
    pub(crate) took: Duration,
}

/// What [`ProbeWorker::probe`] gives.
pub(crate) enum Outcome {
    /// The probe answered.
    Done(Probed),
    /// The probe has not answered since `since` (this call's or an earlier one's).
    Stuck { since: Instant },
}

struct Request {
    reply: oneshot::Sender<Probed>,
}

/// Builds the thread's `Prober` (on the thread: NVML is loaded there, once).
type MakeProber = std::sync::Arc<dyn Fn() -> Prober + Send + Sync>;

/// The probing thread and the probe it has not answered yet.
pub(crate) struct ProbeWorker {
    make: MakeProber,
    timeout: Duration,
    tx: mpsc::Sender<Request>,
    pending: Option<(oneshot::Receiver<Probed>, Instant)>,
}

impl ProbeWorker {
    pub(crate) fn start(
        make: impl Fn() -> Prober + Send + Sync + 'static,
        timeout: Duration,
    ) -> std::io::Result<ProbeWorker> {
        let make: MakeProber = std::sync::Arc::new(make);
        let tx = spawn(&make)?;
        Ok(ProbeWorker {
            make,
            timeout,
            tx,
            pending: None,
        })
    }

    /// Probes the GPUs and host memory, waiting at most the timeout.
    pub(crate) async fn probe(&mut self) -> Outcome {
        if let Some((mut rx, since)) = self.pending.take() {
            match rx.try_recv() {
                // The late answer of a probe that timed out: fresh enough to use (it
                // carries its own time), and the thread is free again.
                Ok(p) => return Outcome::Done(p),
                Err(oneshot::error::TryRecvError::Empty) => {
                    self.pending = Some((rx, since));
                    return Outcome::Stuck { since };
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
                return Outcome::Stuck { since };
            }
            rx = again;
        }
        match tokio::time::timeout(self.timeout, &mut rx).await {
            Ok(Ok(p)) => Outcome::Done(p),
            Ok(Err(_)) => {
                self.restart();
                Outcome::Stuck { since }
            }
            Err(_) => {
                self.pending = Some((rx, since));
                Outcome::Stuck { since }
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
                let _ = req.reply.send(Probed {
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
    use std::sync::Arc;

    use vramroute_probe::{GpuBackend, ProberConfig, Vendor};

    use super::*;

    /// A GPU backend that blocks while the flag is set (a wedged driver).
    struct Wedged(Arc<AtomicBool>);

    impl GpuBackend for Wedged {
        fn name(&self) -> &'static str {
            "wedged"
        }
        fn probe(&self) -> vramroute_probe::Result<Vec<GpuDevice>> {
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
        assert!(matches!(w.probe().await, Outcome::Done(p) if p.gpus.is_ok()));

        wedged.store(true, Ordering::SeqCst);
        let first = match w.probe().await {
            Outcome::Stuck { since } => since,
            Outcome::Done(_) => panic!("a blocked probe answered"),
        };
        // Still blocked: answered at once with the same start, no second probe queued.
        match w.probe().await {
            Outcome::Stuck { since } => assert_eq!(since, first),
            Outcome::Done(_) => panic!("a blocked probe answered"),
        }
        wedged.store(false, Ordering::SeqCst);
        // The blocked probe ends: its answer comes with one of the next calls (bounded).
        let mut answered = false;
        for _ in 0..200 {
            if let Outcome::Done(p) = w.probe().await {
                assert_eq!(p.gpus.expect("gpus").len(), 1);
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(answered, "the probe never answered after it was released");
        assert!(matches!(w.probe().await, Outcome::Done(_)));
    }
}
