//! The lifecycle rules proved against a small reference model.
//!
//! Each seed makes a fleet whose SIMs the fake API answers, omits (unknown to
//! the account), refuses (400) or fails (500), and then drives the schedule,
//! isolation, pacer and budget limiter the way the poller does, in virtual
//! time (tokio's paused clock), through random sequences of those, outages,
//! 429s, revoked credentials, an API refusing everything, reloads,
//! re-shards, restarts that keep the state (`--storage.path`) and webhook
//! events that get SIMs asked for early. After every request and every refresh it checks what the rules
//! say: no window of the budget exceeded; a refused SIM never shares a
//! request; every SIM that answers asked for within its tier's bound; a SIM
//! leaves /metrics only when no longer followed or itself unanswered for
//! stale-after; isolation and `monogoto_up` as the model has them.
//!
//! A seed that fails is kept in [`REGRESSIONS`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Slice;
use super::chooser::{Chooser, Work};
use super::hints::{EventNews, Hints};
use super::isolate::{Isolation, read_isolating};
use super::schedule::{Batch, Lifecycle, Outcome, Pacer, Restored, Schedule, Timing, plan};
use crate::config::PollConfig;
use crate::monogoto::budget::{Budget, Limiter};
use crate::monogoto::paging::BatchAnswer;
use crate::monogoto::{ApiError, ThingStatus};
use crate::shard::Shard;
use crate::storage::state::Clock;

/// Seeds that once failed: run first, always.
const REGRESSIONS: &[u64] = &[2298, 2413, 4068, 103, 709, 1914, 1989, 3614, 4605, 5223];
/// Seeds run besides the regressions; `MODEL_SEEDS=N` runs N of them (a
/// longer search for a failing seed), from `MODEL_SEEDS_FROM` (0).
const SEEDS: u64 = 100;
/// Refreshes a seed drives.
const REFRESHES: usize = 150;
/// How long a refresh may take against its target.
const PASS_OVER_TARGET: f64 = 1.2;
/// Requests steady passes may send against what the plan counted for them.
const PASS_OVER_PLAN: f64 = 1.2;

/// Passes with no fault, no change of what is followed and no refused ICCID
/// isolated, and what they sent.
#[derive(Default, Clone, Copy)]
struct Steady {
    passes: usize,
    requests: f64,
    planned: f64,
}

#[test]
fn the_lifecycle_follows_the_model() {
    let seeds = std::env::var("MODEL_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SEEDS);
    // `MODEL_SEEDS_FROM=K` starts a longer search where an earlier one ended.
    let from: u64 = std::env::var("MODEL_SEEDS_FROM")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let (mut steps, mut counted) = (0, 0);
    for seed in REGRESSIONS.iter().copied().chain(from..from + seeds) {
        let (seed_steps, plan_checked) = run(seed);
        steps += seed_steps;
        counted += usize::from(plan_checked);
    }
    assert!(steps >= 10_000, "{steps} steps");
    // Enough seeds have steady passes for the plan's count to be checked.
    assert!(
        counted as u64 * 6 >= seeds,
        "{counted} seeds checked the plan"
    );
}

/// Drives one seed; returns the requests and refreshes it checked, and
/// whether it had enough steady passes to check the plan's count.
fn run(seed: u64) -> (usize, bool) {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
        .block_on(World::new(seed).drive())
}

/// What the fake API does with a SIM named in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    Active,
    Suspended,
    /// Not in the account: answered without it.
    Unknown,
    /// Any request naming it is answered 400.
    Refused,
    /// Any request naming it is answered 500.
    Poison,
}

impl Truth {
    fn random(rng: &mut fastrand::Rng) -> Truth {
        match rng.u32(0..100) {
            0..60 => Truth::Active,
            60..80 => Truth::Suspended,
            80..88 => Truth::Unknown,
            88..95 => Truth::Refused,
            _ => Truth::Poison,
        }
    }
}

/// What the fake API does with every request for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// 500 to everything.
    Outage,
    /// 401 to everything: the credentials were revoked.
    Revoked,
    /// 429 to everything: another client spends the account's budget.
    Throttled,
    /// 400 to everything: the API refuses requests, not ICCIDs.
    Refusing,
}

/// The model's state of a SIM (the schedule's, with Failing as one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    New,
    Active,
    Inactive,
    Unknown,
    Refused,
    Failing,
}

impl From<Lifecycle> for State {
    fn from(l: Lifecycle) -> State {
        match l {
            Lifecycle::New => State::New,
            Lifecycle::Active => State::Active,
            Lifecycle::Inactive => State::Inactive,
            Lifecycle::Unknown => State::Unknown,
            Lifecycle::Refused => State::Refused,
            Lifecycle::Failing { .. } => State::Failing,
        }
    }
}

/// What the model knows of one SIM.
#[derive(Debug, Clone)]
struct Sim {
    truth: Truth,
    state: State,
    answered_at: Option<Instant>,
    /// Its last answer said SUSPENDED.
    suspended: bool,
    /// Asked for since its last answer.
    asked_since: bool,
    /// On /metrics.
    exported: bool,
    last_asked: Option<Instant>,
    /// Since when it has been followed and the API would return its data.
    data_since: Option<Instant>,
    /// When an answer last put it in (or kept it in) a slow-tier state.
    rare_turn_at: Option<Instant>,
    /// Since when it has been followed and would be answered.
    clean_since: Option<Instant>,
}

impl Sim {
    fn new(truth: Truth) -> Sim {
        Sim {
            truth,
            state: State::New,
            answered_at: None,
            suspended: false,
            asked_since: false,
            exported: false,
            last_asked: None,
            rare_turn_at: None,
            data_since: None,
            clean_since: None,
        }
    }

    /// Whether the API answers a request for it alone (refused counts: the
    /// 400 is its answer).
    fn answerable(&self, fault: Fault) -> bool {
        fault == Fault::None && self.truth != Truth::Poison
    }
}

struct World {
    seed: u64,
    rng: fastrand::Rng,
    poll: PollConfig,
    budget: Budget,
    limiter: Limiter,
    pacer: Pacer,
    schedule: Schedule,
    isolation: Isolation,
    /// Every ICCID there is, configured or not.
    universe: Vec<String>,
    configured: HashSet<String>,
    shard: Shard,
    sims: HashMap<String, Sim>,
    fault: Fault,
    fault_left: usize,
    /// Every request's send time, for the budget.
    sent: Vec<Instant>,
    /// Unfollowed and still served: gone at the next publication.
    dropped: HashSet<String>,
    /// The poller's count of this publication's requests, for `monogoto_up`.
    slice: Slice,
    /// The model's isolation.
    isolating: bool,
    /// Requests of this publication that said the API works / does not.
    good: usize,
    bad: usize,
    steps: usize,
    steady: Steady,
    /// When a fault or a change of what is followed last happened.
    disturbed_at: Option<Instant>,
    /// The last pass's target.
    last_target: Duration,
    /// When the last pass that split a batch ended.
    isolated_at: Option<Instant>,
    /// The refresh the next check is about, for messages.
    refresh: usize,
    /// SIMs webhook events named, not yet asked for.
    hints: Hints,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = fastrand::Rng::with_seed(seed);
        let budget: Budget = ["5/s,30/10s", "4/s,20/10s", "10/s", "3/s,100/min"][rng.usize(0..4)]
            .parse()
            .expect("valid budget");
        let poll = PollConfig {
            interval: Duration::from_secs(rng.u64(1..=3)),
            inactive_interval: Duration::from_secs(rng.u64(60..=120)),
            batch_size: rng.usize(2..=6),
            concurrency: 1,
            ..PollConfig::default()
        };
        let universe: Vec<String> = (0..rng.usize(8..=48))
            .map(|i| format!("8988{seed:06}{i:09}"))
            .collect();
        let sims = universe
            .iter()
            .map(|iccid| (iccid.clone(), Sim::new(Truth::random(&mut rng))))
            .collect();
        let configured = universe
            .iter()
            .filter(|_| rng.u32(0..10) < 9)
            .cloned()
            .collect();
        World {
            seed,
            poll,
            limiter: Limiter::new(&budget),
            budget,
            pacer: Pacer::default(),
            schedule: Schedule::default(),
            isolation: Isolation::default(),
            universe,
            configured,
            shard: Shard::default(),
            sims,
            fault: Fault::None,
            fault_left: 0,
            sent: Vec::new(),
            dropped: HashSet::new(),
            isolating: true,
            slice: Slice::default(),
            good: 0,
            bad: 0,
            steps: 0,
            steady: Steady::default(),
            isolated_at: None,
            last_target: Duration::ZERO,
            disturbed_at: None,
            refresh: 0,
            hints: Hints::default(),
            rng,
        }
    }

    fn fail(&self, what: &str) -> ! {
        self.context().fail(what)
    }

    fn context(&self) -> Context {
        Context {
            seed: self.seed,
            refresh: self.refresh,
        }
    }

    async fn drive(mut self) -> (usize, bool) {
        for refresh in 0..REFRESHES {
            self.refresh = refresh;
            let started = Instant::now();
            self.events(started);
            self.refresh_once(started).await;
            tokio::time::sleep_until(started + self.poll.interval).await;
            self.steps += 1;
        }
        let Steady {
            passes,
            requests,
            planned,
        } = self.steady;
        // Enough requests to average over: a few slow-tier turns falling
        // apart or together are whole requests either way.
        let checked = passes >= 10 && planned >= 20.0;
        if checked && requests > planned * PASS_OVER_PLAN + 2.0 {
            self.fail(&format!(
                "{passes} steady passes sent {requests} requests where the plan counted {planned:.1}"
            ));
        }
        (self.steps, checked)
    }

    fn followed(&self) -> Vec<String> {
        self.universe
            .iter()
            .filter(|i| self.configured.contains(*i) && self.shard.owns(i))
            .cloned()
            .collect()
    }

    /// Random events between refreshes: a SIM changes, a fault starts or
    /// ends, a reload or a re-shard changes what is followed.
    fn events(&mut self, now: Instant) {
        if self.fault_left == 0 {
            self.fault = Fault::None;
        } else {
            self.fault_left -= 1;
        }
        // A calm world (one seed in three) only sees its SIMs change, and
        // rarely: its steady passes check what the plan counts.
        let roll = if self.seed.is_multiple_of(3) {
            self.rng.u32(0..100).max(10) + self.rng.u32(0..3) * 100
        } else {
            self.rng.u32(0..100)
        };
        match roll {
            0..4 if self.fault == Fault::None => {
                self.fault = [
                    Fault::Outage,
                    Fault::Revoked,
                    Fault::Throttled,
                    Fault::Refusing,
                ][self.rng.usize(0..4)];
                self.fault_left = self.rng.usize(1..6);
            }
            4..16 => {
                let iccid = self.universe[self.rng.usize(0..self.universe.len())].clone();
                let truth = Truth::random(&mut self.rng);
                if let Some(sim) = self.sims.get_mut(&iccid) {
                    sim.truth = truth;
                }
            }
            16..19 => {
                let iccid = self.universe[self.rng.usize(0..self.universe.len())].clone();
                if !self.configured.remove(&iccid) {
                    self.configured.insert(iccid);
                }
            }
            19..21 => {
                let count = self.rng.u64(1..=3);
                self.shard = Shard {
                    index: self.rng.u64(0..count),
                    count,
                };
            }
            21..23 => self.restart(),
            // Webhook events name a few SIMs (followed or not).
            23..28 => {
                for _ in 0..self.rng.usize(1..=3) {
                    let iccid = &self.universe[self.rng.usize(0..self.universe.len())];
                    self.hints.add(iccid, now, EventNews::default());
                }
            }
            _ => {}
        }
        let followed: HashSet<String> = self.followed().into_iter().collect();
        for (iccid, sim) in &mut self.sims {
            let clean = followed.contains(iccid) && sim.answerable(self.fault);
            match (clean, sim.clean_since) {
                (true, None) => sim.clean_since = Some(now),
                (false, Some(_)) => sim.clean_since = None,
                _ => {}
            }
            let data = clean && matches!(sim.truth, Truth::Active | Truth::Suspended);
            match (data, sim.data_since) {
                (true, None) => sim.data_since = Some(now),
                (false, Some(_)) => sim.data_since = None,
                _ => {}
            }
        }
    }

    /// A restart with `--storage.path`: a new process takes back each SIM's
    /// turn (through the wall clock, as the state file has it) and the budget
    /// spent, with a pacer, isolation and publication of its own. What the
    /// model expects does not change: a restart costs no turn and no budget.
    fn restart(&mut self) {
        let clock = Clock::now();
        let followed = self.schedule.followed().clone();
        let saved: Vec<(String, Restored)> = followed
            .iter()
            .enumerate()
            .map(|(position, iccid)| {
                let turn = self.schedule.turn(position, &clock);
                let served = self.sims.get(iccid).is_some_and(|s| s.exported);
                let served_since = turn.answered_at.filter(|_| served);
                (iccid.clone(), Restored { turn, served_since })
            })
            .collect();
        let outage_since = self.schedule.outage_since().map(|at| clock.wall_ns(at));
        let mut schedule = Schedule::default();
        schedule.restore(saved, outage_since, &clock, self.poll.inactive_interval);
        schedule.follow(followed, None, clock.instant);
        self.schedule = schedule;
        // Unfollowed SIMs not yet published are not in the state: gone.
        for iccid in std::mem::take(&mut self.dropped) {
            if let Some(sim) = self.sims.get_mut(&iccid) {
                sim.exported = false;
            }
        }
        let spent = self.limiter.spent();
        self.limiter = Limiter::new(&self.budget);
        self.limiter.restore(&spent);
        self.pacer = Pacer::default();
        self.isolation = Isolation::default();
        self.isolating = true;
        self.slice = Slice::default();
        (self.good, self.bad) = (0, 0);
    }

    async fn refresh_once(&mut self, started: Instant) {
        let followed = self.followed();
        let before: HashSet<String> = self.schedule.followed().iter().cloned().collect();
        let now_followed: HashSet<String> = followed.iter().cloned().collect();
        for iccid in before.difference(&now_followed) {
            let sim = self.sims.get_mut(iccid).expect("in the universe");
            if sim.exported {
                self.dropped.insert(iccid.clone());
            }
        }
        for iccid in now_followed.difference(&before) {
            let sim = self.sims.get_mut(iccid).expect("in the universe");
            let truth = sim.truth;
            let (clean_since, data_since) = (sim.clean_since, sim.data_since);
            *sim = Sim {
                clean_since,
                data_since,
                ..Sim::new(truth)
            };
        }
        if before != now_followed {
            self.schedule.follow(Arc::new(followed), None, started);
        }
        // Now and then a discovery listing says which SIMs are SUSPENDED.
        if self.rng.u32(0..20) == 0 {
            let listed = self.listing(started);
            let followed = self.schedule.followed().clone();
            self.schedule.follow(followed, Some(&listed), started);
        }
        self.check_states("after follow");
        let fleet = self
            .schedule
            .fleet(self.poll.inactive_interval, self.poll.batch_size);
        let plan = plan(fleet, &self.poll, &self.budget, Duration::from_secs(3600));
        if self.schedule.has_dropped() {
            self.publish(started, &plan);
        }
        // The gap since a SIM's last ask spans the last pass, planned then.
        let target = plan.target.max(self.last_target);
        self.last_target = plan.target;
        self.check_bounds(started, target);
        let timing = Timing {
            inactive_interval: self.poll.inactive_interval,
            retry_base: plan.target,
        };
        self.schedule
            .begin_pass(started, self.poll.inactive_interval);
        let batches = self.schedule.batches(
            started,
            self.poll.batch_size,
            plan.inactive_batches_per_refresh,
        );
        if std::env::var("MODEL_TRACE").is_ok() {
            let states: Vec<Vec<_>> = batches
                .iter()
                .map(|b| {
                    b.positions
                        .iter()
                        .map(|&p| {
                            (
                                State::from(self.schedule.lifecycle(p)),
                                self.schedule.due_at(p).map(|d| d - started),
                                self.schedule.followed()[p].clone(),
                            )
                        })
                        .collect()
                })
                .collect();
            eprintln!(
                "seed {} refresh {} batches {states:?}",
                self.seed, self.refresh
            );
        }
        self.check_every_refresh_sims_are_asked(&batches);
        let mut revoked = false;
        let mut requests = 0;
        let mut batches_sent = 0;
        if self.fault != Fault::None || before != now_followed {
            self.disturbed_at = Some(started);
        }
        // The slow tier comes due in step with what moved it: a pass is
        // steady once a slow-tier turn has passed since the last fault or change.
        let settle = self.poll.inactive_interval.mul_f64(1.5);
        let steady = self.disturbed_at.is_none_or(|at| started - at > settle);
        // What each request carries is chosen as the poller chooses it:
        // hinted SIMs at most every other request, the pass's batches else.
        let hints = std::mem::take(&mut self.hints);
        let index: HashMap<String, usize> = self
            .schedule
            .followed()
            .iter()
            .enumerate()
            .map(|(position, iccid)| (iccid.clone(), position))
            .collect();
        let hintable: Vec<bool> = (0..index.len())
            .map(|p| self.schedule.hintable(p))
            .collect();
        let chooser = Chooser::new(batches, &index, &hintable, &hints, self.poll.batch_size);
        let mut hinted_requests = 0;
        while chooser.pull().is_some() {
            let work = if revoked {
                chooser.choose_regular()
            } else {
                chooser.choose()
            };
            let Some(Work { positions, hinted }) = work else {
                break;
            };
            hinted_requests += usize::from(hinted);
            let iccids: Vec<String> = positions
                .iter()
                .map(|&p| self.schedule.followed()[p].clone())
                .collect();
            if revoked {
                // Not sent: the poller stops at rejected credentials.
                let now = Instant::now();
                self.schedule
                    .record(&positions, Outcome::NotAnswered, now, timing);
                self.model_not_answered(&iccids);
                continue;
            }
            let answered: Vec<bool> = positions
                .iter()
                .map(|&p| self.schedule.was_answered(p))
                .collect();
            let parts = std::sync::Mutex::new(Vec::new());
            let result = {
                let api = &*self;
                let parts = &parts;
                let spacing = plan.spacing;
                let send = move |part: &[String], _: &[bool]| {
                    let part = part.to_vec();
                    async move {
                        api.pacer.wait(spacing).await;
                        api.limiter.acquire(None).await.expect("no deadline");
                        let now = Instant::now();
                        let answer = api.answer(&part);
                        parts
                            .lock()
                            .expect("lock")
                            .push((now, part, answer.is_ok()));
                        answer
                    }
                };
                read_isolating(&self.isolation, &iccids, &answered, &send).await
            };
            let parts = parts.into_inner().expect("lock");
            requests += parts.len();
            batches_sent += 1;
            self.check_parts(&parts, hinted);
            let now = Instant::now();
            let isolating_before = self.isolating;
            self.slice.count(&result);
            match &result {
                Ok(answer) => {
                    let returned: Vec<(usize, &str)> = answer
                        .things
                        .iter()
                        .filter_map(|t| {
                            let at = iccids.iter().position(|i| *i == t.iccid)?;
                            Some((positions[at], t.provision_status.as_str()))
                        })
                        .collect();
                    let rejected: Vec<usize> = answer
                        .rejected
                        .iter()
                        .filter_map(|r| Some(positions[iccids.iter().position(|i| i == r)?]))
                        .collect();
                    self.schedule.record(
                        &positions,
                        Outcome::Answered {
                            returned: &returned,
                            rejected: &rejected,
                        },
                        now,
                        timing,
                    );
                    self.model_answered(&iccids, answer, now);
                }
                Err(e) => {
                    // The schedule classifies the error by its own rule; the
                    // model by what the fake API did.
                    self.schedule
                        .record(&positions, Outcome::of_error(e), now, timing);
                    // The poller stops sending at rejected credentials.
                    revoked = e.is_auth();
                    match self.fault {
                        Fault::Throttled => self.model_not_answered(&iccids),
                        Fault::Revoked => {
                            self.bad += 1;
                            self.model_not_answered(&iccids);
                        }
                        _ => {
                            self.bad += 1;
                            self.model_failed(&iccids, isolating_before);
                        }
                    }
                }
            }
            if parts.iter().any(|(_, _, ok)| *ok) {
                self.isolating = true;
            }
            if self.isolating != self.isolation.is_on() {
                self.fail(&format!(
                    "isolation {} where the model says {}",
                    self.isolation.is_on(),
                    self.isolating
                ));
            }
            self.check_states("after a request");
        }
        drop(chooser);
        self.hints = hints;
        self.schedule.end_pass();
        self.publish(Instant::now(), &plan);
        if std::env::var("MODEL_TRACE").is_ok() {
            eprintln!(
                "seed {} refresh {} took {:?} target {:?} spacing {:?} requests {requests} batches {batches_sent} fault {:?} planned {:.1}",
                self.seed,
                self.refresh,
                Instant::now() - started,
                plan.target,
                plan.spacing,
                self.fault,
                plan.requests_per_refresh
            );
        }
        // What a steady pass sends is what the plan counted.
        let split = requests > batches_sent;
        if split {
            self.disturbed_at = Some(Instant::now());
            // Isolating refused ICCIDs costs requests the plan cannot foresee:
            // the bounds count from the end of such a pass.
            self.isolated_at = Some(Instant::now());
        }
        // Passes that sent nothing count too: the plan is an average.
        // Hinted requests are not in the plan.
        if steady && !split && hinted_requests == 0 {
            self.steady.passes += 1;
            self.steady.requests += requests as f64;
            self.steady.planned += plan.requests_per_refresh;
        }
        self.steps += requests;
    }

    /// A discovery listing's states of the followed SIMs the account has,
    /// taken by the model as the rules say: an Active SIM listed SUSPENDED
    /// is Inactive and due at once, an Inactive one listed otherwise Active.
    fn listing(&mut self, now: Instant) -> HashMap<String, bool> {
        let mut listed = HashMap::new();
        for iccid in self.schedule.followed().iter() {
            let sim = self.sims.get_mut(iccid).expect("known");
            let suspended = match sim.truth {
                Truth::Suspended => true,
                Truth::Active => false,
                _ => continue,
            };
            listed.insert(iccid.clone(), suspended);
            let state = match (suspended, sim.state) {
                (true, State::Active) => State::Inactive,
                (false, State::Inactive) => State::Active,
                _ => continue,
            };
            sim.state = state;
            sim.suspended = suspended;
            sim.rare_turn_at = None;
            // Its tier's bound counts from the change.
            sim.clean_since = sim.clean_since.map(|_| now);
        }
        listed
    }

    /// The fake API's answer to one request.
    fn answer(&self, part: &[String]) -> Result<BatchAnswer, ApiError> {
        let status = |code| ApiError::Status {
            endpoint: "status",
            code,
            body: String::new(),
        };
        match self.fault {
            Fault::Outage => return Err(status(500)),
            Fault::Throttled => return Err(status(429)),
            Fault::Refusing => return Err(status(400)),
            Fault::Revoked => {
                return Err(ApiError::Unauthorized {
                    endpoint: "status",
                    hint: "revoked",
                });
            }
            Fault::None => {}
        }
        let truths: Vec<Truth> = part.iter().map(|i| self.sims[i].truth).collect();
        if truths.contains(&Truth::Refused) {
            return Err(status(400));
        }
        if truths.contains(&Truth::Poison) {
            return Err(status(500));
        }
        Ok(BatchAnswer {
            things: part
                .iter()
                .zip(truths)
                .filter_map(|(iccid, truth)| {
                    let status = match truth {
                        Truth::Active => "ACTIVE",
                        Truth::Suspended => "SUSPENDED",
                        _ => return None,
                    };
                    Some(ThingStatus {
                        iccid: iccid.clone(),
                        provision_status: status.to_string(),
                        ..ThingStatus::default()
                    })
                })
                .collect(),
            ..BatchAnswer::default()
        })
    }

    /// Each request: within every window of the budget; a SIM the model has
    /// as refused only ever alone.
    fn check_parts(&mut self, parts: &[(Instant, Vec<String>, bool)], hinted: bool) {
        for (at, part, _) in parts {
            self.sent.push(*at);
            let inactive = self.poll.inactive_interval;
            for iccid in part {
                let sim = &self.sims[iccid];
                // A slow-tier SIM whose last ask settled its state waits its
                // turn: not asked again within most of an inactive interval
                // (unless an event named it).
                if let Some(turn) = sim.rare_turn_at
                    && !hinted
                    && *at - turn < inactive.mul_f64(0.9)
                {
                    self.fail(&format!(
                        "{iccid} ({:?}) asked again after {:?}",
                        sim.state,
                        *at - turn
                    ));
                }
                self.sims.get_mut(iccid).expect("known").last_asked = Some(*at);
            }
            if part.len() > 1
                && let Some(refused) = part.iter().find(|i| self.sims[*i].state == State::Refused)
            {
                self.fail(&format!("refused {refused} shared a request: {part:?}"));
            }
        }
        for window in self.budget.windows() {
            let last = *self.sent.last().expect("sent");
            let within = self
                .sent
                .iter()
                .rev()
                .take_while(|t| **t + window.period > last)
                .count();
            if within > window.requests as usize {
                self.fail(&format!("{within} requests in a {window} window"));
            }
        }
    }

    fn model_answered(&mut self, iccids: &[String], answer: &BatchAnswer, now: Instant) {
        self.good += 1;
        let context = self.context();
        let inactive_tier = !self.poll.inactive_interval.is_zero();
        for iccid in iccids {
            let fault = self.fault;
            let sim = self.sims.get_mut(iccid).expect("known");
            if let Some(thing) = answer.things.iter().find(|t| t.iccid == *iccid) {
                let suspended = thing.provision_status == "SUSPENDED";
                if suspended != (sim.truth == Truth::Suspended) {
                    context.fail(&format!("{iccid} answered {}", thing.provision_status));
                }
                sim.state = if suspended && inactive_tier {
                    State::Inactive
                } else {
                    State::Active
                };
                sim.suspended = suspended;
                sim.answered_at = Some(now);
                sim.asked_since = false;
                sim.exported = true;
                sim.rare_turn_at = (sim.state == State::Inactive).then_some(now);
            } else if answer.rejected.contains(iccid) {
                if sim.truth != Truth::Refused && fault != Fault::Refusing {
                    context.fail(&format!("{iccid} ({:?}) taken for refused", sim.truth));
                }
                sim.state = State::Refused;
                sim.asked_since = true;
                sim.rare_turn_at = Some(now);
            } else {
                if sim.truth != Truth::Unknown {
                    context.fail(&format!("{iccid} ({:?}) taken for unknown", sim.truth));
                }
                sim.state = State::Unknown;
                sim.asked_since = true;
                sim.rare_turn_at = inactive_tier.then_some(now);
            }
        }
    }

    fn model_failed(&mut self, iccids: &[String], was_isolating: bool) {
        let refused_alone = iccids
            .iter()
            .all(|i| self.sims[i].truth == Truth::Refused || self.fault == Fault::Refusing);
        // The model's own record of who was answered, not the schedule's.
        let answered_before = iccids
            .iter()
            .filter(|i| self.sims[*i].answered_at.is_some())
            .count();
        if was_isolating && iccids.len() > 1 && refused_alone && answered_before >= 2 {
            self.isolating = false;
        }
        for iccid in iccids {
            let sim = self.sims.get_mut(iccid).expect("known");
            sim.asked_since = true;
            sim.rare_turn_at = None;
            if sim.state != State::Refused {
                sim.state = State::Failing;
            }
        }
    }

    fn model_not_answered(&mut self, iccids: &[String]) {
        for iccid in iccids {
            let sim = self.sims.get_mut(iccid).expect("known");
            sim.asked_since = true;
            // Its turn stays: asked again as soon as it can be.
            sim.rare_turn_at = None;
        }
    }

    /// The schedule's state of every followed SIM is the model's.
    fn check_states(&self, when: &str) {
        for (position, iccid) in self.schedule.followed().iter().enumerate() {
            let have = State::from(self.schedule.lifecycle(position));
            let want = self.sims[iccid].state;
            if have != want {
                self.fail(&format!(
                    "{when}: {iccid} is {have:?}, the model says {want:?}"
                ));
            }
        }
    }

    /// Every SIM of the every-refresh tiers is in this refresh's requests.
    fn check_every_refresh_sims_are_asked(&self, batches: &[Batch]) {
        let asked: HashSet<usize> = batches.iter().flat_map(|b| b.positions.clone()).collect();
        for (position, iccid) in self.schedule.followed().iter().enumerate() {
            let sim = &self.sims[iccid];
            if matches!(sim.state, State::New | State::Active) && !asked.contains(&position) {
                self.fail(&format!("{iccid} ({:?}) left out of a refresh", sim.state));
            }
        }
    }

    /// Every SIM that the API answers was asked for within its tier's bound
    /// since it became answerable.
    fn check_bounds(&self, now: Instant, target: Duration) {
        let inactive = self.poll.inactive_interval;
        // A pass takes about a target; one refresh starts at most an
        // interval after the last one began.
        let refresh =
            target.mul_f64(PASS_OVER_TARGET).max(self.poll.interval) + Duration::from_secs(1);
        // Isolating refused ICCIDs spends requests the plan cannot foresee,
        // and the budget's windows hold them until the longest has passed:
        // the bounds count from then.
        let longest_window = self
            .budget
            .windows()
            .iter()
            .map(|w| w.period)
            .max()
            .unwrap_or_default();
        let settled = self.isolated_at.map(|at| at + longest_window);
        for iccid in self.schedule.followed().iter() {
            let sim = &self.sims[iccid];
            let Some(clean_since) = sim.clean_since else {
                continue;
            };
            let since = sim
                .last_asked
                .into_iter()
                .chain(settled)
                .fold(clean_since, Instant::max);
            let bound = match sim.state {
                State::New | State::Active => refresh * 2,
                State::Inactive | State::Unknown | State::Refused => inactive.mul_f64(1.5),
                State::Failing => inactive + refresh * 2,
            };
            let waited = now.saturating_duration_since(since);
            if waited > bound {
                self.fail(&format!(
                    "{iccid} ({:?}, {:?}) waited {waited:?}, bound {bound:?}",
                    sim.state, sim.truth
                ));
            }
            // Asked is not enough: a SIM the API answers is answered, whatever
            // the SIMs it was batched with (one failing batch-mate included).
            if let Some(data_since) = sim.data_since {
                let since = sim
                    .answered_at
                    .into_iter()
                    .chain(settled)
                    .fold(data_since, Instant::max);
                let bound = inactive.mul_f64(1.5) + refresh * 6;
                let waited = now.saturating_duration_since(since);
                if waited > bound {
                    self.fail(&format!(
                        "{iccid} ({:?}, {:?}) unanswered for {waited:?}, bound {bound:?}",
                        sim.state, sim.truth
                    ));
                }
            }
        }
    }

    /// Publishes as the poller does: evicts, serves the answers, sets `up`;
    /// checks /metrics and `up` against the model.
    fn publish(&mut self, now: Instant, plan: &super::schedule::Plan) {
        let evicted = self
            .schedule
            .evictions(now, plan.stale_after, self.poll.inactive_interval);
        // The model: unfollowed ones go; a followed one goes once asked for
        // since its answer and older than its staleness.
        let inactive_stale = plan
            .stale_after
            .max(self.poll.inactive_interval.saturating_mul(3));
        let mut want: HashSet<String> = std::mem::take(&mut self.dropped);
        let followed: HashSet<&String> = self.schedule.followed().iter().collect();
        for (iccid, sim) in &mut self.sims {
            if !followed.contains(iccid) || !sim.exported || !sim.asked_since {
                continue;
            }
            let stale = if sim.suspended {
                inactive_stale
            } else {
                plan.stale_after
            };
            if sim.answered_at.is_some_and(|at| now - at > stale) {
                sim.exported = false;
                want.insert(iccid.clone());
            }
        }
        if evicted != want {
            for iccid in evicted.symmetric_difference(&want) {
                eprintln!("{iccid}: {:?} now {:?}", self.sims.get(iccid), now);
            }
            self.fail(&format!("evicted {evicted:?}, the model says {want:?}"));
        }
        for iccid in &want {
            self.sims.get_mut(iccid).expect("known").exported = false;
        }
        let up = (self.good + self.bad > 0).then_some(self.bad == 0);
        if self.slice.up() != up {
            self.fail(&format!("up {:?}, the model says {up:?}", self.slice.up()));
        }
        self.slice = Slice::default();
        self.good = 0;
        self.bad = 0;
    }
}

/// Which seed and refresh a failure is about.
#[derive(Clone, Copy)]
struct Context {
    seed: u64,
    refresh: usize,
}

impl Context {
    fn fail(self, what: &str) -> ! {
        panic!(
            "seed {} at refresh {}: {what} (keep the seed in REGRESSIONS)",
            self.seed, self.refresh
        )
    }
}
