//! The simulator's tests: its fleet and normal answers (`fleet`), its fault
//! answers (`faults`), its fault-spec language (`fault_specs`) and the Data
//! CDRs it pushes to a webhook (`webhook`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::api::parse_query;
use super::fault_answers::{OVERSIZED_CHUNK, http_date};
use super::faults::RetryAfter;
use super::fleet::{THING_ID_PREFIX, TimeFormat, encode_time, epoch_secs};
use super::*;

const T0: u64 = 1_750_000_000;

fn config(things: usize, seed: u64) -> SimulatorConfig {
    SimulatorConfig {
        things,
        seed,
        ..SimulatorConfig::default()
    }
}

/// A simulator whose clock is frozen at T0.
fn frozen(things: usize, seed: u64) -> Simulator {
    let sim = Simulator::new(config(things, seed));
    sim.set_time(Some(UNIX_EPOCH + Duration::from_secs(T0)));
    sim
}

fn client() -> reqwest::Client {
    // Bypass any proxy from the environment: the simulator is on loopback.
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn login_raw(base: &str, body: &str) -> (u16, String) {
    let resp = client()
        .post(format!("{base}/Auth"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("send");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

async fn login(run: &RunningSimulator) -> String {
    let (user, password) = run.simulator.credentials();
    let body = json!({"UserName": user, "Password": password}).to_string();
    let (code, text) = login_raw(&run.url(), &body).await;
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["token"].as_str().expect("token").to_owned()
}

async fn get(run: &RunningSimulator, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = client().get(format!("{}{path}", run.url()));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("send");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

/// POSTs `body` as JSON to the control API's `/_sim/things/{path}`; its status code.
async fn post_thing(run: &RunningSimulator, path: &str, body: &str) -> u16 {
    client()
        .post(format!("{}/_sim/things/{path}", run.url()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

async fn get_json(run: &RunningSimulator, path: &str, token: &str) -> Value {
    let (code, text) = get(run, path, Some(token)).await;
    assert_eq!(code, 200, "{path}: {text}");
    serde_json::from_str(&text).expect("json")
}

fn ids_param(iccids: &[String]) -> String {
    iccids
        .iter()
        .map(|i| format!("{THING_ID_PREFIX}{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn status_data(run: &RunningSimulator, token: &str, query: &str) -> Vec<Value> {
    let v = get_json(run, &format!("/thing/status?{query}"), token).await;
    assert_eq!(v["Success"], json!(true));
    v["Data"].as_array().expect("Data array").clone()
}

fn data_iccids(data: &[Value]) -> Vec<String> {
    data.iter()
        .map(|d| {
            d["ThingId"]
                .as_str()
                .and_then(|s| s.strip_prefix(THING_ID_PREFIX))
                .expect("ThingId")
                .to_owned()
        })
        .collect()
}

/// What a tolerant client makes of a time field.
fn decode_time(v: Option<&Value>) -> Option<f64> {
    let v = v?;
    match v {
        Value::Null => None,
        Value::Number(n) => {
            let n = n.as_f64().expect("number");
            Some(if n >= 1e11 { n / 1000.0 } else { n })
        }
        Value::String(s) if s.chars().all(|c| c.is_ascii_digit()) => {
            Some(s.parse::<f64>().expect("digits") / 1000.0)
        }
        Value::String(s) if s.contains('T') => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("rfc3339")
                .timestamp() as f64,
        ),
        Value::String(s) => Some(
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .expect("sql time")
                .and_utc()
                .timestamp() as f64,
        ),
        other => panic!("unexpected time {other}"),
    }
}

fn decode_status(d: &Value) -> ThingTruth {
    let sessions: Vec<Value> = match d.get("ActiveSessions") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        Some(other) => panic!("unexpected ActiveSessions {other}"),
    };
    let connected = match d.get("ConnectionStatus").and_then(Value::as_str) {
        Some(s) => {
            assert_eq!(s == "CONNECTED", !sessions.is_empty(), "{d}");
            s == "CONNECTED"
        }
        None => !sessions.is_empty(),
    };
    let sum = |key: &str| {
        sessions
            .iter()
            .map(|s| s[key].as_f64().expect("throughput"))
            .sum::<f64>()
    };
    let starts: Vec<f64> = sessions
        .iter()
        .filter_map(|s| decode_time(s.get("LastConnectedTime")))
        .collect();
    ThingTruth {
        iccid: d["ThingId"]
            .as_str()
            .and_then(|s| s.strip_prefix(THING_ID_PREFIX))
            .expect("ThingId")
            .to_owned(),
        thing_name: d["ThingName"].as_str().expect("name").to_owned(),
        imsi: d["ActiveIMSI"].as_str().expect("imsi").to_owned(),
        msisdn: d["MSISDN"].as_str().unwrap_or("").to_owned(),
        provision_status: d["ProvisionStatus"].as_str().expect("status").to_owned(),
        connected,
        active_sessions: sessions.len(),
        uplink_throughput: sum("UplinkThroughput"),
        downlink_throughput: sum("DownlinkThroughput"),
        last_connection: decode_time(d.get("LastConnectionTime")),
        last_disconnection: decode_time(d.get("LastDisconnectionTime")),
        session_start: starts.into_iter().reduce(f64::min),
    }
}

async fn assert_fleet_matches_truth(run: &RunningSimulator, token: &str) {
    let iccids = run.simulator.iccids();
    for chunk in iccids.chunks(50) {
        let data = status_data(run, token, &format!("ThingIds={}", ids_param(chunk))).await;
        assert_eq!(data_iccids(&data), chunk);
        for d in &data {
            let decoded = decode_status(d);
            let truth = run.simulator.truth(&decoded.iccid).expect("truth");
            assert_eq!(decoded, truth, "{d}");
        }
    }
}

fn rule(spec: &str) -> FaultRule {
    spec.parse().expect("valid spec")
}

mod fault_specs;
mod faults;
mod fleet;
mod webhook;
