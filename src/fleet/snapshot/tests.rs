use super::*;

use crate::monogoto::ThingStatus;

fn status(iccid: &str, connected: bool) -> ThingStatus {
    ThingStatus {
        iccid: iccid.into(),
        connected: Some(connected),
        ..ThingStatus::default()
    }
}

fn thing(iccid: &str, connected: bool) -> Record {
    Record::from(status(iccid, connected))
}

#[test]
fn unrefreshed_things_keep_values_until_stale() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let stale = Duration::from_secs(180);
    let s1 = Snapshot::empty().next(vec![thing("a", true), thing("b", true)], t0, stale);
    assert_eq!(s1.len(), 2);

    let t1 = t0 + Duration::from_secs(60);
    let s2 = s1.next(vec![thing("a", false)], t1, stale);
    assert_eq!(s2.get("a").and_then(|t| t.connected()), Some(false));
    assert_eq!(
        s2.get("b").and_then(|t| t.connected()),
        Some(true),
        "last known value kept"
    );
    assert_eq!(s2.oldest_refresh(), Some(t0));

    let s3 = s2.next(vec![thing("a", true)], t0 + stale, stale);
    assert!(
        s3.get("b").is_some(),
        "exactly stale-after old is still served"
    );
    let s4 = s3.next(
        vec![thing("a", true)],
        t0 + stale + Duration::from_secs(1),
        stale,
    );
    assert!(s4.get("b").is_none(), "older than stale-after leaves");
    let text = String::from_utf8(s4.exposition()).expect("utf-8");
    assert!(text.contains("monogoto_thing_connected{iccid=\"a\"} 1"));
    assert!(!text.contains("iccid=\"b\""));
}

#[test]
fn values_not_understood_keep_their_last_good_value() {
    use crate::monogoto::model::Unparsed;
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let stale = Duration::from_secs(180);
    let mut good = status("a", true);
    good.thing_name = "meter".into();
    good.uplink_throughput = Some(5.0);
    good.last_connection = Some(100.0);
    let s1 = Snapshot::empty().next(vec![Record::from(good)], t0, stale);

    let mut garbled = status("a", false);
    garbled.uplink_throughput = None;
    garbled.last_connection = None;
    garbled.unparsed = Unparsed(Unparsed::THING_NAME | Unparsed::UPLINK);
    let s2 = s1.next(
        vec![Record::from(garbled)],
        t0 + Duration::from_secs(60),
        stale,
    );
    let a = s2.get("a").expect("present");
    assert_eq!(a.thing_name(), "meter");
    assert_eq!(a.uplink_throughput(), Some(5.0));
    assert_eq!(a.connected(), Some(false), "understood values are fresh");
    assert_eq!(
        a.last_connection(),
        None,
        "absent is absent, not a parse error"
    );
}

fn fleet(n: usize, connected: bool) -> Vec<Record> {
    (0..n)
        .map(|i| thing(&format!("8988{i:015}"), connected))
        .collect()
}

#[test]
fn unchanged_buckets_share_their_rendering() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let stale = Duration::from_secs(180);
    let s1 = Snapshot::empty().next(fleet(5000, true), t0, stale);
    let s2 = s1.next(fleet(5000, true), t0 + Duration::from_secs(60), stale);
    let shared = s1
        .segments()
        .zip(s2.segments())
        .filter(|(a, b)| Arc::ptr_eq(a, b))
        .count();
    // All but the oldest-refresh line, which moved.
    assert_eq!(shared, s1.segments().count() - 1);

    let mut changed = fleet(5000, true);
    changed[42] = thing(&format!("8988{:015}", 42), false);
    let s3 = s2.next(changed, t0 + Duration::from_secs(120), stale);
    let rerendered = s2
        .segments()
        .zip(s3.segments())
        .filter(|(a, b)| !Arc::ptr_eq(a, b))
        .count();
    assert_eq!(
        rerendered,
        families::THING_FAMILIES + 1,
        "one bucket's families and the oldest line"
    );
    assert_eq!(
        s3.get(&format!("8988{:015}", 42))
            .and_then(|t| t.connected()),
        Some(false)
    );
    assert_eq!(s3.exposition().len(), s2.exposition().len());
}

#[test]
fn every_thing_appears_once_as_the_fleet_grows_and_shrinks() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let stale = Duration::from_secs(10);
    let mut snapshot = Snapshot::empty();
    for (step, n) in [10usize, 3000, 700, 20_000, 1].into_iter().enumerate() {
        // Each step refreshes a new fleet; the previous one is stale by then.
        let at = t0 + Duration::from_secs(100 * step as u64);
        snapshot = snapshot.next(fleet(n, step % 2 == 0), at, stale);
        assert_eq!(snapshot.len(), n);
        let text = String::from_utf8(snapshot.exposition()).expect("utf-8");
        assert_eq!(
            text.matches("monogoto_thing_info{").count(),
            n,
            "step {step}"
        );
        assert_eq!(
            text.matches("# TYPE monogoto_thing_connected gauge")
                .count(),
            1
        );
        assert!(snapshot.get(&format!("8988{:015}", n - 1)).is_some());
    }
}

#[test]
fn progress_is_published_and_the_previous_rendering_released_on_the_way() {
    use std::sync::Weak;
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let stale = Duration::from_secs(180);
    let n = 5000;
    let first = Snapshot::empty().next(fleet(n, true), t0, stale);
    let buckets = first.buckets.len();
    assert_eq!(buckets, 32);
    let old_segments: Vec<Weak<Segment>> = first
        .buckets
        .iter()
        .flat_map(|b| b.families.iter().map(Arc::downgrade))
        .collect();

    // Stands for the Fleet: holds what was published last, and only that.
    let mut current = first.clone();
    drop(first);
    let mut steps = 0;
    let last = current.clone().into_next(
        fleet(n, false),
        t0 + Duration::from_secs(60),
        refreshed_within(t0 + Duration::from_secs(60), stale),
        |partial| {
            current = partial;
            steps += 1;
            let done = steps * BUCKETS_PER_STEP;
            let alive = old_segments.iter().filter(|w| w.strong_count() > 0).count();
            assert_eq!(
                alive,
                (buckets - done) * families::THING_FAMILIES,
                "step {steps}"
            );
            assert_eq!(current.len(), n);
            let text = String::from_utf8(current.exposition()).expect("utf-8");
            assert_eq!(text.matches("monogoto_thing_info{").count(), n);
            let disconnected = text.matches("\"} 0\n").count();
            assert!(disconnected > 0 && disconnected < n, "{disconnected}");
            for i in [0, 1234, n - 1] {
                assert!(current.get(&format!("8988{i:015}")).is_some());
            }
        },
    );
    assert_eq!(steps, buckets / BUCKETS_PER_STEP - 1);
    current = last;
    assert!(old_segments.iter().all(|w| w.strong_count() == 0));
    let text = String::from_utf8(current.exposition()).expect("utf-8");
    assert_eq!(text.matches("\"} 0\n").count(), n, "all disconnected now");
}

#[test]
fn runs_of_iccids_spread_evenly_over_the_buckets() {
    use crate::shard::Shard;
    let shard = Shard { index: 1, count: 3 };
    for (count, owner) in [(64, Shard::default()), (16, shard)] {
        let mut sizes = vec![0usize; count];
        let iccids = (0..200_000u64).map(|i| format!("8988280666{i:010}"));
        let mut owned = 0;
        for iccid in iccids.filter(|i| owner.owns(i)) {
            sizes[bucket_of(&iccid, count)] += 1;
            owned += 1;
        }
        let mean = owned / count;
        for size in sizes {
            assert!(size.abs_diff(mean) * 10 < mean, "{size} against {mean}");
        }
    }
}

#[test]
fn the_layout_changes_only_past_a_factor_of_two() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    // Each step's fleet is all there is: the previous one is stale by then.
    let stale = Duration::from_secs(5);
    let mut snapshot = Snapshot::empty();
    for (step, (n, buckets)) in [(3000, 16), (5000, 16), (9000, 64), (5000, 64), (2000, 8)]
        .into_iter()
        .enumerate()
    {
        let at = t0 + Duration::from_secs(10 * step as u64);
        snapshot = snapshot.next(fleet(n, true), at, stale);
        assert_eq!(snapshot.buckets.len(), buckets, "{n} Things");
        assert_eq!(snapshot.len(), n);
        assert!(snapshot.get(&format!("8988{:015}", n - 1)).is_some());
    }
}

#[test]
fn a_fleet_after_an_empty_refresh_is_laid_out_at_once() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let stale = Duration::from_secs(180);
    let empty = Snapshot::empty().next(Vec::new(), t0, stale);
    assert_eq!(empty.buckets.len(), 1);
    let mut published = 0;
    let full = empty.into_next(
        fleet(5000, true),
        t0 + Duration::from_secs(60),
        refreshed_within(t0 + Duration::from_secs(60), stale),
        |_| published += 1,
    );
    assert_eq!(published, 0, "nothing to release: no progress published");
    assert_eq!(full.buckets.len(), 32);
    assert_eq!(full.len(), 5000);
}

#[test]
fn an_iccid_answered_twice_appears_once() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let stale = Duration::from_secs(180);
    let twice = |n| {
        let mut things = fleet(n, true);
        things.extend(fleet(n, true));
        things
    };
    let first = Snapshot::empty().next(twice(3000), t0, stale);
    let second = first.next(twice(3000), t0 + Duration::from_secs(60), stale);
    for snapshot in [first, second] {
        assert_eq!(snapshot.len(), 3000);
        let text = String::from_utf8(snapshot.exposition()).expect("utf-8");
        assert_eq!(text.matches("monogoto_thing_info{").count(), 3000);
    }
}

#[test]
fn fleet_publishes_whole_snapshots() {
    let fleet = Fleet::default();
    assert!(!fleet.is_ready());
    assert!(fleet.snapshot().is_empty());
    let before = fleet.snapshot();
    fleet.publish(Snapshot::empty().next(
        vec![thing("a", true)],
        SystemTime::now(),
        Duration::from_secs(1),
    ));
    fleet.mark_ready();
    assert!(fleet.is_ready());
    assert_eq!(fleet.snapshot().len(), 1);
    assert!(
        before.is_empty(),
        "a reader's snapshot never changes under it"
    );
}

#[test]
fn records_visit_every_thing_once() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let stale = Duration::from_secs(180);
    let things: Vec<Record> = (0..1000)
        .map(|i| thing(&format!("8988{i:015}"), i % 3 == 0))
        .collect();
    let snapshot = Snapshot::empty().next(things, t0, stale);
    let mut seen: Vec<&str> = snapshot.records().map(Record::iccid).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 1000);
    let connected = snapshot
        .records()
        .filter(|r| r.connected() == Some(true))
        .count();
    assert_eq!(connected, 334);
}
