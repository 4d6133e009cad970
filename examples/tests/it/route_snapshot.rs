//! Runs the `route-snapshot` example on the sample snapshot, so CI runs the example.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/snapshot.json");
    let out = Command::new(env!("CARGO_BIN_EXE_route-snapshot"))
        .arg(data)
        .args(args)
        .output()
        .expect("route-snapshot runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn routes_to_the_warm_node_and_explains() {
    let (ok, out, err) = run(&["llama3.1:8b"]);
    assert!(ok, "stderr: {err}");
    assert!(
        out.starts_with("decision: 10.9.66.92:11434 GPU 0\n"),
        "{out}"
    );
    assert!(
        out.contains("reason: Already loaded on GPU 0 (14000MB free)"),
        "{out}"
    );
    assert!(
        out.contains("Model too large (4700MB > 3276MB usable VRAM); running on CPU"),
        "{out}"
    );
    assert!(
        out.contains("10.9.66.94:11434: Report stale (600000ms old > 30000ms)"),
        "{out}"
    );
}

#[test]
fn policy_flag_and_json_output() {
    let (ok, out, err) = run(&["llama3.1:8b", "--policy", "binpack", "--json"]);
    assert!(ok, "stderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json output");
    assert_eq!(v["policy"], "binpack");
    assert_eq!(
        v["node_id"], "10.9.66.92:11434",
        "warm start ranks first under binpack too"
    );
    let (ok, out, _) = run(&["codellama:13b", "--policy", "spread"]);
    assert!(ok);
    assert!(
        out.starts_with("decision: 10.9.66.90:11434 GPU 0\n"),
        "most free VRAM: {out}"
    );
}

#[test]
fn unknown_model_size_is_an_error_not_a_guess() {
    let (ok, _, err) = run(&["mystery:1b"]);
    assert!(!ok);
    assert!(
        err.contains("unknown model `mystery:1b`") && err.contains("pass --size-mib N"),
        "{err}"
    );
    let (ok, out, _) = run(&["mystery:1b", "--size-mib", "90000", "--gpu-only"]);
    assert!(ok);
    assert!(
        out.starts_with("decision: none (no eligible node can hold 90000MB"),
        "{out}"
    );
}
