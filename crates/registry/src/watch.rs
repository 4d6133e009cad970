//! Change-push plumbing shared by the backends: fan-out to subscribers, the messages of
//! our channel, keyspace-event decoding and the polling differ.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::change::Change;
use crate::keys;
use crate::record::{RouterMetadata, RpcNodeRecord};
use crate::view::ClusterView;
use crate::SmolStr;

/// Capacity of each subscriber's queue; when full, changes are dropped and a
/// [`Change::Resync`] follows as soon as there is room.
pub(crate) const QUEUE: usize = 4096;

/// One subscriber's sending side, remembering whether it missed something.
#[derive(Debug)]
pub(crate) struct Sink {
    tx: mpsc::Sender<Change>,
    lagged: bool,
}

impl Sink {
    pub(crate) fn new(tx: mpsc::Sender<Change>) -> Self {
        Self { tx, lagged: false }
    }

    /// Sends without waiting; returns false once the receiver is gone.
    pub(crate) fn send(&mut self, change: Change) -> bool {
        use mpsc::error::TrySendError;
        if self.lagged {
            match self.tx.try_send(Change::Resync) {
                Ok(()) => self.lagged = false,
                Err(TrySendError::Full(_)) => return true,
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(change) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.lagged = true;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Fan-out to every live subscriber.
#[derive(Debug, Default)]
pub(crate) struct Subscribers(Vec<Sink>);

impl Subscribers {
    pub(crate) fn add(&mut self, tx: mpsc::Sender<Change>) {
        self.0.retain(|s| !s.is_closed());
        self.0.push(Sink::new(tx));
    }

    pub(crate) fn send(&mut self, change: &Change) {
        self.0.retain_mut(|s| s.send(change.clone()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.iter().all(Sink::is_closed)
    }
}

/// The message our writers publish on [`keys::EVENTS_CHANNEL`] for a change.
pub(crate) fn channel_message(change: &Change) -> String {
    match change {
        Change::Updated(id) => format!("stats:set:{id}"),
        Change::Removed(id) => format!("stats:del:{id}"),
        Change::RpcUpdated(m) => format!("rpc:set:{m}"),
        Change::RpcRemoved(m) => format!("rpc:del:{m}"),
        Change::MetadataChanged => "meta".to_owned(),
        Change::Resync => "resync".to_owned(),
    }
}

/// Parses a message of our channel.
pub(crate) fn parse_channel_message(msg: &str) -> Option<Change> {
    if msg == "meta" {
        return Some(Change::MetadataChanged);
    }
    if msg == "resync" {
        return Some(Change::Resync);
    }
    let (kind, rest) = msg.split_once(':')?;
    let (op, id) = rest.split_once(':')?;
    if id.is_empty() {
        return None;
    }
    let id = id.to_owned();
    match (kind, op) {
        ("stats", "set") => Some(Change::Updated(id)),
        ("stats", "del") => Some(Change::Removed(id)),
        ("rpc", "set") => Some(Change::RpcUpdated(id)),
        ("rpc", "del") => Some(Change::RpcRemoved(id)),
        _ => None,
    }
}

/// Decodes a keyspace notification (`__keyspace@{db}__:{key}` / event name).
pub(crate) fn parse_keyspace(channel: &str, event: &str) -> Option<Change> {
    let key = channel.strip_prefix("__keyspace@")?;
    let key = &key[key.find("__:")? + 3..];
    #[derive(PartialEq)]
    enum Op {
        Set,
        Gone,
    }
    let op = match event {
        "set" | "rename_to" | "restore" | "copy_to" => Op::Set,
        "del" | "expired" | "evicted" | "rename_from" => Op::Gone,
        _ => return None,
    };
    if let Some(id) = keys::node_id_from_stats_key(key) {
        return Some(match op {
            Op::Set => Change::Updated(id.to_owned()),
            Op::Gone => Change::Removed(id.to_owned()),
        });
    }
    if let Some((host, port)) = keys::rpc_from_key(key) {
        let member = keys::rpc_member(host, port);
        return Some(match op {
            Op::Set => Change::RpcUpdated(member),
            Op::Gone => Change::RpcRemoved(member),
        });
    }
    if key == keys::ROUTER_METADATA {
        return Some(Change::MetadataChanged);
    }
    None
}

/// The live ids of both indexes (stats, registrations), each sorted, as the polling
/// fallback listed them.
pub(crate) type Listed = (Vec<SmolStr>, Vec<SmolStr>);

/// What the polling fallback remembers of its previous read: the ids the indexes listed
/// (our writers announce their writes, so only an id's coming and going matters here:
/// an expiry or a removal without a word), and of the records no index lists (read
/// whole: SOLLOL's writes announce nothing) the timestamp or the registration.
#[derive(Debug, Default)]
pub(crate) struct PollState {
    listed: Listed,
    stats: HashMap<SmolStr, u64>,
    rpc: HashMap<String, Arc<RpcNodeRecord>>,
    metadata: Option<RouterMetadata>,
    primed: bool,
}

impl PollState {
    /// Records `view` (the records no index lists, and the metadata) and `listed` (the
    /// ids the indexes list) and returns what changed since the previous call (nothing
    /// on the first call). An id that moved between listed and read whole is updated.
    pub(crate) fn diff(&mut self, view: &ClusterView, listed: Listed) -> Vec<Change> {
        let stats: HashMap<SmolStr, u64> = view
            .stats
            .iter()
            .map(|(id, r)| (id.clone(), r.timestamp.to_bits()))
            .collect();
        let rpc: HashMap<String, Arc<RpcNodeRecord>> = view
            .rpc_nodes
            .iter()
            .map(|e| (keys::rpc_member(&e.host, e.port), e.record.clone()))
            .collect();
        let mut changes = Vec::new();
        if self.primed {
            changed(
                (&self.listed.0, &self.stats),
                (&listed.0, &stats),
                &mut changes,
                |id| Change::Updated(id.to_owned()),
                |id| Change::Removed(id.to_owned()),
            );
            changed(
                (&self.listed.1, &self.rpc),
                (&listed.1, &rpc),
                &mut changes,
                |m| Change::RpcUpdated(m.to_owned()),
                |m| Change::RpcRemoved(m.to_owned()),
            );
            if self.metadata != view.metadata {
                changes.push(Change::MetadataChanged);
            }
        }
        self.listed = listed;
        self.stats = stats;
        self.rpc = rpc;
        self.metadata = view.metadata.clone();
        self.primed = true;
        changes
    }
}

/// Adds to `changes` what differs from `before` to `now`, each given as the sorted ids
/// an index listed and the records read whole by id: an id new, or read whole with
/// another value or after being listed, or listed after being read whole, is
/// `updated`; an id in neither any more is `removed`.
fn changed<K, V>(
    before: (&[SmolStr], &HashMap<K, V>),
    now: (&[SmolStr], &HashMap<K, V>),
    changes: &mut Vec<Change>,
    updated: impl Fn(&str) -> Change,
    removed: impl Fn(&str) -> Change,
) where
    K: std::borrow::Borrow<str> + std::hash::Hash + Eq,
    V: PartialEq,
{
    let listed = |ids: &[SmolStr], id: &str| ids.binary_search_by(|l| l.as_str().cmp(id)).is_ok();
    for id in now.0 {
        if !listed(before.0, id) {
            changes.push(updated(id));
        }
    }
    for (id, v) in now.1 {
        if before.1.get(id.borrow()) != Some(v) {
            changes.push(updated(id.borrow()));
        }
    }
    for id in before.0 {
        if !listed(now.0, id) && !now.1.contains_key(id.as_str()) {
            changes.push(removed(id));
        }
    }
    for id in before.1.keys() {
        if !now.1.contains_key(id.borrow()) && !listed(now.0, id.borrow()) {
            changes.push(removed(id.borrow()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_messages_round_trip() {
        for c in [
            Change::Updated("10.0.0.1:11434".into()),
            Change::Removed("h:1".into()),
            Change::RpcUpdated("10.0.0.1:50052".into()),
            Change::RpcRemoved("fe80::1:50052".into()),
            Change::MetadataChanged,
            Change::Resync,
        ] {
            assert_eq!(parse_channel_message(&channel_message(&c)), Some(c));
        }
        assert_eq!(parse_channel_message("garbage"), None);
        assert_eq!(parse_channel_message("stats:set:"), None);
    }

    #[test]
    fn keyspace_events_decode() {
        let ch = "__keyspace@0__:sollol:gpu:10.0.0.1:11434";
        assert_eq!(
            parse_keyspace(ch, "set"),
            Some(Change::Updated("10.0.0.1:11434".into()))
        );
        assert_eq!(
            parse_keyspace(ch, "expired"),
            Some(Change::Removed("10.0.0.1:11434".into()))
        );
        assert_eq!(
            parse_keyspace(ch, "del"),
            Some(Change::Removed("10.0.0.1:11434".into()))
        );
        assert_eq!(parse_keyspace(ch, "expire"), None);
        assert_eq!(
            parse_keyspace("__keyspace@3__:sollol:gpu:stats", "del"),
            None
        );
        assert_eq!(
            parse_keyspace("__keyspace@0__:sollol:rpc:node:10.0.0.1:50052", "expired"),
            Some(Change::RpcRemoved("10.0.0.1:50052".into()))
        );
        assert_eq!(
            parse_keyspace("__keyspace@0__:sollol:router:metadata", "set"),
            Some(Change::MetadataChanged)
        );
        assert_eq!(parse_keyspace("__keyspace@0__:other", "set"), None);
    }

    #[test]
    fn poll_diff_reports_changes_after_first_view() {
        let mut st = PollState::default();
        let rec = |ts: f64| crate::GpuStatsRecord {
            timestamp: ts,
            ..Default::default()
        };
        let mut view = ClusterView {
            stats: vec![("a".into(), Arc::new(rec(1.0)))],
            ..Default::default()
        };
        let none = || (Vec::new(), Vec::new());
        assert!(st.diff(&view, none()).is_empty());
        view.stats = vec![
            ("a".into(), Arc::new(rec(2.0))),
            ("b".into(), Arc::new(rec(1.0))),
        ];
        let mut got = st.diff(&view, none());
        got.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            got,
            vec![Change::Updated("a".into()), Change::Updated("b".into())]
        );
        view.stats.remove(0);
        assert_eq!(st.diff(&view, none()), vec![Change::Removed("a".into())]);
        assert!(st.diff(&view, none()).is_empty());
    }

    /// Ids the indexes list count by their coming and going only (our writers announce
    /// their writes); a record moving between listed and read whole is a change.
    #[test]
    fn poll_diff_reports_listed_ids_coming_and_going() {
        let mut st = PollState::default();
        let ids = |v: &[&str]| v.iter().map(SmolStr::new).collect::<Vec<_>>();
        let view = ClusterView::default();
        assert!(st.diff(&view, (ids(&["a", "b"]), ids(&["h:1"]))).is_empty());
        assert!(st.diff(&view, (ids(&["a", "b"]), ids(&["h:1"]))).is_empty());
        let mut got = st.diff(&view, (ids(&["b", "c"]), Vec::new()));
        got.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            got,
            vec![
                Change::Removed("a".into()),
                Change::RpcRemoved("h:1".into()),
                Change::Updated("c".into()),
            ]
        );
        // "b" is no longer listed but read whole (its index entry went, its key stayed).
        let with_b = ClusterView {
            stats: vec![("b".into(), Arc::new(crate::GpuStatsRecord::default()))],
            ..Default::default()
        };
        assert_eq!(
            st.diff(&with_b, (ids(&["c"]), Vec::new())),
            vec![Change::Updated("b".into())]
        );
        // Listed again (a writer of ours took it over), then everything gone.
        assert_eq!(
            st.diff(&view, (ids(&["b", "c"]), Vec::new())),
            vec![Change::Updated("b".into())]
        );
        let mut got = st.diff(&view, (Vec::new(), Vec::new()));
        got.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            got,
            vec![Change::Removed("b".into()), Change::Removed("c".into())]
        );
    }

    #[tokio::test]
    async fn slow_subscriber_gets_resync() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut sink = Sink::new(tx);
        assert!(sink.send(Change::Updated("1".into())));
        assert!(sink.send(Change::Updated("2".into())));
        assert!(sink.send(Change::Updated("3".into()))); // dropped, lagged
        assert_eq!(rx.recv().await, Some(Change::Updated("1".into())));
        assert_eq!(rx.recv().await, Some(Change::Updated("2".into())));
        assert!(sink.send(Change::Updated("4".into())));
        assert_eq!(rx.recv().await, Some(Change::Resync));
        assert_eq!(rx.recv().await, Some(Change::Updated("4".into())));
        drop(rx);
        assert!(!sink.send(Change::Resync));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Messages on our channel and keyspace notifications come from anyone who may
        /// publish: any text decodes to a change or to nothing, and what decodes
        /// round-trips through our own message format.
        #[test]
        fn any_message_decodes_or_is_ignored(msg in ".{0,200}", event in ".{0,20}") {
            if let Some(c) = parse_channel_message(&msg) {
                proptest::prop_assert_eq!(parse_channel_message(&channel_message(&c)), Some(c));
            }
            let _ = parse_keyspace(&msg, &event);
            let _ = parse_keyspace(&format!("__keyspace@0__:{msg}"), "set");
        }
    }
}
