//! Pure parsers for the text the kernel and NVML hand us.
//!
//! Each function takes the raw text and returns `None` for anything it does not
//! trust: empty, non-numeric, negative, or outside a physically plausible range. The
//! caller logs and keeps going; nothing here panics.

/// Bytes in one MiB.
pub(crate) const MIB: u64 = 1024 * 1024;
/// More memory than this on one device (1 PiB) is a corrupt reading.
pub(crate) const MAX_MEMORY_BYTES: u64 = 1 << 50;
/// A temperature above this (°C) is a corrupt reading.
pub(crate) const MAX_TEMPERATURE_CELSIUS: f64 = 200.0;
/// A per-device power draw above this (W) is a corrupt reading.
pub(crate) const MAX_POWER_WATTS: f64 = 5_000.0;

/// A non-negative decimal integer (`"25753026560\n"`). Rejects empty, signed and
/// non-numeric text.
pub(crate) fn parse_u64(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// A memory size in bytes, at most [`MAX_MEMORY_BYTES`].
pub(crate) fn parse_memory_bytes(text: &str) -> Option<u64> {
    parse_u64(text).filter(|&b| b <= MAX_MEMORY_BYTES)
}

/// CPU load in percent from `/proc/loadavg` (`"0.52 0.58 0.59 1/234 5678"`): the
/// 1-minute load average divided by the logical CPU count, capped at 100. A missing,
/// negative or non-finite figure, or no CPU, is `None`.
pub(crate) fn parse_cpu_load_percent(text: &str, cpu_count: u32) -> Option<f64> {
    let load: f64 = text.split_whitespace().next()?.parse().ok()?;
    if !load.is_finite() || load < 0.0 || cpu_count == 0 {
        return None;
    }
    Some((load / f64::from(cpu_count) * 100.0).min(100.0))
}

/// A percentage 0–100 (`gpu_busy_percent`).
pub(crate) fn parse_percent(text: &str) -> Option<u32> {
    parse_u64(text)
        .filter(|&p| p <= 100)
        .and_then(|p| u32::try_from(p).ok())
}

/// A hwmon temperature in millidegrees Celsius (`"45000"` → 45.0). Readings of zero or
/// below, or above [`MAX_TEMPERATURE_CELSIUS`], are rejected.
pub(crate) fn parse_millicelsius(text: &str) -> Option<f64> {
    let milli = parse_u64(text)?;
    let celsius = milli as f64 / 1000.0;
    (celsius > 0.0 && celsius <= MAX_TEMPERATURE_CELSIUS).then_some(celsius)
}

/// A hwmon power reading in microwatts (`"28000000"` → 28.0 W).
pub(crate) fn parse_microwatts(text: &str) -> Option<f64> {
    let micro = parse_u64(text)?;
    let watts = micro as f64 / 1_000_000.0;
    (watts <= MAX_POWER_WATTS).then_some(watts)
}

/// A 16-bit PCI id as sysfs prints it (`"0x1002\n"`).
pub(crate) fn parse_pci_id(text: &str) -> Option<u16> {
    let t = text.trim();
    let hex = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"))?;
    if hex.is_empty() || hex.len() > 4 {
        return None;
    }
    u16::from_str_radix(hex, 16).ok()
}

/// A PCI revision as sysfs prints it (`"0xc8\n"`).
pub(crate) fn parse_pci_revision(text: &str) -> Option<u8> {
    parse_pci_id(text).and_then(|r| u8::try_from(r).ok())
}

/// A PCI bus id in any common spelling (`0000:03:00.0`, NVML's `00000000:03:00.0`,
/// upper case) → the canonical lower-case `dddd:bb:dd.f`.
pub(crate) fn parse_pci_bus_id(text: &str) -> Option<String> {
    let t = text.trim();
    let (domain, rest) = t.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let hex = |s: &str, max_len: usize| -> Option<u32> {
        if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(s, 16).ok()
    };
    let domain = hex(domain, 8)?;
    let bus = hex(bus, 2)?;
    let dev = hex(dev, 2)?;
    let func = hex(func, 1)?;
    if domain > 0xffff || dev > 0x1f || func > 7 {
        return None;
    }
    Some(format!("{domain:04x}:{bus:02x}:{dev:02x}.{func:x}"))
}

/// ROCm SMI's packed BDF id (`domain << 32 | bus << 8 | device << 3 | function`;
/// bits 28–31 may carry a partition id and are ignored) → `dddd:bb:dd.f`.
#[cfg(any(test, feature = "rocm"))]
pub(crate) fn bdfid_to_pci_bus_id(bdfid: u64) -> Option<String> {
    let domain = bdfid >> 32;
    let bus = (bdfid >> 8) & 0xff;
    let device = (bdfid >> 3) & 0x1f;
    let function = bdfid & 0x7;
    (domain <= 0xffff).then(|| format!("{domain:04x}:{bus:02x}:{device:02x}.{function:x}"))
}

/// `PCI_SLOT_NAME=0000:03:00.0` out of a device's `uevent` file.
pub(crate) fn parse_uevent_pci_slot(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("PCI_SLOT_NAME="))
        .and_then(parse_pci_bus_id)
}

/// A short identifier or marketing name: trimmed, non-empty, printable, at most
/// `max_len` bytes (`product_name`, `unique_id`).
pub(crate) fn parse_label(text: &str, max_len: usize) -> Option<String> {
    let t = text.trim();
    if t.is_empty() || t.len() > max_len || t.chars().any(char::is_control) {
        return None;
    }
    Some(t.to_owned())
}

/// Bytes → whole MiB, rounded down.
pub(crate) fn bytes_to_mib(bytes: u64) -> u64 {
    bytes / MIB
}

/// A cgroup memory limit as read from a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CgroupLimit {
    /// No limit applies.
    Unlimited,
    /// A limit in bytes.
    Bytes(u64),
}

/// cgroup v1 reports "no limit" as a huge number (`9223372036854771712` on 4 KiB
/// pages); anything at or above this is treated as unlimited.
pub(crate) const CGROUP_V1_UNLIMITED_FLOOR: u64 = 1 << 60;

/// cgroup v2 `memory.max`: `"max"` or a byte count.
pub(crate) fn parse_cgroup_v2_max(text: &str) -> Option<CgroupLimit> {
    if text.trim() == "max" {
        return Some(CgroupLimit::Unlimited);
    }
    parse_u64(text).map(|b| {
        if b >= CGROUP_V1_UNLIMITED_FLOOR {
            CgroupLimit::Unlimited
        } else {
            CgroupLimit::Bytes(b)
        }
    })
}

/// cgroup v1 `memory.limit_in_bytes`: a byte count, huge meaning unlimited. Some
/// kernels print `-1` for "unlimited".
pub(crate) fn parse_cgroup_v1_limit(text: &str) -> Option<CgroupLimit> {
    if text.trim() == "-1" {
        return Some(CgroupLimit::Unlimited);
    }
    parse_u64(text).map(|b| {
        if b >= CGROUP_V1_UNLIMITED_FLOOR {
            CgroupLimit::Unlimited
        } else {
            CgroupLimit::Bytes(b)
        }
    })
}

/// Which cgroup this process is in, from `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMembership {
    /// Path of the unified (v2) hierarchy, e.g. `/system.slice/vramroute.service`.
    pub(crate) v2: Option<String>,
    /// Path in the v1 `memory` controller hierarchy.
    pub(crate) v1_memory: Option<String>,
}

/// Parse `/proc/self/cgroup` (`0::/system.slice/x.service`, `4:memory:/docker/abc`).
pub(crate) fn parse_proc_self_cgroup(text: &str) -> Option<CgroupMembership> {
    let mut m = CgroupMembership {
        v2: None,
        v1_memory: None,
    };
    for line in text.lines() {
        let mut parts = line.trim().splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
            continue;
        }
        if id == "0" && controllers.is_empty() {
            m.v2 = Some(path.to_owned());
        } else if controllers.split(',').any(|c| c == "memory") {
            m.v1_memory = Some(path.to_owned());
        }
    }
    (m.v2.is_some() || m.v1_memory.is_some()).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_load_from_loadavg() {
        assert_eq!(
            parse_cpu_load_percent("1.00 0.5 0.2 1/234 5678\n", 4),
            Some(25.0)
        );
        assert_eq!(parse_cpu_load_percent("12.0 1 1 1/1 1", 4), Some(100.0));
        assert_eq!(parse_cpu_load_percent("0.00 0 0 1/1 1", 2), Some(0.0));
        for bad in ["", "x 1 1", "-1 0 0", "NaN 0 0", "inf 0 0"] {
            assert_eq!(parse_cpu_load_percent(bad, 2), None, "{bad:?}");
        }
        assert_eq!(parse_cpu_load_percent("1.0 0 0", 0), None);
    }

    #[test]
    fn u64_accepts_plain_decimal_only() {
        assert_eq!(parse_u64("25753026560\n"), Some(25_753_026_560));
        assert_eq!(parse_u64("  7 "), Some(7));
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("\n"), None);
        assert_eq!(parse_u64("-5"), None);
        assert_eq!(parse_u64("+5"), None);
        assert_eq!(parse_u64("12abc"), None);
        assert_eq!(parse_u64("0x10"), None);
        assert_eq!(parse_u64("99999999999999999999999"), None);
    }

    #[test]
    fn memory_rejects_more_than_a_pebibyte() {
        assert_eq!(parse_memory_bytes("1125899906842624"), Some(1 << 50));
        assert_eq!(parse_memory_bytes("1125899906842625"), None);
        assert_eq!(parse_memory_bytes("0"), Some(0));
    }

    #[test]
    fn percent_is_bounded() {
        assert_eq!(parse_percent("100"), Some(100));
        assert_eq!(parse_percent("0\n"), Some(0));
        assert_eq!(parse_percent("101"), None);
        assert_eq!(parse_percent("-1"), None);
    }

    #[test]
    fn temperature_in_millidegrees() {
        assert_eq!(parse_millicelsius("45000\n"), Some(45.0));
        assert_eq!(parse_millicelsius("38500"), Some(38.5));
        assert_eq!(parse_millicelsius("200000"), Some(200.0));
        assert_eq!(parse_millicelsius("200001"), None);
        assert_eq!(parse_millicelsius("0"), None);
        assert_eq!(parse_millicelsius("-5000"), None);
        assert_eq!(parse_millicelsius("hot"), None);
    }

    #[test]
    fn power_in_microwatts() {
        assert_eq!(parse_microwatts("28000000"), Some(28.0));
        assert_eq!(parse_microwatts("0"), Some(0.0));
        assert_eq!(parse_microwatts("5000000001"), None);
        assert_eq!(parse_microwatts("-1"), None);
    }

    #[test]
    fn pci_ids() {
        assert_eq!(parse_pci_id("0x1002\n"), Some(0x1002));
        assert_eq!(parse_pci_id("0x744C"), Some(0x744c));
        assert_eq!(parse_pci_id("1002"), None);
        assert_eq!(parse_pci_id("0x"), None);
        assert_eq!(parse_pci_id("0x12345"), None);
        assert_eq!(parse_pci_revision("0xc8\n"), Some(0xc8));
        assert_eq!(parse_pci_revision("0x1c8"), None);
    }

    #[test]
    fn pci_bus_ids_are_canonicalised() {
        assert_eq!(
            parse_pci_bus_id("0000:03:00.0").as_deref(),
            Some("0000:03:00.0")
        );
        assert_eq!(
            parse_pci_bus_id("00000000:0A:00.0\n").as_deref(),
            Some("0000:0a:00.0")
        );
        assert_eq!(parse_pci_bus_id("0000:03:00"), None);
        assert_eq!(parse_pci_bus_id("card0"), None);
        assert_eq!(parse_pci_bus_id("0000:03:20.0"), None);
        assert_eq!(parse_pci_bus_id("0000:03:00.8"), None);
        assert_eq!(parse_pci_bus_id("pci0000:00"), None);
        assert_eq!(parse_pci_bus_id("10000:03:00.0"), None);
    }

    #[test]
    fn rocm_bdfid() {
        // 0000:03:00.0 and 0001:c4:1f.7
        assert_eq!(bdfid_to_pci_bus_id(0x300).as_deref(), Some("0000:03:00.0"));
        let id = (1u64 << 32) | (0xc4 << 8) | (0x1f << 3) | 7;
        assert_eq!(bdfid_to_pci_bus_id(id).as_deref(), Some("0001:c4:1f.7"));
        assert_eq!(bdfid_to_pci_bus_id(0x1_0000_0000_0000), None);
    }

    #[test]
    fn uevent_slot() {
        let uevent =
            "DRIVER=amdgpu\nPCI_CLASS=30000\nPCI_ID=1002:744C\nPCI_SLOT_NAME=0000:03:00.0\n";
        assert_eq!(
            parse_uevent_pci_slot(uevent).as_deref(),
            Some("0000:03:00.0")
        );
        assert_eq!(parse_uevent_pci_slot("DRIVER=amdgpu\n"), None);
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_label("AMD Instinct MI210\n", 128).as_deref(),
            Some("AMD Instinct MI210")
        );
        assert_eq!(parse_label("   \n", 128), None);
        assert_eq!(parse_label("a\u{7}b", 128), None);
        assert_eq!(parse_label("abcdef", 3), None);
    }

    #[test]
    fn mib_rounds_down() {
        assert_eq!(bytes_to_mib(25_753_026_560), 24_560);
        assert_eq!(bytes_to_mib(MIB - 1), 0);
    }

    #[test]
    fn cgroup_limits() {
        assert_eq!(parse_cgroup_v2_max("max\n"), Some(CgroupLimit::Unlimited));
        assert_eq!(
            parse_cgroup_v2_max("8589934592\n"),
            Some(CgroupLimit::Bytes(8_589_934_592))
        );
        assert_eq!(parse_cgroup_v2_max("lots"), None);
        assert_eq!(
            parse_cgroup_v1_limit("9223372036854771712\n"),
            Some(CgroupLimit::Unlimited)
        );
        assert_eq!(parse_cgroup_v1_limit("-1"), Some(CgroupLimit::Unlimited));
        assert_eq!(
            parse_cgroup_v1_limit("4294967296"),
            Some(CgroupLimit::Bytes(4_294_967_296))
        );
        assert_eq!(parse_cgroup_v1_limit(""), None);
    }

    #[test]
    fn proc_self_cgroup() {
        let v2 = parse_proc_self_cgroup("0::/system.slice/vramroute.service\n");
        assert_eq!(
            v2,
            Some(CgroupMembership {
                v2: Some("/system.slice/vramroute.service".into()),
                v1_memory: None
            })
        );
        let v1 = parse_proc_self_cgroup(
            "12:pids:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/docker/abc\n",
        );
        assert_eq!(v1.and_then(|m| m.v1_memory).as_deref(), Some("/docker/abc"));
        assert_eq!(parse_proc_self_cgroup("garbage"), None);
        assert_eq!(parse_proc_self_cgroup("0::/../../etc\n"), None);
    }
}

/// Property tests: every sysfs / procfs parser on arbitrary text and on hostile
/// variations of real values never panics, and what it accepts is in range.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    /// Real-looking values, mangled: padding, signs, prefixes, huge numbers, NULs.
    fn sysfs_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ \t\n]{0,3}[+-]?(0x|0X)?[0-9a-fA-F]{0,24}[ \t\n\0]{0,3}",
            "[0-9a-fA-F:.x]{0,24}",
            "[0-9]{0,3}:[a-z,=_]{0,12}:[/a-z.\\-]{0,32}(\n[0-9]{0,3}:[a-z,]{0,8}:[/a-z.]{0,16}){0,4}",
            "(PCI_SLOT_NAME=|DRIVER=)?[0-9a-fA-F:.]{0,20}\n?",
            (any::<u64>(), "[ \n]{0,2}").prop_map(|(n, pad)| format!("{n}{pad}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn parsers_never_panic_and_stay_in_range(text in sysfs_text(), max_len in 0usize..128) {
            if let Some(n) = parse_u64(&text) {
                prop_assert!(text.trim().bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(text.trim().parse::<u64>().ok(), Some(n));
            }
            prop_assert!(parse_memory_bytes(&text).is_none_or(|b| b <= MAX_MEMORY_BYTES));
            prop_assert!(parse_percent(&text).is_none_or(|p| p <= 100));
            prop_assert!(parse_millicelsius(&text).is_none_or(|c| c > 0.0 && c <= MAX_TEMPERATURE_CELSIUS));
            prop_assert!(parse_microwatts(&text).is_none_or(|w| (0.0..=MAX_POWER_WATTS).contains(&w)));
            let _ = parse_pci_id(&text);
            let _ = parse_pci_revision(&text);
            for bus in [parse_pci_bus_id(&text), parse_uevent_pci_slot(&text)].into_iter().flatten() {
                prop_assert_eq!(bus.len(), 12, "canonical dddd:bb:dd.f: {}", bus);
                prop_assert_eq!(parse_pci_bus_id(&bus), Some(bus.clone()), "canonical is a fixed point");
            }
            if let Some(label) = parse_label(&text, max_len) {
                prop_assert!(!label.is_empty() && label.len() <= max_len);
                prop_assert!(!label.chars().any(char::is_control));
            }
            let _ = parse_cgroup_v2_max(&text);
            let _ = parse_cgroup_v1_limit(&text);
            if let Some(m) = parse_proc_self_cgroup(&text) {
                for path in [m.v2, m.v1_memory].into_iter().flatten() {
                    prop_assert!(path.starts_with('/') && !path.split('/').any(|c| c == ".."));
                }
            }
        }

        #[test]
        fn padded_decimal_round_trips(n in any::<u64>(), pre in "[ \t\n]{0,3}", post in "[ \t\n]{0,3}") {
            prop_assert_eq!(parse_u64(&format!("{pre}{n}{post}")), Some(n));
        }
    }
}
