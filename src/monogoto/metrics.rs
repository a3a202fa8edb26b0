//! The metrics the client itself updates: every request, retry, 429, wait for
//! the budget and value it could not parse. They are registered with the
//! exporter's other health metrics, but defined here so that the client needs
//! nothing from the layers above it.

use std::sync::Mutex;

use prometheus::{Counter, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use tokio::time::Instant;

use super::error::Endpoint;
use super::model::PARSE_ERROR_FIELDS;

pub struct ApiMetrics {
    pub requests: IntCounterVec,
    pub(crate) request_duration: HistogramVec,
    pub retries: IntCounterVec,
    pub rate_limited: IntCounter,
    pub parse_errors: IntCounterVec,
    pub(crate) budget_wait: BudgetWait,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiMetrics {
    pub fn new() -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "monogoto_api_requests_total",
                "HTTP requests to the Monogoto API by endpoint and status code (\"error\" for transport failures).",
            ),
            &["endpoint", "code"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "monogoto_api_request_duration_seconds",
                "Duration of HTTP requests to the Monogoto API, in seconds.",
            )
            .buckets(vec![0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["endpoint"],
        )
        .expect("valid metric");
        let retries = IntCounterVec::new(
            Opts::new(
                "monogoto_api_retries_total",
                "Requests to the Monogoto API sent again after a timeout, connection error, 429 or 5xx, by endpoint.",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let rate_limited = IntCounter::new(
            "monogoto_api_rate_limited_total",
            "Answers of the Monogoto API with HTTP 429 Too Many Requests.",
        )
        .expect("valid metric");
        let parse_errors = IntCounterVec::new(
            Opts::new(
                "monogoto_parse_errors_total",
                "Values of the status answer that could not be understood and were dropped, by API field.",
            ),
            &["field"],
        )
        .expect("valid metric");
        let budget_wait = Counter::new(
            "monogoto_api_budget_wait_seconds_total",
            "Time during which polling waited for the request budget, in seconds, however many requests waited at once; its rate (0 to 1) near 1 means the exporter runs at the budget.",
        )
        .expect("valid metric");

        // Counted from zero, so that `rate()` sees the first one.
        for field in PARSE_ERROR_FIELDS {
            parse_errors.with_label_values(&[*field]);
        }
        for endpoint in Endpoint::ALL {
            request_duration.with_label_values(&[endpoint.label()]);
            retries.with_label_values(&[endpoint.label()]);
        }
        ApiMetrics {
            requests,
            request_duration,
            retries,
            rate_limited,
            parse_errors,
            budget_wait: BudgetWait {
                counter: budget_wait,
                state: Mutex::new(Waiting::default()),
            },
        }
    }

    /// Registers every metric with `registry`.
    pub(crate) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.request_duration.clone()))?;
        registry.register(Box::new(self.retries.clone()))?;
        registry.register(Box::new(self.rate_limited.clone()))?;
        registry.register(Box::new(self.parse_errors.clone()))?;
        registry.register(Box::new(self.budget_wait.counter.clone()))
    }

    pub(crate) fn observe_request(&self, endpoint: Endpoint, code: &str, seconds: f64) {
        self.requests
            .with_label_values(&[endpoint.label(), code])
            .inc();
        self.request_duration
            .with_label_values(&[endpoint.label()])
            .observe(seconds);
    }

    pub(crate) fn count_parse_error(&self, field: &str) {
        self.parse_errors.with_label_values(&[field]).inc();
    }
}

/// `monogoto_api_budget_wait_seconds_total`: the time during which at least
/// one request waited for the budget (the pacer or the windows). Requests
/// that wait together count once, so its rate stays between 0 and 1 at any
/// concurrency.
pub(crate) struct BudgetWait {
    counter: Counter,
    state: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    requests: usize,
    /// Counted up to here.
    since: Option<Instant>,
}

impl BudgetWait {
    /// Counts a request as waiting until the guard is dropped.
    pub(crate) fn start(&self) -> WaitGuard<'_> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.count_until_now(&mut state);
        state.requests += 1;
        WaitGuard { wait: self }
    }

    /// Adds the time since the last count while some request waited, so a
    /// long wait shows as it goes rather than at its end.
    fn count_until_now(&self, state: &mut Waiting) {
        let now = Instant::now();
        if let Some(since) = state.since
            && state.requests > 0
        {
            self.counter
                .inc_by(now.saturating_duration_since(since).as_secs_f64());
        }
        state.since = Some(now);
    }

    /// Seconds waited so far.
    pub(crate) fn get(&self) -> f64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.count_until_now(&mut state);
        self.counter.get()
    }
}

/// A request waiting for the budget (see [`BudgetWait::start`]).
pub(crate) struct WaitGuard<'a> {
    wait: &'a BudgetWait,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.wait.state.lock().unwrap_or_else(|p| p.into_inner());
        self.wait.count_until_now(&mut state);
        state.requests = state.requests.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Four requests waiting the same second count one second.
    #[tokio::test(start_paused = true)]
    async fn waits_at_once_count_once() {
        let metrics = ApiMetrics::new();
        let wait = &metrics.budget_wait;
        let sleep = || async {
            let _waiting = wait.start();
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        futures_util::future::join4(sleep(), sleep(), sleep(), sleep()).await;
        assert!((wait.get() - 1.0).abs() < 1e-6, "{}", wait.get());
        // Apart, they add up; time with no waiter does not count.
        sleep().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        sleep().await;
        assert!((wait.get() - 3.0).abs() < 1e-6, "{}", wait.get());
    }
}
