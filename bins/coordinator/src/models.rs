//! `models`: every model the coordinator can size, with each size's source.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use vramroute_alloc::{sollol_size_table, EstimateSource};
use vramroute_router::normalize_model_name;

use crate::cli::OutputArgs;
use crate::source::{self, Settings};
use crate::term;
use vramroute_cluster::StatusView;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SizeSeen {
    pub(crate) source: String,
    pub(crate) size_mb: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModelRow {
    pub(crate) name: String,
    pub(crate) sizes: Vec<SizeSeen>,
    /// Nodes where it is loaded now.
    pub(crate) loaded_on: Vec<String>,
}

/// The configured sizes (`model_sizes`), SOLLOL's table, then every name seen in the
/// view (Ollama tags, loaded models); each row's sizes in the resolver's order.
pub(crate) fn collect(view: &StatusView) -> Vec<ModelRow> {
    let mut rows: BTreeMap<String, ModelRow> = BTreeMap::new();
    fn row<'a>(rows: &'a mut BTreeMap<String, ModelRow>, name: &str) -> &'a mut ModelRow {
        rows.entry(normalize_model_name(name).into_owned())
            .or_insert_with(|| ModelRow {
                name: name.to_owned(),
                sizes: Vec::new(),
                loaded_on: Vec::new(),
            })
    }
    // Configured sizes first: they win over every source but an explicit size.
    for (name, mb) in &view.model_sizes {
        row(&mut rows, name).sizes.push(SizeSeen {
            source: EstimateSource::Config.to_string(),
            size_mb: Some(*mb),
        });
    }
    for e in sollol_size_table() {
        row(&mut rows, e.name).sizes.push(SizeSeen {
            source: EstimateSource::SollolTable.to_string(),
            size_mb: Some(e.size_mib),
        });
    }
    for (name, seen) in view.model_sightings() {
        let r = row(&mut rows, &name);
        for (source, size_mb) in seen {
            r.sizes.push(SizeSeen { source, size_mb });
        }
    }
    for n in &view.nodes {
        for m in &n.loaded_models {
            row(&mut rows, &m.name).loaded_on.push(n.id.to_string());
        }
    }
    rows.into_values().collect()
}

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
            let rows = collect(&view);
            println!(
                "{}",
                term::json(serde_json::to_string_pretty(
                    &serde_json::json!({ "models": rows })
                )?)
            );
        } else {
            let view = term::escape_strings(&view)?;
            let mut out = render(&collect(&view));
            for w in &view.warnings {
                let _ = writeln!(out, "warning: {w}");
            }
            print!("{}", term::text(&out));
        }
        Ok(())
    })
}
