//! Incremental ("delta") discovery: reuse the previous discovery's decoded records
//! whose index score has not changed, and read only the others.
//!
//! Our writers `ZADD` every record's id into its index with score = expiry deadline
//! (Unix ms), in the same pipeline as — and after — the `SET` of the value. The score
//! changes with every write, so it is the record's version: a reader that sees a score
//! has already been able to read a value at least as new. Each registry keeps, per id
//! of the last discovery, the score and the decoding outcome (the record behind an
//! `Arc`, or the reason it was skipped). A discovery reads the indexes with their scores
//! and plans, per id:
//!
//! - indexed, deadline in the future, same score as cached: reuse the cached outcome
//!   (an `Arc` clone; a skipped record is reported again);
//! - indexed, deadline in the future, new or different score: fetch and decode, and
//!   cache the outcome under that score;
//! - indexed, deadline passed: the key expired with it, so it is not fetched — unless a
//!   SCAN saw the key (another writer may have rewritten it): then fetch it, unversioned;
//! - not indexed but found by a SCAN (SOLLOL's writers keep no index): always fetched and
//!   decoded (no version to compare), not cached.
//!
//! Ids absent from the plan leave the cache. Decoding is a pure function of (key, bytes,
//! limits) and the limits are fixed per registry, so a reused outcome is what decoding
//! the current value would give, as long as only our writers write indexed keys (see
//! `docs/registry.md` for the edge cases).

use std::collections::BTreeSet;
use std::sync::Arc;

/// What decoding one record gave: the shared record, or why it is skipped.
pub(crate) type Outcome<T> = Result<Arc<T>, Arc<str>>;

/// The outcome of one id, read under index score `score`.
pub(crate) struct Cached<T> {
    id: String,
    score: f64,
    outcome: Outcome<T>,
}

/// The caches of one registry: per record kind, sorted by id.
pub(crate) struct DecodeCaches<S, R> {
    pub(crate) stats: Vec<Cached<S>>,
    pub(crate) rpc: Vec<Cached<R>>,
}

impl<S, R> Default for DecodeCaches<S, R> {
    fn default() -> Self {
        Self {
            stats: Vec::new(),
            rpc: Vec::new(),
        }
    }
}

impl<S, R> DecodeCaches<S, R> {
    /// Forgets the cached outcome of `id` (its key was written by someone), so the next
    /// discovery fetches it.
    pub(crate) fn forget_stats(&mut self, id: &str) {
        forget(&mut self.stats, id);
    }

    /// As [`Self::forget_stats`], for a registration (`host:port`).
    pub(crate) fn forget_rpc(&mut self, member: &str) {
        forget(&mut self.rpc, member);
    }
}

fn forget<T>(cache: &mut Vec<Cached<T>>, id: &str) {
    if let Ok(i) = cache.binary_search_by(|c| c.id.as_str().cmp(id)) {
        cache.remove(i);
    }
}

/// What discovery does with one id.
pub(crate) enum Step<T> {
    /// Unchanged since it was cached: reuse the outcome.
    Reuse(Cached<T>),
    /// Read it; `Some(score)` when versioned by the index (its outcome is then cached).
    Fetch(Option<f64>),
}

/// The ids one discovery returns (sorted) and what to do with each.
pub(crate) struct Plan<T> {
    ids: Vec<String>,
    steps: Vec<Step<T>>,
}

impl<T> Plan<T> {
    /// The ids to read, in order.
    pub(crate) fn to_fetch(&self) -> impl Iterator<Item = &str> {
        self.ids
            .iter()
            .zip(&self.steps)
            .filter(|(_, s)| matches!(s, Step::Fetch(_)))
            .map(|(id, _)| id.as_str())
    }

    /// How many ids to read.
    pub(crate) fn fetch_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Fetch(_)))
            .count()
    }
}

/// Plans a discovery from the index (`(id, score)`, any order), the ids a SCAN found
/// (`legacy`), the time (Unix ms) and the previous cache (sorted by id, consumed).
pub(crate) fn plan<T>(
    mut indexed: Vec<(String, f64)>,
    legacy: &BTreeSet<String>,
    now_ms: f64,
    old: Vec<Cached<T>>,
) -> Plan<T> {
    sort_by_id(&mut indexed);
    indexed.dedup_by(|a, b| a.0 == b.0);
    let mut old = old.into_iter().peekable();
    let mut leg = legacy.iter().peekable();
    let mut ids = Vec::with_capacity(indexed.len());
    let mut steps = Vec::with_capacity(indexed.len());
    for (id, score) in indexed {
        while let Some(l) = leg.next_if(|l| l.as_str() < id.as_str()) {
            ids.push(l.clone());
            steps.push(Step::Fetch(None));
        }
        let scanned = leg.next_if(|l| **l == id).is_some();
        while old.next_if(|c| c.id < id).is_some() {}
        let cached = old.next_if(|c| c.id == id);
        let step = if score <= now_ms {
            if !scanned {
                continue;
            }
            Step::Fetch(None)
        } else {
            match cached {
                Some(c) if c.score == score => Step::Reuse(c),
                _ => Step::Fetch(Some(score)),
            }
        };
        ids.push(id);
        steps.push(step);
    }
    for l in leg {
        ids.push(l.clone());
        steps.push(Step::Fetch(None));
    }
    Plan { ids, steps }
}

/// Sorts `(id, score)` pairs by id (byte order), comparing first a 16-byte big-endian
/// prefix of each id kept next to its position (no pointer chasing for ids that differ
/// in their first 16 bytes, as `ip:port` ids mostly do), then the ids themselves.
fn sort_by_id(items: &mut Vec<(String, f64)>) {
    fn prefix(s: &str) -> u128 {
        let b = s.as_bytes();
        let mut a = [0u8; 16];
        let n = b.len().min(16);
        a[..n].copy_from_slice(&b[..n]);
        u128::from_be_bytes(a)
    }
    let mut keys: Vec<(u128, usize)> = items
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (prefix(id), i))
        .collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| items[a.1].0.cmp(&items[b.1].0)));
    let mut sorted = Vec::with_capacity(items.len());
    for (_, i) in keys {
        sorted.push(std::mem::take(&mut items[i]));
    }
    *items = sorted;
}

/// Maps `f` over `items`, on up to 4 threads when there are enough items to pay for them
/// (decoding dominates a cold discovery of a big cluster). Output order is input order.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    const MIN_PER_THREAD: usize = 256;
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(4)
        .min(items.len() / MIN_PER_THREAD)
        .max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let mut parts = items.chunks(chunk);
        // The first chunk runs on this thread.
        let first = parts.next().unwrap_or_default();
        let handles: Vec<_> = parts
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        out.extend(first.iter().map(f));
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// What a discovery found for one kind of record.
pub(crate) struct Finished<T> {
    /// Every present id with its outcome, sorted by id.
    pub(crate) found: Vec<(String, Outcome<T>)>,
    /// Fetched ids whose key is gone.
    pub(crate) gone: Vec<String>,
    /// The cache for the next discovery.
    pub(crate) cache: Vec<Cached<T>>,
}

/// Completes `plan` with the values read for its [`Plan::to_fetch`] ids (in that order;
/// `None` for a missing key), decoding them with `decode`.
pub(crate) fn finish<T, F>(plan: Plan<T>, values: Vec<Option<Vec<u8>>>, decode: F) -> Finished<T>
where
    T: Send + Sync,
    F: Fn(&str, &[u8]) -> Result<T, String> + Sync,
{
    let fetched: Vec<(&str, Option<Vec<u8>>)> = plan.to_fetch().zip(values).collect();
    let decoded: Vec<Option<Outcome<T>>> = par_map(&fetched, |(id, bytes)| {
        bytes.as_ref().map(|b| match decode(id, b) {
            Ok(r) => Ok(Arc::new(r)),
            Err(reason) => Err(Arc::from(reason)),
        })
    });
    drop(fetched);
    let mut decoded = decoded.into_iter();
    let mut found = Vec::with_capacity(plan.ids.len());
    let mut gone = Vec::new();
    let mut cache = Vec::with_capacity(plan.ids.len());
    for (id, step) in plan.ids.into_iter().zip(plan.steps) {
        match step {
            Step::Reuse(c) => {
                found.push((id, c.outcome.clone()));
                cache.push(c);
            }
            Step::Fetch(score) => match (decoded.next().flatten(), score) {
                (None, _) => gone.push(id),
                (Some(outcome), Some(score)) => {
                    cache.push(Cached {
                        id: id.clone(),
                        score,
                        outcome: outcome.clone(),
                    });
                    found.push((id, outcome));
                }
                (Some(outcome), None) => found.push((id, outcome)),
            },
        }
    }
    Finished { found, gone, cache }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// One discovery against `store` (id → (score or None if unindexed, value)).
    fn run(
        store: &[(&str, Option<f64>, Option<&str>)],
        now: f64,
        old: Vec<Cached<String>>,
        calls: &AtomicUsize,
    ) -> (Finished<String>, Vec<String>) {
        let indexed = store
            .iter()
            .filter_map(|(id, s, _)| s.map(|s| ((*id).to_owned(), s)))
            .collect();
        let legacy: BTreeSet<String> = store
            .iter()
            .filter(|(_, s, _)| s.is_none())
            .map(|(id, _, _)| (*id).to_owned())
            .collect();
        let plan = plan(indexed, &legacy, now, old);
        let fetched: Vec<String> = plan.to_fetch().map(str::to_owned).collect();
        let values = fetched
            .iter()
            .map(|id| {
                store
                    .iter()
                    .find(|(i, _, _)| i == id)
                    .and_then(|(_, _, v)| v.map(|v| v.as_bytes().to_vec()))
            })
            .collect();
        let done = finish(plan, values, |id, bytes| {
            calls.fetch_add(1, Ordering::Relaxed);
            let s = String::from_utf8_lossy(bytes);
            if s.starts_with("bad") {
                Err(format!("{id}: bad"))
            } else {
                Ok(format!("{id}={s}"))
            }
        });
        (done, fetched)
    }

    fn plain(found: &[(String, Outcome<String>)]) -> Vec<(String, Result<String, String>)> {
        found
            .iter()
            .map(|(id, o)| {
                (
                    id.clone(),
                    o.as_ref().map(|r| (**r).clone()).map_err(|e| e.to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn unchanged_scores_are_not_fetched_again() {
        let calls = AtomicUsize::new(0);
        let store = [
            ("a", Some(10.0), Some("1")),
            ("b", Some(10.0), Some("bad")),
            ("c", Some(10.0), Some("3")),
        ];
        let (first, fetched) = run(&store, 0.0, Vec::new(), &calls);
        assert_eq!(fetched.len(), 3);
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        let (again, fetched) = run(&store, 0.0, first.cache, &calls);
        assert!(fetched.is_empty());
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert_eq!(plain(&again.found), plain(&first.found));
        // The same allocation, not a copy.
        assert!(Arc::ptr_eq(
            again.found[0].1.as_ref().unwrap(),
            first.found[0].1.as_ref().unwrap()
        ));
        assert_eq!(&**again.found[1].1.as_ref().unwrap_err(), "b: bad");
        // One rewritten (new score), one gone from the index, one new, one unindexed.
        let store = [
            ("a", Some(10.0), Some("1")),
            ("b", Some(11.0), Some("2")),
            ("d", Some(10.0), Some("4")),
            ("e", None, Some("5")),
        ];
        let (third, fetched) = run(&store, 0.0, again.cache, &calls);
        assert_eq!(fetched, ["b", "d", "e"]);
        assert_eq!(
            plain(&third.found),
            vec![
                ("a".to_owned(), Ok("a=1".to_owned())),
                ("b".to_owned(), Ok("b=2".to_owned())),
                ("d".to_owned(), Ok("d=4".to_owned())),
                ("e".to_owned(), Ok("e=5".to_owned())),
            ]
        );
        let ids: Vec<&str> = third.cache.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "d"]);
        // Unindexed ids are fetched every time.
        let (_, fetched) = run(&store, 0.0, third.cache, &calls);
        assert_eq!(fetched, ["e"]);
    }

    #[test]
    fn expired_index_entries_are_not_fetched() {
        let calls = AtomicUsize::new(0);
        let store = [("a", Some(10.0), Some("1")), ("b", Some(20.0), Some("2"))];
        let (first, _) = run(&store, 5.0, Vec::new(), &calls);
        assert_eq!(first.found.len(), 2);
        let (second, fetched) = run(&store, 10.0, first.cache, &calls);
        assert!(fetched.is_empty());
        assert_eq!(plain(&second.found), vec![("b".into(), Ok("b=2".into()))]);
        assert_eq!(second.cache.len(), 1);
    }

    #[test]
    fn missing_keys_are_gone_and_not_cached() {
        let calls = AtomicUsize::new(0);
        let store = [("a", Some(10.0), None), ("b", None, None)];
        let (done, fetched) = run(&store, 0.0, Vec::new(), &calls);
        assert_eq!(fetched, ["a", "b"]);
        assert!(done.found.is_empty());
        assert_eq!(done.gone, ["a", "b"]);
        assert!(done.cache.is_empty());
    }

    #[test]
    fn forgotten_ids_are_fetched_again() {
        let calls = AtomicUsize::new(0);
        let store = [("a", Some(10.0), Some("1")), ("b", Some(10.0), Some("2"))];
        let (first, _) = run(&store, 0.0, Vec::new(), &calls);
        let mut caches = DecodeCaches::<String, ()> {
            stats: first.cache,
            rpc: Vec::new(),
        };
        caches.forget_stats("b");
        let (_, fetched) = run(&store, 0.0, caches.stats, &calls);
        assert_eq!(fetched, ["b"]);
    }

    #[test]
    fn ids_sort_in_byte_order() {
        let mut ids: Vec<String> = [
            "10.0.0.10:11434",
            "10.0.0.1:11434",
            "a",
            "",
            "ab",
            "ab\u{0}",
            "0123456789abcdefZ",
            "0123456789abcdefA",
            "0123456789abcdef",
            "10.0.0.1:1143",
            "é",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let mut items: Vec<(String, f64)> = ids.iter().map(|s| (s.clone(), 1.0)).collect();
        sort_by_id(&mut items);
        ids.sort();
        let got: Vec<String> = items.into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, ids);
    }

    #[test]
    fn big_batches_keep_their_order() {
        let calls = AtomicUsize::new(0);
        let raw: Vec<(String, String)> = (0..2000)
            .rev()
            .map(|i| (format!("{i:05}"), i.to_string()))
            .collect();
        let store: Vec<(&str, Option<f64>, Option<&str>)> = raw
            .iter()
            .map(|(a, b)| (a.as_str(), Some(1.0), Some(b.as_str())))
            .collect();
        let (out, _) = run(&store, 0.0, Vec::new(), &calls);
        assert_eq!(calls.load(Ordering::Relaxed), 2000);
        for (i, (id, r)) in out.found.iter().enumerate() {
            assert_eq!(id, &format!("{i:05}"));
            assert_eq!(r.as_deref().unwrap(), &format!("{i:05}={i}"));
        }
    }
}
