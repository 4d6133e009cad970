//! `sync_router_metadata`: SOLLOL's router metadata kept current from the view's live
//! registrations, written only by the lock holder.

use std::time::Duration;

use vramroute_cluster::{
    keep_lock_renewed, lock_owner_id, optimize_lock_ttl, registered_backends, sync_router_metadata,
    Feed, MetadataLock, MetadataSync, RegistryFeed, StatusView, OPTIMIZE_LOCK,
};
use vramroute_registry::{MemoryRegistry, Registry, RouterMetadata, RpcBackend};

use crate::common::{cluster, registration, NOW};

const TTL: Duration = Duration::from_secs(30);

fn backend(host: &str, port: u16) -> RpcBackend {
    RpcBackend {
        host: host.to_owned(),
        port,
    }
}

/// A view with live registrations of `hosts` (port 50052) and the metadata `metadata`.
fn view(hosts: &[&str], metadata: Option<RouterMetadata>) -> StatusView {
    let mut c = cluster(
        Vec::new(),
        hosts
            .iter()
            .map(|h| registration(h, 8192, &[24000]))
            .collect(),
    );
    c.metadata = metadata;
    StatusView::from_cluster(&c, "test".into(), NOW, 30.0, 0.8)
}

fn listed(m: &RouterMetadata) -> Vec<(String, u16)> {
    m.rpc_backends
        .iter()
        .map(|b| (b.host.clone(), b.port))
        .collect()
}

#[tokio::test]
async fn registered_backends_are_written_once_and_others_entries_stay() {
    let reg = MemoryRegistry::default();
    // SOLLOL's tools listed a backend of their own.
    let mut theirs = RouterMetadata::default();
    theirs.rpc_backends.push(backend("10.0.0.9", 50052));
    reg.set_router_metadata(&theirs).await.expect("seed");
    let v = view(&["10.0.0.2", "10.0.0.1"], Some(theirs.clone()));
    // The metadata-only entry is in the view but not registered.
    assert_eq!(
        registered_backends(&v),
        [backend("10.0.0.1", 50052), backend("10.0.0.2", 50052)]
    );
    let lock = MetadataLock::new("optimize", "me", TTL);

    match sync_router_metadata(&reg, &v, lock).await {
        MetadataSync::Written { rpc_backends } => assert_eq!(rpc_backends, 3),
        other => panic!("expected a write, got {other:?}"),
    }
    let written = reg.router_metadata().await.expect("read").expect("present");
    assert_eq!(
        listed(&written),
        [
            ("10.0.0.9".to_owned(), 50052),
            ("10.0.0.1".to_owned(), 50052),
            ("10.0.0.2".to_owned(), 50052)
        ]
    );
    // Nothing moved: nothing is written (the lock is not even asked for).
    assert!(matches!(
        sync_router_metadata(&reg, &v, lock).await,
        MetadataSync::Unchanged
    ));
    // A backend that is no longer registered goes; the entry others wrote stays.
    let v = view(&["10.0.0.2"], Some(written));
    assert!(matches!(
        sync_router_metadata(&reg, &v, lock).await,
        MetadataSync::Written { rpc_backends: 2 }
    ));
    let after = reg.router_metadata().await.expect("read").expect("present");
    assert_eq!(
        listed(&after),
        [
            ("10.0.0.9".to_owned(), 50052),
            ("10.0.0.2".to_owned(), 50052)
        ]
    );
}

#[tokio::test]
async fn another_owners_lock_means_nothing_is_written() {
    let reg = MemoryRegistry::default();
    assert!(reg.try_lock("optimize", "other", TTL).await.expect("lock"));
    let v = view(&["10.0.0.1"], None);
    assert!(matches!(
        sync_router_metadata(&reg, &v, MetadataLock::new("optimize", "me", TTL)).await,
        MetadataSync::LockLost
    ));
    assert_eq!(reg.router_metadata().await.expect("read"), None);
    // The holder writes.
    assert!(matches!(
        sync_router_metadata(&reg, &v, MetadataLock::new("optimize", "other", TTL)).await,
        MetadataSync::Written { rpc_backends: 1 }
    ));
}

/// A held optimize lock stays held past its time to live while its renewal runs, and
/// expires once the renewal is dropped, so another owner can take it.
#[tokio::test]
async fn a_renewed_lock_outlives_its_ttl_and_expires_once_dropped() {
    let ttl = Duration::from_millis(600);
    let feed = std::sync::Arc::new(RegistryFeed::new(MemoryRegistry::default(), "memory"));
    let me = lock_owner_id();
    let reg = feed.registry().expect("a registry");
    assert!(reg.try_lock(OPTIMIZE_LOCK, &me, ttl).await.expect("lock"));
    let renewal = keep_lock_renewed(feed.clone(), OPTIMIZE_LOCK, me.clone(), ttl);
    tokio::time::sleep(ttl * 2).await;
    let reg = feed.registry().expect("a registry");
    assert!(
        !reg.try_lock(OPTIMIZE_LOCK, "other", ttl)
            .await
            .expect("lock"),
        "renewed: still mine after twice its ttl"
    );
    drop(renewal);
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert!(
        reg.try_lock(OPTIMIZE_LOCK, "other", ttl)
            .await
            .expect("lock"),
        "not renewed: expired"
    );
}

/// Two owner ids made in one process differ (the random part), and name the process.
#[test]
fn lock_owner_ids_are_unique_and_name_the_process() {
    let (a, b) = (lock_owner_id(), lock_owner_id());
    assert_ne!(a, b);
    assert!(a.contains(&format!(":{}:", std::process::id())), "{a}");
    assert_eq!(
        optimize_lock_ttl(Duration::from_secs(60)),
        Duration::from_secs(90)
    );
}
