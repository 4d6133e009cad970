//! The memory backend: the same semantics, on tokio's paused clock.

use std::time::Duration;

use vramroute_registry::{
    Change, MemoryRegistry, PushMode, Registry, RegistryConfig, RouterMetadata, RpcBackend,
};

use vramroute_registry::testing::fixtures::GPU_STATS_NVIDIA;

use crate::common::{node, nvidia_record, rpc_record};

#[tokio::test(start_paused = true)]
async fn publish_discover_expire_and_push() {
    let reg = MemoryRegistry::new(RegistryConfig::default());
    let mut changes = reg.watch().await.unwrap();
    assert_eq!(changes.mode(), PushMode::Memory);
    let rec = node(1);
    reg.publish_stats(&rec).await.unwrap();
    reg.register("10.0.0.1", 50052, &rpc_record())
        .await
        .unwrap();
    assert_eq!(
        changes.recv().await,
        Some(Change::Updated(rec.node_id.to_string()))
    );
    assert_eq!(
        changes.recv().await,
        Some(Change::RpcUpdated("10.0.0.1:50052".into()))
    );
    let view = reg.discover().await.unwrap();
    assert_eq!(view.stats_of(&rec.node_id), Some(&rec));
    assert_eq!(view.rpc_node("10.0.0.1", 50052), Some(&rpc_record()));
    let ttl = reg.ttl("sollol:gpu:10.0.0.1:11434").unwrap();
    assert_eq!(ttl, Duration::from_secs(120));

    tokio::time::sleep(Duration::from_secs(119)).await;
    assert_eq!(reg.discover().await.unwrap().stats.len(), 1);
    // The expiry is pushed when it happens, without anyone reading.
    let removed = changes.recv().await;
    assert_eq!(removed, Some(Change::Removed(rec.node_id.to_string())));
    assert!(reg.discover().await.unwrap().stats.is_empty());
    assert_eq!(reg.discover().await.unwrap().rpc_nodes.len(), 1);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        changes.recv().await,
        Some(Change::RpcRemoved("10.0.0.1:50052".into()))
    );
    assert!(reg.discover().await.unwrap().rpc_nodes.is_empty());
}

#[tokio::test(start_paused = true)]
async fn deregister_locks_metadata_and_history() {
    let reg = MemoryRegistry::default();
    let (a, b) = (node(1), node(2));
    reg.publish_stats(&a).await.unwrap();
    reg.publish_stats(&b).await.unwrap();
    reg.register("10.0.0.1", 50052, &rpc_record())
        .await
        .unwrap();
    let mut changes = reg.watch().await.unwrap();
    reg.deregister(&a.node_id, Some(("10.0.0.1", 50052)))
        .await
        .unwrap();
    assert_eq!(
        changes.recv().await,
        Some(Change::Removed(a.node_id.to_string()))
    );
    assert_eq!(
        changes.recv().await,
        Some(Change::RpcRemoved("10.0.0.1:50052".into()))
    );
    let view = reg.discover().await.unwrap();
    assert_eq!(view.stats.len(), 1);
    assert!(view.rpc_nodes.is_empty());

    let history = reg.history(10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].1, a.to_stream_fields());

    let meta = RouterMetadata::new(vec![RpcBackend {
        host: "h".into(),
        port: 1,
    }]);
    reg.set_router_metadata(&meta).await.unwrap();
    assert_eq!(reg.router_metadata().await.unwrap(), Some(meta));
    assert_eq!(changes.recv().await, Some(Change::MetadataChanged));

    let ttl = Duration::from_secs(30);
    assert!(reg.try_lock("optimize", "a", ttl).await.unwrap());
    assert!(!reg.try_lock("optimize", "b", ttl).await.unwrap());
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(reg.try_lock("optimize", "b", ttl).await.unwrap());
    assert!(!reg.unlock("optimize", "a").await.unwrap());
    assert!(reg.unlock("optimize", "b").await.unwrap());
}

#[tokio::test]
async fn bad_records_are_skipped_like_redis() {
    let reg = MemoryRegistry::default();
    reg.insert_raw("sollol:gpu:10.1.2.3:11434", GPU_STATS_NVIDIA, None)
        .unwrap();
    reg.insert_raw("sollol:gpu:bad", "{nope", None).unwrap();
    reg.insert_raw("sollol:gpu:neg", r#"{"vendor": "amd", "gpus": [{"index": 0, "name": "x", "memory_free_mb": -1}], "timestamp": 1.0}"#, None).unwrap();
    reg.insert_raw("sollol:rpc:node:h:1", r#"{"has_gpu": true}"#, None)
        .unwrap();
    assert!(reg.insert_raw("other:key", "{}", None).is_err());
    let view = reg.discover().await.unwrap();
    assert_eq!(view.stats.len(), 1);
    assert_eq!(*view.stats[0].1, nvidia_record());
    let mut keys: Vec<&str> = view.skipped.iter().map(|s| s.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["sollol:gpu:bad", "sollol:gpu:neg", "sollol:rpc:node:h:1"]
    );
    assert_eq!(reg.skipped_records_total(), 3);
}

#[tokio::test(start_paused = true)]
async fn stream_is_capped() {
    let reg = MemoryRegistry::new({
        let mut registry_config = RegistryConfig::default();
        registry_config.stream_maxlen = 10;
        registry_config
    });
    for i in 0..50 {
        reg.publish_stats(&node(i)).await.unwrap();
    }
    assert_eq!(reg.history(100).await.unwrap().len(), 10);
}
