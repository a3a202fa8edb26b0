//! The plan that fits the fleet into the API's request budget: how long a
//! pass takes, how its requests are spaced, and how much of it each tier gets.
//!
//! It counts what is really sent: the active tier's batches, the rarely polled
//! SIMs' batches, each refused SIM's request of its own, discovery's pages, and
//! (as measured on the last pass) the extra pages, halves and retries that
//! batches cost on top.

use std::time::Duration;

use crate::config::PollConfig;
use crate::monogoto::budget::Budget;

/// The default stale-after is this many refresh targets.
pub(crate) const STALE_AFTER_TARGETS: u32 = 3;
/// Discovery may take at most this share of the budget; a listing that would
/// take more is repeated less often than `--monogoto.discover-interval`.
const DISCOVERY_SHARE: f64 = 0.25;
/// Whatever the inactive tier and discovery cost, the active tier keeps at
/// least this share of the budget.
const MIN_ACTIVE_SHARE: f64 = 0.1;
/// Rejected SIMs are asked for again this often when the inactive tier is off.
const REJECTED_RETRY: Duration = Duration::from_secs(3600);

/// How long a SIM the API refused waits before it is asked for again.
pub(crate) fn rejected_retry(inactive_interval: Duration) -> Duration {
    if inactive_interval.is_zero() {
        REJECTED_RETRY
    } else {
        inactive_interval
    }
}

/// Requests per batch counted at most: a pass that measured more (a first
/// pass isolating refused ICCIDs) says little of the next.
const MAX_OVERHEAD: f64 = 4.0;

/// How a refresh spends the budget.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub(crate) active: usize,
    /// SIMs polled once per inactive interval (refused ones included).
    pub inactive: usize,
    /// Status requests a refresh costs on average: the active tier's batches,
    /// the rarely polled tiers' share, and what batches cost on top.
    pub(crate) requests_per_refresh: f64,
    pub budget: Budget,
    /// The longer of the interval and what the budget allows.
    pub target: Duration,
    /// Time between status requests; zero when the fleet fits the interval
    /// and requests may go as fast as the budget's windows let them.
    pub(crate) spacing: Duration,
    /// Requests of the rarely polled tiers a refresh sends at most, so that
    /// SIMs that come due together are spread over refreshes instead of
    /// delaying the active tier.
    pub(crate) inactive_batches_per_refresh: usize,
    /// In force: as configured but at least the target, or 3 targets.
    pub stale_after: Duration,
    /// An explicit stale-after shorter than the target was raised to it
    /// (and [`STALE_AFTER_RAISED`] says so).
    pub(crate) stale_after_raised: bool,
    /// How often discovery lists the fleet, when it does.
    pub(crate) discover_every: Option<Duration>,
}

/// What a plan is made from, besides the poll settings and the budget.
#[derive(Debug, Clone, Copy)]
pub struct Fleet {
    /// SIMs asked for every refresh.
    pub(crate) active: usize,
    /// Failing SIMs of the active tier: batched apart, at most every refresh.
    pub(crate) active_failing: usize,
    /// The requests those take, in groups halved by their failures.
    pub(crate) active_failing_requests: usize,
    /// SIMs asked for once per inactive interval, in shared batches.
    pub inactive: usize,
    /// Failing SIMs of the inactive tier: batched apart, at least once per
    /// inactive interval.
    pub(crate) inactive_failing: usize,
    /// The requests those take, in groups halved by their failures.
    pub(crate) inactive_failing_requests: usize,
    /// Refused SIMs: each asked for alone, once per inactive interval.
    pub(crate) refused: usize,
    /// `GET /thing/status` requests a batch cost on the last pass (pages,
    /// halves, retries): at least 1.
    pub(crate) requests_per_batch: f64,
    /// `GET /things` pages a full listing takes, with discovery on.
    pub(crate) listing_pages: Option<usize>,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            active: 0,
            active_failing: 0,
            active_failing_requests: 0,
            inactive: 0,
            inactive_failing: 0,
            inactive_failing_requests: 0,
            refused: 0,
            requests_per_batch: 1.0,
            listing_pages: None,
        }
    }
}

/// Why a start warns when it raises `--poll.stale-after` to the target.
pub(crate) const STALE_AFTER_RAISED: &str = "--poll.stale-after is shorter than a refresh under the request budget: raised to the refresh target, or SIMs would vanish before their turn";

pub fn plan(fleet: Fleet, poll: &PollConfig, budget: &Budget, discover_interval: Duration) -> Plan {
    let batch = poll.batch_size.max(1);
    let overhead = if fleet.requests_per_batch.is_finite() {
        fleet.requests_per_batch.clamp(1.0, MAX_OVERHEAD)
    } else {
        1.0
    };
    // Each group in batches of its own.
    // Failing SIMs go in groups of their own, halved by their failures.
    let active_requests =
        (fleet.active.div_ceil(batch) + fleet.active_failing_requests) as f64 * overhead;
    let inactive_requests =
        (fleet.inactive.div_ceil(batch) + fleet.inactive_failing_requests) as f64 * overhead;
    let interval = poll.interval.as_secs_f64();
    // Refused SIMs go alone, and a lone ICCID costs one request, also when
    // the inactive tier is off (they wait an hour then).
    let refused_rate = fleet.refused as f64 / rejected_retry(poll.inactive_interval).as_secs_f64();
    let inactive_rate = refused_rate
        + if poll.inactive_interval.is_zero() {
            0.0
        } else {
            inactive_requests / poll.inactive_interval.as_secs_f64()
        };
    let discover_every = fleet
        .listing_pages
        .map(|pages| self::discover_every(pages, budget, discover_interval));
    let (target, spacing) = match budget.sustained_rate() {
        None => (interval, 0.0),
        Some(rate) => {
            let discovery_rate = match (fleet.listing_pages, discover_every) {
                (Some(pages), Some(every)) => pages as f64 / every.as_secs_f64(),
                _ => 0.0,
            };
            let status_rate = rate - discovery_rate;
            let active_rate = (status_rate - inactive_rate).max(status_rate * MIN_ACTIVE_SHARE);
            let needed = active_requests / active_rate;
            if needed > interval {
                // Evenly at the rate left for status requests; the inactive
                // tier's requests come out of it too, so a refresh averages the target.
                (needed, 1.0 / status_rate)
            } else {
                (interval, 0.0)
            }
        }
    };
    let target = seconds(target);
    let (stale_after, stale_after_raised) = match poll.stale_after {
        Some(explicit) if explicit < target => (target, true),
        Some(explicit) => (explicit, false),
        None => (target.saturating_mul(STALE_AFTER_TARGETS), false),
    };
    let inactive_share = inactive_rate * target.as_secs_f64();
    Plan {
        active: fleet.active + fleet.active_failing,
        inactive: fleet.inactive + fleet.inactive_failing + fleet.refused,
        requests_per_refresh: active_requests + inactive_share,
        // Twice the share (and at least one): a backlog drains, and the
        // share stays within what the budget planned for.
        inactive_batches_per_refresh: ((inactive_share * 2.0).ceil() as usize).max(1),
        budget: budget.clone(),
        target,
        spacing: seconds(spacing),
        stale_after,
        stale_after_raised,
        discover_every,
    }
}

/// How often discovery lists the fleet: the configured interval, or less
/// often when a listing of `pages` would take more than its share of the budget.
pub(crate) fn discover_every(pages: usize, budget: &Budget, configured: Duration) -> Duration {
    match budget.sustained_rate() {
        Some(rate) => configured.max(seconds(pages as f64 / (rate * DISCOVERY_SHARE))),
        None => configured,
    }
}

/// Seconds as a duration, bounded to what a duration holds.
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}
