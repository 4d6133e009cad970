//! `probe` against the fake server in every state, each within its time bound.

use std::time::{Duration, Instant};

use vramroute_rpc::testing::{FakeRpcServer, ServerBehaviour};
use vramroute_rpc::{probe, Probe, ProbeOptions, RpcState};

const GIB: u64 = 1 << 30;
/// Scheduling slack on a loaded CI machine.
const SLACK: Duration = Duration::from_millis(1500);

fn opts() -> ProbeOptions {
    ProbeOptions {
        connect_timeout: Duration::from_millis(300),
        io_timeout: Duration::from_millis(400),
        max_devices: 16,
    }
}

/// Probe `addr` and check the probe's time bound two ways (its own clock and ours).
async fn probe_within(addr: &str, opts: &ProbeOptions, bound: Duration) -> Probe {
    let start = Instant::now();
    let p = probe(addr, opts).await;
    let wall = start.elapsed();
    assert!(
        wall <= bound + SLACK,
        "probe took {wall:?}, bound {bound:?}: {p:?}"
    );
    assert!(
        u128::from(p.elapsed_ms) <= wall.as_millis() + 1,
        "elapsed_ms {} > wall {wall:?}",
        p.elapsed_ms
    );
    assert_eq!(p.addr, addr);
    p
}

fn bad_reply(p: &Probe) -> &str {
    match &p.state {
        RpcState::BadReply(reason) => reason,
        other => panic!("expected bad_reply, got {other:?}: {}", p.detail),
    }
}

#[tokio::test]
async fn known_versions_report_every_device() {
    for version in [(5, 1, 0), (6, 0, 1), (7, 0, 0)] {
        let fake = FakeRpcServer::builder()
            .version(version.0, version.1, version.2)
            .devices(&[
                (20 * GIB, 24 * GIB),
                (7 * GIB, 8 * GIB),
                (64 * GIB, 64 * GIB),
            ])
            .start()
            .expect("fake starts");
        let o = opts();
        let p = probe_within(&fake.addr(), &o, o.connect_timeout + o.io_timeout * 3).await;
        assert_eq!(p.state, RpcState::Reachable, "{}", p.detail);
        assert_eq!(p.version, Some(version));
        assert_eq!(p.device_count, Some(3));
        let got: Vec<_> = p
            .devices
            .iter()
            .map(|d| (d.index, d.free_bytes, d.total_bytes))
            .collect();
        assert_eq!(
            got,
            [
                (0, 20 * GIB, 24 * GIB),
                (1, 7 * GIB, 8 * GIB),
                (2, 64 * GIB, 64 * GIB)
            ]
        );
        assert_eq!(p.devices[1].free_mib(), 7 * 1024);
        assert_eq!(p.devices[1].total_mib(), 8 * 1024);
        assert_eq!(p.free_mib(), 91 * 1024);
        assert_eq!(p.total_mib(), 96 * 1024);
        let v = format!("{}.{}.{}", version.0, version.1, version.2);
        assert_eq!(p.version_string().as_deref(), Some(v.as_str()));
        assert!(p.detail.contains(&format!("v{v}")), "{}", p.detail);
        assert!(p.detail.contains("3 devices"), "{}", p.detail);
        // One connection, one HELLO, one DEVICE_COUNT, one memory query per device.
        assert_eq!(fake.connections(), 1);
        assert_eq!(fake.commands_of(14), 1);
        assert_eq!(fake.commands_of(15), 1);
        assert_eq!(fake.commands_of(11), 3);
        assert_eq!(fake.commands(), 5);
    }
}

#[tokio::test]
async fn at_most_max_devices_are_queried() {
    let devices: Vec<(u64, u64)> = (0..20).map(|i| (i * GIB, 32 * GIB)).collect();
    let fake = FakeRpcServer::builder()
        .devices(&devices)
        .start()
        .expect("fake starts");
    let o = ProbeOptions {
        max_devices: 4,
        ..opts()
    };
    let p = probe_within(&fake.addr(), &o, o.max_total()).await;
    assert_eq!(p.state, RpcState::Reachable, "{}", p.detail);
    assert_eq!(p.device_count, Some(20));
    assert_eq!(p.devices.len(), 4);
    assert_eq!(p.devices[3].free_bytes, 3 * GIB);
    assert!(p.detail.contains("first 4"), "{}", p.detail);
    assert_eq!(fake.commands_of(11), 4);
}

#[tokio::test]
async fn a_server_that_never_answers_is_busy_after_the_io_timeout() {
    let fake = FakeRpcServer::builder()
        .behaviour(ServerBehaviour::NeverAnswer)
        .start()
        .expect("fake starts");
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.connect_timeout + o.io_timeout).await;
    assert_eq!(p.state, RpcState::Busy, "{}", p.detail);
    assert!(p.elapsed_ms >= 350, "gave up early: {} ms", p.elapsed_ms);
    assert!(p.version.is_none() && p.devices.is_empty());
    assert!(p.detail.contains("one client at a time"), "{}", p.detail);
    assert_eq!(fake.commands_of(14), 1);
}

#[tokio::test]
async fn a_server_with_a_client_attached_is_busy_then_reachable_when_it_leaves() {
    let fake = FakeRpcServer::builder().start().expect("fake starts");
    let attached = fake.attach(Duration::from_secs(2)).expect("attach");
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.connect_timeout + o.io_timeout).await;
    assert_eq!(p.state, RpcState::Busy, "{}", p.detail);
    assert!(p.state.is_alive());
    // The probe's connection was accepted by the kernel, not by the server.
    assert_eq!(fake.connections(), 1);
    drop(attached);
    let p = probe_within(&fake.addr(), &o, o.max_total()).await;
    assert_eq!(p.state, RpcState::Reachable, "{}", p.detail);
    assert_eq!(p.devices.len(), 1);
}

#[tokio::test]
async fn busy_behaviour_then_normal() {
    let fake = FakeRpcServer::builder()
        .behaviour(ServerBehaviour::Busy)
        .start()
        .expect("fake starts");
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.connect_timeout + o.io_timeout).await;
    assert_eq!(p.state, RpcState::Busy, "{}", p.detail);
    assert_eq!(fake.connections(), 0);
    fake.set_behaviour(ServerBehaviour::Normal);
    let p = probe_within(&fake.addr(), &o, o.max_total()).await;
    assert_eq!(p.state, RpcState::Reachable, "{}", p.detail);
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_at_once() {
    let fake = FakeRpcServer::builder()
        .behaviour(ServerBehaviour::Refuse)
        .start()
        .expect("fake starts");
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.connect_timeout).await;
    assert_eq!(p.state, RpcState::Unreachable, "{}", p.detail);
    assert!(!p.state.is_alive());
    assert!(p.detail.contains("refused"), "{}", p.detail);
    assert_eq!(fake.connections(), 0);
}

#[tokio::test]
async fn an_unresolvable_address_is_unreachable() {
    let o = opts();
    let p = probe_within("no-port-here", &o, o.connect_timeout).await;
    assert_eq!(p.state, RpcState::Unreachable, "{}", p.detail);
}

#[tokio::test]
async fn garbage_is_a_bad_reply_that_names_what_answered() {
    let fake = FakeRpcServer::builder()
        .behaviour(ServerBehaviour::Garbage)
        .start()
        .expect("fake starts");
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.connect_timeout + o.io_timeout).await;
    let reason = bad_reply(&p);
    assert!(reason.contains("HTTP/1.1"), "{reason}");
    assert!(p.detail.contains("another service"), "{}", p.detail);
    assert!(p.version.is_none());
}

#[tokio::test]
async fn a_reply_cut_short_is_a_bad_reply() {
    let fake = FakeRpcServer::builder()
        .behaviour(ServerBehaviour::CloseMidReply)
        .start()
        .expect("fake starts");
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.connect_timeout + o.io_timeout).await;
    let reason = bad_reply(&p);
    assert!(reason.contains("closed"), "{reason}");
    assert!(reason.contains("10 of 36"), "{reason}");
    // Not mistaken for an old server: no second connection.
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn a_2_pow_60_reply_size_is_refused_without_reading_it() {
    let fake = FakeRpcServer::builder()
        .behaviour(ServerBehaviour::HugeSize)
        .start()
        .expect("fake starts");
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.connect_timeout + o.io_timeout).await;
    let reason = bad_reply(&p);
    assert!(reason.contains(&(1u64 << 60).to_string()), "{reason}");
    // It gave up on the size alone: it neither waited for nor allocated the payload
    // (2^60 bytes would abort the process).
    assert!(
        p.elapsed_ms < 400,
        "waited {} ms for a reply it should refuse",
        p.elapsed_ms
    );
}

#[tokio::test]
async fn an_unknown_major_is_reported_not_dead() {
    let fake = FakeRpcServer::builder()
        .version(8, 0, 0)
        .start()
        .expect("fake starts");
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.connect_timeout + o.io_timeout).await;
    assert_eq!(p.state, RpcState::UnknownProtocol, "{}", p.detail);
    assert!(p.state.is_alive());
    assert_eq!(p.version, Some((8, 0, 0)));
    assert!(p.devices.is_empty() && p.device_count.is_none());
    assert!(p.detail.contains("v8.0.0"), "{}", p.detail);
    assert!(p.detail.contains("5, 6, 7"), "{}", p.detail);
    // Nothing after HELLO is sent to a protocol this crate does not know.
    assert_eq!(fake.commands(), 1);
}

#[tokio::test]
async fn a_server_from_before_the_capability_exchange_is_an_unknown_protocol() {
    let fake = FakeRpcServer::builder()
        .version(3, 0, 0)
        .start()
        .expect("fake starts");
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.max_total()).await;
    assert_eq!(p.state, RpcState::UnknownProtocol, "{}", p.detail);
    assert_eq!(p.version, Some((3, 0, 0)));
    assert!(p.detail.contains("before April 2026"), "{}", p.detail);
    // The 24-byte HELLO was refused (connection closed), the empty one answered.
    assert_eq!(fake.connections(), 2);
    assert_eq!(fake.commands_of(14), 2);
}

#[tokio::test]
async fn a_server_that_hangs_up_on_every_hello_is_a_bad_reply() {
    let fake = FakeRpcServer::builder()
        .behaviour(ServerBehaviour::CloseOnHello)
        .start()
        .expect("fake starts");
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.max_total()).await;
    let reason = bad_reply(&p);
    assert!(reason.contains("without a reply"), "{reason}");
    assert!(p.detail.contains("not an rpc-server"), "{}", p.detail);
    assert_eq!(fake.connections(), 2);
}

#[tokio::test]
async fn probes_serialise_with_stable_state_names() {
    let fake = FakeRpcServer::builder()
        .devices(&[(GIB, 2 * GIB)])
        .start()
        .expect("fake starts");
    let p = probe(&fake.addr(), &opts()).await;
    let json = serde_json::to_value(&p).expect("serialises");
    assert_eq!(json["state"], "reachable");
    assert_eq!(json["version"], serde_json::json!([7, 0, 0]));
    assert_eq!(json["devices"][0]["free_bytes"], GIB);
    assert_eq!(json["devices"][0]["total_bytes"], 2 * GIB);
    let back: Probe = serde_json::from_value(json).expect("deserialises");
    assert_eq!(back, p);

    let bad = serde_json::to_value(RpcState::BadReply("x".into())).expect("serialises");
    assert_eq!(bad, serde_json::json!({"bad_reply": "x"}));
    assert_eq!(RpcState::BadReply("x".into()).as_str(), "bad_reply");
    assert_eq!(RpcState::UnknownProtocol.as_str(), "unknown_protocol");
}

#[tokio::test]
async fn probe_all_keeps_order_and_probes_a_repeated_address_once() {
    let a = FakeRpcServer::builder()
        .version(5, 1, 0)
        .start()
        .expect("fake starts");
    let b = FakeRpcServer::builder()
        .behaviour(ServerBehaviour::NeverAnswer)
        .start()
        .expect("fake starts");
    let addrs = vec![a.addr(), b.addr(), a.addr()];
    let o = opts();
    let start = Instant::now();
    let probes = vramroute_rpc::probe_all(&addrs, &o).await;
    // Concurrent: one probe's bound, not the sum.
    assert!(
        start.elapsed() <= o.max_total() + SLACK,
        "{:?}",
        start.elapsed()
    );
    let states: Vec<_> = probes
        .iter()
        .map(|p| (p.addr.clone(), p.state.clone()))
        .collect();
    assert_eq!(
        states,
        [
            (a.addr(), RpcState::Reachable),
            (b.addr(), RpcState::Busy),
            (a.addr(), RpcState::Reachable),
        ]
    );
    // Probed once, not twice (a second concurrent probe would have looked busy).
    assert_eq!(a.connections(), 1);
}

#[tokio::test]
async fn a_full_accept_queue_looks_unreachable() {
    // rpc-server listens with a backlog of 1: while it serves a client, the kernel queues
    // at most two more connections and drops further SYNs, so a probe's connect times out.
    let fake = FakeRpcServer::builder()
        .behaviour(ServerBehaviour::Busy)
        .start()
        .expect("fake starts");
    let mut queued = Vec::new();
    let mut refused_one = false;
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&fake.socket_addr(), Duration::from_millis(200))
        {
            Ok(s) => queued.push(s),
            Err(_) => {
                refused_one = true;
                break;
            }
        }
    }
    assert!(
        refused_one,
        "{} connections queued, none dropped",
        queued.len()
    );
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.connect_timeout).await;
    assert_eq!(p.state, RpcState::Unreachable, "{}", p.detail);
    assert!(p.detail.contains("accept queue"), "{}", p.detail);
    assert!(p.elapsed_ms >= 250, "{} ms", p.elapsed_ms);
}

#[tokio::test]
async fn refuse_can_be_switched_on_and_off_while_running() {
    let fake = FakeRpcServer::builder().start().expect("fake starts");
    let o = opts();
    assert_eq!(probe(&fake.addr(), &o).await.state, RpcState::Reachable);
    fake.set_behaviour(ServerBehaviour::Refuse);
    // The server drops its listener when it sees the change: bounded wait for that.
    let mut state = RpcState::Reachable;
    for _ in 0..50 {
        state = probe(&fake.addr(), &o).await.state;
        if state == RpcState::Unreachable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, RpcState::Unreachable);
    fake.set_behaviour(ServerBehaviour::Normal);
    let mut p = probe(&fake.addr(), &o).await;
    for _ in 0..50 {
        if p.state == RpcState::Reachable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        p = probe(&fake.addr(), &o).await;
    }
    assert_eq!(p.state, RpcState::Reachable, "{}", p.detail);
}

#[tokio::test]
async fn a_fork_with_a_longer_hello_reply_is_still_probed() {
    let fake = FakeRpcServer::builder()
        .version(7, 4, 0)
        .hello_extra(6)
        .devices(&[(3 * GIB, 4 * GIB)])
        .start()
        .expect("fake starts");
    let o = opts();
    let p = probe_within(&fake.addr(), &o, o.max_total()).await;
    assert_eq!(p.state, RpcState::Reachable, "{}", p.detail);
    assert_eq!(p.version, Some((7, 4, 0)));
    assert_eq!(p.devices.len(), 1);
    assert!(p.detail.contains("6 bytes more"), "{}", p.detail);
}
