//! The fleet state one refresh produced: immutable, swapped in whole.
//!
//! The Things are spread over buckets by a hash of their ICCID, and each
//! bucket keeps its rendered (and compressed) exposition segments. A refresh
//! renders only the buckets whose Things changed; the others share their
//! segments with the previous snapshot. So a refresh costs in proportion to
//! what changed, two snapshots alive at once share most of their memory, and
//! a scrape only references bytes that already exist.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::exposition::Segment;
use crate::metrics;
use crate::monogoto::ThingStatus;
use crate::shard::iccid_hash;

/// About this many Things share a bucket: large enough that segments
/// compress well, small enough that one change re-renders little.
const THINGS_PER_BUCKET: usize = 256;
const MAX_BUCKETS: usize = 4096;

#[derive(Debug, Clone)]
struct Entry {
    status: Arc<ThingStatus>,
    refreshed_at: SystemTime,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Sorted by ICCID.
    things: Vec<Entry>,
    /// One segment per per-Thing metric family.
    families: Vec<Arc<Segment>>,
}

impl Bucket {
    fn render(things: Vec<Entry>) -> Bucket {
        let families = (0..metrics::THING_FAMILIES)
            .map(|family| {
                let mut text = Vec::with_capacity(things.len() * 96);
                metrics::render_family_lines(
                    family,
                    things.iter().map(|e| e.status.as_ref()),
                    &mut text,
                );
                Segment::new(text)
            })
            .collect();
        Bucket { things, families }
    }

    /// Same Things with the same values: the rendered text would not change.
    fn renders_like(&self, things: &[Entry]) -> bool {
        self.things.len() == things.len()
            && self
                .things
                .iter()
                .zip(things)
                .all(|(a, b)| Arc::ptr_eq(&a.status, &b.status) || a.status == b.status)
    }
}

#[derive(Debug, Default)]
pub struct Snapshot {
    buckets: Vec<Bucket>,
    len: usize,
    oldest: Option<SystemTime>,
    /// The whole per-Thing exposition, in order.
    segments: Vec<Arc<Segment>>,
}

fn bucket_count(things: usize) -> usize {
    things
        .div_ceil(THINGS_PER_BUCKET)
        .next_power_of_two()
        .clamp(1, MAX_BUCKETS)
}

fn bucket_of(iccid: &str, buckets: usize) -> usize {
    // The high half: the low bits already decide the shard.
    ((iccid_hash(iccid) >> 32) as usize) % buckets
}

/// The `# HELP`/`# TYPE` lines of each family, rendered once per process.
fn family_headers() -> &'static [Arc<Segment>] {
    static HEADERS: OnceLock<Vec<Arc<Segment>>> = OnceLock::new();
    HEADERS.get_or_init(|| {
        (0..metrics::THING_FAMILIES)
            .map(|family| {
                let mut text = Vec::new();
                metrics::render_family_header(family, &mut text);
                Segment::new(text)
            })
            .collect()
    })
}

impl Snapshot {
    pub fn empty() -> Self {
        Snapshot::default()
    }

    /// The next snapshot: `fresh` replaces what it names (keeping the last
    /// good value of anything it could not understand), Things not refreshed
    /// keep their last values, and Things not refreshed for longer than
    /// `stale_after` are dropped.
    pub fn next(
        &self,
        fresh: Vec<ThingStatus>,
        now: SystemTime,
        stale_after: Duration,
    ) -> Snapshot {
        let is_current =
            |e: &Entry| now.duration_since(e.refreshed_at).unwrap_or_default() <= stale_after;
        let previous_count = self.buckets.len().max(1);
        let mut fresh_by_bucket: Vec<Vec<ThingStatus>> =
            (0..previous_count).map(|_| Vec::new()).collect();
        for status in fresh {
            fresh_by_bucket[bucket_of(&status.iccid, previous_count)].push(status);
        }

        // Merge bucket by bucket, as the previous snapshot was laid out.
        let mut merged: Vec<Vec<Entry>> = Vec::with_capacity(previous_count);
        for (index, mut fresh) in fresh_by_bucket.into_iter().enumerate() {
            fresh.sort_unstable_by(|a, b| a.iccid.cmp(&b.iccid));
            fresh.dedup_by(|a, b| a.iccid == b.iccid);
            let old = self.buckets.get(index).map_or(&[][..], |b| &b.things[..]);
            merged.push(merge(old, fresh, now, &is_current));
        }
        let len: usize = merged.iter().map(Vec::len).sum();

        let count = bucket_count(len);
        let buckets: Vec<Bucket> = if count == previous_count {
            merged
                .into_iter()
                .enumerate()
                .map(|(index, things)| match self.buckets.get(index) {
                    Some(old) if old.renders_like(&things) => Bucket {
                        things,
                        families: old.families.clone(),
                    },
                    _ => Bucket::render(things),
                })
                .collect()
        } else {
            // The fleet grew or shrank past a bucket boundary: lay it out anew.
            let mut regrouped: Vec<Vec<Entry>> = (0..count).map(|_| Vec::new()).collect();
            for entry in merged.into_iter().flatten() {
                regrouped[bucket_of(&entry.status.iccid, count)].push(entry);
            }
            regrouped
                .into_iter()
                .map(|mut things| {
                    things.sort_unstable_by(|a, b| a.status.iccid.cmp(&b.status.iccid));
                    Bucket::render(things)
                })
                .collect()
        };

        let oldest = buckets
            .iter()
            .flat_map(|b| &b.things)
            .map(|e| e.refreshed_at)
            .min();
        let headers = family_headers();
        let mut segments = Vec::with_capacity(metrics::THING_FAMILIES * (buckets.len() + 1) + 1);
        for (family, header) in headers.iter().enumerate() {
            segments.push(header.clone());
            segments.extend(buckets.iter().map(|b| b.families[family].clone()));
        }
        let mut oldest_text = Vec::new();
        metrics::render_oldest_refresh(oldest, &mut oldest_text);
        segments.push(Segment::new(oldest_text));
        Snapshot {
            buckets,
            len,
            oldest,
            segments,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, iccid: &str) -> Option<&ThingStatus> {
        let bucket = self
            .buckets
            .get(bucket_of(iccid, self.buckets.len().max(1)))?;
        let at = bucket
            .things
            .binary_search_by(|e| e.status.iccid.as_str().cmp(iccid))
            .ok()?;
        Some(bucket.things[at].status.as_ref())
    }

    /// When the least recently refreshed Thing still served was refreshed.
    pub fn oldest_refresh(&self) -> Option<SystemTime> {
        self.oldest
    }

    /// The per-Thing exposition, as segments to send in order.
    pub fn segments(&self) -> &[Arc<Segment>] {
        &self.segments
    }

    /// The per-Thing exposition as one text (for tests and tools; scrapes use the segments).
    pub fn exposition(&self) -> Vec<u8> {
        self.segments
            .iter()
            .flat_map(|s| s.text().iter().copied())
            .collect()
    }
}

/// Merges a bucket's previous Things (sorted, stale ones dropped) with its
/// fresh statuses (sorted), the fresh winning.
fn merge(
    old: &[Entry],
    fresh: Vec<ThingStatus>,
    now: SystemTime,
    is_current: &impl Fn(&Entry) -> bool,
) -> Vec<Entry> {
    let mut out = Vec::with_capacity(old.len().max(fresh.len()));
    let mut old = old.iter().peekable();
    for mut status in fresh {
        while let Some(previous) = old.next_if(|e| e.status.iccid < status.iccid) {
            if is_current(previous) {
                out.push(previous.clone());
            }
        }
        if let Some(previous) = old.next_if(|e| e.status.iccid == status.iccid) {
            if !status.unparsed.is_empty() {
                status.keep_last_good(&previous.status);
            }
            // Unchanged values keep sharing the previous allocation.
            let status = if *previous.status == status {
                previous.status.clone()
            } else {
                Arc::new(status)
            };
            out.push(Entry {
                status,
                refreshed_at: now,
            });
        } else {
            out.push(Entry {
                status: Arc::new(status),
                refreshed_at: now,
            });
        }
    }
    out.extend(old.filter(|e| is_current(e)).cloned());
    out
}

/// What the poller writes and the HTTP server reads.
pub struct Fleet {
    current: ArcSwap<Snapshot>,
    ready: AtomicBool,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            current: ArcSwap::from_pointee(Snapshot::empty()),
            ready: AtomicBool::new(false),
        }
    }
}

impl Fleet {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    /// True once the first refresh has finished, successful or not.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thing(iccid: &str, connected: bool) -> ThingStatus {
        ThingStatus {
            iccid: iccid.into(),
            connected: Some(connected),
            ..ThingStatus::default()
        }
    }

    #[test]
    fn unrefreshed_things_keep_values_until_stale() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let stale = Duration::from_secs(180);
        let s1 = Snapshot::empty().next(vec![thing("a", true), thing("b", true)], t0, stale);
        assert_eq!(s1.len(), 2);

        let t1 = t0 + Duration::from_secs(60);
        let s2 = s1.next(vec![thing("a", false)], t1, stale);
        assert_eq!(s2.get("a").and_then(|t| t.connected), Some(false));
        assert_eq!(
            s2.get("b").and_then(|t| t.connected),
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
        let mut good = thing("a", true);
        good.thing_name = "meter".into();
        good.uplink_throughput = Some(5.0);
        good.last_connection = Some(100.0);
        let s1 = Snapshot::empty().next(vec![good], t0, stale);

        let mut garbled = thing("a", false);
        garbled.uplink_throughput = None;
        garbled.last_connection = None;
        garbled.unparsed = Unparsed(Unparsed::THING_NAME | Unparsed::UPLINK);
        let s2 = s1.next(vec![garbled], t0 + Duration::from_secs(60), stale);
        let a = s2.get("a").expect("present");
        assert_eq!(a.thing_name, "meter");
        assert_eq!(a.uplink_throughput, Some(5.0));
        assert_eq!(a.connected, Some(false), "understood values are fresh");
        assert_eq!(
            a.last_connection, None,
            "absent is absent, not a parse error"
        );
    }

    fn fleet(n: usize, connected: bool) -> Vec<ThingStatus> {
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
            .iter()
            .zip(s2.segments())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        // All but the oldest-refresh line, which moved.
        assert_eq!(shared, s1.segments().len() - 1);

        let mut changed = fleet(5000, true);
        changed[42].connected = Some(false);
        let s3 = s2.next(changed, t0 + Duration::from_secs(120), stale);
        let rerendered = s2
            .segments()
            .iter()
            .zip(s3.segments())
            .filter(|(a, b)| !Arc::ptr_eq(a, b))
            .count();
        assert_eq!(
            rerendered,
            metrics::THING_FAMILIES + 1,
            "one bucket's families and the oldest line"
        );
        assert_eq!(
            s3.get(&format!("8988{:015}", 42)).and_then(|t| t.connected),
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
}
