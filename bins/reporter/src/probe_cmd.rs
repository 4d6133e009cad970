//! `vramroute-reporter probe`: print what this node has and would publish.

use vramroute_node::{NodeIdentity, NodeReport, OllamaState};
use vramroute_registry::DEFAULT_REDIS_URL;

use crate::cli::ProbeArgs;
use crate::settings::{host_literal, route_source_ip, Hardware};
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
    let ip = route_source_ip(&redis_url);
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
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json(&identity, &args.rpc_host))?
        );
    } else {
        print!("{}", report.render_text(&identity, &args.rpc_host));
    }
    Ok(())
}
