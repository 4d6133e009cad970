//! `route` (where a model should run, with the router's explanation) and `check` (the
//! router's fit table for a model). The answers come from the cluster layer; this module
//! renders them.

use std::fmt::Write as _;

use vramroute_cluster::{check, route, CheckAnswer, RouteQuery};
use vramroute_router::{Snapshot, Target};

use crate::cli::{ModelArgs, RouteArgs};
use crate::source::{self, Settings};
use crate::term;

/// Builds a snapshot for one-shot commands.
pub(crate) fn snapshot_of(
    view: &vramroute_cluster::StatusView,
    settings: &Settings,
) -> anyhow::Result<Snapshot> {
    let cfg = settings.snapshot_config();
    Ok(Snapshot::build(view.node_specs(&cfg), &cfg)?)
}

pub(crate) fn run_route(settings: &Settings, args: &RouteArgs) -> anyhow::Result<()> {
    let policy = settings.policy(args.policy.as_deref())?;
    source::block_on(async {
        let (_, view) = source::load(settings).await?;
        let json = args.model.output.json;
        // For a terminal the answer is made from a view whose strings are escaped, so
        // the explanation cannot carry a control character from a record.
        let view = if json {
            view
        } else {
            term::escape_strings(&view)?
        };
        let snap = snapshot_of(&view, settings)?;
        let mut q = RouteQuery::new(&args.model.model, args.model.size_mb);
        q.allow_cpu = !args.no_cpu;
        let answer = route(&view, &snap, &policy, &q)?;
        if json {
            println!("{}", term::json(serde_json::to_string_pretty(&answer)?));
        } else {
            let mut out = format!(
                "size: {} MB ({}); source: {}\n",
                answer.size_mb, answer.size_source, view.source
            );
            if let Some(e) = &answer.explanation {
                let _ = write!(out, "{e}");
            }
            if let Some(url) = answer
                .placement
                .as_ref()
                .and_then(|p| p.ollama_url.as_ref())
            {
                let _ = writeln!(out, "ollama: {url}");
            }
            print!("{}", term::text(&out));
        }
        if answer.placement.is_none() {
            anyhow::bail!("no node can take {}: {}", answer.model, answer.reason);
        }
        Ok(())
    })
}

pub(crate) fn render_check(c: &CheckAnswer) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "check {} ({} MB, size from {}); usable = total × {}",
        c.model, c.size_mb, c.size_source, c.vram_safety_margin
    );
    for n in &c.nodes {
        let _ = writeln!(
            out,
            "{}{}{}",
            n.node,
            n.status
                .as_deref()
                .map(|s| format!(" | {s}"))
                .unwrap_or_default(),
            if n.loaded { " | already loaded" } else { "" }
        );
        if n.gpus.is_empty() {
            let _ = writeln!(out, "  no GPU");
        }
        for g in &n.gpus {
            let _ = writeln!(
                out,
                "  GPU {} {}: {} {}",
                g.index,
                g.name,
                if g.fits { "fits:" } else { "no:" },
                g.reason
            );
        }
        let verdict = match (n.fits, n.fits_gpu) {
            (Some(Target::Gpu), Some(g)) => format!("fits: GPU {g}"),
            (Some(Target::Gpu), None) => "fits: across GPUs".to_owned(),
            (Some(Target::Cpu), _) => "fits: CPU".to_owned(),
            (None, _) => "no".to_owned(),
        };
        let _ = writeln!(out, "  node: {verdict}: {}", n.reason);
    }
    if c.fits_on.is_empty() {
        let _ = writeln!(out, "fits on: nothing right now");
    } else {
        let _ = writeln!(out, "fits on: {}", c.fits_on.join(", "));
    }
    match &c.best {
        Some(p) => {
            let place = match (p.target, p.gpu) {
                (Target::Gpu, Some(g)) => format!("GPU {g}"),
                (Target::Gpu, None) => "GPUs".to_owned(),
                (Target::Cpu, _) => "CPU".to_owned(),
            };
            let _ = writeln!(out, "best: {} {place}", p.node);
        }
        None => {
            let _ = writeln!(out, "best: none");
        }
    }
    out
}

pub(crate) fn run_check(settings: &Settings, args: &ModelArgs) -> anyhow::Result<()> {
    let policy = settings.policy(None)?;
    source::block_on(async {
        let (_, view) = source::load(settings).await?;
        let view = if args.output.json {
            view
        } else {
            term::escape_strings(&view)?
        };
        let snap = snapshot_of(&view, settings)?;
        let answer = check(&view, &snap, &policy, &args.model, args.size_mb)?;
        if args.output.json {
            println!("{}", term::json(serde_json::to_string_pretty(&answer)?));
        } else {
            print!("{}", term::text(&render_check(&answer)));
        }
        Ok(())
    })
}
