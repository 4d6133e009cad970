//! Bounded reads for discovery: no value over the size cap is ever read, junk keys are
//! not read again while they stay the same, and index pruning costs each discovery a
//! bounded amount of work however many bogus members an index holds.
//!
//! - **The read is its own size check.** Each record key is read by a pipelined
//!   `GETRANGE key 0 cap` (cap =
//!   [`Limits::max_record_bytes`](crate::Limits::max_record_bytes)): at most `cap + 1`
//!   bytes of a value, whatever its size. A reply of `cap + 1` bytes is a value over the
//!   cap: its exact length (for the reason, and to remember it) is asked with `STRLEN` in
//!   one more round trip, only then. One command per record: measured against the
//!   `STRLEN` + `GETRANGE` pair per record it replaces, against the `MGET` before that
//!   and against a Lua script doing `STRLEN` then `GET` per key (which copies every
//!   value through Lua; `docs/registry.md`, "Benchmarks"). It needs no script permission
//!   and works alike on a Redis Cluster.
//! - **Junk is remembered until it changes.** A key found over the cap, holding another
//!   Redis type, or not decoding is remembered with its length (or "wrong type"). The
//!   next discoveries send only its `STRLEN`; while the length is unchanged the
//!   remembered reason is reported again without reading the value (a wrongly typed key
//!   costs no `TYPE` round trip either). Change is
//!   detected by the length (`STRLEN`, O(1)), by a keyspace event naming the key, by a
//!   change-log entry naming it, a write through this registry, and — except for a value
//!   over the cap, whose outcome the length alone decides — at the latest after
//!   `full_read_interval` (a rewrite to the same length that no event announced is read
//!   within that time). Redis keeps no
//!   per-key version (`OBJECT` reports idle time and encoding, and reading resets the
//!   idle time), so length plus events is the cheapest exact-enough check.
//! - **Index pruning is bounded.** `PRUNE_INDEX` removes at most `PRUNE_BATCH` entries
//!   at each end of an index per discovery: deadlines long past, and deadlines further
//!   ahead than any record of ours can live (`max_record_ttl`). Discovery's list of live
//!   ids is bounded by the same horizon, so bogus members are never listed while they
//!   wait to be pruned.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use redis::{Cmd, RedisError, RedisResult, Value};

use super::exec::is_wrong_type;
use super::scripts::PRUNE_INDEX;
use super::state::{Junk, JunkEntry, RedisRegistry};
use super::value::{score_of, ttl_ms, unix_ms};
use crate::error::{scrub, Error, Result};

/// Most index entries pruned at each end of an index by one discovery (about 0.1 s of
/// server time at most; a flood of 1,000,000 bogus members is gone after 20 discoveries,
/// and is never listed meanwhile).
const PRUNE_BATCH: u64 = 50_000;

/// Keys read per pipeline by one discovery (see [`RedisRegistry::read_bounded`]): a
/// delta read of a few hundred records is one pipeline; a full read of 10,000 nodes
/// (20,000 keys) is 20, so it holds at most [`PARTS_IN_FLIGHT`] × 1,024 values
/// (≈ 2.5 MB of JSON) instead of the whole reply (≈ 16 MB). 512 was measured too: the
/// same at 10,000 nodes, slower at 1,000 (four parts, each decoded on its own
/// short-lived threads; docs/scale.md, "A read in parts").
const READ_PART: usize = 1024;

/// Pipelines of one discovery's read in flight at a time: while one part is decoded,
/// the server answers the next ones.
const PARTS_IN_FLIGHT: usize = 3;

/// What discovery read for one record key (`None` beside it: absent, or of another Redis
/// type not yet known).
pub(super) enum Fetched {
    /// The value, at most the size cap long.
    Value(Vec<u8>),
    /// Not read: why the record is skipped (over the cap, or junk unchanged since it was
    /// found).
    Skip(Arc<str>),
}

/// Decoding failures of one discovery, remembered as junk afterwards:
/// `(key, value length, reason)`.
pub(super) type Failures = Mutex<Vec<(String, usize, String)>>;

/// What is remembered of one key to read: its junk length and reason.
type Remembered = Option<(i64, Arc<str>)>;

/// Why the replies of a bounded read cannot be used.
#[derive(Debug)]
enum ReadError {
    /// The server answered a command with an error (a refused script, …).
    Server(RedisError),
    /// The reply has the wrong shape.
    Shape(String),
}

/// An integer reply.
fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// A `STRLEN` reply: the length, or absent (0, or not an integer).
fn len_reply(v: &Value) -> Reply {
    match int_of(v) {
        None | Some(0) => Reply::Absent,
        Some(n) => Reply::Len(n),
    }
}

/// What the replies for one key said.
#[derive(Debug)]
enum Reply {
    /// A value (at most `cap + 1` bytes long; `cap + 1` only until its length is
    /// asked).
    Value(Vec<u8>),
    /// Absent (or an empty string).
    Absent,
    /// Its length, without the value.
    Len(i64),
    /// Another Redis type than a string.
    WrongType,
}

impl RedisRegistry {
    /// Whether discovery prunes with its Lua script (not on a cluster, nor after the
    /// server refused one).
    fn scripted(&self) -> bool {
        !self.is_cluster() && !self.inner.no_scripts.load(Ordering::Relaxed)
    }

    /// The furthest index deadline (Unix ms) one of our records can have at `now_ms`.
    pub(super) fn index_horizon_ms(&self, now_ms: u64) -> u64 {
        let cfg = &self.inner.config;
        let ttl = cfg
            .max_record_ttl
            .max(cfg.stats_ttl)
            .max(cfg.registration_ttl);
        now_ms
            .saturating_add(ttl_ms(ttl))
            .saturating_add(ttl_ms(cfg.index_prune_grace))
    }

    /// The commands pruning both indexes (see `PRUNE_INDEX`); their replies go to
    /// [`Self::note_pruned`].
    pub(super) fn prune_cmds(&self, indexes: [&str; 2]) -> Vec<Cmd> {
        let now = unix_ms();
        let stale = now.saturating_sub(ttl_ms(self.inner.config.index_prune_grace));
        let horizon = self.index_horizon_ms(now);
        let mut cmds = Vec::with_capacity(4);
        for index in indexes {
            if self.scripted() {
                cmds.push(
                    redis::cmd("EVAL")
                        .arg(PRUNE_INDEX)
                        .arg(1)
                        .arg(index)
                        .arg(stale)
                        .arg(horizon)
                        .arg(PRUNE_BATCH)
                        .clone(),
                );
            } else {
                // Without scripts: unbounded, but each command is one O(log N + M) call.
                let range = |from: String, to: String| {
                    redis::cmd("ZREMRANGEBYSCORE")
                        .arg(index)
                        .arg(from)
                        .arg(to)
                        .clone()
                };
                cmds.push(range("-inf".to_owned(), stale.to_string()));
                cmds.push(range(format!("({horizon}"), "+inf".to_owned()));
            }
        }
        cmds
    }

    /// Notes the replies of [`Self::prune_cmds`]: pruning is best effort (a key of the
    /// wrong type is reported by the reads), and a refused script switches discovery to
    /// plain commands.
    pub(super) fn note_pruned(&self, replies: impl Iterator<Item = RedisResult<Value>>) {
        for reply in replies {
            match reply {
                Ok(Value::Int(n)) if n > 0 => {
                    tracing::debug!(removed = n, "pruned dead or bogus registry index entries");
                }
                Ok(_) => {}
                Err(e) if is_wrong_type(&e) => {}
                Err(e) => self.script_failed(&e),
            }
        }
    }

    /// One of discovery's scripts failed: when the server refuses scripts, discovery
    /// uses plain commands from now on (warned about once).
    fn script_failed(&self, e: &RedisError) {
        let msg = e.to_string();
        let refused = e.code() == Some("NOPERM")
            || msg.contains("unknown command")
            || msg.contains("disabled");
        if !refused {
            tracing::debug!(error = %scrub(&msg, self.inner.secret.as_deref()), "discovery script failed");
            return;
        }
        if !self.inner.no_scripts.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %scrub(&msg, self.inner.secret.as_deref()),
                "the Redis server refused discovery's Lua script: records are read with \
                 STRLEN + GETRANGE and indexes pruned with ZREMRANGEBYSCORE instead \
                 (allow EVAL for this user to read and prune in fewer, bounded commands)"
            );
        }
    }

    /// Whether any junk key is remembered.
    pub(super) fn has_junk(&self) -> bool {
        !self.junk().by_key.is_empty()
    }

    /// Forgets what is remembered of `keys` (written since: a keyspace event or our change
    /// log named them), so the next read reads them.
    pub(super) fn forget_junk(&self, keys: impl Iterator<Item = String>) {
        let mut junk = self.junk();
        if junk.by_key.is_empty() {
            return;
        }
        for key in keys {
            junk.by_key.remove(&key);
        }
    }

    /// Remembers `key` as junk of length `len` (or [`Junk::WRONG_TYPE`]).
    fn remember(junk: &mut Junk, key: &str, len: i64, reason: Arc<str>) {
        if junk.by_key.len() < Junk::MAX || junk.by_key.contains_key(key) {
            junk.by_key.insert(
                key.to_owned(),
                JunkEntry {
                    len,
                    reason,
                    at: Instant::now(),
                },
            );
        }
    }

    /// Remembers keys found holding another Redis type (`(key, reason)`).
    pub(super) fn remember_wrong_type(&self, found: impl Iterator<Item = (String, String)>) {
        let mut junk = self.junk();
        for (key, reason) in found {
            Self::remember(&mut junk, &key, Junk::WRONG_TYPE, Arc::from(reason));
        }
    }

    /// Remembers the values that did not decode.
    pub(super) fn remember_failures(&self, failures: Failures) {
        let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
        if failures.is_empty() {
            return;
        }
        let mut junk = self.junk();
        for (key, len, reason) in failures {
            let len = i64::try_from(len).unwrap_or(i64::MAX);
            Self::remember(&mut junk, &key, len, Arc::from(reason));
        }
    }

    /// What is remembered (and still fresh) of each key.
    fn remembered(&self, keys: &[String]) -> Vec<Remembered> {
        let mut junk = self.junk();
        if junk.by_key.is_empty() {
            return vec![None; keys.len()];
        }
        // Over the cap stays over the cap while the length stays the same: only the
        // other junk is read again after `full_read_interval`.
        let fresh = self.inner.config.full_read_interval;
        let cap = i64::try_from(self.inner.config.limits.max_record_bytes).unwrap_or(i64::MAX);
        junk.by_key
            .retain(|_, e| e.len > cap || e.at.elapsed() < fresh);
        keys.iter()
            .map(|k| junk.by_key.get(k).map(|e| (e.len, e.reason.clone())))
            .collect()
    }

    /// The commands reading `keys`, bounded (see the module doc): `GETRANGE key 0 cap`,
    /// or only `STRLEN` for a key remembered as junk.
    fn fetch_cmds(&self, keys: &[String], remembered: &[Remembered]) -> Vec<Cmd> {
        let cap = self.inner.config.limits.max_record_bytes;
        keys.iter()
            .zip(remembered)
            .map(|(key, r)| {
                // Sized up front: one allocation per buffer, no regrowth.
                if r.is_none() {
                    let mut getrange = Cmd::with_capacity(4, key.len() + 32);
                    getrange.arg("GETRANGE").arg(key.as_str()).arg(0).arg(cap);
                    getrange
                } else {
                    let mut strlen = Cmd::with_capacity(2, key.len() + 8);
                    strlen.arg("STRLEN").arg(key.as_str());
                    strlen
                }
            })
            .collect()
    }

    /// What the replies of [`Self::fetch_cmds`] say per key (one reply per key: the
    /// value read, or the length of a remembered key); `Err` when the server answered
    /// one of the commands with an error other than `WRONGTYPE`, or there are fewer
    /// replies than keys. A value of `cap + 1` bytes is over the cap: its exact length
    /// is asked afterwards ([`Self::lengths_of_oversized`]).
    fn fetch_replies(
        remembered: &[Remembered],
        replies: Vec<RedisResult<Value>>,
    ) -> std::result::Result<Vec<Reply>, ReadError> {
        if replies.len() < remembered.len() {
            return Err(ReadError::Shape("fewer replies than keys".to_owned()));
        }
        remembered
            .iter()
            .zip(replies)
            .map(|(r, reply)| match (reply, r) {
                (Err(e), _) if is_wrong_type(&e) => Ok(Reply::WrongType),
                (Err(e), _) => Err(ReadError::Server(e)),
                // `STRLEN` of a remembered key.
                (Ok(len), Some(_)) => Ok(len_reply(&len)),
                // `GETRANGE` answers "" for an absent key (and for an empty string).
                (Ok(Value::BulkString(b)), None) if !b.is_empty() => Ok(Reply::Value(b)),
                (Ok(_), None) => Ok(Reply::Absent),
            })
            .collect()
    }

    /// Replaces each value over the cap in `read` (its first `cap + 1` bytes) by its
    /// length, asked with one `STRLEN` per such key in one more round trip (only when a
    /// value over the cap was found: remembered afterwards, it is not read again).
    async fn lengths_of_oversized(&self, keys: &[String], read: &mut [Reply]) -> Result<()> {
        let op = "discover (read)";
        let cap = self.inner.config.limits.max_record_bytes;
        let over: Vec<usize> = read
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Reply::Value(b) if b.len() > cap))
            .map(|(i, _)| i)
            .collect();
        if over.is_empty() {
            return Ok(());
        }
        let cmds = over
            .iter()
            .map(|&i| redis::cmd("STRLEN").arg(keys[i].as_str()).clone())
            .collect();
        let replies = self.exec_staged_each(op, vec![cmds]).await?;
        if replies.len() != over.len() {
            return Err(self.bad_reply(op, "fewer replies than commands".to_owned()));
        }
        for (i, reply) in over.into_iter().zip(replies) {
            read[i] = match reply {
                Ok(len) => len_reply(&len),
                Err(e) if is_wrong_type(&e) => Reply::WrongType,
                Err(e) => return Err(self.map_err(op, &e)),
            };
        }
        Ok(())
    }

    /// Reads `keys` bounded (see the module doc) with `confirms` (the `ZSCORE`s of
    /// logged ids) in the same round trip as the first part, forgetting first what is
    /// remembered of `changed` keys. The keys are read in parts of [`READ_PART`], up to
    /// [`PARTS_IN_FLIGHT`] pipelines at a time on the shared connection, and each part's
    /// values go to `sink` (with the index of its first key) as soon as that part has
    /// arrived, in key order: the caller decodes a part while the server answers the
    /// next, and holds the values of the parts in flight only, never the whole reply.
    /// Returns the scores.
    pub(super) async fn read_bounded(
        &self,
        keys: Vec<String>,
        confirms: Vec<Cmd>,
        changed: Vec<String>,
        mut sink: impl FnMut(usize, Vec<Option<Fetched>>),
    ) -> Result<Vec<Option<f64>>> {
        self.forget_junk(changed.into_iter());
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut confirms = Some(confirms);
        let mut parts = Vec::with_capacity(keys.len().div_ceil(READ_PART));
        for (i, part) in keys.chunks(READ_PART).enumerate() {
            let confirms = confirms.take().unwrap_or_default();
            parts.push(async move {
                let (values, scores) = self.read_part(part, confirms).await?;
                Ok::<_, Error>((i * READ_PART, values, scores))
            });
        }
        let mut parts = futures_util::stream::iter(parts).buffered(PARTS_IN_FLIGHT);
        let mut scores = Vec::new();
        while let Some(part) = parts.next().await {
            let (offset, values, part_scores) = part?;
            if offset == 0 {
                scores = part_scores;
            }
            sink(offset, values);
        }
        Ok(scores)
    }

    /// One part of [`Self::read_bounded`]: the values of `keys` (one per key, in order),
    /// and the scores `confirms` asked for.
    async fn read_part(
        &self,
        keys: &[String],
        confirms: Vec<Cmd>,
    ) -> Result<(Vec<Option<Fetched>>, Vec<Option<f64>>)> {
        let op = "discover (read)";
        let remembered = self.remembered(keys);
        let fetch = self.fetch_cmds(keys, &remembered);
        let (n_fetch, n_confirms) = (fetch.len(), confirms.len());
        let stages = if confirms.is_empty() {
            vec![fetch]
        } else {
            vec![fetch, confirms]
        };
        let mut replies = self.exec_staged_each(op, stages).await?;
        if replies.len() != n_fetch + n_confirms {
            return Err(self.bad_reply(op, "fewer replies than commands".to_owned()));
        }
        let scores = replies
            .split_off(n_fetch)
            .into_iter()
            .map(|r| r.ok().as_ref().and_then(score_of))
            .collect();
        let mut read = Self::fetch_replies(&remembered, replies).map_err(|e| match e {
            ReadError::Server(e) => self.map_err(op, &e),
            ReadError::Shape(reason) => self.bad_reply(op, format!("unexpected reply: {reason}")),
        })?;
        self.lengths_of_oversized(keys, &mut read).await?;
        Ok((self.interpret(keys, remembered, read), scores))
    }

    /// Our error for a reply we cannot use.
    fn bad_reply(&self, op: &'static str, reason: String) -> Error {
        Error::Redis {
            url: self.inner.url.clone(),
            op,
            reason: scrub(&reason, self.inner.secret.as_deref()),
        }
    }

    /// What each key's reply means for discovery, remembering values over the cap and
    /// forgetting keys that now hold a usable value or are gone.
    fn interpret(
        &self,
        keys: &[String],
        remembered: Vec<Remembered>,
        read: Vec<Reply>,
    ) -> Vec<Option<Fetched>> {
        let cap = self.inner.config.limits.max_record_bytes;
        let mut junk = self.junk();
        let mut out = Vec::with_capacity(read.len());
        for ((key, r), reply) in keys.iter().zip(remembered).zip(read) {
            let fetched = match (reply, r) {
                (Reply::Value(b), _) if b.len() <= cap => Some(Fetched::Value(b)),
                (Reply::Value(b), _) => Some(self.oversized(&mut junk, key, b.len() as i64)),
                (Reply::Absent, _) => None,
                // Known to be of another type: no `TYPE` round trip.
                (Reply::WrongType, Some((Junk::WRONG_TYPE, reason))) => Some(Fetched::Skip(reason)),
                // The caller asks its `TYPE` (and remembers it).
                (Reply::WrongType, _) => None,
                (Reply::Len(n), Some((len, reason))) if n == len => Some(Fetched::Skip(reason)),
                (Reply::Len(n), _) if n > cap as i64 => Some(self.oversized(&mut junk, key, n)),
                // Remembered junk that changed (only its length was read), or a value
                // over the cap rewritten under it before its length was asked:
                // forgotten, so the next discovery reads it.
                (Reply::Len(_), _) => {
                    junk.by_key.remove(key);
                    Some(Fetched::Skip(Arc::from(
                        "changed since it was found unusable (or while being read): read \
                         again by the next discovery",
                    )))
                }
            };
            if matches!(fetched, None | Some(Fetched::Value(_))) && !junk.by_key.is_empty() {
                junk.by_key.remove(key);
            }
            out.push(fetched);
        }
        out
    }

    /// The skip of a value of `len` bytes, over the cap (remembered).
    fn oversized(&self, junk: &mut Junk, key: &str, len: i64) -> Fetched {
        let cap = self.inner.config.limits.max_record_bytes;
        let reason: Arc<str> = Arc::from(format!(
            "value is {len} bytes (max {cap}, the record size cap): not read"
        ));
        Self::remember(junk, key, len, reason.clone());
        Fetched::Skip(reason)
    }
}

/// Decodes one fetched value with `decode`, noting a failure (with the key `key()`) in
/// `failures` so it is remembered as junk.
pub(super) fn decode_fetched<T>(
    fetched: &Fetched,
    key: impl FnOnce() -> String,
    failures: &Failures,
    decode: impl FnOnce(&[u8]) -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    match fetched {
        Fetched::Value(bytes) => decode(bytes).inspect_err(|reason| {
            failures.lock().unwrap_or_else(|p| p.into_inner()).push((
                key(),
                bytes.len(),
                reason.clone(),
            ));
        }),
        Fetched::Skip(reason) => Err(reason.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_replies_are_read_per_key() {
        // The third key is remembered: only its STRLEN was sent; the others' GETRANGE.
        let remembered = vec![None, None, Some((7, Arc::from("bad"))), None, None];
        let replies = vec![
            Ok(Value::BulkString(b"{}".to_vec())),
            Ok(Value::BulkString(vec![b'x'; 1000])),
            Ok(Value::Int(7)),
            Ok(Value::BulkString(Vec::new())),
            Ok(Value::Nil),
        ];
        let read = RedisRegistry::fetch_replies(&remembered, replies).unwrap();
        assert!(
            matches!(
                read.as_slice(),
                [
                    Reply::Value(a),
                    Reply::Value(b),
                    Reply::Len(7),
                    Reply::Absent,
                    Reply::Absent,
                ] if a.len() == 2 && b.len() == 1000
            ),
            "{read:?}"
        );
        // Fewer replies than keys: an error, never "absent".
        let short = RedisRegistry::fetch_replies(&remembered, vec![Ok(Value::Int(1))]);
        assert!(matches!(short, Err(ReadError::Shape(_))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the server answers, reading the replies gives one outcome per key or
        /// an error.
        #[test]
        fn any_replies_give_one_outcome_per_key_or_an_error(
            n in 0usize..6,
            values in proptest::collection::vec(super::super::value::tests::any_value(), 0..14),
            remember in proptest::collection::vec(any::<bool>(), 6),
        ) {
            let remembered: Vec<Remembered> = remember[..n]
                .iter()
                .map(|r| r.then(|| (5, Arc::from("junk"))))
                .collect();
            let replies = values.into_iter().map(Ok).collect();
            if let Ok(read) = RedisRegistry::fetch_replies(&remembered, replies) {
                prop_assert_eq!(read.len(), n);
            }
        }
    }
}
