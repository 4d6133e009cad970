//! `probe`, `install --print`, and bad flags.

use std::os::unix::fs::PermissionsExt as _;

use crate::support::{
    fake_systemctl, fixture, path_with, run_to_end, run_to_end_with_env, unit_has, verify_unit, BIN,
};

fn probe_json(tree: &str) -> serde_json::Value {
    let root = fixture(tree);
    let out = run_to_end(&[
        "probe",
        "--json",
        "--no-nvml",
        "--sysfs-root",
        root.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn probe_json_reports_every_fixture_gpu() {
    // (vendor, name contains, total MiB, free MiB or null)
    type Want = (&'static str, &'static str, u64, Option<u64>);
    let cases: &[(&str, &[Want])] = &[
        ("amd-discrete", &[("amd", "7900 XTX", 24560, Some(23382))]),
        (
            "amd-two-cards",
            &[
                ("amd", "7900 XTX", 24560, Some(23382)),
                ("amd", "6800 XT", 16368, Some(15860)),
            ],
        ),
        (
            "intel-xe",
            &[
                ("intel", "B580", 12288, None),
                ("intel", "1550", 131072, None),
            ],
        ),
        ("empty", &[]),
    ];
    for (tree, want) in cases {
        let j = probe_json(tree);
        let gpus = j["gpus"].as_array().unwrap();
        assert_eq!(gpus.len(), want.len(), "{tree}: {j}");
        for (g, (vendor, name, total, free)) in gpus.iter().zip(want.iter()) {
            assert_eq!(g["vendor"], *vendor, "{tree}");
            assert!(g["name"].as_str().unwrap().contains(name), "{tree}: {g}");
            assert_eq!(g["memory_total_mb"], *total, "{tree}: {g}");
            assert_eq!(g["memory_free_mb"], serde_json::json!(free), "{tree}: {g}");
            for key in [
                "index",
                "pci_bus_id",
                "memory_used_mb",
                "utilization_percent",
                "temperature_c",
            ] {
                assert!(g.get(key).is_some(), "{tree}: {key} missing");
            }
        }
        assert!(j["cpu_ram_mb"].as_u64().unwrap() > 0);
        let reg = &j["registration"];
        assert_eq!(
            reg["total_parallel_workers"],
            want.len() as u64 + 1,
            "{tree}"
        );
        assert_eq!(reg["has_gpu"], !want.is_empty());
        let cmd = j["rpc_server_command"].as_str().unwrap();
        assert!(!cmd.contains("--mem") && !cmd.contains("cuda:"), "{cmd}");
    }
}

#[test]
fn this_machine_is_a_cpu_only_node_with_its_ram() {
    // The GPU-less `empty` sysfs tree and no NVML: a CPU-only node on every machine
    // (with or without GPUs), with this machine's RAM.
    let empty = fixture("empty");
    let out = run_to_end(&[
        "probe",
        "--json",
        "--no-nvml",
        "--sysfs-root",
        empty.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let ram = j["cpu_ram_mb"].as_u64().unwrap();
    // Capped by a cgroup limit when one applies; never above physical RAM.
    assert!(
        ram <= total_kib / 1024 + 1 && ram > 0,
        "{ram} vs {total_kib} KiB"
    );
    assert_eq!(j["gpus"].as_array().unwrap().len(), 0, "{j}");
    assert_eq!(j["registration"]["device_config"], "cpu");
}

#[test]
fn human_probe_and_bad_flags() {
    let root = fixture("amd-discrete");
    let out = run_to_end(&["probe", "--no-nvml", "--sysfs-root", root.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("GPU 0: AMD Radeon RX 7900 XTX | VRAM: 1177/24560MB | Util: 4% | Temp: 41°C"),
        "{text}"
    );
    assert!(
        text.contains("ggml-rpc-server --host 0.0.0.0 --port 50052 --device CPU,ROCm0"),
        "{text}"
    );
    assert!(text.contains("-d ROCm0 -m 19648"), "legacy form: {text}");

    for args in [
        &["probe", "--sysfs-root", "/definitely/not/here"][..],
        &["probe", "--reserve", "1.5"],
        &["probe", "--frobnicate"],
        &["probe", "--ggml-backend", "metal"],
    ] {
        let out = run_to_end(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.trim().is_empty() && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn install_print_shows_a_hardened_unit_without_the_password() {
    let out = run_to_end(&[
        "install",
        "--print",
        "--redis-url",
        "redis://reporter:hunter2@10.0.0.5:6379/0",
        "--interval",
        "5",
        "--metrics-addr",
        "127.0.0.1:9187",
        "--rpc-server",
        "auto",
    ]);
    assert!(out.status.success());
    let unit = String::from_utf8_lossy(&out.stdout);
    assert!(!unit.contains("hunter2"), "{unit}");
    assert!(
        unit.contains(" run --rpc-server auto --interval 5 --metrics-addr 127.0.0.1:9187\n"),
        "{unit}"
    );
    for line in [
        "Restart=always",
        "KillMode=mixed",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "EnvironmentFile=/etc/systemd/system/vramroute-reporter.env",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}: {unit}");
    }
}

#[test]
fn install_writes_and_uninstall_removes() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("vr.service");
    let unit_s = unit.to_str().unwrap();
    let out = run_to_end(&[
        "install",
        "--unit-path",
        unit_s,
        "--redis-url",
        "redis://:pw@127.0.0.1:1/0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("systemctl daemon-reload && systemctl enable --now vr.service"));
    let env = dir.path().join("vr.env");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&env).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!std::fs::read_to_string(&unit).unwrap().contains(":pw@"));
    let out = run_to_end(&["uninstall", "--unit-path", unit_s]);
    assert!(out.status.success());
    assert!(!unit.exists() && !env.exists());
}

/// `probe` with only `names` (empty scripts) and the system directories on `PATH`.
fn probe_with_installed(names: &[&str], json: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        let p = dir.path().join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", dir.path().display());
    let root = fixture("amd-discrete");
    let mut args = vec!["probe", "--no-nvml", "--sysfs-root", root.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    let out = run_to_end_with_env(&args, &[("PATH", &path)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .replace(&dir.path().display().to_string(), "DIR")
}

#[test]
fn probe_names_the_installed_rpc_server() {
    let text = probe_with_installed(&["rpc-server"], false);
    assert!(
        text.contains(
            "Installed RPC server: DIR/rpc-server\n  rpc-server --host 0.0.0.0 --port 50052 --device CPU,ROCm0\n"
        ),
        "{text}"
    );
    assert!(text.contains("older name"), "{text}");

    // Both installed: today's name wins.
    let j: serde_json::Value = serde_json::from_str(&probe_with_installed(
        &["rpc-server", "ggml-rpc-server"],
        true,
    ))
    .unwrap();
    assert_eq!(j["rpc_server_binary"], "DIR/ggml-rpc-server");
    assert_eq!(
        j["rpc_server_command"],
        "ggml-rpc-server --host 0.0.0.0 --port 50052 --device CPU,ROCm0"
    );

    // None: the default name, and a note that says what to install.
    let j: serde_json::Value = serde_json::from_str(&probe_with_installed(&[], true)).unwrap();
    assert_eq!(j["rpc_server_binary"], serde_json::Value::Null);
    assert!(j["rpc_server_command"]
        .as_str()
        .unwrap()
        .starts_with("ggml-rpc-server "));
    let note = j["rpc_server_note"].as_str().unwrap();
    assert!(
        note.contains("neither ggml-rpc-server nor rpc-server is on PATH"),
        "{note}"
    );
    let text = probe_with_installed(&[], false);
    assert!(
        text.contains("Installed RPC server: none on PATH"),
        "{text}"
    );
}

#[test]
fn install_system_unit_and_enable_it_through_systemctl() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, calls) = fake_systemctl(dir.path());
    let unit = dir.path().join("vramroute-reporter.service");
    let out = run_to_end_with_env(
        &[
            "install",
            "--unit-path",
            unit.to_str().unwrap(),
            "--binary",
            BIN,
            "--redis-url",
            "redis://:pw@127.0.0.1:1/0",
            "--enable",
        ],
        &[("PATH", &path_with(&bin))],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "daemon-reload\nenable vramroute-reporter.service\n"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("running: systemctl enable vramroute-reporter.service"),
        "{stdout}"
    );
    assert!(
        stdout.contains("systemctl start vramroute-reporter.service"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&unit).unwrap();
    unit_has(
        &text,
        &[
            &format!("ExecStart={BIN} run"),
            "LimitNOFILE=65536",
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "KillMode=mixed",
            "WantedBy=multi-user.target",
        ],
    );
    verify_unit(&unit, false);
}

#[test]
fn install_user_unit_under_the_config_home_and_start_it_now() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, calls) = fake_systemctl(dir.path());
    let config_home = dir.path().join("config");
    let out = run_to_end_with_env(
        &[
            "install",
            "--user",
            "--binary",
            BIN,
            "--redis-url",
            "redis://:pw@127.0.0.1:1/0",
            "--no-ollama",
            "--enable",
            "--now",
        ],
        &[
            ("PATH", &path_with(&bin)),
            ("XDG_CONFIG_HOME", config_home.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "--user daemon-reload\n--user enable --now vramroute-reporter.service\n"
    );
    let unit = config_home.join("systemd/user/vramroute-reporter.service");
    let env = config_home.join("systemd/user/vramroute-reporter.env");
    let text = std::fs::read_to_string(&unit).unwrap();
    unit_has(
        &text,
        &[
            &format!("ExecStart={BIN} run --no-ollama"),
            &format!("EnvironmentFile={}", env.display()),
            "LimitNOFILE=65536",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            "WantedBy=default.target",
        ],
    );
    for absent in [
        "DynamicUser",
        "User=",
        "SupplementaryGroups",
        "network-online",
    ] {
        assert!(!text.contains(absent), "{absent} in a user unit: {text}");
    }
    assert!(!text.contains(":pw@"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&env).unwrap().permissions().mode() & 0o777,
        0o600
    );
    verify_unit(&unit, true);

    // Without --enable nothing runs; uninstall --user finds the same paths.
    let out = run_to_end_with_env(
        &["uninstall", "--user"],
        &[
            ("PATH", &path_with(&bin)),
            ("XDG_CONFIG_HOME", config_home.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(!unit.exists() && !env.exists());
    assert!(String::from_utf8_lossy(&out.stdout).contains("systemctl --user disable --now"));
    assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 2);
}

#[test]
fn install_flag_combinations_are_usage_errors() {
    for args in [
        &["install", "--now", "--print"][..],
        &["install", "--user", "--run-as", "vramroute", "--print"],
        &["install", "--enable", "--print"],
    ] {
        let out = run_to_end(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}
