//! The fleet state one refresh produced.
//!
//! The Things are spread over buckets by a hash of their ICCID, and each
//! bucket keeps its rendered (and compressed) exposition segments. A refresh
//! renders only the buckets whose Things changed; the others share their
//! segments with the previous snapshot. So a refresh costs in proportion to
//! what changed, and a scrape only references bytes that already exist.
//!
//! A snapshot never changes once made. While a refresh builds the next one
//! it publishes its progress every few buckets: each of those snapshots
//! holds the buckets done so far and the previous refresh's others, so the
//! previous rendering is released as the new one grows instead of both being
//! held whole, which halves the memory peak of a large fleet. A scrape sees
//! every Thing whole, with its values of either refresh.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::families;
use crate::exposition::{Deflater, Segment};
use crate::fleet::Record;
use crate::shard::iccid_hash;

/// About this many Things share a bucket: large enough that segments
/// compress well, small enough that one change re-renders little.
const THINGS_PER_BUCKET: usize = 256;
const MAX_BUCKETS: usize = 4096;
/// A refresh publishes its progress every this many buckets: often enough
/// that little of two renderings is alive at once, rarely enough that
/// assembling those snapshots costs nothing to speak of.
const BUCKETS_PER_STEP: usize = 16;

#[derive(Debug, Clone)]
struct Entry {
    record: Record,
    refreshed_at: SystemTime,
}

#[derive(Debug)]
struct Bucket {
    /// Sorted by ICCID.
    things: Vec<Entry>,
    /// One segment per per-Thing metric family.
    families: Vec<Arc<Segment>>,
    oldest: Option<SystemTime>,
}

impl Bucket {
    /// A bucket of `things`, sharing the rendering of `previous` when it
    /// would come out the same.
    fn new(mut things: Vec<Entry>, previous: Option<&Bucket>, renderer: &mut Renderer) -> Bucket {
        // Kept until the next refresh: no room to grow is needed.
        things.shrink_to_fit();
        let families = match previous {
            Some(previous) if previous.renders_like(&things) => previous.families.clone(),
            _ => renderer.render(&things),
        };
        Bucket {
            oldest: things.iter().map(|e| e.refreshed_at).min(),
            things,
            families,
        }
    }

    /// Same Things with the same values: the rendered text would not change.
    fn renders_like(&self, things: &[Entry]) -> bool {
        self.things.len() == things.len()
            && self
                .things
                .iter()
                .zip(things)
                .all(|(a, b)| a.record == b.record)
    }
}

/// Renders buckets, keeping its buffers from one bucket to the next.
#[derive(Default)]
struct Renderer {
    deflater: Deflater,
    text: Vec<u8>,
    ends: Vec<usize>,
}

impl Renderer {
    fn render(&mut self, things: &[Entry]) -> Vec<Arc<Segment>> {
        self.text.clear();
        self.ends.clear();
        for family in 0..families::THING_FAMILIES {
            families::render_family_lines(family, things.iter().map(|e| &e.record), &mut self.text);
            self.ends.push(self.text.len());
        }
        self.deflater.segments(&self.text, &self.ends)
    }
}

/// Cloning copies the bucket handles, not the Things or their rendering.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    buckets: Vec<Arc<Bucket>>,
    len: usize,
    /// The `monogoto_snapshot_oldest_refresh_timestamp_seconds` family.
    oldest_line: Option<Arc<Segment>>,
}

fn bucket_count(things: usize) -> usize {
    things
        .div_ceil(THINGS_PER_BUCKET)
        .next_power_of_two()
        .clamp(1, MAX_BUCKETS)
}

/// A layout is kept while the fleet is within a factor of two of the size it
/// suits, so that a fleet near a boundary is not laid out anew every refresh.
fn keeps_layout(count: usize, len: usize) -> bool {
    let suited = bucket_count(len);
    suited <= count * 2 && count <= suited * 2
}

fn bucket_of(iccid: &str, buckets: usize) -> usize {
    // FNV-1a leaves some of its bits all but unchanged by the last digits,
    // and ICCIDs come in runs: mixed (MurmurHash3's finalizer), they spread
    // evenly, within one shard too.
    let mut h = iccid_hash(iccid);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    ((h >> 32) as usize) % buckets
}

/// The `# HELP`/`# TYPE` lines of each family, rendered once per process.
fn family_headers() -> &'static [Arc<Segment>] {
    static HEADERS: OnceLock<Vec<Arc<Segment>>> = OnceLock::new();
    HEADERS.get_or_init(|| {
        (0..families::THING_FAMILIES)
            .map(|family| {
                let mut text = Vec::new();
                families::render_family_header(family, &mut text);
                Segment::new(text)
            })
            .collect()
    })
}

impl Snapshot {
    pub fn empty() -> Self {
        Snapshot::default()
    }

    fn assemble(buckets: Vec<Arc<Bucket>>) -> Snapshot {
        let len = buckets.iter().map(|b| b.things.len()).sum();
        let oldest = buckets.iter().filter_map(|b| b.oldest).min();
        let oldest_line = oldest.map(|oldest| {
            let mut text = Vec::new();
            families::render_oldest_refresh(oldest, &mut text);
            Segment::new(text)
        });
        Snapshot {
            buckets,
            len,
            oldest_line,
        }
    }

    /// The next snapshot: `fresh` replaces what it names (keeping the last
    /// good value of anything it could not understand), Things not refreshed
    /// keep their last values, and Things not refreshed for longer than
    /// `stale_after` are dropped.
    pub fn next(&self, fresh: Vec<Record>, now: SystemTime, stale_after: Duration) -> Snapshot {
        self.clone()
            .into_next(fresh, now, refreshed_within(now, stale_after), |_| {})
    }

    /// [`Snapshot::next`] with the Things kept decided by `keep` (given the
    /// ICCID and when it was last refreshed), handing `publish` a snapshot of
    /// the progress every few buckets. The previous layout of buckets is kept while the fleet
    /// stays within a factor of two of the size it suits; past that, the
    /// fleet is laid out anew and comes out whole.
    pub fn into_next(
        self,
        mut fresh: Vec<Record>,
        now: SystemTime,
        keep: impl Fn(&str, SystemTime) -> bool,
        mut publish: impl FnMut(Snapshot),
    ) -> Snapshot {
        let is_current = |e: &Entry| keep(e.record.iccid(), e.refreshed_at);
        if self.buckets.is_empty() {
            return Snapshot::first(fresh, now);
        }

        // In ICCID order (records near each other in memory stay so), once each.
        fresh.sort_unstable_by(|a, b| a.iccid().cmp(b.iccid()));
        fresh.dedup_by(|a, b| a.iccid() == b.iccid());
        let count = self.buckets.len();
        // Positions grouped by bucket, so in ICCID order within each: sorting
        // numbers moves less than sorting records, and compares no ICCIDs.
        let mut order: Vec<(u32, u32)> = (0u32..)
            .zip(&fresh)
            .map(|(at, r)| (bucket_of(r.iccid(), count) as u32, at))
            .collect();
        order.sort_unstable();
        let iccid = |at: u32| fresh[at as usize].iccid();
        // The layout is decided before anything is rendered, so that it is rendered once.
        let mut runs = order.chunk_by(|a, b| a.0 == b.0).peekable();
        let len: usize = (0..count)
            .map(|index| {
                let run = runs
                    .next_if(|run| run[0].0 as usize == index)
                    .unwrap_or(&[]);
                let fresh_iccids = run.iter().map(|(_, at)| iccid(*at));
                merged_len(&self.buckets[index].things, fresh_iccids, &is_current)
            })
            .sum();
        let relayout = !keeps_layout(count, len);

        let mut order = order.into_iter().peekable();
        let mut fresh: Vec<Option<Record>> = fresh.into_iter().map(Some).collect();
        let mut previous: Vec<Option<Arc<Bucket>>> = self.buckets.into_iter().map(Some).collect();
        let mut merged_all = Vec::with_capacity(if relayout { len } else { 0 });
        let mut done: Vec<Arc<Bucket>> = Vec::with_capacity(count);
        let mut renderer = Renderer::default();
        for index in 0..count {
            let bucket_fresh = std::iter::from_fn(|| order.next_if(|(b, _)| *b as usize == index))
                .filter_map(|(_, at)| fresh.get_mut(at as usize).and_then(Option::take));
            // Taken, so that only the published snapshot still holds it.
            let old = previous[index].take();
            let old_things = old.as_deref().map_or(&[][..], |b| &b.things[..]);
            let things = merge(old_things, bucket_fresh, now, &is_current);
            if relayout {
                merged_all.extend(things);
                continue;
            }
            done.push(Arc::new(Bucket::new(things, old.as_deref(), &mut renderer)));
            drop(old);
            let finished = index + 1;
            if finished % BUCKETS_PER_STEP == 0 && finished < count {
                let rest = previous[finished..].iter().flatten().cloned();
                publish(Snapshot::assemble(
                    done.iter().cloned().chain(rest).collect(),
                ));
            }
        }
        if relayout {
            return Snapshot::laid_out(merged_all.into_iter(), len);
        }
        Snapshot::assemble(done)
    }

    /// A snapshot of `len` entries (fewer if some share an ICCID) in the
    /// layout that suits that many.
    fn laid_out(entries: impl Iterator<Item = Entry>, len: usize) -> Snapshot {
        let count = bucket_count(len);
        let mut grouped: Vec<Vec<Entry>> = (0..count).map(|_| Vec::new()).collect();
        for entry in entries {
            grouped[bucket_of(entry.record.iccid(), count)].push(entry);
        }
        let mut renderer = Renderer::default();
        let buckets = grouped
            .into_iter()
            .map(|mut things| {
                things.sort_unstable_by(|a, b| a.record.iccid().cmp(b.record.iccid()));
                things.dedup_by(|a, b| a.record.iccid() == b.record.iccid());
                Arc::new(Bucket::new(things, None, &mut renderer))
            })
            .collect();
        Snapshot::assemble(buckets)
    }

    /// The next snapshot with `fresh` merged in, rendering only the buckets
    /// they fall in and sharing every other with this one: what publishing a
    /// few answers at once costs. Nothing is dropped.
    pub fn with_touched(&self, fresh: Vec<Record>, now: SystemTime) -> Snapshot {
        if self.buckets.is_empty() {
            return Snapshot::first(fresh, now);
        }
        let count = self.buckets.len();
        let mut touched: std::collections::BTreeMap<usize, Vec<Record>> = Default::default();
        for record in fresh {
            touched
                .entry(bucket_of(record.iccid(), count))
                .or_default()
                .push(record);
        }
        let mut buckets = self.buckets.clone();
        let mut renderer = Renderer::default();
        for (index, mut records) in touched {
            records.sort_unstable_by(|a, b| a.iccid().cmp(b.iccid()));
            records.dedup_by(|a, b| a.iccid() == b.iccid());
            let old = &buckets[index];
            let things = merge(&old.things, records.into_iter(), now, &|_: &Entry| true);
            buckets[index] = Arc::new(Bucket::new(things, Some(old), &mut renderer));
        }
        Snapshot::assemble(buckets)
    }

    /// The first snapshot: `fresh`, all answered `now`.
    fn first(fresh: Vec<Record>, now: SystemTime) -> Snapshot {
        let len = fresh.len();
        let entries = fresh.into_iter().map(|record| Entry {
            record,
            refreshed_at: now,
        });
        Snapshot::laid_out(entries, len)
    }

    /// A snapshot of records answered at the times given (a saved state).
    pub(crate) fn restored(records: Vec<(Record, SystemTime)>) -> Snapshot {
        let len = records.len();
        let entries = records.into_iter().map(|(record, refreshed_at)| Entry {
            record,
            refreshed_at,
        });
        Snapshot::laid_out(entries, len)
    }

    /// A Thing's record and when it was answered.
    pub(crate) fn get_answered(&self, iccid: &str) -> Option<(&Record, SystemTime)> {
        let bucket = self
            .buckets
            .get(bucket_of(iccid, self.buckets.len().max(1)))?;
        let at = bucket
            .things
            .binary_search_by(|e| e.record.iccid().cmp(iccid))
            .ok()?;
        let entry = &bucket.things[at];
        Some((&entry.record, entry.refreshed_at))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, iccid: &str) -> Option<&Record> {
        self.get_answered(iccid).map(|(record, _)| record)
    }

    /// Every Thing, bucket by bucket: in no useful order, for summaries that
    /// walk the whole fleet (the status page).
    pub fn records(&self) -> impl Iterator<Item = &Record> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.things.iter().map(|e| &e.record))
    }

    /// When the least recently refreshed Thing still served was refreshed.
    #[cfg(test)]
    fn oldest_refresh(&self) -> Option<SystemTime> {
        self.buckets.iter().filter_map(|b| b.oldest).min()
    }

    /// The per-Thing exposition, as segments to send in order: family by
    /// family, its header and then its lines from every bucket.
    pub fn segments(&self) -> impl Iterator<Item = &Arc<Segment>> + '_ {
        family_headers()
            .iter()
            .enumerate()
            .flat_map(move |(family, header)| {
                std::iter::once(header).chain(
                    self.buckets
                        .iter()
                        .filter_map(move |b| b.families.get(family)),
                )
            })
            .chain(self.oldest_line.iter())
    }

    /// The per-Thing exposition as one text (for tests and tools; scrapes use the segments).
    pub fn exposition(&self) -> Vec<u8> {
        self.segments()
            .flat_map(|s| s.text().iter().copied())
            .collect()
    }
}

/// How many Things [`merge`] keeps: the fresh ones, and the previous ones
/// still current that they do not replace.
fn merged_len<'a>(
    old: &[Entry],
    fresh_iccids: impl Iterator<Item = &'a str>,
    is_current: &impl Fn(&Entry) -> bool,
) -> usize {
    let mut len = 0;
    let mut old = old.iter().peekable();
    for iccid in fresh_iccids {
        while let Some(previous) = old.next_if(|e| e.record.iccid() < iccid) {
            len += usize::from(is_current(previous));
        }
        old.next_if(|e| e.record.iccid() == iccid);
        len += 1;
    }
    len + old.filter(|e| is_current(e)).count()
}

/// Merges a bucket's previous Things (sorted, stale ones dropped) with its
/// fresh records (sorted), the fresh winning.
fn merge(
    old: &[Entry],
    fresh: impl Iterator<Item = Record>,
    now: SystemTime,
    is_current: &impl Fn(&Entry) -> bool,
) -> Vec<Entry> {
    let mut out = Vec::with_capacity(old.len().max(fresh.size_hint().0));
    let mut old = old.iter().peekable();
    for mut record in fresh {
        while let Some(previous) = old.next_if(|e| e.record.iccid() < record.iccid()) {
            if is_current(previous) {
                out.push(previous.clone());
            }
        }
        if let Some(previous) = old.next_if(|e| e.record.iccid() == record.iccid()) {
            record.keep_last_good(&previous.record);
            // Unchanged values keep sharing the previous allocation.
            if previous.record == record {
                record = previous.record.clone();
            }
        }
        out.push(Entry {
            record,
            refreshed_at: now,
        });
    }
    out.extend(old.filter(|e| is_current(e)).cloned());
    out
}

/// A `keep` for [`Snapshot::into_next`]: Things refreshed at most `stale_after` before `now`.
pub fn refreshed_within(
    now: SystemTime,
    stale_after: Duration,
) -> impl Fn(&str, SystemTime) -> bool {
    move |_, refreshed_at| now.duration_since(refreshed_at).unwrap_or_default() <= stale_after
}

/// What the poller writes and the HTTP server reads.
pub struct Fleet {
    current: ArcSwap<Snapshot>,
    ready: AtomicBool,
    /// The poller stopped for another reason than shutdown: the process is
    /// about to exit so that it is restarted, and is not healthy meanwhile.
    polling_stopped: AtomicBool,
    /// Held while a snapshot is built from the current one: a refresh whose
    /// caller gave up on it still finishes its build, and the next one must
    /// start from that, not interleave its progress with it.
    building: Mutex<()>,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            current: ArcSwap::from_pointee(Snapshot::empty()),
            ready: AtomicBool::new(false),
            polling_stopped: AtomicBool::new(false),
            building: Mutex::new(()),
        }
    }
}

impl Fleet {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub(crate) fn publish(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    /// Builds and publishes the next snapshot (see [`Snapshot::into_next`]),
    /// publishing its progress on the way; returns the number of Things.
    pub(crate) fn publish_next(
        &self,
        fresh: Vec<Record>,
        now: SystemTime,
        keep: impl Fn(&str, SystemTime) -> bool,
    ) -> usize {
        // A build that panicked left no half-made state behind: go on.
        let _building = self.building.lock().unwrap_or_else(|e| e.into_inner());
        let previous = Snapshot::clone(&self.current.load());
        let next = previous.into_next(fresh, now, keep, |partial| self.publish(partial));
        let len = next.len();
        self.publish(next);
        len
    }

    /// Publishes `fresh` at once, rendering only their buckets (see
    /// [`Snapshot::with_touched`]); returns the number of Things.
    pub(crate) fn publish_touched(&self, fresh: Vec<Record>, now: SystemTime) -> usize {
        let _building = self.building.lock().unwrap_or_else(|e| e.into_inner());
        let next = self.current.load().with_touched(fresh, now);
        let len = next.len();
        self.publish(next);
        len
    }

    /// True once the first refresh has finished, successful or not.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// False once the poller has stopped unexpectedly.
    pub(crate) fn is_polling(&self) -> bool {
        !self.polling_stopped.load(Ordering::Acquire)
    }

    pub(crate) fn mark_polling_stopped(&self) {
        self.polling_stopped.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
