//! Property tests of every public decoder of outside data (records, router metadata,
//! stream fields, key names): arbitrary bytes and arbitrary-but-structured JSON never
//! panic, and a result is either a record that passes validation or a reason. 256 cases
//! per property bound the time (proptest's `PROPTEST_CASES` overrides it).
//!
//! Also the decode-time rules of issue #14 items 8 and 10: caps on ids and names, a GPU
//! listed twice, an unknown vendor.

use proptest::prelude::*;
use serde_json::{json, Value};
use vramroute_registry::pyjson::stream_fields;
use vramroute_registry::testing::fixtures;
use vramroute_registry::{
    decode_metadata, decode_rpc, decode_stats, keys, validate_metadata, validate_rpc,
    validate_stats, Limits, UNKNOWN_VENDOR,
};

/// Any JSON value, nested up to 4 levels, with the numbers that break naive readers.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![Just(-1.0f64), Just(1e30), Just(-0.0), Just(4.1e9)].prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![Just("nvidia"), Just("cuda:0"), Just("10.0.0.1"), Just("")]
            .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    ".{0,12}",
                    prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned)
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every field name of the records (stats and their GPUs and loaded models, registrations,
/// metadata), so structured values hit real fields.
const FIELDS: [&str; 49] = [
    "cpu_count",
    "cpu_load_percent",
    "cpu_ram_free_mb",
    "cpu_ram_mb",
    "cpu_ram_total_mb",
    "device_config",
    "driver",
    "ggml_device",
    "ggml_devices",
    "gpu_devices",
    "gpu_names",
    "gpu_offload",
    "gpu_offload_reason",
    "gpu_pci_bus_ids",
    "gpu_uuids",
    "gpu_vram_mb",
    "gpu_vram_total_mb",
    "gpus",
    "has_gpu",
    "host",
    "hostname",
    "index",
    "loaded_models",
    "memory_config",
    "memory_free_mb",
    "memory_kind",
    "memory_total_mb",
    "memory_used_mb",
    "name",
    "node_id",
    "note",
    "ollama_url",
    "pci_bus_id",
    "port",
    "power_w",
    "reporter_version",
    "reserve_fraction",
    "rpc_backends",
    "rpc_host",
    "rpc_port",
    "schema_version",
    "size_mb",
    "size_vram_mb",
    "temperature_c",
    "timestamp",
    "total_parallel_workers",
    "utilization_percent",
    "uuid",
    "vendor",
];

/// A real record (SOLLOL's own) with one top-level field, or one field of `gpus[0]`,
/// replaced by `value`.
fn mutated(fixture: &str, field: &str, value: Value, in_gpu: bool) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(fixture).unwrap();
    let target = if in_gpu {
        v.get_mut("gpus").and_then(|g| g.get_mut(0))
    } else {
        Some(&mut v)
    };
    if let Some(map) = target.and_then(Value::as_object_mut) {
        map.insert(field.to_owned(), value);
    }
    serde_json::to_vec(&v).unwrap()
}

/// Every decoder on `bytes`: whatever it returns is a valid record or a reason.
fn decode_all(bytes: &[u8]) {
    let limits = Limits::default();
    match decode_stats("10.0.0.1:11434", bytes, &limits) {
        Ok(r) => {
            assert!(validate_stats(&r, &limits).is_ok());
            assert!(!r.node_id.is_empty());
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
    match decode_rpc(bytes, &limits) {
        Ok(r) => assert!(validate_rpc(&r, &limits).is_ok()),
        Err(reason) => assert!(!reason.is_empty()),
    }
    match decode_metadata(bytes, &limits) {
        Ok(m) => assert!(validate_metadata(&m, &limits).is_ok()),
        Err(reason) => assert!(!reason.is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoders_survive_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
    }

    #[test]
    fn decoders_survive_arbitrary_json(value in any_json()) {
        decode_all(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn decoders_survive_one_wrong_field_in_a_real_record(
        field in prop::sample::select(FIELDS.to_vec()),
        value in any_json(),
        in_gpu in any::<bool>(),
    ) {
        for fixture in [fixtures::GPU_STATS_NVIDIA, fixtures::RPC_NODE_GPU, fixtures::GPU_STATS_CPU_ONLY] {
            decode_all(&mutated(fixture, field, value.clone(), in_gpu));
        }
    }

    #[test]
    fn stream_fields_survive_anything(text in ".{0,512}", value in any_json()) {
        for input in [text, value.to_string()] {
            if let Err(reason) = stream_fields(&input) {
                prop_assert!(!reason.is_empty());
            }
        }
    }

    #[test]
    fn key_names_decode_or_are_refused(key in ".{0,80}") {
        if let Some(id) = keys::node_id_from_stats_key(&key) {
            prop_assert_eq!(keys::gpu_stats_key(id), key.clone());
        }
        if let Some((host, port)) = keys::rpc_from_key(&key) {
            prop_assert_eq!(keys::rpc_node_key(host, port), key.clone());
        }
        let _ = keys::split_host_port(&key);
    }
}

fn gpu(index: u32, extra: Value) -> Value {
    let mut g =
        json!({"index": index, "name": "GPU", "memory_total_mb": 8192, "memory_free_mb": 4096});
    if let (Some(g), Some(extra)) = (g.as_object_mut(), extra.as_object()) {
        g.extend(extra.clone());
    }
    g
}

fn stats(vendor: &str, gpus: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"vendor": vendor, "gpus": gpus, "timestamp": 1.0})).unwrap()
}

#[test]
fn a_gpu_listed_twice_is_refused_but_per_vendor_indexes_are_fine() {
    let limits = Limits::default();
    // SOLLOL-style: two entries with index 0 and nothing to tell them apart.
    let err = decode_stats(
        "n:1",
        &stats("nvidia", vec![gpu(0, json!({})), gpu(0, json!({}))]),
        &limits,
    )
    .unwrap_err();
    assert!(
        err.contains("gpus[1] repeats gpus[0]") && err.contains("index"),
        "{err}"
    );
    // The same PCI bus id or UUID under two indexes.
    let bus = json!({"pci_bus_id": "0000:01:00.0"});
    let err = decode_stats(
        "n:1",
        &stats("nvidia", vec![gpu(0, bus.clone()), gpu(1, bus)]),
        &limits,
    )
    .unwrap_err();
    assert!(err.contains("same pci_bus_id"), "{err}");
    let uuid = json!({"uuid": "GPU-1"});
    assert!(decode_stats(
        "n:1",
        &stats("nvidia", vec![gpu(0, uuid.clone()), gpu(3, uuid)]),
        &limits
    )
    .is_err());
    // Our reporter on a mixed node: cuda:0 and rocm:0 share index 0, not the GPU.
    let mixed = stats(
        "nvidia",
        vec![
            gpu(0, json!({"pci_bus_id": "0000:01:00.0", "driver": "nvidia"})),
            gpu(0, json!({"pci_bus_id": "0000:03:00.0", "driver": "amdgpu"})),
        ],
    );
    assert_eq!(decode_stats("n:1", &mixed, &limits).unwrap().gpus.len(), 2);
    let by_driver = stats(
        "nvidia",
        vec![
            gpu(0, json!({"driver": "nvidia"})),
            gpu(0, json!({"driver": "amdgpu"})),
        ],
    );
    assert!(decode_stats("n:1", &by_driver, &limits).is_ok());
}

#[test]
fn an_unknown_vendor_is_normalised_and_the_record_kept() {
    let limits = Limits::default();
    let read = |vendor: &str| {
        decode_stats("n:1", &stats(vendor, vec![gpu(0, json!({}))]), &limits)
            .unwrap()
            .vendor
    };
    assert_eq!(read("nvidia"), "nvidia");
    assert_eq!(read(" NVIDIA "), "nvidia");
    assert_eq!(read("AMD"), "amd");
    assert_eq!(read("Intel"), "intel");
    assert_eq!(read("\u{1b}[2Jbanana"), UNKNOWN_VENDOR);
    assert_eq!(read(""), UNKNOWN_VENDOR);
    // A vendor longer than a name may be is refused like any other name.
    assert!(decode_stats("n:1", &stats(&"v".repeat(300), vec![]), &limits).is_err());
}

#[test]
fn ids_and_names_are_capped_at_decode_time() {
    let limits = Limits::default();
    let long = "x".repeat(limits.max_name_bytes + 1);
    let fine = "x".repeat(limits.max_name_bytes);
    let base = |k: &str, v: &str| {
        let mut r: Value = serde_json::from_str(fixtures::GPU_STATS_NVIDIA).unwrap();
        r[k] = json!(v);
        serde_json::to_vec(&r).unwrap()
    };
    for field in ["node_id", "hostname", "rpc_host"] {
        let err = decode_stats("n:1", &base(field, &long), &limits).unwrap_err();
        assert!(err.contains(field) && err.contains("max 255"), "{err}");
        assert!(
            decode_stats("n:1", &base(field, &fine), &limits).is_ok(),
            "{field}"
        );
    }
    // A GPU name, and the node id taken from the key.
    let err = decode_stats(
        "n:1",
        &stats("nvidia", vec![gpu(0, json!({"name": long}))]),
        &limits,
    )
    .unwrap_err();
    assert!(err.contains("gpus[0].name"), "{err}");
    let err = decode_stats(&"k".repeat(1 << 20), &stats("none", vec![]), &limits).unwrap_err();
    assert!(
        err.contains("node id in the key is 1048576 bytes long"),
        "{err}"
    );
    // Registrations: GPU names and devices; router metadata hosts.
    let mut rpc: Value = serde_json::from_str(fixtures::RPC_NODE_GPU).unwrap();
    rpc["gpu_names"][0] = json!(long);
    let err = decode_rpc(&serde_json::to_vec(&rpc).unwrap(), &limits).unwrap_err();
    assert!(err.contains("gpu_names[0]"), "{err}");
    let meta = json!({"rpc_backends": [{"host": long, "port": 50052}]});
    let err = decode_metadata(&serde_json::to_vec(&meta).unwrap(), &limits).unwrap_err();
    assert!(err.contains("rpc_backends[0].host"), "{err}");
}
