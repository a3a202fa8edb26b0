//! A client-side rate limit shared by every request of the process, so the
//! exporter stays under the account's API limit whatever its concurrency.
//!
//! It is a sliding-window log: a request may go once fewer than N requests
//! went in the last period. Up to N go at once, and no window of one period
//! ever holds more than N, however the window is placed. The API can also
//! pause it (429 `Retry-After`, `X-RateLimit-Remaining: 0`).

use std::collections::VecDeque;
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
    /// How long `requests` requests take at best under this limit: the
    /// first N at once, then N more each period.
    pub fn time_for(&self, requests: usize) -> Duration {
        let periods = requests.saturating_sub(1) / self.requests as usize;
        self.period
            .saturating_mul(u32::try_from(periods).unwrap_or(u32::MAX))
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
    /// The send times of the last N requests (N = the limit), oldest first.
    sent: VecDeque<Instant>,
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
                sent: VecDeque::new(),
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
            if let Some(limit) = self.limit
                && state.sent.len() >= limit.requests as usize
                && let Some(&oldest) = state.sent.front()
            {
                // The N-th last request must have left the window.
                slot = slot.max(oldest + limit.period);
            }
            if deadline.is_some_and(|d| slot > d) {
                return Err(PastDeadline);
            }
            if let Some(limit) = self.limit {
                state.sent.push_back(slot);
                while state.sent.len() > limit.requests as usize {
                    state.sent.pop_front();
                }
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

    #[tokio::test(start_paused = true)]
    async fn no_window_holds_more_than_the_limit() {
        for spec in ["5/s", "7/s", "1/s"] {
            let l = limit(spec);
            let limiter = Limiter::new(Some(l));
            let start = Instant::now();
            let mut times = Vec::new();
            for _ in 0..40 {
                limiter.acquire(None).await.expect("no deadline");
                times.push(start.elapsed());
            }
            for (i, t) in times.iter().enumerate() {
                let in_window = times[i..].iter().filter(|u| **u < *t + l.period).count();
                assert!(
                    in_window <= l.requests as usize,
                    "{spec}: {in_window} in the window from {t:?}"
                );
            }
        }
        assert_eq!(limit("5/s").time_for(5), Duration::ZERO);
        assert_eq!(limit("5/s").time_for(11), Duration::from_secs(2));
        assert_eq!(limit("60/min").time_for(2000), Duration::from_secs(33 * 60));
    }

    #[tokio::test(start_paused = true)]
    async fn up_to_the_limit_at_once_then_paced() {
        let limiter = Limiter::new(Some(limit("5/s")));
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire(None).await.expect("no deadline");
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "five at once");
        limiter.acquire(None).await.expect("no deadline");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "the sixth when the first leaves the window"
        );
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
