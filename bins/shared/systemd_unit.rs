//! Pieces of the systemd units the binaries write (`install`), included with `#[path]`
//! so every unit gets the same hardening, process limits and `ExecStart=` quoting.

use std::path::Path;

/// Open files allowed to the service (`LimitNOFILE=`). systemd's default soft limit is
/// 1,024: idle HTTP clients could exhaust it and starve the service's own file reads.
/// Each server also caps its connections (well below this).
pub(crate) const LIMIT_NOFILE: u64 = 65_536;

/// The `[Service]` lines on process limits.
pub(crate) fn limits() -> String {
    format!("LimitNOFILE={LIMIT_NOFILE}\n")
}

/// The `[Service]` hardening lines every vramroute unit carries (after `User=` /
/// `DynamicUser=` and any `SupplementaryGroups=`).
pub(crate) const HARDENING: &str =
    "NoNewPrivileges=yes\nCapabilityBoundingSet=\nAmbientCapabilities=\n\
     ProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\n\
     ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectKernelLogs=yes\n\
     ProtectControlGroups=yes\nProtectClock=yes\nProtectHostname=yes\n\
     RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nRestrictNamespaces=yes\n\
     RestrictRealtime=yes\nRestrictSUIDSGID=yes\nLockPersonality=yes\n\
     MemoryDenyWriteExecute=yes\nSystemCallArchitectures=native\n\
     UMask=0077\n";

/// Writes `contents` to `path` readable by its owner only (an environment file that may
/// hold a password).
pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {} (run as root?)", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Quote one `ExecStart=` word: systemd expands `%` specifiers and `$` variables, and
/// splits on whitespace unless quoted.
pub(crate) fn quote(word: &str) -> String {
    let escaped = word
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    if escaped.is_empty() || escaped.contains(char::is_whitespace) || escaped != word {
        format!("\"{escaped}\"")
    } else {
        escaped
    }
}
