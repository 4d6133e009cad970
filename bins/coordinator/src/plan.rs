//! `plan`: how to split a model over the cluster's llama.cpp rpc-servers — workers,
//! layer ranges, the `rpc-server` command per node and the `llama-server` line. The plan
//! comes from the cluster layer ([`vramroute_cluster::plan`]); this module renders it.

use vramroute_cluster::{model_estimate, plan, EstimateOptions, PlanAnswer};

use crate::cli::PlanArgs;
use crate::source::{self, Settings};
use crate::term;

pub(crate) fn render(a: &PlanAnswer) -> String {
    let mut out = format!("model: {}\n", a.estimate);
    out.push_str("devices (llama.cpp order):\n");
    for d in &a.plan.devices {
        let range = if d.layers == 0 {
            "no layers".to_owned()
        } else {
            format!("layers {}..{}", d.first_layer, d.first_layer + d.layers - 1)
        };
        out.push_str(&format!(
            "  {} {} ({}): {range}{} | {} of {} MiB\n",
            d.node_id,
            d.device_name,
            d.endpoint.as_deref().unwrap_or("local"),
            if d.holds_output { " + output" } else { "" },
            d.planned_mib,
            d.capacity_mib
        ));
    }
    if a.plan.host_cpu_layers > 0 {
        out.push_str(&format!(
            "  llama-server host CPU: {} layer(s), {} MiB\n",
            a.plan.host_cpu_layers, a.plan.host_cpu_mib
        ));
    }
    for e in &a.excluded {
        out.push_str(&format!("  left out {}: {}\n", e.backend, e.reason));
    }
    out.push_str(&a.plan.to_string());
    out.push('\n');
    for w in &a.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

pub(crate) fn run(settings: &Settings, args: &PlanArgs) -> anyhow::Result<()> {
    source::block_on(async {
        let (source, mut view) = source::load(settings).await?;
        // Embedded mode plans for this machine alone: what to start here, so its
        // rpc-server is not expected to run yet. A cluster's backends are probed.
        if !matches!(source.backend, source::Backend::Embedded(_)) {
            source::probe_backends(&source, &mut view).await;
        }
        let json = args.model.output.json;
        let view = if json {
            view
        } else {
            term::escape_strings(&view)?
        };
        let model = &args.model.model;
        let opts = EstimateOptions::new(args.ctx, settings.config.ollama_timeout());
        let est = model_estimate(&view, model, args.gguf.as_deref(), &opts).await?;
        let path = args.gguf.as_ref().map(|p| p.display().to_string());
        let answer = plan::for_view(est, &view, path)?;
        if json {
            println!("{}", term::json(serde_json::to_string_pretty(&answer)?));
        } else {
            print!("{}", term::text(&render(&answer)));
        }
        Ok(())
    })
}
