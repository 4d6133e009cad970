//! A gateway in front of fake Ollama nodes.

use std::sync::Arc;
use std::time::Duration;

use vramroute_cluster::{LiveCluster, LiveConfig, StatusView};
use vramroute_gateway::{Gateway, GatewayConfig, GatewayMetrics};
use vramroute_ollama::testing::{FakeModel, FakeOllama, FakeOllamaBuilder};
use vramroute_registry::{ClusterView, GpuStat, GpuStatsRecord};
use vramroute_router::Policy;

pub(crate) const GIB: u64 = 1 << 30;

/// A fake node with these models (1 GiB files; sizes for routing come from SOLLOL's
/// table).
pub(crate) fn fake(
    models: &[&str],
    tune: impl FnOnce(FakeOllamaBuilder) -> FakeOllamaBuilder,
) -> FakeOllama {
    let mut b = FakeOllama::builder();
    for m in models {
        b = b.model(FakeModel::new(m, GIB));
    }
    tune(b).start().expect("fake Ollama starts")
}

/// A node for the view: the fake's address as node id (its Ollama URL derives from
/// it), one GPU per `(total, free)` MiB.
pub(crate) struct NodeDef<'a> {
    pub(crate) fake: &'a FakeOllama,
    pub(crate) gpus: Vec<(u64, u64)>,
}

/// Nodes with known RAM (total MiB), so a CPU placement is checked too.
pub(crate) fn view_with_ram(nodes: &[NodeDef<'_>], ram_mb: u64) -> StatusView {
    let mut v = view(nodes);
    for n in &mut v.nodes {
        n.cpu_ram_total_mb = Some(ram_mb);
        n.cpu_ram_free_mb = Some(ram_mb);
    }
    v
}

pub(crate) fn node_id(f: &FakeOllama) -> String {
    f.addr().to_string()
}

pub(crate) fn view(nodes: &[NodeDef<'_>]) -> StatusView {
    let now = vramroute_cluster::unix_now();
    let mut cluster = ClusterView::default();
    for n in nodes {
        let id = node_id(n.fake);
        let mut rec = GpuStatsRecord::new(id.clone(), "nvidia", now);
        for (i, (total, free)) in n.gpus.iter().enumerate() {
            let mut g = GpuStat::new(u32::try_from(i).expect("few GPUs"), format!("GPU {i}"));
            g.memory_total_mb = Some(*total);
            g.memory_free_mb = Some(*free);
            rec.gpus.push(g);
        }
        cluster.stats.push((id.into(), Arc::new(rec)));
    }
    cluster.stats.sort_by(|a, b| a.0.cmp(&b.0));
    StatusView::from_cluster(&cluster, "test".into(), now, 30.0, 0.8)
}

/// A running gateway.
pub(crate) struct Harness {
    pub(crate) live: Arc<LiveCluster>,
    pub(crate) url: String,
    pub(crate) client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    republish: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
        self.republish.abort();
    }
}

impl Harness {
    /// Serves a gateway over `view` on a free loopback port; republishes the view every
    /// 50 ms so measured load reaches the router.
    pub(crate) async fn start(view: StatusView, config: GatewayConfig) -> Harness {
        let live = Arc::new(
            LiveCluster::new(view.clone(), Policy::default(), LiveConfig::default())
                .expect("valid view"),
        );
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(GatewayMetrics::new(&mut registry));
        let gw = Gateway::new(live.clone(), config, metrics).expect("valid config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = gw.serve(listener, std::future::pending()).await;
        });
        let l = live.clone();
        let republish = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                l.publish(view.clone(), 0);
            }
        });
        Harness {
            live,
            url,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            server,
            republish,
        }
    }

    /// Stops republishing the start view (a test publishes its own views), and waits
    /// out a publish in progress.
    pub(crate) async fn stop_republishing(&self) {
        self.republish.abort();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    pub(crate) fn post(&self, path: &str, body: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body.to_owned())
    }
}

/// The header's text.
pub(crate) fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
