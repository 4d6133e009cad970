//! `status`: every node and GPU, rpc backends, cluster totals; stale nodes flagged.

use std::fmt::Write as _;

use crate::cli::OutputArgs;
use crate::source::{self, Settings};
use crate::term;
use vramroute_cluster::StatusView;

pub(crate) fn run(settings: &Settings, args: &OutputArgs) -> anyhow::Result<()> {
    source::block_on(async {
        let (source, mut view) = source::load(settings).await?;
        source::probe_backends(&source, &mut view).await;
        print(&view, args.json)
    })
}

pub(crate) fn print(view: &StatusView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", term::json(serde_json::to_string_pretty(view)?));
    } else {
        print!("{}", render_safe(view)?);
    }
    Ok(())
}

/// [`render`] for a terminal: built from a copy of the view whose strings are escaped
/// (a GPU name cannot clear the screen or forge a line), then guarded as a whole.
pub(crate) fn render_safe(view: &StatusView) -> anyhow::Result<String> {
    Ok(term::text(&render(&term::escape_strings(view)?)).into_owned())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "?".to_owned(), |v| v.to_string())
}

fn age(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

/// The human report.
pub(crate) fn render(view: &StatusView) -> String {
    let mut out = String::new();
    let t = &view.totals;
    let _ = writeln!(
        out,
        "cluster ({}): {} node(s){}, {} GPU(s), VRAM {} MB free / {} MB usable / {} MB total, RAM {} MB, {} rpc backend(s)",
        view.source,
        t.nodes,
        if t.stale_nodes > 0 {
            format!(" ({} stale)", t.stale_nodes)
        } else {
            String::new()
        },
        t.gpus,
        t.vram_free_mb,
        t.vram_usable_mb,
        t.vram_total_mb,
        t.ram_total_mb,
        t.rpc_backends
    );
    if view.nodes.is_empty() {
        let _ = writeln!(
            out,
            "\nno nodes: are reporters publishing to this Redis? (vramroute-reporter run --redis-url ...)"
        );
    }
    for n in &view.nodes {
        let mut flags = Vec::new();
        if n.stale {
            flags.push(format!(
                "STALE (last report {} ago > {:.0}s)",
                age(n.age_s),
                view.stale_after_s
            ));
        }
        if !n.in_registry {
            flags.push("not in registry".to_owned());
        }
        let report = if n.in_registry {
            format!("report {} old", age(n.age_s))
        } else {
            "no report".to_owned()
        };
        let _ = writeln!(
            out,
            "\n{}{} [{}] {} | {}{}",
            n.id,
            n.hostname
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default(),
            n.vendor,
            n.writer,
            report,
            if flags.is_empty() {
                String::new()
            } else {
                format!(" | {}", flags.join(", "))
            }
        );
        let ram = match (n.cpu_ram_free_mb, n.cpu_ram_total_mb) {
            (None, None) => "RAM ?".to_owned(),
            (f, t) => format!("RAM {} / {} MB free", opt(f), opt(t)),
        };
        let _ = writeln!(
            out,
            "  {ram} | CPUs {} | ollama {} | rpc {}{}",
            opt(n.cpu_count),
            n.ollama_url.as_deref().unwrap_or("-"),
            n.rpc
                .as_ref()
                .map_or_else(|| "-".to_owned(), |r| format!("{}:{}", r.host, r.port)),
            n.gpu_offload
                .as_deref()
                .map(|o| format!(" | GPU offload {o}"))
                .unwrap_or_default()
        );
        if n.gpus.is_empty() && n.in_registry {
            let _ = writeln!(out, "  no GPU (CPU-only)");
        }
        for g in &n.gpus {
            let _ = writeln!(
                out,
                "  GPU {}: {} | {} MB free / {} MB usable / {} MB total | util {}% | temp {}°C{}",
                g.index,
                g.name,
                opt(g.memory_free_mb),
                opt(g.memory_usable_mb),
                opt(g.memory_total_mb),
                opt(g.utilization_percent),
                opt(g.temperature_c),
                g.ggml_device
                    .as_deref()
                    .map(|d| format!(" | {d}"))
                    .unwrap_or_default()
            );
        }
        if let Some(note) = &n.note {
            let _ = writeln!(out, "  note: {note}");
        }
        if !n.loaded_models.is_empty() {
            let models: Vec<String> = n
                .loaded_models
                .iter()
                .map(|m| {
                    format!(
                        "{} ({} MB, {} MB in VRAM)",
                        m.name,
                        opt(m.size_mb),
                        opt(m.size_vram_mb)
                    )
                })
                .collect();
            let _ = writeln!(out, "  loaded: {}", models.join(", "));
        }
    }
    if !view.rpc_backends.is_empty() {
        let _ = writeln!(out, "\nrpc backends:");
    }
    for r in &view.rpc_backends {
        let devices = if r.registered {
            format!(
                "{} | RAM {} MB | GPUs {}",
                r.device_config.as_deref().unwrap_or("?"),
                opt(r.cpu_ram_mb),
                if r.gpu_vram_mb.is_empty() {
                    "none".to_owned()
                } else {
                    r.gpu_names
                        .iter()
                        .zip(&r.gpu_vram_mb)
                        .map(|(n, v)| format!("{n} {v} MB"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        } else {
            format!(
                "no registration (listed in {} only)",
                vramroute_registry::keys::ROUTER_METADATA
            )
        };
        let _ = writeln!(
            out,
            "  {}:{} | {devices}{}",
            r.host,
            r.port,
            if r.in_metadata {
                " | in router metadata"
            } else {
                ""
            }
        );
        if let Some(h) = &r.health {
            let version = h
                .version_string()
                .map(|v| format!(" protocol {v}"))
                .unwrap_or_default();
            let devices: Vec<String> = h
                .devices
                .iter()
                .map(|d| {
                    format!(
                        "device {}: {}/{} MB free",
                        d.index,
                        d.free_mib(),
                        d.total_mib()
                    )
                })
                .collect();
            let devices = if devices.is_empty() {
                String::new()
            } else {
                format!("; {}", devices.join(", "))
            };
            let _ = writeln!(
                out,
                "    rpc-server: {}{version}{devices} ({})",
                h.state.as_str(),
                h.detail
            );
        }
    }
    for s in &view.skipped {
        let _ = writeln!(out, "skipped record {}: {}", s.key, s.reason);
    }
    for w in &view.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
