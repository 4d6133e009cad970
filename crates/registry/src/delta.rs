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
//! - **full** (first discovery, after a gap, or when the log cannot be trusted): the
//!   cursor (newest log entry) first, then every
//!   live id of each index (deadline in the future, read without scores), then the
//!   values of all of them. Any write after the cursor was read shows up in the log on
//!   the next discovery.
//! - **delta**: the index entries whose deadline has passed (their keys expired with
//!   them: dropped, not read), then the log from the cursor on; only the logged ids are
//!   read, each with its index entry, and kept only while that entry is live (so
//!   interleaved writes and deletes of one record end as a full read would see them).
//!   A delta read also **audits** ([`Audit`]): it reads again a share of the kept ids
//!   (the share of `full_read_interval` since the last read, walking on in id order),
//!   and once per `full_read_interval` lists the index whole (ids listed but not kept
//!   are read, kept ids no longer listed are dropped), so what no log announced is seen
//!   within that interval without one read of everything.
//!   The cursor entry must still be the first one returned: if it was trimmed away (the
//!   reader fell more than the log's cap behind) or the log was reset (FLUSHALL, a
//!   restart without persistence), the reader does a full read instead.
//!
//! Ids found only by a SCAN or a keyspace event (keys written by SOLLOL's tools, which
//! keep no index and write no log) are read on every discovery and never kept. Decoding
//! is a pure function of (key, bytes, limits) and the limits are fixed per registry, so a
//! kept outcome is what decoding the current value would give, as long as only writers
//! that log write indexed keys; others' writes are caught by keyspace events (an id to
//! read again) and by the audit. See `docs/registry.md`.

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

/// The outcomes a reader keeps for one kind of record: live indexed ids, by id (a
/// `SmolStr`: an `ip:port` id fits inline, so a kept id is no heap block of its own).
pub(crate) type Kept<T> = BTreeMap<SmolStr, Entry<T>>;

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
#[cfg(test)]
pub(crate) fn plan_delta<T>(
    kept: Kept<T>,
    expired: Vec<String>,
    logged: Vec<String>,
    dirty: &BTreeSet<String>,
    unindexed: &BTreeSet<String>,
) -> Plan<T> {
    plan_delta_audited(kept, expired, logged, dirty, unindexed, Audit::default()).0
}

/// What a delta read also checks of what it keeps, so that writes no log announced (a
/// raw `SET`, `DEL` or `ZADD` of one of our keys) are seen without a full read: a full
/// read of a big cluster holds up every change behind it (at 10,000 nodes, ≈ 16 MB of
/// values at once), while an audit spreads the same reads over the discoveries.
#[derive(Debug, Default)]
pub(crate) struct Audit<'a> {
    /// How many kept ids to read again, walking on in id order after `after` (from the
    /// first when `None` or past the last), wrapping around.
    pub(crate) count: usize,
    /// Where the previous audit stopped.
    pub(crate) after: Option<&'a str>,
    /// Every live id of the index, when a listing was due: ids it lists that are not
    /// kept (an index entry no log named) and kept ids it does not list (an index entry
    /// removed without the log) are read with their index entries, and settled as a
    /// full read would settle them.
    pub(crate) listed: Option<Vec<String>>,
}

/// [`plan_delta`], also reading again what `audit` says, each such id as
/// [`Read::Logged`] (kept only while the index lists it, as a full read would keep it).
/// Returns the plan and the last id the audit walked to (where the next one goes on).
pub(crate) fn plan_delta_audited<T>(
    mut kept: Kept<T>,
    expired: Vec<String>,
    logged: Vec<String>,
    dirty: &BTreeSet<String>,
    unindexed: &BTreeSet<String>,
    audit: Audit<'_>,
) -> (Plan<T>, Option<SmolStr>) {
    for id in &expired {
        kept.remove(id.as_str());
    }
    let mut fetch: BTreeMap<String, Read> = BTreeMap::new();
    for id in logged {
        fetch.insert(id, Read::Logged);
    }
    for id in dirty {
        let read = if kept.contains_key(id.as_str()) {
            Read::Logged
        } else {
            Read::Unindexed
        };
        fetch.entry(id.clone()).or_insert(read);
    }
    for id in unindexed {
        if !kept.contains_key(id.as_str()) {
            fetch.entry(id.clone()).or_insert(Read::Unindexed);
        }
    }
    if let Some(mut listed) = audit.listed {
        sort_ids(&mut listed);
        listed.dedup();
        // Kept but not listed: its index entry went without a log entry (or came back
        // since). Read with its index entry, it is settled as a full read would settle it:
        // kept if listed by then, returned unindexed if SCAN or a keyspace event found its
        // key, dropped otherwise.
        let mut live = listed.iter().peekable();
        for id in kept.keys() {
            while live.next_if(|l| l.as_str() < id.as_str()).is_some() {}
            if live.peek().is_none_or(|l| l.as_str() != id.as_str()) {
                fetch.entry(id.to_string()).or_insert(Read::Logged);
            }
        }
        // Listed but not kept: an index entry no log named (an older writer's record,
        // also one SCAN found): read, and kept once its index entry is confirmed.
        for id in listed {
            if !kept.contains_key(id.as_str()) {
                fetch
                    .entry(id)
                    .and_modify(|read| {
                        if *read == Read::Unindexed {
                            *read = Read::Logged;
                        }
                    })
                    .or_insert(Read::Logged);
            }
        }
    }
    let mut walked = audit.after.map(SmolStr::new);
    let count = audit.count.min(kept.len());
    if count > 0 {
        let after = audit.after.unwrap_or("");
        let tail = kept
            .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .map(|(id, _)| id);
        for id in tail.chain(kept.keys()).take(count) {
            fetch.entry(id.to_string()).or_insert(Read::Logged);
            walked = Some(id.clone());
        }
    }
    let plan = Plan {
        kept,
        previous: Kept::new(),
        fetch: fetch.into_iter().collect(),
        marker: None,
    };
    (plan, walked)
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
                while kept.next_if(|k| k.as_str() < id.as_str()).is_some() {}
                kept.peek().map(|k| k.as_str()) != Some(id.as_str())
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
                kept.remove(id.as_str());
                gone.push(id);
            }
            (Some(outcome), Read::Indexed) if fresh => indexed.push((SmolStr::from(id), outcome)),
            (Some(outcome), Read::Indexed) => {
                kept.insert(SmolStr::from(id), outcome);
            }
            (Some(entry), Read::Unindexed) => {
                kept.remove(id.as_str());
                extra.push((id, entry.outcome));
            }
            // Unsettled (the caller did not confirm) counts as not live.
            (Some(_), Read::Dropped | Read::Logged) => {
                kept.remove(id.as_str());
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
        while let Some((e, o)) = extra_iter.next_if(|(e, _)| e.as_str() < id.as_str()) {
            found.push((SmolStr::new(&e), o));
            unindexed.push(e);
        }
        // Shared (an `ip:port` id is inline; a longer one a reference count).
        found.push((id.clone(), entry.outcome.clone()));
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
#[path = "delta_tests.rs"]
mod tests;
