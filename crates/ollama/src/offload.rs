//! Whether a node's Ollama offloads to its GPUs.
//!
//! SOLLOL's reporter declares a node CPU-only whenever no loaded model has
//! `size_vram > 0`, which also fires when Ollama is down or idle and so hides real GPUs.
//! vramroute says "off" only when Ollama answered and every loaded model sits wholly in
//! host memory.

use serde::{Deserialize, Serialize};

use crate::{PsResponse, Result};

/// What `/api/ps` says about GPU offload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuOffload {
    /// At least one loaded model has part of itself in VRAM.
    On,
    /// Ollama answered, has models loaded, and every one has `size_vram == 0`.
    Off,
    /// Ollama answered with nothing loaded: nothing to learn from.
    Idle,
    /// Ollama did not answer (or was not asked): nothing to learn from.
    Unknown,
}

impl GpuOffload {
    /// Decide from the outcome of `GET /api/ps`.
    pub fn from_ps(ps: &Result<PsResponse>) -> Self {
        match ps {
            Err(_) => GpuOffload::Unknown,
            Ok(ps) if ps.models.is_empty() => GpuOffload::Idle,
            Ok(ps) if ps.models.iter().any(|m| m.size_vram > 0) => GpuOffload::On,
            Ok(_) => GpuOffload::Off,
        }
    }

    /// True only when Ollama positively showed that it runs models on the CPU alone.
    pub fn is_off(self) -> bool {
        self == GpuOffload::Off
    }

    /// Lower-case name, as written in records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            GpuOffload::On => "on",
            GpuOffload::Off => "off",
            GpuOffload::Idle => "idle",
            GpuOffload::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, LoadedModel};

    fn model(size: u64, size_vram: u64) -> LoadedModel {
        LoadedModel {
            name: "m".into(),
            model: None,
            size,
            size_vram,
            digest: None,
            details: None,
            expires_at: None,
            context_length: None,
        }
    }

    #[test]
    fn offload_table() {
        let down: Result<PsResponse> = Err(Error::Unreachable {
            url: "http://127.0.0.1:1".into(),
            reason: "refused".into(),
        });
        let cases = [
            (down, GpuOffload::Unknown),
            (Ok(PsResponse { models: vec![] }), GpuOffload::Idle),
            (
                Ok(PsResponse {
                    models: vec![model(10, 0)],
                }),
                GpuOffload::Off,
            ),
            (
                Ok(PsResponse {
                    models: vec![model(10, 0), model(10, 0)],
                }),
                GpuOffload::Off,
            ),
            (
                Ok(PsResponse {
                    models: vec![model(10, 0), model(10, 4)],
                }),
                GpuOffload::On,
            ),
            (
                Ok(PsResponse {
                    models: vec![model(10, 10)],
                }),
                GpuOffload::On,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(GpuOffload::from_ps(&input), want, "{input:?}");
        }
        assert!(GpuOffload::Off.is_off());
        assert!(!GpuOffload::Idle.is_off());
        assert!(!GpuOffload::Unknown.is_off());
    }
}
