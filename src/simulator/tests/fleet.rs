use super::*;

#[test]
fn fleet_is_deterministic_and_well_formed() {
    let a = frozen(200, 7);
    let b = frozen(200, 7);
    assert_eq!(a.iccids(), b.iccids());
    for iccid in a.iccids() {
        assert_eq!(a.truth(&iccid), b.truth(&iccid));
    }
    assert_ne!(a.iccids(), frozen(200, 8).iccids());

    let iccids = a.iccids();
    let distinct: HashSet<_> = iccids.iter().collect();
    assert_eq!(distinct.len(), iccids.len());
    let with_f = iccids.iter().filter(|i| i.ends_with('F')).count();
    assert_eq!(with_f, 20, "exactly 1 in 10 per block of 20");
    for i in &iccids {
        assert!(i.starts_with("8988"));
        let digits = i.trim_end_matches('F');
        assert_eq!(digits.len(), 19);
        assert!(digits.chars().all(|c| c.is_ascii_digit()));
    }

    let truths: Vec<ThingTruth> = iccids.iter().filter_map(|i| a.truth(i)).collect();
    assert_eq!(truths[3].thing_name, r#"meter "north" \ 7"#);
    assert!(truths[5].thing_name.contains('\n'));
    assert!(!truths[7].thing_name.is_ascii());
    let active = truths
        .iter()
        .filter(|t| t.provision_status == "ACTIVE")
        .count();
    assert_eq!(active, 160);
    assert!(truths.iter().any(|t| t.msisdn.is_empty()));
    for t in &truths {
        assert_eq!(t.imsi.len(), 15);
        assert!(t.msisdn.is_empty() || t.msisdn.starts_with('+'));
    }
    let connected = truths.iter().filter(|t| t.connected).count();
    assert!((100..=150).contains(&connected), "{connected}");
}

#[test]
fn only_active_and_test_active_connect_and_things_flap() {
    let sim = frozen(40, 3);
    let mut seen_connected: HashMap<String, HashSet<bool>> = HashMap::new();
    for _ in 0..50 {
        for iccid in sim.iccids() {
            let t = sim.truth(&iccid).expect("truth");
            if t.connected {
                assert!(matches!(
                    t.provision_status.as_str(),
                    "ACTIVE" | "TEST_ACTIVE"
                ));
                assert!((1..=2).contains(&t.active_sessions));
                assert!(t.session_start.is_some());
            } else {
                assert_eq!(t.active_sessions, 0);
                assert_eq!(t.uplink_throughput, 0.0);
            }
            seen_connected.entry(iccid).or_default().insert(t.connected);
        }
        sim.advance_time(Duration::from_secs(61));
    }
    let flapping = seen_connected.values().filter(|s| s.len() == 2).count();
    assert!(flapping >= 20, "{flapping}");
}

#[tokio::test]
async fn truth_agrees_with_http_over_time() {
    let run = frozen(137, 11).spawn().await.expect("spawn");
    // The clock moves past any JWT's lifetime here; the static token does not expire.
    let token = run.simulator.static_token();
    let iccids = run.simulator.iccids();
    run.simulator.set_connected(&iccids[0], Some(true));
    run.simulator.set_connected(&iccids[1], Some(false));
    for step in [0u64, 1, 37, 500, 10_000, 86_400] {
        run.simulator.advance_time(Duration::from_secs(step));
        assert_fleet_matches_truth(&run, &token).await;
    }
    let forced = run.simulator.truth(&iccids[0]).expect("truth");
    assert!(forced.connected);
    assert_eq!(forced.active_sessions, 1);
    assert_eq!(forced.last_connection, Some(T0 as f64));
    assert_eq!(forced.session_start, Some(T0 as f64));
}

#[tokio::test]
async fn every_shape_appears_in_a_50_thing_fleet() {
    for seed in 1..=5 {
        let run = frozen(50, seed).spawn().await.expect("spawn");
        let token = login(&run).await;
        let iccids = run.simulator.iccids();
        let data = status_data(&run, &token, &format!("ThingIds={}", ids_param(&iccids))).await;
        let mut shapes: HashSet<String> = HashSet::new();
        for d in &data {
            let sessions = match d.get("ActiveSessions") {
                None => "sessions:missing",
                Some(Value::Null) => "sessions:null",
                Some(Value::Object(_)) => "sessions:object",
                Some(Value::Array(a)) if a.is_empty() => "sessions:[]",
                Some(_) => "sessions:array",
            };
            shapes.insert(sessions.into());
            shapes.insert(format!(
                "status-field:{}",
                d.get("ConnectionStatus").is_some()
            ));
            for key in ["LastConnectionTime", "LastDisconnectionTime"] {
                let kind = match &d[key] {
                    Value::Null => "null",
                    Value::Number(n) if n.as_u64().is_some_and(|n| n > 100_000_000_000) => "ms",
                    Value::Number(_) => "secs",
                    Value::String(s) if s.ends_with('Z') => "rfc3339-z",
                    Value::String(s) if s.contains('T') => "rfc3339-offset",
                    Value::String(s) if s.contains(' ') => "sql",
                    Value::String(_) => "ms-string",
                    _ => "other",
                };
                shapes.insert(format!("time:{kind}"));
            }
            let session_list: Vec<&Value> = match d.get("ActiveSessions") {
                Some(Value::Array(a)) => a.iter().collect(),
                Some(o @ Value::Object(_)) => vec![o],
                _ => vec![],
            };
            for s in session_list {
                let ms = s["LastConnectedTime"].as_u64().expect("number") > 100_000_000_000;
                shapes.insert(format!("session-time-ms:{ms}"));
                for extra in ["ActiveSessionId", "ApnName", "IPAddress"] {
                    assert!(s.get(extra).is_some());
                }
            }
            for extra in ["CustomerId", "ThingDescription"] {
                assert!(d.get(extra).is_some());
            }
        }
        let expected = [
            "sessions:missing",
            "sessions:null",
            "sessions:object",
            "sessions:[]",
            "sessions:array",
            "status-field:true",
            "status-field:false",
            "time:null",
            "time:ms",
            "time:secs",
            "time:rfc3339-z",
            "time:rfc3339-offset",
            "time:sql",
            "time:ms-string",
            "session-time-ms:true",
            "session-time-ms:false",
        ];
        for shape in expected {
            assert!(shapes.contains(shape), "seed {seed}: {shape} missing");
        }
        assert!(!shapes.contains("time:other"));
    }
}

#[tokio::test]
async fn rfc3339_offsets_are_converted() {
    let sim = frozen(50, 1);
    let with_offset = sim
        .inner
        .fleet
        .iter()
        .find(|t| matches!(t.shape.time, TimeFormat::Rfc3339Offset(_)))
        .expect("offset format");
    let encoded = encode_time(Some(T0 as i64), with_offset.shape.time);
    let s = encoded.as_str().expect("string");
    assert!(!s.ends_with('Z') && !s.ends_with("+00:00"), "{s}");
    assert_eq!(decode_time(Some(&encoded)), Some(T0 as f64));
    assert_eq!(
        encode_time(Some(1_739_955_863), TimeFormat::SqlUtc),
        json!("2025-02-19 09:04:23")
    );
}

#[tokio::test]
async fn things_listing_pages() {
    let run = frozen(23, 2).spawn().await.expect("spawn");
    let token = login(&run).await;
    let all = run.simulator.iccids();
    let mut listed = Vec::new();
    for offset in [0, 10, 20] {
        let page = get_json(&run, &format!("/things?limit=10&offset={offset}"), &token).await;
        let page = page.as_array().expect("bare array").clone();
        assert_eq!(page.len(), if offset == 20 { 3 } else { 10 });
        for t in page {
            assert_eq!(
                t["ThingId"],
                json!(format!(
                    "{THING_ID_PREFIX}{}",
                    t["ExternalUniqueId"].as_str().expect("id")
                ))
            );
            for key in ["ThingName", "State", "CustomerId", "ThingDescription"] {
                assert!(t.get(key).is_some());
            }
            listed.push(t["ExternalUniqueId"].as_str().expect("id").to_owned());
        }
    }
    assert_eq!(listed, all);
    let default = get_json(&run, "/things", &token).await;
    assert_eq!(default.as_array().map(Vec::len), Some(23));
    let beyond = get_json(&run, "/things?offset=100", &token).await;
    assert_eq!(beyond, json!([]));
    for bad in [
        "limit=51",
        "limit=0",
        "limit=abc",
        "limit=-1",
        "offset=x",
        "limit=%zz",
    ] {
        let (code, _) = get(&run, &format!("/things?{bad}"), Some(&token)).await;
        assert_eq!(code, 400, "{bad}");
    }
    run.simulator.remove_thing(&all[0]);
    let page = get_json(&run, "/things?limit=5&offset=0", &token).await;
    assert_eq!(page[0]["ExternalUniqueId"], json!(all[1]));
    assert_eq!(run.simulator.requests(SimEndpoint::Things), 12);
}

#[tokio::test]
async fn status_paging_and_page_cap() {
    let run = frozen(30, 4).spawn().await.expect("spawn");
    let token = login(&run).await;
    let all = run.simulator.iccids();
    let ids = ids_param(&all);

    let data = status_data(&run, &token, &format!("ThingIds={ids}&limit=7&offset=14")).await;
    assert_eq!(data_iccids(&data), all[14..21]);
    let data = status_data(&run, &token, &format!("ThingIds={ids}&offset=25")).await;
    assert_eq!(data_iccids(&data), all[25..]);
    let data = status_data(&run, &token, &format!("ThingIds={ids}&offset=99")).await;
    assert!(data.is_empty());

    run.simulator.set_page_cap(Some(5));
    let data = status_data(&run, &token, &format!("ThingIds={ids}&limit=7&offset=14")).await;
    assert_eq!(data_iccids(&data), all[14..19]);
    let data = status_data(&run, &token, &format!("ThingIds={ids}&limit=3")).await;
    assert_eq!(data_iccids(&data), all[..3]);
    run.simulator.set_page_cap(None);

    // Duplicates once, unknown ids skipped, request order kept.
    let query = format!(
        "ThingIds={THING_ID_PREFIX}{b},{THING_ID_PREFIX}{a},nonsense,{THING_ID_PREFIX}899,{THING_ID_PREFIX}{b}",
        a = all[0],
        b = all[1]
    );
    let data = status_data(&run, &token, &query).await;
    assert_eq!(data_iccids(&data), [all[1].clone(), all[0].clone()]);

    for bad in [
        format!("ThingIds={ids}&limit=51"),
        format!("ThingIds={ids}&limit=0"),
        format!("ThingIds={ids}&offset=-3"),
        format!("ThingIds={ids}%E0"),
    ] {
        let (code, text) = get(&run, &format!("/thing/status?{bad}"), Some(&token)).await;
        assert_eq!(code, 400, "{bad}: {text}");
    }
    for missing in ["", "limit=5", "ThingIds=", "ThingIds=,,"] {
        let (code, text) = get(&run, &format!("/thing/status?{missing}"), Some(&token)).await;
        assert_eq!(code, 400);
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            v,
            json!({"Success": false, "Message": "ThingIds is required", "Data": null})
        );
    }
}

#[tokio::test]
async fn comma_repeated_and_encoded_ids_are_equivalent() {
    let run = frozen(10, 5).spawn().await.expect("spawn");
    let token = login(&run).await;
    let all = run.simulator.iccids();
    let want = all[..4].to_vec();
    let id = |i: usize| format!("{THING_ID_PREFIX}{}", all[i]);
    let queries = [
        format!("ThingIds={},{},{},{}", id(0), id(1), id(2), id(3)),
        format!(
            "ThingIds={}&ThingIds={}&ThingIds={}&ThingIds={}",
            id(0),
            id(1),
            id(2),
            id(3)
        ),
        format!(
            "ThingIds={},{}&limit=50&ThingIds={},{}",
            id(0),
            id(1),
            id(2),
            id(3)
        ),
        format!("ThingIds={}%2C{}%2c{}%2C{}", id(0), id(1), id(2), id(3)),
    ];
    run.simulator.reset_counters();
    for q in &queries {
        let data = status_data(&run, &token, q).await;
        assert_eq!(data_iccids(&data), want, "{q}");
    }
    assert_eq!(run.simulator.status_queries(), queries);
    assert_eq!(run.simulator.requests(SimEndpoint::Status), 4);
}

#[tokio::test]
async fn authentication() {
    let run = frozen(5, 6).spawn().await.expect("spawn");
    let base = run.url();
    for body in [
        r#"{"UserName":"demo","Password":"wrong"}"#,
        r#"{"UserName":"demo"}"#,
        "not json",
        "",
    ] {
        assert_eq!(
            login_raw(&base, body).await,
            (401, "Access denied".to_owned()),
            "{body}"
        );
    }
    let (_, text) = login_raw(&base, r#"{"UserName":"demo","Password":"demo-password"}"#).await;
    let v: Value = serde_json::from_str(&text).expect("json");
    for key in ["refreshToken", "UserId", "UserName", "Role"] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert!(
        v["CustomerId"]
            .as_str()
            .expect("cid")
            .starts_with("cid_sim-")
    );
    let token = v["token"].as_str().expect("token").to_owned();

    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3);
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[0]).expect("b64")).expect("json");
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[1]).expect("b64")).expect("json");
    assert_eq!(payload["exp"], json!(T0 + 4 * 3600));
    assert_eq!(payload["iat"], json!(T0));
    assert_eq!(payload["sub"], json!("demo"));

    let ids = format!("ThingIds={THING_ID_PREFIX}{}", run.simulator.iccids()[0]);
    let status = format!("/thing/status?{ids}");
    assert_eq!(get(&run, &status, Some(&token)).await.0, 200);
    let static_token = run.simulator.static_token();
    assert_eq!(get(&run, &status, Some(&static_token)).await.0, 200);
    assert_eq!(
        get(&run, "/things", None).await,
        (401, "Unauthorized".to_owned())
    );
    assert_eq!(get(&run, &status, Some("forged.token.x")).await.0, 401);

    // Expiry follows the simulator clock.
    run.simulator
        .advance_time(Duration::from_secs(4 * 3600 - 1));
    assert_eq!(get(&run, &status, Some(&token)).await.0, 200);
    run.simulator.advance_time(Duration::from_secs(1));
    assert_eq!(
        get(&run, &status, Some(&token)).await,
        (401, "Unauthorized".to_owned())
    );
    assert_eq!(get(&run, &status, Some(&static_token)).await.0, 200);

    let fresh = login(&run).await;
    run.simulator.revoke_tokens();
    assert_eq!(get(&run, &status, Some(&fresh)).await.0, 401);
    assert_eq!(get(&run, "/things", Some(&static_token)).await.0, 401);
    let after = login(&run).await;
    assert_eq!(get(&run, &status, Some(&after)).await.0, 200);
    // Every request counted, whatever the answer.
    assert_eq!(run.simulator.requests(SimEndpoint::Auth), 7);
    assert_eq!(run.simulator.requests(SimEndpoint::Status), 8);
    assert_eq!(run.simulator.requests(SimEndpoint::Things), 2);
}

#[tokio::test]
async fn overrides_removal_and_failures() {
    let run = frozen(20, 9).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let token = login(&run).await;
    let all = sim.iccids();
    let ids = ids_param(&all);

    // Forced disconnected, then forced connected, then back to the timeline.
    let before = sim.truth(&all[2]).expect("truth");
    sim.advance_time(Duration::from_secs(10));
    sim.set_connected(&all[2], Some(false));
    sim.advance_time(Duration::from_secs(1000));
    let t = sim.truth(&all[2]).expect("truth");
    assert!(!t.connected);
    assert_eq!(t.active_sessions, 0);
    assert_eq!(t.last_disconnection, Some((T0 + 10) as f64));
    sim.set_connected(&all[2], Some(true));
    let t = sim.truth(&all[2]).expect("truth");
    assert!(t.connected);
    assert_eq!(t.active_sessions, 1);
    assert_eq!(t.last_connection, Some((T0 + 1010) as f64));
    assert_eq!(t.session_start, Some((T0 + 1010) as f64));
    assert_fleet_matches_truth(&run, &token).await;
    sim.set_connected(&all[2], None);
    sim.set_time(Some(UNIX_EPOCH + Duration::from_secs(T0)));
    assert_eq!(sim.truth(&all[2]), Some(before));

    // Removal.
    sim.remove_thing(&all[4]);
    assert!(sim.truth(&all[4]).is_none());
    assert!(!sim.iccids().contains(&all[4]));
    let data = status_data(&run, &token, &format!("ThingIds={ids}")).await;
    assert_eq!(data.len(), 19);
    assert!(!data_iccids(&data).contains(&all[4]));

    // Failures: any failing id in the request fails it, first one wins.
    sim.set_failing(&all[7], Some(FailMode::SuccessFalse));
    sim.set_failing(&all[8], Some(FailMode::ServerError));
    let (code, text) = get(
        &run,
        &format!("/thing/status?ThingIds={ids}&limit=1"),
        Some(&token),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"Success": false, "Message": "simulated failure", "Data": null})
    );
    let only_8 = format!("/thing/status?ThingIds={}", ids_param(&all[8..10]));
    let (code, text) = get(&run, &only_8, Some(&token)).await;
    assert_eq!(code, 500);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"Success": false, "Message": "Internal Server Error"})
    );
    let unaffected = status_data(
        &run,
        &token,
        &format!("ThingIds={}", ids_param(&all[9..12])),
    )
    .await;
    assert_eq!(unaffected.len(), 3);
    sim.set_failing(&all[8], None);
    assert_eq!(get(&run, &only_8, Some(&token)).await.0, 200);
}

#[tokio::test]
async fn control_api() {
    let run = frozen(10, 10).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let all = sim.iccids();
    let c = client();
    let run_ref = &run;
    let set = |iccid: String, body: &'static str| async move {
        post_thing(run_ref, &format!("{iccid}/connected"), body).await
    };
    let active = all
        .iter()
        .find(|i| sim.truth(i).is_some_and(|t| t.provision_status == "ACTIVE"))
        .expect("active thing")
        .clone();
    assert_eq!(set(active.clone(), r#"{"connected": false}"#).await, 204);
    assert!(!sim.truth(&active).expect("truth").connected);
    assert_eq!(set(active.clone(), r#"{"connected": true}"#).await, 204);
    assert!(sim.truth(&active).expect("truth").connected);
    assert_eq!(set(active.clone(), r#"{"connected": null}"#).await, 204);
    assert_eq!(set(active.clone(), r#"{"connected": "yes"}"#).await, 400);
    assert_eq!(set(active.clone(), "garbage").await, 400);
    assert_eq!(set("8988000".into(), r#"{"connected": true}"#).await, 404);

    let delete = |iccid: String| {
        let c = c.clone();
        let url = format!("{}/_sim/things/{iccid}", run.url());
        async move { c.delete(url).send().await.expect("send").status().as_u16() }
    };
    assert_eq!(delete(all[1].clone()).await, 204);
    assert_eq!(delete(all[1].clone()).await, 404);
    assert_eq!(sim.iccids().len(), 9);

    let token = login(&run).await;
    let _ = get(&run, "/things", Some(&token)).await;
    let (code, text) = get(&run, "/_sim/stats", None).await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"auth": 1, "things": 1, "status": 0})
    );
    sim.reset_counters();
    assert_eq!(sim.requests(SimEndpoint::Auth), 0);
}

#[tokio::test]
async fn control_api_sets_a_status_and_refuses_a_thing() {
    let run = frozen(20, 10).spawn().await.expect("spawn");
    let sim = run.simulator.clone();
    let all = sim.iccids();
    let token = sim.static_token();
    let run_ref = &run;
    let post =
        |path: String, body: &'static str| async move { post_thing(run_ref, &path, body).await };
    let status_of = |iccid: &str| {
        let query = format!("ThingIds={}", ids_param(&[iccid.to_owned()]));
        let run = &run;
        let token = &token;
        async move {
            let data = status_data(run, token, &query).await;
            data[0]["ProvisionStatus"]
                .as_str()
                .expect("status")
                .to_owned()
        }
    };
    let active = all
        .iter()
        .find(|i| sim.truth(i).is_some_and(|t| t.provision_status == "ACTIVE"))
        .expect("active thing")
        .clone();
    assert_eq!(
        post(format!("{active}/status"), r#"{"status": "SUSPENDED"}"#).await,
        204
    );
    assert_eq!(status_of(&active).await, "SUSPENDED");
    assert_eq!(
        post(format!("{active}/status"), r#"{"status": null}"#).await,
        204
    );
    assert_eq!(status_of(&active).await, "ACTIVE");
    for bad in [r#"{"status": ""}"#, r#"{"status": 1}"#, "{}", "garbage"] {
        assert_eq!(post(format!("{active}/status"), bad).await, 400, "{bad}");
    }
    assert_eq!(
        post("8988000/status".into(), r#"{"status": "ACTIVE"}"#).await,
        404
    );
    // An ICCID with a trailing F is found whatever its case.
    let with_f = all
        .iter()
        .find(|i| i.ends_with('F'))
        .expect("an ICCID with F");
    let lower = with_f.to_ascii_lowercase();
    assert_eq!(
        post(format!("{lower}/status"), r#"{"status": "RETIRED"}"#).await,
        204
    );
    assert_eq!(status_of(with_f).await, "RETIRED");

    let (refused, others) = (all[2].clone(), all[3..6].to_vec());
    assert_eq!(post(format!("{refused}/refuse"), "").await, 204);
    let mut with_refused = others.clone();
    with_refused.push(refused.clone());
    let (code, text) = get(
        &run,
        &format!("/thing/status?ThingIds={}", ids_param(&with_refused)),
        Some(&token),
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"Success": false, "Message": "Invalid Input Data", "Data": null})
    );
    let data = status_data(&run, &token, &format!("ThingIds={}", ids_param(&others))).await;
    assert_eq!(data_iccids(&data), others);
    assert_eq!(post("8988000/refuse".into(), "").await, 404);
    assert_eq!(
        get(&run, &format!("/_sim/things/{refused}/refuse"), None)
            .await
            .0,
        405
    );
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let run = Simulator::new(config(3, 1)).spawn().await.expect("spawn");
    let url = run.url();
    assert!(run.url().starts_with("http://127.0.0.1:"));
    let c = client();
    assert_eq!(
        c.get(format!("{url}/_sim/stats"))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    drop(run);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        client()
            .get(format!("{url}/_sim/stats"))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn query_parsing() {
    assert_eq!(
        parse_query("a=1&b=x%2Cy&&c&d=a+b").expect("parse"),
        [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "x,y".to_owned()),
            ("c".to_owned(), String::new()),
            ("d".to_owned(), "a b".to_owned()),
        ]
    );
    for bad in ["a=%", "a=%4", "a=%zz", "a=%FF", "%C3"] {
        assert!(parse_query(bad).is_err(), "{bad}");
    }
    assert_eq!(
        parse_query("n=%C3%A4").expect("utf-8"),
        [("n".to_owned(), "ä".to_owned())]
    );
}

#[test]
fn clock_controls() {
    let sim = Simulator::new(config(1, 1));
    let now = epoch_secs(SystemTime::now());
    assert!(sim.lock().now_secs() >= now);
    sim.set_time(Some(UNIX_EPOCH + Duration::from_secs(T0)));
    sim.advance_time(Duration::from_secs(5));
    assert_eq!(sim.lock().now_secs(), T0 as i64 + 5);
    sim.set_time(None);
    assert!(sim.lock().now_secs() >= now);
    assert_eq!(epoch_secs(UNIX_EPOCH - Duration::from_millis(1500)), -2);
}

#[tokio::test]
async fn lowercase_iccids_are_written_lower_case_and_matched_in_any_case() {
    let sim = Simulator::new(SimulatorConfig {
        lowercase_iccids: true,
        ..config(40, 7)
    });
    sim.set_time(Some(UNIX_EPOCH + Duration::from_secs(T0)));
    let run = sim.spawn().await.expect("spawn");
    let token = run.simulator.static_token();
    let with_f: Vec<String> = run
        .simulator
        .iccids()
        .into_iter()
        .filter(|i| i.ends_with('F'))
        .collect();
    assert!(!with_f.is_empty());
    let listed = get_json(&run, "/things", &token).await;
    let listed: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["ExternalUniqueId"].as_str())
        .collect();
    for iccid in &with_f {
        assert!(
            listed.contains(&iccid.to_ascii_lowercase().as_str()),
            "{iccid}"
        );
        // Asked for in either case, answered once, lower-case.
        for asked in [iccid.clone(), iccid.to_ascii_lowercase()] {
            let data =
                status_data(&run, &token, &format!("ThingIds={}", ids_param(&[asked]))).await;
            assert_eq!(data.len(), 1);
            assert_eq!(
                data[0]["ThingId"],
                json!(format!("ThingId_ICCID_{}", iccid.to_ascii_lowercase()))
            );
        }
    }
}
