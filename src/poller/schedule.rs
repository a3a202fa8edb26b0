//! What a refresh asks for: the SIMs followed, each in one explicit state of
//! its lifecycle, which decides when it is asked for next, with whom, and when
//! it leaves /metrics.
//!
//! The cost that matters is requests: Monogoto's budget, not our CPU, sets how
//! fresh the data can be (see `plan`). Each SIM's status costs a share of a
//! request, so no SIM's trouble may take another's turn or data.
//!
//! # A SIM's lifecycle
//!
//! | state    | asked for                                            | with             |
//! |----------|------------------------------------------------------|------------------|
//! | New      | every refresh, until its first answer                | the active tier  |
//! | Active   | every refresh                                        | the active tier  |
//! | Inactive | once per inactive interval (SUSPENDED, RETIRED)      | rare batches     |
//! | Unknown  | once per inactive interval (the answer omitted it)   | rare batches     |
//! | Refused  | once per inactive interval (400 for it alone)        | alone, always    |
//! | Failing  | next refresh in company; alone, after a backoff      | other failing    |
//!
//! What moves a SIM, whatever its state (one rule each, in [`Schedule::record`],
//! [`Schedule::follow`] and [`Schedule::begin_pass`]):
//!
//! - **answered** with a status: Inactive when SUSPENDED or RETIRED (and the
//!   inactive tier is on), else Active. Its failures are forgotten.
//! - **omitted** from an answer that could have named it: Unknown. A SIM never
//!   answered thus goes to the slow tier after its first unanswered ask.
//! - **refused** (400 for it alone, found by isolating a refused batch):
//!   Refused, whether or not it was answered before.
//! - **failed** (5xx, transport, timeout, an unreadable answer): Failing. Failing
//!   SIMs are batched apart from the others (after them, so they never take
//!   another SIM's turn), in groups halved at each failure: the next refresh asks
//!   again in halves until the SIM whose ICCID makes requests fail is alone and
//!   the others are answered. Alone, it backs off: one refresh target, doubling,
//!   at most the inactive interval. A Refused SIM stays Refused and waits its
//!   interval.
//! - **outage**: a pass in which several requests failed and none was answered
//!   is the API's fault, not the SIMs'. Until the API answers again, failing
//!   SIMs are asked in full batches but for one smaller group, which finds out
//!   whether only some SIMs are at fault; the API's first answer makes every
//!   SIM that failed meanwhile due at once, with its failures forgotten.
//! - **429 or rejected credentials** (sent or not sent because of them): no
//!   change of state or turn; the SIM counts as asked and unanswered.
//! - **reload or re-shard** ([`Schedule::follow`]): a SIM still followed keeps
//!   its state; one no longer followed leaves /metrics at the next publication;
//!   one followed anew is New. A listing that says SUSPENDED/RETIRED makes a
//!   SIM Inactive (New stays New, to be shown at all). A shorter inactive
//!   interval brings every turn forward to it; the tier switched off (0) puts
//!   Inactive and Unknown SIMs back to every refresh.
//!
//! A SIM leaves /metrics when it is no longer followed, or when it was asked
//! for since its last answer and that answer is older than stale-after (for a
//! SUSPENDED or RETIRED one, at least 3 inactive intervals). The rule is the
//! same for every cause, so an outage or a revoked token empties /metrics
//! evenly, never leaving a frozen subset.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::monogoto::ApiError;
use crate::monogoto::model::is_inactive_status;

mod plan;
mod saved;

pub(crate) use plan::{Fleet, Plan, STALE_AFTER_RAISED, discover_every, plan, rejected_retry};
pub(crate) use saved::Restored;

/// A slow-tier SIM may be asked this share of an inactive interval early, to
/// fill a batch that would go out part-empty.
const RARE_EARLY_SHARE: f64 = 0.1;
/// An inactive SIM's series stay this many inactive intervals.
const INACTIVE_STALE_INTERVALS: u32 = 3;

/// Where a SIM stands (see the module doc for the rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Lifecycle {
    #[default]
    New,
    Active,
    Inactive,
    Unknown,
    Refused,
    /// Its requests fail; `rare` when it came from a rarely polled state, to
    /// which its retries keep to.
    Failing {
        rare: bool,
    },
}

impl Lifecycle {
    /// Polled at the inactive interval rather than every refresh.
    fn is_rare(self) -> bool {
        matches!(
            self,
            Lifecycle::Inactive
                | Lifecycle::Unknown
                | Lifecycle::Refused
                | Lifecycle::Failing { rare: true }
        )
    }
}

/// What the poller knows of one SIM between refreshes.
#[derive(Debug, Clone, Copy, Default)]
struct SimState {
    lifecycle: Lifecycle,
    /// Its last answer (or a listing) said SUSPENDED or RETIRED: its series
    /// stay longer.
    inactive_status: bool,
    answered_at: Option<Instant>,
    /// Asked for since its last answer, and not answered.
    unanswered: bool,
    /// Its series are on /metrics (answered, not evicted since).
    exported: bool,
    /// The last answer that could have named it did not (omitted or refused).
    missing: bool,
    /// When it is asked for next; `None`: every refresh.
    due_at: Option<Instant>,
    /// Its requests' failures in a row: each halves the group it is sent
    /// with next, until it is alone.
    failures: u32,
    /// Of those, the failures of requests for it alone: they set its backoff.
    failures_alone: u32,
    /// When its last request failed.
    failed_at: Option<Instant>,
}

/// How a request went, for the SIMs in it.
pub(crate) enum Outcome<'a> {
    /// Answered; the SIMs it returned with their provisioning status, and
    /// those the API refused to be asked for (400 for them alone).
    Answered {
        returned: &'a [(usize, &'a str)],
        rejected: &'a [usize],
    },
    /// Sent, and failed (5xx, transport, timeout, an unreadable answer).
    Failed,
    /// Not answered for a reason that is not about these SIMs: the budget
    /// (429) or rejected credentials.
    NotAnswered,
}

impl Outcome<'_> {
    /// What a request that failed with `error` was for its SIMs: a 429 or
    /// rejected credentials are not about them; anything else failed.
    pub(crate) fn of_error(error: &ApiError) -> Outcome<'static> {
        if error.is_rate_limited() || error.is_auth() {
            Outcome::NotAnswered
        } else {
            Outcome::Failed
        }
    }
}

/// The durations the transitions depend on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) inactive_interval: Duration,
    /// A failing SIM's first backoff step: the refresh target.
    pub(crate) retry_base: Duration,
}

impl Timing {
    /// How long a SIM whose requests for it alone failed `failures` times in
    /// a row waits: one target, doubling, at most the inactive interval.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(20);
        self.retry_base
            .saturating_mul(factor)
            .min(self.inactive_interval)
    }
}

/// One request a refresh sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// Positions in the followed list.
    pub(crate) positions: Vec<usize>,
}

/// The SIMs followed and what is known of each.
#[derive(Default)]
pub(crate) struct Schedule {
    followed: Arc<Vec<String>>,
    sims: Vec<SimState>,
    /// Followed before and not any more: they leave /metrics at once.
    dropped: HashSet<String>,
    /// Since when every request has failed (a whole pass failed and nothing
    /// was answered since): the API's fault, not the SIMs'.
    outage_since: Option<Instant>,
    /// This pass: when it began, requests answered, requests failed.
    pass: (Option<Instant>, usize, usize),
    /// The inactive interval of this pass.
    inactive_interval: Duration,
    /// What a previous process knew of SIMs, until they are followed.
    restored: HashMap<String, SimState>,
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
            let mut restored = std::mem::take(&mut self.restored);
            let sims = iccids
                .iter()
                .map(|iccid| {
                    previous
                        .remove(iccid.as_str())
                        .or_else(|| restored.remove(iccid))
                        .unwrap_or_default()
                })
                .collect();
            self.dropped.extend(
                previous
                    .into_iter()
                    .filter(|(_, state)| state.exported)
                    .map(|(iccid, _)| iccid.to_string()),
            );
            // Restored and not followed: served from the file, not wanted now.
            self.dropped.extend(
                restored
                    .into_iter()
                    .filter(|(_, state)| state.exported)
                    .map(|(iccid, _)| iccid),
            );
            self.followed = iccids;
            self.sims = sims;
        }
        let Some(listed) = listed_inactive else {
            return;
        };
        for (iccid, sim) in self.followed.iter().zip(&mut self.sims) {
            match (listed.get(iccid), sim.lifecycle) {
                (Some(true), Lifecycle::Active) => {
                    sim.lifecycle = Lifecycle::Inactive;
                    sim.inactive_status = true;
                    sim.due_at = Some(now);
                }
                (Some(false), Lifecycle::Inactive) => {
                    sim.lifecycle = Lifecycle::Active;
                    sim.inactive_status = false;
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

    /// What a plan is made of: SIMs by how often they are asked for, and the
    /// requests failing ones take in batches of `batch_size` halved by their
    /// failures.
    pub(crate) fn fleet(&self, inactive_interval: Duration, batch_size: usize) -> Fleet {
        let mut fleet = Fleet::default();
        // Failing SIMs by (slow tier, failures).
        let mut failing_groups: HashMap<(bool, u32), usize> = HashMap::new();
        for sim in &self.sims {
            let failing = matches!(sim.lifecycle, Lifecycle::Failing { .. });
            let rare = sim.lifecycle.is_rare() && !inactive_interval.is_zero();
            if failing {
                *failing_groups.entry((rare, sim.failures)).or_default() += 1;
            }
            let count = match sim.lifecycle {
                Lifecycle::Refused => &mut fleet.refused,
                _ if rare && failing => &mut fleet.inactive_failing,
                _ if rare => &mut fleet.inactive,
                _ if failing => &mut fleet.active_failing,
                _ => &mut fleet.active,
            };
            *count += 1;
        }
        for ((rare, failures), sims) in failing_groups {
            let requests = sims.div_ceil(self.failing_group_size(batch_size, failures));
            if rare {
                fleet.inactive_failing_requests += requests;
            } else {
                fleet.active_failing_requests += requests;
            }
        }
        fleet
    }

    /// How many failing SIMs with `failures` go in one request: halved at
    /// each failure, except in an outage, which says nothing of them.
    fn failing_group_size(&self, batch_size: usize, failures: u32) -> usize {
        let batch_size = batch_size.max(1);
        if self.outage_since.is_some() {
            batch_size
        } else {
            (batch_size >> failures.min(usize::BITS - 1)).max(1)
        }
    }

    /// When a SIM is asked for next, for tests.
    #[cfg(test)]
    pub(crate) fn due_at(&self, position: usize) -> Option<Instant> {
        self.sims[position].due_at
    }

    /// Each SIM's state, for tests.
    #[cfg(test)]
    pub(crate) fn lifecycle(&self, position: usize) -> Lifecycle {
        self.sims[position].lifecycle
    }

    /// The requests of one refresh, in the order to send them: the rarely
    /// polled SIMs that are due (at most `max_rare` requests, longest due
    /// first, failing ones last), the active tier, then the failing SIMs of the
    /// active tier that are due. Refused SIMs go alone; failing ones only with
    /// each other; each group in full batches of its own.
    pub(crate) fn batches(&self, now: Instant, batch_size: usize, max_rare: usize) -> Vec<Batch> {
        let batch_size = batch_size.max(1);
        let due = |s: &SimState| s.due_at.is_none_or(|d| d <= now);
        let mut every = Vec::new();
        let mut rare = Vec::new();
        let mut refused = Vec::new();
        let mut rare_failing = Vec::new();
        let mut failing = Vec::new();
        // Slow-tier SIMs due a little later may fill a rare batch that would
        // go out part-empty: a request costs the same whatever it holds, and
        // their turns come together from then on.
        let early = now
            .checked_add(self.inactive_interval.mul_f64(RARE_EARLY_SHARE))
            .unwrap_or(now);
        let mut soon = Vec::new();
        for (i, sim) in self.sims.iter().enumerate() {
            if !due(sim) {
                if matches!(sim.lifecycle, Lifecycle::Inactive | Lifecycle::Unknown)
                    && sim.due_at.is_some_and(|d| d <= early)
                {
                    soon.push(i);
                }
                continue;
            }
            match sim.lifecycle {
                Lifecycle::Refused => refused.push(i),
                Lifecycle::Failing { rare: true } if sim.due_at.is_some() => rare_failing.push(i),
                Lifecycle::Failing { .. } if sim.due_at.is_some() => failing.push(i),
                _ if sim.due_at.is_none() => every.push(i),
                _ => rare.push(i),
            }
        }
        let due_at = |i: &usize| self.sims[*i].due_at;
        // Longest unanswered first: a pass that a restart (or the budget)
        // cut short goes on where it stopped.
        every.sort_by_key(|i| self.sims[*i].answered_at);
        rare.sort_by_key(due_at);
        let room = rare.len().next_multiple_of(batch_size) - rare.len();
        if room > 0 && !rare.is_empty() {
            soon.sort_by_key(due_at);
            rare.extend(soon.into_iter().take(room));
        }
        // Failing SIMs go in groups halved at each failure, so that the one
        // whose ICCID makes requests fail ends up alone and the others are
        // answered again; not while everything fails, which says nothing of them.
        let failures = |i: &usize| self.sims[*i].failures;
        let failing_groups = |mut sims: Vec<usize>| -> Vec<Vec<usize>> {
            sims.sort_by_key(failures);
            let mut groups = Vec::new();
            if self.outage_since.is_some()
                && let Some(&first) = sims.first()
            {
                // One small group probes whether only some SIMs are at fault
                // (a fleet whose every batch holds a bad ICCID looks like an
                // outage); the rest wait in full batches.
                let probe = (batch_size >> failures(&first).clamp(1, usize::BITS - 1)).max(1);
                let (head, rest) = sims.split_at(probe.min(sims.len()));
                groups.push(head.to_vec());
                groups.extend(rest.chunks(batch_size).map(<[usize]>::to_vec));
                return groups;
            }
            for same in sims.chunk_by(|a, b| failures(a) == failures(b)) {
                let size = self.failing_group_size(batch_size, failures(&same[0]));
                groups.extend(same.chunks(size).map(<[usize]>::to_vec));
            }
            groups
        };
        // The rarely polled requests, longest due first; refused SIMs each
        // alone. Failing ones come after every other that is due.
        let mut rare_requests: Vec<Vec<usize>> = rare
            .chunks(batch_size)
            .map(<[usize]>::to_vec)
            .chain(refused.iter().map(|&i| vec![i]))
            .collect();
        rare_requests.sort_by_key(|batch| batch.iter().filter_map(&due_at).min());
        rare_requests.extend(failing_groups(rare_failing));
        rare_requests.truncate(max_rare);
        rare_requests
            .into_iter()
            .chain(every.chunks(batch_size).map(<[usize]>::to_vec))
            .chain(failing_groups(failing))
            .map(|positions| Batch { positions })
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn iccid(&self, position: usize) -> &str {
        &self.followed[position]
    }

    /// Whether the SIM at `position` may go in a batch of hinted SIMs: not
    /// one the API refuses, nor one whose requests fail.
    pub(crate) fn hintable(&self, position: usize) -> bool {
        self.sims
            .get(position)
            .is_some_and(|s| !matches!(s.lifecycle, Lifecycle::Refused | Lifecycle::Failing { .. }))
    }

    /// Whether the SIM at `position` was ever answered.
    pub(crate) fn was_answered(&self, position: usize) -> bool {
        self.sims
            .get(position)
            .is_some_and(|s| s.answered_at.is_some())
    }

    /// Starts a pass: turns that a shorter inactive interval (a reload)
    /// brought forward come due by it.
    pub(crate) fn begin_pass(&mut self, now: Instant, inactive_interval: Duration) {
        self.pass = (Some(now), 0, 0);
        self.inactive_interval = inactive_interval;
        let refused_by = now.checked_add(rejected_retry(inactive_interval));
        let rare_by = now.checked_add(inactive_interval);
        for sim in &mut self.sims {
            let Some(due) = sim.due_at else {
                continue;
            };
            match sim.lifecycle {
                Lifecycle::Refused => sim.due_at = Some(due.min(refused_by.unwrap_or(due))),
                // The inactive tier switched off: every refresh again.
                Lifecycle::Inactive | Lifecycle::Unknown if inactive_interval.is_zero() => {
                    sim.due_at = None;
                }
                _ => sim.due_at = Some(due.min(rare_by.unwrap_or(due))),
            }
        }
    }

    /// Ends a pass: one in which several requests failed and none was
    /// answered is the API's outage, whose failures do not count against the
    /// SIMs. A single failing request says nothing of the others, so a fleet
    /// of one batch still halves it to find its bad ICCID.
    pub(crate) fn end_pass(&mut self) {
        if let (Some(started), 0, failed) = self.pass
            && failed > 1
        {
            self.outage_since.get_or_insert(started);
        }
    }

    /// Records how a request for `positions` went (see the module doc).
    pub(crate) fn record(
        &mut self,
        positions: &[usize],
        outcome: Outcome<'_>,
        now: Instant,
        timing: Timing,
    ) {
        let inactive_interval = timing.inactive_interval;
        // The configuration bounds the interval; were it to overflow, the
        // SIM would simply be asked for every refresh.
        let rarely = (!inactive_interval.is_zero())
            .then(|| now.checked_add(inactive_interval))
            .flatten();
        match outcome {
            Outcome::Answered { returned, rejected } => {
                // Only an answer that is not all refusals says the API works
                // again: an API refusing everything still refuses lone ICCIDs.
                let works = rejected.len() < positions.len();
                if works {
                    self.pass.1 += 1;
                }
                if let Some(since) = self.outage_since.take_if(|_| works) {
                    // The API answers again: what failed meanwhile is asked at once.
                    for sim in &mut self.sims {
                        if sim.failed_at.is_some_and(|at| at >= since) {
                            sim.failures = 0;
                            sim.failures_alone = 0;
                            if matches!(sim.lifecycle, Lifecycle::Failing { .. }) {
                                sim.due_at = Some(now);
                            }
                        }
                    }
                }
                for &position in positions {
                    let Some(sim) = self.sims.get_mut(position) else {
                        continue;
                    };
                    sim.failures = 0;
                    sim.failures_alone = 0;
                    if let Some(&(_, status)) = returned.iter().find(|(p, _)| *p == position) {
                        sim.answered_at = Some(now);
                        sim.unanswered = false;
                        sim.exported = true;
                        sim.missing = false;
                        sim.inactive_status = is_inactive_status(status);
                        (sim.lifecycle, sim.due_at) = match rarely {
                            Some(due) if sim.inactive_status => (Lifecycle::Inactive, Some(due)),
                            _ => (Lifecycle::Active, None),
                        };
                    } else if rejected.contains(&position) {
                        sim.unanswered = true;
                        sim.missing = true;
                        sim.lifecycle = Lifecycle::Refused;
                        sim.due_at = now.checked_add(rejected_retry(inactive_interval));
                    } else {
                        sim.unanswered = true;
                        sim.missing = true;
                        sim.lifecycle = Lifecycle::Unknown;
                        // With the inactive tier off, asked for every refresh.
                        sim.due_at = rarely;
                    }
                }
            }
            Outcome::Failed => {
                self.pass.2 += 1;
                let alone = positions.len() == 1;
                for &position in positions {
                    let Some(sim) = self.sims.get_mut(position) else {
                        continue;
                    };
                    sim.unanswered = true;
                    sim.failed_at = Some(now);
                    sim.failures = sim.failures.saturating_add(1);
                    if sim.lifecycle == Lifecycle::Refused {
                        sim.due_at = now.checked_add(rejected_retry(inactive_interval));
                        continue;
                    }
                    sim.lifecycle = Lifecycle::Failing {
                        rare: sim.lifecycle.is_rare(),
                    };
                    // In company, the next refresh asks again in a smaller
                    // group; alone, the SIM backs off.
                    if alone {
                        sim.failures_alone = sim.failures_alone.saturating_add(1);
                    }
                    let wait = timing.backoff(sim.failures_alone);
                    sim.due_at = Some(now.checked_add(wait).unwrap_or(now));
                }
            }
            Outcome::NotAnswered => {
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
        let mut out = std::mem::take(&mut self.dropped);
        out.extend(self.unexport_stale(now, stale_after, inactive_interval, |sim| sim.unanswered));
        out
    }

    /// Takes off /metrics the SIMs that `asked` selects whose answer is older
    /// than their staleness (`stale_after`; for SUSPENDED and RETIRED SIMs 3x
    /// the inactive interval if longer); returns their ICCIDs.
    fn unexport_stale(
        &mut self,
        now: Instant,
        stale_after: Duration,
        inactive_interval: Duration,
        asked: impl Fn(&SimState) -> bool,
    ) -> HashSet<String> {
        let inactive_stale =
            stale_after.max(inactive_interval.saturating_mul(INACTIVE_STALE_INTERVALS));
        let mut out = HashSet::new();
        for (iccid, sim) in self.followed.iter().zip(&mut self.sims) {
            if !sim.exported || !asked(sim) {
                continue;
            }
            let stale = if sim.inactive_status {
                inactive_stale
            } else {
                stale_after
            };
            if sim
                .answered_at
                .is_none_or(|at| now.saturating_duration_since(at) > stale)
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
