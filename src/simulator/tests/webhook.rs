use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::routing::post;

use super::*;

/// What a webhook receiver got: the bodies, and the query of each request.
#[derive(Default)]
struct Received {
    bodies: Vec<Value>,
    queries: Vec<Option<String>>,
}

/// A receiver on 127.0.0.1:0 answering every POST /webhook with `code`.
struct Receiver {
    url: String,
    received: Arc<Mutex<Received>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(code: StatusCode) -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = axum::Router::new()
            .route(
                "/webhook",
                post(
                    move |State(r): State<Arc<Mutex<Received>>>,
                          RawQuery(query): RawQuery,
                          body: Bytes| async move {
                        let body: Value = serde_json::from_slice(&body).expect("JSON body");
                        let mut r = r.lock().expect("lock");
                        r.bodies.push(body);
                        r.queries.push(query);
                        code
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            url: format!("http://{addr}/webhook?token=abc"),
            received,
            _task: task,
        }
    }

    fn bodies(&self) -> Vec<Value> {
        self.received.lock().expect("lock").bodies.clone()
    }

    /// Every event received, in order.
    fn events(&self) -> Vec<Value> {
        self.bodies()
            .iter()
            .flat_map(|b| b.as_array().expect("an array of events").clone())
            .collect()
    }
}

/// A simulator frozen at T0 posting to `url`.
fn posting(things: usize, seed: u64, url: &str) -> Simulator {
    let sim = Simulator::new(SimulatorConfig {
        webhook_url: Some(url.to_owned()),
        ..config(things, seed)
    });
    sim.set_time(Some(UNIX_EPOCH + Duration::from_secs(T0)));
    sim
}

/// Waits until `done` holds; the bound only keeps a broken build from hanging.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let dd = d * 2;
                dd / 10 + dd % 10
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The CDR's documented fields hold the Thing's own values.
fn assert_names_thing(cdr: &Value, sim: &Simulator, iccid: &str) {
    let truth = sim.truth(iccid).expect("truth");
    let device = sim.device(iccid).expect("device");
    assert_eq!(cdr["CdrType"], "DATA", "{cdr}");
    assert_eq!(cdr["Iccid"], iccid);
    assert_eq!(cdr["ThingId"], format!("{THING_ID_PREFIX}{iccid}"));
    assert_eq!(cdr["IMSI"], truth.imsi.as_str());
    match cdr["MSISDN"].as_str() {
        Some(msisdn) => assert_eq!(msisdn, truth.msisdn),
        None => assert!(cdr["MSISDN"].is_null() && truth.msisdn.is_empty(), "{cdr}"),
    }
    assert_eq!(cdr["ThingName"], truth.thing_name.as_str());
    assert_eq!(cdr["IMEI"], device.imei.as_str());
    assert_eq!(cdr["MCC"], device.mcc.as_str());
    assert_eq!(cdr["MNC"], device.mnc.as_str());
    assert_eq!(cdr["MNO"], format!("{}{}", device.mcc, device.mnc));
    assert_eq!(cdr["MnoName"], device.mno_name.as_str());
    assert_eq!(cdr["UniqueID"].as_str().expect("UniqueID").len(), 32);
}

fn first_where(sim: &Simulator, connected: bool) -> String {
    sim.iccids()
        .into_iter()
        .find(|i| sim.truth(i).expect("truth").connected == connected)
        .expect("such a Thing")
}

#[test]
fn every_thing_has_a_stable_device_and_network() {
    let a = frozen(200, 7);
    let b = frozen(200, 7);
    let mut networks = HashSet::new();
    for iccid in a.iccids() {
        let d = a.device(&iccid).expect("device");
        assert_eq!(Some(&d), b.device(&iccid).as_ref());
        assert_eq!(d.imei.len(), 15, "{d:?}");
        assert!(d.imei.bytes().all(|c| c.is_ascii_digit()), "{d:?}");
        assert!(luhn_valid(&d.imei), "{d:?}");
        assert_eq!(d.mcc.len(), 3);
        assert!((2..=3).contains(&d.mnc.len()));
        assert_eq!(d.mno, format!("{}{}", d.mcc, d.mnc));
        assert!(!d.mno_name.is_empty());
        networks.insert(d.mno);
    }
    assert!(networks.len() > 4, "{networks:?}");
    let other = frozen(200, 8);
    let first = &a.iccids()[0];
    assert_ne!(
        a.device(first).map(|d| d.imei),
        other.device(&other.iccids()[0]).map(|d| d.imei)
    );
    assert!(a.device("8988000000000000000").is_none());
}

#[tokio::test]
async fn a_forced_disconnect_posts_one_data_cdr_for_that_thing() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let sim = posting(20, 5, &receiver.url);
    let run = sim.clone().spawn().await.expect("spawn");
    let iccid = first_where(&sim, true);
    let before = sim.truth(&iccid).expect("truth");
    let session_start = before.session_start.expect("a session") as i64;

    sim.set_connected(&iccid, Some(false));
    // Already disconnected: no session ends.
    sim.set_connected(&iccid, Some(false));
    until("the CDR", || sim.webhook_events_sent() == 1).await;

    // Then one pushed CDR, so that anything else posted in between shows.
    let other = first_where(&sim, false);
    sim.push_cdr(&other);
    until("the pushed CDR", || sim.webhook_events_sent() == 2).await;
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let cdr = &bodies[0].as_array().expect("array")[..];
    assert_eq!(cdr.len(), 1, "{bodies:?}");
    let cdr = &cdr[0];
    assert_names_thing(cdr, &sim, &iccid);
    assert_eq!(cdr["StartTime"], rfc3339(session_start));
    assert_eq!(cdr["EndTime"], rfc3339(T0 as i64));
    let (up, down) = (
        cdr["UplinkBytes"].as_u64().expect("bytes"),
        cdr["DownlinkBytes"].as_u64().expect("bytes"),
    );
    assert_eq!(cdr["TotalBytes"].as_u64(), Some(up + down));
    assert_eq!(bodies[1][0]["Iccid"], other.as_str());
    assert_eq!(
        receiver.received.lock().expect("lock").queries[0].as_deref(),
        Some("token=abc"),
        "the URL's query is kept"
    );
    assert_eq!(sim.webhook_post_failures(), 0);
    drop(run);
}

#[tokio::test]
async fn returning_a_forced_session_to_a_disconnected_timeline_ends_it() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let sim = posting(20, 5, &receiver.url);
    let _run = sim.clone().spawn().await.expect("spawn");
    let iccid = first_where(&sim, false);
    sim.set_connected(&iccid, Some(true));
    sim.set_connected(&iccid, None);
    until("the CDR", || sim.webhook_events_sent() == 1).await;
    let events = receiver.events();
    assert_eq!(events.len(), 1);
    assert_names_thing(&events[0], &sim, &iccid);
    assert_eq!(events[0]["StartTime"], rfc3339(T0 as i64));
    assert_eq!(events[0]["EndTime"], rfc3339(T0 as i64));
}

#[tokio::test]
async fn push_cdr_posts_for_connected_and_disconnected_things() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let sim = posting(20, 9, &receiver.url);
    let run = sim.clone().spawn().await.expect("spawn");
    let on = first_where(&sim, true);
    let off = first_where(&sim, false);
    sim.push_cdr(&on);
    sim.push_cdr(&off);
    sim.push_cdr("8988000000000000000");
    until("two CDRs", || sim.webhook_events_sent() == 2).await;
    let events = receiver.events();
    assert_eq!(events.len(), 2);
    assert_names_thing(&events[0], &sim, &on);
    assert_eq!(events[0]["EndTime"], rfc3339(T0 as i64));
    assert_names_thing(&events[1], &sim, &off);
    assert_ne!(events[0]["UniqueID"], events[1]["UniqueID"]);

    // The control API does the same, and says when it cannot.
    assert_eq!(post_thing(&run, &format!("{off}/cdr"), "").await, 204);
    assert_eq!(post_thing(&run, "8988000000000000000/cdr", "").await, 404);
    until("the third CDR", || sim.webhook_events_sent() == 3).await;
    assert_eq!(receiver.events()[2]["Iccid"], off.as_str());
    let (code, text) = get(&run, "/_sim/stats", None).await;
    assert_eq!(code, 200);
    let stats: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        stats["webhook"],
        json!({"events_sent": 3, "post_failures": 0})
    );

    let plain_sim = Simulator::new(config(3, 1)).spawn().await.expect("spawn");
    let first = plain_sim.simulator.iccids()[0].clone();
    assert_eq!(
        post_thing(&plain_sim, &format!("{first}/cdr"), "").await,
        409
    );
    plain_sim.simulator.push_cdr(&first);
    assert_eq!(plain_sim.simulator.webhook_events_sent(), 0);
}

#[tokio::test]
async fn queued_events_are_posted_in_arrays_of_at_most_a_thousand() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let sim = posting(30, 2, &receiver.url);
    let _run = sim.clone().spawn().await.expect("spawn");
    let iccids = sim.iccids();
    // No await in between: on this single-threaded runtime the posting task
    // cannot run until all are queued.
    for n in 0..1_500 {
        sim.push_cdr(&iccids[n % iccids.len()]);
    }
    until("every event", || sim.webhook_events_sent() == 1_500).await;
    let sizes: Vec<usize> = receiver
        .bodies()
        .iter()
        .map(|b| b.as_array().expect("array").len())
        .collect();
    assert_eq!(sizes, [1_000, 500]);
    let events = receiver.events();
    let unique: HashSet<&str> = events
        .iter()
        .map(|e| e["UniqueID"].as_str().expect("UniqueID"))
        .collect();
    assert_eq!(unique.len(), 1_500);
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e["Iccid"], iccids[n % iccids.len()].as_str(), "in order");
    }
}

#[tokio::test]
async fn sessions_that_time_ends_are_reported_once() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let sim = posting(60, 4, &receiver.url);
    let _run = sim.clone().spawn().await.expect("spawn");
    let flap = SimulatorConfig::default().flap_period;
    let before: Vec<ThingTruth> = sim
        .iccids()
        .iter()
        .map(|i| sim.truth(i).expect("truth"))
        .collect();
    sim.advance_time(flap);
    // A whole period later every Thing is in its next epoch, so each session
    // open at T0 has ended, whether or not the Thing connected again.
    let expected: Vec<&ThingTruth> = before.iter().filter(|t| t.connected).collect();
    assert!(!expected.is_empty());
    until("the CDRs", || {
        sim.webhook_events_sent() == expected.len() as u64
    })
    .await;
    let events = receiver.events();
    let t1 = T0 as i64 + epoch_secs(UNIX_EPOCH + flap);
    for truth in &expected {
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["Iccid"] == truth.iccid.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{}: {mine:?}", truth.iccid);
        let cdr = mine[0];
        assert_names_thing(cdr, &sim, &truth.iccid);
        let start = truth.session_start.expect("session") as i64;
        assert_eq!(cdr["StartTime"], rfc3339(start));
        let end = chrono::DateTime::parse_from_rfc3339(cdr["EndTime"].as_str().expect("end"))
            .expect("rfc3339")
            .timestamp();
        assert!(T0 as i64 <= end && end <= t1, "{cdr}");
        let after = sim.truth(&truth.iccid).expect("truth");
        if !after.connected {
            assert_eq!(Some(end as f64), after.last_disconnection, "{cdr}");
        }
    }
    assert_eq!(events.len(), expected.len());
}

#[tokio::test]
async fn a_receiver_that_is_down_counts_failures_and_the_api_still_answers() {
    let closed = {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        listener.local_addr().expect("addr")
    };
    let sim = posting(10, 3, &format!("http://{closed}/webhook?token=abc"));
    let run = sim.clone().spawn().await.expect("spawn");
    let iccids = sim.iccids();
    sim.push_cdr(&iccids[0]);
    until("a failure", || sim.webhook_post_failures() >= 1).await;
    // Dropped, not queued again.
    assert_eq!(sim.inner.webhook.as_ref().map(|wh| wh.queued()), Some(0));

    let token = login(&run).await;
    let (code, text) = get(&run, "/things", Some(&token)).await;
    assert_eq!(code, 200, "{text}");
    sim.push_cdr(&iccids[1]);
    until("a second failure", || sim.webhook_post_failures() >= 2).await;
    let data = status_data(&run, &token, &format!("ThingIds={}", ids_param(&iccids))).await;
    assert_eq!(data.len(), iccids.len());
    assert_eq!(sim.webhook_events_sent(), 0);
}

#[tokio::test]
async fn a_receiver_answering_an_error_counts_a_failure() {
    let receiver = Receiver::start(StatusCode::SERVICE_UNAVAILABLE).await;
    let sim = posting(10, 3, &receiver.url);
    let _run = sim.clone().spawn().await.expect("spawn");
    sim.push_cdr(&sim.iccids()[0]);
    until("a failure", || sim.webhook_post_failures() == 1).await;
    assert_eq!(receiver.events().len(), 1);
    assert_eq!(sim.webhook_events_sent(), 0);
}

/// The cost of one tick's pass over a large fleet, printed; run with
/// `cargo test --release -- --ignored --nocapture webhook_scan_cost`.
#[test]
#[ignore = "a measurement, not a check"]
fn webhook_scan_cost() {
    let things = 100_000;
    let sim = Simulator::new(SimulatorConfig {
        webhook_url: Some("http://127.0.0.1:9/webhook".to_owned()),
        ..config(things, 1)
    });
    let Some(wh) = sim.inner.webhook.as_ref() else {
        panic!("a webhook");
    };
    sim.set_time(Some(UNIX_EPOCH + Duration::from_secs(T0)));
    sim.prime_webhook();
    let mut per_tick = Vec::new();
    let mut ended = 0;
    for _ in 0..60 {
        sim.advance_time(Duration::from_secs(1));
        let started = Instant::now();
        ended += sim.scan_sessions(wh);
        per_tick.push(started.elapsed());
    }
    per_tick.sort();
    println!(
        "{things} Things, 60 ticks of 1 s: median {:?}, max {:?}, {ended} CDRs queued ({:.0}/s)",
        per_tick[per_tick.len() / 2],
        per_tick[per_tick.len() - 1],
        ended as f64 / 60.0
    );
}

#[test]
fn simulate_takes_an_http_webhook_url() {
    use crate::config::{Cli, Command};
    use clap::Parser as _;
    let parse =
        |url: &str| Cli::try_parse_from(["monogoto-exporter", "simulate", "--webhook-url", url]);
    let url = "http://127.0.0.1:19540/webhook?token=abc";
    let Some(Command::Simulate(args)) = parse(url).expect("valid").command else {
        panic!("not the simulate command");
    };
    assert_eq!(args.webhook_url.as_deref(), Some(url));
    for bad in ["ftp://host/x", "127.0.0.1:19540/webhook", "http://"] {
        let err = parse(bad).expect_err(bad);
        assert_eq!(err.exit_code(), 2, "{bad}");
    }
    let cli = Cli::try_parse_from(["monogoto-exporter", "simulate"]).expect("valid");
    let Some(Command::Simulate(args)) = cli.command else {
        panic!("not the simulate command");
    };
    assert_eq!(args.webhook_url, None);
}
