//! Timestamps in every form the API uses: RFC 3339, `YYYY-MM-DD HH:MM:SS`,
//! epoch seconds or milliseconds as numbers or strings; zero and dates at or
//! before 1970 mean never.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
#[cfg(test)]
use serde_json::Value;

use super::visitor::{Scalar, number};
use crate::monogoto::model::{FieldError, Unparseable};

/// Epoch values above this are milliseconds (10^11 s is the year 5138).
const MILLIS_THRESHOLD: f64 = 1e11;

pub(super) fn timestamp_field(
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
#[cfg(test)]
pub(super) fn parse_timestamp(value: &Value) -> Result<Option<f64>, Unparseable> {
    timestamp(&Scalar::from(value))
}

pub(super) fn timestamp(value: &Scalar) -> Result<Option<f64>, Unparseable> {
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
