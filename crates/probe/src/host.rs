//! Host RAM and CPUs: `sysinfo` for the machine, cgroup files (under the injected
//! sysfs root) for the limit this process actually lives under.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::device::HostMemory;
use crate::error::{Error, Result};
use crate::parse::{self, bytes_to_mib, CgroupLimit};
use crate::sysfs::read_value;

/// The memory limit of the cgroup this process runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CgroupMemory {
    /// The tightest limit on the way from this process's cgroup to the root, bytes.
    pub limit_bytes: u64,
    /// Memory charged to the limiting cgroup now, bytes, when readable.
    pub usage_bytes: Option<u64>,
    /// Which cgroup hierarchy the limit came from (1 or 2).
    pub version: u8,
}

impl CgroupMemory {
    /// A cgroup v`version` limit of `limit_bytes`, `usage_bytes` charged (when readable).
    pub fn new(limit_bytes: u64, usage_bytes: Option<u64>, version: u8) -> Self {
        Self {
            limit_bytes,
            usage_bytes,
            version,
        }
    }
}

/// Find the cgroup memory limit.
///
/// The process's cgroup comes from `<proc_root>/self/cgroup` (`/` when unreadable).
/// cgroup v2: `<sysfs_root>/fs/cgroup/<path>/memory.max`, usage `memory.current`.
/// cgroup v1: `<sysfs_root>/fs/cgroup/memory/<path>/memory.limit_in_bytes`, usage
/// `memory.usage_in_bytes`. The directory and every ancestor up to the hierarchy
/// root is checked (a container sees its own limit at the root; a systemd service in
/// its unit's directory or a parent slice) and the smallest limit wins. `max`, `-1`
/// and v1's huge "unlimited" value mean no limit. v2 is tried first.
pub(crate) fn read_cgroup_memory(sysfs_root: &Path, proc_root: &Path) -> Option<CgroupMemory> {
    let cg = sysfs_root.join("fs").join("cgroup");
    let membership = {
        let path = proc_root.join("self").join("cgroup");
        if path.exists() {
            read_value(&path, parse::parse_proc_self_cgroup)
        } else {
            None
        }
    };
    let v2_path = membership.as_ref().and_then(|m| m.v2.clone());
    let v1_path = membership.as_ref().and_then(|m| m.v1_memory.clone());
    tightest(
        &cg,
        v2_path.as_deref(),
        "memory.max",
        "memory.current",
        parse::parse_cgroup_v2_max,
    )
    .map(|(limit, usage)| CgroupMemory {
        limit_bytes: limit,
        usage_bytes: usage,
        version: 2,
    })
    .or_else(|| {
        tightest(
            &cg.join("memory"),
            v1_path.as_deref(),
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
            parse::parse_cgroup_v1_limit,
        )
        .map(|(limit, usage)| CgroupMemory {
            limit_bytes: limit,
            usage_bytes: usage,
            version: 1,
        })
    })
}

/// The smallest limit among `<hierarchy>/<path>` and its ancestors, and the usage
/// read next to it.
fn tightest(
    hierarchy: &Path,
    path: Option<&str>,
    limit_file: &str,
    usage_file: &str,
    parse_limit: fn(&str) -> Option<CgroupLimit>,
) -> Option<(u64, Option<u64>)> {
    let mut dir: PathBuf = hierarchy.to_path_buf();
    let mut chain = vec![dir.clone()];
    for part in path.unwrap_or("/").split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        chain.push(dir.clone());
    }
    let mut best: Option<(u64, PathBuf)> = None;
    for d in chain.iter().filter(|d| d.join(limit_file).exists()) {
        if let Some(CgroupLimit::Bytes(b)) = read_value(&d.join(limit_file), parse_limit) {
            if best.as_ref().is_none_or(|(cur, _)| b < *cur) {
                best = Some((b, d.clone()));
            }
        }
    }
    let (limit, at) = best?;
    let usage_path = at.join(usage_file);
    let usage = usage_path
        .exists()
        .then(|| read_value(&usage_path, parse::parse_memory_bytes))
        .flatten();
    debug!(limit_bytes = limit, at = %at.display(), "cgroup memory limit applies");
    Some((limit, usage))
}

/// Combine the machine's figures with the cgroup limit.
///
/// total = min(physical, limit); available = min(available, limit − usage) when
/// usage is known, else min(available, limit).
pub(crate) fn host_memory(
    total_bytes: u64,
    available_bytes: u64,
    cpu_count: u32,
    cgroup: Option<CgroupMemory>,
) -> HostMemory {
    let (total, available) = match cgroup {
        Some(cg) => {
            let headroom = cg
                .usage_bytes
                .map_or(cg.limit_bytes, |u| cg.limit_bytes.saturating_sub(u));
            (
                total_bytes.min(cg.limit_bytes),
                available_bytes.min(headroom),
            )
        }
        None => (total_bytes, available_bytes),
    };
    HostMemory {
        total_ram_mib: bytes_to_mib(total),
        available_ram_mib: bytes_to_mib(available.min(total)),
        cpu_count,
        cgroup_limit_mib: cgroup.map(|c| bytes_to_mib(c.limit_bytes)),
        cpu_load_percent: None,
    }
}

/// CPU load in percent from `<proc_root>/loadavg`: the 1-minute load average per logical
/// CPU, capped at 100 (`None` when the file is unreadable or malformed).
pub(crate) fn read_cpu_load_percent(proc_root: &Path, cpu_count: u32) -> Option<f64> {
    let text = std::fs::read_to_string(proc_root.join("loadavg")).ok()?;
    parse::parse_cpu_load_percent(&text, cpu_count)
}

/// Physical RAM and logical CPUs from `sysinfo`.
pub(crate) fn system_figures() -> Result<(u64, u64, u32)> {
    use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
    let sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_memory(MemoryRefreshKind::nothing().with_ram())
            .with_cpu(CpuRefreshKind::nothing()),
    )
    .map_err(|e| Error::Host {
        message: e.to_string(),
    })?;
    let cpus = match u32::try_from(sys.cpus().len()) {
        Ok(0) | Err(_) => std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1),
        Ok(n) => n,
    };
    Ok((sys.total_memory(), sys.available_memory(), cpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn no_cgroup_keeps_machine_figures() {
        let h = host_memory(64 * GIB, 50 * GIB, 16, None);
        assert_eq!(h.total_ram_mib, 65_536);
        assert_eq!(h.available_ram_mib, 51_200);
        assert_eq!(h.cpu_count, 16);
        assert_eq!(h.cgroup_limit_mib, None);
    }

    #[test]
    fn limit_caps_total_and_headroom_caps_available() {
        let cg = CgroupMemory {
            limit_bytes: 8 * GIB,
            usage_bytes: Some(3 * GIB),
            version: 2,
        };
        let h = host_memory(64 * GIB, 50 * GIB, 16, Some(cg));
        assert_eq!(h.total_ram_mib, 8192);
        assert_eq!(h.available_ram_mib, 5120);
        assert_eq!(h.cgroup_limit_mib, Some(8192));
    }

    #[test]
    fn limit_above_physical_changes_nothing_but_is_reported() {
        let cg = CgroupMemory {
            limit_bytes: 128 * GIB,
            usage_bytes: None,
            version: 1,
        };
        let h = host_memory(64 * GIB, 50 * GIB, 8, Some(cg));
        assert_eq!(h.total_ram_mib, 65_536);
        assert_eq!(h.available_ram_mib, 51_200);
        assert_eq!(h.cgroup_limit_mib, Some(131_072));
    }

    #[test]
    fn usage_above_limit_leaves_nothing_available() {
        let cg = CgroupMemory {
            limit_bytes: GIB,
            usage_bytes: Some(2 * GIB),
            version: 2,
        };
        assert_eq!(
            host_memory(64 * GIB, 50 * GIB, 8, Some(cg)).available_ram_mib,
            0
        );
    }

    #[test]
    fn real_machine_has_ram_and_cpus() {
        let (total, available, cpus) = system_figures().expect("sysinfo works on Linux");
        assert!(total > 0);
        assert!(available <= total);
        assert!(cpus >= 1);
    }
}
