//! The `GET /things` listing: a bare array or an enveloped `Data` array.

use serde::de::{MapAccess, SeqAccess};

use super::thing::ThingIds;
use super::visitor::{Any, Decode, Scalar, Skip};
use super::{EitherCase, EnvelopeField, ThingField};
use crate::monogoto::model::{ThingsPage, field, is_inactive_status};

/// The root of a `GET /things` answer: its Things if it is an array or has
/// one as `Data`.
pub(super) struct ThingsRoot;

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
                Listed::NoIccid => page.field_errors.push(field::THING_ID),
                Listed::NotAThing => page.field_errors.push(field::DATA),
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
