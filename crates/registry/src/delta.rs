//! Incremental ("delta") discovery: keep the records decoded by earlier discoveries and,
//! on the next one, read only what the change log says was written since.
//!
//! Our writers, in one pipeline and in this order, `SET` a record's value, `ZADD` its id
//! into the kind's index (score = expiry deadline, Unix ms), and `XADD` its id to the
//! change log (`vramroute:changes`, a capped stream); a deregistration `DEL`s, `ZREM`s
//! and logs the id the same way. A reader keeps what it knows — per kind, the decoding
//! outcome of every live indexed id (the record behind an `Arc`, or why it is skipped) —
//! and the id of the last log entry it has seen (its cursor). Two kinds of read:
//!
//! - **full** (first discovery, every `full_read_interval`, after a gap, on a sweep, or
//!   when the log cannot be trusted): the cursor (newest log entry) first, then every
//!   live id of each index (deadline in the future, read without scores), then the
//!   values of all of them. Any write after the cursor was read shows up in the log on
//!   the next discovery.
//! - **delta**: the index entries whose deadline has passed (their keys expired with
//!   them: dropped, not read), then the log from the cursor on; only the logged ids are
//!   read, each with its index entry, and kept only while that entry is live (so
//!   interleaved writes and deletes of one record end as a full read would see them).
//!   The cursor entry must still be the first one returned: if it was trimmed away (the
//!   reader fell more than the log's cap behind) or the log was reset (FLUSHALL, a
//!   restart without persistence), the reader does a full read instead.
//!
//! Ids found only by a SCAN or a keyspace event (keys written by SOLLOL's tools, which
//! keep no index and write no log) are read on every discovery and never kept. Decoding
//! is a pure function of (key, bytes, limits) and the limits are fixed per registry, so a
//! kept outcome is what decoding the current value would give, as long as only writers
//! that log write indexed keys; others' writes are caught by keyspace events (an id to
//! read again) and by the periodic sweep (a full read). See `docs/registry.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;
use std::sync::Arc;

use crate::keys;
use crate::SmolStr;

/// What decoding one record gave: the shared record, or why it is skipped.
pub(crate) type Outcome<T> = Result<Arc<T>, Arc<str>>;

/// A fingerprint of a value's bytes (XXH3, 64 bits; non-zero, so that an absent print
/// costs no space). Decoding is a pure function of the bytes (with the id and the
/// registry's fixed limits), so a value with the print of the one an outcome was
/// decoded from has that outcome: it is not decoded again. A rewrite of one key is
/// taken for unchanged only if its new bytes collide with its old ones on 64 bits.
pub(crate) type Print = NonZeroU64;

/// The print of `bytes`.
pub(crate) fn print_of(bytes: &[u8]) -> Print {
    NonZeroU64::new(xxhash_rust::xxh3::xxh3_64(bytes)).unwrap_or(NonZeroU64::MIN)
}

/// What a reader keeps of one id: its outcome, and the print of the bytes it was
/// decoded from (`None` when it was not decoded from bytes: a value not read, such as
/// one over the size cap).
pub(crate) struct Entry<T> {
    pub(crate) outcome: Outcome<T>,
    pub(crate) print: Option<Print>,
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry {
            outcome: self.outcome.clone(),
            print: self.print,
        }
    }
}

/// The outcomes a reader keeps for one kind of record: live indexed ids, by id.
pub(crate) type Kept<T> = BTreeMap<String, Entry<T>>;

/// How one id read by a discovery is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Live in the index (a full read just listed it): its outcome is kept.
    Indexed,
    /// Named by the change log or a keyspace event while kept: kept if the index still
    /// lists it as live when it is read ([`Plan::confirm`]), otherwise treated like an
    /// unindexed id when SCAN or keyspace events found its key, otherwise dropped.
    Logged,
    /// Found only by SCAN or keyspace events: returned, read again every time, not kept.
    Unindexed,
    /// Not live in the index and not found otherwise: neither returned nor kept.
    Dropped,
}

/// The ids one discovery reads, sorted by id, each with how it is treated, and the
/// outcomes kept from before.
pub(crate) struct Plan<T> {
    kept: Kept<T>,
    /// What an earlier read kept, by id (a full read's, see [`Plan::sharing`]).
    previous: Kept<T>,
    fetch: Vec<(String, Read)>,
    /// Changes only (see [`Plan::set_changes_only`]): the marker of an unchanged record.
    marker: Option<Arc<T>>,
}

impl<T> Plan<T> {
    /// The same plan, sharing with `previous` (what an earlier read kept): an outcome
    /// decoded now that equals the one `previous` holds for its id is replaced by that
    /// one (the same `Arc`), so a full read hands back unchanged records as a delta
    /// read does — the caller's per-record work keyed on `Arc` identity is reused, and
    /// the duplicate is freed as soon as it is decoded rather than held until the read
    /// ends. (A delta read does the same with the outcomes it keeps.)
    pub(crate) fn sharing(mut self, previous: Kept<T>) -> Self {
        self.previous = previous;
        self
    }

    /// Hands back changes only: a record unchanged since the outcomes
    /// this plan starts from (kept, or shared with a previous read) is `marker`, and what
    /// is kept afterwards holds `marker` instead of the records (with their prints), so
    /// the reader keeps no record alive: the caller keeps what it needs of them.
    pub(crate) fn set_changes_only(&mut self, marker: Option<Arc<T>>) {
        self.marker = marker;
    }

    /// The ids to read, in order.
    pub(crate) fn to_fetch(&self) -> impl Iterator<Item = &str> {
        self.fetch.iter().map(|(id, _)| id.as_str())
    }

    /// How many ids to read.
    pub(crate) fn fetch_count(&self) -> usize {
        self.fetch.len()
    }

    /// The [`Read::Logged`] ids, in order: their index entries are read with their
    /// values.
    pub(crate) fn to_confirm(&self) -> impl Iterator<Item = &str> {
        self.fetch
            .iter()
            .filter(|(_, r)| *r == Read::Logged)
            .map(|(id, _)| id.as_str())
    }

    /// The ids whose key is listed (live in the index, or found by SCAN or keyspace
    /// events; so after [`Self::confirm`]) but for which `values` (one per
    /// [`Self::to_fetch`] id, in order) holds no string: absent, or of another Redis
    /// type (`MGET` answers nil for both). The caller asks their `TYPE`.
    pub(crate) fn listed_missing<V>(&self, values: &[Option<V>]) -> Vec<String> {
        self.fetch
            .iter()
            .zip(values.iter().map(Some).chain(std::iter::repeat(None)))
            .filter(|((_, read), v)| {
                v.is_none_or(Option::is_none) && matches!(read, Read::Indexed | Read::Unindexed)
            })
            .map(|((id, _), _)| id.clone())
            .collect()
    }

    /// Settles the [`Read::Logged`] ids with `live` (one answer per [`Self::to_confirm`]
    /// id, in order: whether the index lists it with a deadline in the future) and
    /// `unindexed` (whether SCAN or keyspace events found the id's key), as a full read
    /// would see them.
    pub(crate) fn confirm(&mut self, live: &[bool], unindexed: impl Fn(&str) -> bool) {
        let mut live = live.iter();
        for (id, read) in &mut self.fetch {
            if *read == Read::Logged {
                *read = if live.next().copied().unwrap_or(false) {
                    Read::Indexed
                } else if unindexed(id) {
                    Read::Unindexed
                } else {
                    Read::Dropped
                };
            }
        }
    }
}

/// A full read: every `live` id of the index (any order; its outcome will be kept) and
/// every `unindexed` id not among them (read, not kept).
pub(crate) fn plan_full<T>(mut live: Vec<String>, unindexed: &BTreeSet<String>) -> Plan<T> {
    sort_ids(&mut live);
    live.dedup();
    let mut fetch = Vec::with_capacity(live.len() + unindexed.len());
    let mut others = unindexed.iter().peekable();
    for id in live {
        while let Some(o) = others.next_if(|o| o.as_str() < id.as_str()) {
            fetch.push((o.clone(), Read::Unindexed));
        }
        others.next_if(|o| **o == id);
        fetch.push((id, Read::Indexed));
    }
    fetch.extend(others.map(|o| (o.clone(), Read::Unindexed)));
    Plan {
        kept: Kept::new(),
        previous: Kept::new(),
        fetch,
        marker: None,
    }
}

/// A delta read: `kept` without the `expired` ids, reading every `logged` id and every
/// `dirty` id (someone wrote its key) — [`Read::Logged`] when logged or kept, else
/// [`Read::Unindexed`] — and every `unindexed` id not kept.
pub(crate) fn plan_delta<T>(
    mut kept: Kept<T>,
    expired: Vec<String>,
    logged: Vec<String>,
    dirty: &BTreeSet<String>,
    unindexed: &BTreeSet<String>,
) -> Plan<T> {
    for id in &expired {
        kept.remove(id);
    }
    let mut fetch: BTreeMap<String, Read> = BTreeMap::new();
    for id in logged {
        fetch.insert(id, Read::Logged);
    }
    for id in dirty {
        let read = if kept.contains_key(id) {
            Read::Logged
        } else {
            Read::Unindexed
        };
        fetch.entry(id.clone()).or_insert(read);
    }
    for id in unindexed {
        if !kept.contains_key(id) {
            fetch.entry(id.clone()).or_insert(Read::Unindexed);
        }
    }
    Plan {
        kept,
        previous: Kept::new(),
        fetch: fetch.into_iter().collect(),
        marker: None,
    }
}

/// Sorts ids in byte order, comparing first a 16-byte big-endian prefix of each id kept
/// next to its position (no pointer chasing for ids that differ in their first 16
/// bytes, as `ip:port` ids mostly do), then the ids themselves.
fn sort_ids(ids: &mut Vec<String>) {
    fn prefix(s: &str) -> u128 {
        let b = s.as_bytes();
        let mut a = [0u8; 16];
        let n = b.len().min(16);
        a[..n].copy_from_slice(&b[..n]);
        u128::from_be_bytes(a)
    }
    let mut keys: Vec<(u128, usize)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (prefix(id), i))
        .collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| ids[a.1].cmp(&ids[b.1])));
    let mut sorted = Vec::with_capacity(ids.len());
    for (_, i) in keys {
        sorted.push(std::mem::take(&mut ids[i]));
    }
    *ids = sorted;
}

/// Maps `f` over `items`, on up to 4 threads when there are enough items to pay for them
/// (decoding dominates a full read of a big cluster). Output order is input order.
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
    pub(crate) found: Vec<(SmolStr, Outcome<T>)>,
    /// Read ids whose key is gone.
    pub(crate) gone: Vec<String>,
    /// Read ids that are present but not indexed (to read again next time).
    pub(crate) unindexed: Vec<String>,
    /// The outcomes to keep for the next discovery.
    pub(crate) kept: Kept<T>,
}

impl<T> Finished<T> {
    /// Updates the set of ids known to exist without our index: adds those read now,
    /// drops those gone and those now kept (indexed).
    pub(crate) fn note_unindexed(&self, unindexed: &mut BTreeSet<String>) {
        unindexed.extend(self.unindexed.iter().cloned());
        for id in &self.gone {
            unindexed.remove(id);
        }
        if unindexed.is_empty() || self.kept.is_empty() {
            return;
        }
        // Both are sorted by id: one merge walk instead of a map lookup and a removal per
        // id (after a SCAN sweep every live id is in `unindexed`, and most are kept).
        let mut kept = self.kept.keys().peekable();
        *unindexed = std::mem::take(unindexed)
            .into_iter()
            .filter(|id| {
                while kept.next_if(|k| *k < id).is_some() {}
                kept.peek() != Some(&id)
            })
            .collect();
    }
}

/// The ids a change log names after a reader's cursor, and the new cursor.
pub(crate) struct Logged {
    pub(crate) cursor: Option<String>,
    pub(crate) gpu: Vec<String>,
    pub(crate) rpc: Vec<String>,
}

/// Reads the log `entries` (`(entry id, fields)`, oldest first) returned by `XRANGE
/// log {cursor} + COUNT {cap + 1}` (from `-` without a cursor). `None` when they cannot
/// be trusted or are too many: the cursor entry is not the first one (trimmed away, or
/// the log was reset), entries exist but the reader saw an empty log (it may have been
/// trimmed since), or there are more than `cap`.
pub(crate) fn read_log(
    cursor: Option<String>,
    entries: Vec<(String, Vec<(String, String)>)>,
    cap: usize,
) -> Option<Logged> {
    if entries.len() > cap {
        return None;
    }
    let mut entries = entries.into_iter();
    match &cursor {
        Some(c) => {
            if entries.next().is_none_or(|(id, _)| id != *c) {
                return None;
            }
        }
        None => {
            if !entries.as_slice().is_empty() {
                return None;
            }
        }
    }
    let mut logged = Logged {
        cursor,
        gpu: Vec::new(),
        rpc: Vec::new(),
    };
    for (id, fields) in entries {
        for (field, value) in fields {
            match field.as_str() {
                keys::CHANGE_GPU => logged.gpu.push(value),
                keys::CHANGE_RPC => logged.rpc.push(value),
                // Fields a later version may add.
                _ => {}
            }
        }
        logged.cursor = Some(id);
    }
    Some(logged)
}

/// Completes `plan` with the values read for its [`Plan::to_fetch`] ids (in that order;
/// `None` for a missing key), decoding them with `decode`. A value is whatever the
/// reader fetched: the bytes, or (the Redis backend's size-checked read) a reason not
/// to read them. (The Redis backend decodes part by part as the values arrive, with
/// [`decode_part`], and completes with [`finish_decoded`].)
#[cfg(test)]
pub(crate) fn finish<T, V, F>(plan: Plan<T>, values: Vec<Option<V>>, decode: F) -> Finished<T>
where
    T: Send + Sync + PartialEq,
    V: Sync + AsRef<[u8]>,
    F: Fn(&str, &V) -> Result<T, String> + Sync,
{
    let decoded = decode_part(&plan, 0, values, decode, |v| Some(print_of(v.as_ref())));
    finish_decoded(plan, decoded)
}

/// Decodes `values`, the values read for the plan's [`Plan::to_fetch`] ids from index
/// `offset` on (in that order; `None` for a missing key), with `decode`; on several
/// threads when there are many. A value whose `print` is the one known for its id (kept
/// by this plan, or by the earlier read a full read shares with) and that decoded then
/// is not decoded again: its known outcome is handed back (a registration rewritten as it was, every unchanged
/// record on a full read). Otherwise an outcome equal to the known one is that one
/// (unchanged records stay the same `Arc`; the duplicate is freed here), except with
/// changes only, where the known outcome is a marker. The values are dropped on return,
/// so a reader decoding each part as it arrives holds only the parts in flight.
pub(crate) fn decode_part<T, V, F, P>(
    plan: &Plan<T>,
    offset: usize,
    values: Vec<Option<V>>,
    decode: F,
    print: P,
) -> Vec<Option<Entry<T>>>
where
    T: Send + Sync + PartialEq,
    V: Sync,
    F: Fn(&str, &V) -> Result<T, String> + Sync,
    P: Fn(&V) -> Option<Print> + Sync,
{
    let fetched: Vec<(&str, Option<V>)> = plan
        .fetch
        .iter()
        .skip(offset)
        .map(|(id, _)| id.as_str())
        .zip(values)
        .collect();
    let (previous, kept) = (&plan.previous, &plan.kept);
    // With changes only, what is known holds markers: nothing to compare a record with.
    let compare = plan.marker.is_none();
    par_map(&fetched, |(id, value)| {
        let value = value.as_ref()?;
        let print = print(value);
        let known = previous.get(*id).or_else(|| kept.get(*id));
        // A failure is decoded again, so that it is noted (and remembered as junk).
        if let Some(k) = known.filter(|k| k.outcome.is_ok() && print.is_some() && k.print == print)
        {
            return Some(Entry {
                outcome: k.outcome.clone(),
                print,
            });
        }
        let outcome = match (decode(id, value), known.map(|k| &k.outcome)) {
            (Ok(r), Some(Ok(old))) if compare && **old == r => Ok(Arc::clone(old)),
            (Err(reason), Some(Err(old))) if **old == *reason => Err(Arc::clone(old)),
            (Ok(r), _) => Ok(Arc::new(r)),
            (Err(reason), _) => Err(Arc::from(reason)),
        };
        Some(Entry { outcome, print })
    })
}

/// Completes `plan` with `decoded`, the outcomes of its [`Plan::to_fetch`] ids in order
/// ([`decode_part`]'s, concatenated; `None` for a missing key, and for ids past the end).
pub(crate) fn finish_decoded<T>(plan: Plan<T>, decoded: Vec<Option<Entry<T>>>) -> Finished<T> {
    let Plan {
        mut kept,
        previous,
        fetch,
        marker,
    } = plan;
    drop(previous);
    let decoded = decoded.into_iter().chain(std::iter::repeat_with(|| None));
    let mut gone = Vec::new();
    let mut extra = Vec::new();
    // A full read starts from nothing kept: its outcomes (in id order, as `fetch` is)
    // are built into the map at once, not inserted one by one.
    let fresh = kept.is_empty();
    let mut indexed = Vec::new();
    for ((id, read), outcome) in fetch.into_iter().zip(decoded) {
        match (outcome, read) {
            (None, _) => {
                kept.remove(&id);
                gone.push(id);
            }
            (Some(outcome), Read::Indexed) if fresh => indexed.push((id, outcome)),
            (Some(outcome), Read::Indexed) => {
                kept.insert(id, outcome);
            }
            (Some(entry), Read::Unindexed) => {
                kept.remove(&id);
                extra.push((id, entry.outcome));
            }
            // Unsettled (the caller did not confirm) counts as not live.
            (Some(_), Read::Dropped | Read::Logged) => {
                kept.remove(&id);
            }
        }
    }
    if fresh {
        kept = indexed.into_iter().collect();
    }
    // Merge the kept outcomes with the unindexed ones read now (both sorted by id).
    let mut found = Vec::with_capacity(kept.len() + extra.len());
    let mut extra_iter = extra.into_iter().peekable();
    let mut unindexed = Vec::new();
    for (id, entry) in &mut kept {
        while let Some((e, o)) = extra_iter.next_if(|(e, _)| e < id) {
            found.push((SmolStr::new(&e), o));
            unindexed.push(e);
        }
        // An id fits inline (no allocation): they are `ip:port`.
        found.push((SmolStr::new(id), entry.outcome.clone()));
        // Changes only: the record is handed back, and only its marker kept.
        if let (Some(m), Ok(r)) = (&marker, &mut entry.outcome) {
            if !Arc::ptr_eq(m, r) {
                *r = Arc::clone(m);
            }
        }
    }
    for (e, o) in extra_iter {
        found.push((SmolStr::new(&e), o));
        unindexed.push(e);
    }
    Finished {
        found,
        gone,
        unindexed,
        kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Store<'a> = BTreeMap<&'a str, &'a str>;

    /// Reads `plan` against `store` (id → value), with `index` the live ids of the index
    /// and `unindexed` the ids found otherwise, counting decodes in `calls`.
    fn read_with(
        mut plan: Plan<String>,
        store: &Store<'_>,
        index: &[&str],
        unindexed: &BTreeSet<String>,
        calls: &AtomicUsize,
    ) -> Finished<String> {
        let live: Vec<bool> = plan.to_confirm().map(|id| index.contains(&id)).collect();
        plan.confirm(&live, |id| unindexed.contains(id));
        let values = plan
            .to_fetch()
            .map(|id| store.get(id).map(|v| v.as_bytes().to_vec()))
            .collect();
        finish(plan, values, |id, bytes: &Vec<u8>| {
            calls.fetch_add(1, Ordering::Relaxed);
            let s = String::from_utf8_lossy(bytes);
            if s.starts_with("bad") {
                Err(format!("{id}: bad"))
            } else {
                Ok(format!("{id}={s}"))
            }
        })
    }

    /// [`read_with`] where every id of `store` is live in the index.
    fn read(plan: Plan<String>, store: &Store<'_>, calls: &AtomicUsize) -> Finished<String> {
        let index: Vec<&str> = store.keys().copied().collect();
        read_with(plan, store, &index, &BTreeSet::new(), calls)
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn plain(found: &[(SmolStr, Outcome<String>)]) -> Vec<(String, Result<String, String>)> {
        found
            .iter()
            .map(|(id, o)| {
                (
                    id.to_string(),
                    o.as_ref().map(|r| (**r).clone()).map_err(|e| e.to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn a_full_read_reads_and_keeps_every_live_id_and_reads_unindexed_ones() {
        let calls = AtomicUsize::new(0);
        let store: Store = [("a", "1"), ("b", "bad"), ("c", "3"), ("x", "9")].into();
        let plan = plan_full(ids(&["c", "a", "b", "a"]), &set(&["a", "x", "y"]));
        let fetched: Vec<&str> = plan.to_fetch().collect();
        assert_eq!(fetched, ["a", "b", "c", "x", "y"]);
        let done = read(plan, &store, &calls);
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        assert_eq!(
            plain(&done.found),
            vec![
                ("a".into(), Ok("a=1".into())),
                ("b".into(), Err("b: bad".into())),
                ("c".into(), Ok("c=3".into())),
                ("x".into(), Ok("x=9".into())),
            ]
        );
        assert_eq!(done.gone, ["y"]);
        assert_eq!(done.unindexed, ["x"]);
        let kept: Vec<&str> = done.kept.keys().map(String::as_str).collect();
        assert_eq!(kept, ["a", "b", "c"]);
    }

    #[test]
    fn a_full_read_shares_the_unchanged_outcomes_of_the_previous_one() {
        let calls = AtomicUsize::new(0);
        let mut store: Store = [("a", "1"), ("b", "bad"), ("c", "3"), ("d", "4")].into();
        let first = read(
            plan_full(ids(&["a", "b", "c", "d"]), &set(&[])),
            &store,
            &calls,
        );
        // c rewritten with other bytes, d with the same ones.
        store.insert("c", "33");
        store.insert("d", "4");
        let plan = plan_full(ids(&["a", "b", "c", "d"]), &set(&[])).sharing(first.kept.clone());
        let second = read(plan, &store, &calls);
        assert_eq!(
            calls.load(Ordering::Relaxed),
            6,
            "a full read decodes what changed and what failed, not a value read before"
        );
        assert_eq!(
            plain(&second.found),
            vec![
                ("a".into(), Ok("a=1".into())),
                ("b".into(), Err("b: bad".into())),
                ("c".into(), Ok("c=33".into())),
                ("d".into(), Ok("d=4".into())),
            ]
        );
        let same = |i: usize| match (&first.found[i].1, &second.found[i].1) {
            (Ok(x), Ok(y)) => Arc::ptr_eq(x, y),
            (Err(x), Err(y)) => Arc::ptr_eq(x, y),
            _ => false,
        };
        assert_eq!(
            [same(0), same(1), same(2), same(3)],
            [true, true, false, true]
        );
        // What it keeps is what it returns.
        assert!(Arc::ptr_eq(
            second.kept["a"].outcome.as_ref().unwrap(),
            first.found[0].1.as_ref().unwrap()
        ));
        // A delta read: a logged id rewritten with the same bytes keeps its outcome, one
        // with other bytes does not.
        store.insert("d", "44");
        let plan = plan_delta(second.kept, vec![], ids(&["a", "d"]), &set(&[]), &set(&[]));
        let third = read(plan, &store, &calls);
        assert_eq!(calls.load(Ordering::Relaxed), 7, "only d is decoded");
        let a_now = third.found[0].1.as_ref().unwrap();
        assert!(Arc::ptr_eq(a_now, first.found[0].1.as_ref().unwrap()));
        assert_eq!(**third.found[3].1.as_ref().unwrap(), "d=44");
        assert!(!Arc::ptr_eq(
            third.found[3].1.as_ref().unwrap(),
            first.found[3].1.as_ref().unwrap()
        ));
    }

    #[test]
    fn changes_only_hands_back_markers_for_unchanged_records_and_keeps_no_record() {
        let calls = AtomicUsize::new(0);
        let marker = Arc::new("unchanged".to_owned());
        let is_marker = |o: &Outcome<String>| o.as_ref().is_ok_and(|r| Arc::ptr_eq(r, &marker));
        let mut store: Store = [("a", "1"), ("b", "bad"), ("c", "3")].into();
        let mut plan = plan_full(ids(&["a", "b", "c"]), &set(&["x"]));
        plan.set_changes_only(Some(Arc::clone(&marker)));
        store.insert("x", "9");
        let first = read_with(plan, &store, &["a", "b", "c"], &set(&["x"]), &calls);
        // Nothing was known: every record is itself.
        assert_eq!(
            plain(&first.found),
            vec![
                ("a".into(), Ok("a=1".into())),
                ("b".into(), Err("b: bad".into())),
                ("c".into(), Ok("c=3".into())),
                ("x".into(), Ok("x=9".into())),
            ]
        );
        // What is kept holds the marker (and the failure), not the records.
        assert!(first
            .kept
            .values()
            .all(|e| is_marker(&e.outcome) || e.outcome.is_err()));
        assert!(is_marker(&first.kept["a"].outcome) && first.kept["b"].outcome.is_err());
        // A delta read: c rewritten, a rewritten with the same bytes, b and x as they were.
        store.insert("c", "33");
        let mut plan = plan_delta(
            first.kept,
            vec![],
            ids(&["a", "c"]),
            &set(&[]),
            &set(&["x"]),
        );
        plan.set_changes_only(Some(Arc::clone(&marker)));
        let second = read_with(plan, &store, &["a", "b", "c"], &set(&["x"]), &calls);
        let outcomes: Vec<(&str, bool)> = second
            .found
            .iter()
            .map(|(id, o)| (id.as_str(), is_marker(o)))
            .collect();
        // a and b (not read) unchanged; c changed; x (unindexed: never kept) itself.
        assert_eq!(
            outcomes,
            [("a", true), ("b", false), ("c", false), ("x", false)]
        );
        assert_eq!(**second.found[2].1.as_ref().unwrap(), "c=33");
        assert_eq!(**second.found[3].1.as_ref().unwrap(), "x=9");
        // A full read sharing it: the unchanged ones are markers again, not decoded.
        let before = calls.load(Ordering::Relaxed);
        let mut plan = plan_full(ids(&["a", "b", "c"]), &set(&[])).sharing(second.kept);
        plan.set_changes_only(Some(Arc::clone(&marker)));
        let third = read(plan, &store, &calls);
        assert_eq!(
            calls.load(Ordering::Relaxed) - before,
            1,
            "only b (a failure) decoded"
        );
        assert!(is_marker(&third.found[0].1) && is_marker(&third.found[2].1));
        assert!(third
            .kept
            .values()
            .all(|e| is_marker(&e.outcome) || e.outcome.is_err()));
    }

    #[test]
    fn a_delta_read_reads_only_logged_dirty_and_unindexed_ids() {
        let calls = AtomicUsize::new(0);
        let mut store: Store = [("a", "1"), ("b", "bad"), ("c", "3"), ("x", "9")].into();
        let first = read(
            plan_full(ids(&["a", "b", "c"]), &set(&["x"])),
            &store,
            &calls,
        );
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        // Nothing logged: only the unindexed id is read; the rest is shared.
        let plan = plan_delta(first.kept, vec![], vec![], &set(&[]), &set(&["x"]));
        assert_eq!(plan.to_fetch().collect::<Vec<_>>(), ["x"]);
        let again = read_with(plan, &store, &["a", "b", "c"], &set(&["x"]), &calls);
        assert_eq!(calls.load(Ordering::Relaxed), 5);
        assert_eq!(plain(&again.found), plain(&first.found));
        assert!(Arc::ptr_eq(
            again.found[0].1.as_ref().unwrap(),
            first.found[0].1.as_ref().unwrap()
        ));
        // b rewritten and logged, d new and logged, c deleted and logged, a expired.
        store.insert("b", "2");
        store.insert("d", "4");
        store.remove("c");
        let plan = plan_delta(
            again.kept,
            ids(&["a"]),
            ids(&["d", "b", "c"]),
            &set(&[]),
            &set(&["x"]),
        );
        assert_eq!(plan.to_fetch().collect::<Vec<_>>(), ["b", "c", "d", "x"]);
        assert_eq!(plan.to_confirm().collect::<Vec<_>>(), ["b", "c", "d"]);
        let third = read_with(plan, &store, &["b", "d"], &set(&["x"]), &calls);
        assert_eq!(
            plain(&third.found),
            vec![
                ("b".into(), Ok("b=2".into())),
                ("d".into(), Ok("d=4".into())),
                ("x".into(), Ok("x=9".into())),
            ]
        );
        assert_eq!(third.gone, ["c"]);
        let kept: Vec<&str> = third.kept.keys().map(String::as_str).collect();
        assert_eq!(kept, ["b", "d"]);
    }

    #[test]
    fn dirty_ids_are_read_again_and_kept_only_when_indexed() {
        let calls = AtomicUsize::new(0);
        let mut store: Store = [("a", "1"), ("z", "7")].into();
        let first = read(plan_full(ids(&["a"]), &set(&[])), &store, &calls);
        // A raw write to a (kept) indexed key, and one to an unindexed key.
        store.insert("a", "2");
        let plan = plan_delta(first.kept, vec![], vec![], &set(&["a", "z"]), &set(&[]));
        assert_eq!(plan.to_confirm().collect::<Vec<_>>(), ["a"]);
        let done = read_with(plan, &store, &["a"], &set(&[]), &calls);
        assert_eq!(
            plain(&done.found),
            vec![
                ("a".into(), Ok("a=2".into())),
                ("z".into(), Ok("z=7".into()))
            ]
        );
        assert_eq!(done.unindexed, ["z"]);
        assert_eq!(done.kept.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn an_expired_id_logged_again_is_read() {
        let calls = AtomicUsize::new(0);
        let store: Store = [("a", "1")].into();
        let first = read(plan_full(ids(&["a"]), &set(&[])), &store, &calls);
        let plan = plan_delta(first.kept, ids(&["a"]), ids(&["a"]), &set(&[]), &set(&[]));
        let done = read(plan, &store, &calls);
        assert_eq!(plain(&done.found), vec![("a".into(), Ok("a=1".into()))]);
        assert_eq!(done.kept.len(), 1);
    }

    #[test]
    fn a_logged_id_the_index_no_longer_lists_is_not_kept() {
        // A publish and a deregister interleaved: the key is back, its index entry gone.
        let calls = AtomicUsize::new(0);
        let store: Store = [("a", "1"), ("b", "2")].into();
        let first = read(plan_full(ids(&["a", "b"]), &set(&[])), &store, &calls);
        let plan = plan_delta(first.kept, vec![], ids(&["a", "b"]), &set(&[]), &set(&[]));
        let done = read_with(plan, &store, &["b"], &set(&[]), &calls);
        assert_eq!(plain(&done.found), vec![("b".into(), Ok("b=2".into()))]);
        assert_eq!(done.kept.keys().collect::<Vec<_>>(), ["b"]);
        assert!(done.gone.is_empty() && done.unindexed.is_empty());
        // The same when SCAN found the key: returned as an unindexed record.
        let plan = plan_delta(done.kept, vec![], ids(&["a"]), &set(&[]), &set(&["a"]));
        let done = read_with(plan, &store, &["b"], &set(&["a"]), &calls);
        assert_eq!(done.found.len(), 2);
        assert_eq!(done.unindexed, ["a"]);
        assert_eq!(done.kept.keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn listed_ids_without_a_value_are_the_ones_to_type_check() {
        // a: indexed, nil; b: indexed, present; c: logged and no longer indexed, nil;
        // x: unindexed (SCAN), nil.
        let calls = AtomicUsize::new(0);
        let store: Store = [("b", "2"), ("c", "3")].into();
        let first = read(plan_full(ids(&["b", "c"]), &set(&[])), &store, &calls);
        let mut plan = plan_delta(
            first.kept,
            vec![],
            ids(&["a", "c"]),
            &set(&["b"]),
            &set(&["x"]),
        );
        plan.confirm(&[true, true, false], |_| false);
        let values: Vec<Option<Vec<u8>>> = vec![None, Some(b"2".to_vec()), None, None];
        assert_eq!(plan.to_fetch().collect::<Vec<_>>(), ["a", "b", "c", "x"]);
        assert_eq!(plan.listed_missing(&values), ["a", "x"]);
        // A short reply counts the rest as missing.
        assert_eq!(plan.listed_missing(&values[..1]), ["a", "b", "x"]);
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
        (
            id.to_owned(),
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn the_log_is_read_after_the_cursor_and_refused_when_untrustworthy() {
        let log = vec![
            entry("5-0", &[("gpu", "a")]),
            entry("6-0", &[("gpu", "b"), ("future", "x")]),
            entry("7-0", &[("rpc", "h:1")]),
        ];
        let got = read_log(Some("5-0".into()), log.clone(), 10).unwrap();
        assert_eq!(got.cursor.as_deref(), Some("7-0"));
        assert_eq!((got.gpu, got.rpc), (ids(&["b"]), ids(&["h:1"])));
        // Nothing new: the cursor stays.
        let got = read_log(Some("7-0".into()), log[2..].to_vec(), 10).unwrap();
        assert_eq!(got.cursor.as_deref(), Some("7-0"));
        assert!(got.gpu.is_empty() && got.rpc.is_empty());
        // The cursor entry was trimmed away, or the log reset (gone or newer ids).
        assert!(read_log(Some("4-0".into()), log.clone(), 10).is_none());
        assert!(read_log(Some("7-0".into()), vec![], 10).is_none());
        // An empty log seen before: entries now may be the tail of a trimmed log.
        assert!(read_log(None, vec![], 10).is_some());
        assert!(read_log(None, log.clone(), 10).is_none());
        // More than the cap: a full read is cheaper.
        assert!(read_log(Some("5-0".into()), log, 2).is_none());
    }

    #[test]
    fn noting_unindexed_ids_drops_exactly_the_kept_ones() {
        // The merge walk against a plain lookup, over interleavings of kept and
        // unindexed ids (prefixes of each other included).
        let names: Vec<String> = (0..40).map(|i| format!("n{}", i * 7 % 23)).collect();
        for step in 1..6 {
            let kept: Kept<String> = names
                .iter()
                .step_by(step)
                .map(|id| {
                    let entry = Entry {
                        outcome: Ok(Arc::new(id.clone())),
                        print: None,
                    };
                    (id.clone(), entry)
                })
                .collect();
            for skip in 0..4 {
                let mut unindexed: BTreeSet<String> = names.iter().skip(skip).cloned().collect();
                unindexed.insert("n".to_owned());
                unindexed.insert("n99".to_owned());
                let want: BTreeSet<String> = unindexed
                    .iter()
                    .filter(|id| !kept.contains_key(*id))
                    .cloned()
                    .collect();
                let done = Finished {
                    found: Vec::new(),
                    gone: Vec::new(),
                    unindexed: Vec::new(),
                    kept: kept.clone(),
                };
                done.note_unindexed(&mut unindexed);
                assert_eq!(unindexed, want, "step {step}, skip {skip}");
            }
        }
    }

    #[test]
    fn unindexed_ids_are_tracked_until_gone_or_indexed() {
        let calls = AtomicUsize::new(0);
        let store: Store = [("a", "1"), ("x", "9")].into();
        let mut unindexed = set(&["a", "x", "y"]);
        let done = read(plan_full(ids(&["a"]), &unindexed), &store, &calls);
        done.note_unindexed(&mut unindexed);
        assert_eq!(unindexed, set(&["x"]));
    }

    #[test]
    fn ids_sort_in_byte_order() {
        let mut want: Vec<String> = ids(&[
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
        ]);
        let mut got = want.clone();
        sort_ids(&mut got);
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn big_batches_keep_their_order() {
        let calls = AtomicUsize::new(0);
        let raw: Vec<(String, String)> = (0..2000)
            .rev()
            .map(|i| (format!("{i:05}"), i.to_string()))
            .collect();
        let store: Store = raw.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let live = raw.iter().map(|(a, _)| a.clone()).collect();
        let out = read(plan_full(live, &set(&[])), &store, &calls);
        assert_eq!(calls.load(Ordering::Relaxed), 2000);
        for (i, (id, r)) in out.found.iter().enumerate() {
            assert_eq!(id, &format!("{i:05}"));
            assert_eq!(r.as_deref().unwrap(), &format!("{i:05}={i}"));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The change log is written by anyone who can write the key: any entries are
        /// either refused (a full read follows) or give ids and a cursor among them.
        #[test]
        fn any_change_log_is_read_or_refused(
            cursor in proptest::option::of("[0-9]{1,3}-[0-9]"),
            entries in proptest::collection::vec(
                ("[0-9]{1,3}-[0-9]", proptest::collection::vec(
                    (proptest::prop_oneof!["gpu", "rpc", ".{0,6}"], ".{0,30}"), 0..4)),
                0..20),
            cap in 0usize..30,
        ) {
            let n = entries.len();
            let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
            if let Some(logged) = read_log(cursor.clone(), entries, cap) {
                proptest::prop_assert!(n <= cap);
                proptest::prop_assert!(logged.cursor.is_none_or(|c| ids.contains(&c) || cursor == Some(c)));
                proptest::prop_assert!(logged.gpu.len() + logged.rpc.len() <= n * 4);
            }
        }
    }
}
