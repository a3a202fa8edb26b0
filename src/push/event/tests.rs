//! Every accepted body shape, each field's sources and limits, and the
//! refusals, on bodies built the way a webhook would send them.

use serde_json::{Value, json};

use super::*;

const ICCID: &str = "8988303000001234567";

fn parse(body: &Value) -> Vec<Event> {
    parse_events(body.to_string().as_bytes()).expect("events")
}

fn one(body: Value) -> Event {
    let mut events = parse(&body);
    assert_eq!(events.len(), 1, "{body}: {events:?}");
    events.remove(0)
}

fn iccids(body: Value) -> Vec<Option<String>> {
    parse(&body).into_iter().map(|e| e.iccid).collect()
}

fn network(mcc: &str, mnc: &str, operator: &str) -> Option<Network> {
    Some(Network {
        mcc: mcc.to_string(),
        mnc: mnc.to_string(),
        operator: operator.to_string(),
    })
}

/// An event naming nothing: what an object of unknown shape is read as.
fn unnamed() -> Event {
    Event {
        iccid: None,
        kind: EventKind::Other,
        network: None,
        imei: None,
    }
}

/// A Data CDR with the documented field names and values of the usual forms.
fn data_cdr() -> Value {
    json!({
        "CdrType": "DATA",
        "UniqueID": "b7e1c3f0-5a2d-4c1e-9f3a-2d8e6b1a0c47",
        "Iccid": ICCID,
        "IMSI": "295050901234567",
        "MSISDN": "423663901234567",
        "IMEI": "356938035643809",
        "MNO": "VZW",
        "MnoName": "Verizon Wireless",
        "MCC": "311",
        "MNC": "480",
        "ThingName": "tracker-0042",
        "ThingId": format!("ThingId_ICCID_{ICCID}"),
    })
}

#[test]
fn documented_data_cdr() {
    assert_eq!(
        one(data_cdr()),
        Event {
            iccid: Some(ICCID.to_string()),
            kind: EventKind::Data,
            network: network("311", "480", "Verizon Wireless"),
            imei: Some("356938035643809".to_string()),
        }
    );
}

#[test]
fn documented_sms_cdr() {
    let sms = |cdr_type: &str| {
        json!({
            "CdrType": cdr_type,
            "UniqueID": "0c9d2e44-71b8-4f0a-a6d5-93e2f7c81b20",
            "Iccid": "89883030000012345678",
            "IMSI": "295050901234568",
            "CallingNumber": "423663901234568",
            "CalledNumber": "447700900123",
            "IMEI": "8675309012345601",
            "MNO": "GBRHU",
            "MnoName": "Three UK",
            "MCC": "234",
            "MNC": "20",
            "ThingName": "meter-7",
            "ThingId": "ThingId_ICCID_89883030000012345678",
        })
    };
    for cdr_type in ["MO_SMS", "MT_SMS"] {
        assert_eq!(
            one(sms(cdr_type)),
            Event {
                iccid: Some("89883030000012345678".to_string()),
                kind: EventKind::Sms,
                network: network("234", "20", "Three UK"),
                imei: Some("8675309012345601".to_string()),
            },
            "{cdr_type}"
        );
    }
}

#[test]
fn accepted_shapes() {
    let event = |iccid: &str| json!({"CdrType": "DATA", "Iccid": iccid});
    let (a, b) = ("8988303000000000001", "8988303000000000002");
    let both = vec![Some(a.to_string()), Some(b.to_string())];
    assert_eq!(iccids(event(a)), vec![Some(a.to_string())], "one object");
    assert_eq!(iccids(json!([event(a), event(b)])), both, "an array");
    for key in ["Data", "events", "records", "Items", "x"] {
        assert_eq!(
            iccids(json!({ key: [event(a), event(b)] })),
            both,
            "an envelope under {key}"
        );
    }
    assert_eq!(
        iccids(json!({"Success": true, "Message": "ok", "Data": [event(a), event(b)]})),
        both,
        "an envelope beside other fields"
    );
    assert_eq!(
        iccids(json!({"event": event(a)})),
        vec![Some(a.to_string())],
        "an envelope of a single object"
    );
    let mut from_two_arrays = iccids(json!({"first": [event(a)], "second": [event(b)]}));
    from_two_arrays.sort();
    assert_eq!(from_two_arrays, both, "every array of an envelope");
    let mut mixed = iccids(json!({"records": [event(a)], "event": event(b), "meta": {"page": 1}}));
    mixed.sort();
    assert_eq!(
        mixed, both,
        "arrays and single events together; an object that is no event skipped"
    );
}

#[test]
fn array_elements_are_events_by_position() {
    assert_eq!(
        parse(&json!([1, "two", null, {"Iccid": ICCID}, [3], {"hello": 1}])),
        vec![
            Event {
                iccid: Some(ICCID.to_string()),
                ..unnamed()
            },
            unnamed(),
        ],
        "non-objects skipped, an object of unknown keys counted"
    );
    assert_eq!(
        parse(&json!({"Data": [7, {"ThingName": "t"}]})),
        vec![unnamed()],
        "the same inside an envelope"
    );
}

#[test]
fn only_one_level_of_envelope() {
    assert_eq!(
        parse(&json!({"outer": {"inner": [{"Iccid": ICCID}]}})),
        vec![unnamed()],
        "an envelope in an envelope is not opened"
    );
    assert_eq!(
        parse(&json!([{"events": [{"Iccid": ICCID}]}])),
        vec![unnamed()],
        "an array element is an event, not an envelope"
    );
}

#[test]
fn an_event_with_arrays_stays_an_event() {
    assert_eq!(
        iccids(json!({"Iccid": ICCID, "history": [{"Iccid": "8988303000000000009"}]})),
        vec![Some(ICCID.to_string())]
    );
}

#[test]
fn empty_batches() {
    assert_eq!(parse(&json!([])), vec![]);
    assert_eq!(parse(&json!({"Data": []})), vec![]);
    assert_eq!(parse(&json!({"Success": true, "Data": []})), vec![]);
}

#[test]
fn objects_of_unknown_shape_are_counted_not_refused() {
    for body in [
        json!({}),
        json!({"hello": 1}),
        json!({"meta": {"page": 1}}),
        json!({"Data": [1, 2]}),
        json!({"Severity": "Warning", "AlertType": "Last Usage"}),
    ] {
        assert_eq!(parse(&body), vec![unnamed()], "{body}");
    }
}

#[test]
fn keys_whatever_their_case() {
    for key in ["Iccid", "ICCID", "iccid", "iCcId"] {
        assert_eq!(
            one(json!({ key: ICCID })).iccid.as_deref(),
            Some(ICCID),
            "{key}"
        );
    }
    let event = one(json!({
        "cdrtype": "data", "externaluniqueid": ICCID, "imei": "356938035643809",
        "mcc": "311", "mnc": "480", "mnoname": "Verizon Wireless",
    }));
    assert_eq!(event.kind, EventKind::Data);
    assert_eq!(event.iccid.as_deref(), Some(ICCID));
    assert_eq!(event.imei.as_deref(), Some("356938035643809"));
    assert_eq!(event.network, network("311", "480", "Verizon Wireless"));
    assert_eq!(
        one(json!({"THINGID": format!("thingid_iccid_{ICCID}")}))
            .iccid
            .as_deref(),
        Some(ICCID),
        "the ThingId prefix too"
    );
    assert_eq!(
        iccids(json!({"data": [{"imsi": "295050901234567"}]})),
        vec![None],
        "an envelope whose event has only a lower-case known key"
    );
    assert_eq!(
        iccids(json!({"mnoname": "x", "records": [{"Iccid": ICCID}]})),
        vec![None],
        "a lower-case known key makes an event, not an envelope"
    );
}

#[test]
fn of_case_variants_the_first_usable_wins() {
    // Keys in order: "ICCID" < "Iccid" < "iccid".
    let event = one(json!({"ICCID": "junk", "Iccid": ICCID, "iccid": "8988303000000000009"}));
    assert_eq!(event.iccid.as_deref(), Some(ICCID));
    let event = one(json!({"CDRTYPE": "BILLING", "CdrType": "MT_SMS"}));
    assert_eq!(event.kind, EventKind::Sms);
}

#[test]
fn duplicate_keys_the_last_wins() {
    let body = format!(r#"{{"Iccid": "8988303000000000009", "Iccid": "{ICCID}"}}"#);
    let events = parse_events(body.as_bytes()).expect("events");
    assert_eq!(events[0].iccid.as_deref(), Some(ICCID));
}

#[test]
fn iccid_sources_in_order() {
    let (iccid, external, thing) = (
        "8988303000000000001",
        "8988303000000000002",
        "8988303000000000003",
    );
    let thing_id = format!("ThingId_ICCID_{thing}");
    let of = |body: Value| one(body).iccid;
    assert_eq!(
        of(json!({"Iccid": iccid, "ExternalUniqueId": external, "ThingId": thing_id})),
        Some(iccid.to_string())
    );
    assert_eq!(
        of(json!({"ExternalUniqueId": external, "ThingId": thing_id})),
        Some(external.to_string())
    );
    assert_eq!(of(json!({"ThingId": thing_id})), Some(thing.to_string()));
    for unusable in [
        json!(""),
        json!("n/a"),
        json!(null),
        json!(true),
        json!(-1),
        json!({}),
    ] {
        assert_eq!(
            of(json!({"Iccid": unusable, "ExternalUniqueId": external, "ThingId": thing_id})),
            Some(external.to_string()),
            "Iccid {unusable} unusable: the next source"
        );
        assert_eq!(
            of(json!({"Iccid": unusable, "ExternalUniqueId": unusable, "ThingId": thing_id})),
            Some(thing.to_string()),
            "both unusable: the ThingId"
        );
    }
    assert_eq!(
        of(json!({"Iccid": "x", "ExternalUniqueId": "y", "ThingId": "z"})),
        None
    );
}

#[test]
fn iccids_are_normalised() {
    let of = |value: Value| one(json!({ "Iccid": value })).iccid;
    assert_eq!(
        of(json!(" 8988303000000000001f\t")),
        Some("8988303000000000001F".to_string())
    );
    assert_eq!(
        of(json!("8912372646888991")),
        Some("8912372646888991".to_string())
    );
    for bad in [
        "123456789",
        "89883030000000000000123",
        "8988303000x000001",
        "+8988303000000000001",
    ] {
        assert_eq!(of(json!(bad)), None, "{bad}");
    }
    for good in ["8988303000000000001", "8988303000000000001F", "1234567890"] {
        let iccid = of(json!(good)).expect("an ICCID");
        assert_eq!(
            iccid::normalize(&iccid).as_ref(),
            Ok(&iccid),
            "canonical: {good}"
        );
    }
}

#[test]
fn thing_id_form() {
    let of = |value: Value| one(json!({ "ThingId": value })).iccid;
    assert_eq!(
        of(json!(format!("ThingId_ICCID_{ICCID}"))),
        Some(ICCID.to_string())
    );
    assert_eq!(
        of(json!(format!(" ThingId_ICCID_{ICCID}f "))),
        Some(format!("{ICCID}F"))
    );
    for bad in [
        json!(ICCID),
        json!(format!("ThingId_IMSI_{ICCID}")),
        json!(format!("ThingId_ICCID_{ICCID}_x")),
        json!("ThingId_ICCID_"),
        json!("ThingId_ICCI"),
        json!("ThingIdé_ICCID_8988303000000000001"),
        json!(8988303000000000001u64),
    ] {
        assert_eq!(of(bad.clone()), None, "{bad}");
    }
}

#[test]
fn iccids_as_numbers() {
    let of = |body: &str| {
        parse_events(body.as_bytes()).expect("events")[0]
            .iccid
            .clone()
    };
    assert_eq!(
        of(r#"{"Iccid": 8988303000000000001}"#),
        Some("8988303000000000001".to_string()),
        "fits a u64: exact"
    );
    assert_eq!(
        of(r#"{"ExternalUniqueId": 8912372646888991}"#),
        Some("8912372646888991".to_string())
    );
    // 20 digits above u64::MAX are read as an f64, with digits lost.
    assert_eq!(of(r#"{"Iccid": 89883030000012345678}"#), None);
    assert_eq!(
        of(r#"{"Iccid": 89883030000012345678, "ThingId": "ThingId_ICCID_89883030000012345678"}"#),
        Some("89883030000012345678".to_string()),
        "an inexact number falls back to the next source"
    );
    assert_eq!(of(r#"{"Iccid": 8988303000000000001.0}"#), None);
    assert_eq!(of(r#"{"Iccid": 8.988303e18}"#), None);
    assert_eq!(of(r#"{"Iccid": 123}"#), None, "too short");
}

#[test]
fn kinds() {
    let of = |value: Value| one(json!({ "CdrType": value, "Iccid": ICCID })).kind;
    for (value, kind) in [
        (json!("DATA"), EventKind::Data),
        (json!(" data\n"), EventKind::Data),
        (json!("Data"), EventKind::Data),
        (json!("MO_SMS"), EventKind::Sms),
        (json!("mt_sms"), EventKind::Sms),
        (json!(" MT_SMS "), EventKind::Sms),
        (json!("SMS"), EventKind::Other),
        (json!("VOICE"), EventKind::Other),
        (json!("DATA_CDR"), EventKind::Other),
        (json!(""), EventKind::Other),
        (json!(1), EventKind::Other),
        (json!(null), EventKind::Other),
        (json!(["DATA"]), EventKind::Other),
    ] {
        assert_eq!(of(value.clone()), kind, "{value}");
    }
    assert_eq!(
        one(json!({"Iccid": ICCID})).kind,
        EventKind::Other,
        "missing"
    );
}

#[test]
fn kind_labels() {
    let labels: Vec<&str> = EventKind::ALL.iter().map(|k| k.label()).collect();
    assert_eq!(labels, ["data", "sms", "other"]);
}

#[test]
fn network_needs_all_three() {
    let of = |body: Value| one(body).network;
    let full = json!({"MCC": "311", "MNC": "480", "MnoName": "Verizon Wireless", "MNO": "VZW"});
    assert_eq!(of(full.clone()), network("311", "480", "Verizon Wireless"));
    for missing in ["MCC", "MNC"] {
        let mut body = full.clone();
        body.as_object_mut().expect("an object").remove(missing);
        assert_eq!(of(body), None, "without {missing}");
    }
    let mut mno_only = full.clone();
    mno_only
        .as_object_mut()
        .expect("an object")
        .remove("MnoName");
    assert_eq!(
        of(mno_only.clone()),
        network("311", "480", "VZW"),
        "MNO when no MnoName"
    );
    mno_only.as_object_mut().expect("an object").remove("MNO");
    assert_eq!(of(mno_only), None, "no operator");
    assert_eq!(
        of(json!({"MCC": "311", "MNC": "480", "MnoName": " \t", "MNO": "VZW"})),
        network("311", "480", "VZW"),
        "a blank MnoName: the MNO"
    );
    assert_eq!(
        of(json!({"MCC": "311", "MNC": "480", "MnoName": "", "MNO": ""})),
        None
    );
    assert_eq!(
        of(json!({"MCC": "311", "MNC": "480", "MnoName": 12, "MNO": 13})),
        None,
        "numbers are ids, not names"
    );
}

#[test]
fn network_codes() {
    let of = |mcc: Value, mnc: Value| one(json!({"MCC": mcc, "MNC": mnc, "MNO": "op"})).network;
    let codes = |mcc: &str, mnc: &str| network(mcc, mnc, "op");
    assert_eq!(
        of(json!(" 234 "), json!("015")),
        codes("234", "015"),
        "strings as given"
    );
    assert_eq!(of(json!("001"), json!("01")), codes("001", "01"));
    assert_eq!(of(json!(234), json!(15)), codes("234", "15"));
    assert_eq!(of(json!(310), json!(260)), codes("310", "260"));
    assert_eq!(
        of(json!(234), json!(1)),
        codes("234", "01"),
        "a number MNC padded to 2"
    );
    assert_eq!(
        of(json!(1), json!(1)),
        codes("001", "01"),
        "a number MCC padded to 3"
    );
    for (mcc, mnc) in [
        (json!("23"), json!("15")),
        (json!("2345"), json!("15")),
        (json!("23a"), json!("15")),
        (json!("234"), json!("1")),
        (json!("234"), json!("1234")),
        (json!("234"), json!("1 5")),
        (json!("234"), json!("-15")),
        (json!("２３４"), json!("15")),
        (json!(2345), json!(15)),
        (json!(234), json!(1000)),
        (json!(234), json!(-1)),
        (json!(234.0), json!(15)),
        (json!(234), json!(15.5)),
        (json!(null), json!(15)),
        (json!(true), json!(15)),
    ] {
        assert_eq!(of(mcc.clone(), mnc.clone()), None, "{mcc} {mnc}");
    }
}

#[test]
fn operator_names_are_cleaned_and_bounded() {
    let of = |name: &str| {
        one(json!({"MCC": "311", "MNC": "480", "MnoName": name}))
            .network
            .map(|n| n.operator)
    };
    assert_eq!(of("  Three UK\n").as_deref(), Some("Three UK"));
    assert_eq!(
        of("Thr\u{0}ee\u{1b}[31m UK").as_deref(),
        Some("Three[31m UK")
    );
    assert_eq!(of("\u{7f}\u{9f}\n"), None, "nothing but control characters");
    let long = "é".repeat(OPERATOR_MAX_CHARS + 10);
    let name = of(&long).expect("a name");
    assert_eq!(name.chars().count(), OPERATOR_MAX_CHARS);
    assert!(name.chars().all(|c| c == 'é'));
    let exact = "x".repeat(OPERATOR_MAX_CHARS);
    assert_eq!(of(&exact).as_deref(), Some(exact.as_str()));
    let spaced = format!("{} tail", "y".repeat(OPERATOR_MAX_CHARS - 1));
    assert_eq!(
        of(&spaced),
        Some("y".repeat(OPERATOR_MAX_CHARS - 1)),
        "no trailing space left by the cut"
    );
}

#[test]
fn imeis() {
    let of = |value: Value| one(json!({ "IMEI": value })).imei;
    for (value, imei) in [
        (json!("356938035643809"), "356938035643809"),
        (json!(" 3569380356438091 "), "3569380356438091"),
        (json!("35693803564380"), "35693803564380"),
        (json!(356938035643809u64), "356938035643809"),
    ] {
        assert_eq!(of(value.clone()).as_deref(), Some(imei), "{value}");
    }
    for value in [
        json!("3569380356438"),
        json!("35693803564380912"),
        json!("35-693803-564380-9"),
        json!("35693803564380X"),
        json!(""),
        json!(3569380356438u64),
        json!(35693803564380912u64),
        json!(356938035643809.0),
        json!(null),
    ] {
        assert_eq!(of(value.clone()), None, "{value}");
    }
}

#[test]
fn refusals() {
    let not_json = |body: &[u8]| match parse_events(body) {
        Err(BodyError::NotJson(reason)) => {
            assert!(!reason.is_empty() && reason.chars().count() <= REASON_MAX_CHARS);
        }
        other => panic!("{body:?}: {other:?}"),
    };
    not_json(b"");
    not_json(b"Iccid=8988303000000000001");
    not_json(b"{\"Iccid\": \"8988303000000000001\"");
    not_json(b"{\"Iccid\": \"8988303000000000001\"} trailing");
    not_json(b"{\"MnoName\": \"\xff\xfe\"}");
    not_json(b"\xef\xbb\xbf{}");
    not_json(&[b'['; 200]);
    let not_events = |body: &str| match parse_events(body.as_bytes()) {
        Err(BodyError::NotEvents(reason)) => assert!(!reason.is_empty()),
        other => panic!("{body}: {other:?}"),
    };
    for body in [
        "1",
        "\"8988303000000000001\"",
        "null",
        "true",
        "[1, 2, 3]",
        "[\"a\", null, []]",
    ] {
        not_events(body);
    }
}

#[test]
fn not_json_reasons_are_short() {
    let body = format!("{{\"{}", "k".repeat(10_000));
    let err = parse_events(body.as_bytes()).expect_err("not JSON");
    assert!(err.to_string().starts_with("not JSON: "), "{err}");
    assert!(err.to_string().chars().count() <= "not JSON: ".len() + REASON_MAX_CHARS);
}

#[test]
fn deep_nesting_is_refused_or_read_without_recursion() {
    let depth = 100_000;
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(matches!(
        parse_events(deep.as_bytes()),
        Err(BodyError::NotJson(_))
    ));
    // Within the parser's limit: read, and only the top levels looked at.
    let nested = format!(
        "{{\"Data\": [{{\"Iccid\": \"{ICCID}\", \"x\": {}1{}}}]}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    assert_eq!(
        iccids(serde_json::from_str(&nested).expect("JSON")),
        vec![Some(ICCID.to_string())]
    );
}

#[test]
fn large_batches() {
    let events: Vec<Value> = (0..5_000u64)
        .map(|i| {
            let mut cdr = data_cdr();
            cdr["Iccid"] = json!(format!("89883030{i:011}"));
            cdr
        })
        .collect();
    let parsed = parse(&json!({ "records": events }));
    assert_eq!(parsed.len(), 5_000);
    assert_eq!(parsed[4_999].iccid.as_deref(), Some("8988303000000004999"));
    assert!(
        parsed
            .iter()
            .all(|e| e.kind == EventKind::Data && e.network.is_some())
    );
}
