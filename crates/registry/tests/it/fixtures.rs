//! The SOLLOL fixtures exist once: the crate's copy (`fixtures/sollol/`, exposed as
//! `testing::fixtures`) must stay byte-identical to the canonical captures in the shared
//! folder beside the checkout. That check needs the folder, which a clone does not
//! carry: it is an ignored test that fails without it, and `scripts/test.sh` runs it
//! whenever the folder is there.

use std::path::{Path, PathBuf};

use vramroute_registry::testing::fixtures;

/// The canonical captures: `../../shared/sollol-records/` from the workspace root (a
/// worktree under `wt/`), or `../shared/sollol-records/` (a checkout beside `shared/`).
fn canonical_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    ["../../shared/sollol-records", "../shared/sollol-records"]
        .iter()
        .map(|rel| root.join(rel))
        .find(|dir| dir.is_dir())
}

#[test]
#[ignore = "needs shared/sollol-records beside the checkout; scripts/test.sh runs it when present"]
fn crate_copy_is_byte_identical_to_the_shared_captures() {
    let shared = canonical_dir().expect(
        "no shared/sollol-records beside the checkout (../shared or ../../shared from the \
         workspace root): this test compares the crate's copy against it",
    );
    let mut names: Vec<String> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, fixtures::FILES, "files in {}", shared.display());
    let ours: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(fixtures::dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ours,
        fixtures::FILES,
        "files in {}",
        fixtures::dir().display()
    );
    for name in fixtures::FILES {
        let theirs = std::fs::read(shared.join(name)).unwrap();
        let mine = std::fs::read(fixtures::dir().join(name)).unwrap();
        assert!(
            theirs == mine,
            "{name} differs from {}: copy it into crates/registry/fixtures/sollol/",
            shared.join(name).display()
        );
    }
}

#[test]
fn constants_are_the_files_without_their_trailing_newline() {
    let read = |name: &str| std::fs::read_to_string(fixtures::dir().join(name)).unwrap();
    assert_eq!(
        fixtures::GPU_STATS_NVIDIA,
        read("gpu-stats-nvidia.json").trim_end()
    );
    assert_eq!(
        fixtures::GPU_STATS_CPU_ONLY,
        read("gpu-stats-cpu-only.json").trim_end()
    );
    assert_eq!(fixtures::RPC_NODE_GPU, read("rpc-node-gpu.json").trim_end());
    assert_eq!(
        fixtures::STREAM_ENTRIES,
        read("stream-entries.json").trim_end()
    );
    assert!(fixtures::GPU_STATS_NVIDIA.starts_with("{\"vendor\": \"nvidia\", \"gpus\": ["));
}

#[test]
fn stream_entries_keep_their_ids_and_field_order() {
    let entries = fixtures::stream_entries();
    let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["1795441356327-0", "1795441356328-0"]);
    for (_, fields) in &entries {
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["vendor", "gpus", "timestamp", "node_id"]);
    }
    assert_eq!(entries[1].1[1].1, "[]");
    assert_eq!(entries[0].1[2].1, "1795441356.3269339");
}
