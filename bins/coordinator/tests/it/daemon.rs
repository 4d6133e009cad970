//! The daemon: HTTP API on the mixed cluster, Redis restart mid-run, the optimize lock
//! shared by two coordinators.

use std::path::Path;
use std::time::Duration;

use super::cluster::{port_of, Cluster, AMD, CPU};
use super::support::*;

pub(crate) struct Daemon {
    pub(crate) proc: Proc,
    pub(crate) port: u16,
    _config: tempfile::NamedTempFile,
}

impl Daemon {
    pub(crate) fn start(config: &str) -> Daemon {
        let port = free_port();
        let gateway = if config.contains("gateway_listen") {
            ""
        } else {
            "gateway_listen: off\n"
        };
        let cfg = write_config(&format!("{config}{gateway}listen: 127.0.0.1:{port}\n"));
        let proc = Proc::spawn(
            Path::new(BIN),
            &["--config", cfg.path().to_str().unwrap(), "daemon"],
        );
        let up = wait_for(Duration::from_secs(15), || {
            http("GET", port, "/healthz", None)
        });
        assert!(up.is_some(), "daemon did not start: {}", proc.log());
        Daemon {
            proc,
            port,
            _config: cfg,
        }
    }

    fn get(&self, path: &str) -> serde_json::Value {
        get_json(self.port, path, 200)
    }
}

#[test]
fn http_api_answers_and_survives_a_redis_restart() {
    let mut c = Cluster::start();
    // A model only the AMD node's Ollama knows: sized from its /api/tags, planned from
    // its /api/show.
    let mut special = FakeModel::new("special:2b", 2 * GIB);
    for (k, v) in [
        ("general.architecture", serde_json::json!("llama")),
        ("llama.block_count", serde_json::json!(16)),
        ("llama.context_length", serde_json::json!(8192)),
        ("llama.embedding_length", serde_json::json!(2048)),
        ("llama.attention.head_count", serde_json::json!(32)),
        ("llama.attention.head_count_kv", serde_json::json!(8)),
    ] {
        special.model_info.insert(k.to_owned(), v);
    }
    c.amd_ollama.install(special);
    // SOLLOL's reporter re-publishes every few seconds; so does this test.
    write_sollol_node(
        &c.redis,
        port_of(&c.nvidia_ollama.url()),
        c.rpc[0].socket_addr().port(),
        now(),
    );
    let d = Daemon::start(&format!(
        "redis_url: {}\nstale_after: 8\nnodes: [{}]\n",
        c.url,
        c.amd_ollama.url()
    ));
    let p = d.port;

    let nodes = d.get("/v1/nodes");
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 3, "{nodes}");
    assert_eq!(nodes["rpc_backends"].as_array().unwrap().len(), 3);
    assert_eq!(node(&nodes, &c.nvidia_id).unwrap()["writer"], "sollol");

    // The fast path answers without an explanation; it comes on demand.
    let r = d.get("/v1/route?model=llama3.1:8b");
    assert_eq!(r["placement"]["node"], AMD, "{r}");
    assert!(r["explanation"].is_null(), "{r}");
    assert!(r["reason"].as_str().unwrap().contains("score"), "{r}");
    let r = d.get("/v1/route?model=llama3.1:8b&explain=true");
    assert_eq!(r["placement"]["node"], AMD, "{r}");
    assert!(r["explanation"]["candidates"].as_array().unwrap().len() >= 2);
    let r = d.get("/v1/route?model=llama3.2:1b&policy=binpack");
    assert_eq!(r["placement"]["node"], c.nvidia_id.as_str(), "{r}");
    // POST with size, needs_gpu, priority.
    let (st, body) = http(
        "POST",
        p,
        "/v1/route",
        Some(r#"{"model":"custom","size_mb":3000,"needs_gpu":true,"priority":9}"#),
    )
    .unwrap();
    assert_eq!(st, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["size_mb"], 3000);
    assert_eq!(r["placement"]["target"], "gpu");
    let (st, body) = http(
        "POST",
        p,
        "/v1/route",
        Some(r#"{"model":"tiny","size_mb":100,"needs_gpu":false,"allow_cpu":true}"#),
    )
    .unwrap();
    assert_eq!(st, 200, "{body}");
    // Errors: malformed body 400, unknown model 404 saying what to provide, bad
    // parameters 400, unknown path 404 — all JSON.
    for (method, path, body, status) in [
        ("POST", "/v1/route", Some("{\"model\":"), 400),
        ("POST", "/v1/route", Some("[1,2]"), 400),
        (
            "POST",
            "/v1/route",
            Some(r#"{"model":"x","size_mb":-5}"#),
            400,
        ),
        ("GET", "/v1/route?model=mystery:7b", None, 404),
        ("GET", "/v1/route", None, 400),
        ("GET", "/v1/route?model=x&size_mb=lots", None, 400),
        // Priority is SOLLOL's 1-10.
        ("GET", "/v1/route?model=llama3.1:8b&priority=0", None, 400),
        ("GET", "/v1/route?model=llama3.1:8b&priority=255", None, 400),
        ("GET", "/v1/route?model=llama3.1:8b&priority=11", None, 400),
        (
            "POST",
            "/v1/route",
            Some(r#"{"model":"x","size_mb":100,"priority":0}"#),
            400,
        ),
        (
            "POST",
            "/v1/route",
            Some(r#"{"model":"x","size_mb":100,"priority":255}"#),
            400,
        ),
        (
            "GET",
            "/v1/route?model=llama3.1:8b&policy=fastest",
            None,
            400,
        ),
        ("GET", "/v1/check?model=mystery:7b", None, 404),
        ("GET", "/v1/plan?model=mystery:7b", None, 404),
        ("GET", "/v1/nope", None, 404),
    ] {
        let (st, text) = http(method, p, path, body).unwrap();
        assert_eq!(st, status, "{method} {path}: {text}");
        let err: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
        assert!(err["error"].is_string(), "{text}");
        if status == 404 && path.contains("mystery") {
            assert!(
                text.contains("size_mb") || text.contains("nodes:"),
                "{text}"
            );
        }
        if path.contains("priority") || body.is_some_and(|b| b.contains("priority")) {
            assert!(text.contains("give 1 (lowest) to 10"), "{text}");
        }
    }

    let ch = d.get("/v1/check?model=codellama:13b");
    assert!(ch["fits_on"].as_array().unwrap().len() >= 2, "{ch}");
    let pl = d.get("/v1/plan?model=llama3.1:70b&ctx=4096");
    assert_eq!(
        pl["rpc_server_commands"].as_array().unwrap().len(),
        2,
        "{pl}"
    );
    let r = d.get("/v1/route?model=special:2b");
    assert_eq!(
        r["size_source"],
        format!("Ollama /api/tags size of {AMD}"),
        "{r}"
    );
    assert_eq!(r["size_mb"], 2048);
    let pl = d.get("/v1/plan?model=special:2b&ctx=2048");
    assert_eq!(pl["estimate"]["layer_count"], 16, "{pl}");
    assert_eq!(pl["estimate"]["context_length"], 2048, "{pl}");
    let h = d.get("/healthz");
    assert_eq!(h["status"], "ok", "{h}");
    let (st, metrics) = http("GET", p, "/metrics", None).unwrap();
    assert_eq!(st, 200);
    for name in [
        "vramroute_coordinator_nodes{state=\"fresh\"} 3",
        "vramroute_coordinator_gpus 3",
        "vramroute_coordinator_vram_total_mib",
        "vramroute_coordinator_decisions_total{outcome=\"gpu\"}",
        "vramroute_coordinator_decision_duration_seconds_bucket",
        "vramroute_coordinator_registry_errors_total 0",
        "vramroute_coordinator_skipped_records",
        "vramroute_coordinator_redis_up 1",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }

    // A bad record written by someone else is skipped and counted; the rest stays.
    c.redis
        .cli(&[
            "SETEX",
            &vramroute_registry::keys::gpu_stats_key("10.9.9.9:11434"),
            "60",
            "{not json",
        ])
        .unwrap();
    let skipped = wait_for(Duration::from_secs(10), || {
        let v = d.get("/v1/nodes");
        (!v["skipped"].as_array()?.is_empty()).then_some(v)
    })
    .expect("bad record reported as skipped");
    assert_eq!(skipped["nodes"].as_array().unwrap().len(), 3);

    // Redis goes away: the last view is served, health is degraded, nodes go stale.
    c.redis.stop();
    let degraded = wait_for(Duration::from_secs(15), || {
        let h = d.get("/healthz");
        (h["status"] == "degraded").then_some(h)
    })
    .expect("healthz reports degraded");
    assert!(
        degraded["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach Redis"),
        "{degraded}"
    );
    let stale = wait_for(Duration::from_secs(15), || {
        let v = d.get("/v1/nodes");
        (v["nodes"].as_array()?.iter().all(|n| n["stale"] == true)
            && v["nodes"].as_array()?.len() >= 3)
            .then_some(v)
    });
    assert!(
        stale.is_some(),
        "nodes never went stale: {}",
        d.get("/v1/nodes")
    );
    let r = d.get("/v1/route?model=llama3.1:8b");
    assert!(
        r["placement"].is_null(),
        "stale nodes are not routed to: {r}"
    );
    let (_, metrics) = http("GET", p, "/metrics", None).unwrap();
    assert!(
        metrics.contains("vramroute_coordinator_redis_up 0"),
        "{metrics}"
    );

    // Redis comes back (empty): reporters republish, the daemon resumes on its own.
    c.redis.restart().unwrap();
    let back = wait_for(Duration::from_secs(20), || {
        let h = d.get("/healthz");
        let v = d.get("/v1/nodes");
        let fresh = node(&v, AMD).is_some_and(|n| n["stale"] == false)
            && node(&v, CPU).is_some_and(|n| n["stale"] == false);
        (h["status"] == "ok" && fresh).then_some(v)
    });
    assert!(
        back.is_some(),
        "did not resume: {}\n{}",
        d.get("/healthz"),
        d.proc.log()
    );
    let r = d.get("/v1/route?model=llama3.1:8b");
    assert_eq!(r["placement"]["node"], AMD, "{r}");

    // A reporter stopped with SIGTERM: its node leaves the live view.
    assert_eq!(c.cpu.terminate(), Some(0));
    let gone = wait_for(Duration::from_secs(10), || {
        node(&d.get("/v1/nodes"), CPU).is_none().then_some(())
    });
    assert!(gone.is_some(), "{}", d.get("/v1/nodes"));
}

#[test]
fn only_the_lock_holder_optimizes_and_report_only_prints_once() {
    let c = Cluster::start();
    let config = format!(
        "redis_url: {}\nauto_optimize: true\ncheck_interval: 1\npriority_models: [llama3.1:8b]\nload_timeout: 3\n",
        c.url
    );
    let a = Daemon::start(&config);
    let b = Daemon::start(&config);
    let ran = wait_for(Duration::from_secs(15), || {
        let (sa, sb) = (a.get("/v1/optimize"), b.get("/v1/optimize"));
        (sa["last_run"].is_number() || sb["last_run"].is_number()).then_some((sa, sb))
    });
    let (sa, sb) = ran.expect("one coordinator optimized");
    // Give the other a few passes: it must never hold the lock.
    std::thread::sleep(Duration::from_secs(3));
    let (sa2, sb2) = (a.get("/v1/optimize"), b.get("/v1/optimize"));
    let holders = [&sa2, &sb2]
        .iter()
        .filter(|s| s["holds_lock"] == true)
        .count();
    assert_eq!(holders, 1, "{sa} {sb} {sa2} {sb2}");
    let runners = [&sa2, &sb2]
        .iter()
        .filter(|s| s["last_run"].is_number())
        .count();
    assert_eq!(runners, 1, "{sa2} {sb2}");
    let holder = if sa2["holds_lock"] == true {
        &sa2
    } else {
        &sb2
    };
    let outcome = &holder["outcomes"][0];
    assert!(
        outcome["action"] == "loaded" || outcome["action"] == "already_loaded",
        "{holder}"
    );
    assert_eq!(c.amd_ollama.loaded_names(), ["llama3.1:8b"]);
    let lock = format!("{}optimize", vramroute_registry::keys::LOCK_PREFIX);
    let key = c
        .redis
        .cli(&[
            "KEYS",
            &format!("{}*", vramroute_registry::keys::LOCK_PREFIX),
        ])
        .unwrap();
    assert!(key.contains(&lock), "{key}");
    // Owners differ even on one host: `hostname:pid:random`.
    let owner = c.redis.cli(&["GET", &lock]).unwrap();
    assert_eq!(owner.trim().matches(':').count(), 2, "{owner}");

    // The CLI's optimize takes the same lock: refused while a daemon holds it.
    let cfg = write_config(&format!(
        "redis_url: {}\npriority_models: [llama3.1:8b]\n",
        c.url
    ));
    let o = coord(&["--config", cfg.path().to_str().unwrap(), "optimize"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("holds the optimize lock"),
        "{}",
        stderr(&o)
    );
    // A dry run only says where: no lock needed.
    let o = coord(&[
        "--config",
        cfg.path().to_str().unwrap(),
        "optimize",
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // --report-only prints the cluster report once and exits.
    let cfg = write_config(&format!("redis_url: {}\n", c.url));
    let o = coord(&[
        "--config",
        cfg.path().to_str().unwrap(),
        "daemon",
        "--report-only",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("3 node(s)"), "{}", stdout(&o));
}

#[test]
fn the_gateway_routes_ollama_clients_through_the_daemon() {
    let c = Cluster::start();
    let keys = write_config("# gateway keys\ns3cret-gateway-key\n");
    let gp = free_port();
    let d = Daemon::start(&format!(
        "redis_url: {}\ngateway_listen: 127.0.0.1:{gp}\ngateway_keys_file: {}\n",
        c.url,
        keys.path().display()
    ));
    let up = wait_for(Duration::from_secs(10), || http("GET", gp, "/", None));
    assert_eq!(up.map(|r| r.1), Some("Ollama is running".to_owned()));
    let chat = r#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}"#;

    // No key: 401 in Ollama's shape; nothing reached a node.
    let (st, _, body) = http_with("POST", gp, "/api/chat", "", Some(chat)).unwrap();
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("\"error\""), "{body}");

    // With the key: routed where `route` says (the AMD node), streamed back.
    let auth = "Authorization: Bearer s3cret-gateway-key\r\n";
    let (st, head, body) = http_with("POST", gp, "/api/chat", auth, Some(chat)).unwrap();
    assert_eq!(st, 200, "{body}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains(&format!("x-vramroute-node: {AMD}")), "{head}");
    assert!(head.contains("x-vramroute-reason: "), "{head}");
    assert!(
        body.contains("tok0 ") && body.contains("\"done\":true"),
        "{body}"
    );
    assert_eq!(c.amd_ollama.stats("/api/chat").received, 1);
    // The decision is kept for the dashboard (`/v1/decisions`).
    let dec = d.get("/v1/decisions");
    let last = &dec["decisions"][0];
    assert_eq!(last["source"], "gateway", "{dec}");
    assert_eq!(last["model"], "llama3.1:8b", "{dec}");
    assert_eq!(last["node"], AMD, "{dec}");
    assert!(last["score"].is_number(), "{dec}");

    // /api/tags: the union over the nodes with an Ollama, each entry naming its node.
    let (st, _, body) = http_with("GET", gp, "/api/tags", auth, None).unwrap();
    assert_eq!(st, 200, "{body}");
    let tags: serde_json::Value = serde_json::from_str(&body).unwrap();
    let nodes: std::collections::BTreeSet<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["vramroute_node"].as_str())
        .collect();
    assert!(
        nodes.contains(AMD) && nodes.contains(c.nvidia_id.as_str()),
        "{tags}"
    );

    // The API counts it; the key appears in no log line.
    let (_, metrics) = http("GET", d.port, "/metrics", None).unwrap();
    assert!(metrics.contains("gateway_requests_total"), "{metrics}");
    assert!(
        !d.proc.log().contains("s3cret-gateway-key"),
        "{}",
        d.proc.log()
    );
}

#[test]
fn the_admin_api_can_require_a_key_and_an_open_gateway_is_warned_about() {
    // A saved view (embedded mode's) is enough: no Redis.
    let tree = fixture("amd-discrete");
    let o = coord(&["--sysfs-root", &tree, "--no-nvml", "status", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let view = dir.path().join("view.json");
    std::fs::write(&view, &o.stdout).unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "admin-k3y\n").unwrap();
    let port = free_port();
    let cfg = write_config(&format!(
        "listen: 127.0.0.1:{port}\nadmin_requires_key: true\ngateway_keys_file: {}\n",
        keys.display()
    ));
    let mut d = Proc::spawn(
        Path::new(BIN),
        &[
            "--snapshot",
            view.to_str().unwrap(),
            "--config",
            cfg.path().to_str().unwrap(),
            "daemon",
            // Every interface, but with keys: no warning.
            "--gateway-listen",
            "0.0.0.0:0",
        ],
    );
    let up = wait_for(Duration::from_secs(15), || {
        http("GET", port, "/healthz", None)
    });
    assert_eq!(up.map(|r| r.0), Some(200), "{}", d.log());
    let (st, _, body) = http_with("GET", port, "/v1/nodes", "", None).unwrap();
    assert_eq!(st, 401, "{body}");
    let auth = "Authorization: Bearer admin-k3y\r\n";
    let (st, _, body) = http_with("GET", port, "/v1/nodes", auth, None).unwrap();
    assert_eq!(st, 200, "{body}");
    assert!(!d.log().contains("without API keys"), "{}", d.log());
    assert!(!d.log().contains("admin-k3y"), "{}", d.log());
    d.terminate();

    // No keys on every interface: served, with a warning.
    let port = free_port();
    let mut open = Proc::spawn(
        Path::new(BIN),
        &[
            "--snapshot",
            view.to_str().unwrap(),
            "daemon",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--gateway-listen",
            "0.0.0.0:0",
        ],
    );
    let up = wait_for(Duration::from_secs(15), || {
        http("GET", port, "/healthz", None)
    });
    assert!(up.is_some(), "{}", open.log());
    let warned = wait_for(Duration::from_secs(5), || {
        open.log().contains("without API keys").then_some(())
    });
    assert!(warned.is_some(), "{}", open.log());
    open.terminate();
}

/// `sollol:router:metadata`'s backends as `host:port`, sorted; `None` when the key is
/// missing.
fn metadata_backends(c: &Cluster) -> Option<Vec<String>> {
    let raw = c
        .redis
        .cli(&["GET", vramroute_registry::keys::ROUTER_METADATA])
        .unwrap();
    if raw.trim().is_empty() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(raw.trim()).unwrap();
    let mut out: Vec<String> = v["rpc_backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| format!("{}:{}", b["host"].as_str().unwrap(), b["port"]))
        .collect();
    out.sort();
    Some(out)
}

#[test]
fn the_lock_holder_keeps_sollols_router_metadata_current() {
    let mut c = Cluster::start();
    let port = |i: usize| c.rpc[i].socket_addr().port();
    let all = {
        let mut v = vec![
            format!("127.0.0.1:{}", port(0)),
            format!("127.0.0.2:{}", port(1)),
            format!("127.0.0.3:{}", port(2)),
        ];
        v.sort();
        v
    };
    // Another coordinator holds the optimize lock: this daemon must not write.
    let lock = format!("{}optimize", vramroute_registry::keys::LOCK_PREFIX);
    c.redis
        .cli(&["SET", &lock, "other-host:1:abc", "PX", "60000"])
        .unwrap();
    let config = format!(
        "redis_url: {}\nauto_optimize: true\ncheck_interval: 1\n",
        c.url
    );
    let d = Daemon::start(&config);
    assert_eq!(d.get("/v1/optimize")["holds_lock"], false);
    // Several of its metadata ticks (1 s) pass while the three backends are registered.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(metadata_backends(&c), None, "{}", d.proc.log());

    // The lock is free: the daemon takes it and lists every live registration.
    c.redis.cli(&["DEL", &lock]).unwrap();
    let listed = wait_for(Duration::from_secs(15), || {
        metadata_backends(&c).filter(|b| *b == all)
    });
    assert!(
        listed.is_some(),
        "{:?}\n{}",
        metadata_backends(&c),
        d.proc.log()
    );
    assert_eq!(d.get("/v1/optimize")["holds_lock"], true);

    // The CPU node's reporter stops (deregisters): its backend leaves the metadata.
    assert_eq!(c.cpu.terminate(), Some(0));
    let two: Vec<String> = all
        .iter()
        .filter(|b| !b.starts_with("127.0.0.3:"))
        .cloned()
        .collect();
    let gone = wait_for(Duration::from_secs(15), || {
        metadata_backends(&c).filter(|b| *b == two)
    });
    assert!(
        gone.is_some(),
        "{:?}\n{}",
        metadata_backends(&c),
        d.proc.log()
    );
}

#[test]
fn a_load_in_flight_is_sent_once_while_api_ps_lags() {
    let c = Cluster::start();
    // The AMD node's /api/ps (asked by its reporter every second and by the daemon)
    // leaves a new load out of its next 8 answers: several 1 s passes see no load.
    c.amd_ollama.set_ps_lag(8);
    let config = format!(
        "redis_url: {}\nauto_optimize: true\ncheck_interval: 1\npriority_models: [llama3.1:8b]\nload_timeout: 30\n",
        c.url
    );
    let d = Daemon::start(&config);
    let loading = wait_for(Duration::from_secs(15), || {
        let s = d.get("/v1/optimize");
        (s["outcomes"][0]["action"] == "loading").then_some(s)
    });
    assert!(loading.is_some(), "{}", d.proc.log());
    // Until the report shows it loaded.
    let confirmed = wait_for(Duration::from_secs(30), || {
        let s = d.get("/v1/optimize");
        let v = c.status();
        let in_report = v.to_string().contains("llama3.1:8b");
        (s["outcomes"][0]["action"] == "already_loaded" && in_report).then_some(s)
    });
    assert!(confirmed.is_some(), "{}", d.proc.log());
    // A few more passes.
    std::thread::sleep(Duration::from_secs(3));
    let sent = c.amd_ollama.generate_calls().len() + c.nvidia_ollama.generate_calls().len();
    assert_eq!(sent, 1, "{}", d.proc.log());
    // The journal says `loading` while it waits, never `loaded` again and again.
    let log = d.proc.log();
    // (The field value is quoted; the key may carry colour codes.)
    assert!(log.contains("\"loading\""), "{log}");
    assert_eq!(log.matches("\"loaded\"").count(), 0, "{log}");
}
