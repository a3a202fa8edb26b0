//! The webhook receiver's own metrics, registered when it is on.

use prometheus::{IntCounterVec, Opts, Registry};

use super::event::EventKind;

pub struct WebhookMetrics {
    pub requests: IntCounterVec,
    pub events: IntCounterVec,
    pub ignored: IntCounterVec,
    pub forwarded: IntCounterVec,
    pub forward_failures: IntCounterVec,
}

/// Why an event changed nothing here.
pub const IGNORED_REASONS: [&str; 3] = ["unknown_iccid", "no_iccid", "other_shard"];

impl Default for WebhookMetrics {
    fn default() -> Self {
        let counter = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric")
        };
        let metrics = WebhookMetrics {
            requests: counter(
                "monogoto_webhook_requests_total",
                "Requests to POST /webhook, by the HTTP status code answered.",
                "code",
            ),
            events: counter(
                "monogoto_webhook_events_total",
                "Webhook events received, by type: data (a Data CDR), sms (an SMS CDR), other (an alert, a billing update, ...).",
                "type",
            ),
            ignored: counter(
                "monogoto_webhook_events_ignored_total",
                "Webhook events that changed nothing here, by reason: unknown_iccid (a SIM this exporter does not follow), no_iccid, other_shard (another shard's SIM, with no --shard.peer-url-template or in a forwarded body).",
                "reason",
            ),
            forwarded: counter(
                "monogoto_webhook_events_forwarded_total",
                "Webhook events forwarded to the replica of the shard that follows their SIM.",
                "shard",
            ),
            forward_failures: counter(
                "monogoto_webhook_forward_failures_total",
                "Forwards of webhook events to another shard's replica that failed (unreachable, timeout, not 2xx).",
                "shard",
            ),
        };
        for kind in EventKind::ALL {
            metrics.events.with_label_values(&[kind.label()]);
        }
        for reason in IGNORED_REASONS {
            metrics.ignored.with_label_values(&[reason]);
        }
        metrics
    }
}

impl WebhookMetrics {
    pub(crate) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.events.clone()))?;
        registry.register(Box::new(self.ignored.clone()))?;
        registry.register(Box::new(self.forwarded.clone()))?;
        registry.register(Box::new(self.forward_failures.clone()))
    }
}
