//! Layer placement: how many layers each device takes, with the output layer on the
//! llama-server host or on the device that gives up least room for it (the rule and
//! why more budget never hurts are in the parent module's doc).

use super::*;

impl Planner<'_> {
    /// Tries to place every layer on the devices of `selected` endpoints and the local
    /// GPUs (and on CPUs, the local one included, when `allow_cpu`). Exact for the
    /// placements it considers (see the module doc): it fails only when none of them
    /// fits, so more budget or more devices never make it fail.
    pub(super) fn assign(&self, selected: &[usize], allow_cpu: bool) -> Option<Assignment> {
        if allow_cpu {
            if let Some(a) = self.assign_output_on_host(selected) {
                return Some(a);
            }
        }
        self.assign_output_on_device(selected, allow_cpu)
    }

    /// Layers this worker can take in this attempt (CPUs only when `allow_cpu`).
    pub(super) fn cap(&self, w: usize, allow_cpu: bool) -> u32 {
        if allow_cpu || self.is_gpu(w) {
            self.layer_cap[w]
        } else {
            0
        }
    }

    /// Every layer offloaded, the output layer on the device that holds the last layer.
    ///
    /// The device that holds the output (`o`) can take `out_cap[o]` layers instead of
    /// `cap[o]`, and every device after it in llama.cpp's order must stay empty. We choose
    /// the order of `--rpc` endpoints and of each rpc-server's `--device` list, so a remote
    /// `o` goes last among the RPC devices; only local GPUs (always after RPC devices, in
    /// their own order) cannot move. The layers that fit are therefore
    /// `Σ cap − loss(o)` with `loss(o) = cap[o] − out_cap[o]` + the local GPUs after `o`,
    /// and we take the `o` of least loss (ties: the later device, which keeps the natural
    /// order). Both terms only grow with budgets and devices: the check is monotone.
    pub(super) fn assign_output_on_device(
        &self,
        selected: &[usize],
        allow_cpu: bool,
    ) -> Option<Assignment> {
        let l = self.layers;
        let mut groups: Vec<Vec<usize>> = selected
            .iter()
            .map(|&e| self.endpoints[e].devs.clone())
            .collect();
        let local = &self.local_gpus;
        let cap = |w: usize| u64::from(self.cap(w, allow_cpu));
        let local_caps: Vec<u64> = local.iter().map(|&w| cap(w)).collect();
        let local_total: u64 = local_caps.iter().sum();
        let total: u64 = groups.iter().flatten().map(|&w| cap(w)).sum::<u64>() + local_total;
        if total < u64::from(l) {
            return None;
        }
        let mut best: Option<(u64, OutputAt)> = None;
        let mut consider = |loss: u64, at| {
            if best.is_none_or(|(b, _)| loss <= b) {
                best = Some((loss, at));
            }
        };
        for (g, group) in groups.iter().enumerate() {
            for (i, &w) in group.iter().enumerate() {
                if cap(w) > 0 && self.out_cap[w] > 0 {
                    let at = OutputAt::Remote { group: g, index: i };
                    consider(cap(w) - u64::from(self.out_cap[w]) + local_total, at);
                }
            }
        }
        let mut after = local_total;
        for (i, &w) in local.iter().enumerate() {
            after -= local_caps[i];
            if cap(w) > 0 && self.out_cap[w] > 0 {
                consider(
                    cap(w) - u64::from(self.out_cap[w]) + after,
                    OutputAt::Local(i),
                );
            }
        }
        let (loss, at) = best?;
        if total - loss < u64::from(l) {
            return None;
        }
        // Put a remote output device last among the RPC devices.
        let mut order: Vec<usize> = selected.to_vec();
        if let OutputAt::Remote { group: g, index: i } = at {
            let group = groups.remove(g);
            let e = order.remove(g);
            let mut group = group;
            let w = group.remove(i);
            group.push(w);
            groups.push(group);
            order.push(e);
        }
        let devs: Vec<usize> = groups.iter().flatten().chain(local).copied().collect();
        let remote = devs.len() - local.len();
        let o = match at {
            OutputAt::Remote { .. } => remote - 1,
            OutputAt::Local(i) => remote + i,
        };
        let caps: Vec<u32> = devs
            .iter()
            .enumerate()
            .map(|(k, &w)| match k.cmp(&o) {
                std::cmp::Ordering::Less => self.cap(w, allow_cpu),
                std::cmp::Ordering::Equal => self.out_cap[w],
                std::cmp::Ordering::Greater => 0,
            })
            .collect();
        let mut counts = self.fill(&devs, &caps, 0)?;
        if counts[o] == 0 {
            // The output device must hold the last layer: take one from the last device
            // that has some (it has room: out_cap[o] >= 1).
            let j = counts.iter().rposition(|&c| c > 0)?;
            counts[j] -= 1;
            counts[o] = 1;
        }
        Some(Assignment {
            selected: order,
            groups,
            devs,
            counts,
            host_layers: 0,
            output_on_host: false,
        })
    }

    /// The output layer (and the first `h ≥ 0` layers) on the llama-server host's CPU,
    /// when there is a local CPU worker with room for the input embeddings, the host's
    /// buffers and the output layer. The rest is offloaded: GPUs first, then the host's
    /// own layers, then remote CPUs in order.
    pub(super) fn assign_output_on_host(&self, selected: &[usize]) -> Option<Assignment> {
        let c = self.local_cpu?;
        if self.cap_kib[c] < self.host_kib + self.out_kib {
            return None;
        }
        let groups: Vec<Vec<usize>> = selected
            .iter()
            .map(|&e| self.endpoints[e].devs.clone())
            .collect();
        let devs: Vec<usize> = groups
            .iter()
            .flatten()
            .chain(&self.local_gpus)
            .copied()
            .collect();
        let caps: Vec<u32> = devs.iter().map(|&w| self.cap(w, true)).collect();
        let counts = self.fill(&devs, &caps, self.local_cpu_layers)?;
        let on_devices: u32 = counts.iter().sum();
        Some(Assignment {
            selected: selected.to_vec(),
            groups,
            devs,
            counts,
            host_layers: self.layers - on_devices,
            output_on_host: true,
        })
    }

    /// Distributes the layers: over the GPUs in proportion to `caps` when they hold them
    /// all, else GPUs full, then up to `host` layers on the llama-server host (the first
    /// layers; not in the returned counts), then CPUs in order. `None` if they do not fit.
    pub(super) fn fill(&self, devs: &[usize], caps: &[u32], host: u32) -> Option<Vec<u32>> {
        let l = self.layers;
        let mut counts = vec![0u32; devs.len()];
        let gpu_total: u64 = devs
            .iter()
            .zip(caps)
            .filter(|(&w, _)| self.is_gpu(w))
            .map(|(_, &c)| u64::from(c))
            .sum();
        if gpu_total >= u64::from(l) {
            self.proportional(devs, caps, &mut counts, gpu_total);
            return Some(counts);
        }
        let mut rest = l;
        for (i, &w) in devs.iter().enumerate() {
            if self.is_gpu(w) {
                counts[i] = caps[i];
                rest -= caps[i];
            }
        }
        rest -= rest.min(host);
        for (i, &w) in devs.iter().enumerate() {
            if !self.is_gpu(w) && rest > 0 {
                counts[i] = rest.min(caps[i]);
                rest -= counts[i];
            }
        }
        (rest == 0).then_some(counts)
    }

    /// Spreads the layers over the GPU devices in proportion to their capacity
    /// (largest-remainder rounding, ties to the earlier device).
    pub(super) fn proportional(
        &self,
        devs: &[usize],
        caps: &[u32],
        counts: &mut [u32],
        gpu_total: u64,
    ) {
        let l = u64::from(self.layers);
        let mut assigned = 0u64;
        let mut remainders: Vec<(u64, usize)> = Vec::with_capacity(devs.len());
        for (i, &w) in devs.iter().enumerate() {
            if !self.is_gpu(w) || caps[i] == 0 {
                continue;
            }
            let scaled = l * u64::from(caps[i]);
            let share = scaled / gpu_total;
            // share <= caps[i] because l <= gpu_total.
            counts[i] = u32::try_from(share).unwrap_or(caps[i]);
            assigned += share;
            remainders.push((scaled % gpu_total, i));
        }
        remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut left = l - assigned;
        while left > 0 {
            let before = left;
            for &(_, i) in &remainders {
                if left > 0 && counts[i] < caps[i] {
                    counts[i] += 1;
                    left -= 1;
                }
            }
            if left == before {
                break; // cannot happen when l <= gpu_total; never loop forever
            }
        }
    }
}
