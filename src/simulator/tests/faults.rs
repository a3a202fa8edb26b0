use super::*;

async fn fetch(
    run: &RunningSimulator,
    path: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Bytes) {
    let mut req = client().get(format!("{}{path}", run.url()));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("send");
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    (code, headers, resp.bytes().await.expect("body"))
}

fn header_str<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().expect("ascii header"))
}

fn status_path(sim: &Simulator) -> String {
    format!("/thing/status?ThingIds={}", ids_param(&sim.iccids()))
}

async fn listed_faults(run: &RunningSimulator) -> Value {
    let (code, text) = get(run, "/_sim/faults", None).await;
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).expect("json")
}

fn envelope(message: &str) -> Value {
    json!({"Success": false, "Message": message, "Data": null})
}

fn now_epoch() -> i64 {
    epoch_secs(SystemTime::now())
}

#[tokio::test]
async fn fault_latency_delays_and_composes() {
    let run = frozen(5, 21).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = sim.static_token();
    let path = status_path(&sim);
    let (_, normal) = get(&run, &path, Some(&token)).await;
    sim.add_fault(rule("latency=300ms,endpoint=status,count=2"));
    sim.add_fault(rule("latency=200ms,endpoint=status,after=1,count=1"));
    sim.add_fault(rule("status=503,endpoint=status,after=1,count=1"));

    let start = Instant::now();
    assert_eq!(get(&run, &path, Some(&token)).await, (200, normal.clone()));
    assert!(start.elapsed() >= Duration::from_millis(300));
    // Both delays add up, then the later rule answers.
    let start = Instant::now();
    let (code, _) = get(&run, &path, Some(&token)).await;
    assert_eq!(code, 503);
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert_eq!(get(&run, &path, Some(&token)).await, (200, normal));
    assert_eq!(get(&run, "/things", Some(&token)).await.0, 200);

    let listed = listed_faults(&run).await;
    let applied: Vec<u64> = listed["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["applied"].as_u64().expect("applied"))
        .collect();
    assert_eq!(applied, [2, 1, 1]);
    // Latency only delays: the 503 is the one fault served.
    assert_eq!(sim.faults_served(), 1);
    assert_eq!(sim.requests(SimEndpoint::Status), 4);
}

#[tokio::test]
async fn fault_hang_is_cut_by_the_client_and_released_on_shutdown() {
    let run = frozen(3, 22).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = sim.static_token();
    let url = format!("{}{}", run.url(), status_path(&sim));
    sim.add_fault(rule("hang,endpoint=status"));

    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let start = Instant::now();
    let err = impatient
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(get(&run, "/things", Some(&token)).await.0, 200);
    assert_eq!(sim.requests(SimEndpoint::Status), 1);
    assert_eq!(sim.faults_served(), 1);

    // A patient client is not left waiting when the server stops.
    let pending = tokio::spawn(async move {
        client()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    while sim.requests(SimEndpoint::Status) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(run);
    let answer = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("released")
        .expect("join");
    // Either the shutdown answer or a closed connection, but never a wait.
    if let Ok(code) = answer {
        assert_eq!(code, 503);
    }
}

#[tokio::test]
async fn fault_status_codes() {
    let run = frozen(3, 23).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = sim.static_token();
    let path = status_path(&sim);
    for (code, body) in [
        (500, Some("Internal Server Error")),
        (400, Some("Bad Request")),
        (502, None),
        (503, None),
        (504, None),
    ] {
        sim.add_fault(FaultRule::new(FaultKind::Status { code }).count(1));
        let (got, text) = get(&run, &path, Some(&token)).await;
        assert_eq!(got, code);
        match body {
            Some(message) => assert_eq!(
                serde_json::from_str::<Value>(&text).expect("json"),
                envelope(message)
            ),
            None => {
                let reason = StatusCode::from_u16(code)
                    .expect("code")
                    .canonical_reason()
                    .expect("reason");
                assert_eq!(text, format!("{code} {reason}"));
            }
        }
        // count=1: the burst is over.
        assert_eq!(get(&run, &path, Some(&token)).await.0, 200);
        sim.clear_faults();
    }
    // The Rust API takes any code; one that is no error answers 500.
    sim.add_fault(FaultRule::new(FaultKind::Status { code: 200 }));
    assert_eq!(get(&run, "/things", Some(&token)).await.0, 500);
    assert_eq!(sim.faults_served(), 6);
}

#[tokio::test]
async fn fault_rate_limited_headers() {
    let run = frozen(3, 24).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = sim.static_token();
    sim.add_fault(rule("rate_limited=retry_after:2,count=1"));
    sim.add_fault(rule("rate_limited=date:30,after=1,count=1"));
    sim.add_fault(rule("rate_limited,after=2,count=1"));

    let before = now_epoch();
    let (code, headers, body) = fetch(&run, "/things", Some(&token)).await;
    let after = now_epoch();
    assert_eq!(code, 429);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("json"),
        envelope("Too Many Requests")
    );
    assert_eq!(header_str(&headers, "retry-after"), Some("2"));
    assert_eq!(header_str(&headers, "x-ratelimit-limit"), Some("60"));
    assert_eq!(header_str(&headers, "x-ratelimit-remaining"), Some("0"));
    let reset: i64 = header_str(&headers, "x-ratelimit-reset")
        .expect("reset")
        .parse()
        .expect("epoch seconds");
    assert!((before + 2..=after + 3).contains(&reset), "{reset}");

    let before = now_epoch();
    let (code, headers, _) = fetch(&run, &status_path(&sim), Some(&token)).await;
    let after = now_epoch();
    assert_eq!(code, 429);
    assert_eq!(header_str(&headers, "x-ratelimit-remaining"), Some("0"));
    let date = header_str(&headers, "retry-after").expect("retry-after");
    // IMF-fixdate exactly: it parses with the fixed format and prints back the same.
    let parsed = chrono::NaiveDateTime::parse_from_str(date, "%a, %d %b %Y %H:%M:%S GMT")
        .expect("IMF-fixdate")
        .and_utc();
    assert_eq!(parsed.format("%a, %d %b %Y %H:%M:%S GMT").to_string(), date);
    assert_eq!(date.len(), 29, "{date}");
    assert!(chrono::DateTime::parse_from_rfc2822(date).is_ok());
    // The real clock, not the frozen simulator clock: clients compare with theirs.
    assert!(
        (before + 30..=after + 31).contains(&parsed.timestamp()),
        "{date}"
    );
    let reset = header_str(&headers, "x-ratelimit-reset").expect("reset");
    assert_eq!(reset, parsed.timestamp().to_string());

    let before = now_epoch();
    let (code, headers, _) = fetch(&run, "/things", Some(&token)).await;
    assert_eq!(code, 429);
    assert_eq!(header_str(&headers, "retry-after"), None);
    assert_eq!(header_str(&headers, "x-ratelimit-remaining"), Some("0"));
    let reset: i64 = header_str(&headers, "x-ratelimit-reset")
        .expect("reset")
        .parse()
        .expect("epoch seconds");
    assert!((before + 60..=now_epoch() + 61).contains(&reset));

    assert_eq!(get(&run, "/things", Some(&token)).await.0, 200);
    assert_eq!(
        http_date(784_111_777),
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "the example of RFC 7231"
    );
    assert_eq!(http_date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
}

#[tokio::test]
async fn fault_unauthorized_after_n_requests() {
    let run = frozen(3, 25).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = login(&run).await;
    let path = status_path(&sim);
    sim.add_fault(rule("unauthorized,after=3"));
    for _ in 0..3 {
        assert_eq!(get(&run, &path, Some(&token)).await.0, 200);
    }
    let unauthorized = (401, "Unauthorized".to_owned());
    assert_eq!(get(&run, &path, Some(&token)).await, unauthorized);
    assert_eq!(
        get(&run, &path, Some(&sim.static_token())).await,
        unauthorized
    );
    assert_eq!(get(&run, "/things", Some(&token)).await, unauthorized);
    let (user, password) = sim.credentials();
    let body = json!({"UserName": user, "Password": password}).to_string();
    assert_eq!(
        login_raw(&run.url(), &body).await,
        (401, "Access denied".to_owned())
    );
    assert_eq!(sim.faults_served(), 4);
    sim.clear_faults();
    assert_eq!(get(&run, &path, Some(&token)).await.0, 200);
    assert_eq!(sim.faults_served(), 4);
    sim.reset_counters();
    assert_eq!(sim.faults_served(), 0);
}

#[tokio::test]
async fn token_expires_at_its_exp_with_the_real_clock() {
    let sim = Simulator::new(SimulatorConfig {
        token_lifetime: Duration::from_secs(2),
        ..config(2, 26)
    });
    sim.set_time(None);
    let run = sim.spawn().await.expect("spawn");
    let token = login(&run).await;
    let payload = token.split('.').nth(1).expect("payload");
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    let exp = payload["exp"].as_i64().expect("exp");
    let left = exp - now_epoch();
    assert!((1..=2).contains(&left), "{left}");
    let path = status_path(&run.simulator);
    assert_eq!(get(&run, &path, Some(&token)).await.0, 200);

    let exp_at = UNIX_EPOCH + Duration::from_secs(exp as u64);
    let wait = exp_at.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(
        get(&run, &path, Some(&token)).await,
        (401, "Unauthorized".to_owned())
    );
    let fresh = login(&run).await;
    assert_eq!(get(&run, &path, Some(&fresh)).await.0, 200);
}

#[tokio::test]
async fn fault_truncated_json_is_a_strict_prefix() {
    let run = frozen(12, 27).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = sim.static_token();
    for path in [status_path(&sim), "/things".to_owned()] {
        let (_, _, normal) = fetch(&run, &path, Some(&token)).await;
        assert!(serde_json::from_slice::<Value>(&normal).is_ok());
        sim.add_fault(rule("truncated_json,count=1"));
        let (code, headers, cut) = fetch(&run, &path, Some(&token)).await;
        assert_eq!(code, 200);
        assert!(!cut.is_empty() && cut.len() < normal.len(), "{path}");
        assert!(normal.starts_with(&cut), "{path}");
        assert!(serde_json::from_slice::<Value>(&cut).is_err(), "{path}");
        // The client reads the whole (short) body; nothing is left pending.
        assert_eq!(
            header_str(&headers, "content-length"),
            Some(cut.len().to_string().as_str())
        );
        assert_eq!(fetch(&run, &path, Some(&token)).await.2, normal);
        sim.clear_faults();
    }
    assert_eq!(sim.faults_served(), 2);
}

#[tokio::test]
async fn fault_malformed_json() {
    let run = frozen(3, 28).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    sim.add_fault(rule("malformed_json"));
    let (code, headers, body) = fetch(&run, &status_path(&sim), Some(&sim.static_token())).await;
    assert_eq!(code, 200);
    assert_eq!(
        header_str(&headers, "content-type"),
        Some("application/json")
    );
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert!(body.starts_with(b"<!DOCTYPE html>"));
}

#[tokio::test]
async fn fault_wrong_types_keep_thing_ids() {
    let run = frozen(6, 29).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = sim.static_token();
    let all = sim.iccids();
    sim.add_fault(rule("wrong_types"));

    let v = get_json(&run, &status_path(&sim), &token).await;
    assert_eq!(v["Success"], json!(true));
    let data = v["Data"].as_array().expect("Data array");
    assert_eq!(data_iccids(data), all);
    let mut session_shapes = HashSet::new();
    for d in data {
        assert!(d["ThingName"].is_object());
        assert!(d["ConnectionStatus"].is_number());
        assert!(d["LastConnectionTime"].is_boolean());
        assert!(!d["ProvisionStatus"].is_string());
        assert!(!d["MSISDN"].is_string());
        let sessions = &d["ActiveSessions"];
        let session = match sessions {
            Value::String(s) => {
                assert_eq!(s, "x");
                session_shapes.insert("string");
                continue;
            }
            Value::Array(a) => {
                session_shapes.insert("array");
                &a[0]
            }
            other => {
                session_shapes.insert("object");
                other
            }
        };
        assert_eq!(session["UplinkThroughput"], json!("fast"));
        assert!(!session["DownlinkThroughput"].is_number());
        assert!(session["LastConnectedTime"].is_array());
    }
    assert_eq!(session_shapes.len(), 3);

    let things = get_json(&run, "/things", &token).await;
    let things = things.as_array().expect("bare array");
    assert_eq!(things.len(), 6);
    for (t, iccid) in things.iter().zip(&all) {
        assert_eq!(t["ThingId"], json!(format!("{THING_ID_PREFIX}{iccid}")));
        assert!(t["ThingName"].is_object());
        assert!(!t["ExternalUniqueId"].is_string());
    }
    let (user, password) = sim.credentials();
    let body = json!({"UserName": user, "Password": password}).to_string();
    let (code, text) = login_raw(&run.url(), &body).await;
    assert_eq!(code, 200);
    let login: Value = serde_json::from_str(&text).expect("json");
    assert!(login["token"].is_number());
    // An error comes before the broken serialisation would.
    assert_eq!(
        get(&run, "/things", Some("forged")).await,
        (401, "Unauthorized".to_owned())
    );
}

#[tokio::test]
async fn fault_success_false() {
    let run = frozen(3, 30).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = sim.static_token();
    sim.add_fault(rule("success_false,endpoint=status"));
    let (code, text) = get(&run, &status_path(&sim), Some(&token)).await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        envelope("simulated failure")
    );
    assert_eq!(get(&run, "/things", Some(&token)).await.0, 200);
}

#[tokio::test]
async fn fault_oversized_streams_at_least_the_size() {
    let run = frozen(4, 31).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = sim.static_token();
    let bytes: u64 = 4 * 1024 * 1024 + 7;
    sim.add_fault(FaultRule::new(FaultKind::Oversized { bytes }).endpoint(SimEndpoint::Status));
    let mut resp = client()
        .get(format!("{}{}", run.url(), status_path(&sim)))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.content_length(), None);
    let mut body = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        chunks += 1;
        body.extend_from_slice(&chunk);
    }
    assert!(body.len() as u64 >= bytes);
    assert!((body.len() as u64) < bytes + 2 * OVERSIZED_CHUNK as u64);
    assert!(chunks > 1);
    // Valid JSON in the status shape, should a client read it all.
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["Success"], json!(true));
    let ids = data_iccids(v["Data"].as_array().expect("Data"));
    assert!(ids.iter().all(|i| sim.iccids().contains(i)));

    // Other endpoints keep their own shape; a tiny size is just the empty shell.
    sim.add_fault(FaultRule::new(FaultKind::Oversized { bytes: 1 }).endpoint(SimEndpoint::Things));
    assert_eq!(
        get(&run, "/things", Some(&token)).await,
        (200, "[]".to_owned())
    );
    sim.add_fault(
        FaultRule::new(FaultKind::Oversized { bytes: 100_000 }).endpoint(SimEndpoint::Auth),
    );
    let (code, text) = login_raw(&run.url(), "{}").await;
    assert_eq!(code, 200);
    assert!(text.len() >= 100_000);
    let v: Value = serde_json::from_str(&text).expect("json");
    assert!(v["Padding"].is_array());
}

#[tokio::test]
async fn fault_windows_endpoints_and_order() {
    let run = frozen(3, 32).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = sim.static_token();
    let path = status_path(&sim);
    sim.add_fault(rule("status=500,endpoint=status,after=2,count=3"));
    sim.add_fault(rule("success_false,endpoint=status,count=4"));
    sim.add_fault(rule("status=502,endpoint=things,after=1,count=1"));
    let outcome = |(code, text): (u16, String)| match code {
        200 if text.contains(r#""Success":false"#) => "success_false".to_owned(),
        200 => "ok".to_owned(),
        other => other.to_string(),
    };
    let mut status = Vec::new();
    for _ in 0..6 {
        status.push(outcome(get(&run, &path, Some(&token)).await));
    }
    // The first rule that applies wins; the second still counts requests 3 to 5.
    assert_eq!(
        status,
        ["success_false", "success_false", "500", "500", "500", "ok"]
    );
    let mut things = Vec::new();
    for _ in 0..3 {
        things.push(outcome(get(&run, "/things", Some(&token)).await));
    }
    assert_eq!(things, ["ok", "502", "ok"]);

    let listed = listed_faults(&run).await;
    assert_eq!(listed["faults_served"], json!(6));
    let counters: Vec<(u64, u64, bool)> = listed["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["matched"].as_u64().expect("matched"),
                r["applied"].as_u64().expect("applied"),
                r["exhausted"].as_bool().expect("exhausted"),
            )
        })
        .collect();
    assert_eq!(counters, [(6, 3, true), (6, 2, true), (3, 1, true)]);
    // Exhausted rules stay listed, and every request is still counted.
    assert_eq!(sim.faults_served(), 6);
    assert_eq!(sim.requests(SimEndpoint::Status), 6);
    assert_eq!(sim.requests(SimEndpoint::Things), 3);
    assert_eq!(sim.requests(SimEndpoint::Auth), 0);
    assert_eq!(sim.status_queries().len(), 6);
}

#[tokio::test]
async fn fault_control_api() {
    let run = frozen(3, 33).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = sim.static_token();
    let c = client();
    let url = format!("{}/_sim/faults", run.url());
    let post = |body: &str| {
        let req = c
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        async move {
            let resp = req.send().await.expect("send");
            (resp.status().as_u16(), resp.text().await.expect("body"))
        }
    };
    assert_eq!(
        post(r#"{"kind": {"type": "status", "code": 503}, "endpoint": "status", "count": 1}"#)
            .await
            .0,
        204
    );
    assert_eq!(
        post(r#"[{"kind": {"type": "latency", "millis": 1}}, "unauthorized,endpoint=things,after=1"]"#)
            .await
            .0,
        204
    );
    for bad in [
        "garbage",
        "42",
        r#"{"kind": {"type": "nope"}}"#,
        r#"{"kind": {"type": "status", "code": 200}}"#,
        r#"{"kind": {"type": "hang"}, "count": 0}"#,
        r#"{"kind": {"type": "hang"}, "aftr": 3}"#,
        r#"{"kind": {"type": "hang"}, "endpoint": "metrics"}"#,
        r#""statuz=1""#,
        // All or nothing: the valid first rule is not added either.
        r#"["hang", "hang,count=0"]"#,
    ] {
        let (code, text) = post(bad).await;
        assert_eq!(code, 400, "{bad}: {text}");
        assert!(!text.is_empty());
    }
    let listed = listed_faults(&run).await;
    let specs: Vec<&str> = listed["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["spec"].as_str().expect("spec"))
        .collect();
    assert_eq!(
        specs,
        [
            "status=503,endpoint=status,count=1",
            "latency=1ms",
            "unauthorized,endpoint=things,after=1"
        ]
    );
    assert_eq!(
        listed["rules"][0],
        json!({
            "kind": {"type": "status", "code": 503},
            "endpoint": "status",
            "after": 0,
            "count": 1,
            "spec": "status=503,endpoint=status,count=1",
            "matched": 0,
            "applied": 0,
            "exhausted": false,
        })
    );

    let path = status_path(&sim);
    assert_eq!(get(&run, &path, Some(&token)).await.0, 503);
    assert_eq!(get(&run, &path, Some(&token)).await.0, 200);
    assert_eq!(get(&run, "/things", Some(&token)).await.0, 200);
    assert_eq!(get(&run, "/things", Some(&token)).await.0, 401);
    let listed = listed_faults(&run).await;
    assert_eq!(listed["faults_served"], json!(2));
    assert_eq!(listed["rules"][0]["exhausted"], json!(true));
    // The latency rule comes after the 503, so it did not delay that one.
    assert_eq!(listed["rules"][1]["matched"], json!(4));
    assert_eq!(listed["rules"][1]["applied"], json!(3));

    // The control API itself is never faulted.
    assert_eq!(post(r#""unauthorized""#).await.0, 204);
    assert_eq!(get(&run, "/_sim/stats", None).await.0, 200);
    assert_eq!(
        listed_faults(&run).await["rules"].as_array().map(Vec::len),
        Some(4)
    );

    let deleted = c.delete(&url).send().await.expect("send").status().as_u16();
    assert_eq!(deleted, 204);
    assert_eq!(listed_faults(&run).await["rules"], json!([]));
    assert_eq!(get(&run, &path, Some(&token)).await.0, 200);
    assert_eq!(sim.faults_served(), 2);
}

#[tokio::test]
async fn fault_raw_rate_limit_headers_are_sent_verbatim() {
    let run = frozen(3, 31).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = sim.static_token();
    let path = status_path(&sim);
    sim.add_fault(rule("raw_retry_after=18446744073709551615,count=1"));
    sim.add_fault(rule("raw_retry_after=503:-1,after=1,count=1"));
    sim.add_fault(rule("raw_rate_limit_reset=1e300,after=2,count=1"));
    let (code, headers, _) = fetch(&run, &path, Some(&token)).await;
    assert_eq!(code, 429);
    assert_eq!(
        header_str(&headers, "retry-after"),
        Some("18446744073709551615")
    );
    assert_eq!(header_str(&headers, "x-ratelimit-remaining"), None);
    let (code, headers, _) = fetch(&run, &path, Some(&token)).await;
    assert_eq!(
        (code, header_str(&headers, "retry-after")),
        (503, Some("-1"))
    );
    let (code, headers, body) = fetch(&run, &path, Some(&token)).await;
    assert_eq!(code, 200, "the normal answer");
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["Data"].as_array().map(Vec::len), Some(3));
    assert_eq!(header_str(&headers, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header_str(&headers, "x-ratelimit-reset"), Some("1e300"));
    let (code, headers, _) = fetch(&run, &path, Some(&token)).await;
    assert_eq!(code, 200);
    assert_eq!(header_str(&headers, "x-ratelimit-reset"), None);
    // A value no header can carry is refused when the rule is added.
    let bad = FaultRule::new(FaultKind::RawRateLimitReset {
        value: "1\n2".into(),
    });
    assert!(bad.check().is_err());
}
