//! When to try a failed request again: exponential backoff with full jitter,
//! and the API's own `Retry-After` and `X-RateLimit-Reset` answers.

use std::time::{Duration, SystemTime};

use chrono::DateTime;

/// The first retry waits up to this long; each further one doubles it.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// No single backoff waits longer than this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A rate-limit window we know nothing of is assumed to end this far ahead.
pub const DEFAULT_RATE_LIMIT_WINDOW: Duration = Duration::from_secs(60);

/// Full jitter: uniformly random between zero and the exponential ceiling,
/// so that clients failing together do not retry together.
pub fn backoff(retry: u32, random_unit: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(random_unit.clamp(0.0, 1.0))
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or_default())
}

/// `X-RateLimit-Reset`: APIs send either the seconds left in the window or
/// the Unix time at which it resets; values that can only be a Unix time are read as one.
pub fn parse_rate_limit_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let seconds = value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)?;
    if seconds > 1e9 {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds);
        return Some(at.duration_since(now).unwrap_or_default());
    }
    Some(Duration::from_secs_f64(seconds))
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
            parse_rate_limit_reset("1700000045", now),
            Some(Duration::from_secs(45))
        );
        assert_eq!(parse_rate_limit_reset("x", now), None);
    }
}
