//! A 3-node mixed cluster through the CLI: an NVIDIA node written raw as SOLLOL writes it
//! (stats + registration, no extras), an AMD node and a CPU-only node from real
//! reporters, Ollama nodes served by real HTTP servers.

use std::time::Duration;

use vramroute_rpc::testing::FakeRpcServer;

use super::support::*;

const GIB: u64 = 1 << 30;

/// A node's rpc-server: a fake speaking llama.cpp's RPC bytes, on the node's loopback IP.
fn rpc_server(ip: [u8; 4], devices: &[(u64, u64)]) -> FakeRpcServer {
    FakeRpcServer::builder()
        .ip(ip.into())
        .devices(devices)
        .start()
        .unwrap()
}

pub(crate) struct Cluster {
    pub(crate) redis: RedisServer,
    pub(crate) url: String,
    /// The SOLLOL-written node's Ollama (its node id is `127.0.0.1:{port}`).
    pub(crate) nvidia_ollama: FakeOllama,
    pub(crate) nvidia_id: String,
    /// The AMD node's Ollama (its reporter asks it; the record carries its URL).
    pub(crate) amd_ollama: FakeOllama,
    pub(crate) amd: Proc,
    pub(crate) cpu: Proc,
    /// The three nodes' rpc-servers (SOLLOL's node, AMD, CPU).
    pub(crate) rpc: [FakeRpcServer; 3],
}

pub(crate) const AMD: &str = "127.0.0.2:11434";
pub(crate) const CPU: &str = "127.0.0.3:11434";

pub(crate) fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

impl Cluster {
    pub(crate) fn start() -> Cluster {
        let redis = RedisServer::start().unwrap();
        let url = redis.url();
        let nvidia_ollama = ollama();
        let amd_ollama = ollama();
        let rpc = [
            rpc_server(
                [127, 0, 0, 1],
                &[
                    (60 * GIB, 64 * GIB),
                    (20 * GIB, 24 * GIB),
                    (8 * GIB, 10 * GIB),
                ],
            ),
            rpc_server(
                [127, 0, 0, 2],
                &[(30 * GIB, 32 * GIB), (16 * GIB, 16 * GIB)],
            ),
            rpc_server([127, 0, 0, 3], &[(14 * GIB, 16 * GIB)]),
        ];
        let rpc_port = |i: usize| rpc[i].socket_addr().port().to_string();
        let nvidia_id = write_sollol_node(
            &redis,
            port_of(&nvidia_ollama.url()),
            rpc[0].socket_addr().port(),
            now(),
        );
        let amd_url = amd_ollama.url();
        let amd = Proc::reporter(
            &url,
            "amd-discrete",
            "127.0.0.2",
            &["--ollama-url", &amd_url, "--rpc-port", &rpc_port(1)],
        );
        let cpu = Proc::reporter(
            &url,
            "empty",
            "127.0.0.3",
            &["--no-ollama", "--rpc-port", &rpc_port(2)],
        );
        let c = Cluster {
            redis,
            url,
            nvidia_ollama,
            nvidia_id,
            amd_ollama,
            amd,
            cpu,
            rpc,
        };
        let ready = wait_for(Duration::from_secs(20), || {
            let v = c.status();
            (v["nodes"].as_array()?.len() == 3 && v["rpc_backends"].as_array()?.len() == 3)
                .then_some(())
        });
        assert!(
            ready.is_some(),
            "cluster not up: {}\nreporters:\n{}\n{}",
            c.status(),
            c.amd.log(),
            c.cpu.log()
        );
        c
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        coord_json(&["--redis-url", &self.url, "status", "--json"])
    }
}

#[test]
fn mixed_cluster_status_route_check_models_plan() {
    let c = Cluster::start();
    let v = c.status();

    // The SOLLOL-written node: both GPUs, derived Ollama URL, its registration as rpc.
    let nv = node(&v, &c.nvidia_id).unwrap();
    assert_eq!(nv["writer"], "sollol");
    assert_eq!(nv["vendor"], "nvidia");
    assert_eq!(nv["gpus"].as_array().unwrap().len(), 2);
    assert_eq!(nv["gpus"][0]["memory_total_mb"], 24576);
    assert_eq!(nv["gpus"][0]["memory_free_mb"], 18000);
    assert_eq!(nv["gpus"][0]["memory_usable_mb"], 19660);
    assert_eq!(nv["ollama_url"], c.nvidia_ollama.url());
    assert_eq!(nv["rpc"]["port"], c.rpc[0].socket_addr().port());
    assert_eq!(nv["stale"], false);
    // Our reporters' nodes.
    let amd = node(&v, AMD).unwrap();
    assert_eq!(amd["vendor"], "amd");
    assert!(amd["writer"].as_str().unwrap().starts_with("vramroute "));
    assert_eq!(amd["gpus"][0]["memory_usable_mb"], 19648);
    assert_eq!(amd["ollama_url"], c.amd_ollama.url());
    let cpu = node(&v, CPU).unwrap();
    assert_eq!(cpu["vendor"], "none");
    assert!(cpu["gpus"].as_array().unwrap().is_empty());
    assert_eq!(v["totals"]["gpus"], 3);
    let rpc: Vec<_> = v["rpc_backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(rpc, ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    assert_eq!(
        v["rpc_backends"][0]["gpu_vram_mb"],
        serde_json::json!([19660, 8192])
    );
    assert_eq!(
        v["rpc_backends"][0]["ggml_devices"],
        serde_json::json!(["CUDA0", "CUDA1"])
    );

    // Human status shows all three, and the embedded notice is absent.
    let o = coord(&["--redis-url", &c.url, "status"]);
    let text = stdout(&o);
    for needle in [
        "3 node(s)",
        "NVIDIA GeForce RTX 3090",
        "AMD Radeon RX 7900 XTX",
        "no GPU (CPU-only)",
        "sollol",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(!stderr(&o).contains("embedded"));

    // route: the AMD card has the most free VRAM; binpack picks the fullest GPU that
    // fits (the SOLLOL node's 3080 for a 1.3 GB model).
    let r = coord_json(&["--redis-url", &c.url, "route", "llama3.1:8b", "--json"]);
    assert_eq!(r["placement"]["node"], AMD, "{r}");
    assert_eq!(r["placement"]["target"], "gpu");
    let r = coord_json(&[
        "--redis-url",
        &c.url,
        "route",
        "llama3.2:1b",
        "--policy",
        "binpack",
        "--json",
    ]);
    assert_eq!(
        r["placement"]["node"],
        c.nvidia_id.as_str(),
        "SOLLOL records are routed to: {r}"
    );
    assert_eq!(r["placement"]["gpu"], 1);
    assert_eq!(r["policy"], "binpack");
    // Too big for any GPU: the CPU-only node takes it.
    let r = coord_json(&[
        "--redis-url",
        &c.url,
        "route",
        "big",
        "--size-mb",
        "21000",
        "--json",
    ]);
    assert_eq!(r["placement"]["target"], "cpu", "{r}");
    let o = coord(&["--redis-url", &c.url, "route", "x", "--policy", "fastest"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // check: per GPU, with SOLLOL's reasons.
    let ch = coord_json(&["--redis-url", &c.url, "check", "codellama:13b", "--json"]);
    let fits: Vec<&str> = ch["fits_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        fits.contains(&format!("{} GPU 0", c.nvidia_id).as_str()),
        "{fits:?}"
    );
    assert!(fits.contains(&format!("{AMD} GPU 0").as_str()), "{fits:?}");
    let nvf = ch["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == c.nvidia_id.as_str())
        .unwrap();
    assert_eq!(
        nvf["gpus"][0]["reason"],
        "Fits in 19660MB VRAM (18000MB free)"
    );
    let ch = coord_json(&["--redis-url", &c.url, "check", "mixtral:8x7b", "--json"]);
    let nvf = ch["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == c.nvidia_id.as_str())
        .unwrap();
    assert_eq!(
        nvf["gpus"][1]["reason"],
        "Model too large (26000MB > 8192MB usable VRAM)"
    );
    assert_eq!(nvf["gpus"][1]["fits"], false);

    // models: SOLLOL's table and the Ollama tags of a `nodes:` entry, source shown.
    let cfg = write_config(&format!(
        "redis_url: {}\nnodes: [{}]\n",
        c.url,
        c.amd_ollama.url()
    ));
    let cfgp = cfg.path().to_str().unwrap();
    let m = coord_json(&["--config", cfgp, "models", "--json"]);
    let row = m["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "llama3.1:8b")
        .unwrap();
    let sources: Vec<&str> = row["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&"SOLLOL size table"), "{sources:?}");
    assert!(
        sources.contains(&format!("Ollama /api/tags size of {AMD}").as_str()),
        "{sources:?}"
    );

    // plan: llama3.1:70b needs both GPU nodes; commands for today's llama.cpp.
    let p = coord_json(&["--redis-url", &c.url, "plan", "llama3.1:70b", "--json"]);
    let servers = p["rpc_server_commands"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{p}");
    assert!(
        servers[0]
            .as_str()
            .unwrap()
            .contains("--device CPU,CUDA0,CUDA1"),
        "{p}"
    );
    assert!(
        servers[1].as_str().unwrap().contains("--device CPU,ROCm0"),
        "{p}"
    );
    let llama = p["llama_server_command"].as_str().unwrap();
    assert!(
        llama.contains(&format!("--rpc {},{}", c.rpc[0].addr(), c.rpc[1].addr())),
        "{llama}"
    );
    assert!(llama.contains("-ngl 81"), "{llama}");
    assert!(!llama.contains("--mem") && !servers[0].as_str().unwrap().contains(" -m "));
    let text = stdout(&coord(&["--redis-url", &c.url, "plan", "llama3.1:70b"]));
    assert!(
        text.contains("layers 0..") && text.contains("then: llama-server"),
        "{text}"
    );

    // status shows what each rpc-server itself answers.
    let st = c.status();
    let health: Vec<&str> = st["rpc_backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["health"]["state"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(health, ["reachable"; 3], "{st}");
    let text = stdout(&coord(&["--redis-url", &c.url, "status"]));
    assert!(
        text.contains("rpc-server: reachable protocol 7.0.0"),
        "{text}"
    );

    // A dead rpc-server (its node still registered) gets no layers, and plan says why.
    let [a, b, cpu_rpc] = c.rpc;
    let dead = b.addr();
    drop(b);
    let p = coord_json(&["--redis-url", &c.url, "plan", "llama3.2:3b", "--json"]);
    let excluded = p["excluded"].as_array().unwrap();
    assert!(
        excluded.iter().any(|e| e["backend"] == dead.as_str()
            && e["reason"].as_str().unwrap().contains("unreachable")),
        "{p}"
    );
    assert!(
        !p["llama_server_command"].as_str().unwrap().contains(&dead),
        "{p}"
    );
    drop((a, cpu_rpc));
}

#[test]
fn optimize_loads_priority_models_and_skips_a_hanging_node() {
    let c = Cluster::start();
    let cfg = write_config(&format!(
        "redis_url: {}\npriority_models: [llama3.1:8b, codellama:13b]\nload_timeout: 1.5\nollama_timeout: 1\n",
        c.url
    ));
    let cfgp = cfg.path().to_str().unwrap();

    // Dry run: says where, loads nothing.
    let d = coord_json(&["--config", cfgp, "optimize", "--dry-run", "--json"]);
    assert_eq!(d["outcomes"][0]["action"], "would_load", "{d}");
    assert_eq!(d["outcomes"][0]["node"], AMD);
    assert!(c.amd_ollama.generate_calls().is_empty());

    // The AMD node's Ollama hangs: it is skipped with a reason, the SOLLOL node gets it.
    c.amd_ollama.set_behaviour(Behaviour::Hang);
    let o = coord_json(&["--config", cfgp, "optimize", "--json"]);
    let first = &o["outcomes"][0];
    assert_eq!(first["action"], "loaded", "{o}");
    assert_eq!(first["node"], c.nvidia_id.as_str());
    assert_eq!(first["skipped"][0]["node"], AMD);
    assert!(
        first["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("load failed"),
        "{o}"
    );
    assert_eq!(
        o["outcomes"][1]["action"], "loaded",
        "the rest proceeds: {o}"
    );
    assert_eq!(
        c.nvidia_ollama.loaded_names(),
        ["codellama:13b", "llama3.1:8b"]
    );
    let call = &c.nvidia_ollama.generate_calls()[0];
    assert_eq!(call["keep_alive"], "1h");
    assert!(call.get("prompt").is_none(), "{call}");

    // Garbage answers are skipped the same way.
    c.amd_ollama.set_behaviour(Behaviour::Garbage);
    c.nvidia_ollama.clear_loaded();
    let o = coord_json(&["--config", cfgp, "optimize", "--json"]);
    assert_eq!(o["outcomes"][0]["skipped"][0]["node"], AMD, "{o}");
    assert_eq!(o["outcomes"][0]["action"], "loaded", "{o}");

    // A healthy AMD node gets llama3.1:8b, confirmed by /api/ps.
    c.amd_ollama.set_behaviour(Behaviour::Normal);
    c.nvidia_ollama.clear_loaded();
    let o = coord_json(&["--config", cfgp, "optimize", "--json"]);
    assert_eq!(o["outcomes"][0]["node"], AMD, "{o}");
    assert!(
        o["outcomes"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("MB in VRAM"),
        "{o}"
    );
    assert!(c
        .amd_ollama
        .loaded_names()
        .contains(&"llama3.1:8b".to_owned()));
    // Once the reporter has published it, the next pass leaves it where it is.
    let seen = wait_for(Duration::from_secs(10), || {
        let v = c.status();
        node(&v, AMD)?["loaded_models"]
            .as_array()?
            .iter()
            .any(|m| m["name"] == "llama3.1:8b")
            .then_some(())
    });
    assert!(seen.is_some(), "reporter did not publish the loaded model");
    let o = coord_json(&["--config", cfgp, "optimize", "--json"]);
    assert_eq!(o["outcomes"][0]["action"], "already_loaded", "{o}");

    // A model nothing can size is reported, not guessed.
    let cfg2 = write_config(&format!(
        "redis_url: {}\npriority_models: [mystery:3b]\n",
        c.url
    ));
    let o = coord_json(&[
        "--config",
        cfg2.path().to_str().unwrap(),
        "optimize",
        "--json",
    ]);
    assert_eq!(o["outcomes"][0]["action"], "unknown_size");
}

#[test]
fn a_node_disappears_when_its_reporter_gets_sigterm() {
    let mut c = Cluster::start();
    assert_eq!(c.cpu.terminate(), Some(0), "{}", c.cpu.log());
    let v = c.status();
    assert!(node(&v, CPU).is_none(), "deregistered at once: {v}");
    assert!(node(&v, AMD).is_some());
    assert_eq!(v["rpc_backends"].as_array().unwrap().len(), 2);
    let _ = &c.redis;
}
