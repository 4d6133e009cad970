//! mimalloc's settings for a long-running daemon: give freed memory back to the OS at
//! once rather than holding it. At 10,000 nodes the daemon's resident memory with
//! mimalloc's defaults is about twice its live data (docs/scale.md, "Daemon memory"):
//! a view and a snapshot are rebuilt every second or so, and mimalloc keeps the pages
//! of the previous ones for a second (`purge_delay`), commits arena memory eagerly
//! (`arena_eager_commit`) and keeps full pages per size class (`page_full_retain`).
//! mimalloc v3 also asks for transparent huge pages on its arenas (`allow_thp`, on by
//! default: `madvise(MADV_HUGEPAGE)`), and with the kernel's default
//! `khugepaged/max_ptes_none` of 511 a 2 MiB range with a single page in use becomes a
//! whole resident huge page: 44 MiB of the daemon's 120 MiB at 10,000 nodes were huge
//! pages (docs/scale.md, "Transparent huge pages"). We turn it off, for mimalloc's
//! later mappings and, with `prctl(PR_SET_THP_DISABLE)`, for the arena it mapped
//! before `main` (what mimalloc itself does when `MIMALLOC_ALLOW_THP=0` is set).
//!
//! Each thread also collects its pages (frees retired and emptied pages, takes back
//! blocks other threads freed) every `generic_collect` allocations that miss its free
//! lists: 10,000 by default, 1,000 here. At 10,000 nodes that gave ≈ 7 MiB less
//! resident memory within half a minute, kept for the rest of the run, at no
//! measurable CPU cost; 2,000 gave nothing (docs/scale.md, "Collecting more often").
//!
//! An operator's own `MIMALLOC_*` environment variable for an option wins: that option
//! is left as mimalloc read it.

use std::ffi::{c_int, c_long};

/// One option: its index in mimalloc v3's `mi_option_e` (`mimalloc.h`; libmimalloc-sys
/// names only some of them), its environment variable, mimalloc's default (checked
/// before anything is set, so a different option layout is never written to) and ours.
struct Setting {
    index: c_int,
    env: &'static str,
    default: c_long,
    value: c_long,
}

/// `mi_option_allow_thp`'s index.
const ALLOW_THP: c_int = 43;

const SETTINGS: [Setting; 5] = [
    // Purge (decommit) freed memory at once instead of after 1 s.
    Setting {
        index: 15,
        env: "MIMALLOC_PURGE_DELAY",
        default: 1000,
        value: 0,
    },
    // Commit arena memory as it is used, not the whole arena up front.
    Setting {
        index: 4,
        env: "MIMALLOC_ARENA_EAGER_COMMIT",
        default: 2,
        value: 0,
    },
    // Keep no full pages per size class in reserve.
    Setting {
        index: 36,
        env: "MIMALLOC_PAGE_FULL_RETAIN",
        default: 2,
        value: 0,
    },
    // A thread collects its pages (frees those whose blocks other threads freed) every
    // 1,000 allocations that miss its free lists instead of every 10,000 (the check runs
    // every 1,000: lower values act as 1,000). See the module doc.
    Setting {
        index: 34,
        env: "MIMALLOC_GENERIC_COLLECT",
        default: 10_000,
        value: 1_000,
    },
    // No transparent huge pages (see the module doc).
    Setting {
        index: ALLOW_THP,
        env: "MIMALLOC_ALLOW_THP",
        default: 1,
        value: 0,
    },
];

/// What [`apply`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Every option not set by the environment was set.
    All,
    /// As `All`, but the kernel refused to turn transparent huge pages off for the
    /// process (`prctl`): the error.
    ThpStillOn(String),
    /// mimalloc's options did not hold the expected defaults (another mimalloc version):
    /// nothing was set.
    LayoutDiffers,
}

/// Sets the options of [`SETTINGS`] the environment does not set. Call first in `main`.
pub(crate) fn apply() -> Applied {
    let ours: Vec<&Setting> = SETTINGS
        .iter()
        .filter(|s| std::env::var_os(s.env).is_none())
        .collect();
    if ours
        .iter()
        .any(|s| ![s.default, s.value].contains(&get(s.index)))
    {
        return Applied::LayoutDiffers;
    }
    for s in &ours {
        set(s.index, s.value);
    }
    if ours.iter().any(|s| s.index == ALLOW_THP) {
        // Also for what mimalloc mapped before `main` (its first arena): the flag is the
        // process's, checked by the kernel at every fault and by khugepaged.
        if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
            return Applied::ThpStillOn(e.to_string());
        }
    }
    Applied::All
}

/// `mi_option_get`.
fn get(index: c_int) -> c_long {
    // SAFETY: FFI into the linked mimalloc; `mi_option_get` takes any integer (it
    // returns 0 for one out of range) and only reads the option table.
    #[allow(unsafe_code)] // FFI: mimalloc has no safe options API.
    unsafe {
        libmimalloc_sys::mi_option_get(index)
    }
}

/// `mi_option_set`.
fn set(index: c_int, value: c_long) {
    // SAFETY: FFI into the linked mimalloc; `index` was checked against the option's
    // default by `apply`, and options may be set at any time (mimalloc reads them on
    // use).
    #[allow(unsafe_code)] // FFI: mimalloc has no safe options API.
    unsafe {
        libmimalloc_sys::mi_option_set(index, value)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_are_found_and_set() {
        let untouched = SETTINGS.iter().all(|s| std::env::var_os(s.env).is_none());
        if untouched {
            assert_eq!(apply(), Applied::All);
            for s in &SETTINGS {
                assert_eq!(get(s.index), s.value, "{}", s.env);
            }
            // Huge pages are off for the whole process.
            assert_eq!(
                rustix::thread::transparent_huge_pages_are_disabled().ok(),
                Some(true)
            );
            // A second call finds our values and keeps them.
            assert_eq!(apply(), Applied::All);
        }
        // An index that is no option reads as 0, which no default here is.
        assert_eq!(get(10_000), 0);
    }
}
