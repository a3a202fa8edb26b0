//! The `/_sim` control API: force a Thing's connection or provisioning status,
//! make the API refuse it, remove it, push a Data CDR for it, read the request
//! counters and the poll log, and add, list or clear fault rules.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::faults::{FaultRule, spec_error};
use super::replies::plain;
use super::{SimEndpoint, Simulator};

/// Index of a Thing still in the fleet.
fn control_target(sim: &Simulator, iccid: &str) -> Option<usize> {
    let idx = sim.inner.index_of(iccid)?;
    (!sim.lock().removed[idx]).then_some(idx)
}

pub(super) async fn handle_set_connected(
    State(sim): State<Simulator>,
    Path(iccid): Path<String>,
    body: Bytes,
) -> Response {
    if control_target(&sim, &iccid).is_none() {
        return plain(StatusCode::NOT_FOUND, format!("unknown iccid {iccid}"));
    }
    let connected = match serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("connected").cloned())
    {
        Some(Value::Bool(b)) => Some(b),
        Some(Value::Null) => None,
        _ => {
            return plain(
                StatusCode::BAD_REQUEST,
                r#"expected {"connected": true|false|null}"#,
            );
        }
    };
    sim.set_connected(&iccid, connected);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_sim/things/{iccid}/status` with `{"status": "SUSPENDED"}`: the
/// `ProvisionStatus` its status answers carry from now on (`null`: its own).
pub(super) async fn handle_set_status(
    State(sim): State<Simulator>,
    Path(iccid): Path<String>,
    body: Bytes,
) -> Response {
    let Some(idx) = control_target(&sim, &iccid) else {
        return plain(StatusCode::NOT_FOUND, format!("unknown iccid {iccid}"));
    };
    let status = match serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("status").cloned())
    {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(Value::Null) => None,
        _ => {
            return plain(
                StatusCode::BAD_REQUEST,
                r#"expected {"status": "ACTIVE"|"SUSPENDED"|...|null}"#,
            );
        }
    };
    sim.set_provision_status(&sim.inner.fleet[idx].iccid, status.as_deref());
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_sim/things/{iccid}/refuse`: every status request naming it is
/// answered 400 "Invalid Input Data" from now on.
pub(super) async fn handle_refuse(
    State(sim): State<Simulator>,
    Path(iccid): Path<String>,
) -> Response {
    let Some(idx) = control_target(&sim, &iccid) else {
        return plain(StatusCode::NOT_FOUND, format!("unknown iccid {iccid}"));
    };
    sim.refuse_thing(&sim.inner.fleet[idx].iccid);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_sim/things/{iccid}/cdr`: queues a Data CDR for it, posted to the
/// webhook at the next tick; 409 when the simulator has no webhook URL.
pub(super) async fn handle_push_cdr(
    State(sim): State<Simulator>,
    Path(iccid): Path<String>,
) -> Response {
    let Some(idx) = control_target(&sim, &iccid) else {
        return plain(StatusCode::NOT_FOUND, format!("unknown iccid {iccid}"));
    };
    if sim.inner.webhook.is_none() {
        return plain(
            StatusCode::CONFLICT,
            "no webhook URL: start with --webhook-url",
        );
    }
    sim.push_cdr(&sim.inner.fleet[idx].iccid);
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn handle_remove(
    State(sim): State<Simulator>,
    Path(iccid): Path<String>,
) -> Response {
    if control_target(&sim, &iccid).is_none() {
        return plain(StatusCode::NOT_FOUND, format!("unknown iccid {iccid}"));
    }
    sim.remove_thing(&iccid);
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn handle_stats(State(sim): State<Simulator>) -> Response {
    let mut stats = json!({
        "auth": sim.requests(SimEndpoint::Auth),
        "things": sim.requests(SimEndpoint::Things),
        "status": sim.requests(SimEndpoint::Status),
    });
    if sim.inner.webhook.is_some() {
        stats["webhook"] = json!({
            "events_sent": sim.webhook_events_sent(),
            "post_failures": sim.webhook_post_failures(),
        });
    }
    Json(stats).into_response()
}

/// `GET /_sim/polls`: how often the Things were answered since the last reset.
pub(super) async fn handle_polls(State(sim): State<Simulator>) -> Response {
    let mut summary = json!(sim.poll_summary());
    summary["budget_refusals"] = json!(sim.budget_refusals());
    Json(summary).into_response()
}

pub(super) async fn handle_reset_polls(State(sim): State<Simulator>) -> Response {
    sim.reset_polls();
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_sim/faults`: one rule or an array; a rule is JSON or a SPEC string.
/// All or nothing: one bad rule adds none.
pub(super) async fn handle_add_faults(State(sim): State<Simulator>, body: Bytes) -> Response {
    let value = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => v,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("expected a fault rule, a SPEC string, or an array of them, as JSON: {e}"),
            );
        }
    };
    let items = match value {
        Value::Array(items) => items,
        one => vec![one],
    };
    let mut rules = Vec::with_capacity(items.len());
    for (n, item) in items.into_iter().enumerate() {
        let rule = match item {
            Value::String(spec) => spec.parse::<FaultRule>(),
            other => serde_json::from_value::<FaultRule>(other)
                .map_err(|e| spec_error(e.to_string()))
                .and_then(|rule| rule.check().map(|()| rule)),
        };
        match rule {
            Ok(rule) => rules.push(rule),
            Err(e) => return plain(StatusCode::BAD_REQUEST, format!("fault {n}: {e}")),
        }
    }
    for rule in rules {
        sim.add_fault(rule);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sim/faults`: the rules in order, each with its SPEC and counters.
pub(super) async fn handle_list_faults(State(sim): State<Simulator>) -> Response {
    let st = sim.lock();
    let rules: Vec<Value> = st
        .faults
        .iter()
        .map(|slot| {
            let mut v = serde_json::to_value(&slot.rule).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("spec".into(), json!(slot.rule.to_string()));
                m.insert("matched".into(), json!(slot.matched));
                m.insert("applied".into(), json!(slot.applied));
                m.insert("exhausted".into(), json!(slot.rule.exhausted(slot.matched)));
            }
            v
        })
        .collect();
    Json(json!({"faults_served": st.faults_served, "rules": rules})).into_response()
}

pub(super) async fn handle_clear_faults(State(sim): State<Simulator>) -> Response {
    sim.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}
