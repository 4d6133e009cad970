//! Discovery for the Redis backend, in at most two round trips: round trip 1 reads the
//! change log since the cursor (delta read) or every live index id (full read), plus
//! the metadata; round trip 2 reads only the records to (re)read (one bounded
//! `GETRANGE` each; see `bounded`). What to read and
//! what to keep is decided by `crate::delta`; this module issues the commands and builds
//! the [`ClusterView`]. A key of the wrong Redis type fails no discovery: a listed record
//! key `MGET` answered nil for gets a `TYPE` (one more round trip, only then) and is
//! skipped when it is not a string; our own index or log holding another type is
//! warned about and done without (a full read, a SCAN sweep for an index).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::bounded::{decode_fetched, Failures, Fetched};
use super::state::{Known, RedisRegistry};
use super::value::{bytes_of, stream_entries, strings_of, unix_ms};
use crate::delta::{self, Kept};
use crate::error::{Error, Result};
use crate::keys;
use crate::record::{GpuStatsRecord, RpcNodeRecord};
use crate::validate::{self, SkippedRecord};
use crate::view::{ClusterView, RpcNodeEntry};
use crate::SmolStr;

/// What round trip 1 of a discovery found: the new cursor, what to read, the metadata.
struct Head {
    cursor: Option<String>,
    /// When the index was last listed whole; `None` when this read lists it (a full
    /// read, or a delta read whose listing was due).
    last_listed: Option<Instant>,
    /// Per kind: where this read's audit stopped and the fraction it left over (a full
    /// read: none).
    audit: [(Option<SmolStr>, f64); 2],
    stats: delta::Plan<GpuStatsRecord>,
    rpc: delta::Plan<RpcNodeRecord>,
    meta: Option<Vec<u8>>,
    /// `sollol:router:metadata` holds another Redis type than a string.
    meta_wrong_type: bool,
    /// One of our own keys (an index, the change log) holds the wrong Redis type: the
    /// next discovery is a full read again (nothing is kept for a delta read).
    broken: bool,
}

/// What the last discovery kept, for a full read to share (stats, registrations).
type Previous = (Kept<GpuStatsRecord>, Kept<RpcNodeRecord>);

impl RedisRegistry {
    /// [`Registry::discover`](crate::Registry::discover): the whole discovery (SCAN
    /// sweep included) under one timeout, dirty ids put back when it fails.
    pub(super) async fn discover_bounded(&self) -> Result<ClusterView> {
        // The whole discovery (SCAN sweep included) is bounded by one timeout.
        let timeout = self.inner.config.command_timeout;
        // Ids keyspace events named since the last discovery, put back if this one fails
        // or times out (taken out here, outside the timeout, so a cancelled discovery
        // cannot lose them).
        let dirty = std::mem::take(&mut *self.dirty());
        let result = match tokio::time::timeout(timeout, self.discover_inner(&dirty)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                url: self.inner.url.clone(),
                op: "discover",
                after: timeout,
            }),
        };
        if result.is_err() {
            let mut d = self.dirty();
            d.0.extend(dirty.0);
            d.1.extend(dirty.1);
        }
        result
    }

    /// Discovery in at most two round trips (a Lua script doing the same in one was
    /// measured 2× slower: Lua string and table work costs more than the saved round trip
    /// on a LAN): what changed (or, on a full read, every live id) and the metadata, then
    /// — only when some record is new, changed or unindexed — one `MGET` per kind of the
    /// records to read. See `delta` for the two kinds of read.
    async fn discover_inner(
        &self,
        dirty: &(BTreeSet<String>, BTreeSet<String>),
    ) -> Result<ClusterView> {
        // Writes by others that write no change log (a raw `SET` or `DEL` of an indexed
        // key) are seen by the delta reads' audit (see `read_changes`), not by sweeping.
        let sweep = self.scan_due();
        if sweep {
            if let Err(e) = self.scan_sweep().await {
                // Indexed keys can still be read.
                tracing::warn!(error = %e, "SCAN sweep for SOLLOL-written keys failed");
            }
        }
        // What the last discovery kept is taken out while this one runs (a concurrent
        // discovery does a full read rather than waiting), and is only put back by a
        // discovery that succeeded.
        let epoch = self.reader.known_epoch.load(Ordering::SeqCst);
        let sequence = self.reader.reads.fetch_add(1, Ordering::SeqCst) + 1;
        let known = self.known().take();
        // What this read's markers (changes only) refer to.
        let since = known.as_ref().map(|k| k.sequence);
        let cfg = &self.inner.config;
        // A full read shares what the last discovery kept: a record decoded now equal to
        // the kept one is handed back as that one (see `delta::Plan::sharing`).
        let mut head = match known {
            _ if self.reader.poll_only => self.read_unlisted(dirty).await?,
            Some(known) if known.at.elapsed() < cfg.index_prune_grace / 2 => {
                match self.read_changes(known, dirty).await? {
                    Ok(head) => head,
                    Err(previous) => self.read_live(dirty, sweep, previous).await?,
                }
            }
            Some(known) => {
                self.read_live(dirty, sweep, (known.stats, known.rpc))
                    .await?
            }
            None => self.read_live(dirty, sweep, Previous::default()).await?,
        };
        if cfg.changes_only {
            head.stats
                .set_changes_only(Some(Arc::clone(crate::view::unchanged_stats())));
            head.rpc
                .set_changes_only(Some(Arc::clone(crate::view::unchanged_rpc())));
        }
        let at = Instant::now();

        // Round trip 2, only if something is to be read: the records (size-checked before
        // they are read, junk not read again; see `bounded`), then the index entries of
        // the logged ones (a record is kept only while the index lists it).
        let counts = [head.stats.fetch_count(), head.rpc.fetch_count()];
        let rpc_key = keys::rpc_node_key_of;
        let record_keys: Vec<String> = head
            .stats
            .to_fetch()
            .map(keys::gpu_stats_key)
            .chain(head.rpc.to_fetch().map(rpc_key))
            .collect();
        let zscore = |index: &str, id: &str| redis::cmd("ZSCORE").arg(index).arg(id).clone();
        let mut scores = Vec::new();
        scores.extend(
            head.stats
                .to_confirm()
                .map(|id| zscore(keys::INDEX_GPU, id)),
        );
        let gpu_confirms = scores.len();
        scores.extend(head.rpc.to_confirm().map(|id| zscore(keys::INDEX_RPC, id)));
        let confirms = scores.len();
        // Keys written since (named by keyspace events or our log): what is remembered
        // of them as junk is stale.
        let changed: Vec<String> = if self.has_junk() {
            dirty
                .0
                .iter()
                .map(String::as_str)
                .chain(head.stats.to_confirm())
                .map(keys::gpu_stats_key)
                .chain(
                    dirty
                        .1
                        .iter()
                        .map(String::as_str)
                        .chain(head.rpc.to_confirm())
                        .map(rpc_key),
                )
                .collect()
        } else {
            Vec::new()
        };
        // Each part of the read is decoded as it arrives (its raw values then dropped):
        // stats records first, then registrations, in `to_fetch` order.
        let limits = &self.inner.config.limits;
        let failures = Failures::default();
        let decode_stats = |id: &str, fetched: &Fetched| {
            decode_fetched(
                fetched,
                || keys::gpu_stats_key(id),
                &failures,
                |bytes| validate::decode_stats(id, bytes, limits),
            )
        };
        let decode_rpc = |id: &str, fetched: &Fetched| {
            decode_fetched(
                fetched,
                || rpc_key(id),
                &failures,
                |bytes| validate::decode_rpc(bytes, limits),
            )
        };
        // A value read (not one skipped unread) is recognised by its print.
        let print_fetched = |fetched: &Fetched| match fetched {
            Fetched::Value(bytes) => Some(delta::print_of(bytes)),
            Fetched::Skip(_) => None,
        };
        let mut gpu_vals = Vec::with_capacity(counts[0]);
        let mut rpc_vals = Vec::with_capacity(counts[1]);
        let scores = {
            let (stats_plan, rpc_plan) = (&head.stats, &head.rpc);
            let sink = |offset: usize, mut values: Vec<Option<Fetched>>| {
                let n_stats = counts[0].saturating_sub(offset).min(values.len());
                let registrations = values.split_off(n_stats);
                if !values.is_empty() {
                    gpu_vals.extend(delta::decode_part(
                        stats_plan,
                        offset,
                        values,
                        decode_stats,
                        print_fetched,
                    ));
                }
                if !registrations.is_empty() {
                    // The first registration of this part, counted among registrations.
                    let from = offset.saturating_sub(counts[0]);
                    rpc_vals.extend(delta::decode_part(
                        rpc_plan,
                        from,
                        registrations,
                        decode_rpc,
                        print_fetched,
                    ));
                }
            };
            self.read_bounded(record_keys, scores, changed, sink)
                .await?
        };
        let now = unix_ms() as f64;
        let live: Vec<bool> = scores.iter().map(|s| s.is_some_and(|s| s > now)).collect();
        // A short reply must not read as "every record gone".
        if gpu_vals.len() != counts[0] || rpc_vals.len() != counts[1] || live.len() != confirms {
            return Err(Error::Redis {
                url: self.inner.url.clone(),
                op: "discover (read)",
                reason: format!(
                    "unexpected reply: {} + {} values for {} + {} keys, {} index entries for {}",
                    gpu_vals.len(),
                    rpc_vals.len(),
                    counts[0],
                    counts[1],
                    live.len(),
                    confirms
                ),
            });
        }
        {
            // A logged id the index no longer lists is returned as a full read would:
            // when SCAN or a keyspace event found its key.
            let st = self.scan_state();
            let (gpu_live, rpc_live) = live.split_at(gpu_confirms);
            head.stats.confirm(gpu_live, |id| {
                st.legacy_gpu.contains(id) || dirty.0.contains(id)
            });
            head.rpc.confirm(rpc_live, |id| {
                st.legacy_rpc.contains(id) || dirty.1.contains(id)
            });
        }
        // Keys listed (index, SCAN, keyspace events) that `MGET` answered nil for: gone,
        // or holding another Redis type than a string (a hash written by hand). One more
        // round trip, only when there are such keys (and for wrongly typed metadata).
        let missing_gpu = head.stats.listed_missing(&gpu_vals);
        let missing_rpc = head.rpc.listed_missing(&rpc_vals);
        let mut type_keys: Vec<String> = missing_gpu
            .iter()
            .map(|id| keys::gpu_stats_key(id))
            .chain(missing_rpc.iter().map(|m| keys::rpc_node_key_of(m)))
            .collect();
        if head.meta_wrong_type {
            type_keys.push(keys::ROUTER_METADATA.to_owned());
        }
        let mut types = if type_keys.is_empty() {
            Vec::new()
        } else {
            let cmds = type_keys
                .iter()
                .map(|k| redis::cmd("TYPE").arg(k).clone())
                .collect();
            self.exec("discover (TYPE)", cmds).await?
        }
        .into_iter()
        .map(|v| bytes_of(v).map(|b| String::from_utf8_lossy(&b).into_owned()));
        // Another type than a string (`none`: gone; `string`: written since the MGET).
        let mut wrong = |ids: Vec<String>| -> Vec<(String, String)> {
            ids.into_iter()
                .zip(types.by_ref())
                .filter_map(|(id, t)| t.filter(|t| t != "none" && t != "string").map(|t| (id, t)))
                .collect()
        };
        let wrong_gpu = wrong(missing_gpu);
        let wrong_rpc = wrong(missing_rpc);
        let meta_type = if head.meta_wrong_type {
            types.next().flatten()
        } else {
            None
        };
        let stats = delta::finish_decoded(head.stats, gpu_vals);
        let rpcs = delta::finish_decoded(head.rpc, rpc_vals);
        self.remember_failures(failures);
        {
            let mut st = self.scan_state();
            stats.note_unindexed(&mut st.legacy_gpu);
            rpcs.note_unindexed(&mut st.legacy_rpc);
            // A wrongly typed key is read (and reported) again by every discovery until
            // it is deleted or rewritten as a string.
            st.legacy_gpu
                .extend(wrong_gpu.iter().map(|(id, _)| id.clone()));
            st.legacy_rpc
                .extend(wrong_rpc.iter().map(|(id, _)| id.clone()));
        }
        let not_a_string =
            |t: &str| format!("not a string: {t}; SOLLOL's records are JSON strings");
        self.remember_wrong_type(
            wrong_gpu
                .iter()
                .map(|(id, t)| (keys::gpu_stats_key(id), not_a_string(t)))
                .chain(wrong_rpc.iter().map(|(m, t)| (rpc_key(m), not_a_string(t)))),
        );
        let mut slot = self.known();
        // A poll-only reader keeps nothing: its reads are never delta reads.
        if self.reader.known_epoch.load(Ordering::SeqCst) == epoch
            && !head.broken
            && !self.reader.poll_only
        {
            *slot = Some(Known {
                cursor: head.cursor,
                stats: stats.kept,
                rpc: rpcs.kept,
                at,
                last_listed: head.last_listed.unwrap_or(at),
                audit: head.audit,
                sequence,
            });
        }
        drop(slot);

        let mut view = ClusterView {
            changes_only: cfg.changes_only,
            sequence,
            changes_since: since.filter(|_| cfg.changes_only),
            ..ClusterView::default()
        };
        let mut bad = Vec::new();
        view.stats.reserve(stats.found.len());
        // Already sorted by id.
        for (id, outcome) in stats.found {
            match outcome {
                Ok(r) => view.stats.push((id, r)),
                Err(reason) => bad.push(SkippedRecord {
                    key: keys::gpu_stats_key(&id),
                    reason: reason.to_string(),
                }),
            }
        }
        for (id, t) in &wrong_gpu {
            bad.push(SkippedRecord {
                key: keys::gpu_stats_key(id),
                reason: not_a_string(t),
            });
        }
        view.rpc_nodes.reserve(rpcs.found.len());
        for (member, outcome) in rpcs.found {
            let key = || keys::rpc_node_key_of(&member);
            let split = keys::split_host_port(&member).map(|(host, port)| (host.len(), port));
            match (split, outcome) {
                (Some((host_len, port)), Ok(record)) => {
                    // An address fits inline (no allocation).
                    let host = SmolStr::new(&member[..host_len]);
                    view.rpc_nodes.push(RpcNodeEntry { host, port, record });
                }
                (None, _) => bad.push(SkippedRecord {
                    key: key(),
                    reason: "key has no valid :port".to_owned(),
                }),
                (_, Err(reason)) => bad.push(SkippedRecord {
                    key: key(),
                    reason: reason.to_string(),
                }),
            }
        }
        for (member, t) in &wrong_rpc {
            bad.push(SkippedRecord {
                key: keys::rpc_node_key_of(member),
                reason: not_a_string(t),
            });
        }
        // Members sort as strings; the view is sorted by (host, port).
        view.rpc_nodes
            .sort_unstable_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        if let Some(raw) = head.meta {
            match validate::decode_metadata(&raw, limits) {
                Ok(m) => view.metadata = Some(m),
                Err(reason) => bad.push(SkippedRecord {
                    key: keys::ROUTER_METADATA.to_owned(),
                    reason,
                }),
            }
        }
        if let Some(t) = meta_type.filter(|t| t != "none" && t != "string") {
            bad.push(SkippedRecord {
                key: keys::ROUTER_METADATA.to_owned(),
                reason: format!("not a string: {t}; SOLLOL's metadata is a JSON string"),
            });
        }
        self.report_skipped(&bad);
        view.skipped = bad;
        Ok(view)
    }

    /// Round trip 1 of a full read: the newest change-log entry (the cursor: read first,
    /// so every write after it shows up in the log), every live id of both indexes
    /// (deadline in the future; no scores, which Redis formats slowly), the metadata,
    /// and pruning of long-dead index entries.
    ///
    /// An index or the log holding the wrong Redis type (`WRONGTYPE`) is warned about
    /// and done without: no cursor (the next discovery is a full read again), and for an
    /// index, a SCAN sweep (unless this discovery already swept) finds its records,
    /// which are then read as unindexed ones.
    async fn read_live(
        &self,
        dirty: &(BTreeSet<String>, BTreeSet<String>),
        swept: bool,
        previous: Previous,
    ) -> Result<Head> {
        let now = unix_ms();
        let live = |key: &str| self.live_ids(key, now);
        let op = "discover (index)";
        let prunes = self.prune_cmds([keys::INDEX_GPU, keys::INDEX_RPC]);
        let n_prunes = prunes.len();
        let mut replies = self
            .exec_staged_each(
                op,
                vec![
                    vec![redis::cmd("XREVRANGE")
                        .arg(keys::CHANGES)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .clone()],
                    [
                        live(keys::INDEX_GPU),
                        live(keys::INDEX_RPC),
                        redis::cmd("GET").arg(keys::ROUTER_METADATA).clone(),
                    ]
                    .into_iter()
                    .chain(prunes)
                    .collect(),
                ],
            )
            .await?
            .into_iter();
        let mut next = || self.unless_wrong_type(op, replies.next());
        let (log, gpu_live, rpc_live, meta) = (next()?, next()?, next()?, next()?);
        self.note_pruned(replies.by_ref().take(n_prunes));
        self.note_wrong_type(keys::CHANGES, log.is_none(), "discover");
        self.note_wrong_type(keys::INDEX_GPU, gpu_live.is_none(), "discover");
        self.note_wrong_type(keys::INDEX_RPC, rpc_live.is_none(), "discover");
        let broken = log.is_none() || gpu_live.is_none() || rpc_live.is_none();
        if (gpu_live.is_none() || rpc_live.is_none()) && !swept {
            // Without the index, SCAN is the only way to the records.
            if let Err(e) = self.scan_sweep().await {
                tracing::warn!(error = %e, "SCAN sweep (registry index unusable) failed");
            }
        }
        let cursor = log
            .map(stream_entries)
            .and_then(|e| e.into_iter().next())
            .map(|(id, _)| id);
        let gpu_live = gpu_live.map(strings_of).unwrap_or_default();
        let rpc_live = rpc_live.map(strings_of).unwrap_or_default();
        let meta_wrong_type = meta.is_none();
        let meta = meta.and_then(bytes_of);
        let st = self.scan_state();
        // Ids keyspace events named are read like ids SCAN found.
        let with = |found: &BTreeSet<String>, named: &BTreeSet<String>| {
            let mut all = found.clone();
            all.extend(named.iter().cloned());
            all
        };
        let stats = delta::plan_full(gpu_live, &with(&st.legacy_gpu, &dirty.0)).sharing(previous.0);
        let rpc = delta::plan_full(rpc_live, &with(&st.legacy_rpc, &dirty.1)).sharing(previous.1);
        drop(st);
        Ok(Head {
            cursor,
            last_listed: None,
            audit: Default::default(),
            stats,
            rpc,
            meta,
            meta_wrong_type,
            broken,
        })
    }

    /// Round trip 1 of a poll-only read (the watch's polling fallback, see
    /// `RedisRegistry::poll_reader`): every live id of both indexes, listed for the poll
    /// ([`RedisRegistry::take_listed`]) instead of read, and the metadata. The plan
    /// reads only the ids SCAN or keyspace events found that no index lists (records
    /// SOLLOL's tools wrote); a poll-only reader keeps nothing, so every poll reads the
    /// same way. An index holding another Redis type lists nothing (its records are then read
    /// as SCAN found them; the caller's discovery warns about it).
    async fn read_unlisted(&self, dirty: &(BTreeSet<String>, BTreeSet<String>)) -> Result<Head> {
        let now = unix_ms();
        let op = "poll (index)";
        let mut replies = self
            .exec_staged_each(
                op,
                vec![vec![
                    self.live_ids(keys::INDEX_GPU, now),
                    self.live_ids(keys::INDEX_RPC, now),
                    redis::cmd("GET").arg(keys::ROUTER_METADATA).clone(),
                ]],
            )
            .await?
            .into_iter();
        let mut next = || self.unless_wrong_type(op, replies.next());
        let (gpu_live, rpc_live, meta) = (next()?, next()?, next()?);
        // Ids fit inline (`ip:port`): no heap block each.
        let listed = |live: Option<redis::Value>| {
            let mut ids: Vec<SmolStr> = live
                .map(strings_of)
                .unwrap_or_default()
                .into_iter()
                .map(SmolStr::from)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let (gpu_live, rpc_live) = (listed(gpu_live), listed(rpc_live));
        // Found by SCAN or named by keyspace events, and not listed.
        let unlisted = |found: &BTreeSet<String>, named: &BTreeSet<String>, live: &[SmolStr]| {
            found
                .iter()
                .chain(named)
                .filter(|id| live.binary_search_by(|l| l.as_str().cmp(id)).is_err())
                .cloned()
                .collect::<BTreeSet<String>>()
        };
        let st = self.scan_state();
        let stats = delta::plan_full(Vec::new(), &unlisted(&st.legacy_gpu, &dirty.0, &gpu_live));
        let rpc = delta::plan_full(Vec::new(), &unlisted(&st.legacy_rpc, &dirty.1, &rpc_live));
        drop(st);
        *self.reader.listed.lock().unwrap_or_else(|p| p.into_inner()) = Some((gpu_live, rpc_live));
        let meta_wrong_type = meta.is_none();
        Ok(Head {
            cursor: None,
            last_listed: None,
            audit: Default::default(),
            stats,
            rpc,
            meta: meta.and_then(bytes_of),
            meta_wrong_type,
            broken: false,
        })
    }

    /// `ZRANGEBYSCORE` of the ids `index` lists as live at `now` (deadline in the
    /// future, no scores, which Redis formats slowly); deadlines beyond the horizon are
    /// bogus (see `bounded`) and never listed.
    fn live_ids(&self, index: &str, now: u64) -> redis::Cmd {
        redis::cmd("ZRANGEBYSCORE")
            .arg(index)
            .arg(format!("({now}"))
            .arg(self.index_horizon_ms(now))
            .clone()
    }

    /// Round trip 1 of a delta read: the index entries whose deadline has passed, the
    /// change log from `known.cursor` on, the metadata, and pruning; every
    /// `full_read_interval`, the index's live ids too. `None` when the log cannot be
    /// trusted (cursor entry trimmed or log reset) or holds more changes than a full read
    /// would cost: the caller then does a full read (sharing what `known` kept, handed
    /// back).
    ///
    /// What no log announces (a raw `SET`, `DEL`, `ZADD` or `ZREM` of one of our keys,
    /// by a writer that keeps no change log) is caught without a full read: every delta
    /// read also reads again a share of the kept records, walking through them in id
    /// order — the share of `full_read_interval` that passed since the last read — so
    /// every kept record is read again within `full_read_interval` (a value whose print
    /// is unchanged is not decoded again), and the index is listed whole every
    /// `full_read_interval` (ids it lists that are not kept, and kept ids it no longer
    /// lists, are read with their index entries and settled as a full read would settle
    /// them). A full read of a big cluster would hold up every change behind it for as
    /// long as it takes.
    async fn read_changes(
        &self,
        known: Known,
        dirty: &(BTreeSet<String>, BTreeSet<String>),
    ) -> Result<std::result::Result<Head, Previous>> {
        let now = unix_ms();
        let expired = |key: &str| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(key)
                .arg("-inf")
                .arg(now)
                .clone()
        };
        let cfg = &self.inner.config;
        let list = known.last_listed.elapsed() >= cfg.full_read_interval;
        // More changes than this: a full read is cheaper.
        let cap = known.stats.len() + known.rpc.len() + 1024;
        let prunes = self.prune_cmds([keys::INDEX_GPU, keys::INDEX_RPC]);
        let n_prunes = prunes.len();
        let mut first = vec![expired(keys::INDEX_GPU), expired(keys::INDEX_RPC)];
        if list {
            first.push(self.live_ids(keys::INDEX_GPU, now));
            first.push(self.live_ids(keys::INDEX_RPC, now));
        }
        // Expired entries first: a record republished in between is in the log.
        let op = "discover (changes)";
        let mut replies = self
            .exec_staged_each(
                op,
                vec![
                    first,
                    [
                        redis::cmd("XRANGE")
                            .arg(keys::CHANGES)
                            .arg(known.cursor.as_deref().unwrap_or("-"))
                            .arg("+")
                            .arg("COUNT")
                            .arg(cap + 1)
                            .clone(),
                        redis::cmd("GET").arg(keys::ROUTER_METADATA).clone(),
                    ]
                    .into_iter()
                    .chain(prunes)
                    .collect(),
                ],
            )
            .await?
            .into_iter();
        let mut next = || self.unless_wrong_type(op, replies.next());
        let (gpu_expired, rpc_expired) = (next()?, next()?);
        let (gpu_listed, rpc_listed) = if list {
            (Some(next()?), Some(next()?))
        } else {
            (None, None)
        };
        let (entries, meta) = (next()?, next()?);
        self.note_pruned(replies.by_ref().take(n_prunes));
        let (Some(gpu_expired), Some(rpc_expired), Some(entries)) =
            (gpu_expired, rpc_expired, entries)
        else {
            // An index or the log now holds another Redis type: a full read warns and
            // does without it.
            return Ok(Err((known.stats, known.rpc)));
        };
        // `Some(None)`: listed, but the index holds another Redis type.
        let (Some(gpu_listed), Some(rpc_listed)) = (
            gpu_listed.map_or(Some(None), |l| l.map(|v| Some(strings_of(v)))),
            rpc_listed.map_or(Some(None), |l| l.map(|v| Some(strings_of(v)))),
        ) else {
            return Ok(Err((known.stats, known.rpc)));
        };
        let gpu_expired = strings_of(gpu_expired);
        let rpc_expired = strings_of(rpc_expired);
        let entries = stream_entries(entries);
        let meta_wrong_type = meta.is_none();
        let meta = meta.and_then(bytes_of);
        let Some(logged) = delta::read_log(known.cursor, entries, cap) else {
            tracing::debug!("change log trimmed past our cursor, reset or too long: full read");
            return Ok(Err((known.stats, known.rpc)));
        };
        // The share of `full_read_interval` since the last read, of each kind's kept
        // records, plus what the last audit left over: read again now.
        let share = known.at.elapsed().as_secs_f64() / cfg.full_read_interval.as_secs_f64();
        let due = |kept: usize, (after, left): &(Option<SmolStr>, f64)| {
            let owed = left + kept as f64 * share;
            let (count, left) = if !owed.is_finite() || owed >= kept as f64 {
                (kept, 0.0)
            } else {
                (owed as usize, owed.fract())
            };
            (after.clone(), count, left)
        };
        let (gpu_after, gpu_count, gpu_left) = due(known.stats.len(), &known.audit[0]);
        let (rpc_after, rpc_count, rpc_left) = due(known.rpc.len(), &known.audit[1]);
        let st = self.scan_state();
        let (stats, gpu_walked) = delta::plan_delta_audited(
            known.stats,
            gpu_expired,
            logged.gpu,
            &dirty.0,
            &st.legacy_gpu,
            delta::Audit {
                count: gpu_count,
                after: gpu_after.as_deref(),
                listed: gpu_listed,
            },
        );
        let (rpc, rpc_walked) = delta::plan_delta_audited(
            known.rpc,
            rpc_expired,
            logged.rpc,
            &dirty.1,
            &st.legacy_rpc,
            delta::Audit {
                count: rpc_count,
                after: rpc_after.as_deref(),
                listed: rpc_listed,
            },
        );
        drop(st);
        Ok(Ok(Head {
            cursor: logged.cursor,
            last_listed: (!list).then_some(known.last_listed),
            audit: [(gpu_walked, gpu_left), (rpc_walked, rpc_left)],
            stats,
            rpc,
            meta,
            meta_wrong_type,
            broken: false,
        }))
    }
}
