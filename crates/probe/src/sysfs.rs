//! Walking `<root>/class/drm` and reading single values, shared by the AMD and
//! Intel sysfs backends. The only I/O here is reading files and links under the
//! injected root; what the text means is decided in [`crate::parse`].

use std::fs;
use std::path::{Path, PathBuf};

use tracing::debug;

use crate::error::{Error, Result};
use crate::local_file::{read_local_text, LocalFileError};
use crate::parse;

/// sysfs values are a few bytes (attributes report one page, 4 or 64 KiB, as their
/// size); never read more than this from one file.
const MAX_VALUE_BYTES: u64 = 64 * 1024;

/// One `cardN` entry under `class/drm` and the PCI facts about its device.
#[derive(Debug, Clone)]
pub(crate) struct DrmCard {
    /// `card0`, `card1`, ...
    pub(crate) name: String,
    /// `<root>/class/drm/cardN` (a symlink into `devices/...`).
    pub(crate) card_dir: PathBuf,
    /// `<root>/class/drm/cardN/device`: the PCI device directory (through its link).
    pub(crate) device_dir: PathBuf,
    /// PCI vendor id (`device/vendor`).
    pub(crate) vendor_id: Option<u16>,
    /// PCI device id (`device/device`).
    pub(crate) device_id: Option<u16>,
    /// PCI revision (`device/revision`).
    pub(crate) revision: Option<u8>,
    /// Basename of the `device/driver` link (`amdgpu`, `xe`, `i915`).
    pub(crate) driver: Option<String>,
    /// Canonical PCI bus id.
    pub(crate) pci_bus_id: Option<String>,
}

/// `card0`, `card12` — but not `card0-DP-1` (a connector) or `renderD128`.
pub(crate) fn is_card_name(name: &str) -> bool {
    name.strip_prefix("card")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Every `cardN` under `<root>/class/drm`, in card-number order. A missing
/// `class/drm` directory means "no GPUs" (not an error).
pub(crate) fn list_cards(root: &Path) -> Result<Vec<DrmCard>> {
    let drm = root.join("class").join("drm");
    let entries = match fs::read_dir(&drm) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            debug!(path = %drm.display(), "no DRM class directory: no sysfs GPUs");
            return Ok(Vec::new());
        }
        Err(source) => return Err(Error::Io { path: drm, source }),
    };
    let mut names: Vec<(u32, String)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| is_card_name(name))
        .filter_map(|name| Some((name[4..].parse().ok()?, name)))
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|(_, name)| read_card(&drm, name))
        .collect())
}

fn read_card(drm: &Path, name: String) -> DrmCard {
    let card_dir = drm.join(&name);
    let device_dir = card_dir.join("device");
    let vendor_id = read_value(&device_dir.join("vendor"), parse::parse_pci_id);
    let device_id = read_value(&device_dir.join("device"), parse::parse_pci_id);
    let revision = read_value(&device_dir.join("revision"), parse::parse_pci_revision);
    let driver = match fs::read_link(device_dir.join("driver")) {
        Ok(target) => target
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned),
        Err(e) => {
            debug!(card = %name, error = %e, "cannot read the device's driver link");
            None
        }
    };
    let pci_bus_id = pci_bus_id(&device_dir);
    DrmCard {
        name,
        card_dir,
        device_dir,
        vendor_id,
        device_id,
        revision,
        driver,
        pci_bus_id,
    }
}

/// The PCI bus id: the basename of the resolved device directory
/// (`.../0000:03:00.0`), else `PCI_SLOT_NAME` from its `uevent`.
fn pci_bus_id(device_dir: &Path) -> Option<String> {
    let from_link = fs::canonicalize(device_dir).ok().and_then(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(parse::parse_pci_bus_id)
    });
    from_link.or_else(|| read_value(&device_dir.join("uevent"), parse::parse_uevent_pci_slot))
}

/// Read one small file and parse it. Missing, unreadable or unparsable → `None`
/// with a debug line; never an error.
pub(crate) fn read_value<T>(path: &Path, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    let text = match read_small(path) {
        Ok(text) => text,
        Err(e) => {
            debug!(path = %path.display(), error = %e, "sysfs value unreadable: unknown");
            return None;
        }
    };
    let value = parse(&text);
    if value.is_none() {
        let shown: String = text.trim().chars().take(64).collect();
        debug!(path = %path.display(), value = %shown, "sysfs value not plausible: unknown");
    }
    value
}

/// A sysfs value through the one bounded reader: a FIFO or device planted in the tree
/// is refused without blocking, and nothing over [`MAX_VALUE_BYTES`] is read. (sysfs
/// attributes report a size of 4096 whatever they hold.)
fn read_small(path: &Path) -> Result<String, LocalFileError> {
    read_local_text(path, MAX_VALUE_BYTES, "a sysfs value")
}

/// Read `file` from the device's hwmon directories (`device/hwmon/hwmon*/`), taking
/// the first that exists and parses.
pub(crate) fn read_hwmon<T>(
    device_dir: &Path,
    file: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    let hwmon = device_dir.join("hwmon");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&hwmon)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("hwmon"))
        })
        .map(|e| e.path())
        .collect();
    dirs.sort();
    let found = dirs
        .iter()
        .map(|d| d.join(file))
        .filter(|p| p.exists())
        .find_map(|p| read_value(&p, &parse));
    if found.is_none() {
        debug!(path = %hwmon.display(), file, "no usable hwmon reading: unknown");
    }
    found
}

/// Directories named `prefix<N>` directly under `dir`, in numeric order
/// (`tile0`, `tile1`, ...).
pub(crate) fn numbered_subdirs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_card_entries_are_gpus() {
        assert!(is_card_name("card0"));
        assert!(is_card_name("card12"));
        assert!(!is_card_name("card0-DP-1"));
        assert!(!is_card_name("card1-HDMI-A-1"));
        assert!(!is_card_name("renderD128"));
        assert!(!is_card_name("card"));
        assert!(!is_card_name("version"));
    }
}
