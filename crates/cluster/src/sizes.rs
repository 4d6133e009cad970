//! How big a model is, and where that figure came from: the one size resolver of the
//! cluster layer. It gathers what the cluster view knows about a model (an Ollama node's
//! `/api/tags` entry, a loaded copy's `/api/ps` size) and hands it, with what the caller
//! gave (an explicit size, a GGUF header), to alloc's [`ModelSizer`], whose order is the
//! one order every command uses:
//!
//! 1. an explicit size,
//! 2. a configured size (the view's `model_sizes`: the coordinator config's),
//! 3. the GGUF header,
//! 4. Ollama `/api/show` (plans only: it costs a request),
//! 5. Ollama `/api/tags` file size,
//! 6. SOLLOL's table,
//! 7. a loaded copy's size.
//!
//! Never guessed: a model no source knows is [`Error::UnknownModel`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use vramroute_alloc::{
    estimate_from_ollama_show, sollol_size_table, EstimateSource, GgufInfo, ModelEstimate,
    ModelSizer, OllamaShowInfo, OllamaTagsInfo, DEFAULT_CTX,
};
use vramroute_ollama::{OllamaClient, ShowResponse};
use vramroute_router::{normalize_model_name, same_model};

use crate::error::{Error, Result};
use crate::view::{NodeView, StatusView};

const BYTES_PER_MIB: u64 = 1_048_576;

/// Largest configured model size, MiB (4 TiB): anything bigger is a typo, not a model.
pub const MAX_MODEL_SIZE_MIB: u64 = 4 << 20;

/// Checks configured model sizes (model name → MiB, what [`LiveConfig::model_sizes`]
/// and the view's `model_sizes` hold) before they are used: every name non-empty, every
/// size in 1–[`MAX_MODEL_SIZE_MIB`]. The error names the model and the bounds.
///
/// [`LiveConfig::model_sizes`]: crate::LiveConfig::model_sizes
pub fn check_model_sizes(sizes: &BTreeMap<String, u64>) -> std::result::Result<(), String> {
    for (name, mb) in sizes {
        if name.trim().is_empty() {
            return Err("a model name is empty".to_owned());
        }
        if !(1..=MAX_MODEL_SIZE_MIB).contains(mb) {
            return Err(format!(
                "{name}: {mb} MB is outside 1-{MAX_MODEL_SIZE_MIB} (sizes are MiB, e.g. \
                 `llama3.1:8b: 4700`)"
            ));
        }
    }
    Ok(())
}
/// Most Ollama nodes asked for `/api/show` while sizing one model for a plan.
const MAX_SHOW_ASKS: usize = 4;

/// The size used for fit checks and routing, MiB, with its source.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ModelSize {
    /// The model as asked.
    pub model: String,
    /// Weights plus KV cache, MiB ([`ModelEstimate::routing_mib`]).
    pub size_mb: u64,
    /// Where the figure came from, as text (`SOLLOL size table`, `Ollama /api/tags size
    /// of 10.0.0.1:11434`, ...).
    pub source: String,
}

impl ModelSize {
    /// A size the caller states, MiB.
    pub fn explicit(model: &str, size_mb: u64) -> ModelSize {
        ModelSize {
            model: model.to_owned(),
            size_mb,
            source: EstimateSource::Explicit.to_string(),
        }
    }
}

/// What the view knows about `model`: the first node that has it pulled (its
/// `/api/tags` entry) and the first loaded copy with a known size.
struct Sightings<'v> {
    /// The configured size (`model_sizes`), MiB.
    config: Option<u64>,
    tags: Option<(&'v NodeView, OllamaTagsInfo)>,
    loaded: Option<(&'v NodeView, u64)>,
}

impl Sightings<'_> {
    fn none() -> Self {
        Sightings {
            config: None,
            tags: None,
            loaded: None,
        }
    }
}

/// Walks every node's models: O(nodes) per call (see [`SizeCache`]).
fn sightings<'v>(view: &'v StatusView, model: &str) -> Sightings<'v> {
    let tags = view.nodes.iter().find_map(|n| {
        n.installed_models
            .iter()
            .find(|m| same_model(&m.name, model))
            .map(|m| {
                (
                    n,
                    OllamaTagsInfo::new(m.name.clone(), m.size_mb.saturating_mul(BYTES_PER_MIB)),
                )
            })
    });
    let loaded = view.nodes.iter().find_map(|n| {
        n.loaded_models
            .iter()
            .find(|m| same_model(&m.name, model))
            .and_then(|m| Some((n, m.size_mb?)))
    });
    let config = view
        .model_sizes
        .iter()
        .find(|(name, _)| same_model(name, model))
        .map(|(_, mb)| *mb);
    Sightings {
        config,
        tags,
        loaded,
    }
}

fn source_text(e: &ModelEstimate, s: &Sightings<'_>, show_node: Option<&str>) -> String {
    match (e.source, show_node) {
        (EstimateSource::OllamaShow, Some(node)) => format!("{} of {node}", e.source),
        (EstimateSource::OllamaTags, _) => match &s.tags {
            Some((n, _)) => format!("{} of {}", e.source, n.id),
            None => e.source.to_string(),
        },
        (EstimateSource::LoadedCopy, _) => match &s.loaded {
            Some((n, _)) => format!("{} on {}", e.source, n.id),
            None => e.source.to_string(),
        },
        _ => e.source.to_string(),
    }
}

fn sizer<'a>(
    s: &'a Sightings<'_>,
    explicit_mb: Option<u64>,
    gguf: Option<&'a GgufInfo>,
    show: Option<&'a OllamaShowInfo>,
) -> ModelSizer<'a> {
    let mut sizer = ModelSizer::new();
    if let Some(mb) = explicit_mb {
        sizer = sizer.explicit_mib(mb);
    }
    if let Some(mb) = s.config {
        sizer = sizer.config_mib(mb);
    }
    if let Some(info) = gguf {
        sizer = sizer.gguf(info);
    }
    if let Some(info) = show {
        sizer = sizer.ollama_show(info);
    }
    if let Some((_, info)) = &s.tags {
        sizer = sizer.ollama_tags(info);
    }
    if let Some((_, mb)) = s.loaded {
        sizer = sizer.loaded_mib(mb);
    }
    sizer
}

fn unknown(model: &str, e: vramroute_alloc::Error) -> Error {
    match e {
        vramroute_alloc::Error::UnknownModel { .. } => Error::UnknownModel {
            model: model.to_owned(),
        },
        other => Error::Alloc(other),
    }
}

/// The routing size of `model` from what the view knows (no network): an explicit size
/// wins, then the view's `/api/tags` entries, SOLLOL's table, then a loaded copy.
///
/// ```
/// use vramroute_cluster::{model_size, StatusView};
/// let view = StatusView::empty("example");
/// assert_eq!(model_size(&view, "llama3.1:8b", None)?.size_mb, 4700);
/// assert_eq!(model_size(&view, "Llama3.1:8B", Some(5000))?.size_mb, 5000);
/// assert!(model_size(&view, "my-finetune", None).is_err());
/// # Ok::<(), vramroute_cluster::Error>(())
/// ```
pub fn model_size(view: &StatusView, model: &str, explicit_mb: Option<u64>) -> Result<ModelSize> {
    // An explicit size wins over every source, so the view is not searched for one.
    let s = match explicit_mb {
        Some(_) => Sightings::none(),
        None => sightings(view, model),
    };
    let e = sizer(&s, explicit_mb, None, None)
        .estimate(model, DEFAULT_CTX)
        .map_err(|e| unknown(model, e))?;
    Ok(ModelSize {
        model: model.to_owned(),
        size_mb: e.routing_mib(),
        source: source_text(&e, &s, None),
    })
}

/// Most answers a [`SizeCache`] keeps for one view (a view holds far fewer models; more
/// distinct names than this are someone probing, and the cache starts over).
const SIZES_KEPT: usize = 4096;

/// [`model_size`] answers (without an explicit size) kept for the one view they were
/// resolved on, so that routing a model again on the same view costs a lookup, not a
/// walk over every node's models (≈ 10,000 nodes × their models per request at
/// 10,000 nodes). A model no source knows is kept too: asking for it again answers
/// [`Error::UnknownModel`] without a walk. A newer view (another `Arc`) empties it;
/// the view is never changed in place while shared, so an answer kept for it stays
/// exact. [`LiveCluster::model_size`](crate::LiveCluster::model_size) keeps one.
#[derive(Debug, Default)]
pub struct SizeCache {
    kept: Mutex<Option<SizesOf>>,
}

/// Answers kept for one view: the size, or `None` for a model no source knows.
type SizesOf = (Arc<StatusView>, HashMap<String, Option<ModelSize>>);

impl SizeCache {
    /// [`model_size`] of `model` on `view`, from what is kept for `view` when it was
    /// asked before. An explicit size is answered without the cache (it needs no walk).
    pub fn model_size(
        &self,
        view: &Arc<StatusView>,
        model: &str,
        explicit_mb: Option<u64>,
    ) -> Result<ModelSize> {
        if explicit_mb.is_some() {
            return model_size(view, model, explicit_mb);
        }
        let kept = |answer: &Option<ModelSize>| match answer {
            Some(size) => Ok(size.clone()),
            None => Err(Error::UnknownModel {
                model: model.to_owned(),
            }),
        };
        if let Some((v, sizes)) = self.lock().as_ref() {
            if let Some(answer) = sizes.get(model).filter(|_| Arc::ptr_eq(v, view)) {
                return kept(answer);
            }
        }
        // Resolved outside the lock: requests for other models are not held up.
        let answer = match model_size(view, model, None) {
            Ok(size) => Some(size),
            Err(Error::UnknownModel { .. }) => None,
            // Not a plain "unknown" (an estimate that failed): not kept.
            Err(e) => return Err(e),
        };
        let mut cache = self.lock();
        match cache.as_mut() {
            Some((v, sizes)) if Arc::ptr_eq(v, view) => {
                if sizes.len() >= SIZES_KEPT {
                    sizes.clear();
                }
                sizes.insert(model.to_owned(), answer.clone());
            }
            // A request that loaded its view just before a newer one was stored does
            // not throw out the newer view's answers.
            Some((v, _)) if v.generated_at > view.generated_at => {}
            _ => {
                let sizes = HashMap::from([(model.to_owned(), answer.clone())]);
                *cache = Some((Arc::clone(view), sizes));
            }
        }
        kept(&answer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SizesOf>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How [`model_estimate`] may ask Ollama nodes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EstimateOptions {
    /// Timeout of each `/api/show` request.
    pub ollama_timeout: Duration,
    /// Context length the estimate is for, tokens.
    pub ctx: u32,
}

impl Default for EstimateOptions {
    fn default() -> Self {
        EstimateOptions {
            ollama_timeout: Duration::from_secs(5),
            ctx: DEFAULT_CTX,
        }
    }
}

impl EstimateOptions {
    /// Options for a context of `ctx` tokens, asking Ollama with `ollama_timeout`.
    pub fn new(ctx: u32, ollama_timeout: Duration) -> Self {
        EstimateOptions {
            ollama_timeout,
            ctx,
        }
    }
}

fn show_info(show: &ShowResponse, size_bytes: Option<u64>) -> Option<OllamaShowInfo> {
    let u32_of = |k: &str| show.arch_u64(k).and_then(|v| u32::try_from(v).ok());
    let mut info = OllamaShowInfo::new(show.architecture()?, u32_of("block_count")?);
    info.context_length = u32_of("context_length");
    info.embedding_length = u32_of("embedding_length").unwrap_or(0);
    info.head_count = u32_of("attention.head_count").unwrap_or(0);
    info.head_count_kv = u32_of("attention.head_count_kv");
    info.key_length = u32_of("attention.key_length");
    info.value_length = u32_of("attention.value_length");
    info.feed_forward_length = u32_of("feed_forward_length");
    info.vocab_size = u32_of("vocab_size");
    info.parameter_count = show.parameter_count();
    info.quantization_level = show
        .details
        .as_ref()
        .and_then(|d| d.quantization_level.clone());
    info.size_bytes = size_bytes;
    Some(info)
}

/// The model's estimate at `opts.ctx` tokens with per-layer figures, for a plan: the
/// same order as [`model_size`], with the GGUF file at `gguf` when given and the
/// `/api/show` metadata of up to 4 nodes that have the model pulled (each request
/// bounded by `opts.ollama_timeout`). A plan needs a layer count: a source without one
/// (an `/api/tags` size, a loaded copy) is passed over for SOLLOL's table, which carries
/// the architecture's layers; none → [`Error::NeedLayerInfo`].
pub async fn model_estimate(
    view: &StatusView,
    model: &str,
    gguf: Option<&Path>,
    opts: &EstimateOptions,
) -> Result<ModelEstimate> {
    let mut s = sightings(view, model);
    // A plan needs layer figures, which a configured size does not have.
    s.config = None;
    if let Some(path) = gguf {
        let info = GgufInfo::from_path(path)?;
        return Ok(sizer(&s, None, Some(&info), None).estimate(model, opts.ctx)?);
    }
    let mut tried = Vec::new();
    for n in view.nodes.iter().filter(|n| n.ollama_url.is_some()) {
        let Some(installed) = n
            .installed_models
            .iter()
            .find(|m| same_model(&m.name, model))
        else {
            continue;
        };
        if tried.len() >= MAX_SHOW_ASKS {
            break;
        }
        let Some(url) = n.ollama_url.as_deref() else {
            continue;
        };
        let client = match OllamaClient::new(url, opts.ollama_timeout) {
            Ok(c) => c,
            Err(e) => {
                tried.push(format!("{url}: {e}"));
                continue;
            }
        };
        match client.show(&installed.name).await {
            Ok(show) => {
                let size = installed.size_mb.saturating_mul(BYTES_PER_MIB);
                match show_info(&show, Some(size)) {
                    Some(info) => return Ok(estimate_from_ollama_show(model, &info, opts.ctx)?),
                    None => tried.push(format!(
                        "{url}: /api/show has no general.architecture / <arch>.block_count"
                    )),
                }
            }
            Err(e) => tried.push(format!("{url}: {e}")),
        }
    }
    // Without layer information only SOLLOL's table (which carries layers) can plan.
    if let Ok(e) = ModelSizer::new().estimate(model, opts.ctx) {
        if e.layer_count.is_some() {
            return Ok(e);
        }
    }
    let asked = if tried.is_empty() {
        String::new()
    } else {
        format!(" (asked: {})", tried.join("; "))
    };
    Err(Error::NeedLayerInfo {
        model: model.to_owned(),
        asked,
    })
}

/// One size a source gives for a model.
#[derive(Debug, Clone, Serialize)]
pub struct SizeSeen {
    /// The source, in the resolver's words ([`EstimateSource`]'s labels).
    pub source: String,
    /// Its size in MiB, when that source knows it.
    pub size_mb: Option<u64>,
}

/// A model the cluster can size (the `models` command's row).
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    /// The name as first seen (configured, SOLLOL's table, then the view).
    pub name: String,
    /// Every size seen, in the resolver's order of sources.
    pub sizes: Vec<SizeSeen>,
    /// Nodes where it is loaded now.
    pub loaded_on: Vec<String>,
}

/// The configured sizes (`model_sizes`), SOLLOL's table, then every name seen in the
/// view (Ollama tags, loaded models); each row's sizes in the resolver's order.
pub fn model_catalogue(view: &StatusView) -> Vec<ModelRow> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A view of one node with `model` loaded, `size_mb` big, built at `at`.
    fn view_with(model: &str, size_mb: u64, at: f64) -> Arc<StatusView> {
        let json = format!(
            r#"{{"source":"t","generated_at":{at},"stale_after_s":30.0,"vram_safety_margin":0.8,"nodes":[{{"id":"10.1.2.3:11434","vendor":"nvidia","writer":"t","timestamp":{at},"age_s":0.0,"stale":false,"gpus":[],"loaded_models":[{{"name":"{model}","size_mb":{size_mb}}}]}}],"rpc_backends":[]}}"#
        );
        Arc::new(serde_json::from_str(&json).expect("view"))
    }

    fn kept(cache: &SizeCache, model: &str) -> Option<Option<u64>> {
        let kept = cache.lock();
        let (_, sizes) = kept.as_ref()?;
        sizes.get(model).map(|a| a.as_ref().map(|s| s.size_mb))
    }

    #[test]
    fn the_size_cache_answers_as_model_size_and_keeps_answers_per_view() {
        let cache = SizeCache::default();
        let old = view_with("my-finetune:7b", 5000, 1.8e9);
        for _ in 0..2 {
            let got = cache
                .model_size(&old, "My-Finetune:7B", None)
                .expect("known");
            assert_eq!(
                got,
                model_size(&old, "My-Finetune:7B", None).expect("known")
            );
            assert_eq!(got.size_mb, 5000);
            assert!(got.source.contains("10.1.2.3:11434"), "{}", got.source);
        }
        assert_eq!(kept(&cache, "My-Finetune:7B"), Some(Some(5000)));
        // A model no source knows is answered as unknown, and that is kept too.
        for _ in 0..2 {
            let err = cache.model_size(&old, "nowhere:1b", None).unwrap_err();
            assert!(matches!(&err, Error::UnknownModel { model } if model == "nowhere:1b"));
        }
        assert_eq!(kept(&cache, "nowhere:1b"), Some(None));
        // An explicit size needs no walk and is not kept.
        let explicit = cache
            .model_size(&old, "nowhere:1b", Some(1234))
            .expect("explicit");
        assert_eq!(
            explicit,
            model_size(&old, "nowhere:1b", Some(1234)).expect("explicit")
        );
        assert_eq!(explicit.size_mb, 1234);
        // A newer view starts over: its own answers, nothing of the old view's.
        let new = view_with("my-finetune:7b", 6000, 1.8e9 + 1.0);
        assert_eq!(
            cache
                .model_size(&new, "my-finetune:7b", None)
                .expect("known")
                .size_mb,
            6000
        );
        assert_eq!(kept(&cache, "nowhere:1b"), None);
        // A request still holding the older view gets that view's answer, and does not
        // throw out the newer view's.
        assert_eq!(
            cache
                .model_size(&old, "my-finetune:7b", None)
                .expect("known")
                .size_mb,
            5000
        );
        assert_eq!(kept(&cache, "my-finetune:7b"), Some(Some(6000)));
    }

    #[test]
    fn configured_sizes_are_checked_at_both_bounds_and_by_name() {
        let sizes = |name: &str, mb: u64| BTreeMap::from([(name.to_owned(), mb)]);
        assert_eq!(check_model_sizes(&BTreeMap::new()), Ok(()));
        assert_eq!(check_model_sizes(&sizes("llama3.1:8b", 1)), Ok(()));
        assert_eq!(
            check_model_sizes(&sizes("llama3.1:8b", MAX_MODEL_SIZE_MIB)),
            Ok(())
        );
        for mb in [0, MAX_MODEL_SIZE_MIB + 1] {
            let err = check_model_sizes(&sizes("big:1t", mb)).unwrap_err();
            assert!(
                err.starts_with(&format!("big:1t: {mb} MB is outside 1-")),
                "{err}"
            );
        }
        assert_eq!(
            check_model_sizes(&sizes(" ", 4700)),
            Err("a model name is empty".to_owned())
        );
    }
}
