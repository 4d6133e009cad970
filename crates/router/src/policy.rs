//! Scoring policies: values, not code forks.
//!
//! A [`Policy`] deserializes from either a bare name (`"sollol"`, `"binpack"`, `"spread"`)
//! or a map with a `kind` key and, for `sollol`, any subset of [`SollolParams`]' fields:
//!
//! ```
//! use vramroute_router::Policy;
//! let p: Policy = serde_json::from_str(r#"{"kind":"sollol","warm_multiplier":3.0}"#)?;
//! let Policy::Sollol(params) = &p else { unreachable!() };
//! assert_eq!(params.warm_multiplier, 3.0);
//! assert_eq!(params.overwhelmed_below_mib, 2048); // the rest keep their defaults
//! assert_eq!("binpack".parse::<Policy>()?, Policy::BinPack);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{invalid_config, Error, Result};

/// How candidates are ranked.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[allow(
    clippy::large_enum_variant,
    reason = "a policy is one configuration value held in an Arc; boxing would add a pointer chase per route"
)]
#[non_exhaustive]
pub enum Policy {
    /// SOLLOL's scorer (the default), with every constant in [`SollolParams`].
    Sollol(SollolParams),
    /// Best fit: the fullest GPU that still fits, keeping big GPUs free for big models.
    #[serde(rename = "binpack")]
    BinPack,
    /// Most free VRAM first, spreading load over the cluster.
    Spread,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::Sollol(SollolParams::default())
    }
}

impl Policy {
    /// The policy's name as written in configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Sollol(_) => "sollol",
            Policy::BinPack => "binpack",
            Policy::Spread => "spread",
        }
    }

    /// Checks every constant (finite, in range, thresholds ordered).
    pub fn validate(&self) -> Result<()> {
        match self {
            Policy::Sollol(p) => p.validate(),
            Policy::BinPack | Policy::Spread => Ok(()),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = Error;

    /// Parses `sollol` (default constants), `binpack` / `bin-pack` or `spread`, any case.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sollol" => Ok(Policy::default()),
            "binpack" | "bin-pack" | "bin_pack" => Ok(Policy::BinPack),
            "spread" => Ok(Policy::Spread),
            _ => Err(Error::UnknownPolicy { name: s.to_owned() }),
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived deserialization helper"
)]
enum TaggedPolicy {
    Sollol(SollolParams),
    #[serde(rename = "binpack", alias = "bin-pack")]
    BinPack,
    Spread,
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PolicyVisitor;
        impl<'de> Visitor<'de> for PolicyVisitor {
            type Value = Policy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a policy name (\"sollol\", \"binpack\", \"spread\") or a map with a `kind` key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Policy, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Policy, A::Error> {
                let tagged = TaggedPolicy::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let policy = match tagged {
                    TaggedPolicy::Sollol(p) => Policy::Sollol(p),
                    TaggedPolicy::BinPack => Policy::BinPack,
                    TaggedPolicy::Spread => Policy::Spread,
                };
                policy.validate().map_err(de::Error::custom)?;
                Ok(policy)
            }
        }
        deserializer.deserialize_any(PolicyVisitor)
    }
}

/// Every constant of SOLLOL's scorer (`sollol/intelligence.py`, `_score_host_for_context`)
/// and GPU monitoring guide, named. Defaults reproduce SOLLOL; `docs/router.md` maps each
/// field to its origin. Memory thresholds are MiB of free VRAM on the GPU the model would
/// use; CPU loads are fractions (0.0–1.0) of the node's `cpu_load_percent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SollolParams {
    /// Every score starts here (SOLLOL: 100).
    pub base_score: f64,

    /// Below this free VRAM a GPU is "overwhelmed" (SPEC: < 2 GB).
    pub overwhelmed_below_mib: u64,
    /// Above this free VRAM a GPU is "good" (SPEC: > 4 GB).
    pub good_above_mib: u64,
    /// Multiplier for a good GPU (×1.5).
    pub good_multiplier: f64,
    /// Above this free VRAM a GPU is "excellent" (> 8 GB).
    pub excellent_above_mib: u64,
    /// Multiplier for an excellent GPU (×2.0).
    pub excellent_multiplier: f64,
    /// Multiplier for an overwhelmed GPU with no request in flight (SOLLOL: ×0.9).
    pub overwhelmed_idle_multiplier: f64,
    /// Extra multiplier for an overwhelmed GPU that is already busy (SOLLOL: ×0.6).
    pub overwhelmed_busy_multiplier: f64,
    /// GPU work placed on CPU (node without GPU, or no GPU fits) (×0.2).
    pub gpu_task_on_cpu_multiplier: f64,
    /// All GPUs overwhelmed → CPU fallback mode: multiplier for CPU placements (×1.0).
    pub fallback_cpu_multiplier: f64,
    /// CPU fallback mode: multiplier for an overwhelmed GPU (×0.7).
    pub fallback_overwhelmed_gpu_multiplier: f64,
    /// CPU fallback mode: multiplier for a GPU placement that is not overwhelmed (×1.2).
    pub fallback_gpu_multiplier: f64,
    /// Skip the latency and complexity penalties when the node's GPU is overwhelmed (an
    /// "overflow" GPU: SOLLOL prefers any GPU to waiting). CPU-only nodes count as 0 MiB free.
    pub skip_penalties_when_overwhelmed: bool,

    /// Complex work: CPU load above this… (0.8)
    pub complex_busy_cpu_above: f64,
    /// …multiplies by this (×0.3).
    pub complex_busy_cpu_multiplier: f64,
    /// Complex work: CPU load below this… (0.3)
    pub complex_idle_cpu_below: f64,
    /// …multiplies by this (×1.3).
    pub complex_idle_cpu_multiplier: f64,
    /// Simple work: CPU load above this… (0.9)
    pub simple_busy_cpu_above: f64,
    /// …multiplies by this (×0.7).
    pub simple_busy_cpu_multiplier: f64,

    /// Score × success_rate^exponent (SOLLOL: 1.0, a direct multiplier; 0 disables).
    pub success_rate_exponent: f64,
    /// Success rate assumed when unknown (1.0).
    pub default_success_rate: f64,

    /// Latency assumed when unknown, ms (200).
    pub default_latency_ms: f64,
    /// Latency weight = 1 + priority × this (0.1: priority 10 doubles the penalty).
    pub latency_priority_weight: f64,
    /// Below this latency (ms) the penalty is gentle… (200)
    pub latency_fast_below_ms: f64,
    /// …latency / this × weight (1000).
    pub latency_fast_scale_ms: f64,
    /// Above this latency (ms) the penalty is uncapped… (1000)
    pub latency_slow_above_ms: f64,
    /// …latency / this × weight; in between it is min(latency / this, cap) × weight (100).
    pub latency_scale_ms: f64,
    /// Cap of the medium-latency penalty before weighting (10).
    pub latency_medium_cap: f64,

    /// Active requests: score / base^n, base 1.5 for an overwhelmed GPU (or CPU-only node)…
    pub active_base_overwhelmed: f64,
    /// …1.3 below `good_above_mib`…
    pub active_base_small: f64,
    /// …1.2 below `excellent_above_mib`…
    pub active_base_mid: f64,
    /// …1.15 above.
    pub active_base_large: f64,
    /// Nodes faster than this (ms)… (1000)
    pub active_fast_latency_below_ms: f64,
    /// …scale the base by this (×0.8)…
    pub active_fast_factor: f64,
    /// …but not below this (1.05).
    pub active_base_floor: f64,
    /// Nodes slower than this (ms)… (5000)
    pub active_slow_latency_above_ms: f64,
    /// …scale the base by this (×1.3)…
    pub active_slow_factor: f64,
    /// …but not above this (2.0).
    pub active_base_cap: f64,
    /// Plus a linear penalty: score / (1 + this × n) (0.15).
    pub active_linear_penalty: f64,

    /// CPU load assumed when unknown, as a fraction (0.5).
    pub default_cpu_load: f64,
    /// CPU load penalty: score / (1 + load × this) (1.5)…
    pub cpu_load_weight: f64,
    /// …or this for high-priority requests (3.0).
    pub cpu_load_weight_high_priority: f64,
    /// Requests at or above this priority are "high priority" (7).
    pub high_priority_from: u8,

    /// Model already loaded on the node (×1.5).
    pub warm_multiplier: f64,
    /// Model not loaded but others are (×0.95).
    pub cold_with_other_models_multiplier: f64,

    /// Node priority 0 (×1.2)…
    pub top_node_multiplier: f64,
    /// …or this for high-priority requests (×1.5).
    pub top_node_high_priority_multiplier: f64,
    /// Node lists the request's task kind as preferred (×1.3).
    pub preferred_task_multiplier: f64,

    /// CPU count bonus: min(1 + cpus / this, cap) when cpus > 1 (20)…
    pub cpu_count_divisor: f64,
    /// …capped at this (1.5).
    pub cpu_count_bonus_cap: f64,
    /// Complex work on at least this many CPUs… (8)
    pub complex_many_cores_from: u32,
    /// …gets this extra (×1.2).
    pub complex_many_cores_multiplier: f64,

    /// Ours: node preferred by the request's affinity (×2.0).
    pub affinity_multiplier: f64,
    /// Ours: model split across several GPUs of a node (×0.9, split overhead).
    pub across_gpus_multiplier: f64,
}

impl Default for SollolParams {
    fn default() -> Self {
        Self {
            base_score: 100.0,
            overwhelmed_below_mib: 2048,
            good_above_mib: 4096,
            good_multiplier: 1.5,
            excellent_above_mib: 8192,
            excellent_multiplier: 2.0,
            overwhelmed_idle_multiplier: 0.9,
            overwhelmed_busy_multiplier: 0.6,
            gpu_task_on_cpu_multiplier: 0.2,
            fallback_cpu_multiplier: 1.0,
            fallback_overwhelmed_gpu_multiplier: 0.7,
            fallback_gpu_multiplier: 1.2,
            skip_penalties_when_overwhelmed: true,
            complex_busy_cpu_above: 0.8,
            complex_busy_cpu_multiplier: 0.3,
            complex_idle_cpu_below: 0.3,
            complex_idle_cpu_multiplier: 1.3,
            simple_busy_cpu_above: 0.9,
            simple_busy_cpu_multiplier: 0.7,
            success_rate_exponent: 1.0,
            default_success_rate: 1.0,
            default_latency_ms: 200.0,
            latency_priority_weight: 0.1,
            latency_fast_below_ms: 200.0,
            latency_fast_scale_ms: 1000.0,
            latency_slow_above_ms: 1000.0,
            latency_scale_ms: 100.0,
            latency_medium_cap: 10.0,
            active_base_overwhelmed: 1.5,
            active_base_small: 1.3,
            active_base_mid: 1.2,
            active_base_large: 1.15,
            active_fast_latency_below_ms: 1000.0,
            active_fast_factor: 0.8,
            active_base_floor: 1.05,
            active_slow_latency_above_ms: 5000.0,
            active_slow_factor: 1.3,
            active_base_cap: 2.0,
            active_linear_penalty: 0.15,
            default_cpu_load: 0.5,
            cpu_load_weight: 1.5,
            cpu_load_weight_high_priority: 3.0,
            high_priority_from: 7,
            warm_multiplier: 1.5,
            cold_with_other_models_multiplier: 0.95,
            top_node_multiplier: 1.2,
            top_node_high_priority_multiplier: 1.5,
            preferred_task_multiplier: 1.3,
            cpu_count_divisor: 20.0,
            cpu_count_bonus_cap: 1.5,
            complex_many_cores_from: 8,
            complex_many_cores_multiplier: 1.2,
            affinity_multiplier: 2.0,
            across_gpus_multiplier: 0.9,
        }
    }
}

fn non_negative(field: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && (0.0..=1e6).contains(&v) {
        Ok(())
    } else {
        Err(invalid_config(field, v, "a finite number from 0 to 1e6"))
    }
}

fn positive(field: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 && v <= 1e9 {
        Ok(())
    } else {
        Err(invalid_config(field, v, "a finite number above 0"))
    }
}

fn fraction(field: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid_config(field, v, "a fraction from 0.0 to 1.0"))
    }
}

fn exp_base(field: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && (1.0..=100.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid_config(
            field,
            v,
            "a base from 1.0 to 100 (below 1 would reward busy nodes)",
        ))
    }
}

impl SollolParams {
    /// Checks every constant: multipliers finite and non-negative, fractions in 0–1,
    /// thresholds ordered (`overwhelmed ≤ good ≤ excellent`), exponential bases ≥ 1.
    pub fn validate(&self) -> Result<()> {
        positive("base_score", self.base_score)?;
        for (field, v) in [
            ("good_multiplier", self.good_multiplier),
            ("excellent_multiplier", self.excellent_multiplier),
            (
                "overwhelmed_idle_multiplier",
                self.overwhelmed_idle_multiplier,
            ),
            (
                "overwhelmed_busy_multiplier",
                self.overwhelmed_busy_multiplier,
            ),
            (
                "gpu_task_on_cpu_multiplier",
                self.gpu_task_on_cpu_multiplier,
            ),
            ("fallback_cpu_multiplier", self.fallback_cpu_multiplier),
            (
                "fallback_overwhelmed_gpu_multiplier",
                self.fallback_overwhelmed_gpu_multiplier,
            ),
            ("fallback_gpu_multiplier", self.fallback_gpu_multiplier),
            (
                "complex_busy_cpu_multiplier",
                self.complex_busy_cpu_multiplier,
            ),
            (
                "complex_idle_cpu_multiplier",
                self.complex_idle_cpu_multiplier,
            ),
            (
                "simple_busy_cpu_multiplier",
                self.simple_busy_cpu_multiplier,
            ),
            ("success_rate_exponent", self.success_rate_exponent),
            ("latency_priority_weight", self.latency_priority_weight),
            ("latency_medium_cap", self.latency_medium_cap),
            ("active_fast_factor", self.active_fast_factor),
            ("active_slow_factor", self.active_slow_factor),
            ("active_linear_penalty", self.active_linear_penalty),
            ("cpu_load_weight", self.cpu_load_weight),
            (
                "cpu_load_weight_high_priority",
                self.cpu_load_weight_high_priority,
            ),
            ("warm_multiplier", self.warm_multiplier),
            (
                "cold_with_other_models_multiplier",
                self.cold_with_other_models_multiplier,
            ),
            ("top_node_multiplier", self.top_node_multiplier),
            (
                "top_node_high_priority_multiplier",
                self.top_node_high_priority_multiplier,
            ),
            ("preferred_task_multiplier", self.preferred_task_multiplier),
            ("cpu_count_bonus_cap", self.cpu_count_bonus_cap),
            (
                "complex_many_cores_multiplier",
                self.complex_many_cores_multiplier,
            ),
            ("affinity_multiplier", self.affinity_multiplier),
            ("across_gpus_multiplier", self.across_gpus_multiplier),
            ("default_latency_ms", self.default_latency_ms),
            ("latency_fast_below_ms", self.latency_fast_below_ms),
            ("latency_slow_above_ms", self.latency_slow_above_ms),
            (
                "active_fast_latency_below_ms",
                self.active_fast_latency_below_ms,
            ),
            (
                "active_slow_latency_above_ms",
                self.active_slow_latency_above_ms,
            ),
        ] {
            non_negative(field, v)?;
        }
        for (field, v) in [
            ("latency_fast_scale_ms", self.latency_fast_scale_ms),
            ("latency_scale_ms", self.latency_scale_ms),
            ("cpu_count_divisor", self.cpu_count_divisor),
        ] {
            positive(field, v)?;
        }
        for (field, v) in [
            ("complex_busy_cpu_above", self.complex_busy_cpu_above),
            ("complex_idle_cpu_below", self.complex_idle_cpu_below),
            ("simple_busy_cpu_above", self.simple_busy_cpu_above),
            ("default_success_rate", self.default_success_rate),
            ("default_cpu_load", self.default_cpu_load),
        ] {
            fraction(field, v)?;
        }
        for (field, v) in [
            ("active_base_overwhelmed", self.active_base_overwhelmed),
            ("active_base_small", self.active_base_small),
            ("active_base_mid", self.active_base_mid),
            ("active_base_large", self.active_base_large),
            ("active_base_floor", self.active_base_floor),
            ("active_base_cap", self.active_base_cap),
        ] {
            exp_base(field, v)?;
        }
        if self.active_base_floor > self.active_base_cap {
            return Err(invalid_config(
                "active_base_floor",
                self.active_base_floor,
                "at most active_base_cap",
            ));
        }
        if self.overwhelmed_below_mib > self.good_above_mib {
            return Err(invalid_config(
                "overwhelmed_below_mib",
                self.overwhelmed_below_mib,
                "at most good_above_mib",
            ));
        }
        if self.good_above_mib > self.excellent_above_mib {
            return Err(invalid_config(
                "good_above_mib",
                self.good_above_mib,
                "at most excellent_above_mib",
            ));
        }
        if self.latency_fast_below_ms > self.latency_slow_above_ms {
            return Err(invalid_config(
                "latency_fast_below_ms",
                self.latency_fast_below_ms,
                "at most latency_slow_above_ms",
            ));
        }
        if self.high_priority_from > 10 {
            return Err(invalid_config(
                "high_priority_from",
                self.high_priority_from,
                "a priority from 0 to 10",
            ));
        }
        Ok(())
    }
}
