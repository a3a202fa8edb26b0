//! The exporter against a misbehaving API: one test per fault the simulator
//! injects. Each checks that /metrics keeps being served, the last good values
//! survive, `monogoto_up` and the error counters tell what happened, the
//! exporter recovers when the fault stops, and the requests stay within the
//! retry budget.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use monogoto_exporter::app::RunningExporter;
use monogoto_exporter::config::Config;
use monogoto_exporter::simulator::{FaultRule, RunningSimulator, SimEndpoint};

const THINGS: usize = 60;
/// 60 Things at the default batch size of 50.
const BATCHES: u64 = 2;

struct Case {
    sim: RunningSimulator,
    exporter: RunningExporter,
    /// A Thing whose state changes in the simulator while the fault is on.
    watched: String,
    before: f64,
}

fn rule(spec: &str) -> FaultRule {
    spec.parse()
        .unwrap_or_else(|e| panic!("fault spec {spec:?}: {e}"))
}

fn connected_series(iccid: &str) -> String {
    thing_series("monogoto_thing_connected", iccid)
}

/// A healthy first refresh, then the watched Thing flips in the simulator and
/// the fault is switched on; counters start from zero.
async fn setup(tweak: impl FnOnce(&mut Config)) -> Case {
    let sim = simulator(THINGS).await;
    let mut cfg = config(&sim);
    cfg.poll.timeout = Duration::from_millis(400);
    tweak(&mut cfg);
    let exporter = start_exporter(&cfg).await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_up"), Some(1.0));
    let watched = sim.simulator.iccids()[55].clone();
    let before = value(&s, &connected_series(&watched)).expect("watched Thing exported");
    sim.simulator.set_connected(&watched, Some(before == 0.0));
    sim.simulator.reset_counters();
    Case {
        sim,
        exporter,
        watched,
        before,
    }
}

/// [`setup`], then the fault of `spec` switched on.
async fn with_fault(spec: &str, tweak: impl FnOnce(&mut Config)) -> Case {
    let case = setup(tweak).await;
    case.inject(spec);
    case
}

impl Case {
    fn inject(&self, spec: &str) {
        self.sim.simulator.add_fault(rule(spec));
    }

    /// The watched Thing's `monogoto_thing_connected` in `s`.
    fn watched_value(&self, s: &BTreeMap<String, f64>) -> Option<f64> {
        value(s, &connected_series(&self.watched))
    }

    async fn metrics(&self) -> BTreeMap<String, f64> {
        scrape_samples(&self.exporter).await
    }

    fn status_requests(&self) -> u64 {
        self.sim.simulator.requests(SimEndpoint::Status)
    }

    /// The fault's refresh failed: last values served, `monogoto_up` 0.
    async fn assert_failed_and_stale(&self, kind: &str) -> BTreeMap<String, f64> {
        let s = self.metrics().await;
        assert_eq!(value(&s, "monogoto_up"), Some(0.0));
        assert_eq!(
            value(&s, "monogoto_things_reported"),
            Some(THINGS as f64),
            "nothing dropped"
        );
        assert_eq!(self.watched_value(&s), Some(self.before), "last good value");
        let errors = refresh_errors(&s, kind);
        assert!(
            errors.is_some_and(|e| e >= 1.0),
            "refresh_errors_total{{kind={kind}}} = {errors:?}"
        );
        s
    }

    /// The fault stops: the next refresh succeeds and shows the new state.
    async fn assert_recovers(self) {
        self.sim.simulator.clear_faults();
        let report = self.exporter.poller.refresh().await;
        assert!(report.succeeded(), "{report:?}");
        let s = self.metrics().await;
        assert_eq!(value(&s, "monogoto_up"), Some(1.0));
        assert_eq!(
            self.watched_value(&s),
            Some(1.0 - self.before),
            "fresh value"
        );
        self.exporter.shutdown().await;
    }
}

/// A simulator of `things` and a config against it whose requests are paced
/// at `rate_limit`.
async fn paced(things: usize, rate_limit: &str) -> (RunningSimulator, Config) {
    let sim = simulator(things).await;
    let mut cfg = config(&sim);
    cfg.rate_limit = rate_limit.parse().expect("valid");
    (sim, cfg)
}

/// The `monogoto_thing_info` lines of an exposition.
fn info_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("monogoto_thing_info{"))
        .map(str::to_string)
        .collect()
}

/// At least `least` has passed since `started`.
#[track_caller]
fn assert_waited(started: Instant, least: Duration, what: &str) {
    let elapsed = started.elapsed();
    assert!(elapsed >= least, "{what}: {elapsed:?}");
}

/// Within the retry budget: each batch is sent at most 1 + retries times.
fn assert_budget(requests: u64, retries: u64) {
    assert!(
        requests <= BATCHES * (1 + retries),
        "{requests} status requests exceed the budget"
    );
}

#[tokio::test]
async fn latency_is_tolerated() {
    let case = with_fault("latency=150ms,endpoint=status", |_| {}).await;
    assert!(case.exporter.poller.refresh().await.succeeded());
    assert_eq!(case.status_requests(), BATCHES);
    let s = case.metrics().await;
    assert_eq!(case.watched_value(&s), Some(1.0 - case.before));
    assert!(value(&s, "monogoto_refresh_duration_seconds").is_some_and(|d| d >= 0.15));
    case.assert_recovers().await;
}

#[tokio::test]
async fn one_timeout_is_retried_away() {
    let case = with_fault("hang,endpoint=status,count=1", |c| c.poll.retries = 1).await;
    assert!(
        case.exporter.poller.refresh().await.succeeded(),
        "one timeout, then a good retry"
    );
    let s = case.metrics().await;
    assert_eq!(api_retries(&s, "status"), Some(1.0));
    assert_eq!(api_requests(&s, "error", "status"), Some(1.0));
    assert_eq!(case.watched_value(&s), Some(1.0 - case.before));
    assert_eq!(case.status_requests(), BATCHES + 1);
    case.exporter.shutdown().await;
}

#[tokio::test]
async fn persistent_timeouts_fail_the_refresh_within_the_budget() {
    let case = with_fault("hang,endpoint=status", |c| c.poll.retries = 1).await;
    let report = case.exporter.poller.refresh().await;
    assert_eq!(report.failed_batches, BATCHES as usize);
    let s = case.assert_failed_and_stale("timeout").await;
    assert_eq!(refresh_errors(&s, "timeout"), Some(BATCHES as f64));
    assert_eq!(case.status_requests(), BATCHES * 2, "1 + retries each");
    assert_budget(case.status_requests(), 1);
    case.assert_recovers().await;
}

#[tokio::test]
async fn a_429_retry_after_in_seconds_is_obeyed() {
    let case = with_fault("rate_limited=retry_after:1,endpoint=status,count=1", |_| {}).await;
    let started = Instant::now();
    assert!(case.exporter.poller.refresh().await.succeeded());
    assert_waited(started, Duration::from_millis(950), "waited");
    let s = case.metrics().await;
    assert_eq!(value(&s, "monogoto_api_rate_limited_total"), Some(1.0));
    assert_eq!(api_retries(&s, "status"), Some(1.0));
    assert_eq!(api_requests(&s, "429", "status"), Some(1.0));
    assert_eq!(case.status_requests(), BATCHES + 1);
    case.assert_recovers().await;
}

#[tokio::test]
async fn a_429_retry_after_as_http_date_is_obeyed() {
    let case = with_fault("rate_limited=date:2,endpoint=status,count=1", |_| {}).await;
    let started = Instant::now();
    assert!(case.exporter.poller.refresh().await.succeeded());
    // An HTTP date has whole seconds: 2 s ahead is between 1 and 2 s of waiting.
    assert_waited(started, Duration::from_millis(900), "waited");
    assert_eq!(
        value(&case.metrics().await, "monogoto_api_rate_limited_total"),
        Some(1.0)
    );
    case.assert_recovers().await;
}

#[tokio::test]
async fn persistent_429s_give_up_within_the_budget() {
    let case = with_fault("rate_limited=retry_after:0,endpoint=status", |c| {
        c.poll.retries = 2
    })
    .await;
    let report = case.exporter.poller.refresh().await;
    assert_eq!(report.failed_batches, BATCHES as usize);
    let s = case.metrics().await;
    assert_eq!(
        value(&s, "monogoto_up"),
        Some(1.0),
        "429s say nothing of whether the API works"
    );
    assert_eq!(value(&s, "monogoto_things_reported"), Some(THINGS as f64));
    assert_eq!(refresh_errors(&s, "status"), Some(BATCHES as f64));
    assert_eq!(case.status_requests(), BATCHES * 3);
    assert_budget(case.status_requests(), 2);
    assert_eq!(
        value(&s, "monogoto_api_rate_limited_total"),
        Some((BATCHES * 3) as f64)
    );
    case.assert_recovers().await;
}

#[tokio::test]
async fn a_burst_of_5xx_is_retried_away() {
    let case = with_fault("status=503,endpoint=status,count=2", |_| {}).await;
    assert!(case.exporter.poller.refresh().await.succeeded());
    let s = case.metrics().await;
    assert_eq!(api_requests(&s, "503", "status"), Some(2.0));
    assert_eq!(api_retries(&s, "status"), Some(2.0));
    assert_eq!(case.status_requests(), BATCHES + 2);
    case.assert_recovers().await;
}

#[tokio::test]
async fn persistent_5xx_fail_the_refresh_within_the_budget() {
    let case = with_fault("status=500,endpoint=status", |_| {}).await;
    case.exporter.poller.refresh().await;
    case.assert_failed_and_stale("status").await;
    assert_eq!(case.status_requests(), BATCHES * 4, "1 + 3 retries each");
    case.assert_recovers().await;
}

#[tokio::test]
async fn a_400_for_every_request_is_not_split_forever() {
    let case = with_fault("status=400,endpoint=status", |_| {}).await;
    case.exporter.poller.refresh().await;
    case.assert_failed_and_stale("status").await;
    let first = case.status_requests();
    assert!(
        first <= BATCHES * 2 * 7,
        "split down one path until the request itself shows invalid: {first}"
    );
    case.exporter.poller.refresh().await;
    assert_eq!(
        case.status_requests(),
        first + BATCHES,
        "no more splitting once that is known"
    );
    case.assert_recovers().await;
}

#[tokio::test]
async fn other_4xx_are_not_retried() {
    let case = with_fault("status=403,endpoint=status", |_| {}).await;
    case.exporter.poller.refresh().await;
    let s = case.assert_failed_and_stale("status").await;
    assert_eq!(case.status_requests(), BATCHES);
    assert_eq!(api_retries(&s, "status"), Some(0.0));
    case.assert_recovers().await;
}

#[tokio::test]
async fn a_401_on_a_static_token_keeps_the_last_data() {
    let case = with_fault("unauthorized,endpoint=status", |_| {}).await;
    for _ in 0..3 {
        case.exporter.poller.refresh().await;
    }
    let s = case.assert_failed_and_stale("auth").await;
    assert!(case.status_requests() <= 3 * BATCHES, "no retries on 401");
    assert_eq!(api_retries(&s, "status"), Some(0.0));
    case.assert_recovers().await;
}

#[tokio::test]
async fn a_401_with_a_login_logs_in_once_more_and_never_loops() {
    let sim = simulator(THINGS).await;
    let exporter = start_exporter(&login_config(&sim)).await;
    assert_eq!(sim.simulator.requests(SimEndpoint::Auth), 1);

    sim.simulator
        .add_fault(rule("unauthorized,endpoint=status,count=1"));
    assert!(
        exporter.poller.refresh().await.succeeded(),
        "one login again cures one 401"
    );
    assert_eq!(sim.simulator.requests(SimEndpoint::Auth), 2);

    sim.simulator.clear_faults();
    sim.simulator
        .add_fault(rule("unauthorized,endpoint=status"));
    for _ in 0..3 {
        assert!(!exporter.poller.refresh().await.succeeded());
    }
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Auth),
        3,
        "one more login, then backing off"
    );
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_up"), Some(0.0));
    assert_eq!(value(&s, "monogoto_things_reported"), Some(THINGS as f64));
    assert!(refresh_errors(&s, "auth").is_some_and(|e| e >= 1.0));
    exporter.shutdown().await;
}

async fn decode_fault_case(spec: &str, tweak: impl FnOnce(&mut Config)) {
    let case = with_fault(spec, tweak).await;
    case.exporter.poller.refresh().await;
    let s = case.assert_failed_and_stale("decode").await;
    assert_eq!(case.status_requests(), BATCHES, "{spec}: not retried");
    assert_eq!(api_retries(&s, "status"), Some(0.0));
    case.assert_recovers().await;
}

#[tokio::test]
async fn truncated_json_fails_the_batch() {
    decode_fault_case("truncated_json,endpoint=status", |_| {}).await;
}

#[tokio::test]
async fn malformed_json_fails_the_batch() {
    decode_fault_case("malformed_json,endpoint=status", |_| {}).await;
}

/// `Success: false` in a 200 is the API refusing: a `status` error, not a
/// body that could not be decoded, and not retried.
#[tokio::test]
async fn success_false_fails_the_batch_as_a_status_error() {
    let case = with_fault("success_false,endpoint=status", |_| {}).await;
    case.exporter.poller.refresh().await;
    let s = case.assert_failed_and_stale("status").await;
    assert_eq!(refresh_errors(&s, "status"), Some(BATCHES as f64));
    assert_eq!(refresh_errors(&s, "decode"), Some(0.0));
    assert_eq!(case.status_requests(), BATCHES, "not retried");
    case.assert_recovers().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    decode_fault_case("oversized=2MiB,endpoint=status", |c| {
        c.max_body_size = 1024 * 1024
    })
    .await;
}

#[tokio::test]
async fn wrong_types_keep_the_last_good_values() {
    let case = setup(|_| {}).await;
    let info_before = info_lines(&scrape(&case.exporter).await);
    case.inject("wrong_types,endpoint=status");
    let report = case.exporter.poller.refresh().await;
    assert!(
        report.succeeded(),
        "the answers parse; their bad values are dropped: {report:?}"
    );
    let text = scrape(&case.exporter).await;
    let s = samples(&text);
    assert_eq!(case.watched_value(&s), Some(case.before), "last good value");
    let info_after = info_lines(&text);
    assert_eq!(info_after, info_before, "names survive a garbled answer");
    let parse_errors: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("monogoto_parse_errors_total{"))
        .map(|(_, v)| v)
        .sum();
    assert!(
        parse_errors >= THINGS as f64,
        "parse errors counted: {parse_errors}"
    );
    case.assert_recovers().await;
}

#[tokio::test]
async fn the_rate_limit_paces_every_request() {
    let (sim, mut cfg) = paced(20, "10/s").await;
    cfg.poll.batch_size = 1;
    cfg.poll.inactive_interval = Duration::ZERO;
    let exporter = start_exporter(&cfg).await;
    sim.simulator.reset_counters();
    let started = Instant::now();
    assert!(exporter.poller.refresh().await.succeeded());
    // 20 requests at 10/s: ten at once, the next ten once the first have left the window.
    assert_waited(started, Duration::from_millis(950), "took");
    assert_eq!(sim.simulator.requests(SimEndpoint::Status), 20);
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_fleet_larger_than_the_interval_allows_is_paced_not_failed() {
    let (sim, mut cfg) = paced(20, "8/s").await;
    cfg.poll.batch_size = 1;
    cfg.poll.interval = Duration::from_secs(1);
    let started = Instant::now();
    let exporter = monogoto_exporter::app::start(&cfg).await.expect("starts");
    wait_until("every Thing, in one paced refresh", || {
        exporter.health.things_reported.get() == 20
    })
    .await;
    // 20 requests at 8/s, evenly: about 2.4 s, not 20 at once.
    assert_waited(started, Duration::from_secs(2), "paced");
    let s = scrape_samples(&exporter).await;
    assert_eq!(
        value(&s, "monogoto_up"),
        Some(1.0),
        "waiting is not failing"
    );
    assert_eq!(refresh_errors(&s, "timeout"), Some(0.0));
    // 20 requests at 8/s, less the share of the SUSPENDED and RETIRED ones.
    assert!(
        value(&s, "monogoto_refresh_target_seconds").is_some_and(|t| t > 1.5 && t <= 2.5),
        "target {:?}",
        value(&s, "monogoto_refresh_target_seconds")
    );
    assert!(value(&s, "monogoto_api_budget_wait_seconds_total").is_some_and(|w| w > 1.0));
    assert!(
        sim.simulator.requests(SimEndpoint::Status) <= 22,
        "each SIM once per refresh"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_listing_too_long_for_one_refresh_resumes_in_the_next() {
    // 13 pages of /things and 12 status requests at 5/s: several refreshes' worth.
    let (sim, mut cfg) = paced(600, "5/s").await;
    cfg.iccids.clear();
    cfg.discover = true;
    cfg.poll.interval = Duration::from_secs(1);
    let exporter = monogoto_exporter::app::start(&cfg).await.expect("starts");
    wait_until(
        "the whole fleet, listed and polled over several refreshes",
        || exporter.health.things_reported.get() == 600,
    )
    .await;
    assert_eq!(exporter.health.things_configured.get(), 600);
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Things),
        13,
        "each page listed once: the listing resumed, it did not start over"
    );
    exporter.shutdown().await;
}

/// `X-RateLimit-Reset` as epoch milliseconds: read as seconds it was a pause of
/// 57,000 years, and polling stopped. Now: a pause of about a second, then
/// polling goes on.
#[tokio::test]
async fn a_rate_limit_reset_in_epoch_milliseconds_pauses_for_seconds() {
    let case = setup(|_| {}).await;
    let reset_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
        + 1000;
    case.sim.simulator.add_fault(rule(&format!(
        "raw_rate_limit_reset={reset_ms},endpoint=status,count=1"
    )));
    assert!(case.exporter.poller.refresh().await.succeeded());
    let started = Instant::now();
    let report = case.exporter.poller.refresh().await;
    assert!(report.succeeded(), "polling goes on: {report:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "paused {:?}",
        started.elapsed()
    );
    assert_eq!(
        case.status_requests(),
        BATCHES * 2,
        "the exporter kept asking"
    );
    case.assert_recovers().await;
}

/// A `Retry-After` on a 5xx holds every request back, as on a 429: with one
/// request at a time and no retries, the second batch waits for the first's pause.
#[tokio::test]
async fn a_retry_after_on_a_5xx_holds_every_request() {
    let case = with_fault("raw_retry_after=503:1,endpoint=status,count=1", |c| {
        c.poll.concurrency = 1;
        c.poll.retries = 0;
    })
    .await;
    let started = Instant::now();
    let report = case.exporter.poller.refresh().await;
    assert_eq!(report.failed_batches, 1, "{report:?}");
    assert_waited(
        started,
        Duration::from_millis(950),
        "the other batch waited",
    );
    assert_eq!(case.status_requests(), BATCHES);
    case.assert_recovers().await;
}

/// Rate-limit headers no client could honour (a pause past the end of time, or
/// of a day) neither crash the poller nor stop it: the pause is cut to
/// `MAX_SERVER_PAUSE`, the task stays alive and healthy, and the last values
/// stay served.
#[tokio::test]
async fn absurd_rate_limit_headers_neither_panic_nor_stop_polling() {
    for spec in [
        "raw_retry_after=18446744073709551615,endpoint=status,count=1",
        "raw_retry_after=86400,endpoint=status,count=1",
        "raw_retry_after=503:99999999999999999999999,endpoint=status,count=1",
        "raw_rate_limit_reset=1e300,endpoint=status,count=1",
        "raw_rate_limit_reset=18446744073709551615,endpoint=status,count=1",
    ] {
        let case = with_fault(spec, |c| c.poll.interval = Duration::from_secs(1)).await;
        wait_until("the absurd header is answered", || {
            case.sim.simulator.faults_served() >= 1
        })
        .await;
        // Polling now pauses (for at most 15 minutes): the task is alive and
        // healthy, and nothing the exporter serves is lost meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(500), case.exporter.polling_failed())
                .await
                .is_err(),
            "{spec}: the polling task is alive"
        );
        let healthz = get(&format!("{}/healthz", case.exporter.url())).await;
        assert_eq!(healthz.status(), 200, "{spec}");
        let s = case.metrics().await;
        assert_eq!(
            value(&s, "monogoto_things_reported"),
            Some(THINGS as f64),
            "{spec}: last values kept"
        );
        case.exporter.shutdown().await;
    }
}

/// The real client after absurd headers, with the cap lowered to a second so
/// the test need not wait 15 minutes: it pauses that long, then answers again.
#[tokio::test]
async fn the_client_resumes_after_a_capped_pause() {
    use monogoto_exporter::monogoto::ApiMetrics;
    use monogoto_exporter::monogoto::Credentials;
    use monogoto_exporter::monogoto::{Client, ClientOptions};
    use secrecy::SecretString;

    let sim = simulator(5).await;
    let health = std::sync::Arc::new(ApiMetrics::new());
    let client = Client::new(
        ClientOptions::new(sim.url()),
        Credentials::Token(SecretString::from(sim.simulator.static_token())),
        health,
    )
    .expect("client")
    .with_max_server_pause(Duration::from_secs(1));
    let iccids = sim.simulator.iccids();
    let deadline = || Some(tokio::time::Instant::now() + Duration::from_secs(10));
    for spec in [
        "raw_retry_after=18446744073709551615,endpoint=status,count=1",
        "raw_rate_limit_reset=1e300,endpoint=status,count=1",
    ] {
        sim.simulator.add_fault(rule(spec));
        let started = Instant::now();
        // The 429 is retried after the capped pause; the reset answer is good
        // and pauses the request after it.
        for _ in 0..2 {
            let page = client
                .thing_status(&iccids, 50, 0, deadline())
                .await
                .unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(page.things.len(), 5, "{spec}");
        }
        let paused = started.elapsed();
        assert!(
            paused >= Duration::from_millis(950) && paused < Duration::from_secs(5),
            "{spec}: paused {paused:?}"
        );
        sim.simulator.clear_faults();
    }
}
