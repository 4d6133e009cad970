//! Wire compatibility with SOLLOL's writers and readers (`testing::fixtures`, the copy
//! of shared/sollol-records).

use vramroute_registry::testing::RedisServer;
use vramroute_registry::{
    decode_rpc, decode_stats, Limits, RedisRegistry, Registry, RpcNodeRecord,
};

use vramroute_registry::testing::fixtures::{
    self, GPU_STATS_CPU_ONLY, GPU_STATS_NVIDIA, RPC_NODE_GPU,
};

use crate::common::{cfg, cpu_record, nvidia_record, rpc_record};

/// The ordered field maps of `testing::fixtures::STREAM_ENTRIES`.
fn fixture_stream_entries() -> Vec<Vec<(String, String)>> {
    let out: Vec<_> = fixtures::stream_entries()
        .into_iter()
        .map(|(_, fields)| fields)
        .collect();
    assert_eq!(out.len(), 2, "fixture has two entries");
    out
}

#[test]
fn sollol_records_parse_into_our_types() {
    let limits = Limits::default();
    let nv = decode_stats("10.1.2.3:11434", GPU_STATS_NVIDIA.as_bytes(), &limits).unwrap();
    assert_eq!(nv, nvidia_record());
    let cpu = decode_stats("10.1.2.4:11434", GPU_STATS_CPU_ONLY.as_bytes(), &limits).unwrap();
    assert_eq!(cpu, cpu_record());
    let rpc = decode_rpc(RPC_NODE_GPU.as_bytes(), &limits).unwrap();
    assert_eq!(rpc, rpc_record());
}

#[test]
fn our_writer_is_byte_identical_to_sollol() {
    assert_eq!(nvidia_record().to_json(), GPU_STATS_NVIDIA);
    assert_eq!(cpu_record().to_json(), GPU_STATS_CPU_ONLY);
    assert_eq!(rpc_record().to_json(), RPC_NODE_GPU);
    let entries = fixture_stream_entries();
    assert_eq!(nvidia_record().to_stream_fields(), entries[0]);
    assert_eq!(cpu_record().to_stream_fields(), entries[1]);
}

#[test]
fn unknown_values_are_omitted_not_zero_or_null() {
    let mut r = nvidia_record();
    r.gpus[0].memory_free_mb = None;
    r.gpus[0].memory_used_mb = None;
    r.gpus[0].temperature_c = None;
    let json = r.to_json();
    assert!(json.starts_with(r#"{"vendor": "nvidia", "gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 3090", "memory_total_mb": 24576, "utilization_percent": 41}, "#), "{json}");
    assert!(!json.contains("null"));
    // And it reads back with the unknowns still unknown.
    let back = decode_stats("x", json.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn extras_and_unknown_keys_survive_a_round_trip() {
    let mut r = nvidia_record();
    r.schema_version = Some(1);
    r.reporter_version = Some("0.1.0".into());
    r.gpu_offload = Some(vramroute_registry::GpuOffload::Off);
    r.gpu_offload_reason = Some("all 2 loaded models have size_vram 0".into());
    r.loaded_models = Some(vec![vramroute_registry::LoadedModel::new(
        "llama3.1:8b",
        Some(4700),
        Some(0),
    )]);
    r.cpu_load_percent = Some(12.5);
    r.gpus[1].uuid = Some("GPU-1234".into());
    r.extra
        .insert("future_field".into(), serde_json::json!({"a": [1, 2]}));
    let json = r.to_json();
    assert!(json.contains(r#""gpu_offload": "off""#), "{json}");
    assert!(
        json.ends_with(r#""future_field": {"a": [1, 2]}}"#),
        "{json}"
    );
    let back = decode_stats("x", json.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(back, r);
    // Stream fields: lists/objects as JSON, scalars as Python str().
    let fields = r.to_stream_fields();
    let get = |k: &str| {
        fields
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("schema_version"), "1");
    assert_eq!(get("cpu_load_percent"), "12.5");
    assert_eq!(
        get("loaded_models"),
        r#"[{"name": "llama3.1:8b", "size_mb": 4700, "size_vram_mb": 0}]"#
    );
    let mut cpu = RpcNodeRecord::cpu_only(12000);
    cpu.schema_version = Some(1);
    assert_eq!(
        cpu.to_json(),
        r#"{"has_gpu": false, "gpu_devices": [], "gpu_vram_mb": [], "gpu_names": [], "cpu_ram_mb": 12000, "device_config": "cpu", "memory_config": "12000", "total_parallel_workers": 1, "schema_version": 1}"#
    );
}

#[tokio::test]
async fn redis_round_trip_is_byte_identical_with_sollol_expiries() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    reg.publish_stats(&nvidia_record()).await.unwrap();
    reg.publish_stats(&cpu_record()).await.unwrap();
    reg.register("10.1.2.3", 50052, &rpc_record())
        .await
        .unwrap();

    let get = |k: &str| server.cli(&["GET", k]).unwrap().trim_end().to_owned();
    assert_eq!(get("sollol:gpu:10.1.2.3:11434"), GPU_STATS_NVIDIA);
    assert_eq!(get("sollol:gpu:10.1.2.4:11434"), GPU_STATS_CPU_ONLY);
    assert_eq!(get("sollol:rpc:node:10.1.2.3:50052"), RPC_NODE_GPU);

    // Expiries exactly as SOLLOL's (SETEX 120 / SET EX 3600).
    let ttl = reg.pttl("sollol:gpu:10.1.2.3:11434").await.unwrap();
    assert!((118_000..=120_000).contains(&ttl), "stats PTTL {ttl}");
    let ttl = reg.pttl("sollol:rpc:node:10.1.2.3:50052").await.unwrap();
    assert!(
        (3_598_000..=3_600_000).contains(&ttl),
        "registration PTTL {ttl}"
    );
    assert_eq!(
        server
            .cli(&["TTL", "sollol:gpu:10.1.2.3:11434"])
            .unwrap()
            .trim(),
        "120"
    );
    assert_eq!(
        server.cli(&["TYPE", "sollol:gpu:stats"]).unwrap().trim(),
        "stream"
    );

    // The stream entries carry SOLLOL's field encoding, in SOLLOL's order.
    let history = reg.history(10).await.unwrap();
    assert_eq!(history.len(), 2);
    let entries = fixture_stream_entries();
    assert_eq!(history[0].1, entries[0]);
    assert_eq!(history[1].1, entries[1]);

    // Our own keys never fall in SOLLOL's namespaces.
    let keys = server.cli(&["--scan", "--pattern", "*"]).unwrap();
    for k in keys.lines() {
        let sollol = k.starts_with("sollol:gpu:") || k.starts_with("sollol:rpc:node:");
        let known = k == "sollol:gpu:stats"
            || k == "sollol:gpu:10.1.2.3:11434"
            || k == "sollol:gpu:10.1.2.4:11434"
            || k == "sollol:rpc:node:10.1.2.3:50052";
        assert!(!sollol || known, "unexpected key {k}");
    }
}

#[tokio::test]
async fn records_written_as_sollol_writes_them_are_discovered() {
    let server = RedisServer::start().unwrap();
    // Exactly what SOLLOL's Python writers do (no index).
    server
        .cli(&[
            "SETEX",
            "sollol:gpu:10.1.2.3:11434",
            "120",
            GPU_STATS_NVIDIA,
        ])
        .unwrap();
    server
        .cli(&[
            "SETEX",
            "sollol:gpu:10.1.2.4:11434",
            "120",
            GPU_STATS_CPU_ONLY,
        ])
        .unwrap();
    server
        .cli(&[
            "SET",
            "sollol:rpc:node:10.1.2.3:50052",
            RPC_NODE_GPU,
            "EX",
            "3600",
        ])
        .unwrap();
    server
        .cli(&[
            "XADD",
            "sollol:gpu:stats",
            "MAXLEN",
            "~",
            "1000",
            "*",
            "vendor",
            "none",
            "gpus",
            "[]",
        ])
        .unwrap();
    server
        .cli(&[
            "SET",
            "sollol:router:metadata",
            r#"{"rpc_backends": [{"host": "10.1.2.3", "port": 50052}]}"#,
        ])
        .unwrap();
    let reg = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    let view = reg.discover().await.unwrap();
    let ids: Vec<&str> = view.stats.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["10.1.2.3:11434", "10.1.2.4:11434"]);
    assert_eq!(view.stats_of("10.1.2.3:11434"), Some(&nvidia_record()));
    assert_eq!(view.rpc_node("10.1.2.3", 50052), Some(&rpc_record()));
    let meta = view.metadata.unwrap();
    assert_eq!(meta.rpc_backends.len(), 1);
    assert_eq!(meta.rpc_backends[0].port, 50052);
    assert!(view.skipped.is_empty(), "{:?}", view.skipped);
    let info = server.cli(&["INFO", "commandstats"]).unwrap();
    assert_eq!(
        crate::common::command_calls(&info, "keys"),
        0,
        "KEYS must never be used"
    );
    assert!(crate::common::command_calls(&info, "scan") >= 1);
}
