//! How a faulted request is answered: delayed, hung, refused, or with its body
//! cut, mistyped or made huge, as the fault rules decided.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::faults::{FaultKind, MAX_FAULT_DELAY, RetryAfter};
use super::fleet::{THING_ID_PREFIX, epoch_secs};
use super::replies::{envelope_error, plain, unauthorized};
use super::{Inner, SimEndpoint, Simulator};

/// What a rate-limited answer announces in `X-RateLimit-Limit` (the documented standard plan).
const RATE_LIMIT_PER_MINUTE: u64 = 60;
/// Window announced by a 429 that gives no `Retry-After`.
const RATE_LIMIT_WINDOW_SECS: u64 = 60;
/// Size of one streamed piece of an oversized body.
pub(super) const OVERSIZED_CHUNK: usize = 64 * 1024;
/// The last instant an IMF-fixdate (four-digit year) can show: 9999-12-31T23:59:59Z.
const MAX_HTTP_DATE_SECS: i64 = 253_402_300_799;

/// Answers one API request: as `normal` does, unless a fault rule says otherwise.
pub(super) async fn with_faults(
    sim: &Simulator,
    endpoint: SimEndpoint,
    normal: impl FnOnce() -> Response,
) -> Response {
    let plan = sim.plan_faults(endpoint);
    if !plan.delay.is_zero() && !sim.fault_delay(plan.delay).await {
        return shutting_down();
    }
    let Some(kind) = plan.fault else {
        return normal();
    };
    match kind {
        // plan_faults never returns Latency as the fault; answering normally is its meaning.
        FaultKind::Latency { .. } => normal(),
        FaultKind::Hang => {
            if sim.fault_delay(MAX_FAULT_DELAY).await {
                plain(StatusCode::GATEWAY_TIMEOUT, "simulated hang ended")
            } else {
                shutting_down()
            }
        }
        FaultKind::Status { code } => status_fault(code),
        FaultKind::RateLimited { retry_after } => rate_limited(&retry_after, SystemTime::now()),
        FaultKind::Unauthorized => match endpoint {
            SimEndpoint::Auth => plain(StatusCode::UNAUTHORIZED, "Access denied"),
            _ => unauthorized(),
        },
        FaultKind::TruncatedJson => truncated(normal()).await,
        FaultKind::MalformedJson => (
            StatusCode::OK,
            // The header claims JSON, as a misconfigured proxy's error page may.
            [(header::CONTENT_TYPE, "application/json")],
            "<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\
             <body><h1>We'll be back soon</h1></body></html>\n",
        )
            .into_response(),
        FaultKind::WrongTypes => wrong_types(endpoint, normal()).await,
        FaultKind::SuccessFalse => envelope_error(StatusCode::OK, "simulated failure"),
        FaultKind::Oversized { bytes } => oversized(sim, endpoint, bytes),
        FaultKind::RawRetryAfter { value, code } => {
            let mut response = status_fault(code);
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        FaultKind::RawRateLimitReset { value } => {
            let mut response = normal();
            if let Ok(value) = HeaderValue::from_str(&value) {
                let headers = response.headers_mut();
                headers.insert(
                    HeaderName::from_static("x-ratelimit-remaining"),
                    HeaderValue::from(0u64),
                );
                headers.insert(HeaderName::from_static("x-ratelimit-reset"), value);
            }
            response
        }
    }
}

fn shutting_down() -> Response {
    plain(StatusCode::SERVICE_UNAVAILABLE, "simulator shutting down")
}

fn status_fault(code: u16) -> Response {
    let status = StatusCode::from_u16(code)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = status.canonical_reason().unwrap_or("Error");
    match status.as_u16() {
        // Gateway errors come from the load balancer in front of the API, as text.
        502..=504 => plain(status, format!("{} {reason}", status.as_u16())),
        _ => envelope_error(status, reason),
    }
}

fn rate_limited(retry_after: &RetryAfter, now: SystemTime) -> Response {
    // Rounded up, so a client waiting until the date waits at least the seconds asked for.
    let now_secs = epoch_secs(now).saturating_add(i64::from(
        now.duration_since(UNIX_EPOCH)
            .is_ok_and(|d| d.subsec_nanos() > 0),
    ));
    let wait = match retry_after {
        RetryAfter::Seconds(s)
        | RetryAfter::HttpDate {
            seconds_from_now: s,
        } => *s,
        RetryAfter::None => RATE_LIMIT_WINDOW_SECS,
    };
    let reset = now_secs.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
    let mut response = envelope_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    let headers = response.headers_mut();
    match retry_after {
        RetryAfter::Seconds(s) => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*s));
        }
        RetryAfter::HttpDate { .. } => {
            if let Ok(date) = HeaderValue::from_str(&http_date(reset)) {
                headers.insert(header::RETRY_AFTER, date);
            }
        }
        RetryAfter::None => {}
    }
    headers.insert(
        HeaderName::from_static("x-ratelimit-limit"),
        HeaderValue::from(RATE_LIMIT_PER_MINUTE),
    );
    headers.insert(
        HeaderName::from_static("x-ratelimit-remaining"),
        HeaderValue::from(0u64),
    );
    headers.insert(
        HeaderName::from_static("x-ratelimit-reset"),
        HeaderValue::from(reset),
    );
    response
}

/// RFC 7231 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`; clamped to years 1970..=9999.
pub(super) fn http_date(epoch_secs: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(epoch_secs.clamp(0, MAX_HTTP_DATE_SECS), 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

async fn full_body(response: Response) -> Result<(axum::http::response::Parts, Bytes), Response> {
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => Ok((parts, bytes)),
        Err(e) => Err(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("simulator cannot read its own answer: {e}"),
        )),
    }
}

async fn truncated(normal: Response) -> Response {
    let (mut parts, bytes) = match full_body(normal).await {
        Ok(p) => p,
        Err(e) => return e,
    };
    // A strict prefix of a JSON object or array is never valid JSON, and half of
    // a body of 2 bytes or more is never empty.
    let cut = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(cut))
}

async fn wrong_types(endpoint: SimEndpoint, normal: Response) -> Response {
    let (mut parts, bytes) = match full_body(normal).await {
        Ok(p) => p,
        Err(e) => return e,
    };
    let parsed = serde_json::from_slice::<Value>(&bytes);
    let (StatusCode::OK, Ok(mut value)) = (parts.status, parsed) else {
        // Errors (401, 400) come before the broken serialisation would.
        return Response::from_parts(parts, Body::from(bytes));
    };
    match (endpoint, &mut value) {
        (SimEndpoint::Status, Value::Object(envelope)) => {
            if let Some(Value::Array(data)) = envelope.get_mut("Data") {
                for (n, entry) in data.iter_mut().enumerate() {
                    *entry = mistyped_status(entry, n);
                }
            }
        }
        (SimEndpoint::Things, Value::Array(things)) => {
            for thing in things.iter_mut() {
                *thing = mistyped_thing(thing);
            }
        }
        (SimEndpoint::Auth, Value::Object(_)) => value = mistyped_login(),
        _ => {}
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(value.to_string()))
}

/// A status entry with every field but ThingId of a wrong type; the three
/// ActiveSessions variants (string, array, object) take turns.
fn mistyped_status(entry: &Value, n: usize) -> Value {
    let session = json!({
        "ActiveSessionId": 7,
        "ApnName": false,
        "IPAddress": [10, 0, 0, 1],
        "LastConnectedTime": [1_750_000_000],
        "UplinkThroughput": "fast",
        "DownlinkThroughput": {"bps": 1},
    });
    let sessions = match n % 3 {
        0 => json!("x"),
        1 => json!([session]),
        _ => session,
    };
    json!({
        "ThingId": entry.get("ThingId").cloned().unwrap_or(Value::Null),
        "CustomerId": 42,
        "ThingName": {},
        "ThingDescription": [],
        "ProvisionStatus": 3.5,
        "ConnectionStatus": 7,
        "ActiveSessions": sessions,
        "ActiveIMSI": false,
        "LastConnectionTime": true,
        "LastDisconnectionTime": {"at": "never"},
        "MSISDN": [44],
    })
}

fn mistyped_thing(thing: &Value) -> Value {
    json!({
        "ThingId": thing.get("ThingId").cloned().unwrap_or(Value::Null),
        "ThingName": {},
        "ExternalUniqueId": true,
        "State": 3,
        "CustomerId": [],
        "ThingDescription": false,
    })
}

fn mistyped_login() -> Value {
    json!({
        "token": 12345,
        "refreshToken": [],
        "CustomerId": false,
        "UserId": {},
        "UserName": 7,
        "Role": ["Admin"],
    })
}

/// A streamed 200 of at least `bytes` bytes: valid JSON in the endpoint's shape,
/// one 64 KiB entry at a time so nothing near `bytes` is ever held in memory.
fn oversized(sim: &Simulator, endpoint: SimEndpoint, bytes: u64) -> Response {
    let (prefix, suffix) = match endpoint {
        SimEndpoint::Status => (
            r#"{"Success":true,"Message":"Operation succeeded","Data":["#,
            "]}",
        ),
        SimEndpoint::Things => ("[", "]"),
        SimEndpoint::Auth => (r#"{"Message":"Operation succeeded","Padding":["#, "]}"),
    };
    let inner = Arc::clone(&sim.inner);
    let suffix_len = suffix.len() as u64;
    // State: bytes sent so far, entries sent, finished.
    let stream =
        futures_util::stream::unfold((None::<u64>, 0u64, false), move |(sent, n, done)| {
            let next = match sent {
                _ if done => None,
                None => Some((prefix.to_owned(), (Some(prefix.len() as u64), n, false))),
                Some(sent) if sent.saturating_add(suffix_len) >= bytes => {
                    Some((suffix.to_owned(), (Some(sent), n, true)))
                }
                Some(sent) => {
                    let entry = oversized_entry(&inner, endpoint, n);
                    let sent = sent.saturating_add(entry.len() as u64);
                    Some((entry, (Some(sent), n + 1, false)))
                }
            };
            futures_util::future::ready(
                next.map(|(chunk, state)| (Ok::<_, Infallible>(Bytes::from(chunk)), state)),
            )
        });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One array element of about [`OVERSIZED_CHUNK`] bytes, comma-led after the first.
fn oversized_entry(inner: &Inner, endpoint: SimEndpoint, n: u64) -> String {
    let separator = if n == 0 { "" } else { "," };
    let padding = "x".repeat(OVERSIZED_CHUNK);
    let thing = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_rem(inner.fleet.len()))
        .and_then(|i| inner.fleet.get(i));
    let (iccid, name) = thing.map_or(("8988000000000000000", "padding"), |t| {
        (t.iccid.as_str(), t.name.as_str())
    });
    let entry = match endpoint {
        SimEndpoint::Status => json!({
            "ThingId": format!("{THING_ID_PREFIX}{iccid}"),
            "ThingName": name,
            "ProvisionStatus": "ACTIVE",
            "ConnectionStatus": "DISCONNECTED",
            "ActiveSessions": [],
            "LastConnectionTime": null,
            "LastDisconnectionTime": null,
            "ThingDescription": padding,
        }),
        SimEndpoint::Things => json!({
            "ThingId": format!("{THING_ID_PREFIX}{iccid}"),
            "ThingName": name,
            "ExternalUniqueId": iccid,
            "State": "ACTIVE",
            "ThingDescription": padding,
        }),
        SimEndpoint::Auth => Value::String(padding),
    };
    format!("{separator}{entry}")
}
