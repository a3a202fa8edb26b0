//! A Thing object of a status answer: its fields as they came, then the
//! [`ThingStatus`] they mean, with the errors of the values not understood.

use serde::de::MapAccess;

use super::ThingField;
use super::session::{ActiveSessions, Sessions, earliest, sum};
use super::time::timestamp_field;
use super::visitor::{Any, Scalar, Skip};
use crate::iccid;
use crate::monogoto::model::{
    FieldError, THING_ID_PREFIX, ThingStatus, Unparseable, Unparsed, field,
};

/// The fields that carry a Thing's ICCID.
#[derive(Default)]
pub(super) struct ThingIds<'de> {
    pub(super) thing_id: Option<Scalar<'de>>,
    pub(super) external_unique_id: Option<Scalar<'de>>,
    pub(super) iccid: Option<Scalar<'de>>,
    pub(super) iccid_camel: Option<Scalar<'de>>,
}

impl ThingIds<'_> {
    /// The ICCID in its canonical form ([`iccid::normalize`], the one the
    /// configuration uses): from `ThingId_ICCID_<iccid>`, else from the
    /// fields that carry it bare; the first that is an ICCID.
    pub(super) fn iccid(&self) -> Option<String> {
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
pub(super) struct ThingFields<'de> {
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
    pub(super) fn decode<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
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
    pub(super) fn status(self, errors: &mut Vec<FieldError>) -> Option<ThingStatus> {
        let Some(iccid) = self.ids.iccid() else {
            errors.push(field::THING_ID);
            return None;
        };
        let mut unparsed = Unparsed::default();
        let mut text_field = |value, key, bit, errors: &mut Vec<FieldError>| {
            marked(text, value, (key, bit), &mut unparsed, errors)
        };
        let mut status = ThingStatus {
            iccid,
            thing_name: text_field(
                self.thing_name,
                field::THING_NAME,
                Unparsed::THING_NAME,
                errors,
            ),
            imsi: text_field(self.imsi, field::ACTIVE_IMSI, Unparsed::IMSI, errors),
            msisdn: text_field(self.msisdn, field::MSISDN, Unparsed::MSISDN, errors),
            provision_status: text_field(
                self.provision_status,
                field::PROVISION_STATUS,
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
                errors.push(field::CONNECTION_STATUS);
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

        let mut time_field = |value, key, bit, errors: &mut Vec<FieldError>| {
            marked(timestamp_field, value, (key, bit), &mut unparsed, errors)
        };
        status.last_connection = time_field(
            self.last_connection,
            field::LAST_CONNECTION_TIME,
            Unparsed::LAST_CONNECTION,
            errors,
        );
        status.last_disconnection = time_field(
            self.last_disconnection,
            field::LAST_DISCONNECTION_TIME,
            Unparsed::LAST_DISCONNECTION,
            errors,
        );
        status.unparsed = unparsed;
        Some(status)
    }
}

/// Field `key` decoded by `decode`; marked unparsed (`bit`) if that failed.
fn marked<T>(
    decode: impl FnOnce(Option<Scalar>, &'static str, &mut Vec<FieldError>) -> T,
    value: Option<Scalar>,
    (key, bit): (&'static str, u16),
    unparsed: &mut Unparsed,
    errors: &mut Vec<FieldError>,
) -> T {
    let before = errors.len();
    let value = decode(value, key, errors);
    unparsed.mark_if(errors.len() > before, bit);
    value
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

const NUMERIC_TEXT_FIELDS: &[&str] = &[field::ACTIVE_IMSI, field::MSISDN];
