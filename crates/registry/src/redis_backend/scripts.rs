//! The Lua scripts of the optimize lock (`TRY_LOCK`, `UNLOCK`), loaded once per registry.

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
