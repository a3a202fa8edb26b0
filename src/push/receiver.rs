//! `POST /webhook`: strict about access, tolerant of shape. The sender proves
//! itself with the configured token (`?token=`, as the Hub only takes a URL,
//! or `Authorization: Bearer`), and gets its answer as soon as the body is
//! read: it never waits for the Monogoto API.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use super::event::{Event, parse_events};
use super::forward::{FORWARDED_HEADER, Forwarder};
use super::metrics::WebhookMetrics;
use crate::poller::Poller;
use crate::poller::hints::EventNews;
use crate::shard::Shard;

pub struct Receiver {
    /// SHA-256 of the token: compared digest to digest, in constant time,
    /// so that neither the token nor its length shows in the timing.
    token_digest: [u8; 32],
    max_body_size: usize,
    poller: Arc<Poller>,
    shard: Shard,
    forwarder: Option<Forwarder>,
    pub metrics: Arc<WebhookMetrics>,
}

impl Receiver {
    pub fn new(
        token: SecretString,
        max_body_size: usize,
        poller: Arc<Poller>,
        shard: Shard,
        peer_url_template: Option<String>,
    ) -> Receiver {
        let metrics = Arc::new(WebhookMetrics::default());
        let token_digest = Sha256::digest(token.expose_secret().as_bytes()).into();
        let forwarder = peer_url_template
            .filter(|_| shard.count > 1)
            .and_then(|template| Forwarder::new(template, token, metrics.clone()));
        Receiver {
            token_digest,
            max_body_size,
            poller,
            shard,
            forwarder,
            metrics,
        }
    }

    /// Answers one request to `/webhook`, counted by its status code.
    pub async fn handle(&self, request: Request) -> Response {
        let response = self.answer(request).await;
        self.metrics
            .requests
            .with_label_values(&[response.status().as_str()])
            .inc();
        response
    }

    async fn answer(&self, request: Request) -> Response {
        if request.method() != Method::POST {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only POST\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        if !self.authorized(&request) {
            let mut response = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let forwarded = request.headers().contains_key(FORWARDED_HEADER);
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body_size as u64) {
            return self.too_large();
        }
        let body = match axum::body::to_bytes(request.into_body(), self.max_body_size).await {
            Ok(body) => body,
            // Over the limit while streaming in (no Content-Length), or cut off.
            Err(_) => return self.too_large(),
        };
        let events = match parse_events(&body) {
            Ok(events) => events,
            Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("{e}\n")),
        };
        let accepted = events.len();
        self.take(events, forwarded);
        (
            StatusCode::ACCEPTED,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"accepted\":{accepted}}}\n"),
        )
            .into_response()
    }

    fn too_large(&self) -> Response {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "larger than {} bytes (--webhook.max-body-size)\n",
                self.max_body_size
            ),
        )
    }

    /// The token from `?token=` or `Authorization: Bearer`.
    fn authorized(&self, request: &Request) -> bool {
        let from_query = Query::<Vec<(String, String)>>::try_from_uri(request.uri())
            .ok()
            .and_then(|Query(pairs)| {
                pairs
                    .into_iter()
                    .find(|(name, _)| name == "token")
                    .map(|(_, value)| value)
            });
        let from_header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_string())
            });
        [from_query, from_header]
            .into_iter()
            .flatten()
            .any(|given| self.matches(&given))
    }

    fn matches(&self, given: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        digest
            .iter()
            .zip(&self.token_digest)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
    }

    /// Hints this shard's SIMs, forwards the others' (not a forwarded body's).
    fn take(&self, events: Vec<Event>, forwarded: bool) {
        let received_unix = crate::health::unix_now();
        let mut elsewhere: BTreeMap<u64, Vec<Event>> = BTreeMap::new();
        for event in events {
            self.metrics
                .events
                .with_label_values(&[event.kind.label()])
                .inc();
            let Some(iccid) = event.iccid.as_deref() else {
                self.ignored("no_iccid");
                continue;
            };
            if !self.shard.owns(iccid) {
                match &self.forwarder {
                    Some(_) if !forwarded => elsewhere
                        .entry(crate::shard::iccid_hash(iccid) % self.shard.count)
                        .or_default()
                        .push(event),
                    _ => self.ignored("other_shard"),
                }
                continue;
            }
            let news = EventNews {
                received_unix,
                network: event
                    .network
                    .as_ref()
                    .map(|n| (n.mcc.clone(), n.mnc.clone(), n.operator.clone())),
                imei: event.imei.clone(),
            };
            if !self.poller.hint(iccid, news) {
                self.ignored("unknown_iccid");
            }
        }
        if let Some(forwarder) = &self.forwarder
            && !elsewhere.is_empty()
        {
            forwarder.forward(elsewhere);
        }
    }

    fn ignored(&self, reason: &str) {
        self.metrics.ignored.with_label_values(&[reason]).inc();
    }
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(text.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
