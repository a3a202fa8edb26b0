//! The imitated API: `POST /Auth`, `GET /things` and `GET /thing/status`,
//! each answered past the fault rules and the request budget.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::fault_answers::with_faults;
use super::fleet::{TAG_REFRESH, THING_ID_PREFIX, hash};
use super::replies::{envelope_error, plain, unauthorized};
use super::{FailMode, Override, SimEndpoint, Simulator, ThingIdsForm};

/// The service rejects larger pages; so do we.
const MAX_LIMIT: usize = 50;
/// Bound on the recorded /thing/status queries, so a long demo run does not grow forever.
const STATUS_QUERY_LOG_CAP: usize = 10_000;

/// Splits a raw query into decoded pairs, keeping repeats and order (axum's
/// Query would keep only one value per key).
pub(super) fn parse_query(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// Form-style decoding: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("invalid percent-encoding in query: {s}"))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "query is not valid UTF-8".to_owned())
}

/// `limit` (default 50, 1..=50) and `offset` (default 0); the last occurrence wins.
fn paging(params: &[(String, String)]) -> Result<(usize, usize), String> {
    let last = |key: &str| params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    let limit = match last("limit") {
        None => MAX_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(l) if (1..=MAX_LIMIT).contains(&l) => l,
            _ => {
                return Err(format!(
                    "limit must be between 1 and {MAX_LIMIT}, got {v:?}"
                ));
            }
        },
    };
    let offset = match last("offset") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| format!("offset must be a non-negative integer, got {v:?}"))?,
    };
    Ok((limit, offset))
}

pub(super) async fn handle_auth(State(sim): State<Simulator>, body: Bytes) -> Response {
    sim.count(SimEndpoint::Auth);
    budgeted(
        &sim,
        with_faults(&sim, SimEndpoint::Auth, || auth_answer(&sim, &body)),
    )
    .await
}

fn auth_answer(sim: &Simulator, body: &[u8]) -> Response {
    let creds = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        Some((
            v.get("UserName")?.as_str()?.to_owned(),
            v.get("Password")?.as_str()?.to_owned(),
        ))
    });
    let inner = &sim.inner;
    match creds {
        Some((user, password)) if user == inner.username && password == inner.password => {
            let token = sim.issue_token();
            let refresh = hash(&[inner.seed, TAG_REFRESH, sim.lock().next_jti]);
            Json(json!({
                "token": token,
                "refreshToken": format!("rt-{refresh:016x}"),
                "CustomerId": inner.customer_id,
                "UserId": inner.user_id,
                "UserName": inner.username,
                "Role": "Admin",
            }))
            .into_response()
        }
        _ => plain(StatusCode::UNAUTHORIZED, "Access denied"),
    }
}

pub(super) async fn handle_things(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    sim.count(SimEndpoint::Things);
    let answer = with_faults(&sim, SimEndpoint::Things, || {
        things_answer(&sim, &headers, query.as_deref())
    });
    budgeted(&sim, answer).await
}

fn things_answer(sim: &Simulator, headers: &HeaderMap, query: Option<&str>) -> Response {
    if !sim.authorized(headers) {
        return unauthorized();
    }
    let params = match parse_query(query.unwrap_or("")) {
        Ok(p) => p,
        Err(msg) => return plain(StatusCode::BAD_REQUEST, msg),
    };
    let (limit, offset) = match paging(&params) {
        Ok(p) => p,
        Err(msg) => return plain(StatusCode::BAD_REQUEST, msg),
    };
    let inner = &sim.inner;
    let page: Vec<Value> = {
        let st = sim.lock();
        if st.removed_count == 0 {
            // Fast path for the usual untouched fleet: no scan over the skipped part.
            let start = offset.min(inner.fleet.len());
            let end = start.saturating_add(limit).min(inner.fleet.len());
            inner.fleet[start..end]
                .iter()
                .map(|t| inner.render_thing(t))
                .collect()
        } else {
            inner
                .fleet
                .iter()
                .enumerate()
                .filter(|(i, _)| !st.removed[*i])
                .skip(offset)
                .take(limit)
                .map(|(_, t)| inner.render_thing(t))
                .collect()
        }
    };
    Json(Value::Array(page)).into_response()
}

pub(super) async fn handle_status(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    sim.count(SimEndpoint::Status);
    let query = query.unwrap_or_default();
    {
        let mut st = sim.lock();
        if st.status_queries.len() >= STATUS_QUERY_LOG_CAP {
            st.status_queries.pop_front();
        }
        st.status_queries.push_back(query.clone());
    }
    let answer = with_faults(&sim, SimEndpoint::Status, || {
        status_answer(&sim, &headers, &query)
    });
    budgeted(&sim, answer).await
}

/// Answers with `answer` if the request is within the budget (adding the
/// `X-RateLimit-*` headers), or with 429 without running it.
async fn budgeted(sim: &Simulator, answer: impl Future<Output = Response>) -> Response {
    let Some(budget) = &sim.inner.budget else {
        return answer.await;
    };
    match budget.admit(std::time::Instant::now()) {
        Ok(headers) => {
            let mut response = answer.await;
            for (name, value) in &headers {
                response.headers_mut().entry(name).or_insert(value.clone());
            }
            response
        }
        Err(refusal) => {
            sim.inner.budget_refusals.fetch_add(1, Ordering::Relaxed);
            *refusal
        }
    }
}

fn status_answer(sim: &Simulator, headers: &HeaderMap, query: &str) -> Response {
    if !sim.authorized(headers) {
        return unauthorized();
    }
    let params = match parse_query(query) {
        Ok(p) => p,
        Err(msg) => return envelope_error(StatusCode::BAD_REQUEST, &msg),
    };
    let form = sim.inner.thing_ids_form;
    if form == ThingIdsForm::RepeatStrict
        && params
            .iter()
            .any(|(k, v)| k == "ThingIds" && v.contains(','))
    {
        return envelope_error(StatusCode::BAD_REQUEST, "Invalid Input Data");
    }
    let ids: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "ThingIds")
        .take(if form == ThingIdsForm::Comma {
            1
        } else {
            usize::MAX
        })
        .flat_map(|(_, v)| {
            if matches!(form, ThingIdsForm::Repeat | ThingIdsForm::RepeatStrict) {
                vec![v.as_str()]
            } else {
                v.split(',').collect()
            }
        })
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect();
    if ids.is_empty() {
        return envelope_error(StatusCode::BAD_REQUEST, "ThingIds is required");
    }
    let (limit, offset) = match paging(&params) {
        Ok(p) => p,
        Err(msg) => return envelope_error(StatusCode::BAD_REQUEST, &msg),
    };
    let inner = &sim.inner;
    // Snapshot under the lock so one answer reflects one instant.
    let (now, page) = {
        let st = sim.lock();
        let mut seen = HashSet::new();
        let requested: Vec<usize> = ids
            .iter()
            .filter_map(|id| id.strip_prefix(THING_ID_PREFIX))
            .filter_map(|iccid| inner.index_of(iccid))
            .filter(|&i| !st.removed[i] && seen.insert(i))
            .collect();
        if requested.iter().any(|i| st.refused.contains(i)) {
            return envelope_error(StatusCode::BAD_REQUEST, "Invalid Input Data");
        }
        if let Some(mode) = requested.iter().find_map(|i| st.failing.get(i)) {
            return match mode {
                FailMode::ServerError => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"Success": false, "Message": "Internal Server Error"})),
                )
                    .into_response(),
                FailMode::SuccessFalse => envelope_error(StatusCode::OK, "simulated failure"),
            };
        }
        // A cap of 0 would make paging clients loop forever; 1 is the floor.
        let size = st.page_cap.map_or(limit, |cap| limit.min(cap.max(1)));
        let page: Vec<(usize, Option<Override>, Option<String>)> = requested
            .into_iter()
            .skip(offset)
            .take(size)
            .map(|i| {
                (
                    i,
                    st.overrides.get(&i).copied(),
                    st.statuses.get(&i).cloned(),
                )
            })
            .collect();
        (st.now_secs(), page)
    };
    inner
        .polls
        .answered(page.iter().map(|(i, _, _)| *i), std::time::Instant::now());
    let data: Vec<Value> = page
        .into_iter()
        .map(|(i, ov, status)| {
            let t = &inner.fleet[i];
            let mut answer = inner.render_status(t, &inner.dynamic(t, now, ov));
            if let Some(status) = status {
                answer["ProvisionStatus"] = json!(status);
            }
            answer
        })
        .collect();
    Json(json!({"Success": true, "Message": "Operation succeeded", "Data": data})).into_response()
}
