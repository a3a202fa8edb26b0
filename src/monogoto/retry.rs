//! When to try a failed request again: exponential backoff with full jitter,
//! and the API's own `Retry-After` and `X-RateLimit-Reset` answers.

use std::time::{Duration, SystemTime};

use chrono::DateTime;

/// The first retry waits up to this long; each further one doubles it.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// No single backoff waits longer than this.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A rate-limit window we know nothing of is assumed to end this far ahead.
pub(crate) const DEFAULT_RATE_LIMIT_WINDOW: Duration = Duration::from_secs(60);

/// Full jitter: uniformly random between zero and the exponential ceiling,
/// so that clients failing together do not retry together.
pub(crate) fn backoff(retry: u32, random_unit: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(random_unit.clamp(0.0, 1.0))
}

/// The longest pause the API can impose on every request of the process. A
/// server (or a proxy in front of it) that asks for more, by mistake or by
/// reading its own clock wrong, would otherwise stop polling for days.
pub const MAX_SERVER_PAUSE: Duration = Duration::from_secs(15 * 60);
/// An `X-RateLimit-Reset` above this is epoch milliseconds (10^12 ms is 2001;
/// as epoch seconds, the year 33658).
const RESET_MILLIS_ABOVE: f64 = 1e12;
/// An `X-RateLimit-Reset` above this is epoch seconds (10^9 s is 2001; as a
/// delta, 31 years).
const RESET_EPOCH_ABOVE: f64 = 1e9;

/// A pause of `seconds` (any finite or infinite value), at most [`MAX_SERVER_PAUSE`].
/// Compared in floating point before a `Duration` is made of it, so a huge
/// value cannot overflow one.
fn capped(seconds: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        Duration::ZERO
    } else if seconds >= MAX_SERVER_PAUSE.as_secs_f64() {
        MAX_SERVER_PAUSE
    } else {
        Duration::from_secs_f64(seconds)
    }
}

/// The pause until the Unix time `epoch_seconds`, capped; zero if it has passed.
fn until(epoch_seconds: f64, now: SystemTime) -> Duration {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    capped(epoch_seconds - now)
}

/// `Retry-After` as delta-seconds or an HTTP date, capped at [`MAX_SERVER_PAUSE`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits too many for a u64 still ask for a (very) long pause.
        return Some(value.parse::<u64>().map_or(MAX_SERVER_PAUSE, |seconds| {
            Duration::from_secs(seconds).min(MAX_SERVER_PAUSE)
        }));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(until(at.timestamp_millis() as f64 / 1000.0, now))
}

/// `X-RateLimit-Reset`, capped at [`MAX_SERVER_PAUSE`]. APIs send the seconds
/// left in the window, the Unix time at which it resets, or that time in
/// milliseconds; each is read by its size, as only one of them is plausible.
pub fn parse_rate_limit_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let n = value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)?;
    Some(if n > RESET_MILLIS_ABOVE {
        until(n / 1000.0, now)
    } else if n > RESET_EPOCH_ABOVE {
        until(n, now)
    } else {
        capped(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_exponential_and_capped() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(3, 0.0), Duration::ZERO);
        assert_eq!(backoff(10, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX, 1.0), BACKOFF_CAP);
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        // 2015-10-21T07:28:00Z is 1445412480.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "past dates mean now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn rate_limit_reset_as_delta_or_epoch() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_rate_limit_reset("30", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_rate_limit_reset("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_rate_limit_reset("1700000045", now),
            Some(Duration::from_secs(45))
        );
        assert_eq!(parse_rate_limit_reset("x", now), None);
    }

    #[test]
    fn rate_limit_reset_in_epoch_milliseconds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // Read as seconds, this was a pause of 57,000 years.
        assert_eq!(
            parse_rate_limit_reset("1700000045000", now),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            parse_rate_limit_reset("1700000000500", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_rate_limit_reset("1699999999000", now),
            Some(Duration::ZERO),
            "past"
        );
    }

    #[test]
    fn server_pauses_are_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for huge in [
            "18446744073709551615",
            "99999999999999999999999999",
            "86400",
            "901",
        ] {
            assert_eq!(
                parse_retry_after(huge, now),
                Some(MAX_SERVER_PAUSE),
                "{huge}"
            );
        }
        assert_eq!(
            parse_retry_after("900", now),
            Some(Duration::from_secs(900))
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_SERVER_PAUSE)
        );
        for huge in [
            "1e300",
            "1.7976931348623157e308",
            "86400",
            "1800000000",
            "99999999999",
            "1800000000000",
        ] {
            assert_eq!(
                parse_rate_limit_reset(huge, now),
                Some(MAX_SERVER_PAUSE),
                "{huge}"
            );
        }
    }

    #[test]
    fn nonsense_is_ignored() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for bad in [
            "", " ", "-1", "-1e300", "NaN", "nan", "inf", "-inf", "1e999", "0x10", "soon",
        ] {
            assert_eq!(parse_rate_limit_reset(bad, now), None, "{bad:?}");
        }
        for bad in [
            "",
            "-1",
            "+5",
            "1.5",
            "NaN",
            "inf",
            "1e3",
            "soon",
            "Wed, 32 Oct 2015",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        // A clock before 1970 (or a date before it) is no pause, not a panic.
        assert_eq!(
            parse_rate_limit_reset(
                "1700000045",
                SystemTime::UNIX_EPOCH - Duration::from_secs(5)
            ),
            Some(MAX_SERVER_PAUSE)
        );
        assert_eq!(
            parse_retry_after("Fri, 01 Jan 1960 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }
}
