//! What the caller asks: which model, how big, what it needs, where it would rather go.

use serde::{Deserialize, Serialize};

/// The kind of work, as SOLLOL classifies requests. Matched against
/// [`NodeSpec::preferred_tasks`](crate::NodeSpec::preferred_tasks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TaskKind {
    /// Text generation / chat (SOLLOL's default).
    #[default]
    Generation,
    /// Embeddings.
    Embedding,
    /// Classification.
    Classification,
    /// Extraction.
    Extraction,
    /// Summarisation.
    Summarization,
    /// Analysis.
    Analysis,
    /// Anything else.
    Other,
}

impl TaskKind {
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// SOLLOL's request complexity; it decides the CPU-load factors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Complexity {
    /// Short prompt (< 500 tokens in SOLLOL): only very busy CPUs are penalised.
    Simple,
    /// Neither: no CPU-load factor.
    #[default]
    Medium,
    /// Long prompt or conversation: busy CPUs penalised, idle and many-core ones favoured.
    Complex,
}

/// One routing question. Borrowed, `Copy`, and free to build: routing it allocates nothing.
///
/// Node and label lists are matched by name inside the snapshot being routed on, so a
/// request stays valid across snapshot swaps.
///
/// ```
/// use vramroute_router::{Request, TaskKind};
/// let req = Request::new("llama3.1:8b", 4700)
///     .priority(8)
///     .task(TaskKind::Generation)
///     .prefer_labels(&["fast"])
///     .exclude_nodes(&["10.0.0.9:11434"]);
/// assert!(req.needs_gpu && req.allow_cpu && !req.allow_multi_gpu);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Request<'a> {
    /// Model name (`llama3.1:8b`; `llama3.1` and `llama3.1:latest` are the same model).
    pub model: &'a str,
    /// Memory the model needs, in MiB (from `vramroute-alloc`'s estimate or given).
    pub size_mib: u64,
    /// The work wants a GPU (SOLLOL's `requires_gpu`); default `true`.
    pub needs_gpu: bool,
    /// A CPU placement is acceptable when no GPU fits; default `true` (SOLLOL's fallback).
    pub allow_cpu: bool,
    /// The model may be split across several GPUs of one node; default `false`.
    pub allow_multi_gpu: bool,
    /// Request priority 1–10 (SOLLOL's scale, default 5; values above 10 count as 10).
    pub priority: u8,
    /// Kind of work.
    pub task: TaskKind,
    /// Complexity of the work.
    pub complexity: Complexity,
    /// Node ids to prefer (soft).
    pub prefer_nodes: &'a [&'a str],
    /// Labels to prefer (soft): a node carrying any of them is preferred.
    pub prefer_labels: &'a [&'a str],
    /// Labels a node must all carry (hard).
    pub require_labels: &'a [&'a str],
    /// Node ids never to use (hard), e.g. nodes that just failed this request.
    pub exclude_nodes: &'a [&'a str],
    /// Labels that exclude a node carrying any of them (hard).
    pub exclude_labels: &'a [&'a str],
}

impl<'a> Request<'a> {
    /// SOLLOL's default request priority.
    pub const DEFAULT_PRIORITY: u8 = 5;
    /// Highest meaningful priority.
    pub const MAX_PRIORITY: u8 = 10;

    /// A GPU request for `model` needing `size_mib`, with SOLLOL's defaults.
    pub fn new(model: &'a str, size_mib: u64) -> Self {
        Self {
            model,
            size_mib,
            needs_gpu: true,
            allow_cpu: true,
            allow_multi_gpu: false,
            priority: Self::DEFAULT_PRIORITY,
            task: TaskKind::Generation,
            complexity: Complexity::Medium,
            prefer_nodes: &[],
            prefer_labels: &[],
            require_labels: &[],
            exclude_nodes: &[],
            exclude_labels: &[],
        }
    }

    /// Sets [`needs_gpu`](Self::needs_gpu).
    pub fn needs_gpu(mut self, yes: bool) -> Self {
        self.needs_gpu = yes;
        self
    }
    /// Sets [`allow_cpu`](Self::allow_cpu).
    pub fn allow_cpu(mut self, yes: bool) -> Self {
        self.allow_cpu = yes;
        self
    }
    /// Sets [`allow_multi_gpu`](Self::allow_multi_gpu).
    pub fn allow_multi_gpu(mut self, yes: bool) -> Self {
        self.allow_multi_gpu = yes;
        self
    }
    /// Sets [`priority`](Self::priority).
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }
    /// Sets [`task`](Self::task).
    pub fn task(mut self, task: TaskKind) -> Self {
        self.task = task;
        self
    }
    /// Sets [`complexity`](Self::complexity).
    pub fn complexity(mut self, complexity: Complexity) -> Self {
        self.complexity = complexity;
        self
    }
    /// Sets [`prefer_nodes`](Self::prefer_nodes).
    pub fn prefer_nodes(mut self, ids: &'a [&'a str]) -> Self {
        self.prefer_nodes = ids;
        self
    }
    /// Sets [`prefer_labels`](Self::prefer_labels).
    pub fn prefer_labels(mut self, labels: &'a [&'a str]) -> Self {
        self.prefer_labels = labels;
        self
    }
    /// Sets [`require_labels`](Self::require_labels).
    pub fn require_labels(mut self, labels: &'a [&'a str]) -> Self {
        self.require_labels = labels;
        self
    }
    /// Sets [`exclude_nodes`](Self::exclude_nodes).
    pub fn exclude_nodes(mut self, ids: &'a [&'a str]) -> Self {
        self.exclude_nodes = ids;
        self
    }
    /// Sets [`exclude_labels`](Self::exclude_labels).
    pub fn exclude_labels(mut self, labels: &'a [&'a str]) -> Self {
        self.exclude_labels = labels;
        self
    }

    pub(crate) fn effective_priority(&self) -> u8 {
        self.priority.min(Self::MAX_PRIORITY)
    }
}
