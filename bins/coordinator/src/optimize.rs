//! `optimize`: load each priority model on its best GPU node through Ollama (the cluster
//! layer's [`vramroute_cluster::optimize()`]), and render what happened.

use std::fmt::Write as _;

use vramroute_cluster::{
    keep_lock_renewed, lock_owner_id, optimize, OptimizeOptions, Outcome, OPTIMIZE_LOCK,
};

use vramroute_cluster::Feed as _;

use crate::cli::OptimizeArgs;

/// The CLI's hold on the optimize lock (renewed while loads run).
const LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(60);
use crate::source::{self, Settings};
use crate::term::{self, Term};

/// The optimize options the config asks for.
pub(crate) fn options(settings: &Settings, dry_run: bool) -> OptimizeOptions {
    let mut opts = OptimizeOptions::new(
        settings.config.load_timeout(),
        settings.config.ollama_timeout(),
    );
    opts.dry_run = dry_run;
    opts
}

pub(crate) fn render(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    if outcomes.is_empty() {
        out.push_str("no priority_models in the config: nothing to optimize\n");
    }
    for o in outcomes {
        let size = o
            .size_mb
            .map_or_else(|| "size unknown".to_owned(), |s| format!("{s} MB"));
        // Node ids and reasons come from records and Ollama: escaped for the terminal.
        let place = match (&o.node, o.gpu) {
            (Some(n), Some(g)) => format!(" -> {} GPU {g}", Term(n)),
            (Some(n), None) => format!(" -> {}", Term(n)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{} ({size}): {}{place}: {}",
            Term(&o.model),
            o.action,
            Term(&o.reason)
        );
        for s in &o.skipped {
            let _ = writeln!(out, "  skipped {}: {}", Term(&s.node), Term(&s.reason));
        }
    }
    out
}

pub(crate) fn run(settings: &Settings, args: &OptimizeArgs) -> anyhow::Result<()> {
    let policy = settings.policy(None)?;
    source::block_on(async {
        let (source, view) = source::load(settings).await?;
        let source = std::sync::Arc::new(source);
        let snap = crate::route::snapshot_of(&view, settings)?;
        let models = &settings.config.priority_models;
        let opts = options(settings, args.dry_run);
        // Loading takes the same lock as the daemons' auto_optimize: one optimizer at a time.
        let owner = lock_owner_id();
        let mut renewal = None;
        if !args.dry_run && !models.is_empty() {
            if let Some(reg) = source.registry() {
                if !reg.try_lock(OPTIMIZE_LOCK, &owner, LOCK_TTL).await? {
                    anyhow::bail!(
                        "another coordinator holds the optimize lock (a daemon with \
                         auto_optimize, or another `optimize`): try again later, or use \
                         --dry-run to see where the models would go"
                    );
                }
                renewal = Some(keep_lock_renewed(
                    source.clone(),
                    OPTIMIZE_LOCK,
                    owner.clone(),
                    LOCK_TTL,
                ));
            }
        }
        let outcomes = optimize(&view, &snap, &policy, models, &opts).await;
        if renewal.take().is_some() {
            if let Some(reg) = source.registry() {
                let _ = reg.unlock(OPTIMIZE_LOCK, &owner).await;
            }
        }
        if args.output.json {
            println!(
                "{}",
                term::json(serde_json::to_string_pretty(&serde_json::json!({
                    "dry_run": args.dry_run,
                    "outcomes": outcomes,
                }))?)
            );
        } else {
            print!("{}", term::text(&render(&outcomes)));
        }
        Ok(())
    })
}
