//! The CLI without a cluster: embedded mode, errors and exit codes, snapshots.

use super::support::*;

#[test]
fn embedded_status_works_with_no_redis_and_says_how_to_point_at_a_cluster() {
    // The README's main command, on whatever this machine has.
    let o = coord(&["status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("embedded single-node mode").count(),
        1,
        "exactly one notice line: {err}"
    );
    assert!(err.contains("--redis-url"), "{err}");
    assert!(stdout(&o).contains("1 node(s)"), "{}", stdout(&o));

    // On a fixture tree: the AMD card is shown with its usable VRAM.
    let tree = fixture("amd-discrete");
    let v = coord_json(&["--sysfs-root", &tree, "--no-nvml", "status", "--json"]);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1);
    let gpu = &v["nodes"][0]["gpus"][0];
    assert_eq!(gpu["name"], "AMD Radeon RX 7900 XTX");
    assert_eq!(gpu["memory_total_mb"], 24560);
    assert_eq!(gpu["memory_usable_mb"], 19648);
    assert_eq!(v["rpc_backends"][0]["ggml_devices"][0], "ROCm0");
    assert_eq!(v["nodes"][0]["stale"], false);

    // And routing on it works the same way as on a cluster.
    let r = coord_json(&[
        "--sysfs-root",
        &tree,
        "--no-nvml",
        "route",
        "llama3.1:8b",
        "--json",
    ]);
    assert_eq!(r["placement"]["target"], "gpu");
    assert_eq!(r["size_mb"], 4700);
    assert_eq!(r["size_source"], "SOLLOL size table");
}

#[test]
fn unreachable_configured_redis_is_exit_1_with_a_clear_message() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let o = coord(&["--redis-url", &url, "status"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("cannot reach Redis at"), "{err}");
    assert!(!err.contains("embedded"), "{err}");

    // The same from a config file.
    let cfg = write_config(&format!("redis_url: {url}\n"));
    let o = coord(&["--config", cfg.path().to_str().unwrap(), "status"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn malformed_config_and_usage_errors_are_exit_2() {
    for text in [
        "nodez: []\n",
        "vram_safety_margin: 3\n",
        "nodes: [ftp://x]\n",
        "{{{",
    ] {
        let cfg = write_config(text);
        let o = coord(&["--config", cfg.path().to_str().unwrap(), "status"]);
        assert_eq!(o.status.code(), Some(2), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains("bad config"), "{}", stderr(&o));
    }
    let o = coord(&["route"]);
    assert_eq!(o.status.code(), Some(2));
    let o = coord(&["--snapshot", "/nonexistent/view.json", "status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--snapshot"), "{}", stderr(&o));
}

#[test]
fn snapshot_round_trips_and_answers_offline() {
    let tree = fixture("amd-discrete");
    let o = coord(&["--sysfs-root", &tree, "--no-nvml", "status", "--json"]);
    assert!(o.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("view.json");
    std::fs::write(&file, &o.stdout).unwrap();
    let file = file.to_str().unwrap();

    let first: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut again = coord_json(&["--snapshot", file, "status", "--json"]);
    assert!(again["source"].as_str().unwrap().starts_with("snapshot "));
    again["source"] = first["source"].clone();
    assert_eq!(again, first, "status --json of a snapshot is the snapshot");

    // Answers come from the file, not this machine.
    let r = coord_json(&["--snapshot", file, "route", "codellama:13b", "--json"]);
    assert_eq!(r["placement"]["node"], "127.0.0.1:11434");
    assert_eq!(r["placement"]["gpu"], 0);
    let c = coord_json(&["--snapshot", file, "check", "llama3.1:70b", "--json"]);
    assert!(
        c["best"].is_null(),
        "40 GB fits neither the 24 GB card nor the RAM: {c}"
    );
    assert!(c["fits_on"].as_array().unwrap().is_empty());
    assert_eq!(
        c["nodes"][0]["gpus"][0]["reason"],
        "Model too large (40000MB > 19648MB usable VRAM)"
    );

    // Unknown model: exit 2 naming what to provide.
    let o = coord(&["--snapshot", file, "route", "mystery:7b"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    for hint in ["--size-mb", "--gguf", "nodes:"] {
        assert!(err.contains(hint), "{err}");
    }
    let r = coord_json(&[
        "--snapshot",
        file,
        "route",
        "mystery:7b",
        "--size-mb",
        "3000",
        "--json",
    ]);
    assert_eq!(r["size_source"], "explicit size");

    // A model too big for everything is an answer with a reason, and exit 1.
    let o = coord(&[
        "--snapshot",
        file,
        "route",
        "huge",
        "--size-mb",
        "900000",
        "--no-cpu",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("Model too large (900000MB > 19648MB usable VRAM)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn plan_says_what_to_provide_without_layer_info_and_uses_a_gguf() {
    let tree = fixture("amd-discrete");
    let o = coord(&["--sysfs-root", &tree, "--no-nvml", "plan", "mystery:7b"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--gguf FILE"), "{}", stderr(&o));

    let gguf = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../crates/alloc/tests/data/tiny-llama.gguf"
    );
    let v = coord_json(&[
        "--sysfs-root",
        &tree,
        "--no-nvml",
        "plan",
        "tiny",
        "--gguf",
        gguf,
        "--ctx",
        "512",
        "--json",
    ]);
    assert!(
        v["llama_server_command"]
            .as_str()
            .unwrap()
            .starts_with("llama-server -m "),
        "{v}"
    );
    assert_eq!(v["estimate"]["source"], "gguf");
    assert_eq!(v["rpc_server_commands"].as_array().unwrap().len(), 1);
}

#[test]
fn passwords_never_reach_help_or_errors() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .env("SOLLOL_REDIS_URL", "redis://:s3cret-pass@127.0.0.1:1")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("SOLLOL_REDIS_URL") && !help.contains("s3cret"),
        "{help}"
    );
    for url in [
        "redis://:s3cret-pass@127.0.0.1:notaport",
        "redis://s3cret-pass@127.0.0.1:1",
    ] {
        let o = coord(&["--redis-url", url, "status"]);
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains("***") && !err.contains("s3cret"), "{err}");
    }
}

#[test]
fn a_redis_password_can_stay_out_of_the_url() {
    const PW: &str = "pw s3cret:/@x";
    let redis = RedisServer::builder().password(PW).start().unwrap();
    let port = redis.port().unwrap().to_string();
    let url = format!("redis://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis.pass");
    std::fs::write(&file, format!("{PW}\n")).unwrap();
    let file = file.to_str().unwrap();

    // Without it: refused by the server, and the error says so.
    let o = coord(&["--redis-url", &url, "status"]);
    assert!(!o.status.success());
    // From a file (one line, the newline dropped).
    let o = coord(&["--redis-url", &url, "--redis-password-file", file, "status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("s3cret") && !stderr(&o).contains("s3cret"));
    // From REDIS_PASSWORD.
    let o = std::process::Command::new(BIN)
        .args(["--redis-url", &url, "status"])
        .env("REDIS_PASSWORD", PW)
        .env_remove("SOLLOL_REDIS_URL")
        .env_remove("VRAMROUTE_CONFIG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Given twice (in the URL and the file): a usage error that echoes neither.
    let twice = format!("redis://:other-pass@127.0.0.1:{port}");
    let o = coord(&[
        "--redis-url",
        &twice,
        "--redis-password-file",
        file,
        "status",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("already carries a password"), "{err}");
    assert!(
        !err.contains("other-pass") && !err.contains("s3cret"),
        "{err}"
    );
    // A FIFO or a missing file is refused by name.
    let o = coord(&[
        "--redis-url",
        &url,
        "--redis-password-file",
        "/nonexistent/p",
        "status",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--redis-password-file"),
        "{}",
        stderr(&o)
    );
    // --help names the ways and shows no value.
    let help = stdout(&coord(&["--help"]));
    assert!(
        help.contains("--redis-password-file") && help.contains("REDIS_PASSWORD"),
        "{help}"
    );
}

#[test]
fn configured_model_sizes_beat_the_table_and_show_as_their_source() {
    let tree = fixture("amd-discrete");
    let cfg = write_config("model_sizes:\n  llama3.1:8b: 5200\n  my-finetune:7b: 6100\n");
    let base = [
        "--config",
        cfg.path().to_str().unwrap(),
        "--sysfs-root",
        &tree,
        "--no-nvml",
    ];
    let with = |rest: &[&str]| -> Vec<String> {
        base.iter().chain(rest).map(|s| (*s).to_owned()).collect()
    };
    let run = |rest: &[&str]| {
        let args = with(rest);
        coord_json(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Over SOLLOL's 4700, and a model no other source knows.
    let r = run(&["route", "llama3.1:8b", "--json"]);
    assert_eq!(r["size_mb"], 5200, "{r}");
    assert_eq!(r["size_source"], "config model_sizes");
    let r = run(&["route", "My-Finetune:7B", "--json"]);
    assert_eq!(r["size_mb"], 6100, "{r}");
    assert_eq!(r["size_source"], "config model_sizes");
    // An explicit size still wins.
    let r = run(&["route", "llama3.1:8b", "--size-mb", "3000", "--json"]);
    assert_eq!(r["size_mb"], 3000, "{r}");
    assert_eq!(r["size_source"], "explicit size");

    // `models` lists them first in their rows, labelled by source.
    let m = run(&["models", "--json"]);
    let row = |name: &str| {
        m["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {m}"))
            .clone()
    };
    let llama = row("llama3.1:8b");
    assert_eq!(llama["sizes"][0]["source"], "config model_sizes", "{llama}");
    assert_eq!(llama["sizes"][0]["size_mb"], 5200);
    assert_eq!(llama["sizes"][1]["source"], "SOLLOL size table", "{llama}");
    assert_eq!(row("my-finetune:7b")["sizes"][0]["size_mb"], 6100);
    let args = with(&["models"]);
    let text = stdout(&coord(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(
        text.lines().any(|l| l.contains("my-finetune:7b")
            && l.contains("6100")
            && l.contains("config model_sizes")),
        "{text}"
    );

    // Bad sizes are config errors.
    for text in [
        "model_sizes: {x: 0}\n",
        "model_sizes: {x: -5}\n",
        "model_sizes: {x: big}\n",
    ] {
        let cfg = write_config(text);
        let o = coord(&["--config", cfg.path().to_str().unwrap(), "status"]);
        assert_eq!(o.status.code(), Some(2), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains("model_sizes"), "{text}: {}", stderr(&o));
    }
}

/// Runs the coordinator with extra environment variables (bounded like [`coord`]).
fn coord_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .env_remove("SOLLOL_REDIS_URL")
        .env_remove("VRAMROUTE_CONFIG")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "{args:?} hangs");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn install_writes_a_hardened_daemon_unit_and_enables_it() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, calls) = fake_systemctl(dir.path());
    let cfg = dir.path().join("coordinator.yaml");
    std::fs::write(&cfg, "auto_optimize: true\ncheck_interval: 30\n").unwrap();
    let cfg_abs = std::fs::canonicalize(&cfg).unwrap();
    let unit = dir.path().join("vramroute-coordinator.service");
    let o = coord_env(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--redis-url",
            "redis://:hunter2@10.0.0.5:6379/0",
            "install",
            "--unit-path",
            unit.to_str().unwrap(),
            "--binary",
            BIN,
            "--listen",
            "127.0.0.1:8787",
            "--gateway-listen",
            "off",
            "--enable",
            "--now",
        ],
        &[("PATH", &path_with(&bin))],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "daemon-reload\nenable --now vramroute-coordinator.service\n"
    );
    let text = std::fs::read_to_string(&unit).unwrap();
    let env = dir.path().join("vramroute-coordinator.env");
    unit_has(
        &text,
        &[
            &format!(
                "ExecStart={BIN} --config {} daemon --listen 127.0.0.1:8787 --gateway-listen off",
                cfg_abs.display()
            ),
            &format!("EnvironmentFile={}", env.display()),
            "LimitNOFILE=65536",
            "DynamicUser=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "Restart=always",
            "WantedBy=multi-user.target",
        ],
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("SupplementaryGroups"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "SOLLOL_REDIS_URL=redis://:hunter2@10.0.0.5:6379/0\n"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&env).unwrap().permissions().mode() & 0o777,
        0o600
    );
    verify_unit(&unit, false);

    let o = coord(&["uninstall", "--unit-path", unit.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!unit.exists() && !env.exists());
}

#[test]
fn install_user_unit_for_systemctl_user() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, calls) = fake_systemctl(dir.path());
    let config_home = dir.path().join("config");
    let env = [
        ("PATH", path_with(&bin)),
        ("XDG_CONFIG_HOME", config_home.display().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = coord_env(&["install", "--user", "--binary", BIN], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    // Not asked to enable: nothing ran, the commands are printed.
    assert!(!calls.exists());
    assert!(
        stdout(&o).contains("systemctl --user daemon-reload && systemctl --user enable --now vramroute-coordinator.service"),
        "{}",
        stdout(&o)
    );
    let unit = config_home.join("systemd/user/vramroute-coordinator.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    unit_has(
        &text,
        &[
            &format!("ExecStart={BIN} daemon"),
            "LimitNOFILE=65536",
            "ProtectHome=read-only",
            "WantedBy=default.target",
        ],
    );
    assert!(
        !text.contains("DynamicUser") && !text.contains("EnvironmentFile"),
        "{text}"
    );
    verify_unit(&unit, true);
    let o = coord_env(&["uninstall", "--user"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!unit.exists());

    // --now without --enable, and a missing config, are usage errors.
    let o = coord_env(&["install", "--user", "--now", "--print"], &env);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = coord_env(
        &["--config", "/nonexistent.yaml", "install", "--print"],
        &env,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
