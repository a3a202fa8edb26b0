//! The simulator's request budget, enforced as Monogoto documents its own: a
//! request over any window is answered 429 with `Retry-After` and the
//! `X-RateLimit-*` headers; every answer within the budget carries the
//! headers too. And a log of when each Thing was answered, so that tests and
//! the benchmark can measure how fresh the exporter keeps every SIM.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Sliding windows of `(requests, period)`, all enforced at once, counted
/// when a request arrives.
pub(super) struct ServerBudget {
    windows: Mutex<Vec<Window>>,
}

struct Window {
    requests: u32,
    period: Duration,
    /// Arrival times of the requests still in the window, oldest first.
    arrived: VecDeque<Instant>,
}

/// What a window says of the budget after a request: the tightest one's figures.
struct Standing {
    limit: u32,
    remaining: u32,
    reset: Duration,
}

impl ServerBudget {
    pub(super) fn new(windows: &[(u32, Duration)]) -> Option<ServerBudget> {
        let windows: Vec<Window> = windows
            .iter()
            .filter(|(requests, period)| *requests > 0 && !period.is_zero())
            .map(|&(requests, period)| Window {
                requests,
                period,
                arrived: VecDeque::new(),
            })
            .collect();
        (!windows.is_empty()).then(|| ServerBudget {
            windows: Mutex::new(windows),
        })
    }

    /// Admits a request arriving at `now` (Ok, with the headers its answer
    /// carries) or refuses it with a 429. Refused requests do not count.
    pub(super) fn admit(&self, now: Instant) -> Result<HeaderMap, Box<Response>> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for w in windows.iter_mut() {
            while w
                .arrived
                .front()
                .is_some_and(|t| now.duration_since(*t) >= w.period)
            {
                w.arrived.pop_front();
            }
        }
        // Every full window must have a slot free: wait for the latest of them.
        let wait = windows
            .iter()
            .filter(|w| w.arrived.len() >= w.requests as usize)
            .filter_map(|w| w.arrived.front().map(|t| w.period - now.duration_since(*t)))
            .max();
        if let Some(wait) = wait {
            let standing = standing(&windows, now);
            return Err(Box::new(too_many_requests(wait, &standing)));
        }
        for w in windows.iter_mut() {
            w.arrived.push_back(now);
        }
        Ok(headers(&standing(&windows, now)))
    }
}

/// The window with the fewest requests left speaks for the budget.
fn standing(windows: &[Window], now: Instant) -> Standing {
    windows
        .iter()
        .map(|w| Standing {
            limit: w.requests,
            remaining: w.requests.saturating_sub(w.arrived.len() as u32),
            reset: w.arrived.front().map_or(Duration::ZERO, |t| {
                w.period.saturating_sub(now.duration_since(*t))
            }),
        })
        .min_by_key(|s| (s.remaining, std::cmp::Reverse(s.reset)))
        .unwrap_or(Standing {
            limit: 0,
            remaining: 0,
            reset: Duration::ZERO,
        })
}

/// Whole seconds, rounded up: a client that waits this long finds the slot free.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn headers(standing: &Standing) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("x-ratelimit-limit"),
        HeaderValue::from(standing.limit),
    );
    headers.insert(
        HeaderName::from_static("x-ratelimit-remaining"),
        HeaderValue::from(standing.remaining),
    );
    // Delta seconds until the window's oldest request leaves it.
    headers.insert(
        HeaderName::from_static("x-ratelimit-reset"),
        HeaderValue::from(ceil_secs(standing.reset)),
    );
    headers
}

fn too_many_requests(wait: Duration, standing: &Standing) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({"Success": false, "Message": "Too Many Requests"})),
    )
        .into_response();
    let h = response.headers_mut();
    h.extend(headers(&Standing {
        remaining: 0,
        reset: wait,
        ..*standing
    }));
    h.insert(header::RETRY_AFTER, HeaderValue::from(ceil_secs(wait)));
    response
}

/// When each Thing (by fleet index) was answered.
pub(super) struct PollLog {
    things: Mutex<Vec<Polls>>,
}

#[derive(Clone, Copy, Default)]
struct Polls {
    count: u64,
    last: Option<Instant>,
    longest_gap: Duration,
}

/// How often the Things of the fleet were answered since the log was reset.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PollSummary {
    pub things: usize,
    /// Things answered at least once.
    pub polled: usize,
    /// Things answered at least twice, whose gaps are measured.
    pub measured: usize,
    /// The longest time any Thing went between two answers, in seconds: the
    /// worst age its data reached.
    pub worst_gap_seconds: f64,
    /// The median over Things of each one's longest gap, in seconds.
    pub(crate) median_gap_seconds: f64,
    /// The 99th percentile of the same.
    pub(crate) p99_gap_seconds: f64,
    /// The longest gap among the Things whose index is in the set asked for.
    pub(crate) worst_gap_seconds_of_selection: Option<f64>,
}

impl PollLog {
    pub(super) fn new(things: usize) -> PollLog {
        PollLog {
            things: Mutex::new(vec![Polls::default(); things]),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Polls>> {
        self.things.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn answered(&self, indexes: impl IntoIterator<Item = usize>, now: Instant) {
        let mut things = self.lock();
        for i in indexes {
            if let Some(p) = things.get_mut(i) {
                if let Some(last) = p.last {
                    p.longest_gap = p.longest_gap.max(now.duration_since(last));
                }
                p.last = Some(now);
                p.count += 1;
            }
        }
    }

    pub(super) fn reset(&self) {
        self.lock().fill(Polls::default());
    }

    /// How many times Thing `index` was answered, and its longest gap.
    pub(super) fn of(&self, index: usize) -> Option<(u64, Duration)> {
        self.lock().get(index).map(|p| (p.count, p.longest_gap))
    }

    /// The summary, with the worst gap of `selection` (fleet indexes) apart.
    /// Gaps run up to `now`, so a Thing no longer polled shows it.
    pub(super) fn summary(
        &self,
        now: Instant,
        selection: Option<&dyn Fn(usize) -> bool>,
    ) -> PollSummary {
        let things = self.lock();
        let mut gaps: Vec<f64> = Vec::with_capacity(things.len());
        let mut polled = 0;
        let mut selected: Option<f64> = None;
        for (i, p) in things.iter().enumerate() {
            let Some(last) = p.last else { continue };
            polled += 1;
            if p.count < 2 {
                continue;
            }
            let gap = p.longest_gap.max(now.duration_since(last)).as_secs_f64();
            gaps.push(gap);
            if selection.is_some_and(|s| s(i)) {
                selected = Some(selected.map_or(gap, |g: f64| g.max(gap)));
            }
        }
        gaps.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if gaps.is_empty() {
                0.0
            } else {
                gaps[((gaps.len() - 1) as f64 * q).round() as usize]
            }
        };
        PollSummary {
            things: things.len(),
            polled,
            measured: gaps.len(),
            worst_gap_seconds: gaps.last().copied().unwrap_or(0.0),
            median_gap_seconds: at(0.5),
            p99_gap_seconds: at(0.99),
            worst_gap_seconds_of_selection: selected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_window_admits_more_than_its_count() {
        let budget =
            ServerBudget::new(&[(4, Duration::from_secs(1)), (20, Duration::from_secs(10))])
                .expect("limited");
        let t0 = Instant::now();
        let mut admitted = Vec::new();
        for ms in (0..30_000).step_by(50) {
            let now = t0 + Duration::from_millis(ms);
            if budget.admit(now).is_ok() {
                admitted.push(now);
            }
        }
        for (i, t) in admitted.iter().enumerate() {
            let in_1s = admitted[i..]
                .iter()
                .filter(|u| u.duration_since(*t) < Duration::from_secs(1))
                .count();
            let in_10s = admitted[i..]
                .iter()
                .filter(|u| u.duration_since(*t) < Duration::from_secs(10))
                .count();
            assert!(
                in_1s <= 4 && in_10s <= 20,
                "{in_1s} in 1 s, {in_10s} in 10 s"
            );
        }
        assert_eq!(admitted.len(), 60, "2 a second sustained over 30 s");
    }

    #[test]
    fn a_refusal_says_when_and_what() {
        let budget = ServerBudget::new(&[(2, Duration::from_secs(10))]).expect("limited");
        let t0 = Instant::now();
        let first = budget.admit(t0).expect("within");
        assert_eq!(first["x-ratelimit-limit"], "2");
        assert_eq!(first["x-ratelimit-remaining"], "1");
        assert_eq!(first["x-ratelimit-reset"], "10");
        budget.admit(t0 + Duration::from_secs(1)).expect("within");
        let refused = budget
            .admit(t0 + Duration::from_millis(2500))
            .expect_err("over");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = refused.headers();
        assert_eq!(h[header::RETRY_AFTER], "8", "7.5 s rounded up");
        assert_eq!(h["x-ratelimit-remaining"], "0");
        assert!(budget.admit(t0 + Duration::from_secs(10)).is_ok());
        assert!(ServerBudget::new(&[]).is_none());
    }

    #[test]
    fn the_poll_log_measures_gaps() {
        let log = PollLog::new(3);
        let t0 = Instant::now();
        log.answered([0, 1], t0);
        log.answered([0], t0 + Duration::from_secs(2));
        log.answered([0, 1], t0 + Duration::from_secs(3));
        assert_eq!(log.of(0), Some((3, Duration::from_secs(2))));
        let s = log.summary(t0 + Duration::from_secs(3), Some(&|i| i == 1));
        assert_eq!((s.things, s.polled, s.measured), (3, 2, 2));
        assert_eq!(s.worst_gap_seconds, 3.0);
        assert_eq!(s.worst_gap_seconds_of_selection, Some(3.0));
        log.reset();
        assert_eq!(log.summary(t0, None).polled, 0);
    }
}
