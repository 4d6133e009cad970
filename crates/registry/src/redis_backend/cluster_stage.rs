//! How one stage of commands runs on a Redis Cluster: one pipeline per master.
//!
//! A pipeline over a cluster connection must stay within one slot (redis-rs refuses
//! cross-slot pipelines), but a server accepts any pipeline of commands whose keys it
//! owns. A stage of more than a few single-key commands is therefore grouped by the slot
//! range its keys fall in and each group sent as one pipeline to the master of that
//! range, the groups concurrently: a full read of 10,000 nodes is a handful of pipelines
//! instead of 20,000 single commands. The slot ranges come from `CLUSTER SLOTS` (one
//! round trip), asked once and kept in the connection's [`SlotMap`] across stages and
//! reads; the map is asked again when a reply says it is out of date (`MOVED`, `ASK`,
//! `TRYAGAIN`), when a group's pipeline failed as a whole (a master down, a failover),
//! on a new connection, and at the latest [`SlotMap::MAX_AGE`] after it was asked. A
//! stale map costs no correctness: a command the master no longer owns, a command whose
//! key we do not know how to find, and a group whose pipeline failed as a whole are sent
//! again on their own, where redis-rs follows redirects and reconnects.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, RedisResult, Value};

/// Number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// Below this many commands a stage is sent as single concurrent commands (the slot
/// map's round trip would cost more than it saves).
const PIPELINE_MIN: usize = 8;

/// Commands whose only key is their first argument: the ones the registry sends in
/// stages. Any other command is sent on its own.
const SINGLE_KEY: &[&[u8]] = &[
    b"GET",
    b"GETRANGE",
    b"STRLEN",
    b"TYPE",
    b"PTTL",
    b"EXISTS",
    b"ZSCORE",
    b"ZRANGE",
    b"ZRANGEBYSCORE",
    b"ZREMRANGEBYSCORE",
    b"ZREM",
    b"ZADD",
    b"ZCARD",
    b"SET",
    b"DEL",
    b"EXPIRE",
    b"PEXPIRE",
    b"XADD",
    b"XRANGE",
    b"XREVRANGE",
    b"XTRIM",
    b"XLEN",
];

/// The slot ranges of one cluster connection as last asked (`CLUSTER SLOTS`), shared by
/// the connection's clones: a stage asks for them only when none are kept or the kept
/// ones are known to be out of date.
#[derive(Clone, Default)]
pub(super) struct SlotMap(Arc<Mutex<Kept>>);

/// A cluster's slot ranges, `(start, end)` sorted by start.
type Ranges = Arc<[(u16, u16)]>;

#[derive(Default)]
struct Kept {
    /// The ranges and when they were asked.
    ranges: Option<(Ranges, Instant)>,
    /// `CLUSTER SLOTS` asked through this map (tests count them).
    asked: u64,
}

impl SlotMap {
    /// The longest a map is kept without being asked again. A map that outlived a
    /// topology change without any redirect (ranges merged onto one master) costs only a
    /// pipeline more per stage; this bounds how long.
    pub(super) const MAX_AGE: Duration = Duration::from_secs(30);

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept ranges, if asked less than [`Self::MAX_AGE`] ago.
    fn fresh(&self) -> Option<Ranges> {
        match &self.lock().ranges {
            Some((r, at)) if at.elapsed() < Self::MAX_AGE => Some(r.clone()),
            _ => None,
        }
    }

    /// The ranges to group a stage by: the kept ones, or asked now (and kept). `None`
    /// when the cluster cannot be asked or answers oddly (nothing is kept then).
    async fn get(&self, c: &ClusterConnection) -> Option<Ranges> {
        if let Some(r) = self.fresh() {
            return Some(r);
        }
        let n = {
            let mut kept = self.lock();
            kept.asked += 1;
            kept.asked
        };
        tracing::trace!(n, "cluster: asking for the slot map (CLUSTER SLOTS)");
        let asked: Ranges = slot_ranges(c).await?.into();
        self.lock().ranges = Some((asked.clone(), Instant::now()));
        Some(asked)
    }

    /// Forgets `used` (the ranges a stage found out of date), unless another stage has
    /// replaced them meanwhile: the next stage asks again.
    fn forget(&self, used: &Ranges) {
        let mut kept = self.lock();
        if kept
            .ranges
            .as_ref()
            .is_some_and(|(r, _)| Arc::ptr_eq(r, used))
        {
            kept.ranges = None;
        }
    }

    /// The kept ranges, whatever their age (tests).
    #[cfg(all(test, feature = "testing"))]
    fn kept(&self) -> Option<Vec<(u16, u16)>> {
        self.lock().ranges.as_ref().map(|(r, _)| r.to_vec())
    }

    /// How many times `CLUSTER SLOTS` was asked through this map (tests).
    #[cfg(all(test, feature = "testing"))]
    fn asked(&self) -> u64 {
        self.lock().asked
    }
}

/// Runs `stage` on the cluster: every command's reply in order, a server's error in
/// the command's place; `Err` only when a command could not be sent or answered at all.
/// Groups by `map`'s ranges (asked when none are kept), and forgets them when a reply
/// shows them out of date.
pub(super) async fn stage(
    c: &ClusterConnection,
    map: &SlotMap,
    stage: Vec<Cmd>,
) -> RedisResult<Vec<RedisResult<Value>>> {
    if stage.len() < PIPELINE_MIN {
        return stage_on(c, stage, None).await.map(|(out, _)| out);
    }
    let ranges = map.get(c).await;
    let (out, stale) = stage_on(c, stage, ranges.as_deref()).await?;
    if let (true, Some(used)) = (stale, &ranges) {
        tracing::debug!("cluster: slot map out of date, asking again at the next stage");
        map.forget(used);
    }
    Ok(out)
}

/// As [`stage`], with the slot ranges given (`None`: every command on its own), and
/// whether a reply showed the ranges out of date (a redirect, or a group's pipeline
/// failed as a whole).
async fn stage_on(
    c: &ClusterConnection,
    stage: Vec<Cmd>,
    ranges: Option<&[(u16, u16)]>,
) -> RedisResult<(Vec<RedisResult<Value>>, bool)> {
    let Some(ranges) = ranges else {
        return Ok((singles(c, stage.iter()).await, false));
    };
    let mut stale = false;
    // Commands grouped by the slot range their key falls in; the rest on their own.
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); ranges.len()];
    let mut alone = Vec::new();
    for (i, cmd) in stage.iter().enumerate() {
        match key_slot(cmd).and_then(|slot| range_of(ranges, slot)) {
            Some(g) => groups[g].push(i),
            None => alone.push(i),
        }
    }
    let mut out: Vec<Option<RedisResult<Value>>> = (0..stage.len()).map(|_| None).collect();
    let sends = groups
        .iter()
        .zip(ranges)
        .filter(|(idx, _)| !idx.is_empty())
        .map(|(idx, &(start, _))| {
            let mut pipe = redis::pipe();
            for &i in idx {
                pipe.add_command(stage[i].clone());
            }
            let mut c = c.clone();
            let route = SingleNodeRoutingInfo::SpecificNode(Route::new(start, SlotAddr::Master));
            async move { (idx, c.route_pipeline(pipe, 0, idx.len(), route).await) }
        });
    for (idx, replies) in futures_util::future::join_all(sends).await {
        match replies {
            Ok(values) if values.len() == idx.len() => {
                for (&i, v) in idx.iter().zip(values) {
                    match v.extract_error() {
                        Err(e) if is_redirect(&e) => {
                            stale = true;
                            alone.push(i);
                        }
                        r => out[i] = Some(r),
                    }
                }
            }
            // The pipeline as a whole failed (or answered oddly): each command again.
            Ok(_) => {
                stale = true;
                alone.extend_from_slice(idx);
            }
            Err(e) => {
                stale = true;
                tracing::debug!(error = %e, commands = idx.len(), "cluster pipeline failed; sending its commands one by one");
                alone.extend_from_slice(idx);
            }
        }
    }
    if !alone.is_empty() {
        tracing::debug!(
            commands = alone.len(),
            of = stage.len(),
            "cluster: commands sent on their own (no key slot, or the slot moved)"
        );
    }
    alone.sort_unstable();
    let retried = singles(c, alone.iter().map(|&i| &stage[i])).await;
    for (i, r) in alone.into_iter().zip(retried) {
        out[i] = Some(r);
    }
    let out = out
        .into_iter()
        .map(|r| r.ok_or_else(|| (redis::ErrorKind::Client, "a command got no reply").into()))
        .map(|r: RedisResult<RedisResult<Value>>| r.or_else(|e| Ok(Err(e))))
        .collect::<RedisResult<Vec<_>>>()?;
    Ok((out, stale))
}

/// `cmds` as single concurrent commands (redis-rs routes each by its key).
async fn singles<'a>(
    c: &ClusterConnection,
    cmds: impl Iterator<Item = &'a Cmd>,
) -> Vec<RedisResult<Value>> {
    let futs = cmds.map(|cmd| {
        let mut c = c.clone();
        async move { cmd.query_async::<Value>(&mut c).await }
    });
    futures_util::future::join_all(futs).await
}

/// The cluster's slot ranges (`CLUSTER SLOTS`), sorted by start; `None` when it cannot
/// be asked or answers in a shape we do not know (the caller then sends singles).
async fn slot_ranges(c: &ClusterConnection) -> Option<Vec<(u16, u16)>> {
    let mut c = c.clone();
    let reply = c
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
        )
        .await
        .ok()?;
    parse_slot_ranges(reply)
}

/// The `(start, end)` pairs of a `CLUSTER SLOTS` reply, sorted by start.
fn parse_slot_ranges(reply: Value) -> Option<Vec<(u16, u16)>> {
    let Value::Array(entries) = reply else {
        return None;
    };
    let slot = |v: &Value| match v {
        Value::Int(n) => u16::try_from(*n).ok().filter(|&s| s < SLOTS),
        _ => None,
    };
    let mut ranges = entries
        .iter()
        .map(|e| match e {
            Value::Array(parts) if parts.len() >= 2 => {
                let (start, end) = (slot(&parts[0])?, slot(&parts[1])?);
                (start <= end).then_some((start, end))
            }
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    ranges.sort_unstable();
    Some(ranges)
}

/// The index of the range holding `slot`.
fn range_of(ranges: &[(u16, u16)], slot: u16) -> Option<usize> {
    let i = ranges
        .partition_point(|&(start, _)| start <= slot)
        .checked_sub(1)?;
    (slot <= ranges[i].1).then_some(i)
}

/// The hash slot of `cmd`'s key, for a command in [`SINGLE_KEY`].
fn key_slot(cmd: &Cmd) -> Option<u16> {
    let mut args = cmd.args_iter().map(|a| match a {
        redis::Arg::Simple(b) => Some(b),
        _ => None,
    });
    let name = args.next()??;
    if !SINGLE_KEY.iter().any(|k| k.eq_ignore_ascii_case(name)) {
        return None;
    }
    Some(slot_of(args.next()??))
}

/// Redis Cluster's key slot: CRC16 (XMODEM) of the key's hash tag (the part between the
/// first `{` and the next `}`, when not empty) or of the whole key, modulo 16384.
fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOTS
}

/// Whether `e` says the command belongs to another server now (sent again on its own).
fn is_redirect(e: &redis::RedisError) -> bool {
    matches!(e.code(), Some("MOVED" | "ASK" | "TRYAGAIN"))
}

#[cfg(all(test, feature = "testing"))]
mod on_a_cluster {
    use super::*;
    use crate::testing::RedisCluster;

    async fn connect(cluster: &RedisCluster) -> ClusterConnection {
        let client = redis::cluster::ClusterClient::new(cluster.seed_urls()).expect("client");
        client.get_async_connection().await.expect("connected")
    }

    fn values(out: Vec<RedisResult<Value>>) -> Vec<Result<Value, String>> {
        out.into_iter()
            .map(|r| r.map_err(|e| e.code().unwrap_or("?").to_owned()))
            .collect()
    }

    /// Every command's reply in its place, also when the ranges send most commands to
    /// a master that does not own their keys (`MOVED`: sent again on their own), and a
    /// server's error (`WRONGTYPE`) in its command's place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replies_stay_in_order_when_masters_redirect() {
        let cluster = RedisCluster::start().expect("cluster");
        let c = connect(&cluster).await;
        let keys: Vec<String> = (0..60).map(|i| format!("k:{i}")).collect();
        let sets = keys
            .iter()
            .map(|k| redis::cmd("SET").arg(k).arg(k.as_str()).clone())
            .collect();
        let ok = Ok(Value::Okay);
        let map = SlotMap::default();
        assert_eq!(
            values(stage(&c, &map, sets).await.expect("set")),
            vec![ok; 60]
        );
        let mut lpush = redis::cmd("LPUSH");
        lpush.arg("a:list").arg(1);
        lpush
            .query_async::<i64>(&mut c.clone())
            .await
            .expect("lpush");

        let mut gets: Vec<Cmd> = keys
            .iter()
            .map(|k| redis::cmd("GET").arg(k).clone())
            .collect();
        gets.push(redis::cmd("GET").arg("a:list").clone());
        gets.push(redis::cmd("GET").arg("absent").clone());
        gets.push(redis::cmd("ECHO").arg("x").clone());
        let mut want: Vec<Result<Value, String>> = keys
            .iter()
            .map(|k| Ok(Value::BulkString(k.clone().into_bytes())))
            .collect();
        want.push(Err("WRONGTYPE".to_owned()));
        want.push(Ok(Value::Nil));
        want.push(Ok(Value::BulkString(b"x".to_vec())));
        // The right ranges, a single range (one pipeline to the owner of slot 0: the
        // other masters' keys come back `MOVED`), and no ranges at all.
        let right = slot_ranges(&c).await.expect("CLUSTER SLOTS");
        assert_eq!(right.len(), 3);
        for (ranges, stale) in [
            (Some(right.clone()), false),
            (Some(vec![(0, SLOTS - 1)]), true),
            (None, false),
        ] {
            let (out, found_stale) = stage_on(&c, gets.clone(), ranges.as_deref())
                .await
                .expect("read");
            assert_eq!(values(out), want, "ranges {ranges:?}");
            assert_eq!(found_stale, stale, "ranges {ranges:?}");
        }
        // The map kept by the first stage is the right one and is used again.
        assert_eq!(map.kept(), Some(right));
        assert_eq!(map.asked(), 1);
        stage(&c, &map, gets).await.expect("read");
        assert_eq!(map.asked(), 1, "a kept map is not asked again");
    }

    /// Keys whose slots moved to another master after the map was kept: every reply
    /// still right (the moved keys come back `MOVED` and are sent on their own), the map
    /// forgotten, and the next stage asks for the new one and keeps it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_map_kept_across_a_reshard_still_reads_right_and_is_refreshed() {
        let cluster = RedisCluster::start().expect("cluster");
        let c = connect(&cluster).await;
        let map = SlotMap::default();
        let keys: Vec<String> = (0..1000).map(|i| format!("r:{i}")).collect();
        let sets = keys
            .iter()
            .map(|k| redis::cmd("SET").arg(k).arg(k.as_str()).clone())
            .collect();
        stage(&c, &map, sets).await.expect("set");
        let old = map.kept().expect("kept");
        assert_eq!(old.len(), 3);

        cluster.reshard(0, 1, 400).expect("reshard");
        let new = slot_ranges(&c).await.expect("CLUSTER SLOTS");
        assert_ne!(new, old, "the reshard changed the ranges");
        let moved = keys
            .iter()
            .filter(|k| {
                let s = slot_of(k.as_bytes());
                range_of(&old, s).map(|i| old[i]) != range_of(&new, s).map(|i| new[i])
            })
            .count();
        assert!(moved > 0, "some keys are in moved slots");

        let gets: Vec<Cmd> = keys
            .iter()
            .map(|k| redis::cmd("GET").arg(k).clone())
            .collect();
        let want: Vec<Result<Value, String>> = keys
            .iter()
            .map(|k| Ok(Value::BulkString(k.clone().into_bytes())))
            .collect();
        let asked = map.asked();
        assert_eq!(
            values(stage(&c, &map, gets.clone()).await.expect("read")),
            want
        );
        assert_eq!(map.asked(), asked, "the stale map was used");
        assert_eq!(map.kept(), None, "and then forgotten");
        assert_eq!(values(stage(&c, &map, gets).await.expect("read")), want);
        assert_eq!(map.asked(), asked + 1, "asked again");
        assert_eq!(map.kept(), Some(new));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster_spec() {
        // Examples from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot_of(b"123456789"), 0x31C3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_ne!(slot_of(b"foo{}{bar}"), slot_of(b"bar"));
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
    }

    #[test]
    fn key_slot_only_for_known_single_key_commands() {
        let get = redis::cmd("getrange").arg("foo").arg(0).arg(10).clone();
        assert_eq!(key_slot(&get), Some(12182));
        let publish = redis::cmd("PUBLISH").arg("foo").arg("x").clone();
        assert_eq!(key_slot(&publish), None);
        assert_eq!(key_slot(&redis::cmd("TYPE")), None);
    }

    #[test]
    fn ranges_are_parsed_sorted_and_looked_up() {
        let entry =
            |a: i64, b: i64| Value::Array(vec![Value::Int(a), Value::Int(b), Value::Array(vec![])]);
        let reply = Value::Array(vec![
            entry(10923, 16383),
            entry(0, 5460),
            entry(5461, 10922),
        ]);
        let ranges = parse_slot_ranges(reply).expect("parsed");
        assert_eq!(ranges, vec![(0, 5460), (5461, 10922), (10923, 16383)]);
        assert_eq!(range_of(&ranges, 0), Some(0));
        assert_eq!(range_of(&ranges, 5461), Some(1));
        assert_eq!(range_of(&ranges, 16383), Some(2));
        let gap = vec![(0, 10), (20, 30)];
        assert_eq!(range_of(&gap, 15), None);
        assert_eq!(range_of(&gap, 31), None);
        assert!(parse_slot_ranges(Value::Array(vec![entry(5, 70000)])).is_none());
        assert!(parse_slot_ranges(Value::Int(3)).is_none());
    }
}
