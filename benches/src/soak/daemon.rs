//! Daemon mode: a real `vramroute-coordinator daemon` process, its HTTP route API
//! spoken over plain keep-alive HTTP/1.1 (one connection per measuring thread, so a
//! decision's latency is one loopback round trip and the daemon's work, nothing of a
//! client library's), and its RSS and CPU read from `/proc/PID`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running `vramroute-coordinator daemon`; stopped (SIGTERM, then killed) on drop.
pub(super) struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    /// Starts `bin` following `redis_url`, its API on a free loopback port, the gateway
    /// off, no config file, and waits (≤ 30 s) until `/healthz` answers.
    pub(super) fn start(bin: &Path, redis_url: &str, verbose: bool) -> Result<Daemon> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").context("a free port")?;
            l.local_addr()?.port()
        };
        let child = Command::new(bin)
            .arg("--redis-url")
            .arg(redis_url)
            .args(["--log-level", "warn", "daemon", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--gateway-listen", "off"])
            .env_remove("SOLLOL_REDIS_URL")
            .env_remove("REDIS_PASSWORD")
            .env_remove("VRAMROUTE_CONFIG")
            .env_remove("VRAMROUTE_GATEWAY_KEYS")
            .env_remove("VRAMROUTE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if verbose {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it: cargo build --release -p vramroute-coordinator)",
                    bin.display()
                )
            })?;
        let mut d = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                bail!("{} exited at start ({status})", bin.display());
            }
            if let Ok(mut c) = d.connect() {
                if c.get("/healthz").is_ok() {
                    return Ok(d);
                }
            }
            if Instant::now() > deadline {
                bail!("the coordinator's API did not answer on port {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new keep-alive connection to the API.
    pub(super) fn connect(&self) -> Result<Http> {
        Http::connect(self.port)
    }

    /// Whether the process is still running.
    pub(super) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP/1.1 connection to the daemon's API (reconnects when it drops).
pub(super) struct Http {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

/// The largest response body read (an answer is well under 1 KiB; `/metrics` a few KiB).
const MAX_BODY_BYTES: usize = 4 << 20;

impl Http {
    fn connect(port: u16) -> Result<Http> {
        let mut h = Http { port, conn: None };
        h.open()?;
        Ok(h)
    }

    fn open(&mut self) -> Result<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))
                .with_context(|| format!("cannot connect to 127.0.0.1:{}", self.port))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_write_timeout(Some(Duration::from_secs(10)))?;
            self.conn = Some(BufReader::new(s));
        }
        self.conn.as_mut().context("connection")
    }

    /// `GET path`; the body of a 200 answer, else an error (the connection is dropped
    /// on any error and reopened by the next call).
    pub(super) fn get(&mut self, path: &str) -> Result<Vec<u8>> {
        let r = self.exchange(path);
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    fn exchange(&mut self, path: &str) -> Result<Vec<u8>> {
        let conn = self.open()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        conn.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        conn.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("malformed status line {line:?}"))?;
        let mut len = None;
        loop {
            line.clear();
            if conn.read_line(&mut line)? == 0 {
                bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        let len = len.context("an answer without Content-Length")?;
        if len > MAX_BODY_BYTES {
            bail!("an answer of {len} bytes");
        }
        let mut body = vec![0; len];
        conn.read_exact(&mut body)?;
        if status != 200 {
            bail!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}

/// (RSS MiB, CPU seconds used so far) of process `pid` (`"self"` for this one); zeros
/// when it cannot be read.
pub(super) fn usage(pid: &str) -> (f64, f64) {
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    // utime and stime are fields 14 and 15, after the parenthesised command name.
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    (rss_kib / 1024.0, ticks / 100.0)
}

/// The daemon's own decision-time histogram (`decision_duration_seconds` in its
/// `/metrics`: the route call alone, no HTTP): p50 and p99 as bucket upper bounds, in
/// ns, and the count. `None` when the exposition has no such histogram.
pub(super) fn server_decision_quantiles(metrics: &str) -> Option<([u64; 2], u64)> {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line
            .split_once("decision_duration_seconds_bucket{")
            .map(|p| p.1)
        else {
            continue;
        };
        let Some(le) = rest.split_once("le=\"").map(|p| p.1) else {
            continue;
        };
        let Some((le, tail)) = le.split_once('"') else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        let count = tail.rsplit_once('}')?.1.split_whitespace().next()?;
        buckets.push((le, count.parse::<f64>().ok()? as u64));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let q = |q: f64| {
        let rank = (q * total as f64).ceil() as u64;
        buckets.iter().find(|b| b.1 >= rank).map_or(u64::MAX, |b| {
            if b.0.is_finite() {
                (b.0 * 1e9).round() as u64
            } else {
                u64::MAX
            }
        })
    };
    Some(([q(0.5), q(0.99)], total))
}

#[cfg(test)]
mod tests {
    use super::server_decision_quantiles;

    #[test]
    fn decision_quantiles_from_openmetrics() {
        let text = "# TYPE vramroute_decision_duration_seconds histogram\n\
            vramroute_decision_duration_seconds_sum 0.01\n\
            vramroute_decision_duration_seconds_count 100\n\
            vramroute_decision_duration_seconds_bucket{le=\"1e-6\"} 0\n\
            vramroute_decision_duration_seconds_bucket{le=\"2e-6\"} 60\n\
            vramroute_decision_duration_seconds_bucket{le=\"4e-6\"} 98\n\
            vramroute_decision_duration_seconds_bucket{le=\"8e-6\"} 100\n\
            vramroute_decision_duration_seconds_bucket{le=\"+Inf\"} 100\n";
        assert_eq!(server_decision_quantiles(text), Some(([2_000, 8_000], 100)));
        assert_eq!(server_decision_quantiles("nothing here\n"), None);
    }
}
