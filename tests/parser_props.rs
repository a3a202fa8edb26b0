//! Property tests of the status answer parser: it never panics on any input,
//! and every well-formed documented shape parses to the values it encodes.
//! And of the rate-limit header parsers: they never panic, and never ask for
//! a pause longer than `MAX_SERVER_PAUSE`. And of the webhook event parser:
//! it never panics, returns only canonical ICCIDs and bounded labels, and
//! reads every documented CDR field in every accepted body shape; the fuzz
//! target's seed corpus is replayed through it.

use std::time::{Duration, SystemTime};

use monogoto_exporter::monogoto::retry::{
    MAX_SERVER_PAUSE, parse_rate_limit_reset, parse_retry_after,
};
use monogoto_exporter::monogoto::{parse_status_page, parse_things_page};
use monogoto_exporter::push::event::{
    BodyError, Event, EventKind, Network, OPERATOR_MAX_CHARS, parse_events,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
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

/// JSON shaped like webhook bodies: event keys in any case, values that are
/// almost ICCIDs, codes and IMEIs, envelopes.
fn any_event_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        "[0-9]{1,24}[fF]?".prop_map(Value::String),
        "(?i)thingid_iccid_[0-9 ]{0,24}[fF]?".prop_map(Value::String),
        "(?i) ?(data|mo_sms|mt_sms|sms) ?".prop_map(Value::String),
        "[\\PC\\p{Cc}]{0,80}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "(?i)(iccid|externaluniqueid|thingid|cdrtype|imei|mcc|mnc|mno|mnoname)",
                    Just("Data".to_string()),
                    Just("events".to_string()),
                    "[A-Za-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn digits(s: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// What the receiver may rely on in every event (the fuzz target checks the same).
fn check_events(events: &[Event]) -> Result<(), TestCaseError> {
    for event in events {
        if let Some(iccid) = &event.iccid {
            // The image of the crate's ICCID normalisation.
            let body = iccid.strip_suffix('F').unwrap_or(iccid);
            prop_assert!(
                (10..=22).contains(&iccid.len()) && digits(body, 9..=22),
                "{iccid:?}"
            );
        }
        prop_assert!(EventKind::ALL.contains(&event.kind));
        if let Some(network) = &event.network {
            prop_assert!(
                digits(&network.mcc, 3..=3) && digits(&network.mnc, 2..=3),
                "{network:?}"
            );
            let operator = &network.operator;
            prop_assert!(!operator.is_empty() && operator.chars().count() <= OPERATOR_MAX_CHARS);
            prop_assert!(!operator.chars().any(char::is_control) && operator.trim() == operator);
        }
        if let Some(imei) = &event.imei {
            prop_assert!(digits(imei, 14..=16), "{imei:?}");
        }
    }
    Ok(())
}

/// A documented CDR's values, each in one of the forms a sender may use.
#[derive(Debug, Clone)]
struct Cdr {
    iccid: String,
    iccid_key: String,
    cdr_type: &'static str,
    mcc: u16,
    mnc: u16,
    mnc_digits: usize,
    as_numbers: bool,
    operator: String,
    imei: u64,
}

fn cdr() -> impl Strategy<Value = Cdr> {
    (
        "89[0-9]{17,18}F?",
        "(?i)iccid",
        prop::sample::select(vec!["DATA", "MO_SMS", "MT_SMS", "BILLING"]),
        (1u16..1000, 0u16..1000, 2usize..=3, any::<bool>()),
        "[A-Za-z][A-Za-z0-9 &.-]{0,40}[A-Za-z0-9]",
        10_000_000_000_000u64..10_000_000_000_000_000,
    )
        .prop_map(
            |(iccid, iccid_key, cdr_type, (mcc, mnc, mnc_digits, as_numbers), operator, imei)| {
                Cdr {
                    iccid,
                    iccid_key,
                    cdr_type,
                    mcc,
                    mnc: if mnc_digits == 2 { mnc % 100 } else { mnc },
                    mnc_digits,
                    as_numbers,
                    operator,
                    imei,
                }
            },
        )
}

impl Cdr {
    fn json(&self) -> Value {
        let mut cdr = json!({
            "CdrType": self.cdr_type, "UniqueID": "u-1", "IMSI": "295050901234567",
            "MSISDN": "423663901234567", "MnoName": self.operator, "ThingName": "t",
            "IMEI": self.imei.to_string(),
        });
        cdr[&self.iccid_key] = json!(self.iccid);
        if self.as_numbers {
            cdr["MCC"] = json!(self.mcc);
            cdr["MNC"] = json!(self.mnc);
        } else {
            cdr["MCC"] = json!(format!("{:03}", self.mcc));
            cdr["MNC"] = json!(format!("{:0w$}", self.mnc, w = self.mnc_digits));
        }
        cdr
    }

    fn expected(&self) -> Event {
        let imei = self.imei.to_string();
        Event {
            iccid: Some(self.iccid.clone()),
            kind: match self.cdr_type {
                "DATA" => EventKind::Data,
                "MO_SMS" | "MT_SMS" => EventKind::Sms,
                _ => EventKind::Other,
            },
            network: Some(Network {
                mcc: format!("{:03}", self.mcc),
                // A number keeps no leading zeros beyond the two of an MNC.
                mnc: if self.as_numbers {
                    format!("{:02}", self.mnc)
                } else {
                    format!("{:0w$}", self.mnc, w = self.mnc_digits)
                },
                operator: self.operator.clone(),
            }),
            imei: (14..=16).contains(&imei.len()).then_some(imei),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn event_parser_never_panics_on_any_json(value in any_event_json()) {
        for body in [
            value.clone(),
            json!([value.clone(), {"Iccid": "8988303000001234567"}]),
            json!({"events": [value.clone()], "event": value}),
        ] {
            if let Ok(events) = parse_events(body.to_string().as_bytes()) {
                check_events(&events)?;
            }
        }
    }

    #[test]
    fn event_parser_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(events) = parse_events(&bytes) {
            check_events(&events)?;
        }
    }

    #[test]
    fn documented_cdrs_parse_in_every_shape(
        cdrs in prop::collection::vec(cdr(), 1..5),
        shape in 0..4u8,
        key in "(Data|events|records|Items|[A-Za-z]{1,10}_)",
    ) {
        let encoded: Vec<Value> = cdrs.iter().map(Cdr::json).collect();
        let body = match shape {
            0 if cdrs.len() == 1 => encoded[0].clone(),
            1 if cdrs.len() == 1 => json!({ key: encoded[0] }),
            2 => json!({ key: encoded }),
            _ => Value::Array(encoded),
        };
        let events = parse_events(body.to_string().as_bytes());
        let expected: Vec<Event> = cdrs.iter().map(Cdr::expected).collect();
        prop_assert_eq!(events, Ok(expected), "{}", body);
    }
}

#[test]
fn event_seed_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus-seed-events");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed corpus") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let body = std::fs::read(&path).expect("a seed");
        match parse_events(&body) {
            Ok(events) => {
                assert!(!name.starts_with("refused-"), "{name}: {events:?}");
                check_events(&events).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            Err(BodyError::NotJson(_) | BodyError::NotEvents(_)) => {
                assert!(name.starts_with("refused-"), "{name} refused");
            }
        }
        seeds += 1;
    }
    assert!(seeds >= 10, "{seeds} seeds in {}", dir.display());
}
