//! The full loop against the simulator on 127.0.0.1: poll, snapshot, /metrics.

mod common;

use std::io::Read as _;
use std::time::Duration;

use common::*;
use monogoto_exporter::simulator::{FailMode, SimEndpoint, SimulatorConfig};

fn connected_value(truth: bool) -> f64 {
    if truth { 1.0 } else { 0.0 }
}

#[tokio::test]
async fn every_thing_is_exported_with_exact_values() {
    let sim = simulator(60).await;
    let exporter = start_exporter(&config(&sim)).await;
    let text = scrape(&exporter).await;
    let s = samples(&text);

    assert_eq!(value(&s, "monogoto_up"), Some(1.0));
    assert_eq!(value(&s, "monogoto_things_configured"), Some(60.0));
    assert_eq!(value(&s, "monogoto_things_reported"), Some(60.0));
    assert_eq!(api_requests(&s, "200", "status"), Some(2.0));
    assert!(
        value(&s, "monogoto_last_refresh_success_timestamp_seconds").is_some_and(|t| t > 1.7e9)
    );
    assert!(
        s.keys()
            .any(|k| k.starts_with("process_resident_memory_bytes"))
    );
    assert!(
        s.keys()
            .any(|k| k.starts_with("monogoto_exporter_build_info{"))
    );

    let mut connected = 0;
    for iccid in sim.simulator.iccids() {
        let truth = sim.simulator.truth(&iccid).expect("known Thing");
        let series = |name| value(&s, &thing_series(name, &iccid));
        assert_eq!(
            series("monogoto_thing_connected"),
            Some(connected_value(truth.connected)),
            "{iccid}"
        );
        assert_eq!(
            series("monogoto_thing_active_sessions"),
            Some(truth.active_sessions as f64),
            "{iccid}"
        );
        assert_eq!(
            series("monogoto_thing_uplink_throughput"),
            Some(truth.uplink_throughput),
            "{iccid}"
        );
        assert_eq!(
            series("monogoto_thing_downlink_throughput"),
            Some(truth.downlink_throughput),
            "{iccid}"
        );
        assert_eq!(
            series("monogoto_thing_last_connection_timestamp_seconds"),
            truth.last_connection,
            "{iccid}"
        );
        assert_eq!(
            series("monogoto_thing_last_disconnection_timestamp_seconds"),
            truth.last_disconnection,
            "{iccid}"
        );
        assert_eq!(
            series("monogoto_thing_session_start_timestamp_seconds"),
            truth.session_start,
            "{iccid}"
        );
        let info = format!(
            "monogoto_thing_info{{iccid=\"{iccid}\",thing_name=\"{}\",imsi=\"{}\",msisdn=\"{}\",provision_status=\"{}\"}}",
            escape(&truth.thing_name),
            escape(&truth.imsi),
            escape(&truth.msisdn),
            escape(&truth.provision_status)
        );
        assert_eq!(value(&s, &info), Some(1.0), "missing {info}");
        connected += usize::from(truth.connected);
    }
    assert!(
        connected > 0 && connected < 60,
        "the fleet mixes states: {connected} connected"
    );
    assert!(
        text.contains("\\\""),
        "a Thing name with quotes is exported escaped"
    );
    assert!(
        text.contains("\\n"),
        "a Thing name with a newline is exported escaped"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_refresh_costs_one_request_per_batch() {
    let sim = simulator(101).await;
    let exporter = start_exporter(&config(&sim)).await;
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Status),
        3,
        "ceil(101 / 50)"
    );
    let queries = sim.simulator.status_queries();
    for query in &queries {
        assert!(
            query.contains("limit=50") && query.contains("offset=0"),
            "{query}"
        );
    }
    let ids_in = |q: &str| {
        q.split("ThingIds=").nth(1).map_or(0, |rest| {
            rest.split('&').next().unwrap_or("").split(',').count()
        })
    };
    let mut sizes: Vec<usize> = queries.iter().map(|q| ids_in(q)).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 50, 50]);

    // SUSPENDED and RETIRED SIMs are asked for once an hour from now on.
    let inactive = exporter.health.things_inactive.get() as usize;
    assert!(inactive > 0, "the simulator's fleet has some");
    let active_batches = (101 - inactive).div_ceil(50);
    let report = exporter.poller.refresh().await;
    assert!(report.succeeded());
    assert_eq!(report.batches, active_batches);
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Status),
        3 + active_batches as u64
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn batch_size_one_and_a_capped_server_still_read_everything() {
    let sim = simulator_with(SimulatorConfig {
        things: 50,
        seed: 3,
        page_cap: Some(20),
        ..SimulatorConfig::default()
    })
    .await;
    let exporter = start_exporter(&config(&sim)).await;
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Status),
        3,
        "pages of 20, 20 and 10"
    );
    assert_eq!(
        scrape_value(&exporter, "monogoto_things_reported").await,
        Some(50.0)
    );
    exporter.shutdown().await;

    let sim = simulator(7).await;
    let mut cfg = config(&sim);
    cfg.poll.batch_size = 1;
    let exporter = start_exporter(&cfg).await;
    assert_eq!(sim.simulator.requests(SimEndpoint::Status), 7);
    assert_eq!(
        scrape_value(&exporter, "monogoto_things_reported").await,
        Some(7.0)
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn login_then_login_again_after_a_401() {
    let sim = simulator(10).await;
    let exporter = start_exporter(&login_config(&sim)).await;
    assert_eq!(sim.simulator.requests(SimEndpoint::Auth), 1);
    assert_eq!(scrape_value(&exporter, "monogoto_up").await, Some(1.0));

    sim.simulator.revoke_tokens();
    let report = exporter.poller.refresh().await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Auth),
        2,
        "one login again, not one per batch"
    );
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_up"), Some(1.0));
    assert_eq!(api_requests(&s, "401", "status"), Some(1.0));
    assert_eq!(api_requests(&s, "200", "auth"), Some(2.0));
    exporter.shutdown().await;
}

#[tokio::test]
async fn concurrent_batches_share_one_login_again() {
    let sim = simulator(200).await;
    let mut cfg = login_config(&sim);
    cfg.poll.batch_size = 10;
    let exporter = start_exporter(&cfg).await;
    sim.simulator.revoke_tokens();
    assert!(exporter.poller.refresh().await.succeeded());
    assert_eq!(sim.simulator.requests(SimEndpoint::Auth), 2);
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_token_logs_in_again_before_it_expires() {
    let sim = simulator_with(SimulatorConfig {
        things: 5,
        seed: 1,
        token_lifetime: Duration::from_secs(2),
        ..SimulatorConfig::default()
    })
    .await;
    // Real time on both sides: the exporter reads `exp` against its own clock.
    sim.simulator.set_time(None);
    let exporter = start_exporter(&login_config(&sim)).await;
    assert_eq!(sim.simulator.requests(SimEndpoint::Auth), 1);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(exporter.poller.refresh().await.succeeded());
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Auth),
        2,
        "renewed from exp, not from a 401"
    );
    let s = scrape_samples(&exporter).await;
    assert_eq!(api_requests(&s, "401", "status"), None);
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_never_loops() {
    let sim = simulator(5).await;
    let mut cfg = config(&sim);
    cfg.credentials = Some(monogoto_exporter::monogoto::Credentials::Login {
        username: "demo".into(),
        password: secrecy::SecretString::from("wrong"),
    });
    let exporter = start_exporter(&cfg).await;
    for _ in 0..3 {
        let report = exporter.poller.refresh().await;
        assert!(!report.succeeded());
    }
    assert_eq!(
        sim.simulator.requests(SimEndpoint::Auth),
        1,
        "a failed login backs off"
    );
    assert_eq!(sim.simulator.requests(SimEndpoint::Status), 0);
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_up"), Some(0.0));
    assert_eq!(api_requests(&s, "401", "auth"), Some(1.0));
    assert_eq!(
        get(&format!("{}/readyz", exporter.url())).await.status(),
        200
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_rejected_static_token_sets_up_to_zero() {
    let sim = simulator(5).await;
    let mut cfg = config(&sim);
    cfg.credentials = Some(monogoto_exporter::monogoto::Credentials::Token(
        secrecy::SecretString::from("bogus"),
    ));
    let exporter = start_exporter(&cfg).await;
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_up"), Some(0.0));
    assert_eq!(value(&s, "monogoto_things_reported"), Some(0.0));
    assert_eq!(api_requests(&s, "401", "status"), Some(1.0));
    assert_eq!(sim.simulator.requests(SimEndpoint::Auth), 0);
    exporter.shutdown().await;
}

/// Pages of 50 until an empty one: 50, 50, 20 and 0 Things.
#[tokio::test]
async fn discovery_lists_every_thing_fifty_a_page() {
    let sim = simulator(120).await;
    let mut cfg = config(&sim);
    cfg.iccids.clear();
    cfg.discover = true;
    let exporter = start_exporter(&cfg).await;
    assert_eq!(sim.simulator.requests(SimEndpoint::Things), 4);
    assert_eq!(sim.simulator.requests(SimEndpoint::Status), 3);
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_things_configured"), Some(120.0));
    assert_eq!(value(&s, "monogoto_things_reported"), Some(120.0));
    assert_eq!(api_requests(&s, "200", "things"), Some(4.0));
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_thing_that_leaves_the_fleet_goes_after_stale_after() {
    let sim = simulator(5).await;
    let mut cfg = config(&sim);
    cfg.poll.interval = Duration::from_secs(1);
    cfg.poll.stale_after = Some(Duration::from_secs(1));
    let exporter = start_exporter(&cfg).await;
    let gone = sim.simulator.iccids()[2].clone();
    let series = thing_series("monogoto_thing_connected", &gone);
    assert!(scrape_value(&exporter, &series).await.is_some());

    sim.simulator.remove_thing(&gone);
    assert!(exporter.poller.refresh().await.succeeded());
    let s = scrape_samples(&exporter).await;
    assert!(
        value(&s, &series).is_some(),
        "kept with its last values until stale"
    );
    assert_eq!(value(&s, "monogoto_things_reported"), Some(5.0));

    tokio::time::sleep(Duration::from_millis(1200)).await;
    exporter.poller.refresh().await;
    let text = scrape(&exporter).await;
    assert!(!text.contains(&gone), "every series of the Thing is gone");
    assert_eq!(
        value(&samples(&text), "monogoto_things_reported"),
        Some(4.0)
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn a_failing_batch_keeps_the_others() {
    for mode in [FailMode::ServerError, FailMode::SuccessFalse] {
        let sim = simulator(100).await;
        let exporter = start_exporter(&config(&sim)).await;
        let iccids = sim.simulator.iccids();
        let (in_good_batch, in_bad_batch) = (&iccids[0], &iccids[75]);
        let before_good = sim.simulator.truth(in_good_batch).expect("known").connected;
        let before_bad = sim.simulator.truth(in_bad_batch).expect("known").connected;

        sim.simulator
            .set_connected(in_good_batch, Some(!before_good));
        sim.simulator.set_connected(in_bad_batch, Some(!before_bad));
        sim.simulator.set_failing(in_bad_batch, Some(mode));
        let report = exporter.poller.refresh().await;
        assert_eq!((report.batches, report.failed_batches), (2, 1), "{mode:?}");

        let s = scrape_samples(&exporter).await;
        assert_eq!(value(&s, "monogoto_up"), Some(0.0));
        assert_eq!(value(&s, "monogoto_things_reported"), Some(100.0));
        let connected = |iccid: &str| value(&s, &thing_series("monogoto_thing_connected", iccid));
        assert_eq!(
            connected(in_good_batch),
            Some(connected_value(!before_good)),
            "refreshed"
        );
        assert_eq!(
            connected(in_bad_batch),
            Some(connected_value(before_bad)),
            "last known value"
        );
        let counter = |series: &str| value(&s, series);
        if mode == FailMode::ServerError {
            // A 5xx is tried again, three times by default.
            assert_eq!(
                counter("monogoto_api_requests_total{code=\"500\",endpoint=\"status\"}"),
                Some(4.0)
            );
            assert_eq!(
                counter("monogoto_api_retries_total{endpoint=\"status\"}"),
                Some(3.0)
            );
            assert_eq!(
                counter("monogoto_refresh_errors_total{kind=\"status\"}"),
                Some(1.0)
            );
        } else {
            assert_eq!(
                counter("monogoto_api_retries_total{endpoint=\"status\"}"),
                Some(0.0),
                "not transient"
            );
            // The API refusing in a well-formed body: a status error.
            assert_eq!(
                counter("monogoto_refresh_errors_total{kind=\"status\"}"),
                Some(1.0)
            );
            assert_eq!(
                counter("monogoto_refresh_errors_total{kind=\"decode\"}"),
                Some(0.0)
            );
        }

        sim.simulator.set_failing(in_bad_batch, None);
        assert!(
            exporter.poller.refresh().await.succeeded(),
            "recovers when the fault stops"
        );
        let s = scrape_samples(&exporter).await;
        assert_eq!(value(&s, "monogoto_up"), Some(1.0));
        assert_eq!(
            value(&s, &thing_series("monogoto_thing_connected", in_bad_batch)),
            Some(connected_value(!before_bad))
        );
        exporter.shutdown().await;
    }
}

#[tokio::test]
async fn http_endpoints_and_gzip() {
    let sim = simulator(10).await;
    let mut cfg = config(&sim);
    cfg.telemetry_path = "/custom-metrics".into();
    let exporter = start_exporter(&cfg).await;
    let base = exporter.url();

    let landing = get(&format!("{base}/")).await.text().await.expect("body");
    assert!(landing.contains("href=\"/custom-metrics\""), "{landing}");
    assert_eq!(get(&format!("{base}/healthz")).await.status(), 200);
    assert_eq!(get(&format!("{base}/readyz")).await.status(), 200);
    assert_eq!(get(&format!("{base}/metrics")).await.status(), 404);

    let plain = get(&format!("{base}/custom-metrics")).await;
    assert_eq!(
        plain
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let plain = plain.text().await.expect("body");
    let zipped = reqwest::Client::new()
        .get(format!("{base}/custom-metrics"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(
        zipped
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let bytes = zipped.bytes().await.expect("body");
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut unzipped)
        .expect("valid gzip");
    let things = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("monogoto_thing_"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(things(&unzipped), things(&plain));
    assert!(!things(&plain).is_empty());
    exporter.shutdown().await;
}

#[tokio::test]
async fn readyz_waits_for_the_first_refresh() {
    // An API that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let sim = simulator(1).await;
    let mut cfg = config(&sim);
    cfg.url = format!("http://{silent_addr}");
    cfg.poll.timeout = Duration::from_millis(1500);
    cfg.poll.retries = 0;
    let exporter = monogoto_exporter::app::start(&cfg).await.expect("starts");
    let ready = get(&format!("{}/readyz", exporter.url())).await;
    assert_eq!(ready.status(), 503);
    assert_eq!(
        get(&format!("{}/healthz", exporter.url())).await.status(),
        200
    );
    let s = scrape_samples(&exporter).await;
    assert_eq!(
        value(&s, "monogoto_things_reported"),
        Some(0.0),
        "served while the first refresh runs"
    );
    wait_until("first refresh", || exporter.fleet.is_ready()).await;
    assert_eq!(
        get(&format!("{}/readyz", exporter.url())).await.status(),
        200
    );
    let s = scrape_samples(&exporter).await;
    assert_eq!(value(&s, "monogoto_up"), Some(0.0));
    assert_eq!(api_requests(&s, "error", "status"), Some(1.0));
    exporter.shutdown().await;
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let sim = simulator(40).await;
    let exporter = start_exporter(&config(&sim)).await;
    let text = scrape(&exporter).await;
    exporter.shutdown().await;

    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match promtool {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is required in CI: {e}"
            );
            eprintln!("promtool not installed; skipping the check ({e})");
            return;
        }
    };
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

#[tokio::test]
async fn three_shards_export_every_thing_exactly_once() {
    let sim = simulator(300).await;
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut configured_total = 0.0;
    for index in 0..3 {
        let mut cfg = config(&sim);
        cfg.iccids.clear();
        cfg.discover = true;
        cfg.shard = monogoto_exporter::shard::Shard { index, count: 3 };
        let exporter = start_exporter(&cfg).await;
        let text = scrape(&exporter).await;
        let s = samples(&text);
        assert_eq!(
            value(
                &s,
                &format!("monogoto_shard_info{{count=\"3\",index=\"{index}\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(value(&s, "monogoto_shards"), Some(3.0));
        let configured = value(&s, "monogoto_things_configured").expect("configured");
        assert!(
            configured > 50.0 && configured < 150.0,
            "shard {index} has {configured} of 300"
        );
        assert_eq!(value(&s, "monogoto_things_reported"), Some(configured));
        configured_total += configured;
        for series in s.keys().filter(|k| k.starts_with("monogoto_thing_info{")) {
            let iccid = series.split('"').nth(1).expect("iccid label").to_string();
            *seen.entry(iccid).or_default() += 1;
        }
        exporter.shutdown().await;
    }
    assert_eq!(configured_total, 300.0);
    assert_eq!(seen.len(), 300, "every Thing is exported");
    assert!(seen.values().all(|&n| n == 1), "and exactly once");
    let fleet: std::collections::BTreeSet<String> = sim.simulator.iccids().into_iter().collect();
    assert_eq!(
        seen.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        fleet
    );
}

#[tokio::test]
async fn configured_iccids_are_sharded_too() {
    let sim = simulator(90).await;
    let mut owned = 0;
    for index in 0..2 {
        let mut cfg = config(&sim);
        cfg.shard = monogoto_exporter::shard::Shard { index, count: 2 };
        let exporter = start_exporter(&cfg).await;
        let reported = exporter.health.things_reported.get();
        assert_eq!(exporter.health.things_configured.get(), reported);
        owned += reported;
        exporter.shutdown().await;
    }
    assert_eq!(owned, 90);
}

#[tokio::test]
async fn a_polling_task_that_dies_makes_the_exporter_unhealthy_and_stop() {
    let sim = simulator(5).await;
    let exporter = start_exporter(&config(&sim)).await;
    let healthz = format!("{}/healthz", exporter.url());
    assert_eq!(get(&healthz).await.status(), 200);
    exporter.abort_polling();
    tokio::time::timeout(Duration::from_secs(5), exporter.polling_failed())
        .await
        .expect("the exporter notices that polling stopped");
    let response = get(&healthz).await;
    assert_eq!(response.status(), 503, "not healthy while it exits");
    // Still serving the last data meanwhile.
    assert!(scrape_value(&exporter, "monogoto_things_reported").await == Some(5.0));
    exporter.shutdown().await;
}

/// An API that writes the trailing `F` of ICCIDs lower-case.
async fn lowercase_simulator() -> monogoto_exporter::simulator::RunningSimulator {
    let sim = simulator_with(SimulatorConfig {
        things: 40,
        seed: 7,
        lowercase_iccids: true,
        ..SimulatorConfig::default()
    })
    .await;
    let with_f = sim
        .simulator
        .iccids()
        .iter()
        .filter(|i| i.ends_with('F'))
        .count();
    assert!(with_f >= 2, "the fleet has ICCIDs ending in F: {with_f}");
    sim
}

/// Every Thing of the simulator is exported once, under its upper-case ICCID.
fn assert_every_thing_once_upper_case(
    sim: &monogoto_exporter::simulator::RunningSimulator,
    text: &str,
) {
    let s = samples(text);
    assert_eq!(value(&s, "monogoto_up"), Some(1.0));
    let n = sim.simulator.iccids().len() as f64;
    assert_eq!(
        value(&s, "monogoto_things_configured"),
        Some(n),
        "no duplicates"
    );
    assert_eq!(value(&s, "monogoto_things_reported"), Some(n));
    for iccid in sim.simulator.iccids() {
        assert!(
            value(&s, &thing_series("monogoto_thing_connected", &iccid)).is_some(),
            "{iccid} exported"
        );
    }
    for label in text.split("iccid=\"").skip(1) {
        let iccid = label.split('"').next().unwrap_or_default();
        assert!(
            !iccid.contains('f'),
            "an iccid label with a lower-case f: {iccid}"
        );
    }
    assert_eq!(
        value(&s, "monogoto_parse_errors_total{field=\"ThingId\"}").unwrap_or(0.0),
        0.0
    );
}

#[tokio::test]
async fn configured_iccids_match_answers_that_write_them_lower_case() {
    let sim = lowercase_simulator().await;
    let exporter = start_exporter(&config(&sim)).await;
    assert_every_thing_once_upper_case(&sim, &scrape(&exporter).await);
    exporter.shutdown().await;
}

#[tokio::test]
async fn discovery_does_not_duplicate_an_iccid_written_in_two_cases() {
    let sim = lowercase_simulator().await;
    // Discovery alone, and discovery with the same SIMs configured upper-case.
    for configured in [false, true] {
        let mut cfg = config(&sim);
        cfg.discover = true;
        if !configured {
            cfg.iccids.clear();
        }
        let exporter = start_exporter(&cfg).await;
        assert_every_thing_once_upper_case(&sim, &scrape(&exporter).await);
        exporter.shutdown().await;
    }
}
