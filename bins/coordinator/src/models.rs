//! `models`: every model the coordinator can size, with each size's source.

use std::fmt::Write as _;

use vramroute_cluster::{model_catalogue, ModelRow};

use crate::cli::OutputArgs;
use crate::source::{self, Settings};
use crate::term;

pub(crate) fn render(rows: &[ModelRow]) -> String {
    let mut out = String::new();
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(out, "{:<width$}  {:>8}  source", "model", "MB");
    for r in rows {
        for (i, s) in r.sizes.iter().enumerate() {
            let name = if i == 0 { r.name.as_str() } else { "" };
            let _ = writeln!(
                out,
                "{name:<width$}  {:>8}  {}",
                s.size_mb.map_or_else(|| "?".to_owned(), |v| v.to_string()),
                s.source
            );
        }
    }
    out
}

pub(crate) fn run(settings: &Settings, args: &OutputArgs) -> anyhow::Result<()> {
    source::block_on(async {
        let (_, view) = source::load(settings).await?;
        if args.json {
            let rows = model_catalogue(&view);
            println!(
                "{}",
                term::json(serde_json::to_string_pretty(
                    &serde_json::json!({ "models": rows })
                )?)
            );
        } else {
            let view = term::escape_strings(&view)?;
            let mut out = render(&model_catalogue(&view));
            for w in &view.warnings {
                let _ = writeln!(out, "warning: {w}");
            }
            print!("{}", term::text(&out));
        }
        Ok(())
    })
}
