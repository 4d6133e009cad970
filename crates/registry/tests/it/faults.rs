//! Redis down, restarted, slow, or refusing credentials.

use std::time::{Duration, Instant};

use vramroute_registry::testing::RedisServer;
use vramroute_registry::{Change, Error, PushMode, RedisRegistry, Registry};

use crate::common::{cfg, eventually, node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_run_errors_cleanly_then_recovers() {
    let mut server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    reg.publish_stats(&node(1)).await.unwrap();
    let mut changes = reg.watch().await.unwrap();

    server.stop();
    let start = Instant::now();
    let err = reg.publish_stats(&node(2)).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(err, Error::Unreachable { .. } | Error::Timeout { .. }),
        "unexpected error: {err}"
    );
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    let start = Instant::now();
    assert!(reg.discover().await.is_err());
    assert!(start.elapsed() < Duration::from_secs(3));

    server.restart().unwrap();
    let recovered = eventually(Duration::from_secs(10), || async {
        reg.publish_stats(&node(3)).await.is_ok()
    })
    .await;
    assert!(recovered, "did not recover after the restart");
    let view = reg.discover().await.unwrap();
    assert_eq!(
        view.stats.len(),
        1,
        "restarted server is empty but for the new record"
    );
    // The watcher reconnects and tells its consumer to resynchronise.
    let mut saw_resync = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(Change::Resync) = changes.recv_timeout(Duration::from_millis(500)).await {
            saw_resync = true;
            break;
        }
    }
    assert!(saw_resync, "watch did not resync after the restart");
    reg.publish_stats(&node(4)).await.unwrap();
    let mut pushed = false;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if changes.recv_timeout(Duration::from_millis(500)).await
            == Some(Change::Updated(node(4).node_id.to_string()))
        {
            pushed = true;
            break;
        }
    }
    assert!(pushed, "push works again after the restart");
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_fast_error() {
    // A port nothing listens on: take a free one and release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}/0");
    let start = Instant::now();
    let err = RedisRegistry::connect(&url, cfg()).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3));
    let msg = err.to_string();
    assert!(matches!(err, Error::Unreachable { .. }), "{msg}");
    assert!(msg.contains("is it running"), "{msg}");
    assert!(!msg.contains("hunter2"), "password leaked: {msg}");
    assert!(msg.contains(":***@127.0.0.1"), "{msg}");
    // Lazy registries fail per call the same way, without hanging.
    let reg = RedisRegistry::new_lazy(&url, cfg()).unwrap();
    for _ in 0..3 {
        let start = Instant::now();
        assert!(reg.discover().await.is_err());
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}

#[tokio::test]
async fn paused_server_times_out_instead_of_hanging() {
    let server = RedisServer::start().unwrap();
    let reg = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    server.cli(&["CLIENT", "PAUSE", "3000", "ALL"]).unwrap();
    let start = Instant::now();
    let err = reg.discover().await.unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert!(err.to_string().contains("did not answer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_password_auth_good_and_bad() {
    let server = RedisServer::builder()
        .password("s3cret-pw")
        .start()
        .unwrap();
    let good = RedisRegistry::connect(&server.url(), cfg()).await.unwrap();
    good.publish_stats(&node(1)).await.unwrap();
    assert_eq!(good.discover().await.unwrap().stats.len(), 1);

    let port = server.port().unwrap();
    for url in [
        format!("redis://:wrong-pw-123@127.0.0.1:{port}/0"),
        format!("redis://nobody:wrong-pw-123@127.0.0.1:{port}/0"),
        format!("redis://127.0.0.1:{port}/0"),
    ] {
        let err = RedisRegistry::connect(&url, cfg()).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Auth { .. }), "{url}: {msg}");
        assert!(!msg.contains("wrong-pw-123"), "password leaked: {msg}");
        assert!(msg.contains("password"), "says what to check: {msg}");
    }

    // An ACL user like the one docs/operations.md recommends for reporters: may write
    // our keys but not CONFIG, so change push falls back to channel + polling.
    server
        .cli(&[
            "ACL",
            "SETUSER",
            "reporter",
            "on",
            ">rep-pw",
            "~sollol:*",
            "~vramroute:*",
            "&vramroute:*",
            "+@all",
            "-@dangerous",
        ])
        .unwrap();
    let url = format!("redis://reporter:rep-pw@127.0.0.1:{port}/0");
    let reporter = RedisRegistry::connect(&url, cfg()).await.unwrap();
    reporter.publish_stats(&node(2)).await.unwrap();
    assert_eq!(reporter.discover().await.unwrap().stats.len(), 2);
    assert_eq!(
        reporter.watch().await.unwrap().mode(),
        PushMode::ChannelAndPolling
    );
    assert!(!format!("{reporter:?}").contains("rep-pw"));
}
