//! Events for another shard's SIMs go to that shard's replica: the Hub sends
//! every event to one URL, and the Service hands each request to any replica.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use super::event::{Event, EventKind};
use super::metrics::WebhookMetrics;

/// Marks a forwarded body, which is never forwarded again.
pub const FORWARDED_HEADER: &str = "x-monogoto-exporter-forwarded";
/// A peer gets this long; the sender never waits for it.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Forwarder {
    http: reqwest::Client,
    /// The peer's base URL, `{index}` standing for its shard.
    template: String,
    token: SecretString,
    metrics: Arc<WebhookMetrics>,
}

impl Forwarder {
    pub(super) fn new(
        template: String,
        token: SecretString,
        metrics: Arc<WebhookMetrics>,
    ) -> Option<Forwarder> {
        let http = reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .connect_timeout(FORWARD_TIMEOUT)
            .user_agent(concat!("monogoto-exporter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| tracing::error!(error = %e, "cannot build the client that forwards webhook events"))
            .ok()?;
        Some(Forwarder {
            http,
            template,
            token,
            metrics,
        })
    }

    /// Sends each shard its events, one request per shard, in the
    /// background. The token goes in a header: never in a URL that a log
    /// line could show.
    pub(super) fn forward(&self, by_shard: BTreeMap<u64, Vec<Event>>) {
        for (shard, events) in by_shard {
            let url = format!(
                "{}/webhook",
                self.template
                    .replace("{index}", &shard.to_string())
                    .trim_end_matches('/')
            );
            let body = Value::Array(events.iter().map(minimal).collect());
            let request = self
                .http
                .post(url)
                .bearer_auth(self.token.expose_secret())
                .header(FORWARDED_HEADER, "1")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
            let metrics = self.metrics.clone();
            let count = events.len() as u64;
            tokio::spawn(async move {
                let label = shard.to_string();
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        metrics.forwarded.with_label_values(&[&label]).inc_by(count);
                    }
                    Ok(response) => {
                        metrics.forward_failures.with_label_values(&[&label]).inc();
                        tracing::debug!(shard, status = %response.status(), "a shard's replica refused forwarded webhook events");
                    }
                    Err(e) => {
                        metrics.forward_failures.with_label_values(&[&label]).inc();
                        // Without the URL: it could name the host only, but
                        // reqwest's error text is not ours to vet.
                        tracing::debug!(
                            shard,
                            timeout = e.is_timeout(),
                            connect = e.is_connect(),
                            "cannot forward webhook events to a shard's replica"
                        );
                    }
                }
            });
        }
    }
}

/// An event as the receiver reads it, with only what it uses.
fn minimal(event: &Event) -> Value {
    let mut object = serde_json::Map::new();
    if let Some(iccid) = &event.iccid {
        object.insert("Iccid".into(), json!(iccid));
    }
    let cdr_type = match event.kind {
        EventKind::Data => Some("DATA"),
        EventKind::Sms => Some("MO_SMS"),
        EventKind::Other => None,
    };
    if let Some(cdr_type) = cdr_type {
        object.insert("CdrType".into(), json!(cdr_type));
    }
    if let Some(network) = &event.network {
        object.insert("MCC".into(), json!(network.mcc));
        object.insert("MNC".into(), json!(network.mnc));
        object.insert("MnoName".into(), json!(network.operator));
    }
    if let Some(imei) = &event.imei {
        object.insert("IMEI".into(), json!(imei));
    }
    Value::Object(object)
}
