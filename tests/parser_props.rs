//! Property tests of the status answer parser: it never panics on any input,
//! and every well-formed documented shape parses to the values it encodes.
//! And of the rate-limit header parsers: they never panic, and never ask for
//! a pause longer than `MAX_SERVER_PAUSE`.

use std::time::{Duration, SystemTime};

use monogoto_exporter::monogoto::retry::{
    MAX_SERVER_PAUSE, parse_rate_limit_reset, parse_retry_after,
};
use monogoto_exporter::monogoto::{parse_status_page, parse_things_page};
use proptest::prelude::*;
use serde_json::{Value, json};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("2025-02-19 09:04:23")),
        Just(json!("ThingId_ICCID_8988000000000000001")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("Success".to_string()),
                    Just("Data".to_string()),
                    Just("Message".to_string()),
                    Just("ThingId".to_string()),
                    Just("ActiveSessions".to_string()),
                    Just("ConnectionStatus".to_string()),
                    Just("LastConnectionTime".to_string()),
                    Just("LastConnectedTime".to_string()),
                    Just("UplinkThroughput".to_string()),
                    "[A-Za-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A timestamp, whole seconds, in one of the documented encodings, with its value.
fn timestamp() -> impl Strategy<Value = (Value, Option<f64>)> {
    (1_000_000_000i64..4_000_000_000i64, 0..7u8).prop_map(|(secs, form)| {
        let dt = chrono::DateTime::from_timestamp(secs, 0).expect("in range");
        let encoded = match form {
            0 => json!(secs),
            1 => json!(secs * 1000),
            2 => json!(secs.to_string()),
            3 => json!((secs * 1000).to_string()),
            4 => json!(dt.format("%Y-%m-%d %H:%M:%S").to_string()),
            5 => json!(dt.to_rfc3339()),
            _ => return (Value::Null, None),
        };
        (encoded, Some(secs as f64))
    })
}

#[derive(Debug, Clone)]
struct Session {
    started: (Value, Option<f64>),
    uplink: u32,
    downlink: u32,
}

fn session() -> impl Strategy<Value = Session> {
    (timestamp(), any::<u32>(), any::<u32>()).prop_map(|(started, uplink, downlink)| Session {
        started,
        uplink,
        downlink,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_any_json(value in any_json()) {
        let body = value.to_string();
        let _ = parse_status_page(body.as_bytes());
        let _ = parse_things_page(body.as_bytes());
        let wrapped = json!({"Success": true, "Message": "ok", "Data": [value.clone(), {"ThingId": "ThingId_ICCID_8988000000000000001", "ActiveSessions": value}]});
        let _ = parse_status_page(wrapped.to_string().as_bytes());
    }

    #[test]
    fn never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_status_page(&bytes);
        let _ = parse_things_page(&bytes);
    }

    #[test]
    fn documented_shapes_always_parse(
        sessions in prop::collection::vec(session(), 0..4),
        as_object in any::<bool>(),
        empty_form in 0..3u8,
        with_status in any::<bool>(),
        last_connection in timestamp(),
        last_disconnection in timestamp(),
        name in ".{0,20}",
    ) {
        let encoded: Vec<Value> = sessions.iter().map(|s| json!({
            "ActiveSessionId": "s", "ApnName": "apn", "IPAddress": "10.0.0.1",
            "LastConnectedTime": s.started.0, "UplinkThroughput": s.uplink, "DownlinkThroughput": s.downlink,
        })).collect();
        let mut thing = json!({
            "ThingId": "ThingId_ICCID_8988000000000000001",
            "ThingName": name,
            "ProvisionStatus": "ACTIVE",
            "LastConnectionTime": last_connection.0,
            "LastDisconnectionTime": last_disconnection.0,
        });
        match (sessions.len(), as_object, empty_form) {
            (1, true, _) => thing["ActiveSessions"] = encoded[0].clone(),
            (0, _, 0) => {}
            (0, _, 1) => thing["ActiveSessions"] = Value::Null,
            _ => thing["ActiveSessions"] = Value::Array(encoded),
        }
        let connected = !sessions.is_empty();
        if with_status {
            thing["ConnectionStatus"] = json!(if connected { "CONNECTED" } else { "DISCONNECTED" });
        }
        let body = json!({"Success": true, "Message": "Operation succeeded", "Data": [thing]}).to_string();
        let page = parse_status_page(body.as_bytes()).expect("documented shapes parse");
        prop_assert!(page.field_errors.is_empty(), "{:?}", page.field_errors);
        prop_assert_eq!(page.things.len(), 1);
        let t = &page.things[0];
        prop_assert_eq!(t.connected, Some(connected));
        prop_assert_eq!(t.active_sessions, Some(sessions.len() as u32));
        prop_assert_eq!(t.uplink_throughput, Some(sessions.iter().map(|s| f64::from(s.uplink)).sum::<f64>()));
        prop_assert_eq!(t.downlink_throughput, Some(sessions.iter().map(|s| f64::from(s.downlink)).sum::<f64>()));
        prop_assert_eq!(t.session_start, sessions.iter().filter_map(|s| s.started.1).min_by(f64::total_cmp));
        prop_assert_eq!(t.last_connection, last_connection.1);
        prop_assert_eq!(t.last_disconnection, last_disconnection.1);
        prop_assert_eq!(&t.thing_name, &name);
    }

    #[test]
    fn header_parsers_never_panic_and_cap_every_pause(
        value in prop_oneof![
            ".{0,40}",
            "[0-9]{1,30}",
            "-?[0-9]{0,20}(\\.[0-9]{0,5})?(e[-+]?[0-9]{1,4})?",
            any::<f64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
        ],
        clock in 0u64..(1 << 40),
    ) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(clock);
        for pause in [parse_retry_after(&value, now), parse_rate_limit_reset(&value, now)]
            .into_iter()
            .flatten()
        {
            prop_assert!(pause <= MAX_SERVER_PAUSE, "{value:?}: {pause:?}");
        }
    }
}
