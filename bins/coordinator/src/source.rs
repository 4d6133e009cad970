//! Where the cluster comes from: a Redis registry, this machine alone (embedded), or a
//! saved snapshot; plus the config's Ollama `nodes:` merged in.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use vramroute_alloc::ReserveConfig;
use vramroute_cluster::{ask_ollama_nodes, unix_now, Feed, LiveConfig, OllamaNodeInfo, StatusView};
use vramroute_node::{NodeIdentity, NodeReport, OllamaState};
use vramroute_ollama::OllamaClient;
use vramroute_probe::local_file::read_local_text;
use vramroute_probe::{Prober, ProberConfig};
use vramroute_registry::{
    redact_url, ClusterView, MemoryRegistry, RedisRegistry, Registry, RegistryConfig,
};
use vramroute_router::{Policy, SnapshotConfig};

use crate::cli::SourceArgs;
use crate::config::Config;
use crate::redis_password::join_redis_password;
use crate::UsageError;

/// The line embedded mode prints (once, on stderr).
pub(crate) const EMBEDDED_NOTICE: &str = "embedded single-node mode: no --redis-url / SOLLOL_REDIS_URL / config redis_url; showing this machine only (point it at a cluster with --redis-url redis://HOST:6379)";

/// The largest `--snapshot` file read, bytes (`status --json` of a 1,000-node cluster
/// is a few MiB).
pub(crate) const MAX_SNAPSHOT_BYTES: u64 = 64 << 20;

/// Node id of this machine in embedded mode.
const EMBEDDED_NODE_ID: &str = "127.0.0.1:11434";
/// The local Ollama asked in embedded mode (unless `OLLAMA_URL` says otherwise).
const LOCAL_OLLAMA: &str = "http://127.0.0.1:11434";
/// Bound on the embedded mode's question to the local Ollama.
const LOCAL_OLLAMA_TIMEOUT: Duration = Duration::from_millis(800);

/// Command-line source flags and the config file, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) config: Config,
    pub(crate) args: SourceArgs,
    /// The Redis URL with the password from `--redis-password-file` / `REDIS_PASSWORD`
    /// joined in, resolved once.
    redis_url: Option<String>,
}

impl Settings {
    /// Reads the config file named by `--config` (a bad one is a usage error).
    pub(crate) fn load(args: &SourceArgs) -> anyhow::Result<Settings> {
        let config = match &args.config {
            Some(path) => Config::load(path).map_err(|e| UsageError(format!("{e:#}")))?,
            None => Config::default(),
        };
        let url = args
            .redis_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| config.redis_url.clone());
        let file = args.redis_password_file.as_deref();
        let redis_url = match url {
            Some(url) => Some(join_redis_password(url, file).map_err(UsageError)?),
            None if file.is_some() => {
                return Err(UsageError(
                    "--redis-password-file needs a Redis URL (--redis-url, SOLLOL_REDIS_URL or config redis_url)".into(),
                )
                .into())
            }
            None => None,
        };
        Ok(Settings {
            config,
            args: args.clone(),
            redis_url,
        })
    }

    /// `--redis-url` / `SOLLOL_REDIS_URL`, else the config's `redis_url`; with the
    /// password from `--redis-password-file` / `REDIS_PASSWORD` joined in.
    pub(crate) fn redis_url(&self) -> Option<String> {
        self.redis_url.clone()
    }

    pub(crate) fn snapshot_config(&self) -> SnapshotConfig {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "validated: positive and at most a week"
        )]
        let stale_after_ms = (self.config.stale_after_s() * 1000.0) as u64;
        SnapshotConfig::default()
            .with_stale_after_ms(stale_after_ms.max(1))
            .with_vram_safety_margin(self.config.vram_safety_margin())
    }

    /// The cluster layer's settings from the config.
    pub(crate) fn live_config(&self) -> LiveConfig {
        let mut c = LiveConfig::new(self.config.stale_after_s(), self.snapshot_config());
        if let Some(s) = self.config.reservation_hold {
            c.reservation_hold = Duration::from_secs_f64(s);
        }
        c.model_sizes.clone_from(&self.config.model_sizes);
        c
    }

    /// `--policy` if given, else the config's, else SOLLOL's.
    pub(crate) fn policy(&self, flag: Option<&str>) -> anyhow::Result<Policy> {
        match flag {
            Some(name) => Ok(name
                .parse::<Policy>()
                .map_err(|e| UsageError(e.to_string()))?),
            None => Ok(self.config.policy.clone().unwrap_or_default()),
        }
    }
}

/// This machine, probed in-process and published into a memory registry.
pub(crate) struct Embedded {
    pub(crate) registry: MemoryRegistry,
    prober: Prober,
    ollama: OllamaClient,
}

impl Embedded {
    fn new(settings: &Settings) -> anyhow::Result<Embedded> {
        let root = settings
            .args
            .sysfs_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/sys"));
        vramroute_probe::local_file::check_local_dir(&root)
            .map_err(|e| UsageError(format!("--sysfs-root: {e}")))?;
        let proc_root = vramroute_probe::default_proc_root(&root);
        let mut config = ProberConfig::with_sysfs_root(root).with_proc_root(proc_root);
        config.nvml = !settings.args.no_nvml;
        let url = std::env::var("OLLAMA_URL").unwrap_or_else(|_| LOCAL_OLLAMA.to_owned());
        let ollama = OllamaClient::new(&url, LOCAL_OLLAMA_TIMEOUT)
            .or_else(|_| OllamaClient::new(LOCAL_OLLAMA, LOCAL_OLLAMA_TIMEOUT))?;
        Ok(Embedded {
            registry: MemoryRegistry::default(),
            prober: Prober::new(config),
            ollama,
        })
    }

    /// Probes this machine and publishes its records, as a reporter would.
    pub(crate) async fn refresh(&self) -> anyhow::Result<()> {
        let hardware = self.prober.probe().context("cannot probe this machine")?;
        let ollama = OllamaState::from_ps(&self.ollama.ps().await);
        let mut identity = NodeIdentity::new(
            EMBEDDED_NODE_ID,
            "127.0.0.1",
            vramroute_registry::DEFAULT_RPC_PORT,
        );
        identity.ollama_url = Some(self.ollama.base_url().to_owned());
        identity.hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        let report = NodeReport::new(
            hardware,
            &ReserveConfig::default(),
            None,
            ollama,
            unix_now(),
        )?;
        self.registry
            .publish_stats(&report.stats_record(&identity))
            .await?;
        self.registry
            .register(
                &identity.advertise_ip,
                identity.rpc_port,
                &report.rpc_record(),
            )
            .await?;
        Ok(())
    }
}

/// Where views come from.
pub(crate) enum Backend {
    Redis(RedisRegistry),
    Embedded(Box<Embedded>),
    Snapshot {
        path: PathBuf,
        view: Box<StatusView>,
    },
}

impl Backend {
    /// Opens the source the flags and config name. An unreachable configured Redis is an
    /// error (exit status 1); nothing configured means embedded mode.
    pub(crate) async fn open(settings: &Settings, config: RegistryConfig) -> anyhow::Result<Self> {
        if let Some(path) = &settings.args.snapshot {
            let text = read_local_text(path, MAX_SNAPSHOT_BYTES, "a snapshot")
                .map_err(|e| UsageError(format!("--snapshot: {e}")))?;
            let view: StatusView = serde_json::from_str(&text).map_err(|e| {
                UsageError(format!(
                    "--snapshot {} is not a cluster view (the JSON `status --json` prints): {e}",
                    path.display()
                ))
            })?;
            return Ok(Backend::Snapshot {
                path: path.clone(),
                view: Box::new(view),
            });
        }
        if let Some(url) = settings.redis_url() {
            let lazy =
                RedisRegistry::new_lazy(&url, config).map_err(|e| UsageError(e.to_string()))?;
            lazy.ping().await?;
            return Ok(Backend::Redis(lazy));
        }
        eprintln!("{EMBEDDED_NOTICE}");
        let embedded = Embedded::new(settings)?;
        embedded.refresh().await?;
        Ok(Backend::Embedded(Box::new(embedded)))
    }

    /// `redis URL`, `embedded`, `snapshot FILE`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Backend::Redis(r) => format!("redis {}", redact_url(r.url())),
            Backend::Embedded(_) => "embedded (this machine only)".to_owned(),
            Backend::Snapshot { path, .. } => format!("snapshot {}", path.display()),
        }
    }

    /// The registry behind the source (none for a snapshot).
    pub(crate) fn registry(&self) -> Option<&dyn Registry> {
        match self {
            Backend::Redis(r) => Some(r),
            Backend::Embedded(e) => Some(&e.registry),
            Backend::Snapshot { .. } => None,
        }
    }

    /// Reads the registry (embedded: re-probes first).
    pub(crate) async fn read(&self) -> anyhow::Result<Option<ClusterView>> {
        match self {
            Backend::Redis(r) => Ok(Some(r.discover().await?)),
            Backend::Embedded(e) => {
                e.refresh().await?;
                Ok(Some(e.registry.discover().await?))
            }
            Backend::Snapshot { .. } => Ok(None),
        }
    }
}

/// A backend with the config's Ollama `nodes:`: what the cluster layer follows.
pub(crate) struct Source {
    pub(crate) backend: Backend,
    nodes: Vec<String>,
    ollama_timeout: Duration,
}

impl Source {
    pub(crate) fn new(backend: Backend, settings: &Settings) -> Source {
        Source {
            backend,
            nodes: settings.config.nodes.clone(),
            ollama_timeout: settings.config.ollama_timeout(),
        }
    }
}

#[async_trait]
impl Feed for Source {
    fn describe(&self) -> String {
        self.backend.describe()
    }

    async fn discover(&self) -> vramroute_cluster::Result<Option<ClusterView>> {
        self.backend
            .read()
            .await
            .map_err(|e| vramroute_cluster::Error::Source(format!("{e:#}")))
    }

    fn registry(&self) -> Option<&dyn Registry> {
        self.backend.registry()
    }

    /// Embedded mode re-probes on every discovery, which itself announces a change: it
    /// is refreshed by the timer only.
    fn wants_push(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    async fn ollama_nodes(&self) -> Vec<OllamaNodeInfo> {
        ask_ollama_nodes(&self.nodes, self.ollama_timeout).await
    }

    fn saved_view(&self) -> Option<StatusView> {
        match &self.backend {
            Backend::Snapshot { view, path } => {
                let mut v = (**view).clone();
                if !v.source.starts_with("snapshot ") {
                    v.source = format!("snapshot {} (saved from {})", path.display(), v.source);
                }
                Some(v)
            }
            _ => None,
        }
    }
}

/// One-shot commands: open the source, read it once, merge the Ollama nodes.
pub(crate) async fn load(settings: &Settings) -> anyhow::Result<(Source, StatusView)> {
    let backend = Backend::open(settings, RegistryConfig::default()).await?;
    let source = Source::new(backend, settings);
    if let Some(mut view) = source.saved_view() {
        view.model_sizes.extend(
            settings
                .config
                .model_sizes
                .iter()
                .map(|(k, v)| (k.clone(), *v)),
        );
        return Ok((source, view));
    }
    let cluster = source.backend.read().await?.unwrap_or_default();
    let ollama = source.ollama_nodes().await;
    let view = settings
        .live_config()
        .view_of(&cluster, &ollama, source.describe(), unix_now());
    Ok((source, view))
}

/// Probes the view's rpc backends (not for a saved view: its answers are the saved ones).
pub(crate) async fn probe_backends(source: &Source, view: &mut StatusView) {
    if !matches!(source.backend, Backend::Snapshot { .. }) {
        vramroute_cluster::BackendProber::default()
            .probe_view(view)
            .await;
    }
}

/// Runs an async command body on a small runtime.
pub(crate) fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(
    f: F,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}
