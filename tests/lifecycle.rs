//! Each SIM's lifecycle end to end, against the simulator: one SIM's trouble
//! never costs another its data, its turn or the exporter's health.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use monogoto_exporter::config::Config;
use monogoto_exporter::shard::Shard;
use monogoto_exporter::simulator::{FailMode, RunningSimulator, SimEndpoint};

/// A simulator of `n` Things, every one ACTIVE: polled every refresh.
async fn active_fleet(n: usize) -> RunningSimulator {
    let sim = simulator(n).await;
    for iccid in sim.simulator.iccids() {
        sim.simulator.set_provision_status(&iccid, Some("ACTIVE"));
    }
    sim
}

fn connected(s: &BTreeMap<String, f64>, iccid: &str) -> Option<f64> {
    value(s, &thing_series("monogoto_thing_connected", iccid))
}

/// The status requests that named `iccid`, and how many other ICCIDs each named.
fn requests_naming(sim: &RunningSimulator, iccid: &str) -> Vec<usize> {
    sim.simulator
        .status_queries()
        .iter()
        .filter(|q| q.contains(iccid))
        .map(|q| q.matches("ThingId_ICCID_").count())
        .collect()
}

/// `g0 g1 g2 r0 g3 g4 g5 r1` at batch size 4, the API refusing any request
/// naming r0 or r1. Once isolated, the two are each asked for alone, also when
/// they come due together; isolation stays on and `monogoto_up` 1. A third
/// bad ICCID later costs its batch nothing but itself.
#[tokio::test]
async fn refused_iccids_are_asked_for_alone_and_never_turn_isolation_off() {
    let sim = active_fleet(8).await;
    let iccids = sim.simulator.iccids();
    let (r0, r1) = (iccids[3].clone(), iccids[7].clone());
    sim.simulator.refuse_thing(&r0);
    sim.simulator.refuse_thing(&r1);
    let mut cfg = config(&sim);
    cfg.poll.batch_size = 4;
    cfg.poll.inactive_interval = Duration::from_millis(300);
    cfg.poll.stale_after = None;
    let exporter = start_exporter(&cfg).await;
    for _ in 0..4 {
        // Both come due together, every time.
        tokio::time::sleep(Duration::from_millis(350)).await;
        exporter.poller.refresh().await;
        let s = scrape_samples(&exporter).await;
        assert_eq!(value(&s, "monogoto_up"), Some(1.0));
        assert_eq!(value(&s, "monogoto_things_reported"), Some(6.0));
        assert_eq!(value(&s, "monogoto_things_missing"), Some(2.0));
    }
    for refused in [&r0, &r1] {
        let sizes = requests_naming(&sim, refused);
        // Found in its batch and its halves, then alone every time.
        assert!(sizes.len() >= 5, "{refused}: {sizes:?}");
        assert!(sizes[3..].iter().all(|&n| n == 1), "{refused}: {sizes:?}");
    }

    let g4 = iccids[5].clone();
    sim.simulator.refuse_thing(&g4);
    exporter.poller.refresh().await;
    exporter.poller.refresh().await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_up"), Some(1.0));
    let queries = sim.simulator.status_queries();
    assert_eq!(
        value(&s, "monogoto_things_missing"),
        Some(3.0),
        "{:#?}",
        &queries[queries.len().saturating_sub(8)..]
    );
    for good in [&iccids[4], &iccids[6], &iccids[0]] {
        assert!(connected(&s, good).is_some(), "{good} kept");
    }
}

/// Two refused ICCIDs as the last batch of the very first refresh.
#[tokio::test]
async fn two_refused_iccids_as_the_last_batch_leave_the_exporter_up() {
    let sim = active_fleet(8).await;
    let iccids = sim.simulator.iccids();
    sim.simulator.refuse_thing(&iccids[6]);
    sim.simulator.refuse_thing(&iccids[7]);
    let mut cfg = config(&sim);
    cfg.poll.batch_size = 2;
    let exporter = start_exporter(&cfg).await;
    exporter.poller.refresh().await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_up"), Some(1.0));
    assert_eq!(value(&s, "monogoto_things_reported"), Some(6.0));
    assert_eq!(value(&s, "monogoto_things_missing"), Some(2.0));
}

/// A revoked token: every SIM keeps its data until stale-after and then
/// leaves, never some evicted and the rest frozen.
#[tokio::test]
async fn a_revoked_token_empties_metrics_evenly_after_stale_after() {
    let sim = active_fleet(100).await;
    let mut cfg = config(&sim);
    cfg.poll.batch_size = 10;
    cfg.poll.concurrency = 1;
    cfg.poll.interval = Duration::from_millis(500);
    cfg.poll.stale_after = Some(Duration::from_secs(2));
    let exporter = start_exporter(&cfg).await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_things_reported"), Some(100.0));
    sim.simulator.revoke_tokens();
    let revoked = std::time::Instant::now();
    let mut reported = Vec::new();
    let mut last = 100.0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = scrape_samples(&exporter).await;
        last = value(&s, "monogoto_things_reported").unwrap_or(-1.0);
        reported.push((revoked.elapsed(), last));
        if last == 0.0 {
            assert_eq!(value(&s, "monogoto_up"), Some(0.0));
            break;
        }
    }
    assert_eq!(last, 0.0, "SIMs left frozen: {reported:?}");
    // Every SIM was answered at most an interval before the token was
    // revoked, and a pass takes a while: none leaves in the first 1.2 s.
    assert!(
        reported
            .iter()
            .filter(|(at, _)| *at < Duration::from_millis(1200))
            .all(|&(_, r)| r == 100.0),
        "{reported:?}"
    );
}

/// A replica with nothing to poll is up when its listing works.
#[tokio::test]
async fn shards_with_no_sim_are_up() {
    let sim = simulator(2).await;
    for index in 0..4 {
        let mut cfg = discovering(&sim);
        cfg.shard = Shard { index, count: 4 };
        let exporter = start_exporter(&cfg).await;
        let s = scrape_samples(&exporter).await;
        assert_eq!(value(&s, "monogoto_up"), Some(1.0), "shard {index}");
    }
    // An empty account too.
    let empty = simulator(0).await;
    let exporter = start_exporter(&discovering(&empty)).await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_up"), Some(1.0), "empty account");
}

/// A configured list with no SIM in this shard: up when the login (or, with
/// a token, the smallest listing) works, down when it does not.
#[tokio::test]
async fn a_shard_of_a_configured_list_with_no_sim_is_up_when_the_login_works() {
    let sim = simulator(2).await;
    let mut owned = 0;
    for index in 0..8 {
        let mut cfg = config(&sim);
        cfg.credentials = Some(login(&sim));
        cfg.shard = Shard { index, count: 8 };
        let exporter = start_exporter(&cfg).await;
        let s = scrape_samples(&exporter).await;
        assert_eq!(value(&s, "monogoto_up"), Some(1.0), "shard {index}");
        owned += value(&s, "monogoto_things_reported").unwrap_or(0.0) as usize;
    }
    assert_eq!(owned, 2);

    // A revoked token, with nothing to poll: down.
    let revoked = simulator(2).await;
    revoked.simulator.revoke_tokens();
    let mut cfg = config(&revoked);
    cfg.iccids.clear();
    let exporter = start_exporter(&cfg).await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_up"), Some(0.0), "a revoked token");

    let mut cfg = config(&sim);
    cfg.credentials = Some(monogoto_exporter::monogoto::Credentials::Login {
        username: "nobody".into(),
        password: "wrong".to_string().into(),
    });
    cfg.iccids.clear();
    let exporter = start_exporter(&cfg).await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_up"), Some(0.0), "a refused login");
}

/// A batch that fails every time backs off: it is not asked for every
/// refresh, and the other SIMs keep their turn and data.
#[tokio::test]
async fn a_failing_batch_backs_off_and_takes_no_other_turn() {
    let sim = active_fleet(12).await;
    let iccids = sim.simulator.iccids();
    let mut cfg = config(&sim);
    cfg.poll.batch_size = 2;
    let exporter = start_exporter(&cfg).await;
    sim.simulator
        .set_failing(&iccids[4], Some(FailMode::ServerError));
    sim.simulator.reset_counters();
    for _ in 0..10 {
        exporter.poller.refresh().await;
    }
    let failing = requests_naming(&sim, &iccids[4]).len();
    let healthy = requests_naming(&sim, &iccids[0]).len();
    assert!(
        failing < healthy,
        "failing asked {failing}, healthy {healthy}"
    );
    let s = scrape_samples(&exporter).await;
    for iccid in iccids
        .iter()
        .filter(|i| **i != iccids[4] && **i != iccids[5])
    {
        assert!(connected(&s, iccid).is_some(), "{iccid} kept");
    }
    assert!(sim.simulator.requests(SimEndpoint::Status) > 0);
}

fn discovering(sim: &RunningSimulator) -> Config {
    let mut cfg = config(sim);
    cfg.iccids.clear();
    cfg.discover = true;
    cfg
}

/// 100 known and 100 unknown ICCIDs at batch size 10 under a budget: after
/// the first refresh the unknown ones wait for the inactive interval (no
/// request names them), and the plan counts them in the slow tier.
#[tokio::test]
async fn unknown_sims_wait_their_turn_and_the_plan_counts_them() {
    let sim = active_fleet(100).await;
    let mut cfg = config(&sim);
    let unknown: Vec<String> = (0..100).map(|i| format!("8944{i:015}")).collect();
    cfg.iccids.extend(unknown.iter().cloned());
    cfg.poll.batch_size = 10;
    cfg.poll.interval = Duration::from_secs(1);
    cfg.poll.inactive_interval = Duration::from_secs(60);
    cfg.poll.stale_after = None;
    cfg.rate_limit = "10/s".parse().expect("valid budget");
    let exporter = start_exporter(&cfg).await;
    // The first whole refresh (the only one that asks for the unknown SIMs).
    for _ in 0..200 {
        let took = scrape_value(&exporter, "monogoto_refresh_duration_seconds").await;
        if took.is_some_and(|t| t > 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = sim.simulator.status_queries().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let queries = sim.simulator.status_queries();
    let later = &queries[before.min(queries.len())..];
    assert!(
        later.len() >= 10,
        "polling went on: {} requests",
        later.len()
    );
    assert!(
        later.iter().all(|q| !q.contains("ICCID_8944")),
        "unknown SIMs asked again before their turn"
    );
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_things_inactive"), Some(100.0));
    assert_eq!(value(&s, "monogoto_things_missing"), Some(100.0));
    // How long a pass takes against its target is measured by
    // scripts/fleet-bench.py --mixed, not asserted on a shared machine.
}
