//! The plain answers every part of the simulator gives: text, the API's
//! error envelope, and 401.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(super) fn plain(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

pub(super) fn envelope_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"Success": false, "Message": message, "Data": null})),
    )
        .into_response()
}

pub(super) fn unauthorized() -> Response {
    plain(StatusCode::UNAUTHORIZED, "Unauthorized")
}
