//! Every Redis key and channel name vramroute and SOLLOL use. The only place they are
//! spelled out (see `docs/registry.md` for the full table).

/// Prefix of SOLLOL's live GPU stats keys: `sollol:gpu:{node_id}`.
pub const GPU_STATS_PREFIX: &str = "sollol:gpu:";
/// SOLLOL's history stream (`XADD … MAXLEN ~ 1000`). Matches `sollol:gpu:*` but is not a node.
pub const GPU_STATS_STREAM: &str = "sollol:gpu:stats";
/// Prefix of SOLLOL's capability registrations: `sollol:rpc:node:{host}:{port}`.
pub const RPC_NODE_PREFIX: &str = "sollol:rpc:node:";
/// SOLLOL's router metadata (`rpc_backends`).
pub const ROUTER_METADATA: &str = "sollol:router:metadata";

/// Ours: sorted set of node ids with a live stats key, scored by the write time plus TTL
/// (Unix milliseconds). Lets discovery avoid `KEYS`/`SCAN`.
pub const INDEX_GPU: &str = "vramroute:index:gpu";
/// Ours: sorted set of `host:port` members with a live registration, scored like [`INDEX_GPU`].
pub const INDEX_RPC: &str = "vramroute:index:rpc";
/// Ours: the change log, a stream capped near `RegistryConfig::change_log_maxlen`
/// (`XADD … MAXLEN ~`). Every write of ours appends `gpu {node_id}` or `rpc {host:port}`
/// after the write itself, so a reader that has seen an entry can read that write.
/// Lets discovery read only what changed.
pub const CHANGES: &str = "vramroute:changes";
/// Field of a change-log entry naming a stats record's node id.
pub(crate) const CHANGE_GPU: &str = "gpu";
/// Field of a change-log entry naming a registration's `host:port`.
pub(crate) const CHANGE_RPC: &str = "rpc";
/// Ours: pub/sub channel on which our writers announce changes.
pub const EVENTS_CHANNEL: &str = "vramroute:events";
/// Ours: prefix of named locks (`vramroute:lock:{name}`), e.g. the coordinators' optimize lock.
pub const LOCK_PREFIX: &str = "vramroute:lock:";

/// The Redis type a key of ours (or SOLLOL's) holds, in words, for messages about a key
/// found holding another type.
pub(crate) fn expected_type(key: &str) -> &'static str {
    match key {
        INDEX_GPU | INDEX_RPC => "sorted set",
        CHANGES | GPU_STATS_STREAM => "stream",
        _ => "string",
    }
}

/// `prefix` followed by `rest`, in one allocation of the exact size (`format!` costs
/// several times more, and discovery makes two keys per node).
fn concat(prefix: &str, rest: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + rest.len());
    key.push_str(prefix);
    key.push_str(rest);
    key
}

/// The stats key of a node.
pub fn gpu_stats_key(node_id: &str) -> String {
    concat(GPU_STATS_PREFIX, node_id)
}

/// The registration key of an RPC node from its index member (`host:port`).
pub(crate) fn rpc_node_key_of(member: &str) -> String {
    concat(RPC_NODE_PREFIX, member)
}

/// The registration key of an RPC node.
pub fn rpc_node_key(host: &str, port: u16) -> String {
    format!("{RPC_NODE_PREFIX}{host}:{port}")
}

/// The index member of an RPC node (`host:port`).
pub(crate) fn rpc_member(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// The lock key for `name`.
pub(crate) fn lock_key(name: &str) -> String {
    format!("{LOCK_PREFIX}{name}")
}

/// The node id of a stats key, as SOLLOL's reader derives it; `None` for the stream and
/// for keys outside the namespace.
pub fn node_id_from_stats_key(key: &str) -> Option<&str> {
    if key == GPU_STATS_STREAM {
        return None;
    }
    key.strip_prefix(GPU_STATS_PREFIX)
        .filter(|id| !id.is_empty())
}

/// Splits a `host:port` string at its last colon (so IPv6 hosts work).
pub fn split_host_port(member: &str) -> Option<(&str, u16)> {
    let (host, port) = member.rsplit_once(':')?;
    let port = port.parse().ok()?;
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

/// The `(host, port)` of a registration key.
pub fn rpc_from_key(key: &str) -> Option<(&str, u16)> {
    split_host_port(key.strip_prefix(RPC_NODE_PREFIX)?)
}

/// Checks a node id or host before it becomes part of a key: non-empty, at most 255
/// bytes, no whitespace, control characters or glob metacharacters.
pub(crate) fn check_key_part(what: &'static str, part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if part.len() > 255 {
        return Err(format!("{what} is {} bytes long (max 255)", part.len()));
    }
    if let Some(c) = part
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '?' | '[' | ']' | '\\'))
    {
        return Err(format!("{what} {part:?} contains the character {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips() {
        assert_eq!(gpu_stats_key("10.0.0.1:11434"), "sollol:gpu:10.0.0.1:11434");
        assert_eq!(
            node_id_from_stats_key("sollol:gpu:10.0.0.1:11434"),
            Some("10.0.0.1:11434")
        );
        assert_eq!(node_id_from_stats_key("sollol:gpu:stats"), None);
        assert_eq!(node_id_from_stats_key("sollol:gpu:"), None);
        assert_eq!(
            rpc_node_key("10.0.0.1", 50052),
            "sollol:rpc:node:10.0.0.1:50052"
        );
        assert_eq!(
            rpc_from_key("sollol:rpc:node:10.0.0.1:50052"),
            Some(("10.0.0.1", 50052))
        );
        assert_eq!(
            rpc_from_key("sollol:rpc:node:fe80::1:50052"),
            Some(("fe80::1", 50052))
        );
        assert_eq!(rpc_from_key("sollol:rpc:node:nope"), None);
    }

    #[test]
    fn our_keys_are_outside_sollol_namespaces() {
        for k in [INDEX_GPU, INDEX_RPC, EVENTS_CHANNEL, LOCK_PREFIX] {
            assert!(
                !k.starts_with(GPU_STATS_PREFIX) && !k.starts_with(RPC_NODE_PREFIX),
                "{k}"
            );
        }
    }

    #[test]
    fn key_parts_are_checked() {
        assert!(check_key_part("node id", "10.0.0.1:11434").is_ok());
        assert!(check_key_part("node id", "").is_err());
        assert!(check_key_part("node id", "a b").is_err());
        assert!(check_key_part("node id", "a*").is_err());
    }
}
