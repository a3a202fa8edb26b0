//! What a refresh asks for and how fast: the plan that fits the fleet into the
//! API's request budget, the tiers of SIMs, and the state that decides when a
//! SIM is polled and when it leaves /metrics.
//!
//! The cost that matters is requests: Monogoto's budget, not our CPU, sets how
//! fresh the data can be. A refresh (one pass over the SIMs followed) takes the
//! longer of `--poll.interval` and what the budget needs; SIMs that cannot
//! connect (SUSPENDED, RETIRED, unknown to the account) are polled once per
//! `--poll.inactive-interval` so that the budget goes to the ones that matter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::PollConfig;
use crate::monogoto::budget::Budget;
use crate::monogoto::model::is_inactive_status;

/// The default stale-after is this many refresh targets.
pub(crate) const STALE_AFTER_TARGETS: u32 = 3;
/// An inactive SIM's series stay this many inactive intervals.
const INACTIVE_STALE_INTERVALS: u32 = 3;
/// Discovery may take at most this share of the budget; a listing that would
/// take more is repeated less often than `--monogoto.discover-interval`.
const DISCOVERY_SHARE: f64 = 0.25;
/// Whatever the inactive tier and discovery cost, the active tier keeps at
/// least this share of the budget.
const MIN_ACTIVE_SHARE: f64 = 0.1;

/// How a refresh spends the budget.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub(crate) active: usize,
    pub inactive: usize,
    /// Status requests a refresh costs on average: the active tier's batches
    /// and the inactive tier's share.
    pub(crate) requests_per_refresh: f64,
    pub budget: Budget,
    /// The longer of the interval and what the budget allows.
    pub target: Duration,
    /// Time between status requests; zero when the fleet fits the interval
    /// and requests may go as fast as the budget's windows let them.
    pub(crate) spacing: Duration,
    /// Batches of the rarely polled tier a refresh takes at most, so that
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
#[derive(Debug, Clone, Copy, Default)]
pub struct Fleet {
    pub(crate) active: usize,
    pub inactive: usize,
    /// `GET /things` pages a full listing takes, with discovery on.
    pub(crate) listing_pages: Option<usize>,
}

/// Why a start warns when it raises `--poll.stale-after` to the target.
pub(crate) const STALE_AFTER_RAISED: &str = "--poll.stale-after is shorter than a refresh under the request budget: raised to the refresh target, or SIMs would vanish before their turn";

pub fn plan(fleet: Fleet, poll: &PollConfig, budget: &Budget, discover_interval: Duration) -> Plan {
    let batch = poll.batch_size.max(1);
    let active_batches = fleet.active.div_ceil(batch) as f64;
    let inactive_batches = fleet.inactive.div_ceil(batch) as f64;
    let interval = poll.interval.as_secs_f64();
    let inactive_rate = if poll.inactive_interval.is_zero() {
        0.0
    } else {
        inactive_batches / poll.inactive_interval.as_secs_f64()
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
            let needed = active_batches / active_rate;
            if needed > interval {
                // Evenly at the rate left for status requests; the inactive
                // tier's batches come out of it too, so a refresh averages the target.
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
        active: fleet.active,
        inactive: fleet.inactive,
        requests_per_refresh: active_batches + inactive_share,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Tier {
    /// Polled every refresh: ACTIVE, TEST_ACTIVE, PROVISIONED, unknown status.
    #[default]
    Active,
    /// SUSPENDED or RETIRED: polled once per inactive interval, series kept.
    Inactive,
    /// Asked for and not returned (unknown to the account): polled once per
    /// inactive interval, in case it comes back.
    Missing,
}

/// What the poller knows of one SIM between refreshes.
#[derive(Debug, Clone, Copy, Default)]
struct SimState {
    tier: Tier,
    answered_at: Option<Instant>,
    /// A request for it was sent since its last answer and did not bring it back.
    unanswered: bool,
    /// Its series are on /metrics (answered, not evicted since).
    exported: bool,
    /// The last answer that could have named it did not.
    missing: bool,
    /// The API refused a request for it alone (400): asked for again only
    /// when due, whatever the tier.
    rejected: bool,
    /// For the rarely polled tiers: when it is asked for next.
    due_at: Option<Instant>,
}

/// How a batch went, for the SIMs in it.
pub(crate) enum Outcome<'a> {
    /// Answered; the SIMs it returned with their provisioning status, and
    /// those the API refused to be asked for (400 for them alone).
    Answered {
        returned: &'a [(usize, &'a str)],
        rejected: &'a [usize],
    },
    /// Sent, and failed.
    Failed,
}

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

/// The SIMs followed and what is known of each.
#[derive(Default)]
pub(crate) struct Schedule {
    followed: Arc<Vec<String>>,
    sims: Vec<SimState>,
    /// Followed before and not any more: they leave /metrics at once.
    dropped: HashSet<String>,
}

impl Schedule {
    pub(crate) fn followed(&self) -> &Arc<Vec<String>> {
        &self.followed
    }

    /// Whether SIMs followed before are no longer, and have yet to leave /metrics.
    pub(crate) fn has_dropped(&self) -> bool {
        !self.dropped.is_empty()
    }

    /// Follows `iccids` from now on, keeping what is known of those followed
    /// before. `listed_inactive` is what a discovery listing said of a SIM's
    /// state, which counts as an answer for its tier.
    pub fn follow(
        &mut self,
        iccids: Arc<Vec<String>>,
        listed_inactive: Option<&HashMap<String, bool>>,
        now: Instant,
    ) {
        if !Arc::ptr_eq(&iccids, &self.followed) {
            let mut previous: HashMap<&str, SimState> = self
                .followed
                .iter()
                .map(String::as_str)
                .zip(self.sims.iter().copied())
                .collect();
            let sims = iccids
                .iter()
                .map(|iccid| previous.remove(iccid.as_str()).unwrap_or_default())
                .collect();
            self.dropped.extend(
                previous
                    .into_iter()
                    .filter(|(_, state)| state.exported)
                    .map(|(iccid, _)| iccid.to_string()),
            );
            self.followed = iccids;
            self.sims = sims;
        }
        let Some(listed) = listed_inactive else {
            return;
        };
        for (iccid, sim) in self.followed.iter().zip(&mut self.sims) {
            match listed.get(iccid) {
                Some(true) if sim.tier == Tier::Active => {
                    sim.tier = Tier::Inactive;
                    // Never answered: asked for at once, to be shown at all.
                    sim.due_at = sim.answered_at.map(|_| now);
                }
                Some(false) if sim.tier != Tier::Active => {
                    sim.tier = Tier::Active;
                    sim.due_at = None;
                }
                _ => {}
            }
        }
    }

    /// The SIMs asked for whose status the last answers did not contain (or
    /// that the API refused to be asked for): how many, and up to `names` of them.
    pub fn missing(&self, names: usize) -> (usize, Vec<&str>) {
        let mut count = 0;
        let mut named = Vec::new();
        for (iccid, sim) in self.followed.iter().zip(&self.sims) {
            if sim.missing {
                count += 1;
                if named.len() < names {
                    named.push(iccid.as_str());
                }
            }
        }
        (count, named)
    }

    /// SIMs per tier: (polled every refresh, polled at the inactive interval).
    pub fn tiers(&self, inactive_interval: Duration) -> (usize, usize) {
        if inactive_interval.is_zero() {
            return (self.sims.len(), 0);
        }
        let inactive = self.sims.iter().filter(|s| s.tier != Tier::Active).count();
        (self.sims.len() - inactive, inactive)
    }

    /// The batches of one refresh, as positions in the followed list: the
    /// active tier, then up to `max_rare_batches` of the rarely polled SIMs
    /// that are due, longest due first; each tier in batches of its own, so
    /// that requests stay full.
    pub fn batches(
        &self,
        now: Instant,
        batch_size: usize,
        inactive_interval: Duration,
        max_rare_batches: usize,
    ) -> Vec<Vec<usize>> {
        let batch_size = batch_size.max(1);
        let every_time = inactive_interval.is_zero();
        // A SIM never answered goes with the active tier whatever a listing
        // said of it, so that the first refresh costs no extra request.
        let every_refresh = |s: &SimState| {
            !s.rejected && (every_time || s.tier == Tier::Active || s.answered_at.is_none())
        };
        let (active, mut due): (Vec<usize>, Vec<usize>) = self
            .sims
            .iter()
            .enumerate()
            .filter(|(_, s)| every_refresh(s) || s.due_at.is_none_or(|d| d <= now))
            .map(|(i, _)| i)
            .partition(|&i| every_refresh(&self.sims[i]));
        due.sort_by_key(|&i| self.sims[i].due_at);
        due.truncate(max_rare_batches.saturating_mul(batch_size));
        active
            .chunks(batch_size)
            .chain(due.chunks(batch_size))
            .map(<[usize]>::to_vec)
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn iccid(&self, position: usize) -> &str {
        &self.followed[position]
    }

    /// Records how a batch of `positions` went.
    pub(crate) fn record(
        &mut self,
        positions: &[usize],
        outcome: Outcome<'_>,
        now: Instant,
        inactive_interval: Duration,
    ) {
        let rarely = if inactive_interval.is_zero() {
            None
        } else {
            // The configuration bounds the interval; were it to overflow, the
            // SIM would simply be asked for every refresh.
            Some(now.checked_add(inactive_interval))
        };
        match outcome {
            Outcome::Answered { returned, rejected } => {
                for &position in rejected {
                    let Some(sim) = self.sims.get_mut(position) else {
                        continue;
                    };
                    sim.unanswered = true;
                    sim.missing = true;
                    sim.rejected = true;
                    sim.tier = Tier::Missing;
                    let retry = rejected_retry(inactive_interval);
                    sim.due_at = now.checked_add(retry);
                }
                for &(position, provision_status) in returned {
                    let Some(sim) = self.sims.get_mut(position) else {
                        continue;
                    };
                    sim.answered_at = Some(now);
                    sim.unanswered = false;
                    sim.exported = true;
                    sim.missing = false;
                    sim.rejected = false;
                    if let (true, Some(due_at)) = (is_inactive_status(provision_status), rarely) {
                        sim.tier = Tier::Inactive;
                        sim.due_at = due_at;
                    } else {
                        sim.tier = Tier::Active;
                        sim.due_at = None;
                    }
                }
                for &position in positions {
                    if returned.iter().any(|(p, _)| *p == position) || rejected.contains(&position)
                    {
                        continue;
                    }
                    let Some(sim) = self.sims.get_mut(position) else {
                        continue;
                    };
                    sim.unanswered = true;
                    sim.missing = true;
                    if let Some(due_at) = rarely {
                        sim.tier = Tier::Missing;
                        sim.due_at = due_at;
                    }
                }
            }
            Outcome::Failed => {
                for &position in positions {
                    if let Some(sim) = self.sims.get_mut(position) {
                        sim.unanswered = true;
                    }
                }
            }
        }
    }

    /// The ICCIDs to remove from /metrics now: no longer followed, or asked
    /// for and not answered for longer than their staleness (`stale_after`;
    /// for SUSPENDED and RETIRED SIMs 3x the inactive interval if longer). A
    /// SIM whose requests were not sent (the budget, a pause) stays.
    pub(crate) fn evictions(
        &mut self,
        now: Instant,
        stale_after: Duration,
        inactive_interval: Duration,
    ) -> HashSet<String> {
        let inactive_stale =
            stale_after.max(inactive_interval.saturating_mul(INACTIVE_STALE_INTERVALS));
        let mut out = std::mem::take(&mut self.dropped);
        for (iccid, sim) in self.followed.iter().zip(&mut self.sims) {
            if !sim.exported || !sim.unanswered {
                continue;
            }
            let stale = if sim.tier == Tier::Inactive {
                inactive_stale
            } else {
                stale_after
            };
            if sim
                .answered_at
                .is_some_and(|at| now.saturating_duration_since(at) > stale)
            {
                sim.exported = false;
                out.insert(iccid.clone());
            }
        }
        out
    }
}

/// Spaces requests evenly: each takes the next slot, one spacing after the
/// last one given out, never earlier than now (a pacer that fell behind does
/// not burst to catch up).
#[derive(Default)]
pub(crate) struct Pacer {
    next: std::sync::Mutex<Option<Instant>>,
}

impl Pacer {
    /// Waits for the next slot; returns how long it waited.
    pub async fn wait(&self, spacing: Duration) -> Duration {
        let now = Instant::now();
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let slot = next.map_or(now, |n| n.max(now));
            *next = slot.checked_add(spacing);
            slot
        };
        tokio::time::sleep_until(slot).await;
        slot.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests;
