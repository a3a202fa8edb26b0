//! Polling within a request budget the API enforces, scaled to seconds: the
//! simulator answers over-budget requests with 429 as Monogoto documents, so
//! these tests prove the exporter keeps to the budget, stays healthy while it
//! waits, and lets nothing vanish.

mod common;

use std::time::{Duration, Instant};

use common::*;
use monogoto_exporter::app::RunningExporter;
use monogoto_exporter::simulator::{RunningSimulator, SimEndpoint};

const SCALED_BUDGET: &str = "4/s,20/10s";

async fn budgeted(things: usize) -> RunningSimulator {
    budgeted_simulator(things, 7, SCALED_BUDGET).await
}

fn set_status(sim: &RunningSimulator, iccids: &[String], status: &str) {
    for iccid in iccids {
        sim.simulator.set_provision_status(iccid, Some(status));
    }
}

/// Scrapes every 250 ms for `period`, checking each scrape with `check`.
async fn watch(
    exporter: &RunningExporter,
    period: Duration,
    mut check: impl FnMut(&std::collections::BTreeMap<String, f64>, &str),
) -> usize {
    let end = Instant::now() + period;
    let mut scrapes = 0;
    while Instant::now() < end {
        let text = scrape(exporter).await;
        check(&samples(&text), &text);
        scrapes += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    scrapes
}

#[tokio::test]
async fn a_fleet_that_needs_three_intervals_is_paced_healthy_and_whole() {
    // 600 SIMs, 12 requests a refresh at about 2/s sustained: 6.3 s against a 2 s interval.
    let sim = budgeted(600).await;
    let fleet = sim.simulator.iccids();
    set_status(&sim, &fleet, "ACTIVE");
    let mut cfg = config(&sim);
    cfg.poll.interval = Duration::from_secs(2);
    cfg.poll.stale_after = None;
    cfg.rate_limit = SCALED_BUDGET.parse().expect("valid");
    let exporter = monogoto_exporter::app::start(&cfg).await.expect("starts");
    wait_until("the first refresh", || {
        exporter.health.things_reported.get() == 600
    })
    .await;
    sim.simulator.reset_polls();

    let scrapes = watch(&exporter, Duration::from_secs(16), |s, text| {
        assert_eq!(value(s, "monogoto_up"), Some(1.0), "waiting is not failing");
        assert_eq!(value(s, "monogoto_things_reported"), Some(600.0));
        for kind in ["timeout", "connect", "status", "decode", "auth"] {
            let series = format!("monogoto_refresh_errors_total{{kind=\"{kind}\"}}");
            assert_eq!(value(s, &series), Some(0.0), "{series}");
        }
        // 12 requests at the rate the limiter keeps: 20 in 10.5 s.
        let target = value(s, "monogoto_refresh_target_seconds");
        assert!(target.is_some_and(|t| (t - 6.3).abs() < 1e-6), "{target:?}");
        for iccid in &fleet {
            assert!(
                text.contains(iccid.as_str()),
                "{iccid} missing from /metrics"
            );
        }
    })
    .await;
    assert!(scrapes > 20);
    assert_eq!(sim.simulator.budget_refusals(), 0, "no 429 from the API");
    let polls = sim.simulator.poll_summary();
    assert_eq!(polls.measured, 600, "every SIM polled again and again");
    // Ideally every 6.3 s; at most about 1.5x that apart.
    assert!(
        polls.worst_gap_seconds <= 9.0,
        "worst gap {} s",
        polls.worst_gap_seconds
    );
    let s = scrape_samples(&exporter).await;
    let duration = value(&s, "monogoto_refresh_duration_seconds").expect("duration");
    assert!(
        (5.0..=9.0).contains(&duration),
        "a whole pass, not one interval's slice: {duration}"
    );
    assert!(value(&s, "monogoto_api_budget_wait_seconds_total").is_some_and(|w| w > 5.0));
    exporter.shutdown().await;
}

#[tokio::test]
async fn active_sims_are_polled_every_interval_inactive_ones_at_theirs() {
    let sim = budgeted(600).await;
    let fleet = sim.simulator.iccids();
    set_status(&sim, &fleet[..100], "ACTIVE");
    for (i, iccid) in fleet[100..].iter().enumerate() {
        let status = if i % 2 == 0 { "SUSPENDED" } else { "RETIRED" };
        sim.simulator.set_provision_status(iccid, Some(status));
    }
    let mut cfg = config(&sim);
    cfg.poll.interval = Duration::from_secs(2);
    cfg.poll.stale_after = None;
    cfg.poll.inactive_interval = Duration::from_secs(30);
    cfg.rate_limit = SCALED_BUDGET.parse().expect("valid");
    let exporter = monogoto_exporter::app::start(&cfg).await.expect("starts");
    wait_until("the first refresh", || {
        exporter.health.things_reported.get() == 600
    })
    .await;
    wait_until("the tiers", || exporter.health.things_inactive.get() == 500).await;
    sim.simulator.reset_polls();
    watch(&exporter, Duration::from_secs(12), |s, _| {
        assert_eq!(value(s, "monogoto_up"), Some(1.0));
        assert_eq!(
            value(s, "monogoto_things_reported"),
            Some(600.0),
            "inactive SIMs keep their series"
        );
        assert_eq!(value(s, "monogoto_things_inactive"), Some(500.0));
    })
    .await;
    assert_eq!(sim.simulator.budget_refusals(), 0);
    for iccid in &fleet[..100] {
        let (count, gap) = sim.simulator.polls_of(iccid).expect("known");
        assert!(count >= 4, "{iccid} polled {count} times in 12 s");
        assert!(
            gap <= Duration::from_secs(3),
            "{iccid}: {gap:?} between polls"
        );
    }
    let asked_again = fleet[100..]
        .iter()
        .filter(|i| sim.simulator.polls_of(i).is_some_and(|(n, _)| n > 0))
        .count();
    assert!(
        asked_again < 500,
        "inactive SIMs are not asked every refresh: {asked_again} of 500 in 12 s"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_long_retry_after_pause_loses_nothing_and_polling_resumes() {
    let sim = budgeted(100).await;
    let mut cfg = config(&sim);
    cfg.poll.interval = Duration::from_secs(1);
    // Shorter than the pause: SIMs whose requests were not sent must stay anyway.
    cfg.poll.stale_after = Some(Duration::from_secs(1));
    cfg.poll.inactive_interval = Duration::ZERO;
    cfg.rate_limit = SCALED_BUDGET.parse().expect("valid");
    let exporter = start_exporter(&cfg).await;
    wait_until("every SIM", || exporter.health.things_reported.get() == 100).await;
    sim.simulator
        .add_fault(rule("rate_limited=retry_after:4,endpoint=status,count=1"));
    let before = sim.simulator.requests(SimEndpoint::Status);
    watch(&exporter, Duration::from_secs(4), |s, _| {
        assert_eq!(
            value(s, "monogoto_things_reported"),
            Some(100.0),
            "nothing vanishes while the API holds us off"
        );
    })
    .await;
    wait_until("polling resumes", || {
        sim.simulator.requests(SimEndpoint::Status) > before + 4
    })
    .await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_things_reported"), Some(100.0));
    assert_eq!(value(&s, "monogoto_api_rate_limited_total"), Some(1.0));
    exporter.shutdown().await;
}

fn rule(spec: &str) -> monogoto_exporter::simulator::FaultRule {
    spec.parse().expect("valid fault rule")
}
