//! The dashboard: `GET /v1/history` on a real redis-server filled by real reporters and
//! by SOLLOL-format stream entries, `GET /v1/decisions`, and the page itself loaded in a
//! real headless Chromium (its DOM after the scripts ran, and a screenshot).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vramroute_registry::keys;

use super::daemon::Daemon;
use super::support::*;

/// [`test_reporter_args`] with another stats TTL.
fn test_reporter_args_with_ttl(redis: &str, tree: &str, ip: &str, ttl_s: &str) -> Vec<String> {
    let mut a = test_reporter_args(redis, &fixture(tree), ip);
    let i = a.iter().position(|x| x == "--stats-ttl").unwrap();
    a[i + 1] = ttl_s.to_owned();
    a
}

/// Appends `fields` to the stats stream as SOLLOL's reporter does (`XADD … *`).
fn xadd(redis: &RedisServer, fields: &[(String, String)]) {
    let mut args = vec![keys::GPU_STATS_STREAM.to_owned(), "*".to_owned()];
    for (k, v) in fields {
        args.push(k.clone());
        args.push(v.clone());
    }
    let mut cmd = vec!["XADD".to_owned()];
    cmd.extend(args);
    redis.cli(&cmd).unwrap();
}

/// SOLLOL's captured stream entries (the workspace's copy of
/// `shared/sollol-records/stream-entries.json`), as `(field, value)` lists in stored order.
fn sollol_entries() -> Vec<Vec<(String, String)>> {
    vramroute_registry::testing::fixtures::stream_entries()
        .into_iter()
        .map(|(_, fields)| fields)
        .collect()
}

fn err_of(port: u16, path: &str, status: u16) -> String {
    let v = get_json(port, path, status);
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: no error text: {v}"))
        .to_owned()
}

#[test]
fn history_reads_real_reporters_and_sollol_entries_and_says_what_is_wrong() {
    let mut redis = RedisServer::start().unwrap();
    let url = redis.url();
    let _amd = Proc::reporter(&url, "amd-discrete", "127.0.0.2", &["--no-ollama"]);
    let _cpu = Proc::reporter(&url, "empty", "127.0.0.3", &["--no-ollama"]);
    let sollol = sollol_entries();
    for fields in &sollol {
        xadd(&redis, fields);
    }
    // One entry that cannot be read: skipped and counted, the rest served.
    xadd(
        &redis,
        &[
            ("node_id".to_owned(), "10.9.9.9:11434".to_owned()),
            ("gpus".to_owned(), "[{".to_owned()),
            ("timestamp".to_owned(), "1795441357.0".to_owned()),
        ],
    );
    let d = Daemon::start(&format!("redis_url: {url}\nstale_after: 30\n"));
    let p = d.port;

    // Real reporters: several points each, oldest first, with the fixture's GPU.
    let amd = wait_for(Duration::from_secs(20), || {
        let h = get_json(p, "/v1/history?node=127.0.0.2:11434&since=-600", 200);
        (h["points"].as_array()?.len() >= 2).then_some(h)
    })
    .expect("the AMD reporter's publishes reach the history");
    let points = amd["points"].as_array().unwrap();
    assert!(
        points.iter().all(|pt| pt["node_id"] == "127.0.0.2:11434"),
        "{amd}"
    );
    let times: Vec<f64> = points
        .iter()
        .map(|pt| pt["timestamp"].as_f64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let gpu = &points[0]["gpus"][0];
    assert_eq!(gpu["memory_total_mb"], 24560, "{amd}");
    assert_eq!(gpu["memory_used_mb"], 1177, "{amd}");
    assert!(points[0]["id"].as_str().unwrap().contains('-'), "{amd}");
    assert_eq!(amd["stream"], "registry");
    // The live view's point of that node rides along.
    let live = amd["live"].as_array().unwrap();
    assert_eq!(live.len(), 1, "{amd}");
    assert_eq!(live[0]["node_id"], "127.0.0.2:11434");
    assert!(live[0]["id"].is_null());
    // The CPU-only node: points without GPUs.
    let cpu = get_json(p, "/v1/history?node=127.0.0.3:11434&since=-600", 200);
    assert!(!cpu["points"].as_array().unwrap().is_empty(), "{cpu}");
    assert!(cpu["points"][0]["gpus"].as_array().unwrap().is_empty());
    assert!(cpu["points"][0]["node_used_mb"].is_null());

    // SOLLOL's entries (written days ago): only with an old enough `since`.
    let nv = get_json(p, "/v1/history?node=10.1.2.3:11434&since=1795441000", 200);
    let pts = nv["points"].as_array().unwrap();
    assert_eq!(pts.len(), 1, "{nv}");
    assert_eq!(pts[0]["vendor"], "nvidia");
    assert_eq!(pts[0]["gpus"][0]["name"], "NVIDIA GeForce RTX 3090");
    assert_eq!(pts[0]["gpus"][0]["memory_used_mb"], 6576);
    assert_eq!(pts[0]["gpus"][1]["memory_total_mb"], 10240);
    assert_eq!(pts[0]["node_used_mb"], 6576 + 1240);
    assert!((pts[0]["timestamp"].as_f64().unwrap() - 1_795_441_356.327).abs() < 0.01);
    let all = get_json(p, "/v1/history?since=1795441000&limit=5000", 200);
    let ids: std::collections::BTreeSet<&str> = all["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pt| pt["node_id"].as_str().unwrap())
        .collect();
    for id in [
        "10.1.2.3:11434",
        "10.1.2.4:11434",
        "127.0.0.2:11434",
        "127.0.0.3:11434",
    ] {
        assert!(ids.contains(id), "{id} missing: {ids:?}");
    }
    assert_eq!(all["skipped"], 1, "{all}");
    assert!(
        all["skipped_reasons"][0].as_str().unwrap().contains("gpus"),
        "{all}"
    );
    let recent = get_json(p, "/v1/history?since=-600", 200);
    assert!(
        recent["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|pt| pt["node_id"] != "10.1.2.3:11434"),
        "since excludes older entries: {recent}"
    );
    // The newest `limit` points, marked truncated.
    let one = get_json(p, "/v1/history?since=0&limit=1", 200);
    assert_eq!(one["points"].as_array().unwrap().len(), 1);
    assert_eq!(one["truncated"], true);
    let newest = one["points"][0]["timestamp"].as_f64().unwrap();
    assert!(newest > 1_795_441_357.0, "the newest point is kept: {one}");

    // Bad parameters: 400 with what to give.
    for (path, says) in [
        ("/v1/history?since=yesterday", "Unix seconds"),
        ("/v1/history?since=inf", "finite"),
        ("/v1/history?since=99999999999", "future"),
        ("/v1/history?limit=0", "from 1 to 5000"),
        ("/v1/history?limit=100000", "from 1 to 5000"),
        ("/v1/history?node=", "node id"),
        ("/v1/history?node=a%07b", "control"),
        ("/v1/history?nodes=x", "unknown query parameter"),
        ("/v1/decisions?limit=-1", "whole number"),
    ] {
        let e = err_of(p, path, 400);
        assert!(e.contains(says), "{path}: {e}");
    }

    // Decisions of the API's /v1/route, newest first, with node, fit, score and reason.
    get_json(p, "/v1/route?model=custom&size_mb=2000", 200);
    get_json(
        p,
        "/v1/route?model=huge&size_mb=900000&allow_cpu=false",
        200,
    );
    let dec = get_json(p, "/v1/decisions", 200);
    let list = dec["decisions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{dec}");
    assert_eq!(list[0]["model"], "huge");
    assert!(list[0]["node"].is_null(), "{dec}");
    assert!(!list[0]["reason"].as_str().unwrap().is_empty());
    assert_eq!(list[1]["model"], "custom");
    assert_eq!(list[1]["source"], "api");
    assert_eq!(list[1]["node"], "127.0.0.2:11434", "{dec}");
    assert_eq!(list[1]["fit"], "single_gpu", "{dec}");
    assert!(list[1]["score"].is_number(), "{dec}");
    assert_eq!(dec["total"], 2);

    // Redis gone: 503 saying so; the live view is still served.
    redis.stop();
    let e = err_of(p, "/v1/history", 503);
    assert!(e.contains("cannot read the stats history"), "{e}");
    get_json(p, "/v1/nodes", 200);
}

/// The Chromium binary: `$CHROMIUM`, else the first of the usual names on `PATH`.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(o) = Command::new("which").arg(name).output() {
            let path = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if o.status.success() && !path.is_empty() {
                return PathBuf::from(path);
            }
        }
    }
    panic!(
        "Chromium is missing, and this test needs a real browser: install it \
         (`sudo apt-get install chromium` on Debian; scripts/test.sh does that when run as \
         root) or point $CHROMIUM at a Chrome/Chromium binary"
    );
}

/// Runs headless Chromium on `url` with `args`, bounded to 90 s; returns stdout.
fn browse(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within 90 s: {}",
                std::fs::read_to_string(err.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "chromium failed ({status}): {}",
        std::fs::read_to_string(err.path()).unwrap_or_default()
    );
    std::fs::read_to_string(out.path()).unwrap()
}

/// `text` as the page shows a number of MiB.
fn gib(mb: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "MiB figures of test fixtures")]
    let g = mb as f64 / 1024.0;
    format!("{g:.1} GiB")
}

/// The `<article>` of node `id` in the dumped DOM.
fn card<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("data-node-id=\"{id}\""))
        .unwrap_or_else(|| panic!("no card for {id} in the page:\n{dom}"));
    let end = dom[start..]
        .find("</article>")
        .map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// What a script in a record would do if the page ran it.
const EVIL_NAME: &str = "<script>document.body.setAttribute('data-pwned','script')</script>\
                         <img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">\u{1b}[31m";

#[test]
fn the_dashboard_renders_the_cluster_in_a_real_browser() {
    chromium(); // fails first, and clearly, when there is no browser
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let fresh = Proc::reporter(&url, "amd-discrete", "127.0.0.2", &["--no-ollama"]);
    // A reporter whose record outlives it (10 min TTL), killed: its node goes stale.
    let mut args = test_reporter_args_with_ttl(&url, "intel-xe", "127.0.0.3", "600");
    args.push("--no-ollama".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stale = Proc::spawn(&reporter_bin(), &args);
    // A record as SOLLOL writes it whose GPU name is markup and a control character.
    let mut evil: serde_json::Value =
        serde_json::from_str(vramroute_registry::testing::fixtures::GPU_STATS_NVIDIA).unwrap();
    evil["node_id"] = "127.0.0.4:11434".into();
    evil["timestamp"] = now().into();
    evil["gpus"][0]["name"] = EVIL_NAME.into();
    redis
        .cli(&[
            "SETEX",
            &keys::gpu_stats_key("127.0.0.4:11434"),
            "600",
            &evil.to_string(),
        ])
        .unwrap();
    let d = Daemon::start(&format!("redis_url: {url}\nstale_after: 8\n"));
    let p = d.port;
    let up = wait_for(Duration::from_secs(20), || {
        let v = get_json(p, "/v1/nodes", 200);
        (v["nodes"].as_array()?.len() == 3).then_some(())
    });
    assert!(
        up.is_some(),
        "nodes never all appeared: {}\n{}",
        fresh.log(),
        stale.log()
    );
    drop(stale); // SIGKILL: no deregistration, the record stays
    let view = wait_for(Duration::from_secs(30), || {
        let v = get_json(p, "/v1/nodes", 200);
        let s = node(&v, "127.0.0.3:11434")?["stale"] == true;
        let f = node(&v, "127.0.0.2:11434")?["stale"] == false;
        (s && f).then_some(v)
    })
    .expect("the killed reporter's node goes stale while the other stays fresh");

    let page = format!("http://127.0.0.1:{p}/?route=llama3.1:8b");
    let dom = browse(&["--virtual-time-budget=15000", "--dump-dom"], &page);

    // Every node and GPU, with its figures in GiB.
    for n in view["nodes"].as_array().unwrap() {
        let id = n["id"].as_str().unwrap();
        let c = card(&dom, id);
        for g in n["gpus"].as_array().unwrap() {
            if id != "127.0.0.4:11434" {
                let name = g["name"].as_str().unwrap();
                assert!(c.contains(name), "GPU {name} of {id} not shown:\n{c}");
            }
            if let Some(total) = g["memory_total_mb"].as_u64() {
                assert!(
                    c.contains(&format!("total {}", gib(total))),
                    "{id}: total {}:\n{c}",
                    gib(total)
                );
            }
        }
    }
    let amd = card(&dom, "127.0.0.2:11434");
    assert!(
        amd.contains("used 1.1 GiB") && amd.contains("total 24.0 GiB"),
        "{amd}"
    );
    assert!(
        amd.contains("fresh") && amd.contains("data-stale=\"false\""),
        "{amd}"
    );
    assert!(amd.contains("temperature"), "{amd}");
    // The stale node is marked in words, not only in colour.
    let st = card(&dom, "127.0.0.3:11434");
    assert!(
        st.contains("data-stale=\"true\"") && st.contains("STALE"),
        "{st}"
    );
    // The route query from the URL, answered with the full explanation.
    assert!(
        dom.contains("Route for llama3.1:8b"),
        "no route answer:\n{dom}"
    );
    assert!(dom.contains("→ 127.0.0."), "no placement shown:\n{dom}");
    assert!(
        dom.contains("Candidates, best first"),
        "no explanation:\n{dom}"
    );
    assert!(
        dom.contains("Not candidates"),
        "no rejections shown:\n{dom}"
    );
    // ... and listed among the recent decisions.
    let decisions = &dom[dom.find("id=\"decisions\"").unwrap()..];
    assert!(
        decisions.contains("llama3.1:8b") && decisions.contains("api"),
        "{decisions}"
    );
    // History drawn from the stream: a legend line per GPU.
    assert!(
        dom.contains("127.0.0.2:11434 GPU 0"),
        "no history line:\n{dom}"
    );
    assert!(dom.contains("point(s) from the registry"), "{dom}");
    // Live status.
    assert!(dom.contains("Live: registry OK"), "{dom}");
    // Record text is text: the markup shows escaped (in the node's card, not only in the
    // chart's legend), no element came from it, nothing ran, the ESC shows escaped.
    let evil = card(&dom, "127.0.0.4:11434");
    assert!(
        evil.contains(
            "&lt;script&gt;document.body.setAttribute('data-pwned','script')&lt;/script&gt;"
        ),
        "the GPU name is not shown as text:\n{evil}"
    );
    assert!(
        !evil.contains("<script") && !evil.contains("<img"),
        "the GPU name became markup:\n{evil}"
    );
    assert!(evil.contains("\\u001b[31m"), "{evil}");
    assert!(
        !dom.contains("data-pwned=\""),
        "a record's script ran:\n{dom}"
    );
    assert!(
        dom.contains("\\u001b[31m"),
        "the control character is not shown escaped"
    );
    assert!(
        !dom.contains('\u{1b}'),
        "a raw control character reached the page"
    );

    // A screenshot for people (docs/coordinator.md says how to make one by hand).
    let shot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &[
            "--virtual-time-budget=15000",
            "--window-size=1280,900",
            &format!("--screenshot={}", shot.display()),
        ],
        &page,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn the_page_says_when_the_registry_is_lost() {
    chromium();
    let mut redis = RedisServer::start().unwrap();
    let url = redis.url();
    let _r = Proc::reporter(&url, "amd-discrete", "127.0.0.2", &["--no-ollama"]);
    let d = Daemon::start(&format!("redis_url: {url}\nstale_after: 8\n"));
    let p = d.port;
    wait_for(Duration::from_secs(20), || {
        let v = get_json(p, "/v1/nodes", 200);
        node(&v, "127.0.0.2:11434").map(|_| ())
    })
    .expect("the reporter's node appears");
    redis.stop();
    wait_for(Duration::from_secs(20), || {
        (get_json(p, "/healthz", 200)["status"] == "degraded").then_some(())
    })
    .expect("the daemon notices");
    let dom = browse(
        &["--virtual-time-budget=10000", "--dump-dom"],
        &format!("http://127.0.0.1:{p}/"),
    );
    assert!(
        dom.contains("DEGRADED: the registry cannot be read"),
        "{dom}"
    );
    assert!(dom.contains("data-health=\"degraded\""), "{dom}");
    assert!(
        dom.contains("History from the registry is unavailable"),
        "{dom}"
    );
    // The last view is still shown.
    card(&dom, "127.0.0.2:11434");
}

/// The cargo target directory (`target/`, or `$CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

#[test]
fn the_page_is_static_and_self_contained_and_takes_the_api_key_from_its_fragment() {
    chromium();
    // A saved view (embedded mode's) behind `admin_requires_key`: no Redis, no stream.
    let o = coord(&[
        "--sysfs-root",
        &fixture("amd-discrete"),
        "--no-nvml",
        "status",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let view = dir.path().join("view.json");
    std::fs::write(&view, &o.stdout).unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let node_id = saved["nodes"][0]["id"].as_str().unwrap().to_owned();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "dash-k3y\n").unwrap();
    let port = free_port();
    let cfg = write_config(&format!(
        "listen: 127.0.0.1:{port}\nadmin_requires_key: true\ngateway_keys_file: {}\ngateway_listen: off\n",
        keys.display()
    ));
    let d = Proc::spawn(
        Path::new(BIN),
        &[
            "--snapshot",
            view.to_str().unwrap(),
            "--config",
            cfg.path().to_str().unwrap(),
            "daemon",
        ],
    );
    let up = wait_for(Duration::from_secs(15), || {
        http("GET", port, "/healthz", None)
    });
    assert_eq!(up.map(|r| r.0), Some(200), "{}", d.log());

    // The page and its files: no key needed (no cluster data), a strict CSP, no
    // reference to anything outside the daemon.
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard.js", "text/javascript"),
        ("/dashboard.css", "text/css"),
    ] {
        let (st, head, body) = http_with("GET", port, path, "", None).unwrap();
        assert_eq!(st, 200, "{path}: {body}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-type: {kind}")),
            "{path}: {head}"
        );
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self';"),
            "{path}: {head}"
        );
        let outside = body.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !outside.contains("http://")
                && !outside.contains("https://")
                && !outside.contains("//cdn"),
            "{path} refers to something outside the daemon"
        );
        for sink in [
            ".innerHTML",
            ".outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!body.contains(sink), "{path} uses {sink}");
        }
    }
    let (_, _, html) = http_with("GET", port, "/", "", None).unwrap();
    assert!(html.contains("<script src=\"dashboard.js\""), "{html}");

    // The data needs the key; a snapshot has no stream: the live view alone.
    let (st, _, body) = http_with("GET", port, "/v1/history", "", None).unwrap();
    assert_eq!(st, 401, "{body}");
    let auth = "Authorization: Bearer dash-k3y\r\n";
    let (st, _, body) = http_with("GET", port, "/v1/history", auth, None).unwrap();
    assert_eq!(st, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["stream"], "none", "{h}");
    assert!(h["points"].as_array().unwrap().is_empty(), "{h}");
    assert_eq!(h["live"][0]["node_id"], node_id.as_str(), "{h}");
    let (st, _, body) = http_with("GET", port, "/v1/decisions", auth, None).unwrap();
    assert_eq!(st, 200, "{body}");

    // In the browser: `#key=` is sent as the bearer token, so the cards render.
    let dom = browse(
        &["--virtual-time-budget=10000", "--dump-dom"],
        &format!("http://127.0.0.1:{port}/#key=dash-k3y"),
    );
    card(&dom, &node_id);
    assert!(dom.contains("this source has no stream"), "{dom}");
    assert!(!dom.contains("missing or invalid API key"), "{dom}");
}
