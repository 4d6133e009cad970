//! `vramroute-soak`: a coordinator (an in-process `LiveCluster`, as the daemon runs it)
//! following `vramroute-sim`'s simulated cluster, measured: RSS and CPU over time,
//! decision latency while views refresh, and staleness (a registry write to the first
//! decision that reflects it). See `benches/src/soak.rs` and `docs/scale.md`.
//!
//! ```text
//! cargo build --release -p vramroute-benches --bin vramroute-sim --bin vramroute-soak
//! target/release/vramroute-soak --nodes 1000 --duration 10m [--interval 5s]
//!     [--cluster | --redis-url URL] [--decision-rate 10000] [--sample-every 10s] [--json]
//! ```

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use vramroute_benches::sim::parse_duration;
use vramroute_benches::soak::{self, SoakConfig};

const USAGE: &str = "usage: vramroute-soak [--nodes N] [--duration D] [--interval D] [--cluster | --redis-url URL] [--decision-rate N] [--sample-every D] [--leave-per-min F] [--sim PATH] [--json]   (D: 90, 90s, 10m)";

fn main() -> Result<()> {
    let mut c = SoakConfig::default();
    let mut json = false;
    let mut sim: Option<PathBuf> = None;
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
                c.decision_rate = value()?.parse().context("--decision-rate: a number")?
            }
            "--sample-every" => c.sample_every = parse_duration(&value()?)?,
            "--leave-per-min" => {
                c.leave_per_min = value()?.parse().context("--leave-per-min: a fraction")?
            }
            "--sim" => sim = Some(PathBuf::from(value()?)),
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    c.sim = match sim {
        Some(p) => p,
        None => std::env::current_exe()
            .context("cannot locate this executable")?
            .with_file_name("vramroute-sim"),
    };
    let report = soak::run(&c)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}
