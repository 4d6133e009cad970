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
pub enum OffloadVerdict {
    /// At least one loaded model has part of itself in VRAM.
    On,
    /// Ollama answered, has models loaded, and every one has `size_vram == 0`.
    Off,
    /// Ollama answered with nothing loaded: nothing to learn from.
    Idle,
    /// Ollama did not answer (or was not asked): nothing to learn from.
    Unknown,
}

impl OffloadVerdict {
    /// Decide from the outcome of `GET /api/ps`.
    pub fn from_ps(ps: &Result<PsResponse>) -> Self {
        match ps {
            Err(_) => OffloadVerdict::Unknown,
            Ok(ps) if ps.models.is_empty() => OffloadVerdict::Idle,
            Ok(ps) if ps.models.iter().any(|m| m.size_vram > 0) => OffloadVerdict::On,
            Ok(_) => OffloadVerdict::Off,
        }
    }

    /// True only when Ollama positively showed that it runs models on the CPU alone.
    pub fn is_off(self) -> bool {
        self == OffloadVerdict::Off
    }

    /// Lower-case name, as written in records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OffloadVerdict::On => "on",
            OffloadVerdict::Off => "off",
            OffloadVerdict::Idle => "idle",
            OffloadVerdict::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, PsModel};

    fn model(size: u64, size_vram: u64) -> PsModel {
        PsModel {
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
            (down, OffloadVerdict::Unknown),
            (Ok(PsResponse { models: vec![] }), OffloadVerdict::Idle),
            (
                Ok(PsResponse {
                    models: vec![model(10, 0)],
                }),
                OffloadVerdict::Off,
            ),
            (
                Ok(PsResponse {
                    models: vec![model(10, 0), model(10, 0)],
                }),
                OffloadVerdict::Off,
            ),
            (
                Ok(PsResponse {
                    models: vec![model(10, 0), model(10, 4)],
                }),
                OffloadVerdict::On,
            ),
            (
                Ok(PsResponse {
                    models: vec![model(10, 10)],
                }),
                OffloadVerdict::On,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(OffloadVerdict::from_ps(&input), want, "{input:?}");
        }
        assert!(OffloadVerdict::Off.is_off());
        assert!(!OffloadVerdict::Idle.is_off());
        assert!(!OffloadVerdict::Unknown.is_off());
    }
}
