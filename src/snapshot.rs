//! The fleet state one refresh produced: immutable, swapped in whole, with its
//! per-Thing exposition rendered once so that a scrape only copies bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::metrics;
use crate::monogoto::ThingStatus;

#[derive(Debug, Clone)]
struct Entry {
    status: Arc<ThingStatus>,
    refreshed_at: SystemTime,
}

#[derive(Debug, Default)]
pub struct Snapshot {
    things: BTreeMap<String, Entry>,
    exposition: Vec<u8>,
}

impl Snapshot {
    pub fn empty() -> Self {
        Snapshot::default()
    }

    /// The next snapshot: `fresh` replaces what it names, Things not refreshed
    /// keep their last values, and Things not refreshed for longer than
    /// `stale_after` are dropped.
    pub fn next(
        &self,
        fresh: Vec<ThingStatus>,
        now: SystemTime,
        stale_after: Duration,
    ) -> Snapshot {
        let mut things: BTreeMap<String, Entry> = self
            .things
            .iter()
            .filter(|(_, e)| now.duration_since(e.refreshed_at).unwrap_or_default() <= stale_after)
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        for mut status in fresh {
            if !status.unparsed.is_empty()
                && let Some(previous) = things.get(&status.iccid)
            {
                status.keep_last_good(&previous.status);
            }
            things.insert(
                status.iccid.clone(),
                Entry {
                    status: Arc::new(status),
                    refreshed_at: now,
                },
            );
        }
        let mut exposition = Vec::with_capacity(self.exposition.len().max(4096));
        metrics::render_things(things.values().map(|e| e.status.as_ref()), &mut exposition);
        let oldest = things.values().map(|e| e.refreshed_at).min();
        metrics::render_oldest_refresh(oldest, &mut exposition);
        Snapshot { things, exposition }
    }

    pub fn len(&self) -> usize {
        self.things.len()
    }

    pub fn is_empty(&self) -> bool {
        self.things.is_empty()
    }

    pub fn get(&self, iccid: &str) -> Option<&ThingStatus> {
        self.things.get(iccid).map(|e| e.status.as_ref())
    }

    /// When the least recently refreshed Thing still served was refreshed.
    pub fn oldest_refresh(&self) -> Option<SystemTime> {
        self.things.values().map(|e| e.refreshed_at).min()
    }

    /// The per-Thing series in the text exposition format.
    pub fn exposition(&self) -> &[u8] {
        &self.exposition
    }
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
        let text = String::from_utf8(s4.exposition().to_vec()).expect("utf-8");
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
