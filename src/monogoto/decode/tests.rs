use serde_json::json;

use super::*;
use crate::monogoto::model::{FieldError, ThingStatus, Unparseable, Unparsed};

fn page(v: Value) -> StatusPage {
    parse_status_page(v.to_string().as_bytes()).expect("valid page")
}

fn one(thing: Value) -> (ThingStatus, Vec<FieldError>) {
    let mut p = page(json!({"Success": true, "Message": "ok", "Data": [thing]}));
    assert_eq!(p.returned, 1);
    (p.things.pop().expect("one Thing"), p.field_errors)
}

#[test]
fn documented_example_parses() {
    let body = include_str!("../../../tests/fixtures/status-documented-example.json");
    let p = parse_status_page(body.as_bytes()).expect("valid");
    assert_eq!(p.field_errors, Vec::<FieldError>::new());
    assert_eq!(
        p.things,
        vec![ThingStatus {
            iccid: "8912372646888991".into(),
            thing_name: "ICCID 8912372646888991".into(),
            imsi: "123456789101112".into(),
            msisdn: "+4420412389916".into(),
            provision_status: "ACTIVE".into(),
            connected: Some(true),
            active_sessions: Some(0),
            uplink_throughput: Some(0.0),
            downlink_throughput: Some(0.0),
            ..ThingStatus::default()
        }]
    );
}

#[test]
fn documented_schema_with_session_object_parses() {
    let body = include_str!("../../../tests/fixtures/status-schema-session-object.json");
    let p = parse_status_page(body.as_bytes()).expect("valid");
    assert!(p.field_errors.is_empty(), "{:?}", p.field_errors);
    let t = &p.things[0];
    assert_eq!(t.iccid, "8988228066602306720");
    assert_eq!(
        t.connected,
        Some(true),
        "one session and no ConnectionStatus"
    );
    assert_eq!(t.active_sessions, Some(1));
    assert_eq!(t.uplink_throughput, Some(1500.0));
    assert_eq!(t.downlink_throughput, Some(64000.0));
    assert_eq!(t.session_start, Some(1_739_955_863.0));
    assert_eq!(t.last_connection, Some(1_739_955_863.0));
    assert_eq!(t.last_disconnection, Some(1_739_952_000.0));
}

#[test]
fn a_placeholder_session_is_not_a_session() {
    // The documented schema's session object, filled with its empty values.
    let body = include_str!("../../../tests/fixtures/status-schema-placeholder-session.json");
    let p = parse_status_page(body.as_bytes()).expect("valid");
    assert!(p.field_errors.is_empty(), "{:?}", p.field_errors);
    let [disconnected, no_status] = p.things.as_slice() else {
        panic!("two Things: {:?}", p.things);
    };
    assert_eq!(
        (disconnected.connected, disconnected.active_sessions),
        (Some(false), Some(0)),
        "DISCONNECTED with a schema-shaped object of empty strings and zeros"
    );
    assert_eq!(
        (disconnected.uplink_throughput, disconnected.session_start),
        (Some(0.0), None)
    );
    assert_eq!(
        (no_status.connected, no_status.active_sessions),
        (Some(false), Some(0)),
        "nulls and no ConnectionStatus"
    );
    assert!(disconnected.unparsed.is_empty() && no_status.unparsed.is_empty());

    // Every spelling of nothing, alone or in a list.
    for nothing in [
        json!({"ActiveSessionId": "", "IPAddress": "", "LastConnectedTime": 0}),
        json!({"ActiveSessionId": null, "IPAddress": null, "LastConnectedTime": null}),
        json!({"ActiveSessionId": " ", "IPAddress": "0.0.0.0", "LastConnectedTime": "0"}),
        json!({"ActiveSessionId": 0, "IPAddress": "", "LastConnectedTime": "",
            "ApnName": "", "UplinkThroughput": 0, "DownlinkThroughput": 0}),
    ] {
        for shape in [nothing.clone(), json!([nothing.clone(), nothing.clone()])] {
            let (t, e) = one(json!({
                "ThingId": "ThingId_ICCID_898800000000000001", "ActiveSessions": shape,
            }));
            assert_eq!(
                (t.connected, t.active_sessions, e.len()),
                (Some(false), Some(0), 0),
                "{shape}"
            );
        }
    }
    // A real session beside a placeholder counts alone.
    let (t, _) = one(json!({
        "ThingId": "ThingId_ICCID_898800000000000001",
        "ActiveSessions": [
            {"ActiveSessionId": "", "IPAddress": "", "LastConnectedTime": 0, "UplinkThroughput": 0},
            {"ActiveSessionId": "sess-1", "IPAddress": "10.0.0.7", "LastConnectedTime": 1739955863000u64,
                "UplinkThroughput": 5},
        ],
    }));
    assert_eq!(
        (
            t.connected,
            t.active_sessions,
            t.uplink_throughput,
            t.session_start
        ),
        (Some(true), Some(1), Some(5.0), Some(1_739_955_863.0))
    );
}

#[test]
fn active_sessions_every_shape() {
    let base = |sessions: Option<Value>| {
        let mut t = json!({"ThingId": "ThingId_ICCID_898800000000000001"});
        if let Some(s) = sessions {
            t["ActiveSessions"] = s;
        }
        one(t)
    };
    let s1 = json!({"LastConnectedTime": 1_700_000_100_000u64, "UplinkThroughput": 10, "DownlinkThroughput": 20});
    let s2 = json!({"LastConnectedTime": 1_700_000_050u64, "UplinkThroughput": 1.5, "DownlinkThroughput": "2"});

    let (t, e) = base(Some(s1.clone()));
    assert_eq!(
        (t.active_sessions, t.connected, t.uplink_throughput),
        (Some(1), Some(true), Some(10.0))
    );
    assert!(e.is_empty());

    let (t, e) = base(Some(json!([s1, s2])));
    assert_eq!(t.active_sessions, Some(2));
    assert_eq!(t.uplink_throughput, Some(11.5));
    assert_eq!(t.downlink_throughput, Some(22.0));
    assert_eq!(
        t.session_start,
        Some(1_700_000_050.0),
        "earliest, seconds and ms mixed"
    );
    assert!(e.is_empty());

    for empty in [None, Some(Value::Null), Some(json!([])), Some(json!({}))] {
        let (t, e) = base(empty.clone());
        assert_eq!(
            (t.active_sessions, t.connected),
            (Some(0), Some(false)),
            "{empty:?}"
        );
        assert_eq!(t.session_start, None);
        assert!(e.is_empty());
    }

    let (t, e) = base(Some(json!("lots")));
    assert_eq!(
        (t.active_sessions, t.connected, t.uplink_throughput),
        (None, None, None)
    );
    assert_eq!(e, vec!["ActiveSessions"]);
}

#[test]
fn connection_status_wins_over_sessions() {
    let (t, _) = one(
        json!({"ThingId": "ThingId_ICCID_898800000000000001", "ConnectionStatus": "DISCONNECTED",
        "ActiveSessions": [{"UplinkThroughput": 1}]}),
    );
    assert_eq!(t.connected, Some(false));
    let (t, _) = one(
        json!({"ThingId": "ThingId_ICCID_898800000000000001", "ConnectionStatus": "connected"}),
    );
    assert_eq!(t.connected, Some(true));
    let (t, e) = one(
        json!({"ThingId": "ThingId_ICCID_898800000000000001", "ConnectionStatus": "MAYBE",
        "ActiveSessions": []}),
    );
    assert_eq!(
        t.connected,
        Some(false),
        "unknown status falls back to sessions"
    );
    assert_eq!(e, vec!["ConnectionStatus"]);
}

#[test]
fn every_timestamp_form() {
    let cases: Vec<(Value, Option<f64>)> = vec![
        (json!("2025-02-19T09:04:23Z"), Some(1_739_955_863.0)),
        (json!("2025-02-19T11:04:23+02:00"), Some(1_739_955_863.0)),
        (json!("2025-02-19T09:04:23.250Z"), Some(1_739_955_863.25)),
        (json!("2025-02-19 09:04:23"), Some(1_739_955_863.0)),
        (json!("2025-02-19T09:04:23"), Some(1_739_955_863.0)),
        (json!(1_739_955_863u64), Some(1_739_955_863.0)),
        (json!(1_739_955_863_000u64), Some(1_739_955_863.0)),
        (json!(1_739_955_863_500u64), Some(1_739_955_863.5)),
        (json!(1_739_955_863.0), Some(1_739_955_863.0)),
        (json!("1739955863"), Some(1_739_955_863.0)),
        (json!("1739955863000"), Some(1_739_955_863.0)),
        (json!(" 1739955863000 "), Some(1_739_955_863.0)),
        (Value::Null, None),
        (json!(""), None),
        (json!(0), None),
        (json!("0"), None),
        (json!("0001-01-01T00:00:00"), None),
        (json!("1012-02-19 09:04:23"), None),
        (json!("1970-01-01T00:00:00Z"), None),
    ];
    for (value, expected) in cases {
        assert_eq!(parse_timestamp(&value), Ok(expected), "{value}");
    }
    for bad in [
        json!("yesterday"),
        json!(-5),
        json!(true),
        json!({}),
        json!([1]),
        json!("2025-13-45 99:00:00"),
    ] {
        assert_eq!(parse_timestamp(&bad), Err(Unparseable), "{bad}");
    }
}

#[test]
fn a_bad_field_drops_only_that_value() {
    let (t, e) = one(json!({
        "ThingId": "ThingId_ICCID_898800000000000001",
        "ThingName": {"nested": true},
        "MSISDN": 4420412389916u64,
        "ConnectionStatus": "CONNECTED",
        "LastConnectionTime": "not a time",
        "LastDisconnectionTime": "2025-02-19 09:04:23",
        "ActiveSessions": {"UplinkThroughput": "fast", "DownlinkThroughput": 7, "LastConnectedTime": [1]},
        "SomethingNew": 1
    }));
    assert_eq!(t.thing_name, "");
    assert_eq!(t.msisdn, "4420412389916");
    assert_eq!(t.connected, Some(true));
    assert_eq!(t.last_connection, None);
    assert_eq!(t.last_disconnection, Some(1_739_955_863.0));
    assert_eq!(t.active_sessions, Some(1));
    assert_eq!(t.uplink_throughput, None);
    assert_eq!(t.downlink_throughput, Some(7.0));
    assert_eq!(t.session_start, None);
    let u = t.unparsed;
    assert!(u.has(Unparsed::THING_NAME) && u.has(Unparsed::LAST_CONNECTION));
    assert!(u.has(Unparsed::UPLINK) && u.has(Unparsed::SESSION_START));
    assert!(!u.has(
        Unparsed::DOWNLINK | Unparsed::MSISDN | Unparsed::CONNECTED | Unparsed::LAST_DISCONNECTION
    ));
    let mut e = e;
    e.sort_unstable();
    assert_eq!(
        e,
        vec![
            "LastConnectedTime",
            "LastConnectionTime",
            "ThingName",
            "UplinkThroughput"
        ]
    );
}

#[test]
fn things_without_an_id_are_skipped_but_counted() {
    let p = page(json!({"Success": true, "Data": [
        {"ThingName": "no id"},
        "garbage",
        {"ThingId": "ThingId_ICCID_898800000000000002"},
        {"ThingId": "other-form", "ExternalUniqueId": "898800000000000003"}
    ]}));
    assert_eq!(p.returned, 4);
    let ids: Vec<_> = p.things.iter().map(|t| t.iccid.as_str()).collect();
    assert_eq!(ids, ["898800000000000002", "898800000000000003"]);
    assert_eq!(p.field_errors, vec!["ThingId", "Data"]);
}

#[test]
fn untrusted_envelopes_are_errors() {
    let err = |body: &str| parse_status_page(body.as_bytes()).expect_err("must fail");
    assert!(
        matches!(err("{\"Success\": false, \"Message\": \"Invalid token\", \"Data\": []}"),
        DecodeError::NotSuccessful { message, .. } if message == "Invalid token")
    );
    assert!(matches!(
        err("{\"Success\": \"true\", \"Data\": []}"),
        DecodeError::NotSuccessful { .. }
    ));
    assert!(matches!(
        err("{\"Data\": []}"),
        DecodeError::NotSuccessful { .. }
    ));
    assert_eq!(
        err("{\"Success\": true, \"Data\": null}"),
        DecodeError::NoData
    );
    assert_eq!(
        err("{\"Success\": true, \"Data\": {}}"),
        DecodeError::NoData
    );
    assert_eq!(err("[]"), DecodeError::NoData);
    assert!(matches!(
        err("{\"Success\": true, \"Data\": ["),
        DecodeError::NotJson(_)
    ));
    assert!(matches!(err(""), DecodeError::NotJson(_)));
    assert_eq!(
        page(json!({"Success": true, "Data": []})),
        StatusPage::default()
    );
}

#[test]
fn things_listing() {
    let body = json!([
        {"ThingId": "ThingId_ICCID_898800000000000001", "ThingName": "a"},
        {"ExternalUniqueId": "898800000000000002"},
        {"ThingName": "nothing to go on"}
    ]);
    assert_eq!(
        parse_things_page(body.to_string().as_bytes()),
        Ok((
            3,
            vec![
                "898800000000000001".to_string(),
                "898800000000000002".to_string()
            ]
        ))
    );
    let enveloped = json!({"Data": [{"ThingId": "ThingId_ICCID_898800000000000001"}]});
    assert_eq!(
        parse_things_page(enveloped.to_string().as_bytes()).map(|p| p.0),
        Ok(1)
    );
    assert_eq!(
        parse_things_page(b"{\"error\": 1}"),
        Err(DecodeError::NotAList)
    );
}

/// A trusted page with `things`, given as JSON text (which, unlike a
/// `Value`, may repeat keys).
fn page_of(things: &str) -> StatusPage {
    let body = format!(r#"{{"Success": true, "Data": [{things}]}}"#);
    parse_status_page(body.as_bytes()).expect("valid page")
}

const ID: &str = r#""ThingId": "ThingId_ICCID_898800000000000001""#;

#[test]
fn the_last_of_duplicate_keys_wins() {
    // The later value replaces the earlier one, and its errors with it.
    let p = page_of(&format!(
        r#"{{{ID}, "ThingName": {{"bad": 1}}, "ThingName": "b",
        "ActiveSessions": [{{"UplinkThroughput": "fast"}}, 5],
        "ActiveSessions": {{"ActiveSessionId": "s", "UplinkThroughput": 3, "UplinkThroughput": 4}},
        "ConnectionStatus": "CONNECTED", "ConnectionStatus": "DISCONNECTED",
        "ThingId": "other", "ICCID": "898800000000000002"}}"#
    ));
    assert_eq!(p.field_errors, Vec::<FieldError>::new());
    let t = &p.things[0];
    assert_eq!(
        (t.iccid.as_str(), t.thing_name.as_str()),
        ("898800000000000002", "b")
    );
    assert_eq!(
        (t.active_sessions, t.uplink_throughput, t.connected),
        (Some(1), Some(4.0), Some(false))
    );
    assert!(t.unparsed.is_empty());
    // And a good value replaced by a bad one.
    let p = page_of(&format!(
        r#"{{{ID}, "LastConnectionTime": 1739955863, "LastConnectionTime": "never"}}"#
    ));
    assert_eq!(p.field_errors, vec!["LastConnectionTime"]);
    assert_eq!(p.things[0].last_connection, None);
    // The envelope's keys too.
    assert!(matches!(
        parse_status_page(br#"{"Success": true, "Success": false, "Data": []}"#),
        Err(DecodeError::NotSuccessful { success, .. }) if success == "false"
    ));
    assert_eq!(
        parse_status_page(br#"{"Success": true, "Data": [{}], "Data": null}"#),
        Err(DecodeError::NoData)
    );
    let body = format!(r#"{{"Success": true, "Data": null, "Data": [{{{ID}}}, 1]}}"#);
    let p = parse_status_page(body.as_bytes()).expect("valid page");
    assert_eq!((p.returned, p.things.len()), (2, 1));
}

#[test]
fn escaped_strings_are_unescaped() {
    let p = page_of(
        r#"{"Th\u0069ngId": "ThingId_ICCID_\u0038988000000000000001",
        "ThingName": "Z\u00e4hler \"north\"\n", "ProvisionStatus": "ACTIVE \ud83d\ude00",
        "ConnectionStatus": "CONNECT\u0045D", "LastConnectionTime": "2025-02-19\u002009:04:23"}"#,
    );
    assert_eq!(p.field_errors, Vec::<FieldError>::new());
    let t = &p.things[0];
    assert_eq!(t.iccid, "8988000000000000001");
    assert_eq!(t.thing_name, "Zähler \"north\"\n");
    assert_eq!(t.provision_status, "ACTIVE 😀");
    assert_eq!(t.connected, Some(true));
    assert_eq!(t.last_connection, Some(1_739_955_863.0));
}

#[test]
fn numbers_and_numeric_strings() {
    let (t, e) = one(json!({
        "ThingId": "ThingId_ICCID_898800000000000001",
        "ActiveIMSI": 901401234567890u64, "MSISDN": 4420412389916u64,
        "ActiveSessions": [{"UplinkThroughput": " 2.5 ", "DownlinkThroughput": "1e3",
            "LastConnectedTime": "1739955863000"}],
        "LastConnectionTime": "1739955863", "LastDisconnectionTime": 1_739_952_000.5,
    }));
    assert_eq!(e, Vec::<FieldError>::new());
    assert_eq!(
        (t.imsi.as_str(), t.msisdn.as_str()),
        ("901401234567890", "4420412389916")
    );
    assert_eq!(
        (t.uplink_throughput, t.downlink_throughput),
        (Some(2.5), Some(1000.0))
    );
    assert_eq!(t.session_start, Some(1_739_955_863.0));
    assert_eq!(
        (t.last_connection, t.last_disconnection),
        (Some(1_739_955_863.0), Some(1_739_952_000.5))
    );
    // Only whole non-negative numbers are numberings; other text takes none.
    let (t, e) = one(json!({
        "ThingId": "ThingId_ICCID_898800000000000001",
        "ActiveIMSI": -9014, "MSISDN": 44.0, "ThingName": 7, "ProvisionStatus": true,
    }));
    assert_eq!(
        e,
        vec!["ThingName", "ActiveIMSI", "MSISDN", "ProvisionStatus"]
    );
    assert_eq!((t.imsi.as_str(), t.msisdn.as_str()), ("", ""));
    let texts = Unparsed::THING_NAME | Unparsed::IMSI | Unparsed::MSISDN;
    assert_eq!(t.unparsed, Unparsed(texts | Unparsed::PROVISION_STATUS));
    // A throughput that is negative, not finite or not a number is not understood.
    for bad in [
        json!(-1),
        json!("-1"),
        json!("NaN"),
        json!("1e400"),
        json!("fast"),
        json!(true),
        json!([1]),
    ] {
        let (t, e) = one(json!({
            "ThingId": "ThingId_ICCID_898800000000000001",
            "ActiveSessions": {"ActiveSessionId": "s", "UplinkThroughput": bad, "DownlinkThroughput": null},
        }));
        assert_eq!(e, vec!["UplinkThroughput"], "{bad}");
        assert_eq!(
            (t.uplink_throughput, t.downlink_throughput),
            (None, Some(0.0))
        );
        assert_eq!(t.unparsed, Unparsed(Unparsed::UPLINK));
    }
}

#[test]
fn active_sessions_odd_shapes() {
    let sessions = |value: &str| {
        let p = page_of(&format!(r#"{{{ID}, "ActiveSessions": {value}}}"#));
        (p.things[0].clone(), p.field_errors)
    };
    // A session is known by its id, its IP address or its start: an
    // object with none of them is no session, in a list or alone.
    for nothing in [
        r#"{"ApnName": "x"}"#,
        "[{}]",
        r#"[{"UplinkThroughput": 9}, {}]"#,
    ] {
        let (t, e) = sessions(nothing);
        assert_eq!(
            (t.active_sessions, t.connected, e.len()),
            (Some(0), Some(false), 0),
            "{nothing}"
        );
    }
    for one in [
        r#"{"ActiveSessionId": "s"}"#,
        r#"[{"IPAddress": "10.0.0.1"}]"#,
        r#"{"LastConnectedTime": 1739955863}"#,
        r#"[{"ActiveSessionId": 7}]"#,
    ] {
        let (t, e) = sessions(one);
        assert_eq!(
            (t.active_sessions, t.connected, e.len()),
            (Some(1), Some(true), 0),
            "{one}"
        );
    }
    // An entry that is not an object makes the list unknown: the errors of
    // the entries before it stay, those after it are not looked at.
    let (t, e) = sessions(
        r#"[{"ActiveSessionId": "s", "UplinkThroughput": "fast"}, 5, {"DownlinkThroughput": "slow"}]"#,
    );
    assert_eq!(e, vec!["UplinkThroughput", "ActiveSessions"]);
    assert_eq!(
        (t.active_sessions, t.connected, t.session_start),
        (None, None, None)
    );
    let sums = Unparsed::UPLINK | Unparsed::DOWNLINK | Unparsed::SESSION_START;
    let unknown = Unparsed::ACTIVE_SESSIONS | Unparsed::CONNECTED | sums;
    assert_eq!(t.unparsed, Unparsed(unknown));
    for garbage in ["true", "0", r#""[]""#, "[[]]", "[null]", r#"[{}, "s"]"#] {
        let (t, e) = sessions(garbage);
        assert_eq!(e, vec!["ActiveSessions"], "{garbage}");
        assert_eq!(t.active_sessions, None, "{garbage}");
    }
    // One start not understood makes the earliest start unknown (and a
    // start that is there, however garbled, makes a session).
    let (t, e) = sessions(
        r#"[{"LastConnectedTime": 1739955863}, {"LastConnectedTime": "soon"},
        {"ActiveSessionId": "s", "LastConnectedTime": null}]"#,
    );
    assert_eq!(e, vec!["LastConnectedTime"]);
    assert_eq!((t.active_sessions, t.session_start), (Some(3), None));
    assert_eq!(t.unparsed, Unparsed(Unparsed::SESSION_START));
    // Starts that are unknown or never do not count.
    let (t, e) = sessions(
        r#"[{"IPAddress": "10.0.0.1", "LastConnectedTime": 0},
        {"LastConnectedTime": "2025-02-19 09:04:24"}, {"ActiveSessionId": "s"},
        {"LastConnectedTime": "2025-02-19T09:04:23Z"}]"#,
    );
    assert_eq!(e, Vec::<FieldError>::new());
    assert_eq!(
        (t.active_sessions, t.session_start),
        (Some(4), Some(1_739_955_863.0))
    );
}

#[test]
fn iccid_fallbacks() {
    let iccid = |thing: Value| {
        let p = page(json!({"Success": true, "Data": [thing]}));
        p.things.first().map(|t| t.iccid.clone())
    };
    let id = |s: &str| Some(s.to_string());
    assert_eq!(
        iccid(json!({"ThingId": "ThingId_ICCID_ 8988000000000000001 "})),
        id("8988000000000000001")
    );
    assert_eq!(
        iccid(json!({"ThingId": "ThingId_ICCID_  ", "ExternalUniqueId": "8988000000000000002"})),
        id("8988000000000000002")
    );
    assert_eq!(
        iccid(json!({"ThingId": 8988, "ExternalUniqueId": " ", "ICCID": "8988000000000000003"})),
        id("8988000000000000003")
    );
    assert_eq!(
        iccid(
            json!({"ThingId": " ThingId_ICCID_8988", "ExternalUniqueId": 1, "ICCID": null,
            "Iccid": "\t8988000000000000004"})
        ),
        id("8988000000000000004")
    );
    // A ThingId that is not an ICCID gives way to a field that is one.
    assert_eq!(
        iccid(
            json!({"ThingId": "ThingId_ICCID_gateway-7", "ExternalUniqueId": "8988000000000000005"})
        ),
        id("8988000000000000005")
    );
    assert_eq!(
        iccid(json!({"iccid": "8988000000000000006", "ThingName": "x"})),
        None
    );
    // The listing goes by the same rules.
    let body = json!([{"ThingId": 1, "Iccid": "8988000000000000007"}, {"ExternalUniqueId": ""}, "8988000000000000008"]);
    assert_eq!(
        parse_things_listing(body.to_string().as_bytes()),
        Ok(ThingsPage {
            returned: 3,
            iccids: vec!["8988000000000000007".to_string()],
            inactive: vec![None],
            field_errors: vec!["ThingId", "Data"],
        })
    );
}

#[test]
fn iccids_are_normalised_in_answers_and_listings() {
    // The configuration writes a trailing F upper-case; so must the answers.
    let p = page(json!({"Success": true, "Data": [
        {"ThingId": "ThingId_ICCID_8988000000000000001f"},
        {"ExternalUniqueId": " 8912372646888991 "},
        {"ThingId": "ThingId_ICCID_12345"},
        {"ThingId": "ThingId_ICCID_8988000000000000x01"},
        {"ICCID": "89880000000000000000000"},
    ]}));
    let ids: Vec<_> = p.things.iter().map(|t| t.iccid.as_str()).collect();
    assert_eq!(ids, ["8988000000000000001F", "8912372646888991"]);
    assert_eq!(p.returned, 5);
    assert_eq!(p.field_errors, vec!["ThingId", "ThingId", "ThingId"]);

    let listing = json!([
        {"ThingId": "ThingId_ICCID_8988000000000000001f", "ExternalUniqueId": "8988000000000000001f"},
        {"ThingId": "ThingId_ICCID_8988000000000000001F"},
        {"ThingId": "ThingId_ICCID_junk", "ThingName": "not a SIM"},
    ]);
    let page = parse_things_listing(listing.to_string().as_bytes()).expect("a listing");
    assert_eq!(page.returned, 3);
    assert_eq!(
        page.iccids,
        ["8988000000000000001F", "8988000000000000001F"],
        "one spelling; the listing's de-duplication then sees one SIM"
    );
    assert_eq!(page.field_errors, vec!["ThingId"]);
}

#[test]
fn envelope_spellings_and_refusals() {
    let body = format!(r#"{{"success": true, "data": [{{{ID}}}]}}"#);
    assert_eq!(
        parse_status_page(body.as_bytes()).map(|p| p.things.len()),
        Ok(1)
    );
    let refusal = |body: &[u8]| match parse_status_page(body) {
        Err(DecodeError::NotSuccessful { success, message }) => (success, message),
        other => panic!("not a refusal: {other:?}"),
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    // The capitalized spelling wins when both come.
    assert_eq!(
        refusal(br#"{"Success": false, "success": true, "Data": []}"#),
        pair("false", "")
    );
    assert_eq!(
        parse_status_page(br#"{"Success": true, "Data": null, "data": []}"#),
        Err(DecodeError::NoData)
    );
    // Success rendered as JSON; Message as text, or as JSON if not a string.
    assert_eq!(
        refusal(br#"{"Success": "yes", "message": "Quota exceeded"}"#),
        pair(r#""yes""#, "Quota exceeded")
    );
    assert_eq!(
        refusal(br#"{"Message": {"code": 7, "a": [1]}, "Data": []}"#),
        pair("missing", r#"{"a":[1],"code":7}"#)
    );
    assert_eq!(
        refusal(br#"{"Success": null, "Message": 42}"#),
        pair("null", "42")
    );
    assert_eq!(
        refusal(br#"{"Success": {"ok": true}}"#),
        pair(r#"{"ok":true}"#, "")
    );
    let long = format!(r#"{{"Success": false, "Message": "{}"}}"#, "é".repeat(250));
    assert_eq!(refusal(long.as_bytes()).1, format!("{}…", "é".repeat(200)));
    // Things that came before a false Success are dropped with the page.
    let body = format!(r#"{{"Data": [{{{ID}}}], "Success": false}}"#);
    assert_eq!(refusal(body.as_bytes()), pair("false", ""));
    // The listing's envelope.
    assert_eq!(
        parse_things_page(br#"{"data": [{"ICCID": "8988000000000000001"}]}"#),
        Ok((1, vec!["8988000000000000001".to_string()]))
    );
    assert_eq!(
        parse_things_page(br#"{"Data": {}, "data": []}"#),
        Err(DecodeError::NotAList)
    );
    assert_eq!(parse_things_page(br#""[]""#), Err(DecodeError::NotAList));
}

#[test]
fn field_errors_come_in_field_order() {
    // Whatever the order of the keys.
    let p = page_of(&format!(
        r#"{{"LastDisconnectionTime": "x", "LastConnectionTime": "x", "ConnectionStatus": 1,
        "ActiveSessions": [{{"LastConnectedTime": "x", "DownlinkThroughput": "x",
            "UplinkThroughput": "x"}}],
        "ProvisionStatus": 1, "MSISDN": true, "ActiveIMSI": [], "ThingName": {{}}, {ID}}}"#
    ));
    let expected = vec![
        "ThingName",
        "ActiveIMSI",
        "MSISDN",
        "ProvisionStatus",
        "UplinkThroughput",
        "DownlinkThroughput",
        "LastConnectedTime",
        "ConnectionStatus",
        "LastConnectionTime",
        "LastDisconnectionTime",
    ];
    assert_eq!(p.field_errors, expected);
    assert_eq!(
        p.things[0].connected,
        Some(true),
        "the session is still open"
    );
    // A Thing without an id reports only that.
    let p = page_of(&format!(
        r#"{{"ThingName": {{}}, "ActiveSessions": 5, "ConnectionStatus": 1}}, {{{ID}}}"#
    ));
    assert_eq!((p.returned, p.things.len()), (2, 1));
    assert_eq!(p.field_errors, vec!["ThingId"]);
    // Entries that are not objects are `Data` errors, in turn with the others.
    let p = page_of(&format!(r#"null, [], {{{ID}, "ThingName": 1}}, 5, "x""#));
    assert_eq!((p.returned, p.things.len()), (5, 1));
    assert_eq!(
        p.field_errors,
        vec!["Data", "Data", "ThingName", "Data", "Data"]
    );
}

#[test]
fn values_not_read_must_still_be_json() {
    // As when the whole body was parsed into a tree, wherever they are.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for bad in [r#""\ud800""#, "1e400", "01", "[1,]", &deep] {
        for value in [
            bad.to_string(),
            format!("[{bad}]"),
            format!(r#"{{"k": {bad}}}"#),
        ] {
            let things = [
                format!(r#"{{{ID}, "Unknown": {value}}}"#),
                format!(r#"{{{ID}, "ThingName": {value}}}"#),
                format!(r#"{{{ID}, "ActiveSessions": [{{"ApnName": {value}}}, 1, {value}]}}"#),
                value.clone(),
            ];
            for thing in things {
                let body = format!(r#"{{"Success": true, "Data": [{thing}]}}"#);
                let result = parse_status_page(body.as_bytes());
                assert!(matches!(result, Err(DecodeError::NotJson(_))), "{body}");
                let listing = format!("[{thing}]");
                let result = parse_things_page(listing.as_bytes());
                assert!(matches!(result, Err(DecodeError::NotJson(_))), "{listing}");
            }
            let body = format!(r#"{{"Success": false, "Unknown": {value}}}"#);
            let result = parse_status_page(body.as_bytes());
            assert!(matches!(result, Err(DecodeError::NotJson(_))), "{body}");
        }
    }
    let mut latin1 = br#"{"Success": true, "Data": [], "Other": "caf"#.to_vec();
    latin1.extend_from_slice(b"\xe9\"}");
    assert!(matches!(
        parse_status_page(&latin1),
        Err(DecodeError::NotJson(_))
    ));
    let trailing = br#"{"Success": true, "Data": []} []"#;
    assert!(matches!(
        parse_status_page(trailing),
        Err(DecodeError::NotJson(_))
    ));
    // Nesting within serde_json's limit is fine.
    let nested = format!("{}{}", "[".repeat(120), "]".repeat(120));
    let body = format!(r#"{{"Success": true, "Data": [], "Other": {nested}}}"#);
    assert_eq!(
        parse_status_page(body.as_bytes()),
        Ok(StatusPage::default())
    );
}

#[test]
fn plain_datetimes_read_as_the_format_parser_does() {
    let cases = [
        ("2024-02-29 12:00:00", Ok(Some(1_709_208_000.0))),
        ("2024-02-29T12:00:00", Ok(Some(1_709_208_000.0))),
        ("2023-02-29 12:00:00", Err(Unparseable)),
        ("2025-02-19 24:00:00", Err(Unparseable)),
        ("2025-02-19 09:04:2x", Err(Unparseable)),
        ("1970-01-01 00:00:00", Ok(None)),
        // Left to chrono: a leap second, and forms not quite plain.
        ("2016-12-31 23:59:60", Ok(Some(1_483_228_800.0))),
        ("2025-2-19 09:04:23", Ok(Some(1_739_955_863.0))),
        ("2025-02-19  09:04:23", Ok(Some(1_739_955_863.0))),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_timestamp(&json!(text)), expected, "{text}");
    }
}
