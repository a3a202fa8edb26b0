//! Tolerant decoding of the Monogoto API's answers.
//!
//! The documentation's schema and example disagree, so each field accepts every
//! shape seen or documented. A field that cannot be understood drops that one
//! value (reported as a [`FieldError`]), never the whole Thing.
//!
//! A body is decoded in one pass, without building a JSON tree: field names
//! are matched in place, strings without escapes are borrowed from the body,
//! and only the fields the exporter reads are kept. As in a JSON map, the last
//! of duplicate keys wins.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::iccid;

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
    // Room for as many Things as the body holds at 256 bytes each: real ones
    // are larger, so the list seldom grows while it is decoded.
    let things = (body.len() / 256).min(4096);
    let Some(envelope) = decode(body, Any(StatusRoot { things }))? else {
        return Err(DecodeError::NoData);
    };
    let success = envelope.success;
    if success != Some(Value::Bool(true)) {
        let message = envelope
            .message
            .map(|m| match m {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .unwrap_or_default();
        return Err(DecodeError::NotSuccessful {
            success: success.map_or_else(|| "missing".to_string(), |s| s.to_string()),
            message: truncate(&message, 200),
        });
    }
    envelope.data.flatten().ok_or(DecodeError::NoData)
}

/// One decoded page of `GET /things`.
#[derive(Debug, Default, PartialEq)]
pub struct ThingsPage {
    /// Entries in the listing, understood or not: paging advances by this.
    pub returned: usize,
    /// The ICCIDs listed, canonical, in order.
    pub iccids: Vec<String>,
    /// For each of them, what its `State` says: inactive (SUSPENDED,
    /// RETIRED) or not; `None` when the listing does not say.
    pub inactive: Vec<Option<bool>>,
    /// `ThingId` for an entry without an ICCID, `Data` for one that is not
    /// an object, as in a status answer.
    pub field_errors: Vec<FieldError>,
}

/// Decodes a `GET /things` body (a bare array; an enveloped `Data` array is
/// accepted too) into the ICCIDs it lists, in order.
pub fn parse_things_listing(body: &[u8]) -> Result<ThingsPage, DecodeError> {
    decode(body, Any(ThingsRoot))?.ok_or(DecodeError::NotAList)
}

/// [`parse_things_listing`] without its errors: the number of entries and the ICCIDs.
pub fn parse_things_page(body: &[u8]) -> Result<(usize, Vec<String>), DecodeError> {
    parse_things_listing(body).map(|page| (page.returned, page.iccids))
}

/// A Thing as a `GET /things` listing names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedThing {
    pub iccid: String,
    /// What its `State` says: inactive (SUSPENDED, RETIRED) or not; `None`
    /// when the listing does not say.
    pub inactive: Option<bool>,
}

impl ThingsPage {
    /// The Things listed, with what the listing says of their state.
    pub fn things(self) -> Vec<ListedThing> {
        self.iccids
            .into_iter()
            .zip(self.inactive.into_iter().chain(std::iter::repeat(None)))
            .map(|(iccid, inactive)| ListedThing { iccid, inactive })
            .collect()
    }
}

/// A provisioning status whose SIM cannot connect, so that it is polled rarely.
pub fn is_inactive_status(status: &str) -> bool {
    let status = status.trim();
    status.eq_ignore_ascii_case("SUSPENDED") || status.eq_ignore_ascii_case("RETIRED")
}

/// Decodes the whole body, which must be exactly one JSON value.
fn decode<'de, S: DeserializeSeed<'de>>(body: &'de [u8], seed: S) -> Result<S::Value, DecodeError> {
    // Checking the UTF-8 of the body at once is much faster than string by
    // string, and rejects the same bodies: outside strings, a byte that is not
    // ASCII is not JSON either.
    let body = std::str::from_utf8(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let mut deserializer = serde_json::Deserializer::from_str(body);
    seed.deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|e| DecodeError::NotJson(e.to_string()))
}

/// How a value is decoded, by its JSON kind. The kinds a decoder leaves out
/// are still checked, then skipped and answered with [`Decode::other`], so
/// no shape of an answer is an error.
trait Decode<'de>: Sized {
    type Value;

    fn other(self) -> Self::Value;

    fn null(self) -> Self::Value {
        self.other()
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_entries(map)?;
        Ok(self.other())
    }

    fn array<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_elements(seq)?;
        Ok(self.other())
    }
}

/// Decodes the next value, whatever its kind, with a [`Decode`].
struct Any<D>(D);

impl<'de, D: Decode<'de>> DeserializeSeed<'de> for Any<D> {
    type Value = D::Value;

    fn deserialize<T: Deserializer<'de>>(self, deserializer: T) -> Result<D::Value, T::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, D: Decode<'de>> Visitor<'de> for Any<D> {
    type Value = D::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<D::Value, E> {
        Ok(self.0.null())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<D::Value, E> {
        Ok(self.0.other())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<D::Value, E> {
        Ok(self.0.other())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<D::Value, E> {
        Ok(self.0.other())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<D::Value, E> {
        Ok(self.0.other())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<D::Value, E> {
        Ok(self.0.other())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<D::Value, A::Error> {
        self.0.array(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<D::Value, A::Error> {
        self.0.object(map)
    }
}

/// Any value, checked as strictly as a `serde_json::Value` is, then dropped.
/// Not [`de::IgnoredAny`]: serde_json skips that without checking UTF-8,
/// escapes, number range or nesting depth, and would accept bodies that are
/// rejected as not JSON.
struct Skip;

impl<'de> Decode<'de> for Skip {
    type Value = ();

    fn other(self) {}
}

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Skip, D::Error> {
        deserializer.deserialize_any(Any(Skip)).map(|()| Skip)
    }
}

fn skip_entries<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<Skip, Skip>()?.is_some() {}
    Ok(())
}

fn skip_elements<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

/// A field's value as far as the exporter reads it: scalars kept, strings
/// borrowed from the body unless they have escapes; booleans, arrays and
/// objects only noted.
#[derive(Debug)]
enum Scalar<'de> {
    Null,
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'de, str>),
    Other,
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::I64(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::U64(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::F64(n))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
        skip_elements(seq).map(|()| Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
        skip_entries(map).map(|()| Scalar::Other)
    }
}

impl<'a> From<&'a Value> for Scalar<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null => Scalar::Null,
            Value::Number(n) => n
                .as_u64()
                .map(Scalar::U64)
                .or_else(|| n.as_i64().map(Scalar::I64))
                .or_else(|| n.as_f64().map(Scalar::F64))
                .unwrap_or(Scalar::Other),
            Value::String(s) => Scalar::Str(Cow::Borrowed(s)),
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => Scalar::Other,
        }
    }
}

/// Declares the field names a decoder reads, matched against a key without
/// allocating it; any other key is `Other`.
macro_rules! field_names {
    ($name:ident { $($variant:ident = $key:literal,)* }) => {
        #[derive(Clone, Copy)]
        enum $name {
            $($variant,)*
            Other,
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_identifier(FieldName(|name: &str| match name {
                    $($key => $name::$variant,)*
                    _ => $name::Other,
                }))
            }
        }
    };
}

/// Matches a key with its closure, whether the key was borrowed or unescaped.
struct FieldName<F>(F);

impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for FieldName<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<T, E> {
        Ok((self.0)(name))
    }
}

field_names!(EnvelopeField {
    Success = "Success",
    SuccessLower = "success",
    Message = "Message",
    MessageLower = "message",
    Data = "Data",
    DataLower = "data",
});

field_names!(ThingField {
    ThingId = "ThingId",
    ExternalUniqueId = "ExternalUniqueId",
    Iccid = "ICCID",
    IccidCamel = "Iccid",
    ThingName = "ThingName",
    ActiveImsi = "ActiveIMSI",
    Msisdn = "MSISDN",
    ProvisionStatus = "ProvisionStatus",
    ActiveSessions = "ActiveSessions",
    ConnectionStatus = "ConnectionStatus",
    LastConnectionTime = "LastConnectionTime",
    LastDisconnectionTime = "LastDisconnectionTime",
    State = "State",
});

field_names!(SessionField {
    Id = "ActiveSessionId",
    Ip = "IPAddress",
    Uplink = "UplinkThroughput",
    Downlink = "DownlinkThroughput",
    Started = "LastConnectedTime",
});

/// An envelope field the API may spell capitalized or not; the capitalized
/// one wins when both come.
#[derive(Default)]
struct EitherCase<T> {
    upper: Option<T>,
    lower: Option<T>,
}

impl<T> EitherCase<T> {
    fn get(self) -> Option<T> {
        self.upper.or(self.lower)
    }
}

/// The envelope of a status answer. `Data` is decoded where it comes, before
/// `Success` may be known, and kept only if the answer turns out trusted.
struct StatusEnvelope {
    // One of each a page, rendered as JSON when odd: a tree is the simple way.
    success: Option<Value>,
    message: Option<Value>,
    /// `Some(None)` when `Data` is there but not an array.
    data: Option<Option<StatusPage>>,
}

/// The root of a status answer: `None` if it is not an object.
struct StatusRoot {
    /// The capacity to reserve for Things.
    things: usize,
}

impl<'de> Decode<'de> for StatusRoot {
    type Value = Option<StatusEnvelope>;

    fn other(self) -> Self::Value {
        None
    }

    fn object<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut success = EitherCase::default();
        let mut message = EitherCase::default();
        let mut data = EitherCase::default();
        while let Some(field) = map.next_key()? {
            match field {
                EnvelopeField::Success => success.upper = Some(map.next_value()?),
                EnvelopeField::SuccessLower => success.lower = Some(map.next_value()?),
                EnvelopeField::Message => message.upper = Some(map.next_value()?),
                EnvelopeField::MessageLower => message.lower = Some(map.next_value()?),
                EnvelopeField::Data => {
                    data.upper = Some(map.next_value_seed(Any(StatusData(self.things)))?)
                }
                EnvelopeField::DataLower => {
                    data.lower = Some(map.next_value_seed(Any(StatusData(self.things)))?)
                }
                EnvelopeField::Other => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Some(StatusEnvelope {
            success: success.get(),
            message: message.get(),
            data: data.get(),
        }))
    }
}

/// `Data` of a status answer: a page if it is an array, with room reserved
/// for this many Things.
struct StatusData(usize);

impl<'de> Decode<'de> for StatusData {
    type Value = Option<StatusPage>;

    fn other(self) -> Self::Value {
        None
    }

    fn array<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut page = StatusPage {
            things: Vec::with_capacity(self.0),
            ..StatusPage::default()
        };
        while let Some(()) = seq.next_element_seed(Any(StatusEntry(&mut page)))? {
            page.returned += 1;
        }
        Ok(Some(page))
    }
}

/// One entry of `Data`, added to the page: a Thing if it is an object.
struct StatusEntry<'a>(&'a mut StatusPage);

impl<'de> Decode<'de> for StatusEntry<'_> {
    type Value = ();

    fn other(self) {
        self.0.field_errors.push("Data");
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let thing = ThingFields::decode(map)?;
        if let Some(status) = thing.status(&mut self.0.field_errors) {
            self.0.things.push(status);
        }
        Ok(())
    }
}

/// The fields that carry a Thing's ICCID.
#[derive(Default)]
struct ThingIds<'de> {
    thing_id: Option<Scalar<'de>>,
    external_unique_id: Option<Scalar<'de>>,
    iccid: Option<Scalar<'de>>,
    iccid_camel: Option<Scalar<'de>>,
}

impl ThingIds<'_> {
    /// The ICCID in its canonical form ([`iccid::normalize`], the one the
    /// configuration uses): from `ThingId_ICCID_<iccid>`, else from the
    /// fields that carry it bare; the first that is an ICCID.
    fn iccid(&self) -> Option<String> {
        let from_thing_id = match &self.thing_id {
            Some(Scalar::Str(id)) => id.strip_prefix(THING_ID_PREFIX),
            _ => None,
        };
        let bare = [&self.external_unique_id, &self.iccid, &self.iccid_camel]
            .into_iter()
            .map(|value| match value {
                Some(Scalar::Str(s)) => Some(s.as_ref()),
                _ => None,
            });
        std::iter::once(from_thing_id)
            .chain(bare)
            .flatten()
            .find_map(|candidate| iccid::normalize(candidate).ok())
    }
}

/// A Thing object's fields as they came, before they are understood.
#[derive(Default)]
struct ThingFields<'de> {
    ids: ThingIds<'de>,
    thing_name: Option<Scalar<'de>>,
    imsi: Option<Scalar<'de>>,
    msisdn: Option<Scalar<'de>>,
    provision_status: Option<Scalar<'de>>,
    sessions: Option<ActiveSessions>,
    connection_status: Option<Scalar<'de>>,
    last_connection: Option<Scalar<'de>>,
    last_disconnection: Option<Scalar<'de>>,
}

impl<'de> ThingFields<'de> {
    fn decode<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut thing = ThingFields::default();
        while let Some(field) = map.next_key()? {
            let slot = match field {
                ThingField::ThingId => &mut thing.ids.thing_id,
                ThingField::ExternalUniqueId => &mut thing.ids.external_unique_id,
                ThingField::Iccid => &mut thing.ids.iccid,
                ThingField::IccidCamel => &mut thing.ids.iccid_camel,
                ThingField::ThingName => &mut thing.thing_name,
                ThingField::ActiveImsi => &mut thing.imsi,
                ThingField::Msisdn => &mut thing.msisdn,
                ThingField::ProvisionStatus => &mut thing.provision_status,
                ThingField::ConnectionStatus => &mut thing.connection_status,
                ThingField::LastConnectionTime => &mut thing.last_connection,
                ThingField::LastDisconnectionTime => &mut thing.last_disconnection,
                ThingField::ActiveSessions => {
                    thing.sessions = Some(map.next_value_seed(Any(Sessions))?);
                    continue;
                }
                ThingField::State | ThingField::Other => {
                    map.next_value::<Skip>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(thing)
    }

    /// The Thing's status; `None` (a `ThingId` error only) without an ICCID.
    /// Errors come in field order, whatever the order of the keys.
    fn status(self, errors: &mut Vec<FieldError>) -> Option<ThingStatus> {
        let Some(iccid) = self.ids.iccid() else {
            errors.push("ThingId");
            return None;
        };
        let mut unparsed = Unparsed::default();
        let mut text_field =
            |value: Option<Scalar>, key: &'static str, bit: u16, errors: &mut Vec<FieldError>| {
                let before = errors.len();
                let value = text(value, key, errors);
                unparsed.mark_if(errors.len() > before, bit);
                value
            };
        let mut status = ThingStatus {
            iccid,
            thing_name: text_field(self.thing_name, "ThingName", Unparsed::THING_NAME, errors),
            imsi: text_field(self.imsi, "ActiveIMSI", Unparsed::IMSI, errors),
            msisdn: text_field(self.msisdn, "MSISDN", Unparsed::MSISDN, errors),
            provision_status: text_field(
                self.provision_status,
                "ProvisionStatus",
                Unparsed::PROVISION_STATUS,
                errors,
            ),
            ..ThingStatus::default()
        };

        let sessions = match self.sessions {
            None => Some(Vec::new()),
            Some(active) => {
                errors.extend(active.errors);
                active.sessions
            }
        };
        match sessions {
            Some(sessions) => {
                status.active_sessions = Some(u32::try_from(sessions.len()).unwrap_or(u32::MAX));
                status.uplink_throughput = sum(sessions.iter().map(|s| s.uplink));
                status.downlink_throughput = sum(sessions.iter().map(|s| s.downlink));
                unparsed.mark_if(status.uplink_throughput.is_none(), Unparsed::UPLINK);
                unparsed.mark_if(status.downlink_throughput.is_none(), Unparsed::DOWNLINK);
                match earliest(sessions.iter().map(|s| s.started)) {
                    Ok(start) => status.session_start = start,
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

        let reported = match &self.connection_status {
            None | Some(Scalar::Null) => Ok(None),
            Some(Scalar::Str(s)) if s.eq_ignore_ascii_case("CONNECTED") => Ok(Some(true)),
            Some(Scalar::Str(s)) if s.eq_ignore_ascii_case("DISCONNECTED") => Ok(Some(false)),
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

        let mut time_field =
            |value: Option<Scalar>, key: &'static str, bit: u16, errors: &mut Vec<FieldError>| {
                let before = errors.len();
                let value = timestamp_field(value, key, errors);
                unparsed.mark_if(errors.len() > before, bit);
                value
            };
        status.last_connection = time_field(
            self.last_connection,
            "LastConnectionTime",
            Unparsed::LAST_CONNECTION,
            errors,
        );
        status.last_disconnection = time_field(
            self.last_disconnection,
            "LastDisconnectionTime",
            Unparsed::LAST_DISCONNECTION,
            errors,
        );
        status.unparsed = unparsed;
        Some(status)
    }
}

struct Session {
    /// `Err` when the value was not understood, which makes the sum unknown.
    uplink: Result<f64, Unparseable>,
    downlink: Result<f64, Unparseable>,
    started: Result<Option<f64>, Unparseable>,
}

/// `ActiveSessions` as decoded, with the errors of its sessions: they count
/// only if no later duplicate `ActiveSessions` replaces this one.
struct ActiveSessions {
    /// `None` when the field itself cannot be understood.
    sessions: Option<Vec<Session>>,
    errors: Vec<FieldError>,
}

/// `ActiveSessions` as an object (one session), an array, null or missing.
struct Sessions;

impl<'de> Decode<'de> for Sessions {
    type Value = ActiveSessions;

    fn other(self) -> ActiveSessions {
        ActiveSessions {
            sessions: None,
            errors: vec!["ActiveSessions"],
        }
    }

    fn null(self) -> ActiveSessions {
        ActiveSessions {
            sessions: Some(Vec::new()),
            errors: Vec::new(),
        }
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<ActiveSessions, A::Error> {
        let fields = SessionFields::decode(map)?;
        let mut errors = Vec::new();
        let sessions = if fields.is_placeholder() {
            Vec::new()
        } else {
            vec![fields.session(&mut errors)]
        };
        Ok(ActiveSessions {
            sessions: Some(sessions),
            errors,
        })
    }

    fn array<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ActiveSessions, A::Error> {
        let mut sessions = Vec::new();
        let mut errors = Vec::new();
        while let Some(entry) = seq.next_element_seed(Any(SessionEntry))? {
            let Some(fields) = entry else {
                // An entry that is not a session makes the whole list unknown;
                // the entries after it are not looked at.
                errors.push("ActiveSessions");
                skip_elements(seq)?;
                return Ok(ActiveSessions {
                    sessions: None,
                    errors,
                });
            };
            if !fields.is_placeholder() {
                sessions.push(fields.session(&mut errors));
            }
        }
        Ok(ActiveSessions {
            sessions: Some(sessions),
            errors,
        })
    }
}

/// An entry of an `ActiveSessions` array: `None` if it is not an object.
struct SessionEntry;

impl<'de> Decode<'de> for SessionEntry {
    type Value = Option<SessionFields<'de>>;

    fn other(self) -> Self::Value {
        None
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        SessionFields::decode(map).map(Some)
    }
}

/// A session object's fields as they came.
#[derive(Default)]
struct SessionFields<'de> {
    id: Option<Scalar<'de>>,
    ip: Option<Scalar<'de>>,
    uplink: Option<Scalar<'de>>,
    downlink: Option<Scalar<'de>>,
    started: Option<Scalar<'de>>,
}

impl<'de> SessionFields<'de> {
    fn decode<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut fields = SessionFields::default();
        while let Some(field) = map.next_key()? {
            let slot = match field {
                SessionField::Id => &mut fields.id,
                SessionField::Ip => &mut fields.ip,
                SessionField::Uplink => &mut fields.uplink,
                SessionField::Downlink => &mut fields.downlink,
                SessionField::Started => &mut fields.started,
                SessionField::Other => {
                    map.next_value::<Skip>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(fields)
    }

    /// An object with no session id, no IP address and no connected time
    /// (missing, null, empty or zero) is no session: the documented schema's
    /// `ActiveSessions` object filled with `""` and `0`, or `{}`, as an API
    /// built from that schema may send for a SIM without a data session.
    /// A value that is there but garbled still makes a session.
    fn is_placeholder(&self) -> bool {
        let blank = |value: &Option<Scalar>| match value {
            None | Some(Scalar::Null) => true,
            Some(Scalar::Str(s)) => matches!(s.trim(), "" | "0" | "0.0.0.0"),
            Some(Scalar::U64(n)) => *n == 0,
            Some(Scalar::I64(n)) => *n == 0,
            Some(Scalar::F64(n)) => *n == 0.0,
            Some(Scalar::Other) => false,
        };
        blank(&self.id)
            && blank(&self.ip)
            && self
                .started
                .as_ref()
                .is_none_or(|started| timestamp(started) == Ok(None))
    }

    fn session(self, errors: &mut Vec<FieldError>) -> Session {
        let mut throughput = |value: Option<Scalar>, key: &'static str| match value {
            None | Some(Scalar::Null) => Ok(0.0),
            Some(v) => number(&v).filter(|n| *n >= 0.0).ok_or_else(|| {
                errors.push(key);
                Unparseable
            }),
        };
        let uplink = throughput(self.uplink, "UplinkThroughput");
        let downlink = throughput(self.downlink, "DownlinkThroughput");
        let started = match self.started {
            None => Ok(None),
            Some(value) => timestamp(&value).inspect_err(|_| errors.push("LastConnectedTime")),
        };
        Session {
            uplink,
            downlink,
            started,
        }
    }
}

/// A sum over sessions is unknown if any of its terms was not understood.
fn sum(values: impl Iterator<Item = Result<f64, Unparseable>>) -> Option<f64> {
    values.sum::<Result<f64, Unparseable>>().ok()
}

/// The earliest start, unknown if any start was not understood.
fn earliest(
    mut starts: impl Iterator<Item = Result<Option<f64>, Unparseable>>,
) -> Result<Option<f64>, Unparseable> {
    starts.try_fold(None, |earliest: Option<f64>, start| {
        Ok(match (earliest, start?) {
            (Some(e), Some(s)) if s.total_cmp(&e).is_lt() => Some(s),
            (None, s) => s,
            (e, _) => e,
        })
    })
}

/// The root of a `GET /things` answer: its Things if it is an array or has
/// one as `Data`.
struct ThingsRoot;

impl<'de> Decode<'de> for ThingsRoot {
    type Value = Option<ThingsPage>;

    fn other(self) -> Self::Value {
        None
    }

    fn array<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ThingsList.array(seq)
    }

    fn object<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut data = EitherCase::default();
        while let Some(field) = map.next_key()? {
            match field {
                EnvelopeField::Data => data.upper = Some(map.next_value_seed(Any(ThingsList))?),
                EnvelopeField::DataLower => {
                    data.lower = Some(map.next_value_seed(Any(ThingsList))?)
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(data.get().flatten())
    }
}

/// A listing of Things, if it is an array.
struct ThingsList;

impl<'de> Decode<'de> for ThingsList {
    type Value = Option<ThingsPage>;

    fn other(self) -> Self::Value {
        None
    }

    fn array<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut page = ThingsPage::default();
        while let Some(entry) = seq.next_element_seed(Any(ListedEntry))? {
            page.returned += 1;
            match entry {
                Listed::Iccid(iccid, inactive) => {
                    page.iccids.push(iccid);
                    page.inactive.push(inactive);
                }
                Listed::NoIccid => page.field_errors.push("ThingId"),
                Listed::NotAThing => page.field_errors.push("Data"),
            }
        }
        Ok(Some(page))
    }
}

/// An entry of a listing.
enum Listed {
    /// Its ICCID, and whether its `State` says it is inactive.
    Iccid(String, Option<bool>),
    /// An object without an ICCID that normalises.
    NoIccid,
    /// Not an object.
    NotAThing,
}

/// An entry of a listing: its ICCID, if it is an object that has one.
struct ListedEntry;

impl<'de> Decode<'de> for ListedEntry {
    type Value = Listed;

    fn other(self) -> Self::Value {
        Listed::NotAThing
    }

    fn object<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut ids = ThingIds::default();
        let mut state: Option<Scalar> = None;
        while let Some(field) = map.next_key()? {
            let slot = match field {
                ThingField::ThingId => &mut ids.thing_id,
                ThingField::ExternalUniqueId => &mut ids.external_unique_id,
                ThingField::Iccid => &mut ids.iccid,
                ThingField::IccidCamel => &mut ids.iccid_camel,
                ThingField::State => &mut state,
                _ => {
                    map.next_value::<Skip>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        let inactive = match state {
            Some(Scalar::Str(s)) if !s.trim().is_empty() => Some(is_inactive_status(&s)),
            _ => None,
        };
        Ok(ids
            .iccid()
            .map_or(Listed::NoIccid, |iccid| Listed::Iccid(iccid, inactive)))
    }
}

/// A string field; null or missing is empty. The numbering fields (IMSI,
/// MSISDN) are digits, which an API may well send as a JSON number.
fn text(value: Option<Scalar>, key: &'static str, errors: &mut Vec<FieldError>) -> String {
    match value {
        None | Some(Scalar::Null) => String::new(),
        Some(Scalar::Str(s)) => s.into_owned(),
        Some(Scalar::U64(n)) if NUMERIC_TEXT_FIELDS.contains(&key) => n.to_string(),
        Some(_) => {
            errors.push(key);
            String::new()
        }
    }
}

const NUMERIC_TEXT_FIELDS: &[&str] = &["ActiveIMSI", "MSISDN"];

fn number(value: &Scalar) -> Option<f64> {
    let n = match value {
        Scalar::U64(n) => *n as f64,
        Scalar::I64(n) => *n as f64,
        Scalar::F64(n) => *n,
        Scalar::Str(s) => s.trim().parse::<f64>().ok()?,
        Scalar::Null | Scalar::Other => return None,
    };
    n.is_finite().then_some(n)
}

fn timestamp_field(
    value: Option<Scalar>,
    key: &'static str,
    errors: &mut Vec<FieldError>,
) -> Option<f64> {
    timestamp(&value?).unwrap_or_else(|Unparseable| {
        errors.push(key);
        None
    })
}

/// A point in time as epoch seconds. Accepts RFC 3339, `YYYY-MM-DD HH:MM:SS`
/// (UTC), and epoch seconds or milliseconds as numbers or numeric strings.
/// `Ok(None)` is unknown (null, empty, or zero, which the API uses for never).
pub fn parse_timestamp(value: &Value) -> Result<Option<f64>, Unparseable> {
    timestamp(&Scalar::from(value))
}

fn timestamp(value: &Scalar) -> Result<Option<f64>, Unparseable> {
    match value {
        Scalar::Null => Ok(None),
        Scalar::U64(_) | Scalar::I64(_) | Scalar::F64(_) => {
            epoch(number(value).ok_or(Unparseable)?)
        }
        Scalar::Str(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if let Some(millis) = plain_datetime(s) {
                return Ok(date(millis));
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
        Scalar::Other => Err(Unparseable),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (or with a `T`), the API's usual form, as epoch
/// milliseconds, read without chrono's much slower format parser. Anything
/// else, a leap second or a field out of range is `None`, left to that parser.
fn plain_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b' ' | b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let digits = |at: std::ops::Range<usize>| {
        b[at].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let second = digits(17..19).filter(|s| *s < 60)?;
    let year = i32::try_from(digits(0..4)?).ok()?;
    let day = NaiveDate::from_ymd_opt(year, digits(5..7)?, digits(8..10)?)?;
    let time = day.and_hms_opt(digits(11..13)?, digits(14..16)?, second)?;
    Some(time.and_utc().timestamp_millis())
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
    fn a_placeholder_session_is_not_a_session() {
        // The documented schema's session object, filled with its empty values.
        let body = include_str!("../../tests/fixtures/status-schema-placeholder-session.json");
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
            iccid(
                json!({"ThingId": "ThingId_ICCID_  ", "ExternalUniqueId": "8988000000000000002"})
            ),
            id("8988000000000000002")
        );
        assert_eq!(
            iccid(
                json!({"ThingId": 8988, "ExternalUniqueId": " ", "ICCID": "8988000000000000003"})
            ),
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
}
