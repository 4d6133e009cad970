//! The decision-latency histogram: fixed buckets, no allocation while recording.

/// Latencies in ns: exact below 1024 ns, then 64 buckets per power of two (within
/// 1.6 %), reported as a bucket's upper end. A fixed 3,776-bucket array: recording
/// allocates nothing and touches no new memory as the tail fills (an exact array of
/// every nanosecond did, and its pages showed up as RSS growth).
pub(super) struct Histogram {
    counts: Vec<u64>,
}

impl Histogram {
    const EXACT: u64 = 1024;
    const SUB: u64 = 64;

    pub(super) fn new() -> Self {
        Histogram {
            counts: vec![0; Self::bucket(u64::MAX) + 1],
        }
    }

    fn bucket(ns: u64) -> usize {
        if ns < Self::EXACT {
            return ns as usize;
        }
        let exp = u64::from(63 - ns.leading_zeros());
        let sub = (ns >> (exp - 6)) & (Self::SUB - 1);
        (Self::EXACT + (exp - 10) * Self::SUB + sub) as usize
    }

    /// The largest value of bucket `b`.
    pub(super) fn upper(b: usize) -> u64 {
        let b = b as u64;
        if b < Self::EXACT {
            return b;
        }
        let exp = (b - Self::EXACT) / Self::SUB + 10;
        let sub = (b - Self::EXACT) % Self::SUB;
        let low = (1u64 << exp) | (sub << (exp - 6));
        low.saturating_add((1u64 << (exp - 6)) - 1)
    }

    pub(super) fn record(&mut self, ns: u64) {
        self.counts[Self::bucket(ns)] += 1;
    }

    pub(super) fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0–1), ns (a bucket's upper end).
    pub(super) fn quantile(&self, q: f64) -> u64 {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(b);
            }
        }
        u64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn histogram_buckets_bound_their_values() {
        for ns in [
            0,
            1,
            1023,
            1024,
            1025,
            5_000,
            48_452,
            1_000_000,
            248_170_917,
            u64::MAX / 3,
        ] {
            let up = Histogram::upper(Histogram::bucket(ns));
            assert!(
                up >= ns && (up - ns) as f64 <= ns as f64 / 60.0,
                "{ns} -> {up}"
            );
        }
        let mut h = Histogram::new();
        for ns in 1..=1000 {
            h.record(ns);
        }
        assert_eq!(
            (h.quantile(0.5), h.quantile(0.99), h.quantile(1.0)),
            (500, 990, 1000)
        );
    }
}
