//! A SIM's place in the schedule as the state file keeps it, and back.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::{Lifecycle, Schedule, SimState};
use crate::storage::state::{Clock, FLAG_INACTIVE_STATUS, FLAG_MISSING, FLAG_UNANSWERED, Turn};

impl Lifecycle {
    fn code(self) -> u8 {
        match self {
            Lifecycle::New => 0,
            Lifecycle::Active => 1,
            Lifecycle::Inactive => 2,
            Lifecycle::Unknown => 3,
            Lifecycle::Refused => 4,
            Lifecycle::Failing { rare: false } => 5,
            Lifecycle::Failing { rare: true } => 6,
        }
    }

    fn from_code(code: u8) -> Option<Lifecycle> {
        Some(match code {
            0 => Lifecycle::New,
            1 => Lifecycle::Active,
            2 => Lifecycle::Inactive,
            3 => Lifecycle::Unknown,
            4 => Lifecycle::Refused,
            5 => Lifecycle::Failing { rare: false },
            6 => Lifecycle::Failing { rare: true },
            _ => return None,
        })
    }
}

/// How a SIM's turn was restored.
pub(crate) struct Restored {
    pub(crate) turn: Turn,
    /// When the answer served for it arrived, if one is served.
    pub(crate) served_since: Option<u64>,
}

impl Schedule {
    /// The place of the SIM at `position`.
    pub(crate) fn turn(&self, position: usize, clock: &Clock) -> Turn {
        let Some(sim) = self.sims.get(position) else {
            return Turn::default();
        };
        let ns = |at: Option<Instant>| at.map(|at| clock.wall_ns(at));
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        Turn {
            lifecycle: sim.lifecycle.code(),
            flags: flag(sim.inactive_status, FLAG_INACTIVE_STATUS)
                | flag(sim.unanswered, FLAG_UNANSWERED)
                | flag(sim.missing, FLAG_MISSING),
            answered_at: ns(sim.answered_at),
            due_at: ns(sim.due_at),
            failed_at: ns(sim.failed_at),
            failures: sim.failures,
            failures_alone: sim.failures_alone,
        }
    }

    /// Stops serving the SIMs whose answer is older than their staleness
    /// (as [`Schedule::evictions`] has it, whether asked for since or not):
    /// what a start must not serve. Returns their ICCIDs.
    pub(crate) fn forget_stale(
        &mut self,
        now: Instant,
        stale_after: Duration,
        inactive_interval: Duration,
    ) -> HashSet<String> {
        self.unexport_stale(now, stale_after, inactive_interval, |_| true)
    }

    /// Since when every request has failed, if they do.
    pub(crate) fn outage_since(&self) -> Option<Instant> {
        self.outage_since
    }

    /// Takes the places a previous process left SIMs in: each is used when
    /// its SIM is followed next (see [`Schedule::follow`]); those not
    /// followed then are dropped. A SIM whose answer was lost (answered
    /// after the last publication the file holds) is asked for at once.
    pub(crate) fn restore(
        &mut self,
        sims: impl IntoIterator<Item = (String, Restored)>,
        outage_since: Option<u64>,
        clock: &Clock,
        inactive_interval: Duration,
    ) {
        // A turn is never further ahead than its longest wait.
        let ahead = inactive_interval.max(super::rejected_retry(inactive_interval));
        let instant = |ns: Option<u64>| ns.map(|ns| clock.instant(ns, ahead));
        self.restored = sims
            .into_iter()
            .filter_map(|(iccid, Restored { turn, served_since })| {
                let lifecycle = Lifecycle::from_code(turn.lifecycle)?;
                let mut sim = SimState {
                    lifecycle,
                    inactive_status: turn.flags & FLAG_INACTIVE_STATUS != 0,
                    answered_at: instant(turn.answered_at),
                    unanswered: turn.flags & FLAG_UNANSWERED != 0,
                    exported: served_since.is_some(),
                    missing: turn.flags & FLAG_MISSING != 0,
                    due_at: instant(turn.due_at),
                    failures: turn.failures,
                    failures_alone: turn.failures_alone,
                    failed_at: instant(turn.failed_at),
                };
                // The answer served is the one that counts: one that came
                // later was lost with the publication it waited for.
                if let Some(served) = served_since
                    && turn.answered_at != Some(served)
                {
                    let lost = turn.answered_at.is_some_and(|at| at > served);
                    sim.answered_at = instant(Some(served));
                    if lost && sim.due_at.is_some() {
                        sim.due_at = Some(clock.instant);
                    }
                }
                Some((iccid, sim))
            })
            .collect::<HashMap<_, _>>();
        self.outage_since = instant(outage_since);
    }
}
