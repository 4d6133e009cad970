//! From a placement to a [`Plan`]: the devices in llama.cpp's order, the rpc-server
//! commands, the `llama-server` arguments; and the "does not fit" error with what would
//! help.

use super::*;

impl Planner<'_> {
    pub(super) fn endpoint_name(&self, e: usize) -> String {
        let ep = &self.endpoints[e];
        format!("{}:{}", ep.host, ep.port)
    }

    pub(super) fn build(
        &self,
        a: Assignment,
        gpus_only: bool,
        gpu_nodes_used: usize,
        gpu_nodes: usize,
    ) -> Plan {
        let l = self.layers;
        let m = self.model;
        let mut reasons = Vec::new();
        reasons.push(format!(
            "{}: {l} layers × {:.1} MiB, output {} MiB, input {} MiB (kept on the llama-server host), \
             compute buffers {} MiB per device used and {} MiB on the llama-server host [source: {}]",
            m.name,
            self.per_layer_kib as f64 / 1024.0,
            m.output_mib,
            m.host_mib,
            self.ovh_kib / KIB_PER_MIB,
            self.host_ovh_kib / KIB_PER_MIB,
            m.source
        ));
        if !self.local_gpus.is_empty() {
            reasons.push(format!(
                "{} local GPU(s) take layers first: no network hop",
                self.local_gpus.len()
            ));
        }
        if gpus_only {
            reasons.push(format!(
                "GPUs alone hold the model: {gpu_nodes_used} of {gpu_nodes} GPU node(s) chosen, \
                 largest capacity first (fewest network hops)"
            ));
        } else {
            let gpu_layers: u32 = a
                .devs
                .iter()
                .zip(&a.counts)
                .filter(|(&w, _)| self.is_gpu(w))
                .map(|(_, &c)| c)
                .sum();
            reasons.push(format!(
                "GPUs hold {gpu_layers} of {l} layers: the rest go to CPUs, the llama-server \
                 host's first (no network hop), then CPUs of chosen nodes, then CPU-only nodes"
            ));
        }
        for &e in &a.selected {
            let ep = &self.endpoints[e];
            reasons.push(format!(
                "{} ({}): rpc-server with {} device(s), room for {} GPU + {} CPU layer(s)",
                ep.node_id,
                self.endpoint_name(e),
                ep.devs.len(),
                ep.gpu_layers,
                ep.cpu_layers
            ));
        }
        let unused: Vec<&str> = (0..self.endpoints.len())
            .filter(|e| !a.selected.contains(e))
            .map(|e| self.endpoints[e].node_id)
            .collect();
        if !unused.is_empty() {
            let shown = unused.len().min(8);
            let more = if unused.len() > shown {
                format!(" and {} more", unused.len() - shown)
            } else {
                String::new()
            };
            reasons.push(format!("not needed: {}{more}", unused[..shown].join(", ")));
        }

        let mut next = a.host_layers;
        let output_dev = if a.output_on_host {
            None
        } else {
            a.counts.iter().rposition(|&c| c > 0)
        };
        if a.host_layers > 0 {
            reasons.push(format!(
                "layers 0-{} stay on the llama-server host's CPU, and so does the output layer",
                a.host_layers - 1
            ));
        } else if a.output_on_host {
            reasons.push(
                "the output layer stays on the llama-server host's CPU (no device has room for it \
                 with its last layer)"
                    .to_owned(),
            );
        }
        let mut devices = Vec::with_capacity(a.devs.len());
        let mut tensor_split = Vec::with_capacity(a.devs.len());
        let mut need_kib = self.host_kib;
        for (i, (&w, &count)) in a.devs.iter().zip(&a.counts).enumerate() {
            let worker = &self.workers[w];
            let holds_output = output_dev == Some(i);
            let mut kib = u64::from(count) * self.per_layer_kib;
            if holds_output {
                kib += self.out_kib;
            }
            if count > 0 {
                kib += self.ovh_kib;
            }
            need_kib += kib;
            let endpoint = (!worker.local).then(|| format!("{}:{}", worker.host, worker.rpc_port));
            if count > 0 {
                let capped = self.opts.use_live_free
                    && worker.free_mib.is_some_and(|f| f < worker.budget_mib);
                reasons.push(format!(
                    "layers {next}-{}{} → {} {} ({} of {} MiB{})",
                    next + count - 1,
                    if holds_output { " + output" } else { "" },
                    worker.node_id,
                    worker.device_name,
                    kib_to_mib_ceil(kib),
                    self.cap_kib[w] / KIB_PER_MIB,
                    if capped {
                        ", capped by live free memory"
                    } else {
                        ""
                    }
                ));
            }
            devices.push(PlannedDevice {
                node_id: worker.node_id.clone(),
                device_name: worker.device_name.clone(),
                kind: worker.kind,
                endpoint,
                first_layer: next,
                layers: count,
                holds_output,
                planned_mib: kib_to_mib_ceil(kib),
                capacity_mib: self.cap_kib[w] / KIB_PER_MIB,
            });
            tensor_split.push(count + u32::from(holds_output));
            next += count;
        }
        let mut host_kib = self.host_kib;
        if a.output_on_host {
            host_kib += self.out_kib;
        }
        if a.host_layers > 0 {
            host_kib += u64::from(a.host_layers) * self.per_layer_kib + self.ovh_kib;
        }
        need_kib += host_kib - self.host_kib;
        let n_gpu_layers = if a.output_on_host {
            l - a.host_layers
        } else {
            l + 1
        };
        let offloaded: u32 = tensor_split.iter().sum();
        if offloaded == 0 {
            tensor_split.clear();
        }
        let rpc_servers: Vec<RpcServerPlan> = a
            .selected
            .iter()
            .zip(&a.groups)
            .map(|(&e, group)| {
                let ep = &self.endpoints[e];
                let names: Vec<&str> = group
                    .iter()
                    .map(|&d| self.workers[d].device_name.as_str())
                    .collect();
                let mut command = ShellCommand::new(self.opts.rpc_server_binary.as_str())
                    .arg("--host")
                    .arg(ep.host)
                    .arg("--port")
                    .arg(ep.port.to_string())
                    .arg("--device")
                    .arg(names.join(","));
                if names
                    .iter()
                    .any(|n| n.to_ascii_uppercase().starts_with("CUDA"))
                {
                    command = command.env("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
                }
                RpcServerPlan {
                    node_id: ep.node_id.to_owned(),
                    endpoint: self.endpoint_name(e),
                    command,
                }
            })
            .collect();
        Plan {
            model: m.name.clone(),
            layer_count: l,
            context_length: m.context_length,
            model_path: self.opts.model_path.clone(),
            host_cpu_layers: a.host_layers,
            host_cpu_mib: kib_to_mib_ceil(host_kib),
            n_gpu_layers: if offloaded == 0 { 0 } else { n_gpu_layers },
            rpc_endpoints: a.selected.iter().map(|&e| self.endpoint_name(e)).collect(),
            devices,
            tensor_split,
            rpc_servers,
            need_mib: kib_to_mib_ceil(need_kib),
            reasons,
        }
    }

    pub(super) fn does_not_fit(&self, too_many: bool) -> Error {
        let l = u64::from(self.layers);
        let p = self.per_layer_kib;
        let all_layers: u64 = self
            .workers
            .iter()
            .enumerate()
            .filter(|(_, w)| !(w.local && w.kind == WorkerKind::Cpu))
            .map(|(i, _)| u64::from(self.layer_cap[i]))
            .sum::<u64>()
            + u64::from(self.local_cpu_layers);
        let short_layers = l.saturating_sub(all_layers);
        let short_kib = (short_layers * p + self.out_kib).max(KIB_PER_MIB);
        let need_kib = l * p + self.out_kib + self.host_kib;
        let available_kib = all_layers.min(l) * p;
        let short_mib = kib_to_mib_ceil(short_kib);
        let ovh_mib = self.ovh_kib / KIB_PER_MIB;

        let mut suggestions = Vec::new();
        if too_many {
            suggestions.push(format!(
                "llama.cpp's --tensor-split takes at most {} devices: start the rpc-servers of \
                 big nodes with fewer devices (e.g. only their GPUs) or use nodes with more \
                 memory per device",
                self.max_devices
            ));
        }
        if let Some(c) = self.local_cpu {
            if self.cap_kib[c] < self.host_kib {
                suggestions.push(format!(
                    "the llama-server host needs {} MiB of RAM for the input embeddings and its \
                     compute buffers and has {} MiB",
                    kib_to_mib_ceil(self.host_kib),
                    self.cap_kib[c] / KIB_PER_MIB
                ));
            }
        }
        let node_mib = short_mib + ovh_mib;
        suggestions.push(format!(
            "another node with at least {node_mib} MiB of budget (a GPU of {} MiB or more at a \
             20 % reserve)",
            (node_mib * 5).div_ceil(4)
        ));
        if let (Some(per_token), Some(ctx)) =
            (self.model.kv_bytes_per_token, self.model.context_length)
        {
            if per_token > 0 {
                let drop_tokens = short_kib.saturating_mul(1024).div_ceil(per_token);
                let new_ctx = u64::from(ctx).saturating_sub(drop_tokens) / 256 * 256;
                if new_ctx >= 256 {
                    suggestions.push(format!(
                        "a smaller context: ctx {new_ctx} (the KV cache is {} MiB at ctx {ctx})",
                        self.model.kv_cache_mib
                    ));
                } else {
                    suggestions.push(format!(
                        "a smaller context alone cannot do it (the KV cache is only {} MiB at ctx {ctx})",
                        self.model.kv_cache_mib
                    ));
                }
            }
        }
        suggestions.push(format!(
            "a smaller quantization: the weights are {} MiB; a quant about {short_mib} MiB smaller would fit",
            self.model.weights_mib
        ));
        let capped = self
            .workers
            .iter()
            .filter(|w| w.free_mib.is_some_and(|f| f < w.budget_mib))
            .count();
        if self.opts.use_live_free && capped > 0 {
            suggestions.push(format!(
                "free memory on busy devices: {capped} device(s) have less free than their budget \
                 (unload other models there)"
            ));
        }
        Error::DoesNotFit {
            model: self.model.name.clone(),
            need_mib: kib_to_mib_ceil(need_kib),
            available_mib: available_kib / KIB_PER_MIB,
            short_by_mib: short_mib,
            suggestions,
        }
    }
}
