//! The HTTP side: `/` (the status page), the telemetry path, `/healthz`,
//! `/readyz` and `/-/reload`.

use std::convert::Infallible;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

use super::{AppState, status_page};
use crate::exposition;

use crate::exposition::text::CONTENT_TYPE_TEXT_0_0_4;

pub(crate) fn router(state: AppState) -> Router {
    let telemetry_path = state.telemetry_path.to_string();
    Router::new()
        .route("/", get(status_page::status_page))
        .route(&telemetry_path, get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/-/reload", post(reload).put(reload).get(reload_needs_post))
        .route("/webhook", any(webhook))
        .with_state(state)
}

/// `POST /webhook` (see `push`); 404 when no webhook token is configured.
async fn webhook(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    match &state.webhook {
        Some(receiver) => receiver.handle(request).await,
        None => (
            StatusCode::NOT_FOUND,
            "Not Found: no webhook token configured\n",
        )
            .into_response(),
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    probe(
        state.fleet.is_polling(),
        "ok\n",
        "polling stopped; the process is exiting to be restarted\n",
    )
}

async fn readyz(State(state): State<AppState>) -> Response {
    probe(
        state.fleet.is_ready(),
        "ready\n",
        "waiting for the first refresh\n",
    )
}

/// A probe's answer: 200 and `yes`, or 503 and why not.
fn probe(passes: bool, yes: &'static str, why_not: &'static str) -> Response {
    if passes {
        (StatusCode::OK, yes).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, why_not).into_response()
    }
}

/// `POST` or `PUT /-/reload`, answered as Prometheus answers it: 403 without
/// `--web.enable-lifecycle`, else 200 once reloaded or 500 with the error.
async fn reload(State(state): State<AppState>, method: Method) -> Response {
    if !state.enable_lifecycle {
        return (
            StatusCode::FORBIDDEN,
            "Lifecycle API is not enabled (start with --web.enable-lifecycle).\n",
        )
            .into_response();
    }
    let Some(reloader) = state.reloader else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to reload config: this exporter was started without a configuration to reload\n",
        )
            .into_response();
    };
    // A task of its own: a client that hangs up does not cut a reload short.
    let trigger = format!("{method} /-/reload");
    let outcome = tokio::spawn(async move { reloader.reload(&trigger).await }).await;
    match outcome {
        Ok(Ok(reloaded)) => (StatusCode::OK, format!("{reloaded}\n")).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
    }
}

/// `GET /-/reload`: 405, as Prometheus answers, enabled or not.
async fn reload_needs_post() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST, PUT")],
        "Only POST or PUT requests allowed\n",
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snapshot = state.fleet.snapshot();
    // The per-Thing part exists already; only the health part is rendered now.
    let mut health = Vec::with_capacity(16 * 1024);
    state.health.render_into(&mut health);

    let gzip = accepts_gzip(&headers);
    let parts = if gzip {
        exposition::gzip_body(snapshot.segments(), &health)
    } else {
        exposition::identity_body(snapshot.segments(), health)
    };
    let length: usize = parts.iter().map(Bytes::len).sum();
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_TEXT_0_0_4),
    );
    response_headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if gzip {
        response_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    // The parts are shared with the snapshot: sending them copies nothing here.
    let stream = futures_util::stream::iter(parts.into_iter().map(Ok::<Bytes, Infallible>));
    (response_headers, Body::from_stream(stream)).into_response()
}

/// True if `Accept-Encoding` lists gzip (or `*`) with a non-zero quality.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let quality_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !quality_zero
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&with("gzip")));
        assert!(accepts_gzip(&with("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
