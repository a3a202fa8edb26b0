//! A webhook body read as events: for each, the SIM it names, what kind of
//! record it is and, when it says so, the network and the IMEI.
//!
//! Monogoto documents the fields of its Data and SMS CDRs but not the body
//! that carries them, so every plausible shape is accepted:
//!
//! - one event object;
//! - an array of event objects (elements that are not objects are skipped);
//! - an envelope: an object without any known event key whose values include
//!   arrays of objects (`{"Data": [...]}`, `{"events": [...]}`, under any key;
//!   the events of every such array are taken) or event objects
//!   (`{"event": {...}}`), one level deep only.
//!
//! An object is an event when it has at least one of `EVENT_KEYS`; the
//! elements of an array are events by position, whatever their keys. An
//! object that is neither an event nor an envelope (`{"hello": 1}`) is read
//! as one event that names no SIM, so that the receiver counts it rather than
//! refusing it: alerts and the default-on billing and production updates have
//! undocumented shapes, and a count of them is what tells that they arrive.
//!
//! Keys are matched whatever their case. Of several keys that differ only in
//! case, the first usable value in key order wins. A value that cannot be
//! read leaves its field empty, never the whole event.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::iccid;
use crate::monogoto::model::THING_ID_PREFIX;

/// What kind of record an event is, from its `CdrType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Data,
    Sms,
    Other,
}

impl EventKind {
    /// Every kind, for pre-registering one series per kind.
    pub const ALL: [EventKind; 3] = [EventKind::Data, EventKind::Sms, EventKind::Other];

    /// The kind as a metric label value.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::Data => "data",
            EventKind::Sms => "sms",
            EventKind::Other => "other",
        }
    }
}

/// The network a CDR was recorded on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// 3 digits.
    pub mcc: String,
    /// 2 or 3 digits.
    pub mnc: String,
    /// Trimmed, non-empty, at most [`OPERATOR_MAX_CHARS`] characters, no
    /// control characters.
    pub operator: String,
}

/// One event of a webhook body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Normalised like every other ICCID (crate::iccid::normalize); None when the event names no usable one.
    pub iccid: Option<String>,
    pub kind: EventKind,
    /// From a CDR that carries MCC, MNC and MnoName (or MNO) — all three, non-empty.
    pub network: Option<Network>,
    /// The IMEI of the CDR, when it carries a usable one.
    pub imei: Option<String>,
}

/// Why a webhook body holds no events.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BodyError {
    /// Not JSON (non-UTF-8 included), with the parser's reason, shortened.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but no event object: a scalar, or an array holding no object.
    #[error("{0}")]
    NotEvents(String),
}

/// The keys (matched whatever their case) that make an object an event
/// rather than an envelope: the documented Data and SMS CDR fields, and the
/// `/things` listing's `ExternalUniqueId`. No field name of an alert is
/// documented.
const EVENT_KEYS: [&str; 15] = [
    "CdrType",
    "Iccid",
    "ExternalUniqueId",
    "ThingId",
    "IMSI",
    "MSISDN",
    "IMEI",
    "UniqueID",
    "MCC",
    "MNC",
    "MNO",
    "MnoName",
    "ThingName",
    "CallingNumber",
    "CalledNumber",
];

/// Longest operator name kept: label values stay short whatever is sent.
pub const OPERATOR_MAX_CHARS: usize = 64;

/// Longest reason kept in a [`BodyError::NotJson`]: enough to tell what was
/// wrong, short enough for a log line.
const REASON_MAX_CHARS: usize = 100;

/// Parses a webhook body.
pub fn parse_events(body: &[u8]) -> Result<Vec<Event>, BodyError> {
    // The depth of the tree is bounded by serde_json's recursion limit; the
    // walk below goes at most two levels into it.
    let root: Value = serde_json::from_slice(body)
        .map_err(|e| BodyError::NotJson(cut(&e.to_string(), REASON_MAX_CHARS).to_string()))?;
    match root {
        Value::Object(object) => Ok(events_of_object(&object)),
        Value::Array(items) => {
            if !items.is_empty() && !items.iter().any(Value::is_object) {
                return Err(BodyError::NotEvents(
                    "an array holding no event object".to_string(),
                ));
            }
            Ok(events_of_array(&items).collect())
        }
        scalar => Err(BodyError::NotEvents(format!(
            "a JSON {}, not an event object",
            json_type(&scalar)
        ))),
    }
}

/// A top-level object: an event, an envelope, or (neither) one event that
/// names nothing.
fn events_of_object(object: &Map<String, Value>) -> Vec<Event> {
    if !is_event(object) {
        let mut is_envelope = false;
        let mut events = Vec::new();
        for value in object.values() {
            match value {
                // An empty array is an empty batch: `{"Data": []}`.
                Value::Array(items) if items.is_empty() || items.iter().any(Value::is_object) => {
                    is_envelope = true;
                    events.extend(events_of_array(items));
                }
                Value::Object(inner) if is_event(inner) => {
                    is_envelope = true;
                    events.push(event(inner));
                }
                _ => {}
            }
        }
        if is_envelope {
            return events;
        }
    }
    vec![event(object)]
}

fn events_of_array(items: &[Value]) -> impl Iterator<Item = Event> + '_ {
    items.iter().filter_map(Value::as_object).map(event)
}

fn is_event(object: &Map<String, Value>) -> bool {
    object.keys().any(|key| {
        EVENT_KEYS
            .iter()
            .any(|known| key.eq_ignore_ascii_case(known))
    })
}

fn event(object: &Map<String, Value>) -> Event {
    Event {
        iccid: iccid_of(object),
        kind: first(object, "CdrType", kind).unwrap_or(EventKind::Other),
        network: network_of(object),
        imei: first(object, "IMEI", imei),
    }
}

/// The first value under `name` (whatever the key's case) that `read` accepts.
fn first<T>(
    object: &Map<String, Value>,
    name: &str,
    read: impl Fn(&Value) -> Option<T>,
) -> Option<T> {
    object
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .find_map(|(_, value)| read(value))
}

/// From `Iccid`, else `ExternalUniqueId` (the ICCID in `/things`), else a
/// `ThingId` of the form `ThingId_ICCID_<iccid>`.
fn iccid_of(object: &Map<String, Value>) -> Option<String> {
    first(object, "Iccid", plain_iccid)
        .or_else(|| first(object, "ExternalUniqueId", plain_iccid))
        .or_else(|| first(object, "ThingId", iccid_in_thing_id))
}

fn plain_iccid(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => iccid::normalize(s).ok(),
        // Only a u64 keeps every digit: a larger number was read as an f64
        // and lost some, so it names no SIM for sure.
        Value::Number(n) => iccid::normalize(&n.as_u64()?.to_string()).ok(),
        _ => None,
    }
}

fn iccid_in_thing_id(value: &Value) -> Option<String> {
    let id = value.as_str()?.trim();
    // `get` refuses a cut inside a character, which is then no prefix anyway.
    let prefix = id.get(..THING_ID_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(THING_ID_PREFIX) {
        return None;
    }
    iccid::normalize(&id[THING_ID_PREFIX.len()..]).ok()
}

fn kind(value: &Value) -> Option<EventKind> {
    let cdr_type = value.as_str()?.trim();
    if cdr_type.eq_ignore_ascii_case("DATA") {
        Some(EventKind::Data)
    } else if cdr_type.eq_ignore_ascii_case("MO_SMS") || cdr_type.eq_ignore_ascii_case("MT_SMS") {
        Some(EventKind::Sms)
    } else {
        None
    }
}

fn network_of(object: &Map<String, Value>) -> Option<Network> {
    Some(Network {
        mcc: first(object, "MCC", |v| digits(v, 3, 3))?,
        mnc: first(object, "MNC", |v| digits(v, 2, 3))?,
        operator: first(object, "MnoName", operator).or_else(|| first(object, "MNO", operator))?,
    })
}

/// A code of `min` to `max` digits: a string as given (trimmed), or a number
/// padded with zeros to `min` digits, since a number cannot keep the
/// leading zeros of MNC `01` or MCC `001`.
fn digits(value: &Value, min: usize, max: usize) -> Option<String> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => format!("{:0min$}", n.as_u64()?),
        _ => return None,
    };
    ((min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

/// A name to show: a string only, as a number would be an id, not a name.
fn operator(value: &Value) -> Option<String> {
    let visible: String = value
        .as_str()?
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let name = cut(visible.trim(), OPERATOR_MAX_CHARS).trim_end();
    (!name.is_empty()).then(|| name.to_string())
}

/// IMEI (15 digits), IMEISV (16), or the 14 digits sent without a check digit.
fn imei(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.as_u64()?.to_string(),
        _ => return None,
    };
    ((14..=16).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

/// `text` cut to at most `max_chars` characters.
fn cut(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests;
