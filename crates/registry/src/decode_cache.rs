//! Reuse of the previous discovery's decoded records when their bytes have not changed.
//!
//! Reporters republish every 5 s while a coordinator may discover more often, so most
//! records read by a discovery are byte-for-byte what the previous one read. Each cache
//! entry keeps the exact bytes last read under its key; once the same bytes have been
//! read twice in a row the outcome (the record, or why it was skipped) is kept too, and
//! from then on the record is cloned instead of decoded until its bytes change. Keeping
//! an outcome costs a clone, so it is not done on first sight: a cold discovery, or one
//! where every record changed, costs what it would without the cache (plus one byte
//! comparison per record). Decoding is a pure function of (key, bytes, limits) and the
//! limits are fixed per registry, so a hit returns exactly what decoding would. The cache
//! holds only the entries of the last discovery (keys that vanished are dropped with it)
//! and its bytes are the very buffers Redis returned (moved, not copied).

/// The bytes last read under one key and, once they were read twice, their outcome.
pub(crate) struct Cached<T> {
    id: String,
    bytes: Vec<u8>,
    decoded: Option<Result<T, String>>,
}

/// The decode caches of one registry: per record kind, sorted by id.
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

/// Maps `f` over `items`, on up to 4 threads when there are enough items to pay for them
/// (decoding dominates discovery of big clusters). Output order is input order.
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

/// An id and what decoding its record gave: the record, or why it is skipped.
pub(crate) type Decoded<T> = (String, Result<T, String>);

/// Decodes `raw` (`(id, bytes)`, normally sorted by id) with `decode`, reusing the
/// entries of `old` (sorted by id) whose bytes are unchanged. Returns each id with its
/// outcome, in input order, and the cache for the next call.
pub(crate) fn decode_all<T, F>(
    raw: Vec<(String, Vec<u8>)>,
    old: Vec<Cached<T>>,
    decode: F,
) -> (Vec<Decoded<T>>, Vec<Cached<T>>)
where
    T: Clone + Send + Sync,
    F: Fn(&str, &[u8]) -> Result<T, String> + Sync,
{
    // Pair every record with its previous entry when the bytes are the same (a merge of
    // two sorted lists; an unsorted input only costs misses, never a wrong hit).
    let mut old: Vec<Option<Cached<T>>> = old.into_iter().map(Some).collect();
    let mut next = 0;
    let items: Vec<(String, Vec<u8>, Option<usize>)> = raw
        .into_iter()
        .map(|(id, bytes)| {
            let mut hit = None;
            while let Some(Some(c)) = old.get(next) {
                if c.id < id {
                    next += 1;
                    continue;
                }
                if c.id == id && c.bytes == bytes {
                    hit = Some(next);
                    next += 1;
                }
                break;
            }
            (id, bytes, hit)
        })
        .collect();
    // A hit with a kept outcome clones it; anything else is decoded, and the outcome is
    // kept (cloned) when these bytes were already read last time. On the worker threads.
    let outcomes = par_map(&items, |(id, bytes, hit)| {
        let prior = hit.and_then(|i| old[i].as_ref());
        match prior.and_then(|p| p.decoded.as_ref()) {
            Some(kept) => (kept.clone(), None),
            None => {
                let decoded = decode(id, bytes);
                let keep = prior.map(|_| decoded.clone());
                (decoded, keep)
            }
        }
    });
    let mut out = Vec::with_capacity(items.len());
    let mut cache = Vec::with_capacity(items.len());
    for ((id, bytes, hit), (result, keep)) in items.into_iter().zip(outcomes) {
        match hit.and_then(|i| old[i].take()) {
            // Same bytes as last time: the old entry stays, with the outcome if new.
            Some(mut prior) => {
                if keep.is_some() {
                    prior.decoded = keep;
                }
                cache.push(prior);
            }
            None => cache.push(Cached {
                id: id.clone(),
                bytes,
                decoded: None,
            }),
        }
        out.push((id, result));
    }
    (out, cache)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn run(
        raw: &[(&str, &str)],
        old: Vec<Cached<String>>,
        calls: &AtomicUsize,
    ) -> (Vec<Decoded<String>>, Vec<Cached<String>>) {
        let raw = raw
            .iter()
            .map(|(id, b)| ((*id).to_owned(), b.as_bytes().to_vec()))
            .collect();
        decode_all(raw, old, |id, bytes| {
            calls.fetch_add(1, Ordering::Relaxed);
            let s = String::from_utf8_lossy(bytes);
            if s.starts_with("bad") {
                Err(format!("{id}: bad"))
            } else {
                Ok(format!("{id}={s}"))
            }
        })
    }

    #[test]
    fn unchanged_bytes_are_not_decoded_again() {
        let calls = AtomicUsize::new(0);
        let batch = [("a", "1"), ("b", "bad"), ("c", "3")];
        let (out, cache) = run(&batch, Vec::new(), &calls);
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        let first = out.clone();
        // Same bytes a second time: decoded again, and the outcomes kept.
        let (out, cache) = run(&batch, cache, &calls);
        assert_eq!(calls.load(Ordering::Relaxed), 6);
        assert_eq!(out, first);
        // And from then on not decoded: same outcomes (errors included).
        let (out, cache) = run(&batch, cache, &calls);
        assert_eq!(calls.load(Ordering::Relaxed), 6);
        assert_eq!(out, first);
        // One changed, one gone, one new: only those two are decoded.
        let (out, cache) = run(&[("a", "1"), ("b", "2"), ("d", "4")], cache, &calls);
        assert_eq!(calls.load(Ordering::Relaxed), 8);
        assert_eq!(
            out,
            vec![
                ("a".to_owned(), Ok("a=1".to_owned())),
                ("b".to_owned(), Ok("b=2".to_owned())),
                ("d".to_owned(), Ok("d=4".to_owned())),
            ]
        );
        let ids: Vec<&str> = cache.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "d"]);
    }

    #[test]
    fn same_bytes_under_another_key_are_decoded_for_that_key() {
        let calls = AtomicUsize::new(0);
        let (_, cache) = run(&[("a", "x")], Vec::new(), &calls);
        let (_, cache) = run(&[("a", "x")], cache, &calls);
        let (out, _) = run(&[("b", "x")], cache, &calls);
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert_eq!(out, vec![("b".to_owned(), Ok("b=x".to_owned()))]);
    }

    #[test]
    fn big_batches_keep_their_order() {
        let calls = AtomicUsize::new(0);
        let raw: Vec<(String, String)> = (0..2000)
            .map(|i| (format!("{i:05}"), i.to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = raw.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let (out, cache) = run(&refs, Vec::new(), &calls);
        let (again, cache) = run(&refs, cache, &calls);
        let (third, _) = run(&refs, cache, &calls);
        assert_eq!(calls.load(Ordering::Relaxed), 4000);
        assert_eq!(out, again);
        assert_eq!(out, third);
        for (i, (id, r)) in out.iter().enumerate() {
            assert_eq!(id, &format!("{i:05}"));
            assert_eq!(r.as_deref(), Ok(format!("{i:05}={i}").as_str()));
        }
    }
}
