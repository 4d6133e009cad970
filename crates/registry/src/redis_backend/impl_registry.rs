//! `impl Registry for RedisRegistry`: the trait's entry points, delegating to the
//! modules that own each concern (`write`, `discover`, `pubsub`), plus the small reads
//! (metadata, history, ping) and the optimize lock (`scripts`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use redis::Value;
use tokio::sync::mpsc;

use super::exec::is_wrong_type;
use super::pubsub;
use super::state::RedisRegistry;
use super::value::stream_entries;
use crate::change::ChangeStream;
use crate::config::RegistryConfig;
use crate::error::Result;
use crate::keys;
use crate::record::{GpuStatsRecord, RouterMetadata, RpcNodeRecord};
use crate::registry::Registry;
use crate::validate;
use crate::view::ClusterView;
use crate::watch::QUEUE;

#[async_trait]
impl Registry for RedisRegistry {
    async fn publish_stats(&self, record: &GpuStatsRecord) -> Result<()> {
        self.write_stats(record).await
    }

    async fn register(&self, host: &str, port: u16, record: &RpcNodeRecord) -> Result<()> {
        self.write_registration(host, port, record).await
    }

    async fn deregister(&self, node_id: &str, rpc: Option<(&str, u16)>) -> Result<()> {
        self.delete_records(node_id, rpc).await
    }

    async fn set_router_metadata(&self, metadata: &RouterMetadata) -> Result<()> {
        self.write_metadata(metadata).await
    }

    async fn router_metadata(&self) -> Result<Option<RouterMetadata>> {
        // `None`: the key holds another Redis type (treated as absent, counted).
        let raw: Option<Option<Vec<u8>>> = self
            .run("GET", |mut c| async move {
                match redis::cmd("GET")
                    .arg(keys::ROUTER_METADATA)
                    .query_async(&mut c)
                    .await
                {
                    Err(e) if is_wrong_type(&e) => Ok(None),
                    r => r.map(Some),
                }
            })
            .await?;
        let mut skipped = Vec::new();
        let Some(raw) = raw else {
            self.skip(
                &mut skipped,
                keys::ROUTER_METADATA.to_owned(),
                "not a string; SOLLOL's metadata is a JSON string".to_owned(),
            );
            return Ok(None);
        };
        Ok(raw.and_then(
            |raw| match validate::decode_metadata(&raw, &self.inner.config.limits) {
                Ok(m) => Some(m),
                Err(reason) => {
                    self.skip(&mut skipped, keys::ROUTER_METADATA.to_owned(), reason);
                    None
                }
            },
        ))
    }

    async fn discover(&self) -> Result<ClusterView> {
        self.discover_bounded().await
    }

    async fn watch(&self) -> Result<ChangeStream> {
        let (pubsub, mode) = self.subscribe().await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(pubsub::watch_task(self.clone(), pubsub, mode, tx));
        Ok(ChangeStream::new(rx, mode, Some(task)))
    }

    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let (key, owner, ms) = (
            keys::lock_key(name),
            owner.to_owned(),
            ttl.as_millis().max(1) as u64,
        );
        let script = self.inner.scripts.try_lock.clone();
        let got: i64 = self
            .run("lock", |mut c| async move {
                script
                    .key(key)
                    .arg(owner)
                    .arg(ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(got == 1)
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<bool> {
        let (key, owner) = (keys::lock_key(name), owner.to_owned());
        let script = self.inner.scripts.unlock.clone();
        let got: i64 = self
            .run("unlock", |mut c| async move {
                script.key(key).arg(owner).invoke_async(&mut c).await
            })
            .await?;
        Ok(got == 1)
    }

    async fn history(&self, count: usize) -> Result<Vec<(String, Vec<(String, String)>)>> {
        let reply: Value = self
            .run("XREVRANGE", |mut c| async move {
                redis::cmd("XREVRANGE")
                    .arg(keys::GPU_STATS_STREAM)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut out = stream_entries(reply);
        out.reverse();
        Ok(out)
    }

    async fn ping(&self) -> Result<()> {
        self.run("PING", |mut c| async move {
            redis::cmd("PING").query_async::<()>(&mut c).await
        })
        .await
    }

    fn skipped_records_total(&self) -> u64 {
        self.inner.skipped.load(Ordering::Relaxed)
    }

    fn forget_discovered(&self) {
        self.clear_decode_cache();
    }

    fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }
}
