//! `ActiveSessions`: an object, an array, null or missing, and placeholder
//! sessions that are no session.

use serde::de::{MapAccess, SeqAccess};

use super::SessionField;
use super::time::timestamp;
use super::visitor::{Any, Decode, Scalar, Skip, number, skip_elements};
use crate::monogoto::model::{FieldError, Unparseable, field};

pub(super) struct Session {
    /// `Err` when the value was not understood, which makes the sum unknown.
    pub(super) uplink: Result<f64, Unparseable>,
    pub(super) downlink: Result<f64, Unparseable>,
    pub(super) started: Result<Option<f64>, Unparseable>,
}

/// `ActiveSessions` as decoded, with the errors of its sessions: they count
/// only if no later duplicate `ActiveSessions` replaces this one.
pub(super) struct ActiveSessions {
    /// `None` when the field itself cannot be understood.
    pub(super) sessions: Option<Vec<Session>>,
    pub(super) errors: Vec<FieldError>,
}

/// `ActiveSessions` as an object (one session), an array, null or missing.
pub(super) struct Sessions;

impl<'de> Decode<'de> for Sessions {
    type Value = ActiveSessions;

    fn other(self) -> ActiveSessions {
        ActiveSessions {
            sessions: None,
            errors: vec![field::ACTIVE_SESSIONS],
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
                errors.push(field::ACTIVE_SESSIONS);
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
        let uplink = throughput(self.uplink, field::UPLINK_THROUGHPUT);
        let downlink = throughput(self.downlink, field::DOWNLINK_THROUGHPUT);
        let started = match self.started {
            None => Ok(None),
            Some(value) => {
                timestamp(&value).inspect_err(|_| errors.push(field::LAST_CONNECTED_TIME))
            }
        };
        Session {
            uplink,
            downlink,
            started,
        }
    }
}

/// A sum over sessions is unknown if any of its terms was not understood.
pub(super) fn sum(values: impl Iterator<Item = Result<f64, Unparseable>>) -> Option<f64> {
    values.sum::<Result<f64, Unparseable>>().ok()
}

/// The earliest start, unknown if any start was not understood.
pub(super) fn earliest(
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
