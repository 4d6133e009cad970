//! When to publish between intervals.

use vramroute_probe::GpuDevice;

/// Says when the GPU picture moved enough to publish before the next interval: the set
/// of GPUs changed, or some GPU's free VRAM moved by more than the threshold since the
/// last published value (so slow drift adds up and is published too).
#[derive(Debug, Clone)]
pub struct ChangeDetector {
    threshold_mib: u64,
    published: Option<Vec<(Option<String>, Option<u64>)>>,
}

impl ChangeDetector {
    /// A detector firing on moves larger than `threshold_mib`.
    pub fn new(threshold_mib: u64) -> Self {
        ChangeDetector {
            threshold_mib,
            published: None,
        }
    }

    /// Whether `gpus` differs enough from what was last published. Does not update the
    /// baseline: call [`ChangeDetector::published`] after a successful publish.
    pub fn changed(&self, gpus: &[GpuDevice]) -> bool {
        let Some(last) = &self.published else {
            return true;
        };
        if last.len() != gpus.len() {
            return true;
        }
        last.iter().zip(gpus).any(|((bus, free), gpu)| {
            if *bus != gpu.pci_bus_id {
                return true;
            }
            match (*free, gpu.memory_free_mib) {
                (Some(a), Some(b)) => a.abs_diff(b) > self.threshold_mib,
                (None, None) => false,
                _ => true,
            }
        })
    }

    /// Record `gpus` as the published state.
    pub fn published(&mut self, gpus: &[GpuDevice]) {
        self.published = Some(
            gpus.iter()
                .map(|g| (g.pci_bus_id.clone(), g.memory_free_mib))
                .collect(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vramroute_probe::Vendor;

    fn gpu(bus: &str, free: Option<u64>) -> GpuDevice {
        let mut g = GpuDevice::new(Vendor::Amd, 0, "g", "amdgpu");
        g.pci_bus_id = Some(bus.into());
        g.memory_total_mib = Some(24000);
        g.memory_free_mib = free;
        g
    }

    #[test]
    fn threshold_drift_and_set_changes() {
        let mut d = ChangeDetector::new(512);
        let a = [gpu("0000:03:00.0", Some(20000))];
        assert!(d.changed(&a), "nothing published yet");
        d.published(&a);
        assert!(!d.changed(&a));
        assert!(
            !d.changed(&[gpu("0000:03:00.0", Some(19488))]),
            "exactly 512 is not more"
        );
        assert!(d.changed(&[gpu("0000:03:00.0", Some(19487))]));
        assert!(d.changed(&[gpu("0000:03:00.0", Some(20513))]));
        // Drift below the threshold per tick still fires once it adds up, because the
        // baseline only moves on publish.
        assert!(!d.changed(&[gpu("0000:03:00.0", Some(19700))]));
        assert!(d.changed(&[gpu("0000:03:00.0", Some(19400))]));
        assert!(
            d.changed(&[gpu("0000:03:00.0", None)]),
            "free became unknown"
        );
        assert!(
            d.changed(&[gpu("0000:04:00.0", Some(20000))]),
            "another GPU"
        );
        assert!(d.changed(&[]), "GPU gone");
    }
}
