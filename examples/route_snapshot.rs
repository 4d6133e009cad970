//! `route-snapshot`: embed `vramroute-router` in a small program. Reads a cluster snapshot
//! from a JSON file, routes one model and prints the decision and its explanation.
//!
//! ```text
//! route-snapshot <snapshot.json> <model> [--size-mib N] [--policy sollol|binpack|spread]
//!                [--gpu-only] [--multi-gpu] [--priority 1-10] [--json]
//! ```
//!
//! The file is `{"config": SnapshotConfig?, "policy": Policy?, "nodes": [NodeSpec, ...]}`
//! (see `examples/data/snapshot.json`). The model's size comes from `--size-mib` or from
//! the cluster layer's size resolver (SOLLOL's table here); an unknown model without
//! `--size-mib` is an error, never a guess.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use vramroute_cluster::{model_size, StatusView};
use vramroute_router::{NodeSpec, Policy, Request, Snapshot, SnapshotConfig, Target};

struct Args {
    snapshot: String,
    model: String,
    size_mib: Option<u64>,
    policy: Option<Policy>,
    gpu_only: bool,
    multi_gpu: bool,
    priority: u8,
    json: bool,
}

fn parse_args() -> Result<Args> {
    let mut positional = Vec::new();
    let mut args = Args {
        snapshot: String::new(),
        model: String::new(),
        size_mib: None,
        policy: None,
        gpu_only: false,
        multi_gpu: false,
        priority: Request::DEFAULT_PRIORITY,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size-mib" => args.size_mib = Some(it.next().context("--size-mib needs a value")?.parse()?),
            "--policy" => args.policy = Some(it.next().context("--policy needs a value")?.parse()?),
            "--priority" => args.priority = it.next().context("--priority needs a value")?.parse()?,
            "--gpu-only" => args.gpu_only = true,
            "--multi-gpu" => args.multi_gpu = true,
            "--json" => args.json = true,
            "-h" | "--help" => bail!(
                "usage: route-snapshot <snapshot.json> <model> [--size-mib N] [--policy sollol|binpack|spread] [--gpu-only] [--multi-gpu] [--priority N] [--json]"
            ),
            _ if a.starts_with("--") => bail!("unknown option {a}; see --help"),
            _ => positional.push(a),
        }
    }
    let [snapshot, model] = <[String; 2]>::try_from(positional)
        .map_err(|_| anyhow::anyhow!("expected <snapshot.json> <model>; see --help"))?;
    args.snapshot = snapshot;
    args.model = model;
    Ok(args)
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let text = std::fs::read_to_string(&args.snapshot)
        .with_context(|| format!("cannot read {}", args.snapshot))?;
    let mut doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", args.snapshot))?;
    let config: SnapshotConfig = match doc.get_mut("config").map(serde_json::Value::take) {
        Some(v) => serde_json::from_value(v).context("bad `config`")?,
        None => SnapshotConfig::default(),
    };
    let file_policy: Option<Policy> = match doc.get_mut("policy").map(serde_json::Value::take) {
        Some(v) => Some(serde_json::from_value(v).context("bad `policy`")?),
        None => None,
    };
    let nodes: Vec<NodeSpec> = serde_json::from_value(
        doc.get_mut("nodes")
            .map(serde_json::Value::take)
            .unwrap_or_default(),
    )
    .context("bad `nodes`: expected a list of node objects")?;
    let policy = args.policy.or(file_policy).unwrap_or_default();
    policy.validate()?;

    // The cluster layer's one size resolver (explicit size, then SOLLOL's table here: a
    // saved snapshot carries no Ollama answers).
    let size = model_size(
        &StatusView::empty(args.snapshot.clone()),
        &args.model,
        args.size_mib,
    )
    .map_err(|e| anyhow::anyhow!("{e} (here: pass --size-mib N)"))?;
    let size_mib = size.size_mb;
    let snapshot = Snapshot::build(nodes, &config)?;
    let req = Request::new(&args.model, size_mib)
        .allow_cpu(!args.gpu_only)
        .allow_multi_gpu(args.multi_gpu)
        .priority(args.priority);
    let explanation = snapshot.explain(&policy, &req);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
        return Ok(());
    }
    match snapshot.route(&policy, &req) {
        Ok(d) => {
            let node = snapshot.node(d.node);
            let place = match (d.target, d.gpu) {
                (Target::Gpu, Some(g)) => format!("GPU {g}"),
                (Target::Gpu, None) => "GPUs".to_owned(),
                (Target::Cpu, _) => "CPU".to_owned(),
            };
            println!("decision: {} {place}", node.id);
            if let Some(url) = &node.ollama_url {
                println!("ollama: {url}");
            }
        }
        Err(e) => println!("decision: none ({e})"),
    }
    println!("reason: {}", explanation.reason);
    print!("{explanation}");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("route-snapshot: {e:#}");
            ExitCode::FAILURE
        }
    }
}
