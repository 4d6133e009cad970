//! Tests of `delta`.

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
    let kept: Vec<&str> = done.kept.keys().map(SmolStr::as_str).collect();
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
    let kept: Vec<&str> = third.kept.keys().map(SmolStr::as_str).collect();
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

/// The ids an audit of `count` after `after` reads again, with where it stopped.
fn audited(
    kept: Kept<String>,
    count: usize,
    after: Option<&str>,
) -> (Vec<String>, Option<SmolStr>) {
    let audit = Audit {
        count,
        after,
        listed: None,
    };
    let (plan, walked) = plan_delta_audited(kept, vec![], vec![], &set(&[]), &set(&[]), audit);
    (plan.to_fetch().map(str::to_owned).collect(), walked)
}

#[test]
fn an_audit_walks_the_kept_ids_in_order_and_wraps_around() {
    let calls = AtomicUsize::new(0);
    let store: Store = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")].into();
    let kept = read(
        plan_full(ids(&["a", "b", "c", "d"]), &set(&[])),
        &store,
        &calls,
    )
    .kept;
    assert_eq!(audited(kept.clone(), 0, None), (vec![], None));
    assert_eq!(
        audited(kept.clone(), 2, None),
        (ids(&["a", "b"]), Some("b".into()))
    );
    assert_eq!(
        audited(kept.clone(), 2, Some("b")),
        (ids(&["c", "d"]), Some("d".into()))
    );
    // Wrapping: the read ids are in id order, the walk ends at `a`.
    assert_eq!(
        audited(kept.clone(), 2, Some("c")),
        (ids(&["a", "d"]), Some("a".into()))
    );
    // Where it stopped is gone: it goes on after it.
    assert_eq!(
        audited(kept.clone(), 1, Some("bb")),
        (ids(&["c"]), Some("c".into()))
    );
    // Never more than every kept id once.
    assert_eq!(
        audited(kept, 9, Some("b")),
        (ids(&["a", "b", "c", "d"]), Some("b".into()))
    );
}

#[test]
fn an_audit_sees_what_no_log_announced_as_a_full_read_does() {
    let calls = AtomicUsize::new(0);
    let store: Store = [("a", "1"), ("b", "2"), ("c", "3")].into();
    let first = read(plan_full(ids(&["a", "b", "c"]), &set(&[])), &store, &calls);
    let decodes = calls.load(Ordering::Relaxed);
    // Behind the log's back: `a` rewritten, `b` deleted (key and index entry gone),
    // `c` unchanged, `d` written and indexed.
    let store: Store = [("a", "9"), ("c", "3"), ("d", "4")].into();
    let index = ["a", "c", "d"];
    let audit = Audit {
        count: 3,
        after: None,
        listed: Some(ids(&["d", "c", "a"])),
    };
    let (plan, walked) =
        plan_delta_audited(first.kept, vec![], vec![], &set(&[]), &set(&[]), audit);
    assert_eq!(walked.as_deref(), Some("c"));
    let done = read_with(plan, &store, &index, &set(&[]), &calls);
    let fresh = read(
        plan_full(ids(&index), &set(&[])),
        &store,
        &AtomicUsize::new(0),
    );
    assert_eq!(plain(&done.found), plain(&fresh.found));
    assert_eq!(done.kept.keys().collect::<Vec<_>>(), ["a", "c", "d"]);
    // `c`'s value is unchanged: not decoded again (`a` and `d` are).
    assert_eq!(calls.load(Ordering::Relaxed) - decodes, 2);
}

#[test]
fn a_kept_id_the_listing_misses_is_read_and_settled_as_a_full_read_would() {
    let calls = AtomicUsize::new(0);
    let store: Store = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")].into();
    let first = read(
        plan_full(ids(&["a", "b", "c", "d"]), &set(&[])),
        &store,
        &calls,
    );
    // `a`, `c` and `d` lost their index entries without a log entry; `c` was indexed
    // again after the listing (and logged); SCAN found `d`'s key.
    let unindexed = set(&["d"]);
    let audit = Audit {
        count: 0,
        after: None,
        listed: Some(ids(&["b"])),
    };
    let (plan, _) = plan_delta_audited(
        first.kept,
        vec![],
        ids(&["c"]),
        &set(&[]),
        &unindexed,
        audit,
    );
    assert_eq!(plan.to_fetch().collect::<Vec<_>>(), ["a", "c", "d"]);
    let index = ["b", "c"];
    let done = read_with(plan, &store, &index, &unindexed, &calls);
    assert_eq!(done.kept.keys().collect::<Vec<_>>(), ["b", "c"]);
    assert_eq!(done.unindexed, ["d"]);
    let fresh = read_with(
        plan_full(ids(&index), &unindexed),
        &store,
        &index,
        &unindexed,
        &AtomicUsize::new(0),
    );
    assert_eq!(plain(&done.found), plain(&fresh.found));
}

#[test]
fn a_listed_id_found_by_scan_is_kept_once_its_index_entry_is_confirmed() {
    // An older writer's record: its key found by SCAN (read every time, not kept) until
    // a listing finds its index entry.
    let calls = AtomicUsize::new(0);
    let store: Store = [("a", "1"), ("x", "9")].into();
    let unindexed = set(&["x"]);
    let first = read_with(
        plan_full(ids(&["a"]), &unindexed),
        &store,
        &["a"],
        &unindexed,
        &calls,
    );
    assert_eq!(first.unindexed, ["x"]);
    let audit = Audit {
        count: 0,
        after: None,
        listed: Some(ids(&["a", "x"])),
    };
    let (plan, _) = plan_delta_audited(first.kept, vec![], vec![], &set(&[]), &unindexed, audit);
    assert_eq!(plan.to_confirm().collect::<Vec<_>>(), ["x"]);
    let done = read_with(plan, &store, &["a", "x"], &unindexed, &calls);
    assert_eq!(done.kept.keys().collect::<Vec<_>>(), ["a", "x"]);
    assert!(done.unindexed.is_empty());
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
                (SmolStr::from(id.as_str()), entry)
            })
            .collect();
        for skip in 0..4 {
            let mut unindexed: BTreeSet<String> = names.iter().skip(skip).cloned().collect();
            unindexed.insert("n".to_owned());
            unindexed.insert("n99".to_owned());
            let want: BTreeSet<String> = unindexed
                .iter()
                .filter(|id| !kept.contains_key(id.as_str()))
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
