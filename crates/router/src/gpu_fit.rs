//! One GPU's fit, for fit tables: the placement's own rule (`fit::gpu_fits`) with its
//! reason.

use std::fmt;

use serde::Serialize;

use crate::decision::GpuMiss;
use crate::error::Result;
use crate::fit::gpu_fits;
use crate::snapshot::{NodeIndex, Snapshot};

/// Whether one GPU can take a model now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GpuFit {
    /// It fits.
    Fits {
        /// Usable VRAM (total × margin), MiB.
        usable_mib: u64,
        /// Free VRAM now, less reservations, MiB.
        free_mib: u64,
    },
    /// It does not, and why.
    Miss(GpuMiss),
}

impl GpuFit {
    /// Whether the model fits.
    pub fn fits(&self) -> bool {
        matches!(self, GpuFit::Fits { .. })
    }
}

impl fmt::Display for GpuFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuFit::Fits {
                usable_mib,
                free_mib,
            } => write!(f, "Fits in {usable_mib}MB VRAM ({free_mib}MB free)"),
            GpuFit::Miss(m) => write!(f, "{m}"),
        }
    }
}

impl Snapshot {
    /// Whether GPU `gpu` of `node` can take `size_mib` now, by the router's own rule.
    /// `Ok(None)` when the node's report is invalid (its GPUs are not indexed).
    ///
    /// ```
    /// use vramroute_router::{GpuSpec, NodeSpec, Snapshot, SnapshotConfig};
    /// let mut n = NodeSpec::new("a");
    /// n.gpus.push(GpuSpec::new(0, 4096, Some(2571)));
    /// let snap = Snapshot::build(vec![n], &SnapshotConfig::default())?;
    /// let a = snap.node_index("a").expect("present");
    /// assert_eq!(snap.gpu_fit(a, 0, 1900)?.expect("valid").to_string(), "Fits in 3276MB VRAM (2571MB free)");
    /// assert_eq!(snap.gpu_fit(a, 0, 4700)?.expect("valid").to_string(), "Model too large (4700MB > 3276MB usable VRAM)");
    /// # Ok::<(), vramroute_router::Error>(())
    /// ```
    pub fn gpu_fit(&self, node: NodeIndex, gpu: u32, size_mib: u64) -> Result<Option<GpuFit>> {
        let Some((usable_mib, free_mib)) = self.gpu_capacity_mib(node, gpu)? else {
            return Ok(None);
        };
        Ok(Some(if gpu_fits(size_mib, usable_mib, free_mib) {
            GpuFit::Fits {
                usable_mib,
                free_mib,
            }
        } else if size_mib > usable_mib {
            GpuFit::Miss(GpuMiss::TooLarge {
                size_mib,
                usable_mib,
            })
        } else {
            GpuFit::Miss(GpuMiss::NotEnoughFree { size_mib, free_mib })
        }))
    }
}
