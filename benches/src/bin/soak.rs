//! `vramroute-soak`: a coordinator following `vramroute-sim`'s simulated cluster,
//! measured: RSS and CPU over time, decision latency while views refresh, and staleness
//! (a registry write to the first decision that reflects it). By default the coordinator
//! is a real `vramroute-coordinator daemon` process asked over HTTP; `--in-process` runs
//! a `LiveCluster` in this process instead. See `benches/src/soak.rs` and `docs/scale.md`.
//!
//! ```text
//! cargo build --release -p vramroute-benches -p vramroute-coordinator \
//!     --bin vramroute-sim --bin vramroute-soak --bin vramroute-coordinator
//! target/release/vramroute-soak --nodes 1000 --duration 10m [--interval 5s]
//!     [--cluster | --redis-url URL] [--daemon PATH | --in-process] [--decision-rate N]
//!     [--sample-every 10s] [--refresh-nice 10] [--json]
//! ```

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use vramroute_benches::sim::parse_duration;
use vramroute_benches::soak::{self, SoakConfig};

const USAGE: &str = "\
usage: vramroute-soak [--nodes N] [--duration D] [--interval D] [--cluster | --redis-url URL]
                      [--daemon PATH | --in-process] [--decision-rate N] [--sample-every D]
                      [--leave-per-min F] [--settled] [--refresh-nice N] [--sim PATH] [--json]
                                                                          (D: 90, 90s, 10m)

Runs vramroute-sim (N simulated reporters) against a Redis and measures one coordinator
following it: its RSS and CPU over time, decisions/s and decision latency while views
refresh, and staleness (a registry write to the first decision that reflects it).

  --nodes N            simulated nodes [1000]
  --duration D         measured time, after the warm-up [10m]
  --interval D         the simulator's report interval [5s]
  --cluster            start a private 3-master Redis Cluster (default: one redis-server)
  --redis-url URL      use this Redis instead (redis://, redis-cluster://)
  --daemon PATH        the coordinator is `PATH daemon` (a vramroute-coordinator binary),
                       started here with its API on a free loopback port, the gateway off,
                       asked through GET /v1/route (the fast form: no explanation built);
                       RSS and CPU are that process's (/proc/PID). This is the default, with
                       the vramroute-coordinator next to this executable.
  --in-process         the coordinator is a LiveCluster in this process (the daemon's follow
                       loop without HTTP): the router's own decision latency; RSS and CPU
                       are this process's, measuring threads included
  --decision-rate N    paced decisions per second [daemon: 2000, in-process: 10000]
  --sample-every D     RSS/CPU sample and progress line period [10s]
  --leave-per-min F    fraction of nodes leaving per minute (simulator) [0.01]
  --settled            the simulated cluster starts as if it had run its churn for a while
                       (vramroute-sim --settled): its loaded models are at their steady
                       count from the start instead of climbing from none, so the RSS
                       growth measured is the coordinator's own, not the cluster's
  --refresh-nice N     in-process: the follow loop runs on its own thread at the nice value
                       of the deciding thread plus N (0-19; LiveConfig::refresh_nice) [0]
  --sim PATH           vramroute-sim's executable [next to this one]
  --json               print the report as JSON";

fn main() -> Result<()> {
    let mut c = SoakConfig::default();
    let mut json = false;
    let mut sim: Option<PathBuf> = None;
    let mut daemon: Option<PathBuf> = None;
    let mut in_process = false;
    let mut rate: Option<u64> = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--nodes" => c.nodes = value()?.parse().context("--nodes: a number")?,
            "--duration" => c.duration = parse_duration(&value()?)?,
            "--interval" => c.interval = parse_duration(&value()?)?,
            "--redis-url" => c.redis_url = Some(value()?),
            "--cluster" => c.cluster = true,
            "--decision-rate" => {
                rate = Some(value()?.parse().context("--decision-rate: a number")?)
            }
            "--daemon" => daemon = Some(PathBuf::from(value()?)),
            "--in-process" => in_process = true,
            "--sample-every" => c.sample_every = parse_duration(&value()?)?,
            "--leave-per-min" => {
                c.leave_per_min = value()?.parse().context("--leave-per-min: a fraction")?
            }
            "--refresh-nice" => {
                c.refresh_nice = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n <= 19)
                    .context("--refresh-nice: a number from 0 to 19")?
            }
            "--settled" => c.settled = true,
            "--sim" => sim = Some(PathBuf::from(value()?)),
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let here = std::env::current_exe().context("cannot locate this executable")?;
    c.sim = sim.unwrap_or_else(|| here.with_file_name("vramroute-sim"));
    if in_process && daemon.is_some() {
        bail!("--daemon and --in-process exclude each other\n{USAGE}");
    }
    c.coordinator = if in_process {
        None
    } else {
        let bin = daemon.unwrap_or_else(|| here.with_file_name("vramroute-coordinator"));
        if !bin.exists() {
            bail!(
                "{} is missing: cargo build --release -p vramroute-coordinator --bin vramroute-coordinator \
                 (or pass --daemon PATH, or --in-process)",
                bin.display()
            );
        }
        Some(bin)
    };
    c.decision_rate = rate.unwrap_or(if in_process { 10_000 } else { 2_000 });
    let report = soak::run(&c)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}
