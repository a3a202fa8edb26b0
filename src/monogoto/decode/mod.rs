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
//!
//! The entry points are here with the status envelope; the JSON machinery is
//! in `visitor`, a Thing's fields in `thing`, its sessions in `session`, the
//! `GET /things` listing in `listing` and timestamps in `time`.

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess};
use serde_json::Value;

use super::error::shortened;
use super::model::{DecodeError, StatusPage, ThingsPage, field};
use listing::ThingsRoot;
use thing::ThingFields;
use visitor::{Any, Decode, FieldName, Skip, field_names};

mod listing;
mod session;
#[cfg(test)]
mod tests;
mod thing;
mod time;
mod visitor;

#[cfg(test)]
use time::parse_timestamp;

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
            message: shortened(&message),
        });
    }
    envelope.data.flatten().ok_or(DecodeError::NoData)
}

/// Decodes a `GET /things` body (a bare array; an enveloped `Data` array is
/// accepted too) into the ICCIDs it lists, in order.
pub(crate) fn parse_things_listing(body: &[u8]) -> Result<ThingsPage, DecodeError> {
    decode(body, Any(ThingsRoot))?.ok_or(DecodeError::NotAList)
}

/// `parse_things_listing` without its errors: the number of entries and the ICCIDs.
pub fn parse_things_page(body: &[u8]) -> Result<(usize, Vec<String>), DecodeError> {
    parse_things_listing(body).map(|page| (page.returned, page.iccids))
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

field_names!(EnvelopeField {
    Success = "Success",
    SuccessLower = "success",
    Message = "Message",
    MessageLower = "message",
    Data = field::DATA,
    DataLower = "data",
});

field_names!(ThingField {
    ThingId = field::THING_ID,
    ExternalUniqueId = "ExternalUniqueId",
    Iccid = "ICCID",
    IccidCamel = "Iccid",
    ThingName = field::THING_NAME,
    ActiveImsi = field::ACTIVE_IMSI,
    Msisdn = field::MSISDN,
    ProvisionStatus = field::PROVISION_STATUS,
    ActiveSessions = field::ACTIVE_SESSIONS,
    ConnectionStatus = field::CONNECTION_STATUS,
    LastConnectionTime = field::LAST_CONNECTION_TIME,
    LastDisconnectionTime = field::LAST_DISCONNECTION_TIME,
    State = "State",
});

field_names!(SessionField {
    Id = "ActiveSessionId",
    Ip = "IPAddress",
    Uplink = field::UPLINK_THROUGHPUT,
    Downlink = field::DOWNLINK_THROUGHPUT,
    Started = field::LAST_CONNECTED_TIME,
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
        self.0.field_errors.push(field::DATA);
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let thing = ThingFields::decode(map)?;
        if let Some(status) = thing.status(&mut self.0.field_errors) {
            self.0.things.push(status);
        }
        Ok(())
    }
}
