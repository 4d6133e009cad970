//! The fake server speaks rpc-server's exact bytes (checked with a raw socket, not with
//! the crate's own encoder) and serves one client at a time.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use vramroute_rpc::testing::FakeRpcServer;

const TIMEOUT: Duration = Duration::from_secs(2);

fn connect(fake: &FakeRpcServer) -> TcpStream {
    let s = TcpStream::connect_timeout(&fake.socket_addr(), TIMEOUT).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s
}

fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("reply");
    buf
}

/// True when the server closed the connection (EOF or reset) within the timeout.
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn the_fake_answers_the_documented_bytes() {
    let fake = FakeRpcServer::builder()
        .version(7, 0, 1)
        .devices(&[(1, 2), (0x0102_0304_0506_0708, 0x1112_1314_1516_1718)])
        .start()
        .expect("fake starts");
    let mut s = connect(&fake);
    let mut hello = vec![14u8, 24, 0, 0, 0, 0, 0, 0, 0];
    hello.extend_from_slice(&[0; 24]);
    s.write_all(&hello).expect("send");
    let reply = read_n(&mut s, 36);
    assert_eq!(&reply[..12], &[28, 0, 0, 0, 0, 0, 0, 0, 7, 0, 1, 0]);
    assert!(reply[12..].iter().all(|b| *b == 0));

    s.write_all(&[15, 0, 0, 0, 0, 0, 0, 0, 0]).expect("send");
    assert_eq!(read_n(&mut s, 12), [4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);

    s.write_all(&[11, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
        .expect("send");
    let mem = read_n(&mut s, 24);
    assert_eq!(&mem[..8], &[16, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&mem[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(
        &mem[16..],
        &[0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11]
    );

    // A device index out of range: the real server hangs up.
    s.write_all(&[11, 4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0])
        .expect("send");
    assert!(closed(&mut s));
}

#[test]
fn the_fake_hangs_up_where_rpc_server_does() {
    let fake = FakeRpcServer::builder().start().expect("fake starts");
    // First command not HELLO.
    let mut s = connect(&fake);
    s.write_all(&[15, 0, 0, 0, 0, 0, 0, 0, 0]).expect("send");
    assert!(closed(&mut s));
    // HELLO of the old, empty shape to a current server.
    let mut s = connect(&fake);
    s.write_all(&[14, 0, 0, 0, 0, 0, 0, 0, 0]).expect("send");
    assert!(closed(&mut s));
    assert_eq!(fake.connections(), 2);
}

#[test]
fn a_legacy_fake_answers_the_empty_hello_with_three_bytes() {
    let fake = FakeRpcServer::builder()
        .version(3, 0, 0)
        .start()
        .expect("fake starts");
    let mut s = connect(&fake);
    s.write_all(&[14, 0, 0, 0, 0, 0, 0, 0, 0]).expect("send");
    assert_eq!(read_n(&mut s, 11), [3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0]);
}

#[test]
fn the_fake_serves_one_client_at_a_time() {
    let fake = FakeRpcServer::builder().start().expect("fake starts");
    let attached = fake.attach(TIMEOUT).expect("attach");
    // A second client connects (the kernel's backlog) but gets no answer.
    let mut second = connect(&fake);
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut hello = vec![14u8, 24, 0, 0, 0, 0, 0, 0, 0];
    hello.extend_from_slice(&[0; 24]);
    second.write_all(&hello).expect("send");
    let mut b = [0u8; 1];
    let err = second
        .read(&mut b)
        .expect_err("no reply while another client is attached");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    // When the first leaves, the second is served.
    drop(attached);
    second.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    assert_eq!(
        &read_n(&mut second, 12)[..12],
        &[28, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0]
    );
    assert_eq!(fake.connections(), 2);
}
