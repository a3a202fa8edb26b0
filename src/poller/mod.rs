//! The refresh loop: discovery, passes over the fleet paced by the request
//! budget (see `schedule`), paging, and publishing snapshots as a
//! pass progresses.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod chooser;
pub mod hints;
mod isolate;
mod persist;
mod report;
pub(crate) mod schedule;

use chooser::Chooser;
use hints::{EventNews, HintMetrics, Hints};
use isolate::{Isolation, read_isolating};
use report::ErrorLog;
pub use report::RefreshReport;

use self::schedule::{Outcome, Pacer, Plan, Schedule, Timing};
use crate::config::{DEFAULT_DISCOVER_INTERVAL, PollConfig};
use crate::fleet::Fleet;
use crate::fleet::Record;
use crate::health::{HealthMetrics, unix_now};
use crate::monogoto::paging::{self, BatchAnswer, Listing, THINGS_PAGE_SIZE};
use crate::monogoto::{ApiError, Client, ErrorKind};
use crate::shard::Shard;
use crate::storage::Storage;

/// A refresh longer than its interval publishes its progress this often at
/// most: each publication re-renders every bucket it touches, and answers
/// spread over the whole fleet touch them all.
const MIN_PUBLICATION_PERIOD: Duration = Duration::from_secs(5);

/// The fleet as `GET /things` last listed it.
#[derive(Default)]
struct Discovery {
    /// Shared with the refreshes that poll it, so that none copies it.
    iccids: Arc<Vec<String>>,
    at: Option<Instant>,
    /// A listing that has not finished yet.
    listing: Option<Listing>,
    /// What the last complete listing said of each SIM's state, until a
    /// refresh has taken it into its tiers.
    states: Option<HashMap<String, bool>>,
    /// Pages the last complete listing took.
    pages: usize,
}

/// What happened since the last publication: the answers to publish, and
/// whether the requests that got an answer succeeded.
#[derive(Default)]
struct Slice {
    fresh: Vec<Record>,
    succeeded: usize,
    failed: usize,
}

impl Slice {
    /// Counts a request towards `monogoto_up`: an answer (a refused ICCID's
    /// 400 included) says the API works; a failure or rejected credentials
    /// that it does not; a 429 says neither.
    fn count(&mut self, result: &Result<BatchAnswer, ApiError>) {
        match result {
            Ok(_) => self.succeeded += 1,
            Err(e) if e.is_rate_limited() => {}
            Err(_) => self.failed += 1,
        }
    }

    /// `monogoto_up` after this slice, when a request of it got an answer.
    fn up(&self) -> Option<bool> {
        (self.succeeded + self.failed > 0).then_some(self.failed == 0)
    }
}

/// What a reload may change while polling goes on (see [`Poller::reconfigure`]).
#[derive(Clone)]
struct Settings {
    poll: PollConfig,
    /// This shard's configured ICCIDs.
    configured: Arc<Vec<String>>,
    discover_interval: Duration,
    /// Configured ICCIDs that a reconfiguration removed while a refresh
    /// follows the list from before: left out of its publications, so that
    /// they leave /metrics without waiting for its end.
    removed: Arc<HashSet<String>>,
}

/// The followed list and each ICCID's position in it.
#[derive(Default)]
struct FollowedIndex {
    list: Arc<Vec<String>>,
    positions: HashMap<String, usize>,
}

/// What a refresh sends: a whole pass (with the hinted SIMs), or the hinted
/// SIMs alone between passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Whole,
    Hints,
}

/// What `Poller::reconfigure` changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconfigured {
    /// Configured ICCIDs (of this shard) added and removed.
    pub added: usize,
    pub removed: usize,
    /// Poll settings that changed, by key (`poll.interval`, ...).
    pub settings: Vec<&'static str>,
}

impl Reconfigured {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.removed == 0 && self.settings.is_empty()
    }
}

pub struct Poller {
    client: Client,
    settings: std::sync::Mutex<Settings>,
    /// Wakes the refresh loop when a reconfiguration changed something, so
    /// that the next refresh starts at once instead of after the interval.
    wake: Notify,
    /// Tells a refresh in progress to publish at once: configured SIMs were removed.
    removals: Notify,
    discover: bool,
    fleet: Arc<Fleet>,
    health: Arc<HealthMetrics>,
    /// The last successful discovery, used until the next one is due and
    /// while discovery fails.
    discovered: Mutex<Discovery>,
    shard: Shard,
    /// Held for a whole refresh: two refreshes never run at once.
    schedule: Mutex<Schedule>,
    /// Shared by every refresh, so that a new one does not burst.
    pacer: Pacer,
    /// The plan is logged at start, after the first refresh and after each
    /// discovery; the raised stale-after is warned of once.
    logged_plan: std::sync::Mutex<Option<Plan>>,
    warned_stale: AtomicBool,
    first_refresh_done: AtomicBool,
    /// Whether batches answered 400 are split to find the refused ICCIDs.
    isolation: Isolation,
    /// The longest page the API ever answered a status request with.
    page_cap: AtomicUsize,
    /// Status requests a batch cost on the last pass (pages, retries).
    requests_per_batch: std::sync::Mutex<f64>,
    /// Refused ICCIDs are logged by name once.
    logged_rejections: std::sync::Mutex<HashSet<String>>,
    /// When a replica with nothing to poll last checked its access.
    last_access_check: std::sync::Mutex<Option<Instant>>,
    /// Where the state is kept across restarts (`--storage.path`).
    storage: Option<Arc<Storage>>,
    /// When the state was last written (or a write began).
    last_save: std::sync::Mutex<Option<Instant>>,
    /// A write of the state is running.
    saving: Arc<AtomicBool>,
    /// SIMs that webhook events named, to ask for next.
    hints: Hints,
    pub hint_metrics: Arc<HintMetrics>,
    /// The ICCIDs followed and their positions, for the webhook receiver
    /// (the schedule is held for whole refreshes) and hinted batches; built
    /// again only when the followed list changes.
    followed: arc_swap::ArcSwap<FollowedIndex>,
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
            settings: std::sync::Mutex::new(Settings {
                poll,
                configured: Arc::new(configured),
                discover_interval: DEFAULT_DISCOVER_INTERVAL,
                removed: Arc::default(),
            }),
            wake: Notify::new(),
            removals: Notify::new(),
            discover,
            fleet,
            health,
            discovered: Mutex::new(Discovery::default()),
            shard: Shard::default(),
            schedule: Mutex::new(Schedule::default()),
            pacer: Pacer::default(),
            logged_plan: std::sync::Mutex::new(None),
            warned_stale: AtomicBool::new(false),
            first_refresh_done: AtomicBool::new(false),
            isolation: Isolation::default(),
            page_cap: AtomicUsize::new(0),
            requests_per_batch: std::sync::Mutex::new(1.0),
            logged_rejections: std::sync::Mutex::new(HashSet::new()),
            last_access_check: std::sync::Mutex::new(None),
            storage: None,
            last_save: std::sync::Mutex::new(None),
            saving: Arc::default(),
            hints: Hints::default(),
            hint_metrics: Arc::default(),
            followed: arc_swap::ArcSwap::from_pointee(FollowedIndex::default()),
        }
    }

    /// Whether this exporter follows `iccid` now.
    pub fn follows(&self, iccid: &str) -> bool {
        self.followed.load().positions.contains_key(iccid)
    }

    /// Whether `iccid` belongs to this shard.
    pub fn owns(&self, iccid: &str) -> bool {
        self.shard.owns(iccid)
    }

    /// A webhook event named `iccid`: it goes in the next status request
    /// that goes out, and what the event said is shown with its answer.
    /// False when this exporter does not follow it (nothing is kept).
    pub fn hint(&self, iccid: &str, news: EventNews) -> bool {
        if !self.follows(iccid) {
            return false;
        }
        self.hints.add(iccid, Instant::now(), news);
        true
    }

    /// Keeps the state in `storage`: call [`Poller::restore`] before [`Poller::run`].
    pub(crate) fn with_storage(mut self, storage: Arc<Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Writes the state now and waits until it is on disk (at shutdown,
    /// once polling stopped).
    pub async fn save_now(&self) {
        if self.storage.is_some() {
            let schedule = self.schedule.lock().await;
            self.save(&schedule, true, true).await;
        }
    }

    /// Refreshes at once, then again as soon as the last refresh is done and
    /// an interval has passed since it started, until cancelled. A refresh
    /// the budget makes longer than the interval is followed at once, and so
    /// is one during or after which a reconfiguration changed something.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let started = Instant::now();
            // A refresh stops by itself when cancelled, publishing what it
            // got first, so that a shutdown keeps every answer.
            self.refresh_until(&cancel, Pass::Whole).await;
            if cancel.is_cancelled() {
                return;
            }
            let interval = self.settings().poll.interval;
            let next = later(started, interval);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(next) => break,
                    () = self.wake.notified() => {
                        tracing::debug!("the configuration changed: refreshing now");
                        break;
                    }
                    // Between refreshes too, the state is written once a minute.
                    _ = tokio::time::sleep(persist::SAVE_EVERY), if self.storage.is_some() => {
                        let schedule = self.schedule.lock().await;
                        self.save(&schedule, false, false).await;
                    }
                    // An event's SIM is asked for now, not at the next refresh.
                    () = self.hints.arrived.notified() => {
                        if !self.hints.is_empty() {
                            self.refresh_until(&cancel, Pass::Hints).await;
                        }
                    }
                }
            }
        }
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ICCIDs configured now (this shard's).
    pub fn configured(&self) -> Arc<Vec<String>> {
        self.settings().configured.clone()
    }

    /// Applies a reloaded configuration: the configured ICCIDs (kept to this
    /// shard's) and the poll settings a refresh reads at its start. SIMs
    /// added are polled from the next refresh, which starts as soon as the
    /// one in progress (if any) is done; SIMs removed leave /metrics at the
    /// next publication, which a refresh in progress makes at once.
    /// `poll.timeout` and `poll.retries` belong to the API client, which a
    /// reload does not rebuild: they are ignored here.
    pub(crate) fn reconfigure(
        &self,
        poll: PollConfig,
        configured: Vec<String>,
        discover_interval: Duration,
    ) -> Reconfigured {
        let mut configured = configured;
        configured.retain(|iccid| self.shard.owns(iccid));
        let mut settings = self.settings();
        let before: HashSet<&str> = settings.configured.iter().map(String::as_str).collect();
        let after: HashSet<&str> = configured.iter().map(String::as_str).collect();
        let added = after.difference(&before).count();
        let gone: Vec<String> = before
            .difference(&after)
            .map(|iccid| iccid.to_string())
            .collect();
        let mut changed = Reconfigured {
            added,
            removed: gone.len(),
            settings: Vec::new(),
        };
        let old = &settings.poll;
        for (key, differs) in [
            ("poll.interval", old.interval != poll.interval),
            ("poll.batch-size", old.batch_size != poll.batch_size),
            ("poll.concurrency", old.concurrency != poll.concurrency),
            ("poll.stale-after", old.stale_after != poll.stale_after),
            (
                "poll.inactive-interval",
                old.inactive_interval != poll.inactive_interval,
            ),
            (
                "monogoto.discover-interval",
                settings.discover_interval != discover_interval,
            ),
        ] {
            if differs {
                changed.settings.push(key);
            }
        }
        if changed.is_empty() {
            // The order may have changed; what is followed has not.
            return changed;
        }
        if old.stale_after != poll.stale_after {
            self.warned_stale.store(false, Ordering::Relaxed);
        }
        // With discovery, a SIM no longer configured may still be listed:
        // the next refresh's list decides. A SIM configured again is no
        // longer left out.
        let publish_removals = !gone.is_empty() && !self.discover;
        if publish_removals || !settings.removed.is_empty() {
            let mut removed = HashSet::clone(&settings.removed);
            if publish_removals {
                removed.extend(gone);
            }
            removed.retain(|iccid| !after.contains(iccid.as_str()));
            settings.removed = Arc::new(removed);
        }
        settings.configured = Arc::new(configured);
        settings.poll = poll;
        settings.discover_interval = discover_interval;
        if publish_removals {
            self.removals.notify_one();
        }
        drop(settings);
        self.wake.notify_one();
        changed
    }

    /// One refresh: a whole pass over the SIMs followed (the active tier and
    /// the rarely polled SIMs that are due), paced so that it fits the
    /// budget. Snapshots are published at least once per interval as it
    /// goes, and at its end.
    pub async fn refresh(&self) -> RefreshReport {
        self.refresh_until(&CancellationToken::new(), Pass::Whole)
            .await
    }

    /// [`Poller::refresh`], stopped early by `cancel`: no request goes out
    /// once it is, and what arrived is published.
    async fn refresh_until(&self, cancel: &CancellationToken, pass: Pass) -> RefreshReport {
        let whole = pass == Pass::Whole;
        let mut schedule = self.schedule.lock().await;
        let started = Instant::now();
        let mut report = RefreshReport::default();
        let mut errors = ErrorLog::default();
        // The settings in force for this whole refresh. The removals a
        // reconfiguration made so far are in its list: no longer pending.
        let settings = {
            let mut live = self.settings();
            live.removed = Arc::default();
            live.clone()
        };
        let poll = &settings.poll;

        let (iccids, listed_states, discovered) = if whole {
            tokio::select! {
                listed = self.iccids(&mut report, &mut errors, &settings) => listed,
                _ = cancel.cancelled() => return report,
            }
        } else {
            (schedule.followed().clone(), None, false)
        };
        schedule.follow(iccids, listed_states.as_ref(), started);
        self.track_followed(&schedule);
        self.health
            .things_configured
            .set(schedule.followed().len() as i64);
        let plan = self.plan(&schedule, &settings).await;
        if whole {
            self.show_plan(&plan, discovered, poll);
        }
        if schedule.has_dropped() && self.fleet.is_ready() {
            // SIMs no longer followed leave /metrics now, not once the first
            // answers are in (which the budget may make a while).
            self.publish(&mut schedule, &plan, poll, &mut Slice::default())
                .await;
        }

        let inactive_interval = poll.inactive_interval;
        let timing = Timing {
            inactive_interval,
            retry_base: plan.target,
        };
        let batches = if whole {
            schedule.begin_pass(started, inactive_interval);
            schedule.batches(started, poll.batch_size, plan.inactive_batches_per_refresh)
        } else {
            Vec::new()
        };
        report.batches = batches.len();
        let auth_failed = AtomicBool::new(false);
        let mut slice = Slice {
            failed: usize::from(report.discovery_failed),
            succeeded: usize::from(report.listed),
            ..Slice::default()
        };
        if whole
            && schedule.followed().is_empty()
            && !self.discover
            && !cancel.is_cancelled()
            && self.access_check_due(&settings)
        {
            // Nothing to poll: whether the credentials work says if the API can be used.
            let result = tokio::select! {
                result = self.client.check_access() => result.map(|()| BatchAnswer::default()),
                _ = cancel.cancelled() => return report,
            };
            slice.count(&result);
            if let Err(e) = &result {
                errors.record(e, &self.health);
            }
        }
        let publication_period = poll.interval.max(MIN_PUBLICATION_PERIOD);
        let mut next_publication = later(started, publication_period);
        let requests_before = self.client.status_requests();
        // Parts sent beyond one a batch: halves that isolate refused ICCIDs.
        let parts = AtomicUsize::new(0);
        let mut sent_batches = 0usize;
        {
            let followed = schedule.followed().clone();
            // Read now: the schedule changes as answers come in, and the
            // requests are built as they go out, not all at once.
            let answered_before: Vec<bool> = (0..followed.len())
                .map(|p| schedule.was_answered(p))
                .collect();
            let hintable: Vec<bool> = (0..followed.len()).map(|p| schedule.hintable(p)).collect();
            let index = self.followed.load_full();
            let chooser = Chooser::new(
                batches,
                &index.positions,
                &hintable,
                &self.hints,
                poll.batch_size,
            );
            let (auth_failed, spacing, parts, chooser) =
                (&auth_failed, plan.spacing, &parts, &chooser);
            let answered_before = &answered_before;
            let followed = &followed;
            let limit = poll.batch_size;
            let metrics = &self.hint_metrics;
            let mut results = futures_util::stream::iter(std::iter::from_fn(|| chooser.pull()))
                .map(|()| async move {
                    // Once the credentials are rejected, the other batches would be too.
                    if auth_failed.load(Ordering::Relaxed) {
                        let work = chooser.choose_regular()?;
                        return Some((work, None));
                    }
                    // The slot first, then what goes in it: a hint that
                    // arrives meanwhile goes out in the next request.
                    let waiting = self.health.api.budget_wait.start();
                    self.pacer.wait(spacing).await;
                    drop(waiting);
                    let work = chooser.choose()?;
                    if work.hinted {
                        metrics.hinted_polls.inc_by(work.positions.len() as u64);
                    }
                    let iccids: Vec<String> = work
                        .positions
                        .iter()
                        .map(|&p| followed[p].clone())
                        .collect();
                    let answered: Vec<bool> =
                        work.positions.iter().map(|&p| answered_before[p]).collect();
                    let slot_in_hand = AtomicBool::new(true);
                    let slot_in_hand = &slot_in_hand;
                    let send = move |part: &[String], known: &[bool]| {
                        parts.fetch_add(1, Ordering::Relaxed);
                        let paced = !slot_in_hand.swap(false, Ordering::Relaxed);
                        self.read_whole(part.to_vec(), known.to_vec(), limit, spacing, paced)
                    };
                    let result = read_isolating(&self.isolation, &iccids, &answered, &send).await;
                    if result.as_ref().is_err_and(ApiError::is_auth) {
                        auth_failed.store(true, Ordering::Relaxed);
                    }
                    Some((work, Some((iccids, result))))
                })
                .buffer_unordered(poll.concurrency);
            loop {
                let next = tokio::select! {
                    // Shutting down: nothing more goes out, what arrived is published.
                    _ = cancel.cancelled() => break,
                    next = results.next() => next,
                    () = self.removals.notified() => {
                        // Configured SIMs were removed: they leave /metrics
                        // now rather than at the end of this refresh.
                        self.publish(&mut schedule, &plan, poll, &mut Slice::default())
                            .await;
                        continue;
                    }
                };
                let Some(next) = next else {
                    break;
                };
                // A request that found nothing left to carry.
                let Some((work, sent)) = next else {
                    continue;
                };
                let now = Instant::now();
                let positions = work.positions;
                let Some((iccids, result)) = sent else {
                    // Not sent: the credentials were rejected meanwhile. These
                    // SIMs go unanswered like those that were sent.
                    report.failed_batches += 1;
                    schedule.record(&positions, Outcome::NotAnswered, now, timing);
                    errors.record_kind(ErrorKind::Auth, String::new(), &self.health);
                    continue;
                };
                sent_batches += 1;
                slice.count(&result);
                match result {
                    Ok(BatchAnswer {
                        things,
                        strangers,
                        rejected,
                    }) => {
                        let position_of = |iccid: &str| {
                            iccids
                                .iter()
                                .position(|i| i == iccid)
                                .map(|at| positions[at])
                        };
                        let returned: Vec<(usize, &str)> = things
                            .iter()
                            .filter_map(|thing| {
                                Some((position_of(&thing.iccid)?, thing.provision_status.as_str()))
                            })
                            .collect();
                        let refused: Vec<usize> =
                            rejected.iter().filter_map(|i| position_of(i)).collect();
                        self.log_rejections(&rejected, inactive_interval);
                        schedule.record(
                            &positions,
                            Outcome::Answered {
                                returned: &returned,
                                rejected: &refused,
                            },
                            now,
                            timing,
                        );
                        for _ in 0..strangers {
                            self.health.api.count_parse_error("ThingId");
                        }
                        report.things_refreshed += things.len();
                        let records = things.into_iter().map(Record::from);
                        if work.hinted {
                            // What an event asked for is shown at once.
                            self.publish_hinted(records.collect()).await;
                        } else {
                            // Compact at once: a large fleet's answers add up while the refresh runs.
                            slice.fresh.extend(records);
                        }
                    }
                    // A 429 or rejected credentials are not about these
                    // SIMs: every SIM alike (see the schedule's rules).
                    Err(e) => {
                        report.failed_batches += 1;
                        schedule.record(&positions, Outcome::of_error(&e), now, timing);
                        errors.record(&e, &self.health);
                    }
                }
                if now >= next_publication {
                    self.publish(&mut schedule, &plan, poll, &mut slice).await;
                    next_publication = later(now, publication_period);
                }
            }
        }
        if !whole {
            // Hints alone: their answers are published already; a whole
            // publication waits for the pass.
            if let Some(up) = slice.up() {
                self.health.up.set(i64::from(up));
            }
            return report;
        }
        if cancel.is_cancelled() {
            // Cut short: says nothing of an outage, nor of what a pass costs.
            self.publish(&mut schedule, &plan, poll, &mut slice).await;
            return report;
        }
        schedule.end_pass();
        let splits = parts.load(Ordering::Relaxed).saturating_sub(sent_batches);
        // A pass that isolated refused ICCIDs paid for it once, with the
        // halves' own pages: it says nothing of what the next pass costs.
        if sent_batches > 0 && splits == 0 {
            let requests = self
                .client
                .status_requests()
                .saturating_sub(requests_before);
            let per_batch = requests as f64 / sent_batches as f64;
            *self
                .requests_per_batch
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = per_batch.max(1.0);
        }
        self.publish(&mut schedule, &plan, poll, &mut slice).await;

        errors.report(&mut report);
        *self
            .health
            .last_refresh_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = report.errors.clone();
        let (missing, named) = schedule.missing(5);
        if missing > 0 {
            tracing::warn!(
                missing,
                first = named.join(", "),
                "SIMs asked for were not in the API's answers (unknown to the account, or refused); see monogoto_things_missing"
            );
        }
        let elapsed = started.elapsed();
        self.health.refresh_duration.set(elapsed.as_secs_f64());
        if report.succeeded() {
            self.health.last_refresh_success.set(unix_now());
        }
        tracing::debug!(
            batches = report.batches,
            failed = report.failed_batches,
            things = report.things_refreshed,
            seconds = elapsed.as_secs_f64(),
            "refresh finished"
        );
        // The first refresh sorted the SIMs into tiers: the plan is known now.
        let plan = self.plan(&schedule, &settings).await;
        let first = !self.first_refresh_done.swap(true, Ordering::Relaxed);
        self.show_plan(&plan, first, poll);
        if first {
            // The first pass since start is the state most worth keeping.
            self.save(&schedule, true, false).await;
        }
        report
    }

    /// Publishes what arrived since the last publication, removes the SIMs
    /// no longer followed (or no longer configured) or stale, and sets
    /// `monogoto_up` from how the requests of the slice went.
    async fn publish(
        &self,
        schedule: &mut Schedule,
        plan: &Plan,
        poll: &PollConfig,
        slice: &mut Slice,
    ) {
        let evicted = schedule.evictions(Instant::now(), plan.stale_after, poll.inactive_interval);
        let removed = self.settings().removed.clone();
        let mut fresh: Vec<Record> = std::mem::take(&mut slice.fresh)
            .into_iter()
            .map(|r| self.with_news(r))
            .collect();
        if !removed.is_empty() {
            fresh.retain(|record| !removed.contains(record.iccid()));
        }
        let fleet = self.fleet.clone();
        let now = SystemTime::now();
        // Rendering a large fleet takes a while: off the async workers, so
        // scrapes keep being answered meanwhile.
        let built = tokio::task::spawn_blocking(move || {
            fleet.publish_next(fresh, now, |iccid, _| {
                !evicted.contains(iccid) && !removed.contains(iccid)
            })
        })
        .await;
        match built {
            Ok(things) => self.health.things_reported.set(things as i64),
            Err(e) => {
                tracing::error!(error = %e, "building the snapshot failed; serving the previous one")
            }
        }
        if let Some(up) = slice.up() {
            self.health.up.set(i64::from(up));
        }
        self.health.things_missing.set(schedule.missing(0).0 as i64);
        slice.succeeded = 0;
        slice.failed = 0;
        self.fleet.mark_ready();
        self.save(schedule, false, false).await;
    }

    /// Keeps the set of ICCIDs followed (for the webhook receiver) in step
    /// with the schedule; forgets hints for SIMs no longer followed.
    fn track_followed(&self, schedule: &Schedule) {
        let list = schedule.followed();
        if Arc::ptr_eq(&self.followed.load().list, list) {
            return;
        }
        let positions: HashMap<String, usize> = list
            .iter()
            .enumerate()
            .map(|(position, iccid)| (iccid.clone(), position))
            .collect();
        let borrowed: HashSet<&str> = positions.keys().map(String::as_str).collect();
        self.hints.retain(&borrowed);
        drop(borrowed);
        self.followed.store(Arc::new(FollowedIndex {
            list: list.clone(),
            positions,
        }));
    }

    /// `record` with what events said of its SIM since its last answer.
    fn with_news(&self, record: Record) -> Record {
        match self.hints.take_news(record.iccid()) {
            Some(news) => record.with_push(Some(news)),
            None => record,
        }
    }

    /// Publishes hinted SIMs' answers at once, rendering only their buckets.
    async fn publish_hinted(&self, records: Vec<Record>) {
        let records: Vec<Record> = records.into_iter().map(|r| self.with_news(r)).collect();
        let iccids: Vec<String> = records.iter().map(|r| r.iccid().to_string()).collect();
        let fleet = self.fleet.clone();
        let now = SystemTime::now();
        match tokio::task::spawn_blocking(move || fleet.publish_touched(records, now)).await {
            Ok(things) => self.health.things_reported.set(things as i64),
            Err(e) => tracing::error!(error = %e, "publishing hinted answers failed"),
        }
        for iccid in &iccids {
            if let Some(at) = self.hints.answered(iccid) {
                self.hint_metrics
                    .event_to_answer
                    .observe(at.elapsed().as_secs_f64());
            }
        }
    }

    /// Whether a replica with nothing to poll checks its access now: at its
    /// first refresh, then once per discovery interval, a request at most.
    fn access_check_due(&self, settings: &Settings) -> bool {
        let mut last = self
            .last_access_check
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|at| at.elapsed() >= settings.discover_interval);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// Names each ICCID the API refused, once.
    fn log_rejections(&self, rejected: &[String], inactive_interval: Duration) {
        if rejected.is_empty() {
            return;
        }
        let mut logged = self
            .logged_rejections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for iccid in rejected {
            if logged.insert(iccid.clone()) {
                tracing::warn!(
                    iccid = %iccid,
                    retry_in = %round(schedule::rejected_retry(inactive_interval)),
                    "the API refuses this ICCID (400 Invalid Input Data); the rest of its batch is polled as usual"
                );
            }
        }
    }

    /// The plan for the fleet as it is followed now.
    async fn plan(&self, schedule: &Schedule, settings: &Settings) -> Plan {
        let fleet = schedule.fleet(settings.poll.inactive_interval, settings.poll.batch_size);
        let listing_pages = if self.discover {
            let discovered = self.discovered.lock().await;
            Some(discovered.pages.max(1))
        } else {
            None
        };
        let plan = schedule::plan(
            schedule::Fleet {
                requests_per_batch: *self
                    .requests_per_batch
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
                listing_pages,
                ..fleet
            },
            &settings.poll,
            &self.client.budget(),
            settings.discover_interval,
        );
        self.health.refresh_target.set(plan.target.as_secs_f64());
        self.health.things_inactive.set(plan.inactive as i64);
        plan
    }

    /// One INFO line with the plan at start, and then when it changed at the
    /// moments that `due` marks (after the first refresh, when the tiers are
    /// known, and after each discovery); a warning once when the operator's
    /// stale-after had to be raised.
    fn show_plan(&self, plan: &Plan, due: bool, poll: &PollConfig) {
        let mut logged = self.logged_plan.lock().unwrap_or_else(|p| p.into_inner());
        let changed = logged.as_ref().is_none_or(|last| {
            (last.active, last.inactive, &last.budget, last.target)
                != (plan.active, plan.inactive, &plan.budget, plan.target)
        });
        if logged.is_none() || (changed && due) {
            tracing::info!(
                active = plan.active,
                inactive = plan.inactive,
                requests_per_refresh = format!("{:.1}", plan.requests_per_refresh),
                budget = %plan.budget,
                refresh_target = %round(plan.target),
                refresh_target_seconds = plan.target.as_secs_f64(),
                interval = %round(poll.interval),
                stale_after = %round(plan.stale_after),
                discover_every = plan.discover_every.map(|d| round(d).to_string()),
                "polling plan: SIMs per tier, requests per refresh and the time a refresh takes under the budget"
            );
            *logged = Some(plan.clone());
        }
        if plan.stale_after_raised && !self.warned_stale.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                configured = %round(poll.stale_after.unwrap_or_default()),
                raised_to = %round(plan.stale_after),
                "{}",
                schedule::STALE_AFTER_RAISED
            );
        }
    }

    /// Keeps only this shard's ICCIDs, configured and discovered.
    pub(crate) fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        let settings = self.settings.get_mut().unwrap_or_else(|p| p.into_inner());
        Arc::make_mut(&mut settings.configured).retain(|iccid| shard.owns(iccid));
        self.health
            .things_configured
            .set(settings.configured.len() as i64);
        self.health.set_shard(shard);
        self
    }

    /// Sets how often discovery lists the Things again.
    pub(crate) fn with_discover_interval(mut self, interval: Duration) -> Self {
        self.settings
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .discover_interval = interval;
        self
    }

    /// The ICCIDs to follow, what a listing that just completed said of their
    /// states, and whether one did.
    async fn iccids(
        &self,
        report: &mut RefreshReport,
        errors: &mut ErrorLog,
        settings: &Settings,
    ) -> (Arc<Vec<String>>, Option<HashMap<String, bool>>, bool) {
        let configured = &settings.configured;
        if !self.discover {
            return (configured.clone(), None, false);
        }
        let mut cache = self.discovered.lock().await;
        // Between discoveries the cached list serves, so a refresh spends its
        // request budget on status, not on listing an unchanged fleet. A
        // listing too costly for the budget is repeated less often.
        let every = schedule::discover_every(
            cache.pages,
            &self.client.budget(),
            settings.discover_interval,
        );
        let due = cache.at.is_none_or(|at| at.elapsed() >= every);
        let mut completed = false;
        // A listing too long for one interval carries on in the next
        // refresh instead of starting over, so any fleet gets listed. Each
        // refresh lists for one interval from its first page, which waits
        // for the budget however long it takes: status requests that keep the
        // budget busy must not starve the listing.
        if due || cache.listing.is_some() {
            let listing = cache.listing.get_or_insert_with(Listing::default);
            let slice_end = std::sync::Mutex::new(None::<Instant>);
            let progress = listing
                .resume(|offset| {
                    let deadline = *slice_end.lock().unwrap_or_else(|p| p.into_inner());
                    let slice_end = &slice_end;
                    async move {
                        let page = self
                            .client
                            .list_things(THINGS_PAGE_SIZE, offset, deadline)
                            .await;
                        slice_end
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert_with(|| later(Instant::now(), settings.poll.interval));
                        page
                    }
                })
                .await;
            match progress {
                Ok(()) => {
                    let listing = cache.listing.take().unwrap_or_default();
                    let (listed, pages) = (listing.found.len(), listing.pages);
                    let mut states = HashMap::new();
                    let mut found = Vec::with_capacity(listed);
                    for thing in listing.found {
                        if self.shard.owns(&thing.iccid) {
                            if let Some(inactive) = thing.inactive {
                                states.insert(thing.iccid.clone(), inactive);
                            }
                            found.push(thing.iccid);
                        }
                    }
                    tracing::debug!(
                        listed,
                        this_shard = found.len(),
                        pages,
                        "discovered the fleet"
                    );
                    cache.iccids = Arc::new(found);
                    cache.at = Some(Instant::now());
                    cache.pages = pages;
                    cache.states = Some(states);
                    completed = true;
                    report.listed = true;
                }
                Err(ApiError::DeadlineExceeded { .. }) => {
                    report.listed = true;
                    tracing::info!(
                        listed = listing.found.len(),
                        pages = listing.pages,
                        "the fleet listing did not fit into this interval; it continues in the next refresh"
                    );
                }
                Err(e) => {
                    // A 429 says nothing of whether the API works.
                    report.discovery_failed = !e.is_rate_limited();
                    errors.record(&e, &self.health);
                    tracing::warn!(error = %e, cached = cache.iccids.len(), "discovery failed; using the last list");
                }
            }
        }
        let states = cache.states.take();
        // Until a first listing completes, the part listed so far is polled.
        let listed = match (&cache.listing, cache.iccids.is_empty()) {
            (Some(listing), true) => Arc::new(
                listing
                    .found
                    .iter()
                    .map(|t| &t.iccid)
                    .filter(|i| self.shard.owns(i))
                    .cloned()
                    .collect(),
            ),
            _ => cache.iccids.clone(),
        };
        if configured.is_empty() {
            return (listed, states, completed);
        }
        let mut seen: HashSet<&str> = configured.iter().map(String::as_str).collect();
        let mut all = Vec::clone(configured);
        all.extend(listed.iter().filter(|i| seen.insert(i)).cloned());
        (Arc::new(all), states, completed)
    }

    /// Reads `part` whole, page by page, each request paced by the plan
    /// (the first one too unless `paced` is false: its slot is in hand).
    async fn read_whole(
        &self,
        part: Vec<String>,
        known: Vec<bool>,
        limit: usize,
        spacing: Duration,
        paced: bool,
    ) -> Result<BatchAnswer, ApiError> {
        let first = AtomicBool::new(!paced);
        paging::read_batch(&part, &known, &self.page_cap, |offset| {
            let (part, first) = (&part, &first);
            async move {
                if !first.swap(false, Ordering::Relaxed) {
                    let waiting = self.health.api.budget_wait.start();
                    self.pacer.wait(spacing).await;
                    drop(waiting);
                }
                self.client.thing_status(part, limit, offset, None).await
            }
        })
        .await
    }
}

/// `at + d`, or far ahead when that does not fit an `Instant`.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(100 * 365 * 86400)))
        .unwrap_or(at)
}

/// A duration for logs: to the millisecond under a minute (a 1.6 s target
/// is not "1s"), to whole seconds above.
fn round(d: Duration) -> humantime::FormattedDuration {
    let d = if d >= Duration::from_secs(60) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis() as u64)
    };
    humantime::format_duration(d)
}

#[cfg(test)]
mod model_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn iccids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("8988{i:015}")).collect()
    }

    fn poller(configured: Vec<String>, shard: Shard) -> Poller {
        let health = Arc::new(HealthMetrics::new());
        let client = Client::new(
            crate::monogoto::ClientOptions::new("http://127.0.0.1:9"),
            crate::monogoto::Credentials::Token("t".to_string().into()),
            health.api.clone(),
        )
        .expect("client");
        Poller::new(
            client,
            PollConfig::default(),
            configured,
            false,
            Arc::new(Fleet::default()),
            health,
        )
        .with_shard(shard)
    }

    #[test]
    fn reconfigure_counts_what_changed_for_this_shard() {
        let all = iccids(40);
        let shard = Shard { index: 1, count: 2 };
        let p = poller(all[..20].to_vec(), shard);
        let mine = |list: &[String]| list.iter().filter(|i| shard.owns(i)).count();
        assert_eq!(p.configured().len(), mine(&all[..20]));

        let same = p.reconfigure(
            PollConfig::default(),
            all[..20].to_vec(),
            DEFAULT_DISCOVER_INTERVAL,
        );
        assert!(same.is_empty(), "{same:?}");

        let poll = PollConfig {
            interval: Duration::from_secs(5),
            concurrency: 1,
            ..PollConfig::default()
        };
        let changed = p.reconfigure(
            poll.clone(),
            all[10..40].to_vec(),
            DEFAULT_DISCOVER_INTERVAL,
        );
        assert_eq!(changed.added, mine(&all[20..40]));
        assert_eq!(changed.removed, mine(&all[..10]));
        assert_eq!(changed.settings, ["poll.interval", "poll.concurrency"]);
        assert_eq!(p.configured().len(), mine(&all[10..40]));
        assert!(p.configured().iter().all(|i| shard.owns(i)));
        assert_eq!(p.settings().removed.len(), mine(&all[..10]));
        assert_eq!(p.settings().poll, poll);

        // Back again: no longer removed.
        p.reconfigure(poll, all[..40].to_vec(), DEFAULT_DISCOVER_INTERVAL);
        assert!(p.settings().removed.is_empty());
    }
}
