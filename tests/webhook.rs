//! `POST /webhook`: Monogoto's events as hints. Strict about access,
//! tolerant of shape; an event's SIM goes in the next status request, within
//! the budget, and its answer is on /metrics at once.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use monogoto_exporter::app::RunningExporter;
use monogoto_exporter::config::{Config, WebhookConfig};
use monogoto_exporter::shard::Shard;
use monogoto_exporter::simulator::{RunningSimulator, SimEndpoint};
use secrecy::SecretString;
use serde_json::{Value, json};

const TOKEN: &str = "hub-token-0123456789";
const BUDGET: &str = "4/s,20/10s";

fn with_webhook(config: Config) -> Config {
    Config {
        webhook: Some(WebhookConfig {
            token: SecretString::from(TOKEN),
            max_body_size: 64 * 1024,
        }),
        ..config
    }
}

async fn budgeted(things: usize) -> RunningSimulator {
    budgeted_simulator(things, 5, BUDGET).await
}

fn data_cdr(iccid: &str) -> Value {
    json!({
        "CdrType": "DATA",
        "UniqueID": "cdr-1",
        "Iccid": iccid,
        "IMSI": "425019000000001",
        "IMEI": "356938035643809",
        "MCC": "425",
        "MNC": "01",
        "MnoName": "Partner",
        "ThingId": format!("ThingId_ICCID_{iccid}"),
    })
}

async fn post(
    exporter: &RunningExporter,
    query: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/webhook{query}", exporter.url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request")
}

async fn post_events(exporter: &RunningExporter, body: &Value) -> u16 {
    post(exporter, &format!("?token={TOKEN}"), body.to_string())
        .await
        .status()
        .as_u16()
}

/// Posts `kib` KiB of spaces chunked, with no Content-Length; the status.
async fn chunked_post(exporter: &RunningExporter, kib: usize) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(exporter.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /webhook?token={TOKEN} HTTP/1.1\r\nHost: exporter\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
    for _ in 0..kib {
        // The server may answer and close before the whole body is sent.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

fn webhook_count(samples: &std::collections::BTreeMap<String, f64>, series: &str) -> f64 {
    value(samples, series).unwrap_or(0.0)
}

#[tokio::test]
async fn every_refusal_is_answered_as_documented() {
    let sim = simulator(10).await;
    let off = start_exporter(&config(&sim)).await;
    assert_eq!(
        post(&off, "", "[]").await.status(),
        404,
        "off without a token"
    );
    off.shutdown().await;

    let exporter = start_exporter(&with_webhook(config(&sim))).await;
    let client = reqwest::Client::new();
    let url = format!("{}/webhook", exporter.url());
    let get = client
        .get(format!("{url}?token={TOKEN}"))
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    assert_eq!(post(&exporter, "", "[]").await.status(), 401, "no token");
    assert_eq!(
        post(&exporter, "?token=wrong", "[]").await.status(),
        401,
        "wrong token"
    );
    let bearer_wrong = client
        .post(&url)
        .bearer_auth("wrong")
        .body("[]")
        .send()
        .await
        .expect("post");
    assert_eq!(bearer_wrong.status(), 401);
    let bearer = client
        .post(&url)
        .bearer_auth(TOKEN)
        .body("[]")
        .send()
        .await
        .expect("post");
    assert_eq!(bearer.status(), 202, "a bearer token works too");
    let not_json = post(&exporter, &format!("?token={TOKEN}"), "Iccid=1").await;
    assert_eq!(not_json.status(), 400);
    assert!(not_json.text().await.expect("body").contains("JSON"));
    let big = vec![b' '; 65 * 1024];
    assert_eq!(
        post(&exporter, &format!("?token={TOKEN}"), big.clone())
            .await
            .status(),
        413,
        "declared too large"
    );
    assert_eq!(chunked_post(&exporter, 70).await, 413, "streamed too large");
    let samples = scrape_samples(&exporter).await;
    for (code, count) in [
        ("401", 3.0),
        ("405", 1.0),
        ("400", 1.0),
        ("413", 2.0),
        ("202", 1.0),
    ] {
        assert_eq!(
            webhook_count(
                &samples,
                &format!("monogoto_webhook_requests_total{{code=\"{code}\"}}")
            ),
            count,
            "code {code}"
        );
    }
    exporter.shutdown().await;
}

#[tokio::test]
async fn every_documented_shape_and_spelling_is_accepted() {
    let sim = simulator(20).await;
    let iccids = sim.simulator.iccids();
    let exporter = start_exporter(&with_webhook(config(&sim))).await;
    let bodies = [
        data_cdr(&iccids[0]),
        json!([data_cdr(&iccids[1]), data_cdr(&iccids[2])]),
        json!({"Data": [data_cdr(&iccids[3])]}),
        json!({"events": [data_cdr(&iccids[4])]}),
        json!({"iccid": iccids[5], "cdrtype": "MO_SMS", "CallingNumber": "+972500000000"}),
        json!({"ICCID": iccids[6], "CdrType": "MT_SMS"}),
        json!({"ExternalUniqueId": iccids[7], "AlertType": "Last Usage"}),
        json!({"ThingId": format!("ThingId_ICCID_{}", iccids[8])}),
    ];
    for body in &bodies {
        assert_eq!(post_events(&exporter, body).await, 202, "{body}");
    }
    let samples = scrape_samples(&exporter).await;
    assert_eq!(
        webhook_count(&samples, "monogoto_webhook_events_total{type=\"data\"}"),
        5.0
    );
    assert_eq!(
        webhook_count(&samples, "monogoto_webhook_events_total{type=\"sms\"}"),
        2.0
    );
    assert_eq!(
        webhook_count(&samples, "monogoto_webhook_events_total{type=\"other\"}"),
        2.0
    );
    assert_eq!(
        webhook_count(
            &samples,
            "monogoto_webhook_events_ignored_total{reason=\"unknown_iccid\"}"
        ),
        0.0
    );
    // Each named SIM is polled at once and shown with what its event said.
    wait_for_series(
        &exporter,
        &iccids[0],
        "monogoto_thing_last_event_timestamp_seconds",
    )
    .await;
    let text = scrape(&exporter).await;
    assert!(
        text.contains(&format!(
            "monogoto_thing_network_info{{iccid=\"{}\",mcc=\"425\",mnc=\"01\",operator=\"Partner\"}} 1",
            iccids[0]
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "monogoto_thing_device_info{{iccid=\"{}\",imei=\"356938035643809\"}} 1",
        iccids[0]
    )));
    for iccid in &iccids[..9] {
        wait_for_series(
            &exporter,
            iccid,
            "monogoto_thing_last_event_timestamp_seconds",
        )
        .await;
    }
    exporter.shutdown().await;
}

async fn wait_for_series(exporter: &RunningExporter, iccid: &str, family: &str) {
    let series = thing_series(family, iccid);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if scrape(exporter).await.contains(&series) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} never shown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_for_sims_not_followed_make_no_series() {
    let sim = simulator(10).await;
    let iccids = sim.simulator.iccids();
    let exporter = start_exporter(&with_webhook(config(&sim))).await;
    let strangers = ["8988000000000009991", "8988000000000009992"];
    let body = json!([
        data_cdr(strangers[0]),
        data_cdr(strangers[1]),
        {"CdrType": "DATA", "MCC": "425"},
        {"Iccid": "not an iccid"},
        data_cdr(&iccids[0]),
    ]);
    assert_eq!(post_events(&exporter, &body).await, 202);
    wait_for_series(
        &exporter,
        &iccids[0],
        "monogoto_thing_last_event_timestamp_seconds",
    )
    .await;
    let samples = scrape_samples(&exporter).await;
    assert_eq!(
        webhook_count(
            &samples,
            "monogoto_webhook_events_ignored_total{reason=\"unknown_iccid\"}"
        ),
        2.0
    );
    assert_eq!(
        webhook_count(
            &samples,
            "monogoto_webhook_events_ignored_total{reason=\"no_iccid\"}"
        ),
        2.0
    );
    let text = scrape(&exporter).await;
    for stranger in strangers {
        assert!(!text.contains(stranger), "a series for {stranger}");
    }
    exporter.shutdown().await;
}

/// The SIMs each status request named since `from`, in order.
fn queried_since(sim: &RunningSimulator, from: usize) -> Vec<BTreeSet<String>> {
    sim.simulator
        .status_queries()
        .iter()
        .skip(from)
        .map(|query| {
            query
                .replace("%2C", ",")
                .split(['&', ',', '='])
                .filter_map(|part| part.strip_prefix("ThingId_ICCID_").map(str::to_string))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn an_event_gets_its_sim_into_the_next_request_within_the_budget() {
    let sim = budgeted(600).await;
    let iccids = sim.simulator.iccids();
    let mut config = with_webhook(config(&sim));
    config.rate_limit = BUDGET.parse().expect("valid");
    config.poll.interval = Duration::from_secs(1);
    let exporter = start_exporter(&config).await;
    wait_until("a whole pass", || exporter.fleet.snapshot().len() == 600).await;
    for (round, iccid) in iccids.iter().step_by(97).take(5).enumerate() {
        let connected =
            scrape_value(&exporter, &thing_series("monogoto_thing_connected", iccid)).await;
        let flipped = connected != Some(1.0);
        sim.simulator.set_connected(iccid, Some(flipped));
        let before = sim.simulator.status_queries().len();
        assert_eq!(post_events(&exporter, &data_cdr(iccid)).await, 202);
        let series = thing_series("monogoto_thing_connected", iccid);
        let want = if flipped { 1.0 } else { 0.0 };
        let deadline = Instant::now() + Duration::from_secs(20);
        while scrape_value(&exporter, &series).await != Some(want) {
            assert!(
                Instant::now() < deadline,
                "round {round}: the change never showed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let asked = queried_since(&sim, before);
        let at = asked.iter().position(|q| q.contains(iccid));
        // A request whose slot had come may have gone out first.
        assert!(
            at.is_some_and(|at| at <= 1),
            "round {round}: asked for in request {at:?} after the event"
        );
    }
    let samples = scrape_samples(&exporter).await;
    assert!(webhook_count(&samples, "monogoto_webhook_hinted_polls_total") >= 5.0);
    assert!(webhook_count(&samples, "monogoto_webhook_event_to_answer_seconds_count") >= 5.0);
    assert_eq!(
        sim.simulator.budget_refusals(),
        0,
        "hints never cause a 429"
    );
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_events_never_stops_the_pass_nor_exceeds_the_budget() {
    let sim = budgeted(300).await;
    let iccids = sim.simulator.iccids();
    let mut config = with_webhook(config(&sim));
    config.rate_limit = BUDGET.parse().expect("valid");
    config.poll.interval = Duration::from_secs(1);
    config.webhook.as_mut().expect("on").max_body_size = 1024 * 1024;
    let exporter = start_exporter(&config).await;
    wait_until("a whole pass", || exporter.fleet.snapshot().len() == 300).await;
    sim.simulator.reset_polls();
    // 10,000 events over the first 100 SIMs, in bodies of 1,000.
    let stormed = &iccids[..100];
    for body in 0..10 {
        let events: Vec<Value> = (0..1000)
            .map(|i| data_cdr(&stormed[(body * 1000 + i) % stormed.len()]))
            .collect();
        assert_eq!(post_events(&exporter, &Value::Array(events)).await, 202);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Every SIM is still polled: the pass goes on beside the hints.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let unpolled = iccids
            .iter()
            .filter(|i| {
                sim.simulator.truth(i).is_some_and(|t| {
                    t.provision_status != "SUSPENDED" && t.provision_status != "RETIRED"
                })
            })
            .filter(|i| sim.simulator.polls_of(i).is_none_or(|(n, _)| n == 0))
            .count();
        if unpolled == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unpolled} SIMs never polled during the storm"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let samples = scrape_samples(&exporter).await;
    assert_eq!(
        webhook_count(&samples, "monogoto_webhook_events_total{type=\"data\"}"),
        10_000.0
    );
    assert_eq!(
        sim.simulator.budget_refusals(),
        0,
        "a storm never causes a 429"
    );
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_that_reaches_another_shards_replica_is_forwarded_to_its_own() {
    let sim = simulator(40).await;
    let iccids = sim.simulator.iccids();
    // Two replicas on 127.0.0.10 and 127.0.0.11, one port: `{index}` tells them apart.
    let port = std::net::TcpListener::bind("127.0.0.10:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let replica = |index: u64| {
        let mut config = with_webhook(config(&sim));
        config.listen_address = format!("127.0.0.1{index}:{port}");
        config.shard = Shard { index, count: 2 };
        config.shard_peer_url_template = Some(format!("http://127.0.0.1{{index}}:{port}"));
        config
    };
    let zero = start_exporter(&replica(0)).await;
    let one = start_exporter(&replica(1)).await;
    let theirs = iccids
        .iter()
        .find(|i| (Shard { index: 1, count: 2 }).owns(i))
        .expect("shard 1 has SIMs");
    let before = sim.simulator.requests(SimEndpoint::Status);
    assert_eq!(post_events(&zero, &data_cdr(theirs)).await, 202);
    wait_for_series(&one, theirs, "monogoto_thing_last_event_timestamp_seconds").await;
    assert!(
        sim.simulator.requests(SimEndpoint::Status) > before,
        "polled by its shard"
    );
    let samples = scrape_samples(&zero).await;
    assert_eq!(
        webhook_count(
            &samples,
            "monogoto_webhook_events_forwarded_total{shard=\"1\"}"
        ),
        1.0
    );
    assert!(
        !scrape(&zero).await.contains(theirs),
        "no series on the other shard"
    );
    // A forwarded body is never forwarded again: shard 1 ignores shard 0's SIMs in it.
    let ours = iccids
        .iter()
        .find(|i| (Shard { index: 0, count: 2 }).owns(i))
        .expect("shard 0 has SIMs");
    let forwarded = reqwest::Client::new()
        .post(format!("{}/webhook", one.url()))
        .bearer_auth(TOKEN)
        .header("x-monogoto-exporter-forwarded", "1")
        .body(data_cdr(ours).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(forwarded.status(), 202);
    let samples = scrape_samples(&one).await;
    assert_eq!(
        webhook_count(
            &samples,
            "monogoto_webhook_events_ignored_total{reason=\"other_shard\"}"
        ),
        1.0
    );
    assert_eq!(
        webhook_count(
            &samples,
            "monogoto_webhook_events_forwarded_total{shard=\"0\"}"
        ),
        0.0
    );
    zero.shutdown().await;
    one.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_in_no_log_line_even_at_trace_level() {
    use std::process::{Command, Stdio};
    let sim = simulator(10).await;
    let iccids = sim.simulator.iccids();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("exporter.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut child = Command::new(env!("CARGO_BIN_EXE_monogoto-exporter"))
        .env_remove("MONOGOTO_EXPORTER_CONFIG")
        .env_remove("MONOGOTO_EXPORTER_STORAGE_PATH")
        .env("MONOGOTO_TOKEN", sim.simulator.static_token())
        .env("MONOGOTO_WEBHOOK_TOKEN", format!("  {TOKEN}\n"))
        .args(["--monogoto.url", &sim.url()])
        .args(["--monogoto.iccid", &iccids[0]])
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .args(["--log.level", "trace"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = data_cdr(&iccids[0]).to_string();
    let by_query = client
        .post(format!("{base}/webhook?token={TOKEN}"))
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(
        by_query.status(),
        202,
        "the token is trimmed like the others"
    );
    let by_header = client
        .post(format!("{base}/webhook"))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(by_header.status(), 202);
    let wrong = client
        .post(format!("{base}/webhook?token={TOKEN}x"))
        .body("[]")
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), 401);
    let status_page = client
        .get(&base)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(
        !status_page.contains(TOKEN),
        "the status page shows no token"
    );
    // Give the hinted poll time to be logged too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.lines().count() > 20,
        "trace logs were written:\n{text}"
    );
    let leaking: Vec<&str> = text.lines().filter(|l| l.contains(TOKEN)).collect();
    assert!(leaking.is_empty(), "the token is logged: {leaking:#?}");
}
