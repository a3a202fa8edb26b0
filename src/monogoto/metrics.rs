//! The metrics the client itself updates: every request, retry, 429, wait for
//! the budget and value it could not parse. They are registered with the
//! exporter's other health metrics, but defined here so that the client needs
//! nothing from the layers above it.

use prometheus::{Counter, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use super::error::Endpoint;
use super::model::PARSE_ERROR_FIELDS;

pub struct ApiMetrics {
    pub requests: IntCounterVec,
    pub(crate) request_duration: HistogramVec,
    pub retries: IntCounterVec,
    pub rate_limited: IntCounter,
    pub parse_errors: IntCounterVec,
    pub(crate) budget_wait: Counter,
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
            "Time requests spent waiting for the request budget, in seconds; its rate near 1 means the exporter runs at the budget.",
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
            budget_wait,
        }
    }

    /// Registers every metric with `registry`.
    pub(crate) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.request_duration.clone()))?;
        registry.register(Box::new(self.retries.clone()))?;
        registry.register(Box::new(self.rate_limited.clone()))?;
        registry.register(Box::new(self.parse_errors.clone()))?;
        registry.register(Box::new(self.budget_wait.clone()))
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
