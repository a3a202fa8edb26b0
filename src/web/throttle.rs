//! The web configuration's `rate_limit`: how many requests the server
//! answers, whoever sends them, checked before basic auth (see
//! [`super::guard`]). Not the budget of requests to the Monogoto API.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `rate_limit`: a token bucket of `burst` requests refilled at one per
/// `interval`, as Go's `rate.Limiter` that exporter-toolkit uses.
pub(crate) struct Throttle {
    interval: Duration,
    burst: u32,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Throttle {
    pub(crate) fn new(interval: Duration, burst: u32) -> Self {
        Throttle {
            interval,
            burst,
            state: Mutex::new(Bucket {
                tokens: f64::from(burst),
                at: Instant::now(),
            }),
        }
    }

    /// Only the tests read it back.
    #[cfg(test)]
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    pub(crate) fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refill =
            now.saturating_duration_since(bucket.at).as_secs_f64() / self.interval.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(f64::from(self.burst));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("interval", &self.interval)
            .field("burst", &self.burst)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket() {
        let throttle = Throttle::new(Duration::from_secs(1), 2);
        let t0 = Instant::now();
        assert!(throttle.allow_at(t0));
        assert!(throttle.allow_at(t0));
        assert!(!throttle.allow_at(t0), "burst spent");
        assert!(!throttle.allow_at(t0 + Duration::from_millis(500)));
        assert!(
            throttle.allow_at(t0 + Duration::from_millis(1000)),
            "refilled one"
        );
        assert!(!throttle.allow_at(t0 + Duration::from_millis(1000)));
        assert!(throttle.allow_at(t0 + Duration::from_secs(10)));
        assert!(throttle.allow_at(t0 + Duration::from_secs(10)));
        assert!(
            !throttle.allow_at(t0 + Duration::from_secs(10)),
            "capped at burst"
        );
    }
}
