//! Host memory and cgroup limits.

use vramroute_probe::{CgroupMemory, Prober, ProberConfig};

use crate::{fixture, prober};

const GIB: u64 = 1 << 30;

fn cgroup_prober(name: &str) -> Prober {
    Prober::new(
        ProberConfig::with_sysfs_root(fixture(name).join("sys"))
            .with_proc_root(fixture(name).join("proc"))
            .with_nvml(false)
            .with_rocm(false),
    )
}

#[test]
fn v2_service_takes_the_tightest_ancestor_limit() {
    assert_eq!(
        cgroup_prober("cgroup-v2").cgroup_memory(),
        Some(CgroupMemory::new(4 * GIB, Some(GIB), 2))
    );
}

#[test]
fn v1_container_limit_and_unlimited_root() {
    assert_eq!(
        cgroup_prober("cgroup-v1").cgroup_memory(),
        Some(CgroupMemory::new(2 * GIB, Some(512 << 20), 1))
    );
}

#[test]
fn max_means_no_limit() {
    assert_eq!(prober("cgroup-unlimited").cgroup_memory(), None);
    assert_eq!(prober("empty").cgroup_memory(), None);
}

#[test]
fn host_memory_is_capped_by_the_limit() {
    let limited = cgroup_prober("cgroup-v2")
        .probe_host()
        .expect("sysinfo works");
    assert!(limited.total_ram_mib <= 4096);
    assert!(limited.available_ram_mib <= 3072);
    assert_eq!(limited.cgroup_limit_mib, Some(4096));
    assert!(limited.cpu_count >= 1);

    let free = prober("empty").probe_host().expect("sysinfo works");
    assert!(free.total_ram_mib > 0);
    assert!(free.available_ram_mib <= free.total_ram_mib);
    assert_eq!(free.cgroup_limit_mib, None);
}

#[test]
fn cpu_load_comes_from_loadavg_under_the_proc_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let probe = |proc_root: &std::path::Path| {
        Prober::new(
            ProberConfig::with_sysfs_root(fixture("empty"))
                .with_proc_root(proc_root.to_path_buf())
                .with_nvml(false)
                .with_rocm(false),
        )
        .probe_host()
        .expect("host readable")
    };
    // No loadavg: unknown, never 0.
    assert_eq!(probe(dir.path()).cpu_load_percent, None);
    std::fs::write(dir.path().join("loadavg"), "1.00 0.80 0.50 2/345 6789\n").expect("write");
    let host = probe(dir.path());
    let expected = (100.0 / f64::from(host.cpu_count)).min(100.0);
    let got = host.cpu_load_percent.expect("read");
    assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");
    std::fs::write(dir.path().join("loadavg"), "garbage\n").expect("write");
    assert_eq!(probe(dir.path()).cpu_load_percent, None);
}
