//! The Lua scripts of the optimize lock (`TRY_LOCK`, `UNLOCK`), loaded once per registry,
//! and of discovery's bounded index pruning (`PRUNE_INDEX`, sent with `EVAL` inside
//! discovery's pipelines; see `bounded`).

/// Takes the lock `KEYS[1]` for owner `ARGV[1]` for `ARGV[2]` ms, or extends it if that
/// owner holds it; 1 when the owner holds it afterwards.
const TRY_LOCK: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Deletes the lock `KEYS[1]` if owner `ARGV[1]` holds it; 1 when it did.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Prunes at most `ARGV[3]` entries at each end of the index `KEYS[1]` (a sorted set
/// scored by expiry deadline, Unix ms): those scored at or below `ARGV[1]` (long dead)
/// and those scored above `ARGV[2]` (further in the future than any record of ours can
/// live: bogus). The entries at an end of the set are exactly those (`ZCOUNT` says how
/// many; `ZREMRANGEBYRANK` removes them), so each call costs O(log N + `ARGV[3]`) however
/// many bogus members there are. Returns how many it removed; 0 for a key that is not a
/// sorted set (its `ZCOUNT` fails: no error, the reads report the key).
pub(super) const PRUNE_INDEX: &str = r"
local key = KEYS[1]
local max = tonumber(ARGV[3])
local old = redis.pcall('ZCOUNT', key, '-inf', ARGV[1])
if type(old) ~= 'number' then
  return 0
end
local removed = 0
if old > 0 then
  removed = removed + redis.call('ZREMRANGEBYRANK', key, 0, math.min(old, max) - 1)
end
local future = redis.call('ZCOUNT', key, '(' .. ARGV[2], '+inf')
if future > 0 then
  removed = removed + redis.call('ZREMRANGEBYRANK', key, -math.min(future, max), -1)
end
return removed
";

/// The registry's scripts (each sent by `EVALSHA`, loaded on first use).
pub(super) struct Scripts {
    /// See `TRY_LOCK`.
    pub(super) try_lock: redis::Script,
    /// See `UNLOCK`.
    pub(super) unlock: redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            try_lock: redis::Script::new(TRY_LOCK),
            unlock: redis::Script::new(UNLOCK),
        }
    }
}
