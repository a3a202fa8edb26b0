//! Shared helpers of the integration tests: a simulator, an exporter against
//! it, scraping and reading the exposition.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use monogoto_exporter::app::{self, RunningExporter};
use monogoto_exporter::config::{Config, LogConfig, LogFormat, PollConfig};
use monogoto_exporter::monogoto::Credentials;
use monogoto_exporter::monogoto::budget::Budget;
use monogoto_exporter::simulator::{RunningSimulator, Simulator, SimulatorConfig};
use secrecy::SecretString;

/// A fixed simulator time, so that Things do not change during a test.
pub fn frozen_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000)
}

pub async fn simulator(things: usize) -> RunningSimulator {
    simulator_with(SimulatorConfig {
        things,
        seed: 7,
        ..SimulatorConfig::default()
    })
    .await
}

pub async fn simulator_with(config: SimulatorConfig) -> RunningSimulator {
    let sim = Simulator::new(config);
    sim.set_time(Some(frozen_time()));
    sim.spawn().await.expect("simulator starts")
}

/// A simulator of `things` that enforces `budget` (`4/s,20/10s`) with 429s,
/// its time frozen.
pub async fn budgeted_simulator(things: usize, seed: u64, budget: &str) -> RunningSimulator {
    let budget: Budget = budget.parse().expect("valid budget");
    simulator_with(SimulatorConfig {
        things,
        seed,
        rate_limit: budget
            .windows()
            .iter()
            .map(|w| (w.requests, w.period))
            .collect(),
        ..SimulatorConfig::default()
    })
    .await
}

/// An exporter config against `sim`: static token, all its ICCIDs, an
/// interval long enough that tests drive refreshes themselves.
pub fn config(sim: &RunningSimulator) -> Config {
    Config {
        listen_address: "127.0.0.1:0".into(),
        telemetry_path: "/metrics".into(),
        web_config_file: None,
        web_limits: Default::default(),
        enable_lifecycle: false,
        url: sim.url(),
        credentials: Some(Credentials::Token(SecretString::from(
            sim.simulator.static_token(),
        ))),
        credentials_source: Default::default(),
        iccids: sim.simulator.iccids(),
        iccids_file: None,
        discover: false,
        discover_interval: Duration::from_secs(3600),
        rate_limit: Budget::unlimited(),
        max_body_size: 16 * 1024 * 1024,
        thing_ids_format: monogoto_exporter::monogoto::ThingIdsFormat::Auto,
        shard: Default::default(),
        storage_path: None,
        webhook: None,
        shard_peer_url_template: None,
        poll: PollConfig {
            interval: Duration::from_secs(3600),
            batch_size: 50,
            concurrency: 4,
            timeout: Duration::from_secs(5),
            retries: 3,
            stale_after: Some(Duration::from_secs(3 * 3600)),
            inactive_interval: Duration::from_secs(3600),
        },
        log: LogConfig {
            filter: "info".into(),
            format: LogFormat::Text,
        },
        warnings: Vec::new(),
    }
}

pub fn login(sim: &RunningSimulator) -> Credentials {
    let (username, password) = sim.simulator.credentials();
    Credentials::Login {
        username,
        password: SecretString::from(password),
    }
}

/// Starts the exporter and waits for its first refresh.
pub async fn start_exporter(config: &Config) -> RunningExporter {
    let exporter = app::start(config).await.expect("exporter starts");
    wait_until("first refresh", || exporter.fleet.is_ready()).await;
    exporter
}

pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("request succeeds")
}

pub async fn scrape(exporter: &RunningExporter) -> String {
    let response = get(&format!("{}/metrics", exporter.url())).await;
    assert_eq!(response.status(), 200);
    response.text().await.expect("body")
}

/// The samples of an exposition: series (name and labels as written) to value.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            Some((series.to_string(), value))
        })
        .collect()
}

pub fn thing_series(name: &str, iccid: &str) -> String {
    format!("{name}{{iccid=\"{iccid}\"}}")
}

/// Escapes a label value as the text format does.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn value(samples: &BTreeMap<String, f64>, series: &str) -> Option<f64> {
    samples.get(series).copied()
}

/// `monogoto_api_requests_total` of one answer `code` from one `endpoint`.
pub fn api_requests(samples: &BTreeMap<String, f64>, code: &str, endpoint: &str) -> Option<f64> {
    value(
        samples,
        &format!("monogoto_api_requests_total{{code=\"{code}\",endpoint=\"{endpoint}\"}}"),
    )
}

/// `monogoto_api_retries_total` of one `endpoint`.
pub fn api_retries(samples: &BTreeMap<String, f64>, endpoint: &str) -> Option<f64> {
    value(
        samples,
        &format!("monogoto_api_retries_total{{endpoint=\"{endpoint}\"}}"),
    )
}

/// `monogoto_refresh_errors_total` of one `kind`.
pub fn refresh_errors(samples: &BTreeMap<String, f64>, kind: &str) -> Option<f64> {
    value(
        samples,
        &format!("monogoto_refresh_errors_total{{kind=\"{kind}\"}}"),
    )
}

/// Scrapes `exporter` and parses the exposition.
pub async fn scrape_samples(exporter: &RunningExporter) -> BTreeMap<String, f64> {
    samples(&scrape(exporter).await)
}

/// Scrapes `exporter` and returns the value of one series.
pub async fn scrape_value(exporter: &RunningExporter, series: &str) -> Option<f64> {
    value(&scrape_samples(exporter).await, series)
}

/// [`config`] with a username and password to log in with.
pub fn login_config(sim: &RunningSimulator) -> Config {
    Config {
        credentials: Some(login(sim)),
        ..config(sim)
    }
}
