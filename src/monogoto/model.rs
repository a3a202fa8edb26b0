//! Tolerant decoding of the Monogoto API's answers.
//!
//! The documentation's schema and example disagree, so each field accepts every
//! shape seen or documented. A field that cannot be understood drops that one
//! value (reported as a [`FieldError`]), never the whole Thing.

use chrono::{DateTime, NaiveDateTime};
use serde_json::{Map, Value};

/// The prefix of a Thing's id; the rest is its ICCID.
pub const THING_ID_PREFIX: &str = "ThingId_ICCID_";

/// Epoch values above this are milliseconds (10^11 s is the year 5138).
const MILLIS_THRESHOLD: f64 = 1e11;

/// One Thing's data-session status as the exporter understands it.
/// `None` means unknown: absent from the answer or not understood.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThingStatus {
    pub iccid: String,
    pub thing_name: String,
    pub imsi: String,
    pub msisdn: String,
    pub provision_status: String,
    pub connected: Option<bool>,
    pub active_sessions: Option<u32>,
    pub uplink_throughput: Option<f64>,
    pub downlink_throughput: Option<f64>,
    /// Epoch seconds.
    pub last_connection: Option<f64>,
    pub last_disconnection: Option<f64>,
    /// Earliest `LastConnectedTime` over the active sessions, epoch seconds.
    pub session_start: Option<f64>,
    /// The values that were present but not understood: the snapshot keeps
    /// their last good values instead of dropping the series.
    pub unparsed: Unparsed,
}

/// A set of [`ThingStatus`] values, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unparsed(pub u16);

impl Unparsed {
    pub const THING_NAME: u16 = 1 << 0;
    pub const IMSI: u16 = 1 << 1;
    pub const MSISDN: u16 = 1 << 2;
    pub const PROVISION_STATUS: u16 = 1 << 3;
    pub const CONNECTED: u16 = 1 << 4;
    pub const ACTIVE_SESSIONS: u16 = 1 << 5;
    pub const UPLINK: u16 = 1 << 6;
    pub const DOWNLINK: u16 = 1 << 7;
    pub const LAST_CONNECTION: u16 = 1 << 8;
    pub const LAST_DISCONNECTION: u16 = 1 << 9;
    pub const SESSION_START: u16 = 1 << 10;

    pub fn has(self, bits: u16) -> bool {
        self.0 & bits != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn mark(&mut self, bits: u16) {
        self.0 |= bits;
    }

    fn mark_if(&mut self, condition: bool, bits: u16) {
        if condition {
            self.0 |= bits;
        }
    }
}

/// Takes the previous value of a field not understood this time; a field with
/// no good predecessor keeps what this answer offered.
fn keep<T>(unparsed: Unparsed, bit: u16, value: &mut Option<T>, previous: Option<T>) {
    if unparsed.has(bit) && previous.is_some() {
        *value = previous;
    }
}

impl ThingStatus {
    /// Fills the values this status could not understand from `previous`.
    pub fn keep_last_good(&mut self, previous: &ThingStatus) {
        let u = self.unparsed;
        if u.has(Unparsed::THING_NAME) {
            self.thing_name.clone_from(&previous.thing_name);
        }
        if u.has(Unparsed::IMSI) {
            self.imsi.clone_from(&previous.imsi);
        }
        if u.has(Unparsed::MSISDN) {
            self.msisdn.clone_from(&previous.msisdn);
        }
        if u.has(Unparsed::PROVISION_STATUS) {
            self.provision_status.clone_from(&previous.provision_status);
        }
        keep(
            u,
            Unparsed::UPLINK,
            &mut self.uplink_throughput,
            previous.uplink_throughput,
        );
        keep(
            u,
            Unparsed::DOWNLINK,
            &mut self.downlink_throughput,
            previous.downlink_throughput,
        );
        keep(
            u,
            Unparsed::LAST_CONNECTION,
            &mut self.last_connection,
            previous.last_connection,
        );
        keep(
            u,
            Unparsed::LAST_DISCONNECTION,
            &mut self.last_disconnection,
            previous.last_disconnection,
        );
        keep(
            u,
            Unparsed::SESSION_START,
            &mut self.session_start,
            previous.session_start,
        );
        keep(
            u,
            Unparsed::ACTIVE_SESSIONS,
            &mut self.active_sessions,
            previous.active_sessions,
        );
        keep(
            u,
            Unparsed::CONNECTED,
            &mut self.connected,
            previous.connected,
        );
    }
}

/// A value that could not be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unparseable;

/// A field of the answer that could not be understood; the name is the API's
/// field name and becomes the `field` label of `monogoto_parse_errors_total`.
pub type FieldError = &'static str;

/// One decoded page of `GET /thing/status`.
#[derive(Debug, Default, PartialEq)]
pub struct StatusPage {
    /// Entries in `Data`, understood or not: paging advances `offset` by this.
    pub returned: usize,
    pub things: Vec<ThingStatus>,
    pub field_errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("API answered Success={success}: {message}")]
    NotSuccessful { success: String, message: String },
    #[error("answer has no Data array")]
    NoData,
    #[error("answer is not a JSON array of Things")]
    NotAList,
}

/// Decodes a `GET /thing/status` body. Trusted only if `Success` is true and
/// `Data` is an array.
pub fn parse_status_page(body: &[u8]) -> Result<StatusPage, DecodeError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let Value::Object(root) = root else {
        return Err(DecodeError::NoData);
    };
    let success = field(&root, &["Success", "success"]);
    if success != Some(&Value::Bool(true)) {
        let message = field(&root, &["Message", "message"])
            .map(|m| match m {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        return Err(DecodeError::NotSuccessful {
            success: success.map_or_else(|| "missing".to_string(), Value::to_string),
            message: truncate(&message, 200),
        });
    }
    let Some(Value::Array(data)) = field(&root, &["Data", "data"]) else {
        return Err(DecodeError::NoData);
    };
    let mut page = StatusPage {
        returned: data.len(),
        ..StatusPage::default()
    };
    for entry in data {
        match entry {
            Value::Object(thing) => {
                if let Some(status) = parse_thing(thing, &mut page.field_errors) {
                    page.things.push(status);
                }
            }
            _ => page.field_errors.push("Data"),
        }
    }
    Ok(page)
}

/// Decodes a `GET /things` body (a bare array; an enveloped `Data` array is
/// accepted too) into the ICCIDs it lists, in order.
pub fn parse_things_page(body: &[u8]) -> Result<(usize, Vec<String>), DecodeError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let items = match root {
        Value::Array(items) => items,
        Value::Object(mut obj) => match obj.remove("Data").or_else(|| obj.remove("data")) {
            Some(Value::Array(items)) => items,
            _ => return Err(DecodeError::NotAList),
        },
        _ => return Err(DecodeError::NotAList),
    };
    let iccids = items
        .iter()
        .filter_map(|item| item.as_object().and_then(thing_iccid))
        .collect();
    Ok((items.len(), iccids))
}

/// The ICCID of a Thing object: from `ThingId_ICCID_<iccid>`, else from the
/// fields that carry it bare.
fn thing_iccid(thing: &Map<String, Value>) -> Option<String> {
    if let Some(Value::String(id)) = thing.get("ThingId")
        && let Some(iccid) = id.strip_prefix(THING_ID_PREFIX)
        && !iccid.trim().is_empty()
    {
        return Some(iccid.trim().to_string());
    }
    ["ExternalUniqueId", "ICCID", "Iccid"]
        .iter()
        .find_map(|key| match thing.get(*key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            _ => None,
        })
}

fn parse_thing(thing: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<ThingStatus> {
    let Some(iccid) = thing_iccid(thing) else {
        errors.push("ThingId");
        return None;
    };
    let mut unparsed = Unparsed::default();
    let mut text_field = |key: &'static str, bit: u16, errors: &mut Vec<FieldError>| {
        let before = errors.len();
        let value = text(thing, key, errors);
        unparsed.mark_if(errors.len() > before, bit);
        value
    };
    let mut status = ThingStatus {
        iccid,
        thing_name: text_field("ThingName", Unparsed::THING_NAME, errors),
        imsi: text_field("ActiveIMSI", Unparsed::IMSI, errors),
        msisdn: text_field("MSISDN", Unparsed::MSISDN, errors),
        provision_status: text_field("ProvisionStatus", Unparsed::PROVISION_STATUS, errors),
        ..ThingStatus::default()
    };

    match parse_sessions(thing.get("ActiveSessions"), errors) {
        Some(sessions) => {
            status.active_sessions = Some(u32::try_from(sessions.len()).unwrap_or(u32::MAX));
            status.uplink_throughput = sum(sessions.iter().map(|s| s.uplink));
            status.downlink_throughput = sum(sessions.iter().map(|s| s.downlink));
            unparsed.mark_if(status.uplink_throughput.is_none(), Unparsed::UPLINK);
            unparsed.mark_if(status.downlink_throughput.is_none(), Unparsed::DOWNLINK);
            // The earliest start is unknown if any start was not understood.
            match sessions
                .iter()
                .map(|s| s.started)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(starts) => {
                    status.session_start = starts.into_iter().flatten().min_by(f64::total_cmp)
                }
                Err(Unparseable) => unparsed.mark(Unparsed::SESSION_START),
            }
        }
        None => unparsed.mark(
            Unparsed::ACTIVE_SESSIONS
                | Unparsed::UPLINK
                | Unparsed::DOWNLINK
                | Unparsed::SESSION_START,
        ),
    }

    let reported = match thing.get("ConnectionStatus") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("CONNECTED") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("DISCONNECTED") => Ok(Some(false)),
        Some(_) => {
            errors.push("ConnectionStatus");
            Err(Unparseable)
        }
    };
    // Without a usable ConnectionStatus, an open session means connected.
    status.connected = reported
        .unwrap_or(None)
        .or_else(|| status.active_sessions.map(|n| n > 0));
    // A garbled ConnectionStatus keeps its last good value; the sessions are
    // only the fallback for a Thing seen for the first time.
    unparsed.mark_if(reported.is_err(), Unparsed::CONNECTED);
    unparsed.mark_if(
        status.connected.is_none() && unparsed.has(Unparsed::ACTIVE_SESSIONS),
        Unparsed::CONNECTED,
    );

    let mut timestamp = |key: &'static str, bit: u16, errors: &mut Vec<FieldError>| {
        let before = errors.len();
        let value = timestamp_field(thing, key, errors);
        unparsed.mark_if(errors.len() > before, bit);
        value
    };
    status.last_connection = timestamp("LastConnectionTime", Unparsed::LAST_CONNECTION, errors);
    status.last_disconnection = timestamp(
        "LastDisconnectionTime",
        Unparsed::LAST_DISCONNECTION,
        errors,
    );
    status.unparsed = unparsed;
    Some(status)
}

struct Session {
    /// `Err` when the value was not understood, which makes the sum unknown.
    uplink: Result<f64, Unparseable>,
    downlink: Result<f64, Unparseable>,
    started: Result<Option<f64>, Unparseable>,
}

/// `ActiveSessions` as an object (one session), an array, null or missing.
/// `None` when the field itself cannot be understood.
fn parse_sessions(value: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<Vec<Session>> {
    match value {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Object(obj)) if obj.is_empty() => Some(Vec::new()),
        Some(Value::Object(obj)) => Some(vec![parse_session(obj, errors)]),
        Some(Value::Array(items)) => {
            let mut sessions = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Object(obj) => sessions.push(parse_session(obj, errors)),
                    _ => {
                        errors.push("ActiveSessions");
                        return None;
                    }
                }
            }
            Some(sessions)
        }
        Some(_) => {
            errors.push("ActiveSessions");
            None
        }
    }
}

fn parse_session(obj: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Session {
    let mut throughput = |key: &'static str| match obj.get(key) {
        None | Some(Value::Null) => Ok(0.0),
        Some(v) => number(v).filter(|n| *n >= 0.0).ok_or_else(|| {
            errors.push(key);
            Unparseable
        }),
    };
    let uplink = throughput("UplinkThroughput");
    let downlink = throughput("DownlinkThroughput");
    let started = match obj.get("LastConnectedTime") {
        None => Ok(None),
        Some(value) => parse_timestamp(value).inspect_err(|_| errors.push("LastConnectedTime")),
    };
    Session {
        uplink,
        downlink,
        started,
    }
}

/// A sum over sessions is unknown if any of its terms was not understood.
fn sum(values: impl Iterator<Item = Result<f64, Unparseable>>) -> Option<f64> {
    values.sum::<Result<f64, Unparseable>>().ok()
}

fn field<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| obj.get(*n))
}

/// A string field; null or missing is empty. The numbering fields (IMSI,
/// MSISDN) are digits, which an API may well send as a JSON number.
fn text(obj: &Map<String, Value>, key: &'static str, errors: &mut Vec<FieldError>) -> String {
    match obj.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if NUMERIC_TEXT_FIELDS.contains(&key) && n.is_u64() => n.to_string(),
        Some(_) => {
            errors.push(key);
            String::new()
        }
    }
}

const NUMERIC_TEXT_FIELDS: &[&str] = &["ActiveIMSI", "MSISDN"];

fn number(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

fn timestamp_field(
    obj: &Map<String, Value>,
    key: &'static str,
    errors: &mut Vec<FieldError>,
) -> Option<f64> {
    parse_timestamp(obj.get(key)?).unwrap_or_else(|Unparseable| {
        errors.push(key);
        None
    })
}

/// A point in time as epoch seconds. Accepts RFC 3339, `YYYY-MM-DD HH:MM:SS`
/// (UTC), and epoch seconds or milliseconds as numbers or numeric strings.
/// `Ok(None)` is unknown (null, empty, or zero, which the API uses for never).
pub fn parse_timestamp(value: &Value) -> Result<Option<f64>, Unparseable> {
    match value {
        Value::Null => Ok(None),
        Value::Number(_) => epoch(number(value).ok_or(Unparseable)?),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if let Ok(n) = s.parse::<f64>() {
                return if n.is_finite() {
                    epoch(n)
                } else {
                    Err(Unparseable)
                };
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(date(t.timestamp_millis()));
            }
            for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
                    return Ok(date(t.and_utc().timestamp_millis()));
                }
            }
            Err(Unparseable)
        }
        _ => Err(Unparseable),
    }
}

/// A date at or before 1970 is a "never" sentinel (such as 0001-01-01), not a time.
fn date(epoch_millis: i64) -> Option<f64> {
    (epoch_millis > 0).then(|| epoch_millis as f64 / 1000.0)
}

fn epoch(n: f64) -> Result<Option<f64>, Unparseable> {
    if n < 0.0 {
        return Err(Unparseable);
    }
    if n == 0.0 {
        return Ok(None);
    }
    Ok(Some(if n > MILLIS_THRESHOLD { n / 1000.0 } else { n }))
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let body = include_str!("../../tests/fixtures/status-documented-example.json");
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
        let body = include_str!("../../tests/fixtures/status-schema-session-object.json");
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
            Unparsed::DOWNLINK
                | Unparsed::MSISDN
                | Unparsed::CONNECTED
                | Unparsed::LAST_DISCONNECTION
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
}
