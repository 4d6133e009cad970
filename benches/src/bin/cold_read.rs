//! `cold-read`: a profiling harness for cold discovery (a full read of every record, as
//! `discover_cold/*` in the `registry` bench), counting what wall-clock figures on a
//! shared machine cannot: heap allocations per read, bytes allocated per read, the
//! heap the registry keeps per node after a read, and the Redis server's CPU time per
//! read (`INFO cpu`). Under `valgrind --tool=callgrind` it gives repeatable instruction
//! counts (run it with 0 and with N rounds and take the difference; or profile
//! `cold_round` alone with `--collect-atstart=no --toggle-collect='*cold_round*'`).
//!
//! ```sh
//! cargo build --release -p vramroute-benches --bin cold-read
//! target/release/cold-read 1000 20           # nodes, rounds
//! valgrind --tool=dhat target/release/cold-read 10000 0 keep
//! target/release/cold-read 1000 20 floor     # and the floor under a cold read (below)
//! ```
//!
//! `floor` measures, round by round alternating with the cold read, what the same read
//! costs with no client work at all: the same two round trips' commands (the index
//! reads, then one `GETRANGE key 0 cap` per record) sent pipelined on a plain TCP
//! connection and their replies only counted (RESP framing, no copy, no decoding) —
//! the server's work and the transfer, which no client can go below with these
//! commands — and the same with the records read by two `MGET`s (the cheapest way for
//! the server to send them, but unbounded; see the registry's `bounded` module).
//!
//! It starts its own `redis-server` (loopback, a private port) and stops it at the end.

use std::hint::black_box;
use std::time::{Duration, Instant};

use std::io::{Read, Write};
use std::net::TcpStream;

use anyhow::{bail, Context, Result};
use vramroute_benches::registry_fixtures::{node_id, populate, rpc_host};
use vramroute_registry::testing::RedisServer;
use vramroute_registry::{keys, Limits, RedisRegistry, Registry, RegistryConfig};

/// One command in RESP (an array of bulk strings).
fn resp(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The end of the RESP reply starting at `at` in `buf`, if all of it is there.
fn reply_end(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(buf.get(at + 1..line_end)?).ok()?;
    let next = line_end + 2;
    match buf.get(at)? {
        b'+' | b'-' | b':' => Some(next),
        b'$' => match head.parse::<i64>().ok()? {
            n if n < 0 => Some(next),
            n => {
                let end = next + n as usize + 2;
                (buf.len() >= end).then_some(end)
            }
        },
        b'*' => {
            let mut pos = next;
            for _ in 0..head.parse::<i64>().ok()?.max(0) {
                pos = reply_end(buf, pos)?;
            }
            Some(pos)
        }
        _ => None,
    }
}

/// Sends `cmds` (`count` commands) on `conn` and reads until `count` replies are in;
/// returns the bytes received.
fn round_trip(conn: &mut TcpStream, cmds: &[u8], count: usize, buf: &mut Vec<u8>) -> Result<usize> {
    conn.write_all(cmds)?;
    buf.clear();
    let (mut pos, mut seen, mut chunk) = (0, 0, vec![0u8; 1 << 16]);
    while seen < count {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            bail!("server closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
        while seen < count {
            match reply_end(buf, pos) {
                Some(end) => (pos, seen) = (end, seen + 1),
                None => break,
            }
        }
    }
    Ok(buf.len())
}

/// The floor's two round trips for `nodes` nodes (see the module doc): the index
/// reads, then the records by `GETRANGE` (or by two `MGET`s).
struct Floor {
    head: Vec<u8>,
    getrange: Vec<u8>,
    mget: Vec<u8>,
    nodes: usize,
}

impl Floor {
    fn new(nodes: usize) -> Floor {
        let cap = Limits::default().max_record_bytes.to_string();
        let stats: Vec<String> = (0..nodes)
            .map(|i| keys::gpu_stats_key(&node_id(i)))
            .collect();
        let rpc: Vec<String> = (0..nodes)
            .map(|i| keys::rpc_node_key(&rpc_host(i), 50052))
            .collect();
        let mut head = Vec::new();
        for index in [keys::INDEX_GPU, keys::INDEX_RPC] {
            resp(&mut head, &["ZRANGEBYSCORE", index, "0", "+inf"]);
        }
        resp(
            &mut head,
            &["XREVRANGE", keys::CHANGES, "+", "-", "COUNT", "1"],
        );
        resp(&mut head, &["GET", keys::ROUTER_METADATA]);
        let mut getrange = Vec::new();
        for key in stats.iter().chain(&rpc) {
            resp(&mut getrange, &["GETRANGE", key, "0", &cap]);
        }
        let mut mget = Vec::new();
        for kind in [&stats, &rpc] {
            let mut args = vec!["MGET"];
            args.extend(kind.iter().map(String::as_str));
            resp(&mut mget, &args);
        }
        Floor {
            head,
            getrange,
            mget,
            nodes,
        }
    }

    /// One read: returns the bytes received.
    #[inline(never)]
    fn round(&self, conn: &mut TcpStream, mget: bool, buf: &mut Vec<u8>) -> Result<usize> {
        let mut bytes = round_trip(conn, &self.head, 4, buf)?;
        bytes += if mget {
            round_trip(conn, &self.mget, 2, buf)?
        } else {
            round_trip(conn, &self.getrange, 2 * self.nodes, buf)?
        };
        Ok(bytes)
    }
}

/// One cold read (what `discover_cold` times): the view is dropped inside.
#[inline(never)]
fn cold_round(rt: &tokio::runtime::Runtime, reg: &RedisRegistry) -> Result<usize> {
    let view = rt.block_on(reg.discover())?;
    let n = view.stats.len() + view.rpc_nodes.len();
    drop(black_box(view));
    Ok(n)
}

/// The Redis server's CPU time so far (`used_cpu_sys` + `used_cpu_user`), seconds.
fn server_cpu(server: &RedisServer) -> Result<f64> {
    let info = server.cli(&["INFO", "cpu"])?;
    let mut total = 0.0;
    for line in info.lines() {
        if let Some((k, v)) = line.trim().split_once(':') {
            if k == "used_cpu_sys" || k == "used_cpu_user" {
                total += v.parse::<f64>().context("INFO cpu")?;
            }
        }
    }
    Ok(total)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(10), |a| a.parse())?;
    let end = args.next().unwrap_or_else(|| "drop".to_owned());
    if nodes == 0
        || nodes > 100_000
        || rounds > 10_000
        || !["drop", "keep", "clear", "floor"].contains(&end.as_str())
    {
        bail!("usage: cold-read [NODES 1..100000] [ROUNDS 0..10000] [drop|keep|clear|floor]");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut server = RedisServer::start().context("start redis-server (is it installed?)")?;
    let mut config = RegistryConfig::default();
    config.command_timeout = Duration::from_secs(10);
    let reg = rt.block_on(RedisRegistry::connect(&server.url(), config))?;
    rt.block_on(populate(&reg, nodes))?;
    // The first discovery also sweeps with SCAN (and connects): done in every run, so
    // the difference between runs of 0 and N rounds is N cold reads alone (as in the
    // bench, whose setup discovers once).
    cold_round(&rt, &reg)?;

    if end == "floor" {
        return floor(&rt, &server, &reg, nodes, rounds);
    }
    let mut elapsed = Duration::ZERO;
    let cpu_before = server_cpu(&server)?;
    for _ in 0..rounds {
        reg.clear_decode_cache();
        let start = Instant::now();
        let n = cold_round(&rt, &reg)?;
        elapsed += start.elapsed();
        if n != 2 * nodes {
            bail!("read {n} records, expected {}", 2 * nodes);
        }
    }
    let cpu = server_cpu(&server)? - cpu_before;
    println!("nodes {nodes}, rounds {rounds}");
    if rounds > 0 {
        let r = rounds as f64;
        println!(
            "per cold read: {:.3} ms wall, redis-server CPU {:.3} ms",
            elapsed.as_secs_f64() * 1e3 / r,
            cpu * 1e3 / r
        );
    }
    if end == "drop" {
        return Ok(());
    }
    // `keep` and `clear` end with what the registry keeps for delta reads (every
    // decoded record, or nothing) still allocated: the difference of the heap left at
    // exit (`valgrind --tool=dhat`, "At t-end") between the two is what a
    // coordinator holds per node.
    reg.clear_decode_cache();
    if end == "keep" {
        let n = cold_round(&rt, &reg)?;
        if n != 2 * nodes {
            bail!("read {n} records, expected {}", 2 * nodes);
        }
    }
    server.stop();
    drop(server);
    std::mem::forget(reg);
    std::mem::forget(rt);
    std::process::exit(0)
}

/// `floor`: `rounds` × (a cold read, the floor with `GETRANGE`, the floor with `MGET`),
/// each timed with its server CPU; prints the median wall time and the mean server CPU
/// of each.
fn floor(
    rt: &tokio::runtime::Runtime,
    server: &RedisServer,
    reg: &RedisRegistry,
    nodes: usize,
    rounds: usize,
) -> Result<()> {
    let port = server.port().context("the floor needs a TCP server")?;
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_nodelay(true)?;
    let plan = Floor::new(nodes);
    let mut buf = Vec::new();
    // Warm the connection and check the shape: every record is there.
    let bytes = plan.round(&mut conn, false, &mut buf)?;
    let mut walls = [vec![], vec![], vec![]];
    let mut cpu = [0.0f64; 3];
    for _ in 0..rounds {
        for (which, (wall, cpu)) in walls.iter_mut().zip(cpu.iter_mut()).enumerate() {
            let before = server_cpu(server)?;
            let start = Instant::now();
            if which == 0 {
                reg.clear_decode_cache();
                let n = cold_round(rt, reg)?;
                if n != 2 * nodes {
                    bail!("read {n} records, expected {}", 2 * nodes);
                }
            } else {
                black_box(plan.round(&mut conn, which == 2, &mut buf)?);
            }
            wall.push(start.elapsed());
            *cpu += server_cpu(server)? - before;
        }
    }
    println!("nodes {nodes}, rounds {rounds}, {bytes} bytes of replies per read");
    let names = ["cold read", "floor (GETRANGE)", "floor (MGET)"];
    for ((name, wall), cpu) in names.iter().zip(&mut walls).zip(cpu) {
        wall.sort();
        let median = wall.get(wall.len() / 2).copied().unwrap_or_default();
        println!(
            "{name:>18}: median {:.3} ms wall, redis-server CPU {:.3} ms per read",
            median.as_secs_f64() * 1e3,
            cpu * 1e3 / rounds.max(1) as f64
        );
    }
    Ok(())
}
