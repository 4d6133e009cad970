//! The scorer interface and the plain scan: every node gets at most one placement
//! ([`place`]), a [`Scorer`] turns it into a [`Key`], and the best key wins; equal keys keep
//! the earlier node (nodes are sorted by id). `run_exhaustive` is the reference every
//! shortcut (see `prune.rs`) must match. Also the `binpack` / `spread` scorers.

use crate::decision::{Decision, FitKind, NoRoute, Target};
use crate::fit::{place, Cand, NoTrace, Placed, Resolved, Trace};
use crate::snapshot::{NodeIndex, NodeRow, Snapshot};

/// A candidate's rank: higher tier wins, then higher score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Key {
    pub(crate) tier: u8,
    pub(crate) score: f64,
}

impl Key {
    #[inline(always)]
    pub(crate) fn beats(self, other: Key) -> bool {
        self.tier > other.tier || (self.tier == other.tier && self.score > other.score)
    }
}

pub(crate) trait Scorer {
    /// Pick the fullest fitting GPU of a node rather than the emptiest.
    fn least_free(&self) -> bool;
    /// SOLLOL's CPU-fallback threshold, for policies that have that mode.
    fn fallback_below_mib(&self) -> Option<u64>;
    /// The mode-independent part of the key.
    fn base<T: Trace>(&self, s: &Snapshot, r: &Resolved<'_>, ni: usize, c: &Cand, t: &mut T)
        -> Key;
    /// The resource factor, which depends on whether CPU-fallback mode is in force.
    fn mode_factor<T: Trace>(
        &self,
        r: &Resolved<'_>,
        row: &NodeRow,
        c: &Cand,
        fallback: bool,
        t: &mut T,
    ) -> f64;
}

/// The `binpack` / `spread` scorer: least free memory first, or most.
pub(crate) struct ByFreeMemory {
    pub(crate) least_free: bool,
}

/// `binpack`.
pub(crate) const BIN_PACK: ByFreeMemory = ByFreeMemory { least_free: true };
/// `spread`.
pub(crate) const SPREAD: ByFreeMemory = ByFreeMemory { least_free: false };

/// Placement rank shared by binpack and spread: one GPU (or resident on GPU) > split > CPU.
#[inline(always)]
fn memory_tier<T: Trace>(c: &Cand, t: &mut T) -> u8 {
    let rank = match (c.target, c.fit) {
        (Target::Gpu, FitKind::AcrossGpus { .. }) => 1,
        (Target::Gpu, _) => 2,
        (Target::Cpu, _) => 0,
    };
    let warm = c.fit == FitKind::AlreadyLoaded;
    t.term("placement_rank", f64::from(rank));
    t.term("preferred", f64::from(u8::from(c.preferred)));
    t.term("warm", f64::from(u8::from(warm)));
    (rank << 2) | (u8::from(c.preferred) << 1) | u8::from(warm)
}

/// `binpack` (fill the fullest memory that still fits) and `spread` (most free memory
/// first) differ only in the direction of one key.
impl Scorer for ByFreeMemory {
    fn least_free(&self) -> bool {
        self.least_free
    }
    fn fallback_below_mib(&self) -> Option<u64> {
        None
    }
    #[inline(always)]
    fn base<T: Trace>(
        &self,
        _s: &Snapshot,
        _r: &Resolved<'_>,
        _ni: usize,
        c: &Cand,
        t: &mut T,
    ) -> Key {
        let tier = memory_tier(c, t);
        let score = if self.least_free {
            t.term("leftover_mib", c.leftover_mib as f64);
            -(c.leftover_mib as f64)
        } else {
            t.term("free_mib", c.free_mib as f64);
            c.free_mib as f64
        };
        Key { tier, score }
    }
    #[inline(always)]
    fn mode_factor<T: Trace>(
        &self,
        _r: &Resolved<'_>,
        _row: &NodeRow,
        _c: &Cand,
        _fb: bool,
        _t: &mut T,
    ) -> f64 {
        1.0
    }
}

pub(crate) struct Outcome {
    pub(crate) result: Result<Decision, NoRoute>,
    pub(crate) fallback: bool,
}

/// Scores every node (the reference the pruned search must match).
pub(crate) fn run_exhaustive<S: Scorer>(s: &Snapshot, sc: &S, r: &Resolved<'_>) -> Outcome {
    if s.is_empty() {
        return Outcome {
            result: Err(NoRoute::EmptySnapshot),
            fallback: false,
        };
    }
    let dual = r.needs_gpu && sc.fallback_below_mib().is_some();
    let least_free = sc.least_free();
    let mut best_normal: Option<(Key, usize, Cand)> = None;
    let mut best_fallback: Option<(Key, usize, Cand)> = None;
    let mut max_gpu_free = 0u64;
    let mut any_eligible = false;
    for ni in 0..s.rows.len() {
        let c = match place(s, r, ni, least_free, &mut max_gpu_free, &mut NoTrace) {
            Placed::Ineligible => continue,
            Placed::NoFit => {
                any_eligible = true;
                continue;
            }
            Placed::Cand(c) => c,
        };
        any_eligible = true;
        let row = &s.rows[ni];
        let base = sc.base(s, r, ni, &c, &mut NoTrace);
        let kn = Key {
            tier: base.tier,
            score: base.score * sc.mode_factor(r, row, &c, false, &mut NoTrace),
        };
        if best_normal.as_ref().is_none_or(|b| kn.beats(b.0)) {
            best_normal = Some((kn, ni, c));
        }
        if dual {
            let kf = Key {
                tier: base.tier,
                score: base.score * sc.mode_factor(r, row, &c, true, &mut NoTrace),
            };
            if best_fallback.as_ref().is_none_or(|b| kf.beats(b.0)) {
                best_fallback = Some((kf, ni, c));
            }
        }
    }
    let fallback = dual && sc.fallback_below_mib().is_some_and(|t| max_gpu_free < t);
    let best = if fallback { best_fallback } else { best_normal };
    let result = match best {
        Some((k, ni, c)) => Ok(Decision {
            snapshot: s.id,
            node: NodeIndex(ni as u32),
            target: c.target,
            gpu: c.gpu,
            fit: c.fit,
            score: k.score,
            cpu_fallback: fallback,
        }),
        None if any_eligible => Err(NoRoute::NothingFits { size_mib: r.size }),
        None => Err(NoRoute::NoEligibleNode),
    };
    Outcome { result, fallback }
}
