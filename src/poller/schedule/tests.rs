//! The plan's arithmetic, and the schedule driven in virtual time (tokio's
//! paused clock) the way the poller drives it: passes of batches, each paced
//! and then let through the budget's windows.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::config::PollConfig;
use crate::monogoto::budget::{Budget, Limiter};

fn budget(s: &str) -> Budget {
    s.parse().expect("valid budget")
}

fn poll(interval_secs: u64, inactive_secs: u64) -> PollConfig {
    PollConfig {
        interval: Duration::from_secs(interval_secs),
        inactive_interval: Duration::from_secs(inactive_secs),
        ..PollConfig::default()
    }
}

fn fleet(active: usize, inactive: usize) -> Fleet {
    Fleet {
        active,
        inactive,
        ..Fleet::default()
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Asserts `d` is `secs` within a thousandth: the limiter keeps each window
/// a little longer than announced (an hour 2 s longer), and so does the plan.
#[track_caller]
fn assert_about(d: Duration, secs: f64) {
    let have = d.as_secs_f64();
    assert!(
        (have - secs).abs() <= secs * 1e-3,
        "{have} s, not about {secs} s"
    );
}

/// `n` requests at a window's rate as the limiter keeps it: `period` plus a
/// twentieth of it, between 0.1 and 2 s.
fn at_rate(n: f64, requests: f64, period: f64) -> f64 {
    n * (period + (period / 20.0).clamp(0.1, 2.0)) / requests
}

#[test]
fn a_fleet_within_the_budget_refreshes_every_interval_at_full_speed() {
    let p = plan(
        fleet(500, 0),
        &poll(60, 3600),
        &budget("60/min,1000/h"),
        HOUR,
    );
    assert_eq!(p.target, Duration::from_secs(60));
    assert_eq!(p.spacing, Duration::ZERO, "10 requests a minute fit");
    assert_eq!(p.requests_per_refresh, 10.0);
    assert_eq!(p.stale_after, Duration::from_secs(180));
}

#[test]
fn the_hourly_window_sets_the_pace_of_a_larger_fleet() {
    // 20 requests a minute would be 1,200 an hour: the hourly cap binds.
    let p = plan(
        fleet(1000, 0),
        &poll(60, 3600),
        &budget("60/min,1000/h"),
        HOUR,
    );
    assert_about(p.target, 72.0);
    assert_about(p.spacing, 3.6);
    assert_about(p.stale_after, 216.0);

    // 500 SIMs at 30/min with a 10 s interval: 10 requests in 20 s, the
    // minute kept 62 s long.
    let p = plan(fleet(500, 0), &poll(10, 3600), &budget("30/min"), HOUR);
    assert_about(p.target, at_rate(10.0, 30.0, 60.0));
    assert_about(p.spacing, at_rate(1.0, 30.0, 60.0));

    // 100,000 SIMs on the standard and the business plan.
    let p = plan(
        fleet(100_000, 0),
        &poll(60, 3600),
        &budget("60/min,1000/h"),
        HOUR,
    );
    assert_about(p.target, 7200.0);
    let p = plan(
        fleet(100_000, 0),
        &poll(60, 3600),
        &budget("300/min,10000/h"),
        HOUR,
    );
    assert_about(p.target, 720.0);
}

#[test]
fn the_inactive_tier_takes_its_share_first() {
    // 2/s sustained (20 in 10.5 s as the limiter keeps it); 500 inactive SIMs
    // every 30 s cost 1/3 request a second.
    let p = plan(fleet(600, 500), &poll(2, 30), &budget("4/s,20/10s"), HOUR);
    let rate = 20.0 / 10.5;
    let active_rate: f64 = rate - 10.0 / 30.0;
    assert_about(p.target, 12.0 / active_rate);
    assert_about(p.spacing, 1.0 / rate);
    assert!((p.requests_per_refresh - (12.0 + 10.0 / 30.0 * p.target.as_secs_f64())).abs() < 1e-9);

    let p = plan(fleet(100, 500), &poll(2, 30), &budget("4/s,20/10s"), HOUR);
    assert_eq!(
        p.target,
        Duration::from_secs(2),
        "100 active SIMs fit the interval"
    );

    // An inactive tier larger than the budget still leaves the active one a share.
    let p = plan(fleet(50, 1_000_000), &poll(1, 60), &budget("1/s"), HOUR);
    assert_about(p.target, 10.0 * 1.1);
}

#[test]
fn stale_after_follows_the_target() {
    let mut settings = poll(10, 3600);
    settings.stale_after = Some(Duration::from_secs(5));
    let p = plan(fleet(500, 0), &settings, &budget("30/min"), HOUR);
    assert_about(p.stale_after, at_rate(10.0, 30.0, 60.0));
    assert!(p.stale_after_raised);
    settings.stale_after = Some(Duration::from_secs(600));
    let p = plan(fleet(500, 0), &settings, &budget("30/min"), HOUR);
    assert_eq!(p.stale_after, Duration::from_secs(600));
    assert!(!p.stale_after_raised);
}

#[test]
fn no_budget_means_the_interval() {
    let p = plan(
        fleet(100_000, 0),
        &poll(60, 3600),
        &Budget::unlimited(),
        HOUR,
    );
    assert_eq!(p.target, Duration::from_secs(60));
    assert_eq!(p.spacing, Duration::ZERO);
}

#[test]
fn discovery_gets_at_most_a_quarter_of_the_budget() {
    let standard = budget("60/min,1000/h");
    assert_eq!(
        discover_every(20, &standard, HOUR),
        HOUR,
        "20 pages an hour"
    );
    // 2,000 pages at 1,000/h would take two hours of the whole budget.
    assert_about(discover_every(2000, &standard, HOUR), 8.0 * 3602.0);
    let p = plan(
        Fleet {
            active: 10_000,
            listing_pages: Some(200),
            ..Fleet::default()
        },
        &poll(60, 3600),
        &standard,
        HOUR,
    );
    assert_eq!(p.discover_every, Some(HOUR));
    // 200 pages an hour leave 800 requests an hour for 200 batches.
    assert_about(p.target, 900.0);
}

/// One SIM of the fake API: its provisioning status, or absent (unknown to the account).
type Answers = HashMap<String, &'static str>;

/// The schedule, pacer and limiter the poller uses, over a fake API that
/// answers at once, driven for `duration` of virtual time.
struct Run {
    schedule: Schedule,
    poll: PollConfig,
    budget: Budget,
    limiter: Limiter,
    pacer: Pacer,
    start: Instant,
    /// Every request's send time.
    sent: Vec<Duration>,
    /// A request naming one of these fails (500).
    failing: HashSet<String>,
    /// When each SIM was asked for.
    asked: HashMap<String, Vec<Duration>>,
    /// When each SIM was answered.
    answered: HashMap<String, Vec<Duration>>,
    /// The target of each pass.
    targets: Vec<Duration>,
}

impl Run {
    fn new(iccids: &[String], poll: PollConfig, budget: Budget) -> Run {
        let start = Instant::now();
        let mut schedule = Schedule::default();
        schedule.follow(Arc::new(iccids.to_vec()), None, start);
        Run {
            schedule,
            poll,
            limiter: Limiter::new(&budget),
            budget,
            pacer: Pacer::default(),
            start,
            sent: Vec::new(),
            failing: HashSet::new(),
            asked: HashMap::new(),
            answered: HashMap::new(),
            targets: Vec::new(),
        }
    }

    async fn pass(&mut self, answers: &Answers) {
        let now = Instant::now();
        let fleet = self
            .schedule
            .fleet(self.poll.inactive_interval, self.poll.batch_size);
        let plan = plan(fleet, &self.poll, &self.budget, HOUR);
        self.targets.push(plan.target);
        let timing = Timing {
            inactive_interval: self.poll.inactive_interval,
            retry_base: plan.target,
        };
        let batches =
            self.schedule
                .batches(now, self.poll.batch_size, plan.inactive_batches_per_refresh);
        for Batch { positions } in batches {
            self.pacer.wait(plan.spacing).await;
            self.limiter.acquire(None).await.expect("no deadline");
            let at = Instant::now();
            self.sent.push(at - self.start);
            for &p in &positions {
                self.asked
                    .entry(self.schedule.iccid(p).to_string())
                    .or_default()
                    .push(at - self.start);
            }
            if positions
                .iter()
                .any(|&p| self.failing.contains(self.schedule.iccid(p)))
            {
                self.schedule
                    .record(&positions, Outcome::Failed, at, timing);
                continue;
            }
            let returned: Vec<(usize, &str)> = positions
                .iter()
                .filter_map(|&p| {
                    let iccid = self.schedule.iccid(p);
                    let status = *answers.get(iccid)?;
                    self.answered
                        .entry(iccid.to_string())
                        .or_default()
                        .push(at - self.start);
                    Some((p, status))
                })
                .collect();
            self.schedule.record(
                &positions,
                Outcome::Answered {
                    returned: &returned,
                    rejected: &[],
                },
                at,
                timing,
            );
        }
    }

    /// Passes back to back, each at least an interval, until `until`.
    async fn run(&mut self, answers: &Answers, until: Duration) {
        while self.start.elapsed() < until {
            let started = Instant::now();
            self.pass(answers).await;
            tokio::time::sleep_until(started + self.poll.interval).await;
        }
    }

    /// Asserts that no window of the budget ever held more than its count.
    fn assert_within_budget(&self) {
        for window in self.budget.windows() {
            let mut first = 0;
            for (last, t) in self.sent.iter().enumerate() {
                while self.sent[first] + window.period <= *t {
                    first += 1;
                }
                assert!(
                    last - first < window.requests as usize,
                    "{} requests in the {window} window ending at {t:?}",
                    last - first + 1
                );
            }
        }
    }

    /// The longest gap between two answers of `iccid`, after its first.
    fn longest_gap(&self, iccid: &str) -> Duration {
        let times = &self.answered[iccid];
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

fn iccids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("8988{i:015}")).collect()
}

fn all(iccids: &[String], status: &'static str) -> Answers {
    iccids.iter().map(|i| (i.clone(), status)).collect()
}

#[tokio::test(start_paused = true)]
async fn every_sim_once_per_refresh_within_every_window() {
    for (n, spec, interval) in [
        (600, "4/s,20/10s", 2),
        (1000, "60/min,1000/h", 60),
        (5000, "300/min,10000/h", 60),
        (120, "5/s", 1),
    ] {
        let fleet = iccids(n);
        let answers = all(&fleet, "ACTIVE");
        let mut run = Run::new(&fleet, poll(interval, 3600), budget(spec));
        let target = run.targets.first().copied();
        assert_eq!(target, None);
        // Long enough for several refreshes.
        let first = plan(self::fleet(n, 0), &run.poll, &run.budget, HOUR).target;
        run.run(&answers, first * 4).await;
        run.assert_within_budget();
        let target = run.targets[0];
        assert!(target > Duration::ZERO);
        for iccid in &fleet {
            let times = &run.answered[iccid];
            assert!(
                times.len() >= 3,
                "{spec}: {iccid} polled {} times",
                times.len()
            );
            let gap = run.longest_gap(iccid);
            assert!(
                gap <= target.mul_f64(1.5),
                "{spec}, {n} SIMs: {iccid} waited {gap:?} for a target of {target:?}"
            );
        }
        // Once per refresh: requests are batches, not repeats.
        let refreshes = run.targets.len();
        assert!(run.sent.len() <= refreshes * n.div_ceil(50), "{spec}");
    }
}

#[tokio::test(start_paused = true)]
async fn paced_requests_go_out_evenly_not_in_a_burst() {
    let fleet = iccids(600);
    let mut run = Run::new(&fleet, poll(2, 3600), budget("4/s,20/10s"));
    run.run(&all(&fleet, "ACTIVE"), Duration::from_secs(30))
        .await;
    run.assert_within_budget();
    // 2/s sustained: evenly 0.5 s apart, never the 20 of a window at once.
    for pair in run.sent.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(500), "{pair:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_inactive_tier_is_polled_at_its_own_interval() {
    let fleet = iccids(600);
    let mut answers = all(&fleet[..100], "ACTIVE");
    for (i, iccid) in fleet[100..].iter().enumerate() {
        answers.insert(
            iccid.clone(),
            if i % 2 == 0 { "SUSPENDED" } else { "RETIRED" },
        );
    }
    let mut run = Run::new(&fleet, poll(2, 30), budget("4/s,20/10s"));
    run.run(&answers, Duration::from_secs(125)).await;
    run.assert_within_budget();
    assert_eq!(tiers(&run.schedule, run.poll.inactive_interval), (100, 500));
    for iccid in &fleet[..100] {
        // The first refresh asks all 600 (their tiers are not known yet) and
        // takes 6 s; from then on the active ones come every interval.
        let times = &run.answered[iccid][1..];
        let gap = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        assert!(
            gap <= Duration::from_secs(3),
            "active {iccid}: {gap:?} {times:?}"
        );
        assert!(run.answered[iccid].len() >= 40);
    }
    for iccid in &fleet[100..] {
        let times = &run.answered[iccid];
        // The first refresh, then once per 30 s; those that came due together
        // are spread over the next refreshes (10 batches, one or two a refresh).
        assert!(
            (3..=5).contains(&times.len()),
            "inactive {iccid}: {times:?}"
        );
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_secs(30) && gap <= Duration::from_secs(52),
                "{gap:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_sim_changes_tier_with_its_answers() {
    let fleet = iccids(100);
    let mut answers = all(&fleet, "ACTIVE");
    let suspended = fleet[7].clone();
    answers.insert(suspended.clone(), "SUSPENDED");
    let unknown = fleet[9].clone();
    answers.remove(&unknown);
    let mut run = Run::new(&fleet, poll(1, 10), budget("10/s"));
    run.run(&answers, Duration::from_secs(3)).await;
    assert_eq!(tiers(&run.schedule, run.poll.inactive_interval), (98, 2));
    let before = run.answered[&suspended].len();
    assert_eq!(before, 1, "asked once, then rarely");

    // Reactivated: the next time it is asked, it goes back to the active tier.
    answers.insert(suspended.clone(), "ACTIVE");
    answers.insert(unknown.clone(), "TEST_ACTIVE");
    run.run(&answers, Duration::from_secs(16)).await;
    assert_eq!(tiers(&run.schedule, run.poll.inactive_interval), (100, 0));
    let after = run.answered[&suspended].len();
    assert!(after >= 4, "polled every refresh again: {after}");
    assert!(run.answered.contains_key(&unknown), "asked again and found");

    // A listing that says SUSPENDED counts as an answer.
    let listed = HashMap::from([(fleet[0].clone(), true)]);
    run.schedule.follow(
        run.schedule.followed().clone(),
        Some(&listed),
        Instant::now(),
    );
    assert_eq!(tiers(&run.schedule, run.poll.inactive_interval), (99, 1));
}

#[test]
fn a_zero_inactive_interval_polls_everything_every_refresh() {
    let fleet = iccids(10);
    let now = Instant::now();
    let mut schedule = Schedule::default();
    schedule.follow(Arc::new(fleet.clone()), None, now);
    let all: Vec<usize> = (0..10).collect();
    schedule.record(
        &all,
        Outcome::Answered {
            returned: &[(0, "SUSPENDED")],
            rejected: &[],
        },
        now,
        timing(Duration::ZERO),
    );
    assert_eq!(tiers(&schedule, Duration::ZERO), (10, 0));
    // Longest unanswered first: the one answered last.
    let mut order: Vec<usize> = (1..10).collect();
    order.push(0);
    assert_eq!(positions(schedule.batches(now, 50, 1)), vec![order]);
}

#[test]
fn sims_leave_only_when_asked_for_and_unanswered_for_stale_after() {
    let fleet = iccids(4);
    let t0 = Instant::now();
    let stale = Duration::from_secs(60);
    let inactive = Duration::from_secs(3600);
    let mut schedule = Schedule::default();
    schedule.follow(Arc::new(fleet.clone()), None, t0);
    let positions: Vec<usize> = (0..4).collect();
    let returned = [
        (0, "ACTIVE"),
        (1, "ACTIVE"),
        (2, "SUSPENDED"),
        (3, "ACTIVE"),
    ];
    schedule.record(
        &positions,
        Outcome::Answered {
            returned: &returned,
            rejected: &[],
        },
        t0,
        timing(inactive),
    );

    // Nothing asked since: however old, nothing leaves (a long pause, say).
    let late = t0 + Duration::from_secs(600);
    assert!(schedule.evictions(late, stale, inactive).is_empty());

    // Asked and failed, asked and not returned: they leave once stale.
    schedule.record(&[0, 2], Outcome::Failed, late, timing(inactive));
    schedule.record(
        &[1, 3],
        Outcome::Answered {
            returned: &[(3, "ACTIVE")],
            rejected: &[],
        },
        late,
        timing(inactive),
    );
    let gone = schedule.evictions(late, stale, inactive);
    assert_eq!(
        gone,
        HashSet::from([fleet[0].clone(), fleet[1].clone()]),
        "the SUSPENDED one keeps 3 inactive intervals"
    );
    assert!(schedule.evictions(late, stale, inactive).is_empty(), "once");
    let much_later = t0 + inactive * 3 + Duration::from_secs(1);
    assert_eq!(
        schedule.evictions(much_later, stale, inactive),
        HashSet::from([fleet[2].clone()])
    );

    // No longer followed: gone at once.
    schedule.follow(Arc::new(vec![fleet[3].clone()]), None, late);
    assert_eq!(
        schedule.evictions(late, stale, inactive),
        HashSet::new(),
        "the others were evicted already"
    );
    schedule.follow(Arc::new(Vec::new()), None, late);
    assert_eq!(
        schedule.evictions(late, stale, inactive),
        HashSet::from([fleet[3].clone()])
    );
}

#[test]
fn missing_and_rejected_sims_are_counted_and_rejected_ones_wait_their_turn() {
    let fleet = iccids(6);
    let t0 = Instant::now();
    let mut schedule = Schedule::default();
    schedule.follow(Arc::new(fleet.clone()), None, t0);
    let all: Vec<usize> = (0..6).collect();
    let returned = [(0, "ACTIVE"), (1, "ACTIVE"), (2, "ACTIVE"), (3, "ACTIVE")];
    // 4 not returned, 5 refused; with the inactive tier off.
    schedule.record(
        &all,
        Outcome::Answered {
            returned: &returned,
            rejected: &[5],
        },
        t0,
        timing(Duration::ZERO),
    );
    assert_eq!(
        schedule.missing(5),
        (2, vec![fleet[4].as_str(), fleet[5].as_str()])
    );
    assert_eq!(schedule.missing(1).1.len(), 1, "names are capped");
    // The refused one is not asked for again within the hour; the other is.
    let soon = t0 + Duration::from_secs(60);
    assert_eq!(
        positions(schedule.batches(soon, 50, 1)),
        vec![vec![4, 0, 1, 2, 3]],
        "the unanswered one first"
    );
    let later = t0 + Duration::from_secs(3601);
    assert_eq!(
        positions(schedule.batches(later, 50, 1)),
        vec![vec![5], vec![4, 0, 1, 2, 3]],
        "refused: alone, and first when due"
    );
    // Answered at last: neither missing nor rejected.
    schedule.record(
        &[4, 5],
        Outcome::Answered {
            returned: &[(4, "ACTIVE"), (5, "ACTIVE")],
            rejected: &[],
        },
        later,
        timing(Duration::ZERO),
    );
    assert_eq!(schedule.missing(5), (0, vec![]));
}

/// (every refresh, once per inactive interval) of `schedule`.
fn tiers(schedule: &Schedule, inactive_interval: Duration) -> (usize, usize) {
    let f = schedule.fleet(inactive_interval, 50);
    (
        f.active + f.active_failing,
        f.inactive + f.inactive_failing + f.refused,
    )
}

/// The durations of a schedule with this inactive interval and a target of a minute.
fn timing(inactive_interval: Duration) -> Timing {
    Timing {
        inactive_interval,
        retry_base: Duration::from_secs(60),
    }
}

/// The positions of each request of `batches`.
fn positions(batches: Vec<Batch>) -> Vec<Vec<usize>> {
    batches.into_iter().map(|b| b.positions).collect()
}

/// 2 ACTIVE and 10 SUSPENDED SIMs at batch size 2; every request naming two
/// of the SUSPENDED ones fails. The failing pair backs off instead of taking
/// the inactive tier's turn every refresh, and every other SUSPENDED SIM is
/// asked for within 1.5 inactive intervals.
#[tokio::test(start_paused = true)]
async fn a_failing_batch_never_starves_the_inactive_tier() {
    let fleet = iccids(12);
    let mut answers = all(&fleet[..2], "ACTIVE");
    answers.extend(all(&fleet[2..], "SUSPENDED"));
    let mut settings = poll(1, 20);
    settings.batch_size = 2;
    let mut run = Run::new(&fleet, settings, budget("10/s"));
    run.failing = HashSet::from([fleet[2].clone(), fleet[3].clone()]);
    let duration = Duration::from_secs(56);
    run.run(&answers, duration).await;
    let failing = run.asked[&fleet[2]].len();
    // Asked at once and then backing off: the next refresh, 1 s, 2 s, 4 s,
    // 8 s, then every 20 s.
    assert!(failing <= 9, "the failing pair was asked {failing} times");
    for iccid in &fleet[4..] {
        let asked = &run.asked[iccid];
        assert!(asked.len() >= 3, "{iccid} asked {} times", asked.len());
        let gaps = std::iter::once(Duration::ZERO)
            .chain(asked.iter().copied())
            .chain(std::iter::once(duration))
            .collect::<Vec<_>>();
        for pair in gaps.windows(2) {
            assert!(
                pair[1] - pair[0] <= Duration::from_secs(30),
                "{iccid} waited {:?}",
                pair[1] - pair[0]
            );
        }
    }
}

/// 100 known and 100 unknown ICCIDs at batch size 10: after the first
/// refresh, the unknown ones are asked for once per inactive interval, and
/// the plan counts them.
#[tokio::test(start_paused = true)]
async fn sims_unknown_to_the_account_go_to_the_slow_tier() {
    let fleet = iccids(200);
    let answers = all(&fleet[..100], "ACTIVE");
    let mut settings = poll(1, 60);
    settings.batch_size = 10;
    let mut run = Run::new(&fleet, settings, budget("5/s,30/10s"));
    run.run(&answers, Duration::from_secs(50)).await;
    assert_eq!(tiers(&run.schedule, run.poll.inactive_interval), (100, 100));
    for iccid in &fleet[100..] {
        assert_eq!(
            run.asked[iccid].len(),
            1,
            "{iccid}: once, in the first refresh"
        );
    }
    // From the second refresh on: 10 requests a refresh, not 19.
    let refreshes = run.targets.len();
    assert!(
        run.sent.len() <= 20 + (refreshes - 1) * 10,
        "{} requests in {refreshes} refreshes",
        run.sent.len()
    );
    // The plan counts the unknown ones' share: 10 requests a minute.
    let fleet = run
        .schedule
        .fleet(run.poll.inactive_interval, run.poll.batch_size);
    let plan = plan(fleet, &run.poll, &run.budget, HOUR);
    assert_eq!(plan.inactive, 100);
    assert!(plan.requests_per_refresh > 10.0, "{plan:?}");
}
