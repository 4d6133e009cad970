//! `vramroute-reporter probe`: print what this node has and would publish.

use std::path::Path;

use serde_json::{json, Value};
use vramroute_alloc::{LEGACY_RPC_SERVER_BINARY, RPC_SERVER_BINARY};
use vramroute_node::{NodeIdentity, NodeReport, OllamaState};
use vramroute_registry::DEFAULT_REDIS_URL;

use crate::cli::ProbeArgs;
use crate::settings::{host_literal, Hardware};
use crate::term;
use crate::UsageError;

pub(crate) fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let hardware = Hardware::from_args(&args.hardware)?;
    let probed = hardware
        .prober()
        .probe()
        .map_err(|e| UsageError(e.to_string()))?;
    // The address this node would advertise: the route towards the configured Redis.
    let redis_url = std::env::var(vramroute_registry::REDIS_URL_ENV)
        .unwrap_or_else(|_| DEFAULT_REDIS_URL.into());
    let interfaces = crate::advertise::interfaces(None)?;
    let ip = crate::advertise::advertise_ip(&redis_url, &interfaces).ip();
    let mut identity = NodeIdentity::new(
        format!("{}:11434", host_literal(ip)),
        ip.to_string(),
        args.rpc_port,
    );
    identity.hostname = crate::run::hostname();
    let report = NodeReport::new(
        probed,
        &hardware.reserve,
        hardware.backend,
        OllamaState::not_asked(),
        crate::run::unix_now(),
    )?;
    let installed = crate::rpc_server::installed_rpc_server(std::env::var_os("PATH").as_deref());
    let rpc = Installed::new(&report, &identity, &args.rpc_host, installed.as_deref());
    if args.json {
        let mut json = report.to_json(&identity, &args.rpc_host);
        if let Value::Object(map) = &mut json {
            // The command names the binary that is installed (the default when none is).
            map.insert("rpc_server_command".into(), json!(rpc.command));
            map.insert("rpc_server_binary".into(), json!(rpc.path));
            map.insert("rpc_server_note".into(), json!(rpc.note));
        }
        println!("{}", term::json(serde_json::to_string_pretty(&json)?));
    } else {
        // GPU names come from sysfs and NVML: shown with control characters escaped.
        print!(
            "{}",
            term::text(&report.render_text(&identity, &args.rpc_host))
        );
        match &rpc.path {
            Some(path) => {
                println!("\nInstalled RPC server: {path}");
                println!("  {}", rpc.command);
            }
            None => println!("\nInstalled RPC server: none on PATH"),
        }
        println!("  ({})", rpc.note);
    }
    Ok(())
}

/// The rpc-server found on `PATH` and the command naming it.
struct Installed {
    path: Option<String>,
    command: String,
    note: String,
}

impl Installed {
    fn new(report: &NodeReport, id: &NodeIdentity, host: &str, found: Option<&Path>) -> Self {
        let name = found
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or(RPC_SERVER_BINARY);
        let command = report
            .offer
            .rpc_server_command(host, id.rpc_port, report.backend, name)
            .to_string();
        let note = match found {
            None => format!(
                "neither {RPC_SERVER_BINARY} nor {LEGACY_RPC_SERVER_BINARY} is on PATH: \
                 install llama.cpp's {RPC_SERVER_BINARY} (older builds call it \
                 {LEGACY_RPC_SERVER_BINARY}), or give its path with run --rpc-server PATH"
            ),
            Some(_) if name == LEGACY_RPC_SERVER_BINARY => format!(
                "{LEGACY_RPC_SERVER_BINARY} is the older name: a build from before 2025-10 \
                 takes one device and -m per server; if it fails on the --device list, \
                 use the per-device commands above"
            ),
            Some(_) => format!(
                "run --rpc-server auto starts and supervises this command; builds from \
                 before 2025-10 (binary {LEGACY_RPC_SERVER_BINARY}) need the per-device \
                 commands above"
            ),
        };
        Installed {
            path: found.map(|p| p.display().to_string()),
            command,
            note,
        }
    }
}
