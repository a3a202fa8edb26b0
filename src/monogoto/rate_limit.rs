//! A client-side rate limit shared by every request of the process, so the
//! exporter stays under the account's API limit whatever its concurrency.
//!
//! It is a GCRA pacer: a small burst, then one request per emission interval,
//! chosen so that no window of one period ever holds more than the limit. The
//! API can also pause it (429 `Retry-After`, `X-RateLimit-Remaining: 0`).

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// `N/period`, e.g. `60/min`; `None` inside [`RateLimitSpec`] means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub period: Duration,
}

impl RateLimit {
    /// Requests let through at once before pacing starts: a tenth of the
    /// limit, between 1 and 10.
    pub fn burst(&self) -> u32 {
        (self.requests / 10).clamp(1, 10).min(self.requests)
    }

    /// Time between paced requests: the burst plus the paced requests of any
    /// one period stay within the limit.
    pub fn emission_interval(&self) -> Duration {
        // Rounded up: a nanosecond short would let one request too many into a period.
        let slots = u128::from(self.requests - self.burst() + 1);
        let nanos = self.period.as_nanos().div_ceil(slots);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How long `requests` requests take at best under this limit.
    pub fn time_for(&self, requests: usize) -> Duration {
        let paced = (requests as u64).saturating_sub(u64::from(self.burst()));
        self.emission_interval()
            .saturating_mul(u32::try_from(paced).unwrap_or(u32::MAX))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s".to_string(),
            60 => "min".to_string(),
            3600 => "h".to_string(),
            _ => humantime::format_duration(self.period).to_string(),
        };
        write!(f, "{}/{unit}", self.requests)
    }
}

/// The `--monogoto.rate-limit` value: `60/min`, `5/s`, `1000/h`, or `0` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSpec(pub Option<RateLimit>);

impl FromStr for RateLimitSpec {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const WHY: &str =
            "must be REQUESTS/PERIOD such as \"60/min\", \"5/s\" or \"1000/h\", or 0 for no limit";
        let s = s.trim();
        if s == "0" {
            return Ok(RateLimitSpec(None));
        }
        let (count, unit) = s.split_once('/').ok_or(WHY)?;
        let requests: u32 = count.trim().parse().map_err(|_| WHY)?;
        let unit = unit.trim();
        let period = match unit {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|_| WHY)?,
        };
        if period.is_zero() {
            return Err(WHY);
        }
        if requests == 0 {
            return Ok(RateLimitSpec(None));
        }
        Ok(RateLimitSpec(Some(RateLimit { requests, period })))
    }
}

/// Paces requests; cheap to share behind an `Arc`.
pub struct Limiter {
    limit: Option<RateLimit>,
    state: Mutex<State>,
}

struct State {
    /// GCRA's theoretical arrival time of the next request.
    next: Instant,
    /// The API asked us to hold off until then.
    paused_until: Option<Instant>,
}

/// The next free slot is after the caller's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastDeadline;

impl Limiter {
    pub fn new(limit: Option<RateLimit>) -> Self {
        Limiter {
            limit,
            state: Mutex::new(State {
                next: Instant::now(),
                paused_until: None,
            }),
        }
    }

    pub fn limit(&self) -> Option<RateLimit> {
        self.limit
    }

    /// Waits for a slot to send one request. A slot later than `deadline` is
    /// not taken (so a request that could not be sent in time does not use up
    /// the budget of the next refresh).
    pub async fn acquire(&self, deadline: Option<Instant>) -> Result<(), PastDeadline> {
        let slot = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let mut slot = now;
            if let Some(until) = state.paused_until {
                if until > now {
                    slot = until;
                } else {
                    state.paused_until = None;
                }
            }
            if let Some(limit) = self.limit {
                let tolerance = limit.emission_interval() * (limit.burst() - 1);
                let earliest = state.next.checked_sub(tolerance).unwrap_or(state.next);
                slot = slot.max(earliest);
            }
            if deadline.is_some_and(|d| slot > d) {
                return Err(PastDeadline);
            }
            if let Some(limit) = self.limit {
                state.next = state.next.max(slot) + limit.emission_interval();
            }
            slot
        };
        tokio::time::sleep_until(slot).await;
        Ok(())
    }

    /// Holds every request back until `until` (the API said its window is spent).
    pub fn pause_until(&self, until: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(s: &str) -> RateLimit {
        s.parse::<RateLimitSpec>()
            .expect("valid")
            .0
            .expect("limited")
    }

    #[test]
    fn parses_specs() {
        assert_eq!(
            limit("60/min"),
            RateLimit {
                requests: 60,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(
            limit("5/s"),
            RateLimit {
                requests: 5,
                period: Duration::from_secs(1)
            }
        );
        assert_eq!(
            limit("1000/h"),
            RateLimit {
                requests: 1000,
                period: Duration::from_secs(3600)
            }
        );
        assert_eq!(
            limit("10/30s"),
            RateLimit {
                requests: 10,
                period: Duration::from_secs(30)
            }
        );
        assert_eq!("0".parse::<RateLimitSpec>(), Ok(RateLimitSpec(None)));
        for bad in ["", "60", "x/min", "60/fortnight", "-1/s", "5/0s"] {
            assert!(bad.parse::<RateLimitSpec>().is_err(), "{bad}");
        }
        assert_eq!(limit("60/min").to_string(), "60/min");
    }

    #[test]
    fn no_window_holds_more_than_the_limit() {
        for spec in ["60/min", "5/s", "1/s", "1000/h", "7/min"] {
            let l = limit(spec);
            // Burst at t=0, then one per interval: count the requests in the first period.
            let paced_in_period = (l.period.as_nanos() - 1) / l.emission_interval().as_nanos();
            assert!(
                u128::from(l.burst()) + paced_in_period <= u128::from(l.requests),
                "{spec}"
            );
        }
        assert_eq!(limit("60/min").burst(), 6);
        assert_eq!(limit("5/s").burst(), 1);
        assert_eq!(limit("5/s").emission_interval(), Duration::from_millis(200));
        assert_eq!(limit("5/s").time_for(11), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn paces_after_the_burst() {
        let limiter = Limiter::new(Some(limit("5/s")));
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire(None).await.expect("no deadline");
        }
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "1 at once, then every 200 ms"
        );

        let limiter = Limiter::new(Some(limit("60/min")));
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire(None).await.expect("no deadline");
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "a burst of 6");
        limiter.acquire(None).await.expect("no deadline");
        assert!(start.elapsed() > Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_past_the_deadline_is_refused_and_not_taken() {
        let limiter = Limiter::new(Some(limit("1/s")));
        limiter.acquire(None).await.expect("first at once");
        let deadline = Instant::now() + Duration::from_millis(500);
        assert_eq!(limiter.acquire(Some(deadline)).await, Err(PastDeadline));
        let start = Instant::now();
        limiter.acquire(None).await.expect("no deadline");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "the refused slot was not used up"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everyone() {
        let limiter = Limiter::new(None);
        let start = Instant::now();
        limiter.pause_until(start + Duration::from_secs(3));
        limiter.pause_until(start + Duration::from_secs(1));
        limiter.acquire(None).await.expect("no deadline");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(3),
            "the longer pause wins"
        );
        limiter.acquire(None).await.expect("no deadline");
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
