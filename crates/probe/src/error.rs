//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while probing.
///
/// Most bad input is *not* an error: a missing or garbage sysfs value makes that one
/// value unknown (`None`). Errors are reserved for "this whole source is unusable".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configured sysfs root cannot be read at all.
    #[error(
        "cannot read the sysfs root {}: {source}: point it at a directory laid out like /sys",
        path.display()
    )]
    SysfsRoot {
        /// The root that was configured.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A directory the probe needs could not be listed.
    #[error("cannot list {}: {source}: check that this process may read it", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// NVML was loaded but a query that every GPU must answer failed.
    #[error("NVML {operation} failed: {message}: check `nvidia-smi` and the driver's health")]
    Nvml {
        /// Which query failed (`device_count`, `device_by_index`, ...).
        operation: &'static str,
        /// NVML's own description.
        message: String,
    },
    /// ROCm SMI failed (only with the `rocm` feature).
    #[error("ROCm SMI {operation} failed: {message}: check `rocm-smi` and the amdgpu driver")]
    Rocm {
        /// Which query failed.
        operation: &'static str,
        /// ROCm SMI's own description.
        message: String,
    },
    /// The host's memory could not be read.
    #[error("cannot read host memory: {message}")]
    Host {
        /// What `sysinfo` said.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
