//! The refresh loop: discovery, batching, paging, the refresh deadline, and
//! publishing snapshots.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{DEFAULT_DISCOVER_INTERVAL, PollConfig};
use crate::metrics::HealthMetrics;
use crate::monogoto::model::StatusPage;
use crate::monogoto::{ApiError, Client, ThingStatus};
use crate::record::Record;
use crate::shard::Shard;
use crate::snapshot::Fleet;

/// Requests end by the refresh deadline themselves; a refresh is cut this
/// long after it in any case.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);
/// `GET /things` answers at most this many Things a page.
pub const THINGS_PAGE_SIZE: usize = 50;
/// A listing longer than this many pages is cut off: a server that never
/// answers a short page must not keep discovery going forever.
const MAX_THINGS_PAGES: usize = 100_000;

/// The fleet as `GET /things` last listed it.
#[derive(Default)]
struct Discovery {
    /// Shared with the refreshes that poll it, so that none copies it.
    iccids: Arc<Vec<String>>,
    at: Option<Instant>,
    /// A listing that has not finished yet.
    listing: Option<Listing>,
}

/// What one refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshReport {
    pub batches: usize,
    pub failed_batches: usize,
    pub discovery_failed: bool,
    pub things_refreshed: usize,
    /// Failed batches (and discoveries) by [`ApiError::kind`].
    pub errors: BTreeMap<&'static str, usize>,
}

impl RefreshReport {
    pub fn succeeded(&self) -> bool {
        self.failed_batches == 0 && !self.discovery_failed
    }
}

/// The errors of one refresh, by kind: counted, and logged once per kind.
#[derive(Default)]
struct ErrorLog {
    by_kind: BTreeMap<&'static str, (usize, String)>,
}

impl ErrorLog {
    fn record(&mut self, error: &ApiError) {
        let entry = self
            .by_kind
            .entry(error.kind())
            .or_insert_with(|| (0, error.to_string()));
        entry.0 += 1;
    }

    fn record_kind(&mut self, kind: &'static str, count: usize, message: String) {
        if count > 0 {
            let entry = self.by_kind.entry(kind).or_insert_with(|| (0, message));
            entry.0 += count;
        }
    }

    fn report(&self, health: &HealthMetrics, report: &mut RefreshReport) {
        for (kind, (count, first)) in &self.by_kind {
            health
                .refresh_errors
                .with_label_values(&[*kind])
                .inc_by(*count as u64);
            report.errors.insert(*kind, *count);
            if *kind == "auth" {
                tracing::error!(failed = count, error = %first, "the Monogoto API rejected the credentials; serving the last data");
            } else {
                tracing::warn!(kind = *kind, failed = count, first_error = %first, "requests failed this refresh; their Things keep their last values");
            }
        }
    }
}

pub struct Poller {
    client: Client,
    poll: PollConfig,
    configured: Arc<Vec<String>>,
    discover: bool,
    fleet: Arc<Fleet>,
    health: Arc<HealthMetrics>,
    /// The last successful discovery, used until the next one is due and
    /// while discovery fails.
    discovered: Mutex<Discovery>,
    discover_interval: Duration,
    shard: Shard,
    /// Held for a whole refresh: two refreshes never run at once.
    running: Mutex<()>,
    /// The batch a refresh starts with: after a refresh cut short by its
    /// deadline, the next one begins where it stopped, so that a fleet too
    /// large for one interval is still refreshed whole, in turns.
    next_batch: AtomicUsize,
    /// The "a refresh does not fit the interval" warning is given once.
    warned_slow: AtomicBool,
}

impl Poller {
    pub fn new(
        client: Client,
        poll: PollConfig,
        configured: Vec<String>,
        discover: bool,
        fleet: Arc<Fleet>,
        health: Arc<HealthMetrics>,
    ) -> Self {
        health.things_configured.set(configured.len() as i64);
        Poller {
            client,
            poll,
            configured: Arc::new(configured),
            discover,
            fleet,
            health,
            discovered: Mutex::new(Discovery::default()),
            discover_interval: DEFAULT_DISCOVER_INTERVAL,
            shard: Shard::default(),
            running: Mutex::new(()),
            next_batch: AtomicUsize::new(0),
            warned_slow: AtomicBool::new(false),
        }
    }

    /// Says once, with figures, when a full refresh cannot fit into one
    /// interval under the rate limit.
    fn warn_if_too_slow(&self, things: usize) {
        let Some(limit) = self.client.rate_limit() else {
            return;
        };
        let requests = batches_for(things, self.poll.batch_size);
        let needed = limit.time_for(requests);
        if needed > self.poll.interval && !self.warned_slow.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                things,
                requests_per_refresh = requests,
                rate_limit = %limit,
                refresh_takes = %humantime::format_duration(Duration::from_secs(needed.as_secs())),
                interval = %humantime::format_duration(self.poll.interval),
                "a full refresh does not fit into one poll.interval under the rate limit: each refresh covers \
                 part of the fleet and the next continues; raise --poll.interval or --monogoto.rate-limit"
            );
        }
    }

    /// Refreshes at once, then every interval, until cancelled.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        if !self.discover {
            self.warn_if_too_slow(self.configured.len());
        }
        let mut ticker = tokio::time::interval(self.poll.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.refresh() => {}
            }
        }
    }

    /// One full refresh, within one interval: resolve the ICCIDs, read every
    /// batch, publish a new snapshot. What does not finish in time keeps its
    /// last values.
    pub async fn refresh(&self) -> RefreshReport {
        let _running = self.running.lock().await;
        let started = Instant::now();
        let deadline = started + self.poll.interval;
        let mut report = RefreshReport::default();
        let mut errors = ErrorLog::default();

        let iccids = self.iccids(deadline, &mut report, &mut errors).await;
        self.health.things_configured.set(iccids.len() as i64);

        let batch_size = self.poll.batch_size;
        let batch_count = batches_for(iccids.len(), batch_size);
        report.batches = batch_count;
        let first_batch = self.next_batch.load(Ordering::Relaxed) % batch_count.max(1);
        let auth_failed = AtomicBool::new(false);
        let mut fresh: Vec<Record> = Vec::with_capacity(iccids.len());
        let mut finished = vec![false; batch_count];
        let mut first_cut: Option<usize> = None;
        let mut failed = 0;
        {
            let (iccids, auth_failed) = (&iccids, &auth_failed);
            // Batches by position: a closure over plain numbers keeps the
            // stream's future `Send` for the spawned refresh loop.
            let mut results = futures_util::stream::iter(0..batch_count)
                .map(|position| async move {
                    let index = (first_batch + position) % batch_count;
                    let start = index * batch_size;
                    let batch = &iccids[start..(start + batch_size).min(iccids.len())];
                    // Once the credentials are rejected, the other batches would be too.
                    if auth_failed.load(Ordering::Relaxed) {
                        return (position, index, None);
                    }
                    let result = self.read_batch(batch, deadline).await;
                    if result.as_ref().is_err_and(ApiError::is_auth) {
                        auth_failed.store(true, Ordering::Relaxed);
                    }
                    (position, index, Some(result))
                })
                .buffer_unordered(self.poll.concurrency);
            // The requests end by the deadline themselves; this bounds the rest.
            let collect = async {
                while let Some((position, index, result)) = results.next().await {
                    finished[index] = true;
                    match result {
                        // Compact at once: a large fleet's answers add up while the refresh runs.
                        Some(Ok(things)) => fresh.extend(things.into_iter().map(Record::from)),
                        Some(Err(e)) => {
                            failed += 1;
                            if matches!(e, ApiError::DeadlineExceeded { .. }) {
                                first_cut = Some(first_cut.map_or(position, |p| p.min(position)));
                            }
                            errors.record(&e);
                        }
                        None => {
                            failed += 1;
                            errors.record_kind("auth", 1, String::new());
                        }
                    }
                }
            };
            let _ = tokio::time::timeout_at(deadline + DEADLINE_GRACE, collect).await;
        }
        let unfinished = finished.iter().filter(|f| !**f).count();
        errors.record_kind(
            "timeout",
            unfinished,
            "refresh deadline reached".to_string(),
        );
        if let Some(position) = first_cut.or((unfinished > 0).then_some(0)) {
            self.next_batch.store(
                (first_batch + position) % batch_count.max(1),
                Ordering::Relaxed,
            );
        }
        report.failed_batches = failed + unfinished;
        report.things_refreshed = fresh.len();

        let now = SystemTime::now();
        // Rendering a large fleet takes a while: off the async workers, so
        // scrapes keep being answered meanwhile.
        let fleet = self.fleet.clone();
        let stale_after = self.poll.stale_after;
        match tokio::task::spawn_blocking(move || fleet.advance(fresh, now, stale_after)).await {
            Ok(things) => self.health.things_reported.set(things as i64),
            Err(e) => {
                tracing::error!(error = %e, "building the snapshot failed; serving the previous one")
            }
        }

        errors.report(&self.health, &mut report);
        let elapsed = started.elapsed();
        self.health.refresh_duration.set(elapsed.as_secs_f64());
        if report.succeeded() {
            self.health.up.set(1);
            self.health.last_refresh_success.set(
                now.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64(),
            );
        } else {
            self.health.up.set(0);
        }
        self.fleet.mark_ready();
        tracing::debug!(
            batches = report.batches,
            failed = report.failed_batches,
            things = report.things_refreshed,
            seconds = elapsed.as_secs_f64(),
            "refresh finished"
        );
        report
    }

    /// Keeps only this shard's ICCIDs, configured and discovered.
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        Arc::make_mut(&mut self.configured).retain(|iccid| shard.owns(iccid));
        self.health
            .things_configured
            .set(self.configured.len() as i64);
        self.health.set_shard(shard);
        self
    }

    /// Sets how often discovery lists the Things again.
    pub fn with_discover_interval(mut self, interval: Duration) -> Self {
        self.discover_interval = interval;
        self
    }

    async fn iccids(
        &self,
        deadline: Instant,
        report: &mut RefreshReport,
        errors: &mut ErrorLog,
    ) -> Arc<Vec<String>> {
        if !self.discover {
            return self.configured.clone();
        }
        let mut cache = self.discovered.lock().await;
        // Between discoveries the cached list serves, so a refresh spends its
        // request budget on status, not on listing an unchanged fleet.
        let due = cache
            .at
            .is_none_or(|at| at.elapsed() >= self.discover_interval);
        // A listing too long for one refresh's deadline carries on in the
        // next refresh instead of starting over, so any fleet gets listed.
        if due || cache.listing.is_some() {
            let listing = cache.listing.get_or_insert_with(Listing::default);
            let progress = listing
                .advance(|offset| {
                    self.client
                        .list_things(THINGS_PAGE_SIZE, offset, Some(deadline))
                })
                .await;
            match progress {
                Ok(()) => {
                    let listing = cache.listing.take().unwrap_or_default();
                    let (listed, pages) = (listing.found.len(), listing.pages);
                    let mut found = listing.found;
                    found.retain(|iccid| self.shard.owns(iccid));
                    tracing::debug!(
                        listed,
                        this_shard = found.len(),
                        pages,
                        "discovered the fleet"
                    );
                    cache.iccids = Arc::new(found);
                    cache.at = Some(Instant::now());
                    self.warn_if_too_slow(self.configured.len() + cache.iccids.len());
                }
                Err(ApiError::DeadlineExceeded { .. }) => {
                    tracing::info!(
                        listed = listing.found.len(),
                        pages = listing.pages,
                        "the fleet listing did not fit into this refresh; it continues in the next"
                    );
                }
                Err(e) => {
                    report.discovery_failed = true;
                    errors.record(&e);
                    tracing::warn!(error = %e, cached = cache.iccids.len(), "discovery failed; using the last list");
                }
            }
        }
        // Until a first listing completes, the part listed so far is polled.
        let listed = match (&cache.listing, cache.iccids.is_empty()) {
            (Some(listing), true) => Arc::new(
                listing
                    .found
                    .iter()
                    .filter(|i| self.shard.owns(i))
                    .cloned()
                    .collect(),
            ),
            _ => cache.iccids.clone(),
        };
        if self.configured.is_empty() {
            return listed;
        }
        let mut seen: HashSet<&str> = self.configured.iter().map(String::as_str).collect();
        let mut all = Vec::clone(&self.configured);
        all.extend(listed.iter().filter(|i| seen.insert(i)).cloned());
        Arc::new(all)
    }

    async fn read_batch(
        &self,
        batch: &[String],
        deadline: Instant,
    ) -> Result<Vec<ThingStatus>, ApiError> {
        let limit = self.poll.batch_size;
        read_batch(batch, |offset| {
            self.client
                .thing_status(batch, limit, offset, Some(deadline))
        })
        .await
    }
}

/// Reads one batch page by page: `offset` advances by the number of Things
/// returned, until every requested Thing was seen, a page is empty, or a page
/// brings no new Thing. A batch answered whole costs one request; a server that
/// caps its pages below `limit` is still read to the end.
pub async fn read_batch<F, Fut, E>(
    iccids: &[String],
    mut fetch_page: F,
) -> Result<Vec<ThingStatus>, E>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<StatusPage, E>>,
{
    let wanted: HashSet<&str> = iccids.iter().map(String::as_str).collect();
    let mut seen: HashSet<String> = HashSet::with_capacity(wanted.len());
    let mut things = Vec::with_capacity(wanted.len());
    let mut offset = 0;
    // Each page that continues the loop brings at least one new Thing, so
    // this bound is never reached by a well-behaved server.
    for _ in 0..=wanted.len() {
        let page = fetch_page(offset).await?;
        if page.returned == 0 {
            break;
        }
        let before = seen.len();
        for thing in page.things {
            // Things not asked for are not ours (another shard's, say).
            if wanted.contains(thing.iccid.as_str()) && seen.insert(thing.iccid.clone()) {
                things.push(thing);
            }
        }
        if seen.len() == wanted.len() || seen.len() == before {
            break;
        }
        offset += page.returned;
    }
    Ok(things)
}

/// A `GET /things` listing, page by page until a page comes back shorter than
/// the page size. It keeps its progress when a page fails, so it can resume.
#[derive(Debug, Default)]
pub struct Listing {
    pub found: Vec<String>,
    seen: HashSet<String>,
    offset: usize,
    pub pages: usize,
}

impl Listing {
    /// Fetches pages until the listing is complete, or a page fails (the
    /// error is returned; what was listed so far stays).
    pub async fn advance<F, Fut, E>(&mut self, mut fetch_page: F) -> Result<(), E>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<(usize, Vec<String>), E>>,
    {
        while self.pages < MAX_THINGS_PAGES {
            let (returned, iccids) = fetch_page(self.offset).await?;
            self.pages += 1;
            let before = self.found.len();
            let seen = &mut self.seen;
            self.found
                .extend(iccids.into_iter().filter(|i| seen.insert(i.clone())));
            if returned < THINGS_PAGE_SIZE || self.found.len() == before {
                return Ok(());
            }
            self.offset += returned;
        }
        Ok(())
    }
}

/// Lists every Thing with `GET /things` in one go.
pub async fn discover_all<F, Fut, E>(fetch_page: F) -> Result<Vec<String>, E>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<(usize, Vec<String>), E>>,
{
    let mut listing = Listing::default();
    listing.advance(fetch_page).await?;
    Ok(listing.found)
}

/// Status requests a refresh of `things` Things costs when the API answers
/// every batch whole.
pub fn batches_for(things: usize, batch_size: usize) -> usize {
    things.div_ceil(batch_size.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn iccids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("8988{i:015}")).collect()
    }

    fn status(iccid: &str) -> ThingStatus {
        ThingStatus {
            iccid: iccid.to_string(),
            ..ThingStatus::default()
        }
    }

    /// A server answering the requested ids in order, at most `cap` a page.
    fn server<'a>(
        ids: &'a [String],
        cap: usize,
        calls: &'a RefCell<Vec<usize>>,
    ) -> impl FnMut(usize) -> std::future::Ready<Result<StatusPage, ()>> + 'a {
        move |offset| {
            calls.borrow_mut().push(offset);
            let things: Vec<_> = ids
                .iter()
                .skip(offset)
                .take(cap)
                .map(|i| status(i))
                .collect();
            std::future::ready(Ok(StatusPage {
                returned: things.len(),
                things,
                field_errors: Vec::new(),
            }))
        }
    }

    fn block<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn batches_round_up() {
        let ids = iccids(101);
        let batches: Vec<_> = ids.chunks(50).map(<[String]>::len).collect();
        assert_eq!(batches, vec![50, 50, 1]);
        assert_eq!(batches_for(101, 50), 3);
        assert_eq!(batches_for(100, 50), 2);
        assert_eq!(batches_for(0, 50), 0);
        assert_eq!(batches_for(7, 1), 7);
    }

    #[test]
    fn a_batch_answered_whole_costs_one_request() {
        let ids = iccids(50);
        let calls = RefCell::new(Vec::new());
        let things = block(read_batch(&ids, server(&ids, 50, &calls))).expect("ok");
        assert_eq!(things.len(), 50);
        assert_eq!(*calls.borrow(), vec![0]);
    }

    #[test]
    fn a_capped_server_is_read_to_the_end() {
        let ids = iccids(50);
        let calls = RefCell::new(Vec::new());
        let things = block(read_batch(&ids, server(&ids, 20, &calls))).expect("ok");
        assert_eq!(things.len(), 50);
        assert_eq!(*calls.borrow(), vec![0, 20, 40]);
    }

    #[test]
    fn an_empty_page_stops() {
        let ids = iccids(10);
        let present = iccids(4);
        let calls = RefCell::new(Vec::new());
        let things = block(read_batch(&ids, server(&present, 3, &calls))).expect("ok");
        assert_eq!(things.len(), 4, "missing Things are simply not there");
        assert_eq!(*calls.borrow(), vec![0, 3, 4]);
    }

    #[test]
    fn a_page_without_new_things_stops() {
        let ids = iccids(5);
        let mut calls = 0;
        let things = block(read_batch(&ids, |_offset| {
            calls += 1;
            // A server ignoring offset: always the same two Things.
            std::future::ready(Ok::<_, ()>(StatusPage {
                returned: 2,
                things: vec![status(&ids[0]), status(&ids[1])],
                field_errors: Vec::new(),
            }))
        }))
        .expect("ok");
        assert_eq!(things.len(), 2);
        assert_eq!(calls, 2);
    }

    #[test]
    fn unrequested_things_are_ignored() {
        let ids = iccids(2);
        let stranger = status("898899999999999999");
        let things = block(read_batch(&ids, |_| {
            std::future::ready(Ok::<_, ()>(StatusPage {
                returned: 3,
                things: vec![stranger.clone(), status(&ids[0]), status(&ids[1])],
                field_errors: Vec::new(),
            }))
        }))
        .expect("ok");
        assert_eq!(
            things.iter().map(|t| t.iccid.as_str()).collect::<Vec<_>>(),
            vec![ids[0].as_str(), ids[1].as_str()]
        );
    }

    #[test]
    fn a_failed_page_fails_the_batch() {
        let ids = iccids(3);
        let result = block(read_batch(&ids, |_| {
            std::future::ready(Err::<StatusPage, _>("boom"))
        }));
        assert_eq!(result, Err("boom"));
    }

    /// Discovers a fleet of `n` from a server answering 50 a page; returns
    /// what was found and the offsets asked for.
    fn discover(n: usize) -> (Vec<String>, Vec<String>, Vec<usize>) {
        let fleet = iccids(n);
        let calls = RefCell::new(Vec::new());
        let found = block(discover_all(|offset| {
            calls.borrow_mut().push(offset);
            let page: Vec<String> = fleet
                .iter()
                .skip(offset)
                .take(THINGS_PAGE_SIZE)
                .cloned()
                .collect();
            std::future::ready(Ok::<_, ()>((page.len(), page)))
        }))
        .expect("ok");
        (fleet, found, calls.into_inner())
    }

    #[test]
    fn a_listing_resumes_where_a_failed_page_left_it() {
        let fleet = iccids(120);
        let page = |offset: usize| -> (usize, Vec<String>) {
            let p: Vec<String> = fleet
                .iter()
                .skip(offset)
                .take(THINGS_PAGE_SIZE)
                .cloned()
                .collect();
            (p.len(), p)
        };
        let mut listing = Listing::default();
        let mut calls = Vec::new();
        let first = block(listing.advance(|offset| {
            calls.push(offset);
            std::future::ready(if offset == 50 {
                Err("deadline")
            } else {
                Ok(page(offset))
            })
        }));
        assert_eq!(first, Err("deadline"));
        assert_eq!(listing.found.len(), 50);
        block(listing.advance(|offset| {
            calls.push(offset);
            std::future::ready(Ok::<_, &str>(page(offset)))
        }))
        .expect("completes");
        assert_eq!(listing.found, fleet);
        assert_eq!(
            calls,
            vec![0, 50, 50, 100],
            "the failed page is asked again, nothing before it"
        );
    }

    #[test]
    fn discovery_pages_until_a_short_page() {
        let (fleet, found, offsets) = discover(120);
        assert_eq!(found, fleet);
        assert_eq!(offsets, vec![0, 50, 100]);

        let (fleet, found, offsets) = discover(100);
        assert_eq!(found, fleet);
        assert_eq!(
            offsets,
            vec![0, 50, 100],
            "an exact multiple ends on an empty page"
        );
    }
}
