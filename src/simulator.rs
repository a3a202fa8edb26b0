//! A fake Monogoto console API, served with axum.
//!
//! Used by the exporter's demo mode, its tests and its benchmarks. It knows
//! nothing of the exporter: it only imitates the service described in
//! `monogoto-api.md`, deterministically from a seed. Things connect and
//! disconnect over time, and the answers mix every documented (and
//! contradictory) response shape so a tolerant client is fully exercised.
//! [`Simulator::truth`] tells what an answer means, whatever shape it used.
//!
//! Fault injection ([`Simulator::add_fault`], `POST /_sim/faults`, or
//! `simulate --fault SPEC`) makes the API misbehave the ways the real one may:
//! slow or hung answers, 5xx bursts, 429s, 401s, broken, mistyped or huge bodies.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod budget;
pub use budget::PollSummary;

/// The service rejects larger pages; so do we.
const MAX_LIMIT: usize = 50;
/// How far back the connection history is searched for the last transitions.
const HISTORY_EPOCHS: i64 = 64;
/// Bound on the recorded /thing/status queries, so a long demo run does not grow forever.
const STATUS_QUERY_LOG_CAP: usize = 10_000;
/// Prune expired tokens only past this many, so a clock moved backwards rarely matters.
const TOKEN_PRUNE_THRESHOLD: usize = 4096;
/// Every block of this many consecutive Things holds each categorical shape (see `slot`).
const SHAPE_BLOCK: u64 = 20;
const THING_ID_PREFIX: &str = "ThingId_ICCID_";
/// No injected delay (hang or latency) holds an answer longer than this.
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(600);
/// What a rate-limited answer announces in `X-RateLimit-Limit` (the documented standard plan).
const RATE_LIMIT_PER_MINUTE: u64 = 60;
/// Window announced by a 429 that gives no `Retry-After`.
const RATE_LIMIT_WINDOW_SECS: u64 = 60;
/// Size of one streamed piece of an oversized body.
const OVERSIZED_CHUNK: usize = 64 * 1024;
/// The last instant an IMF-fixdate (four-digit year) can show: 9999-12-31T23:59:59Z.
const MAX_HTTP_DATE_SECS: i64 = 253_402_300_799;

// Tags keep the hash streams of different attributes independent.
const TAG_ICCID: u64 = 1;
const TAG_ICCID_F: u64 = 2;
const TAG_KIND: u64 = 3;
const TAG_IMSI: u64 = 4;
const TAG_MSISDN: u64 = 5;
const TAG_STATUS: u64 = 6;
const TAG_PHASE: u64 = 7;
const TAG_OBJECT: u64 = 8;
const TAG_EMPTY: u64 = 9;
const TAG_CONN_FIELD: u64 = 10;
const TAG_TIME_FMT: u64 = 11;
const TAG_OFFSET: u64 = 12;
const TAG_SESSION_MS: u64 = 13;
const TAG_CONNECTED: u64 = 14;
const TAG_SESSIONS: u64 = 15;
const TAG_THROUGHPUT: u64 = 16;
const TAG_SESSION_ID: u64 = 17;
const TAG_FORCED: u64 = 18;
const TAG_CUSTOMER: u64 = 19;
const TAG_SIGNATURE: u64 = 20;
const TAG_REFRESH: u64 = 21;
const TAG_IP: u64 = 22;

/// Settings of a [`Simulator`].
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    /// Fleet size.
    pub things: usize,
    pub seed: u64,
    /// `/thing/status` answers at most this many Things per page (None = up to `limit`).
    pub page_cap: Option<usize>,
    pub username: String,
    pub password: String,
    /// A long-lived token always accepted (unless revoked).
    pub static_token: String,
    /// JWT `exp` = now + this.
    pub token_lifetime: Duration,
    /// Length of one connection epoch.
    pub flap_period: Duration,
    /// Answers (`/things` and `/thing/status`) write the trailing `F` of an
    /// ICCID lower-case, as an API may; requests are matched whatever the case.
    pub lowercase_iccids: bool,
    /// Request budget as `(requests, period)` windows, all enforced at once;
    /// empty for none. Over-budget requests are answered 429.
    pub rate_limit: Vec<(u32, Duration)>,
    /// Which form of several `ThingIds` the status endpoint understands.
    pub thing_ids_format: ThingIdsForm,
}

/// How the simulated status endpoint reads several `ThingIds`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ThingIdsForm {
    /// `ThingIds=a,b` and `ThingIds=a&ThingIds=b` alike.
    #[default]
    Both,
    /// Only `ThingIds=a,b`: of a repeated parameter, the first counts.
    Comma,
    /// Only `ThingIds=a&ThingIds=b`: a comma-joined value names one (unknown)
    /// Thing, so such a request is answered `Success: true, Data: []`.
    Repeat,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            things: 100,
            seed: 1,
            page_cap: None,
            username: "demo".to_owned(),
            password: "demo-password".to_owned(),
            static_token: "sim-static-token".to_owned(),
            token_lifetime: Duration::from_secs(4 * 3600),
            flap_period: Duration::from_secs(120),
            rate_limit: Vec::new(),
            thing_ids_format: ThingIdsForm::Both,
            lowercase_iccids: false,
        }
    }
}

/// The API endpoints whose requests are counted (in JSON: `"auth"`, `"things"`, `"status"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimEndpoint {
    Auth,
    Things,
    Status,
}

/// How a status request naming a failing Thing fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// HTTP 500 `{"Success":false,"Message":"Internal Server Error"}`.
    ServerError,
    /// HTTP 200 `{"Success":false,"Message":"simulated failure","Data":null}`.
    SuccessFalse,
}

/// A fault-injection rule: which requests it takes over and what they get.
///
/// Rules are checked in the order they were added, for every request to an API
/// endpoint (`/Auth`, `/things`, `/thing/status`; never `/_sim/`). Each rule counts
/// the requests to its endpoint(s) since it was added, whatever other rules did with
/// them, so `after` and `count` are plain request numbers: the rule applies to
/// requests `after + 1 ..= after + count`. The first rule that applies decides the
/// answer; a [`FaultKind::Latency`] rule only delays it and lets later rules and the
/// normal handling go on. An exhausted rule stays in the list but no longer applies.
///
/// [`FromStr`] parses the compact form of `simulate --fault` (see [`FAULT_SPEC_HELP`]);
/// [`fmt::Display`] writes it back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub kind: FaultKind,
    /// The endpoint whose requests the rule sees; None = every API endpoint.
    #[serde(default)]
    pub endpoint: Option<SimEndpoint>,
    /// Let this many matching requests pass first (e.g. "401 after N requests").
    #[serde(default)]
    pub after: u64,
    /// Then fault this many matching requests; None = until cleared.
    #[serde(default)]
    pub count: Option<u64>,
}

/// What a faulted request gets. In JSON, tagged by `"type"` in snake_case, e.g.
/// `{"type": "status", "code": 503}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Delays the answer by this much (at most [`MAX_FAULT_DELAY`]), then answers
    /// as the later rules or the normal handling say.
    Latency { millis: u64 },
    /// Accepts the request and never answers, until the client gives up, the server
    /// shuts down, or [`MAX_FAULT_DELAY`] passes (then a 504).
    Hang,
    /// This HTTP status (400 to 599; anything else answers 500). 502, 503 and 504
    /// carry a short text body, as a load balancer sends; others the JSON envelope
    /// `{"Success": false, "Message": "<reason>", "Data": null}`.
    Status { code: u16 },
    /// 429 with `X-RateLimit-Limit: 60`, `X-RateLimit-Remaining: 0`,
    /// `X-RateLimit-Reset` (Unix seconds when the window ends: now plus the wait,
    /// or plus 60 s without `Retry-After`) and the `Retry-After` asked for. Both use
    /// the real clock, not the simulator's, since clients compare them with theirs.
    RateLimited { retry_after: RetryAfter },
    /// 401 `Unauthorized` whatever the token (on `/Auth`: 401 `Access denied`,
    /// what the service answers a refused login).
    Unauthorized,
    /// The normal answer with its body cut in the middle: status and headers as
    /// normal (so 200 for a good request), a strict prefix of the JSON.
    TruncatedJson,
    /// 200, `Content-Type: application/json`, and an HTML maintenance page.
    MalformedJson,
    /// The normal 200 answer with its values of the wrong JSON types
    /// (`ThingName: {}`, `ActiveSessions: "x"`, `LastConnectionTime: true`,
    /// `UplinkThroughput: "fast"`, `ConnectionStatus: 7`, ...) but every `ThingId`
    /// intact and `Success: true`. An error answer (401, 400) is sent as it is
    /// (the request still counts as faulted).
    WrongTypes,
    /// 200 `{"Success": false, "Message": "simulated failure", "Data": null}`.
    SuccessFalse,
    /// 200 with a valid JSON body of at least `bytes` bytes in the endpoint's shape,
    /// streamed in 64 KiB pieces without `Content-Length`.
    Oversized { bytes: u64 },
    /// HTTP `code` (429 unless given; 429 or 500 to 599) with `Retry-After: <value>`
    /// exactly as given, however absurd (huge, negative, not a number), and no
    /// `X-RateLimit-*` headers: for testing how clients read the header.
    RawRetryAfter {
        value: String,
        #[serde(default = "too_many_requests")]
        code: u16,
    },
    /// The normal answer plus `X-RateLimit-Remaining: 0` and
    /// `X-RateLimit-Reset: <value>` exactly as given.
    RawRateLimitReset { value: String },
}

fn too_many_requests() -> u16 {
    429
}

/// The `Retry-After` header of a [`FaultKind::RateLimited`] answer. In JSON:
/// `{"seconds": 2}`, `{"http_date": {"seconds_from_now": 2}}` or `"none"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfter {
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After: <IMF-fixdate>` this many seconds from now (rounded up to a whole second).
    HttpDate { seconds_from_now: u64 },
    /// No `Retry-After` header.
    None,
}

/// The syntax of `--fault SPEC`, for `--help` and error messages.
pub const FAULT_SPEC_HELP: &str = "\
SPEC is KIND[=VALUE] followed by optional ,OPTION=VALUE parts:
  latency=DURATION         delay the answer (200ms, 2s; a bare number is milliseconds)
  hang                     never answer (until the client gives up; at most 10 minutes)
  status=CODE              answer this HTTP status, 400 to 599
  rate_limited[=RETRY]     429 with X-RateLimit-* headers; RETRY is SECONDS or
                           retry_after:SECONDS (Retry-After in seconds), date:SECONDS
                           (Retry-After as an HTTP date that far ahead), or none (default)
  unauthorized             401 whatever the token
  truncated_json           the normal body cut in the middle
  malformed_json           200 with a body that is not JSON
  wrong_types              200, Success true, values of the wrong JSON types
  success_false            200 {\"Success\": false, ...}
  oversized=SIZE           200 with a streamed JSON body of at least SIZE bytes
                           (20MiB, 500KB, 1048576; KB/MB/GB are powers of 1000)
  raw_retry_after=[CODE:]VALUE
                           429 (or CODE: 429, 500 to 599) with Retry-After: VALUE
                           verbatim, e.g. 18446744073709551615 or -1
  raw_rate_limit_reset=VALUE
                           the normal answer plus X-RateLimit-Remaining: 0 and
                           X-RateLimit-Reset: VALUE verbatim, e.g. 1e300
                           (values with commas: add the rule as JSON instead)
options:
  endpoint=auth|things|status|all   which requests the rule sees (default all)
  after=N                  let N of them pass first (default 0)
  count=N                  then fault N of them (default: until cleared)
Rules apply in order; the first that applies answers, latency adds to the others.
Examples: status=503,count=5,endpoint=status  rate_limited=retry_after:2
          latency=200ms  hang,after=10  unauthorized,after=100  oversized=20MiB";

/// Why a fault SPEC (or a rule given to the control API) is not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseFaultError(String);

impl fmt::Display for ParseFaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseFaultError {}

fn spec_error(message: impl Into<String>) -> ParseFaultError {
    ParseFaultError(message.into())
}

impl FaultRule {
    /// A rule of this kind for every endpoint, from the first request, until cleared.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            endpoint: None,
            after: 0,
            count: None,
        }
    }

    /// Only requests to `endpoint` are seen by the rule.
    pub fn endpoint(mut self, endpoint: SimEndpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Lets `n` matching requests pass first.
    pub fn after(mut self, n: u64) -> Self {
        self.after = n;
        self
    }

    /// Faults only `n` matching requests.
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    /// The limits the parser and the control API enforce; `add_fault` takes any rule.
    fn check(&self) -> Result<(), ParseFaultError> {
        match &self.kind {
            FaultKind::Status { code } if !(400..=599).contains(code) => {
                return Err(spec_error(format!(
                    "status code must be between 400 and 599, got {code}"
                )));
            }
            FaultKind::RawRetryAfter { code, .. }
                if *code != 429 && !(500..=599).contains(code) =>
            {
                return Err(spec_error(format!(
                    "raw_retry_after answers 429 or 500 to 599, got {code}"
                )));
            }
            FaultKind::RawRetryAfter { value, .. } | FaultKind::RawRateLimitReset { value }
                if HeaderValue::from_str(value).is_err() =>
            {
                return Err(spec_error(format!(
                    "{value:?} cannot be sent as a header value"
                )));
            }
            _ => {}
        }
        if self.count == Some(0) {
            return Err(spec_error(
                "count must be at least 1 (leave it out to fault until cleared)",
            ));
        }
        Ok(())
    }

    /// Whether the `n`-th matching request (1-based) is in the rule's window.
    fn applies_to(&self, n: u64) -> bool {
        n > self.after && self.count.is_none_or(|c| n - self.after <= c)
    }

    fn exhausted(&self, matched: u64) -> bool {
        self.count
            .is_some_and(|c| matched >= self.after.saturating_add(c))
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latency { millis } => write!(f, "latency={millis}ms"),
            Self::Hang => f.write_str("hang"),
            Self::Status { code } => write!(f, "status={code}"),
            Self::RateLimited { retry_after } => match retry_after {
                RetryAfter::Seconds(s) => write!(f, "rate_limited=retry_after:{s}"),
                RetryAfter::HttpDate { seconds_from_now } => {
                    write!(f, "rate_limited=date:{seconds_from_now}")
                }
                RetryAfter::None => f.write_str("rate_limited"),
            },
            Self::Unauthorized => f.write_str("unauthorized"),
            Self::TruncatedJson => f.write_str("truncated_json"),
            Self::MalformedJson => f.write_str("malformed_json"),
            Self::WrongTypes => f.write_str("wrong_types"),
            Self::SuccessFalse => f.write_str("success_false"),
            Self::Oversized { bytes } => write!(f, "oversized={bytes}"),
            Self::RawRetryAfter { value, code: 429 } => write!(f, "raw_retry_after={value}"),
            Self::RawRetryAfter { value, code } => write!(f, "raw_retry_after={code}:{value}"),
            Self::RawRateLimitReset { value } => write!(f, "raw_rate_limit_reset={value}"),
        }
    }
}

impl fmt::Display for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(endpoint) = self.endpoint {
            write!(f, ",endpoint={}", endpoint_name(endpoint))?;
        }
        if self.after > 0 {
            write!(f, ",after={}", self.after)?;
        }
        if let Some(count) = self.count {
            write!(f, ",count={count}")?;
        }
        Ok(())
    }
}

impl FromStr for FaultRule {
    type Err = ParseFaultError;

    /// Parses `KIND[=VALUE][,OPTION=VALUE]...`; see [`FAULT_SPEC_HELP`].
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut parts = spec.split(',').map(str::trim);
        let head = parts.next().unwrap_or_default();
        if head.is_empty() {
            return Err(spec_error(
                "empty fault; expected KIND[=VALUE][,OPTION=VALUE]..., e.g. status=503,count=5",
            ));
        }
        let (name, value) = match head.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (head, None),
        };
        // Forgive `rate-limited` and `Status`: the canonical spelling is in --help.
        let name = name.to_ascii_lowercase().replace('-', "_");
        let mut rule = Self::new(parse_kind(&name, value)?);
        let mut seen: Vec<&str> = Vec::new();
        for part in parts {
            let Some((key, value)) = part.split_once('=') else {
                return Err(spec_error(if part.is_empty() {
                    "empty option (a stray comma?)".to_owned()
                } else {
                    format!("option {part:?} needs a value, as in {part}=...")
                }));
            };
            let (key, value) = (key.trim(), value.trim());
            if seen.contains(&key) {
                return Err(spec_error(format!("option {key} given twice")));
            }
            seen.push(key);
            match key {
                "endpoint" => rule.endpoint = parse_endpoint(value)?,
                "after" => rule.after = parse_count(key, value)?,
                "count" => rule.count = Some(parse_count(key, value)?),
                other => {
                    return Err(spec_error(format!(
                        "unknown option {other:?} (expected endpoint, after or count)"
                    )));
                }
            }
        }
        rule.check()?;
        Ok(rule)
    }
}

const FAULT_KINDS: &str = "latency, hang, status, rate_limited, unauthorized, truncated_json, \
                           malformed_json, wrong_types, success_false, oversized, \
                           raw_retry_after, raw_rate_limit_reset";

fn parse_kind(name: &str, value: Option<&str>) -> Result<FaultKind, ParseFaultError> {
    let needs = |example: &str| spec_error(format!("{name} needs a value, as in {example}"));
    let simple = |kind: FaultKind| match value {
        None => Ok(kind),
        Some(_) => Err(spec_error(format!("{name} takes no value"))),
    };
    match name {
        "latency" => {
            let v = value.ok_or_else(|| needs("latency=200ms"))?;
            Ok(FaultKind::Latency {
                millis: parse_millis(v)?,
            })
        }
        "status" => {
            let v = value.ok_or_else(|| needs("status=503"))?;
            let code = v
                .parse::<u16>()
                .map_err(|_| spec_error(format!("status code must be a number, got {v:?}")))?;
            Ok(FaultKind::Status { code })
        }
        "rate_limited" => Ok(FaultKind::RateLimited {
            retry_after: parse_retry_after(value)?,
        }),
        "oversized" => {
            let v = value.ok_or_else(|| needs("oversized=20MiB"))?;
            Ok(FaultKind::Oversized {
                bytes: parse_size(v)?,
            })
        }
        "raw_retry_after" => {
            let v = value.ok_or_else(|| needs("raw_retry_after=120"))?;
            // `503:120` answers 503; a value of its own never starts with three digits and a colon.
            let (code, raw) = match v.split_once(':') {
                Some((code, raw))
                    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    (code.parse::<u16>().unwrap_or(0), raw.trim())
                }
                _ => (too_many_requests(), v),
            };
            Ok(FaultKind::RawRetryAfter {
                value: raw.to_owned(),
                code,
            })
        }
        "raw_rate_limit_reset" => {
            let v = value.ok_or_else(|| needs("raw_rate_limit_reset=1e300"))?;
            Ok(FaultKind::RawRateLimitReset {
                value: v.to_owned(),
            })
        }
        "hang" => simple(FaultKind::Hang),
        "unauthorized" => simple(FaultKind::Unauthorized),
        "truncated_json" => simple(FaultKind::TruncatedJson),
        "malformed_json" => simple(FaultKind::MalformedJson),
        "wrong_types" => simple(FaultKind::WrongTypes),
        "success_false" => simple(FaultKind::SuccessFalse),
        other => Err(spec_error(format!(
            "unknown fault {other:?} (expected one of {FAULT_KINDS})"
        ))),
    }
}

fn endpoint_name(endpoint: SimEndpoint) -> &'static str {
    match endpoint {
        SimEndpoint::Auth => "auth",
        SimEndpoint::Things => "things",
        SimEndpoint::Status => "status",
    }
}

fn parse_endpoint(v: &str) -> Result<Option<SimEndpoint>, ParseFaultError> {
    match v.to_ascii_lowercase().as_str() {
        "auth" => Ok(Some(SimEndpoint::Auth)),
        "things" => Ok(Some(SimEndpoint::Things)),
        "status" => Ok(Some(SimEndpoint::Status)),
        "all" => Ok(None),
        _ => Err(spec_error(format!(
            "endpoint must be auth, things, status or all, got {v:?}"
        ))),
    }
}

fn parse_count(key: &str, v: &str) -> Result<u64, ParseFaultError> {
    v.parse::<u64>().map_err(|_| {
        spec_error(format!(
            "{key} must be a whole number of requests, got {v:?}"
        ))
    })
}

/// A bare number is milliseconds; otherwise a duration such as `200ms` or `2s`.
fn parse_millis(v: &str) -> Result<u64, ParseFaultError> {
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(ms);
    }
    let d = humantime::parse_duration(v)
        .map_err(|_| spec_error(format!("invalid duration {v:?} (try 200ms or 2s)")))?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(spec_error(format!(
            "latency must be whole milliseconds, got {v:?}"
        )));
    }
    u64::try_from(d.as_millis()).map_err(|_| spec_error(format!("latency {v:?} is too long")))
}

/// A bare number is seconds; otherwise a whole-second duration such as `2s` or `1m`.
fn parse_secs(v: &str) -> Result<u64, ParseFaultError> {
    if let Ok(s) = v.parse::<u64>() {
        return Ok(s);
    }
    match humantime::parse_duration(v) {
        Ok(d) if d.subsec_nanos() == 0 => Ok(d.as_secs()),
        _ => Err(spec_error(format!(
            "invalid wait {v:?} (whole seconds, e.g. 2 or 1m)"
        ))),
    }
}

fn parse_retry_after(value: Option<&str>) -> Result<RetryAfter, ParseFaultError> {
    let Some(v) = value else {
        return Ok(RetryAfter::None);
    };
    if v.eq_ignore_ascii_case("none") {
        return Ok(RetryAfter::None);
    }
    if let Some(s) = v.strip_prefix("date:") {
        return Ok(RetryAfter::HttpDate {
            seconds_from_now: parse_secs(s.trim())?,
        });
    }
    let s = v.strip_prefix("retry_after:").unwrap_or(v);
    parse_secs(s.trim()).map(RetryAfter::Seconds).map_err(|_| {
        spec_error(format!(
            "rate_limited takes SECONDS, retry_after:SECONDS, date:SECONDS or none, got {v:?}"
        ))
    })
}

/// `1048576`, `500KB` (10^3), `20MiB` (2^20), ... up to GB/GiB; unit case does not matter.
fn parse_size(v: &str) -> Result<u64, ParseFaultError> {
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(digits);
    let invalid = || spec_error(format!("invalid size {v:?} (try 20MiB, 500KB or 1048576)"));
    let number = number.parse::<u64>().map_err(|_| invalid())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| spec_error(format!("size {v:?} is too large")))
}

/// A rule and what it has seen.
struct FaultSlot {
    rule: FaultRule,
    /// Requests to the rule's endpoint(s) since it was added.
    matched: u64,
    /// Of those, the ones the rule applied to (delayed or answered).
    applied: u64,
}

/// What the rules decided for one request.
struct FaultPlan {
    delay: Duration,
    fault: Option<FaultKind>,
}

/// The canonical state of one Thing, as the HTTP answer means it.
#[derive(Clone, Debug, PartialEq)]
pub struct ThingTruth {
    pub iccid: String,
    pub thing_name: String,
    pub imsi: String,
    /// Empty when the API says null.
    pub msisdn: String,
    pub provision_status: String,
    pub connected: bool,
    pub active_sessions: usize,
    /// Sum over active sessions.
    pub uplink_throughput: f64,
    /// Sum over active sessions.
    pub downlink_throughput: f64,
    /// Epoch seconds (whole); None = null in JSON.
    pub last_connection: Option<f64>,
    /// Epoch seconds (whole); None = null in JSON.
    pub last_disconnection: Option<f64>,
    /// Earliest LastConnectedTime over active sessions, epoch seconds (whole).
    pub session_start: Option<f64>,
}

/// A simulator serving in a background task; the task stops when this drops.
pub struct RunningSimulator {
    pub addr: SocketAddr,
    pub simulator: Simulator,
    task: JoinHandle<std::io::Result<()>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl RunningSimulator {
    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        // The signal makes open keep-alive connections close (they run in their
        // own tasks, which aborting the accept loop alone would leave behind).
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// The fake console API. Cheap to clone; clones share all state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
    /// Cancelled when the server this clone is serving for stops, so hung and
    /// delayed answers end and graceful shutdown does not wait for them.
    release: CancellationToken,
}

struct Inner {
    seed: u64,
    username: String,
    password: String,
    static_token: String,
    token_lifetime_secs: i64,
    flap_secs: i64,
    customer_id: String,
    user_id: String,
    fleet: Vec<ThingStatic>,
    /// Keyed by the canonical ICCID (upper-case `F`); see [`Inner::index_of`].
    by_iccid: HashMap<String, usize>,
    lowercase_iccids: bool,
    counters: [AtomicU64; 3],
    state: Mutex<MutableState>,
    budget: Option<budget::ServerBudget>,
    thing_ids_form: ThingIdsForm,
    /// Requests refused with 429 for the budget.
    budget_refusals: AtomicU64,
    polls: budget::PollLog,
}

struct MutableState {
    removed: Vec<bool>,
    removed_count: usize,
    overrides: HashMap<usize, Override>,
    failing: HashMap<usize, FailMode>,
    /// Issued token -> exp (epoch seconds).
    tokens: HashMap<String, i64>,
    static_revoked: bool,
    next_jti: u64,
    page_cap: Option<usize>,
    frozen: Option<SystemTime>,
    status_queries: VecDeque<String>,
    faults: Vec<FaultSlot>,
    faults_served: u64,
    /// Provisioning statuses set through the control API, by fleet index.
    statuses: HashMap<usize, String>,
    /// Things a status request may not name: it is answered 400.
    refused: HashSet<usize>,
}

impl MutableState {
    fn now_secs(&self) -> i64 {
        epoch_secs(self.frozen.unwrap_or_else(SystemTime::now))
    }
}

#[derive(Clone, Copy, Debug)]
struct Override {
    connected: bool,
    at: i64,
}

/// What never changes about a Thing.
struct ThingStatic {
    index: u64,
    iccid: String,
    name: String,
    imsi: String,
    msisdn: Option<String>,
    status: &'static str,
    connectable: bool,
    description: String,
    phase: i64,
    shape: Shape,
}

/// How a Thing's status is encoded; fixed per Thing.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// Exactly one session is sent as an object rather than an array.
    single_as_object: bool,
    empty: EmptySessions,
    connection_status: bool,
    time: TimeFormat,
    session_ms: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum EmptySessions {
    Array,
    Null,
    Missing,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum TimeFormat {
    EpochMs,
    EpochSecs,
    MsString,
    SqlUtc,
    Rfc3339Utc,
    /// Offset in minutes east of UTC, never zero.
    Rfc3339Offset(i32),
}

struct Session {
    start: i64,
    uplink: u64,
    downlink: u64,
}

/// The time-dependent state of a Thing at one instant.
struct Dynamic {
    sessions: Vec<Session>,
    last_connection: Option<i64>,
    last_disconnection: Option<i64>,
}

impl Simulator {
    pub fn new(config: SimulatorConfig) -> Self {
        let seed = config.seed;
        let fleet = build_fleet(seed, config.things, secs_i64(config.flap_period).max(1));
        let by_iccid = fleet
            .iter()
            .enumerate()
            .map(|(i, t)| (t.iccid.clone(), i))
            .collect();
        let state = MutableState {
            removed: vec![false; fleet.len()],
            removed_count: 0,
            overrides: HashMap::new(),
            failing: HashMap::new(),
            tokens: HashMap::new(),
            static_revoked: false,
            next_jti: 1,
            page_cap: config.page_cap,
            frozen: None,
            status_queries: VecDeque::new(),
            faults: Vec::new(),
            faults_served: 0,
            statuses: HashMap::new(),
            refused: HashSet::new(),
        };
        let inner = Inner {
            seed,
            username: config.username,
            password: config.password,
            static_token: config.static_token,
            token_lifetime_secs: secs_i64(config.token_lifetime),
            // A zero period would divide by zero; one second is the finest epoch.
            flap_secs: secs_i64(config.flap_period).max(1),
            customer_id: format!("cid_sim-{:016x}", hash(&[seed, TAG_CUSTOMER])),
            user_id: format!("uid_sim-{:016x}", hash(&[seed, TAG_CUSTOMER, 1])),
            fleet,
            by_iccid,
            lowercase_iccids: config.lowercase_iccids,
            counters: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            state: Mutex::new(state),
            budget: budget::ServerBudget::new(&config.rate_limit),
            thing_ids_form: config.thing_ids_format,
            budget_refusals: AtomicU64::new(0),
            polls: budget::PollLog::new(config.things),
        };
        Self {
            inner: Arc::new(inner),
            release: CancellationToken::new(),
        }
    }

    /// The API plus the `/_sim` control API. Served other than by [`serve`](Self::serve)
    /// or [`spawn`](Self::spawn), hung requests end only after [`MAX_FAULT_DELAY`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/Auth", post(handle_auth))
            .route("/things", get(handle_things))
            .route("/thing/status", get(handle_status))
            .route("/_sim/things/{iccid}/connected", post(handle_set_connected))
            .route("/_sim/things/{iccid}", delete(handle_remove))
            .route("/_sim/stats", get(handle_stats))
            .route("/_sim/polls", get(handle_polls).delete(handle_reset_polls))
            .route(
                "/_sim/faults",
                get(handle_list_faults)
                    .post(handle_add_faults)
                    .delete(handle_clear_faults),
            )
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // A token per server: stopping one never releases another's hung requests.
        let release = CancellationToken::new();
        let server = Self {
            inner: self.inner,
            release: release.clone(),
        };
        // Also when this future is dropped (RunningSimulator aborts its task).
        let _release_on_drop = release.clone().drop_guard();
        axum::serve(listener, server.router())
            .with_graceful_shutdown(async move {
                shutdown.await;
                // Graceful shutdown waits for answers in flight; hung ones must end now.
                release.cancel();
            })
            .await
    }

    /// Binds 127.0.0.1:0 and serves in a background task; the task stops when the returned handle drops.
    pub async fn spawn(self) -> std::io::Result<RunningSimulator> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let server = self.clone();
        let task = tokio::spawn(async move {
            // A dropped sender also ends the wait, which is what we want.
            server
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
        });
        Ok(RunningSimulator {
            addr,
            simulator: self,
            task,
            shutdown: Some(tx),
        })
    }

    /// Current fleet, in fleet order.
    pub fn iccids(&self) -> Vec<String> {
        let st = self.lock();
        self.inner
            .fleet
            .iter()
            .enumerate()
            .filter(|(i, _)| !st.removed[*i])
            .map(|(_, t)| t.iccid.clone())
            .collect()
    }

    /// Canonical state at the simulator's current time.
    pub fn truth(&self, iccid: &str) -> Option<ThingTruth> {
        let idx = self.inner.index_of(iccid)?;
        let (now, ov) = {
            let st = self.lock();
            if st.removed[idx] {
                return None;
            }
            (st.now_secs(), st.overrides.get(&idx).copied())
        };
        let thing = &self.inner.fleet[idx];
        let d = self.inner.dynamic(thing, now, ov);
        Some(truth_of(thing, &d))
    }

    /// Counts every request received, whatever the answer.
    pub fn requests(&self, endpoint: SimEndpoint) -> u64 {
        self.inner.counters[endpoint as usize].load(Ordering::Relaxed)
    }

    /// Zeroes the request counters and [`faults_served`](Self::faults_served), and
    /// forgets the recorded status queries. Fault rules keep their own counts.
    /// Sets the `ProvisionStatus` a Thing's status answers carry (None: its own).
    pub fn set_provision_status(&self, iccid: &str, status: Option<&str>) {
        let Some(&i) = self.inner.by_iccid.get(iccid) else {
            return;
        };
        let mut st = self.lock();
        match status {
            Some(s) => st.statuses.insert(i, s.to_owned()),
            None => st.statuses.remove(&i),
        };
    }

    /// Makes every status request that names this Thing fail with 400
    /// "Invalid Input Data", as the API documents for input it refuses.
    pub fn refuse_thing(&self, iccid: &str) {
        if let Some(&i) = self.inner.by_iccid.get(iccid) {
            self.lock().refused.insert(i);
        }
    }

    /// Requests refused with 429 because they were over the budget.
    pub fn budget_refusals(&self) -> u64 {
        self.inner.budget_refusals.load(Ordering::Relaxed)
    }

    /// How often Things were answered since the log was last reset; the
    /// selection is the Things whose status is neither SUSPENDED nor RETIRED.
    pub fn poll_summary(&self) -> PollSummary {
        let st = self.lock();
        let inner = &self.inner;
        let active = |i: usize| {
            let status = st
                .statuses
                .get(&i)
                .map_or(inner.fleet[i].status, String::as_str);
            !matches!(status, "SUSPENDED" | "RETIRED")
        };
        inner
            .polls
            .summary(std::time::Instant::now(), Some(&active))
    }

    /// How many times a Thing was answered, and its longest gap between two answers.
    pub fn polls_of(&self, iccid: &str) -> Option<(u64, Duration)> {
        let i = *self.inner.by_iccid.get(iccid)?;
        self.inner.polls.of(i)
    }

    pub fn reset_polls(&self) {
        self.inner.polls.reset();
    }

    pub fn reset_counters(&self) {
        for c in &self.inner.counters {
            c.store(0, Ordering::Relaxed);
        }
        let mut st = self.lock();
        st.status_queries.clear();
        st.faults_served = 0;
    }

    /// Adds a fault rule after the existing ones; see [`FaultRule`] for how rules apply.
    pub fn add_fault(&self, rule: FaultRule) {
        self.lock().faults.push(FaultSlot {
            rule,
            matched: 0,
            applied: 0,
        });
    }

    /// Removes every fault rule; the API answers normally again. Requests already
    /// hung or delayed stay so; `faults_served` keeps its count.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Requests answered with a fault (Latency only delays, so it does not count),
    /// since the start or the last [`reset_counters`](Self::reset_counters).
    pub fn faults_served(&self) -> u64 {
        self.lock().faults_served
    }

    /// Raw query strings of the /thing/status requests, in order (the last 10,000).
    pub fn status_queries(&self) -> Vec<String> {
        self.lock().status_queries.iter().cloned().collect()
    }

    /// Forces a Thing connected/disconnected; None returns it to its timeline.
    pub fn set_connected(&self, iccid: &str, connected: Option<bool>) {
        let Some(idx) = self.inner.index_of(iccid) else {
            return;
        };
        let mut st = self.lock();
        match connected {
            Some(connected) => {
                let at = st.now_secs();
                st.overrides.insert(idx, Override { connected, at });
            }
            None => {
                st.overrides.remove(&idx);
            }
        }
    }

    /// The Thing leaves the fleet: no longer in /things nor in status answers.
    pub fn remove_thing(&self, iccid: &str) {
        if let Some(idx) = self.inner.index_of(iccid) {
            let mut st = self.lock();
            if !st.removed[idx] {
                st.removed[idx] = true;
                st.removed_count += 1;
            }
        }
    }

    /// Any status request whose ThingIds include this Thing fails this way.
    pub fn set_failing(&self, iccid: &str, mode: Option<FailMode>) {
        let Some(idx) = self.inner.index_of(iccid) else {
            return;
        };
        let mut st = self.lock();
        match mode {
            Some(mode) => st.failing.insert(idx, mode),
            None => st.failing.remove(&idx),
        };
    }

    /// Every token issued so far (and the static token) answers 401 from now on; new logins work.
    pub fn revoke_tokens(&self) {
        let mut st = self.lock();
        st.tokens.clear();
        st.static_revoked = true;
    }

    pub fn set_page_cap(&self, cap: Option<usize>) {
        self.lock().page_cap = cap;
    }

    /// Freezes the simulator clock at `at`; None = real time again.
    pub fn set_time(&self, at: Option<SystemTime>) {
        self.lock().frozen = at;
    }

    /// Moves a frozen clock forward (freezes at now+by if not frozen).
    pub fn advance_time(&self, by: Duration) {
        let mut st = self.lock();
        let base = st.frozen.unwrap_or_else(SystemTime::now);
        // Overflow is out of any sensible range: keep the clock where it is.
        st.frozen = Some(base.checked_add(by).unwrap_or(base));
    }

    pub fn static_token(&self) -> String {
        self.inner.static_token.clone()
    }

    /// (username, password).
    pub fn credentials(&self) -> (String, String) {
        (self.inner.username.clone(), self.inner.password.clone())
    }

    fn lock(&self) -> MutexGuard<'_, MutableState> {
        // A panic elsewhere while holding the lock leaves consistent-enough
        // state for a simulator; keep serving rather than cascade panics.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, endpoint: SimEndpoint) {
        self.inner.counters[endpoint as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Runs one request to `endpoint` past the fault rules, counting it in each.
    fn plan_faults(&self, endpoint: SimEndpoint) -> FaultPlan {
        let mut st = self.lock();
        let mut plan = FaultPlan {
            delay: Duration::ZERO,
            fault: None,
        };
        for slot in &mut st.faults {
            if slot.rule.endpoint.is_some_and(|e| e != endpoint) {
                continue;
            }
            slot.matched = slot.matched.saturating_add(1);
            // Later rules still count the request, so their `after` stays a plain request number.
            if plan.fault.is_some() || !slot.rule.applies_to(slot.matched) {
                continue;
            }
            slot.applied = slot.applied.saturating_add(1);
            match &slot.rule.kind {
                FaultKind::Latency { millis } => {
                    plan.delay = plan.delay.saturating_add(Duration::from_millis(*millis));
                }
                kind => plan.fault = Some(kind.clone()),
            }
        }
        if plan.fault.is_some() {
            st.faults_served = st.faults_served.saturating_add(1);
        }
        plan
    }

    /// Sleeps for `d` (at most [`MAX_FAULT_DELAY`]); false if the server stopped first.
    async fn fault_delay(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d.min(MAX_FAULT_DELAY)) => true,
            () = self.release.cancelled() => false,
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return false;
        };
        let token = token.trim();
        let st = self.lock();
        if token == self.inner.static_token {
            return !st.static_revoked;
        }
        let now = st.now_secs();
        st.tokens.get(token).is_some_and(|&exp| now < exp)
    }

    /// Issues a JWT whose payload a client can read without the key.
    fn issue_token(&self) -> String {
        let mut st = self.lock();
        let now = st.now_secs();
        let jti = st.next_jti;
        st.next_jti += 1;
        let exp = now.saturating_add(self.inner.token_lifetime_secs);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = json!({"sub": self.inner.username, "exp": exp, "iat": now, "jti": jti});
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        // Nobody verifies the signature; it only has to look like 32 bytes of HMAC.
        let sig: Vec<u8> = (0..4u64)
            .flat_map(|k| hash(&[self.inner.seed, TAG_SIGNATURE, jti, k]).to_be_bytes())
            .collect();
        let token = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(sig));
        if st.tokens.len() >= TOKEN_PRUNE_THRESHOLD {
            st.tokens.retain(|_, e| *e > now);
        }
        st.tokens.insert(token.clone(), exp);
        token
    }
}

impl Inner {
    /// A Thing by its ICCID, whatever the case of its trailing `F`.
    fn index_of(&self, iccid: &str) -> Option<usize> {
        match self.by_iccid.get(iccid) {
            Some(&idx) => Some(idx),
            None => self.by_iccid.get(&iccid.to_ascii_uppercase()).copied(),
        }
    }

    /// The ICCID as this API writes it in answers.
    fn answered_iccid(&self, t: &ThingStatic) -> String {
        if self.lowercase_iccids {
            t.iccid.to_ascii_lowercase()
        } else {
            t.iccid.clone()
        }
    }

    fn epoch_of(&self, t: &ThingStatic, now: i64) -> i64 {
        now.saturating_sub(t.phase).div_euclid(self.flap_secs)
    }

    fn epoch_start(&self, t: &ThingStatic, epoch: i64) -> i64 {
        epoch.saturating_mul(self.flap_secs).saturating_add(t.phase)
    }

    fn connected_in(&self, t: &ThingStatic, epoch: i64) -> bool {
        t.connectable && hash(&[self.seed, TAG_CONNECTED, t.index, epoch as u64]) % 100 < 80
    }

    fn throughput(&self, parts: &[u64]) -> (u64, u64) {
        let h = hash(parts);
        (h % 500_001, (h >> 32) % 500_001)
    }

    /// The Thing's state at `now` following its own timeline.
    fn timeline(&self, t: &ThingStatic, now: i64) -> Dynamic {
        let epoch = self.epoch_of(t, now);
        let mut sessions = Vec::new();
        if self.connected_in(t, epoch) {
            let start = self.epoch_start(t, epoch);
            let h = hash(&[self.seed, TAG_SESSIONS, t.index, epoch as u64]);
            for n in 0..2u64 {
                let session_start = if n == 0 {
                    start
                } else {
                    // The second session opens a few seconds into the epoch, and
                    // only counts once it has opened so nothing lies in the future.
                    let spread = (self.flap_secs - 1).clamp(1, 60) as u64;
                    start.saturating_add(1 + ((h >> 8) % spread) as i64)
                };
                if n == 1 && (h % 10 >= 4 || session_start > now) {
                    break;
                }
                let (uplink, downlink) =
                    self.throughput(&[self.seed, TAG_THROUGHPUT, t.index, epoch as u64, n]);
                sessions.push(Session {
                    start: session_start,
                    uplink,
                    downlink,
                });
            }
        }
        let mut last_connection = None;
        let mut last_disconnection = None;
        let mut current = self.connected_in(t, epoch);
        for k in 0..HISTORY_EPOCHS {
            let e = epoch.saturating_sub(k);
            let previous = self.connected_in(t, e.saturating_sub(1));
            if current && !previous && last_connection.is_none() {
                last_connection = Some(self.epoch_start(t, e));
            }
            if !current && previous && last_disconnection.is_none() {
                last_disconnection = Some(self.epoch_start(t, e));
            }
            if last_connection.is_some() && last_disconnection.is_some() {
                break;
            }
            current = previous;
        }
        Dynamic {
            sessions,
            last_connection,
            last_disconnection,
        }
    }

    /// The Thing's state at `now`, honouring a set_connected override.
    fn dynamic(&self, t: &ThingStatic, now: i64, ov: Option<Override>) -> Dynamic {
        let Some(ov) = ov else {
            return self.timeline(t, now);
        };
        // The history before the override is the timeline's as of that moment.
        let before = self.timeline(t, ov.at);
        if ov.connected {
            let (uplink, downlink) =
                self.throughput(&[self.seed, TAG_FORCED, t.index, ov.at as u64]);
            Dynamic {
                sessions: vec![Session {
                    start: ov.at,
                    uplink,
                    downlink,
                }],
                last_connection: Some(ov.at),
                last_disconnection: before.last_disconnection,
            }
        } else {
            Dynamic {
                sessions: Vec::new(),
                last_connection: before.last_connection,
                last_disconnection: Some(ov.at),
            }
        }
    }

    fn render_thing(&self, t: &ThingStatic) -> Value {
        let iccid = self.answered_iccid(t);
        json!({
            "ThingId": format!("{THING_ID_PREFIX}{iccid}"),
            "ThingName": t.name,
            "ExternalUniqueId": iccid,
            "State": t.status,
            "CustomerId": self.customer_id,
            "ThingDescription": t.description,
        })
    }

    fn render_status(&self, t: &ThingStatic, d: &Dynamic) -> Value {
        let mut m = Map::new();
        m.insert(
            "ThingId".into(),
            json!(format!("{THING_ID_PREFIX}{}", self.answered_iccid(t))),
        );
        m.insert("CustomerId".into(), json!(self.customer_id));
        m.insert("ThingName".into(), json!(t.name));
        m.insert("ThingDescription".into(), json!(t.description));
        m.insert("ProvisionStatus".into(), json!(t.status));
        if t.shape.connection_status {
            let s = if d.sessions.is_empty() {
                "DISCONNECTED"
            } else {
                "CONNECTED"
            };
            m.insert("ConnectionStatus".into(), json!(s));
        }
        let sessions: Vec<Value> = d
            .sessions
            .iter()
            .enumerate()
            .map(|(n, s)| self.render_session(t, s, n as u64))
            .collect();
        match (sessions.len(), t.shape.empty) {
            (0, EmptySessions::Missing) => {}
            (0, EmptySessions::Null) => {
                m.insert("ActiveSessions".into(), Value::Null);
            }
            (1, _) if t.shape.single_as_object => {
                let only = sessions.into_iter().next().unwrap_or(Value::Null);
                m.insert("ActiveSessions".into(), only);
            }
            _ => {
                m.insert("ActiveSessions".into(), Value::Array(sessions));
            }
        }
        m.insert("ActiveIMSI".into(), json!(t.imsi));
        m.insert(
            "LastConnectionTime".into(),
            encode_time(d.last_connection, t.shape.time),
        );
        m.insert(
            "LastDisconnectionTime".into(),
            encode_time(d.last_disconnection, t.shape.time),
        );
        m.insert("MSISDN".into(), json!(t.msisdn));
        Value::Object(m)
    }

    fn render_session(&self, t: &ThingStatic, s: &Session, n: u64) -> Value {
        let id = hash(&[self.seed, TAG_SESSION_ID, t.index, s.start as u64, n]);
        let ip = hash(&[self.seed, TAG_IP, t.index, s.start as u64, n]);
        let connected_time = if t.shape.session_ms {
            json!(s.start.saturating_mul(1000))
        } else {
            json!(s.start)
        };
        json!({
            "ActiveSessionId": format!("{id:016x}"),
            "ApnName": "data.mono",
            "IPAddress": format!("10.{}.{}.{}", (ip >> 16) & 0xff, (ip >> 8) & 0xff, (ip & 0xfe) + 1),
            "LastConnectedTime": connected_time,
            "UplinkThroughput": s.uplink,
            "DownlinkThroughput": s.downlink,
        })
    }
}

fn truth_of(t: &ThingStatic, d: &Dynamic) -> ThingTruth {
    ThingTruth {
        iccid: t.iccid.clone(),
        thing_name: t.name.clone(),
        imsi: t.imsi.clone(),
        msisdn: t.msisdn.clone().unwrap_or_default(),
        provision_status: t.status.to_owned(),
        connected: !d.sessions.is_empty(),
        active_sessions: d.sessions.len(),
        uplink_throughput: d.sessions.iter().map(|s| s.uplink as f64).sum(),
        downlink_throughput: d.sessions.iter().map(|s| s.downlink as f64).sum(),
        last_connection: d.last_connection.map(|s| s as f64),
        last_disconnection: d.last_disconnection.map(|s| s as f64),
        session_start: d.sessions.iter().map(|s| s.start).min().map(|s| s as f64),
    }
}

fn encode_time(secs: Option<i64>, format: TimeFormat) -> Value {
    let Some(secs) = secs else {
        return Value::Null;
    };
    let ms = secs.saturating_mul(1000);
    let utc = chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0);
    match (format, utc) {
        (TimeFormat::EpochSecs, _) => json!(secs),
        (TimeFormat::MsString, _) => json!(ms.to_string()),
        (TimeFormat::SqlUtc, Some(dt)) => json!(dt.format("%Y-%m-%d %H:%M:%S").to_string()),
        (TimeFormat::Rfc3339Utc, Some(dt)) => {
            json!(dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        (TimeFormat::Rfc3339Offset(minutes), Some(dt)) => {
            match chrono::FixedOffset::east_opt(minutes * 60) {
                Some(offset) => json!(
                    dt.with_timezone(&offset)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
                ),
                None => json!(ms),
            }
        }
        // Epoch ms, and the fallback for instants chrono cannot represent.
        _ => json!(ms),
    }
}

fn build_fleet(seed: u64, count: usize, flap_secs: i64) -> Vec<ThingStatic> {
    let mut seen = HashSet::with_capacity(count);
    (0..count as u64)
        .map(|index| {
            // Re-hash on the (rare) collision so every ICCID is distinct.
            let mut attempt = 0u64;
            let digits = loop {
                let d = hash(&[seed, TAG_ICCID, index, attempt]) % 1_000_000_000_000_000;
                if seen.insert(d) {
                    break d;
                }
                attempt += 1;
            };
            let f = if slot(seed, TAG_ICCID_F, index).is_multiple_of(10) {
                "F"
            } else {
                ""
            };
            let iccid = format!("8988{digits:015}{f}");

            let name = match index {
                // Nasty names at fixed indices so any fleet of >= 10 exercises label escaping.
                3 => r#"meter "north" \ 7"#.to_owned(),
                5 => "tracker-00005\nspare".to_owned(),
                7 => "Zähler-東京-🚚".to_owned(),
                _ => {
                    let kind = ["tracker", "meter", "gateway"]
                        [(hash(&[seed, TAG_KIND, index]) % 3) as usize];
                    format!("{kind}-{index:05}")
                }
            };
            let imsi = format!(
                "90140{:010}",
                hash(&[seed, TAG_IMSI, index]) % 10_000_000_000
            );
            let h = hash(&[seed, TAG_MSISDN, index]);
            let msisdn =
                (!h.is_multiple_of(8)).then(|| format!("+44{:010}", (h >> 8) % 10_000_000_000));

            // Slots rather than plain hashes so every block of 20 consecutive
            // Things holds each value; 16 of 20 ACTIVE is the ~80% wanted.
            let status_slot = slot(seed, TAG_STATUS, index);
            let status = match status_slot {
                0..=15 => "ACTIVE",
                16 => "PROVISIONED",
                17 => "TEST_ACTIVE",
                18 => "SUSPENDED",
                _ => "RETIRED",
            };
            let connectable = matches!(status, "ACTIVE" | "TEST_ACTIVE");
            // Never-connecting Things are always empty, so tying two of them to
            // null and missing guarantees both shapes in every block.
            let empty = match status_slot {
                16 => EmptySessions::Null,
                18 => EmptySessions::Missing,
                _ => match hash(&[seed, TAG_EMPTY, index]) % 3 {
                    0 => EmptySessions::Array,
                    1 => EmptySessions::Null,
                    _ => EmptySessions::Missing,
                },
            };
            // Each format has >= 3 Things per block and only 3 Things per block
            // never connect, so every format shows up with a non-null time.
            let time = match slot(seed, TAG_TIME_FMT, index) % 6 {
                0 => TimeFormat::EpochMs,
                1 => TimeFormat::EpochSecs,
                2 => TimeFormat::MsString,
                3 => TimeFormat::SqlUtc,
                4 => TimeFormat::Rfc3339Utc,
                _ => {
                    let offsets = [120, -300, 330, 60];
                    TimeFormat::Rfc3339Offset(
                        offsets[(hash(&[seed, TAG_OFFSET, index]) % 4) as usize],
                    )
                }
            };
            let shape = Shape {
                single_as_object: hash(&[seed, TAG_OBJECT, index]).is_multiple_of(2),
                empty,
                connection_status: !slot(seed, TAG_CONN_FIELD, index).is_multiple_of(4),
                time,
                session_ms: slot(seed, TAG_SESSION_MS, index).is_multiple_of(2),
            };
            ThingStatic {
                index,
                iccid,
                name,
                imsi,
                msisdn,
                status,
                connectable,
                description: format!("Simulated SIM #{index}"),
                phase: (hash(&[seed, TAG_PHASE, index]) % flap_secs as u64) as i64,
                shape,
            }
        })
        .collect()
}

/// Position of a Thing in its block of 20 for one attribute: a seed-dependent
/// rotation of the index, so each block holds every slot exactly once.
fn slot(seed: u64, tag: u64, index: u64) -> u64 {
    (index + hash(&[seed, tag]) % SHAPE_BLOCK) % SHAPE_BLOCK
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Order-sensitive hash of a few words; the source of all pseudo-randomness.
fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x6A09_E667_F3BC_C908, |acc, &p| {
        splitmix64(acc ^ splitmix64(p))
    })
}

fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Whole epoch seconds, floored (also before 1970).
fn epoch_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => secs_i64(d),
        Err(e) => {
            let d = e.duration();
            let whole = secs_i64(d);
            let ceil = if d.subsec_nanos() > 0 {
                whole.saturating_add(1)
            } else {
                whole
            };
            ceil.saturating_neg()
        }
    }
}

// ---------------------------------------------------------------- HTTP

fn plain(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

fn envelope_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"Success": false, "Message": message, "Data": null})),
    )
        .into_response()
}

fn unauthorized() -> Response {
    plain(StatusCode::UNAUTHORIZED, "Unauthorized")
}

/// Splits a raw query into decoded pairs, keeping repeats and order (axum's
/// Query would keep only one value per key).
fn parse_query(raw: &str) -> Result<Vec<(String, String)>, String> {
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

async fn handle_auth(State(sim): State<Simulator>, body: Bytes) -> Response {
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

async fn handle_things(
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

async fn handle_status(
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
    let ids: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "ThingIds")
        .take(if form == ThingIdsForm::Comma {
            1
        } else {
            usize::MAX
        })
        .flat_map(|(_, v)| {
            if form == ThingIdsForm::Repeat {
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

// ---------------------------------------------------------------- faults

/// Answers one API request: as `normal` does, unless a fault rule says otherwise.
async fn with_faults(
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
fn http_date(epoch_secs: i64) -> String {
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

// ---------------------------------------------------------------- control

/// Index of a Thing still in the fleet.
fn control_target(sim: &Simulator, iccid: &str) -> Option<usize> {
    let idx = sim.inner.index_of(iccid)?;
    (!sim.lock().removed[idx]).then_some(idx)
}

async fn handle_set_connected(
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

async fn handle_remove(State(sim): State<Simulator>, Path(iccid): Path<String>) -> Response {
    if control_target(&sim, &iccid).is_none() {
        return plain(StatusCode::NOT_FOUND, format!("unknown iccid {iccid}"));
    }
    sim.remove_thing(&iccid);
    StatusCode::NO_CONTENT.into_response()
}

async fn handle_stats(State(sim): State<Simulator>) -> Response {
    Json(json!({
        "auth": sim.requests(SimEndpoint::Auth),
        "things": sim.requests(SimEndpoint::Things),
        "status": sim.requests(SimEndpoint::Status),
    }))
    .into_response()
}

/// `GET /_sim/polls`: how often the Things were answered since the last reset.
async fn handle_polls(State(sim): State<Simulator>) -> Response {
    let mut summary = json!(sim.poll_summary());
    summary["budget_refusals"] = json!(sim.budget_refusals());
    Json(summary).into_response()
}

async fn handle_reset_polls(State(sim): State<Simulator>) -> Response {
    sim.reset_polls();
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_sim/faults`: one rule or an array; a rule is JSON or a SPEC string.
/// All or nothing: one bad rule adds none.
async fn handle_add_faults(State(sim): State<Simulator>, body: Bytes) -> Response {
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
async fn handle_list_faults(State(sim): State<Simulator>) -> Response {
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

async fn handle_clear_faults(State(sim): State<Simulator>) -> Response {
    sim.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const T0: u64 = 1_750_000_000;

    fn config(things: usize, seed: u64) -> SimulatorConfig {
        SimulatorConfig {
            things,
            seed,
            ..SimulatorConfig::default()
        }
    }

    /// A simulator whose clock is frozen at T0.
    fn frozen(things: usize, seed: u64) -> Simulator {
        let sim = Simulator::new(config(things, seed));
        sim.set_time(Some(UNIX_EPOCH + Duration::from_secs(T0)));
        sim
    }

    fn client() -> reqwest::Client {
        // Bypass any proxy from the environment: the simulator is on loopback.
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
    }

    async fn login_raw(base: &str, body: &str) -> (u16, String) {
        let resp = client()
            .post(format!("{base}/Auth"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    async fn login(run: &RunningSimulator) -> String {
        let (user, password) = run.simulator.credentials();
        let body = json!({"UserName": user, "Password": password}).to_string();
        let (code, text) = login_raw(&run.url(), &body).await;
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        v["token"].as_str().expect("token").to_owned()
    }

    async fn get(run: &RunningSimulator, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = client().get(format!("{}{path}", run.url()));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("send");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    async fn get_json(run: &RunningSimulator, path: &str, token: &str) -> Value {
        let (code, text) = get(run, path, Some(token)).await;
        assert_eq!(code, 200, "{path}: {text}");
        serde_json::from_str(&text).expect("json")
    }

    fn ids_param(iccids: &[String]) -> String {
        iccids
            .iter()
            .map(|i| format!("{THING_ID_PREFIX}{i}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn status_data(run: &RunningSimulator, token: &str, query: &str) -> Vec<Value> {
        let v = get_json(run, &format!("/thing/status?{query}"), token).await;
        assert_eq!(v["Success"], json!(true));
        v["Data"].as_array().expect("Data array").clone()
    }

    fn data_iccids(data: &[Value]) -> Vec<String> {
        data.iter()
            .map(|d| {
                d["ThingId"]
                    .as_str()
                    .and_then(|s| s.strip_prefix(THING_ID_PREFIX))
                    .expect("ThingId")
                    .to_owned()
            })
            .collect()
    }

    /// What a tolerant client makes of a time field.
    fn decode_time(v: Option<&Value>) -> Option<f64> {
        let v = v?;
        match v {
            Value::Null => None,
            Value::Number(n) => {
                let n = n.as_f64().expect("number");
                Some(if n >= 1e11 { n / 1000.0 } else { n })
            }
            Value::String(s) if s.chars().all(|c| c.is_ascii_digit()) => {
                Some(s.parse::<f64>().expect("digits") / 1000.0)
            }
            Value::String(s) if s.contains('T') => Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .expect("rfc3339")
                    .timestamp() as f64,
            ),
            Value::String(s) => Some(
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                    .expect("sql time")
                    .and_utc()
                    .timestamp() as f64,
            ),
            other => panic!("unexpected time {other}"),
        }
    }

    fn decode_status(d: &Value) -> ThingTruth {
        let sessions: Vec<Value> = match d.get("ActiveSessions") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a.clone(),
            Some(o @ Value::Object(_)) => vec![o.clone()],
            Some(other) => panic!("unexpected ActiveSessions {other}"),
        };
        let connected = match d.get("ConnectionStatus").and_then(Value::as_str) {
            Some(s) => {
                assert_eq!(s == "CONNECTED", !sessions.is_empty(), "{d}");
                s == "CONNECTED"
            }
            None => !sessions.is_empty(),
        };
        let sum = |key: &str| {
            sessions
                .iter()
                .map(|s| s[key].as_f64().expect("throughput"))
                .sum::<f64>()
        };
        let starts: Vec<f64> = sessions
            .iter()
            .filter_map(|s| decode_time(s.get("LastConnectedTime")))
            .collect();
        ThingTruth {
            iccid: d["ThingId"]
                .as_str()
                .and_then(|s| s.strip_prefix(THING_ID_PREFIX))
                .expect("ThingId")
                .to_owned(),
            thing_name: d["ThingName"].as_str().expect("name").to_owned(),
            imsi: d["ActiveIMSI"].as_str().expect("imsi").to_owned(),
            msisdn: d["MSISDN"].as_str().unwrap_or("").to_owned(),
            provision_status: d["ProvisionStatus"].as_str().expect("status").to_owned(),
            connected,
            active_sessions: sessions.len(),
            uplink_throughput: sum("UplinkThroughput"),
            downlink_throughput: sum("DownlinkThroughput"),
            last_connection: decode_time(d.get("LastConnectionTime")),
            last_disconnection: decode_time(d.get("LastDisconnectionTime")),
            session_start: starts.into_iter().reduce(f64::min),
        }
    }

    async fn assert_fleet_matches_truth(run: &RunningSimulator, token: &str) {
        let iccids = run.simulator.iccids();
        for chunk in iccids.chunks(50) {
            let data = status_data(run, token, &format!("ThingIds={}", ids_param(chunk))).await;
            assert_eq!(data_iccids(&data), chunk);
            for d in &data {
                let decoded = decode_status(d);
                let truth = run.simulator.truth(&decoded.iccid).expect("truth");
                assert_eq!(decoded, truth, "{d}");
            }
        }
    }

    #[test]
    fn fleet_is_deterministic_and_well_formed() {
        let a = frozen(200, 7);
        let b = frozen(200, 7);
        assert_eq!(a.iccids(), b.iccids());
        for iccid in a.iccids() {
            assert_eq!(a.truth(&iccid), b.truth(&iccid));
        }
        assert_ne!(a.iccids(), frozen(200, 8).iccids());

        let iccids = a.iccids();
        let distinct: HashSet<_> = iccids.iter().collect();
        assert_eq!(distinct.len(), iccids.len());
        let with_f = iccids.iter().filter(|i| i.ends_with('F')).count();
        assert_eq!(with_f, 20, "exactly 1 in 10 per block of 20");
        for i in &iccids {
            assert!(i.starts_with("8988"));
            let digits = i.trim_end_matches('F');
            assert_eq!(digits.len(), 19);
            assert!(digits.chars().all(|c| c.is_ascii_digit()));
        }

        let truths: Vec<ThingTruth> = iccids.iter().filter_map(|i| a.truth(i)).collect();
        assert_eq!(truths[3].thing_name, r#"meter "north" \ 7"#);
        assert!(truths[5].thing_name.contains('\n'));
        assert!(!truths[7].thing_name.is_ascii());
        let active = truths
            .iter()
            .filter(|t| t.provision_status == "ACTIVE")
            .count();
        assert_eq!(active, 160);
        assert!(truths.iter().any(|t| t.msisdn.is_empty()));
        for t in &truths {
            assert_eq!(t.imsi.len(), 15);
            assert!(t.msisdn.is_empty() || t.msisdn.starts_with('+'));
        }
        let connected = truths.iter().filter(|t| t.connected).count();
        assert!((100..=150).contains(&connected), "{connected}");
    }

    #[test]
    fn only_active_and_test_active_connect_and_things_flap() {
        let sim = frozen(40, 3);
        let mut seen_connected: HashMap<String, HashSet<bool>> = HashMap::new();
        for _ in 0..50 {
            for iccid in sim.iccids() {
                let t = sim.truth(&iccid).expect("truth");
                if t.connected {
                    assert!(matches!(
                        t.provision_status.as_str(),
                        "ACTIVE" | "TEST_ACTIVE"
                    ));
                    assert!((1..=2).contains(&t.active_sessions));
                    assert!(t.session_start.is_some());
                } else {
                    assert_eq!(t.active_sessions, 0);
                    assert_eq!(t.uplink_throughput, 0.0);
                }
                seen_connected.entry(iccid).or_default().insert(t.connected);
            }
            sim.advance_time(Duration::from_secs(61));
        }
        let flapping = seen_connected.values().filter(|s| s.len() == 2).count();
        assert!(flapping >= 20, "{flapping}");
    }

    #[tokio::test]
    async fn truth_agrees_with_http_over_time() {
        let run = frozen(137, 11).spawn().await.expect("spawn");
        // The clock moves past any JWT's lifetime here; the static token does not expire.
        let token = run.simulator.static_token();
        let iccids = run.simulator.iccids();
        run.simulator.set_connected(&iccids[0], Some(true));
        run.simulator.set_connected(&iccids[1], Some(false));
        for step in [0u64, 1, 37, 500, 10_000, 86_400] {
            run.simulator.advance_time(Duration::from_secs(step));
            assert_fleet_matches_truth(&run, &token).await;
        }
        let forced = run.simulator.truth(&iccids[0]).expect("truth");
        assert!(forced.connected);
        assert_eq!(forced.active_sessions, 1);
        assert_eq!(forced.last_connection, Some(T0 as f64));
        assert_eq!(forced.session_start, Some(T0 as f64));
    }

    #[tokio::test]
    async fn every_shape_appears_in_a_50_thing_fleet() {
        for seed in 1..=5 {
            let run = frozen(50, seed).spawn().await.expect("spawn");
            let token = login(&run).await;
            let iccids = run.simulator.iccids();
            let data = status_data(&run, &token, &format!("ThingIds={}", ids_param(&iccids))).await;
            let mut shapes: HashSet<String> = HashSet::new();
            for d in &data {
                let sessions = match d.get("ActiveSessions") {
                    None => "sessions:missing",
                    Some(Value::Null) => "sessions:null",
                    Some(Value::Object(_)) => "sessions:object",
                    Some(Value::Array(a)) if a.is_empty() => "sessions:[]",
                    Some(_) => "sessions:array",
                };
                shapes.insert(sessions.into());
                shapes.insert(format!(
                    "status-field:{}",
                    d.get("ConnectionStatus").is_some()
                ));
                for key in ["LastConnectionTime", "LastDisconnectionTime"] {
                    let kind = match &d[key] {
                        Value::Null => "null",
                        Value::Number(n) if n.as_u64().is_some_and(|n| n > 100_000_000_000) => "ms",
                        Value::Number(_) => "secs",
                        Value::String(s) if s.ends_with('Z') => "rfc3339-z",
                        Value::String(s) if s.contains('T') => "rfc3339-offset",
                        Value::String(s) if s.contains(' ') => "sql",
                        Value::String(_) => "ms-string",
                        _ => "other",
                    };
                    shapes.insert(format!("time:{kind}"));
                }
                let session_list: Vec<&Value> = match d.get("ActiveSessions") {
                    Some(Value::Array(a)) => a.iter().collect(),
                    Some(o @ Value::Object(_)) => vec![o],
                    _ => vec![],
                };
                for s in session_list {
                    let ms = s["LastConnectedTime"].as_u64().expect("number") > 100_000_000_000;
                    shapes.insert(format!("session-time-ms:{ms}"));
                    for extra in ["ActiveSessionId", "ApnName", "IPAddress"] {
                        assert!(s.get(extra).is_some());
                    }
                }
                for extra in ["CustomerId", "ThingDescription"] {
                    assert!(d.get(extra).is_some());
                }
            }
            let expected = [
                "sessions:missing",
                "sessions:null",
                "sessions:object",
                "sessions:[]",
                "sessions:array",
                "status-field:true",
                "status-field:false",
                "time:null",
                "time:ms",
                "time:secs",
                "time:rfc3339-z",
                "time:rfc3339-offset",
                "time:sql",
                "time:ms-string",
                "session-time-ms:true",
                "session-time-ms:false",
            ];
            for shape in expected {
                assert!(shapes.contains(shape), "seed {seed}: {shape} missing");
            }
            assert!(!shapes.contains("time:other"));
        }
    }

    #[tokio::test]
    async fn rfc3339_offsets_are_converted() {
        let sim = frozen(50, 1);
        let with_offset = sim
            .inner
            .fleet
            .iter()
            .find(|t| matches!(t.shape.time, TimeFormat::Rfc3339Offset(_)))
            .expect("offset format");
        let encoded = encode_time(Some(T0 as i64), with_offset.shape.time);
        let s = encoded.as_str().expect("string");
        assert!(!s.ends_with('Z') && !s.ends_with("+00:00"), "{s}");
        assert_eq!(decode_time(Some(&encoded)), Some(T0 as f64));
        assert_eq!(
            encode_time(Some(1_739_955_863), TimeFormat::SqlUtc),
            json!("2025-02-19 09:04:23")
        );
    }

    #[tokio::test]
    async fn things_listing_pages() {
        let run = frozen(23, 2).spawn().await.expect("spawn");
        let token = login(&run).await;
        let all = run.simulator.iccids();
        let mut listed = Vec::new();
        for offset in [0, 10, 20] {
            let page = get_json(&run, &format!("/things?limit=10&offset={offset}"), &token).await;
            let page = page.as_array().expect("bare array").clone();
            assert_eq!(page.len(), if offset == 20 { 3 } else { 10 });
            for t in page {
                assert_eq!(
                    t["ThingId"],
                    json!(format!(
                        "{THING_ID_PREFIX}{}",
                        t["ExternalUniqueId"].as_str().expect("id")
                    ))
                );
                for key in ["ThingName", "State", "CustomerId", "ThingDescription"] {
                    assert!(t.get(key).is_some());
                }
                listed.push(t["ExternalUniqueId"].as_str().expect("id").to_owned());
            }
        }
        assert_eq!(listed, all);
        let default = get_json(&run, "/things", &token).await;
        assert_eq!(default.as_array().map(Vec::len), Some(23));
        let beyond = get_json(&run, "/things?offset=100", &token).await;
        assert_eq!(beyond, json!([]));
        for bad in [
            "limit=51",
            "limit=0",
            "limit=abc",
            "limit=-1",
            "offset=x",
            "limit=%zz",
        ] {
            let (code, _) = get(&run, &format!("/things?{bad}"), Some(&token)).await;
            assert_eq!(code, 400, "{bad}");
        }
        run.simulator.remove_thing(&all[0]);
        let page = get_json(&run, "/things?limit=5&offset=0", &token).await;
        assert_eq!(page[0]["ExternalUniqueId"], json!(all[1]));
        assert_eq!(run.simulator.requests(SimEndpoint::Things), 12);
    }

    #[tokio::test]
    async fn status_paging_and_page_cap() {
        let run = frozen(30, 4).spawn().await.expect("spawn");
        let token = login(&run).await;
        let all = run.simulator.iccids();
        let ids = ids_param(&all);

        let data = status_data(&run, &token, &format!("ThingIds={ids}&limit=7&offset=14")).await;
        assert_eq!(data_iccids(&data), all[14..21]);
        let data = status_data(&run, &token, &format!("ThingIds={ids}&offset=25")).await;
        assert_eq!(data_iccids(&data), all[25..]);
        let data = status_data(&run, &token, &format!("ThingIds={ids}&offset=99")).await;
        assert!(data.is_empty());

        run.simulator.set_page_cap(Some(5));
        let data = status_data(&run, &token, &format!("ThingIds={ids}&limit=7&offset=14")).await;
        assert_eq!(data_iccids(&data), all[14..19]);
        let data = status_data(&run, &token, &format!("ThingIds={ids}&limit=3")).await;
        assert_eq!(data_iccids(&data), all[..3]);
        run.simulator.set_page_cap(None);

        // Duplicates once, unknown ids skipped, request order kept.
        let query = format!(
            "ThingIds={THING_ID_PREFIX}{b},{THING_ID_PREFIX}{a},nonsense,{THING_ID_PREFIX}899,{THING_ID_PREFIX}{b}",
            a = all[0],
            b = all[1]
        );
        let data = status_data(&run, &token, &query).await;
        assert_eq!(data_iccids(&data), [all[1].clone(), all[0].clone()]);

        for bad in [
            format!("ThingIds={ids}&limit=51"),
            format!("ThingIds={ids}&limit=0"),
            format!("ThingIds={ids}&offset=-3"),
            format!("ThingIds={ids}%E0"),
        ] {
            let (code, text) = get(&run, &format!("/thing/status?{bad}"), Some(&token)).await;
            assert_eq!(code, 400, "{bad}: {text}");
        }
        for missing in ["", "limit=5", "ThingIds=", "ThingIds=,,"] {
            let (code, text) = get(&run, &format!("/thing/status?{missing}"), Some(&token)).await;
            assert_eq!(code, 400);
            let v: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(
                v,
                json!({"Success": false, "Message": "ThingIds is required", "Data": null})
            );
        }
    }

    #[tokio::test]
    async fn comma_repeated_and_encoded_ids_are_equivalent() {
        let run = frozen(10, 5).spawn().await.expect("spawn");
        let token = login(&run).await;
        let all = run.simulator.iccids();
        let want = all[..4].to_vec();
        let id = |i: usize| format!("{THING_ID_PREFIX}{}", all[i]);
        let queries = [
            format!("ThingIds={},{},{},{}", id(0), id(1), id(2), id(3)),
            format!(
                "ThingIds={}&ThingIds={}&ThingIds={}&ThingIds={}",
                id(0),
                id(1),
                id(2),
                id(3)
            ),
            format!(
                "ThingIds={},{}&limit=50&ThingIds={},{}",
                id(0),
                id(1),
                id(2),
                id(3)
            ),
            format!("ThingIds={}%2C{}%2c{}%2C{}", id(0), id(1), id(2), id(3)),
        ];
        run.simulator.reset_counters();
        for q in &queries {
            let data = status_data(&run, &token, q).await;
            assert_eq!(data_iccids(&data), want, "{q}");
        }
        assert_eq!(run.simulator.status_queries(), queries);
        assert_eq!(run.simulator.requests(SimEndpoint::Status), 4);
    }

    #[tokio::test]
    async fn authentication() {
        let run = frozen(5, 6).spawn().await.expect("spawn");
        let base = run.url();
        for body in [
            r#"{"UserName":"demo","Password":"wrong"}"#,
            r#"{"UserName":"demo"}"#,
            "not json",
            "",
        ] {
            assert_eq!(
                login_raw(&base, body).await,
                (401, "Access denied".to_owned()),
                "{body}"
            );
        }
        let (_, text) = login_raw(&base, r#"{"UserName":"demo","Password":"demo-password"}"#).await;
        let v: Value = serde_json::from_str(&text).expect("json");
        for key in ["refreshToken", "UserId", "UserName", "Role"] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert!(
            v["CustomerId"]
                .as_str()
                .expect("cid")
                .starts_with("cid_sim-")
        );
        let token = v["token"].as_str().expect("token").to_owned();

        let segments: Vec<&str> = token.split('.').collect();
        assert_eq!(segments.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[0]).expect("b64"))
                .expect("json");
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[1]).expect("b64"))
                .expect("json");
        assert_eq!(payload["exp"], json!(T0 + 4 * 3600));
        assert_eq!(payload["iat"], json!(T0));
        assert_eq!(payload["sub"], json!("demo"));

        let ids = format!("ThingIds={THING_ID_PREFIX}{}", run.simulator.iccids()[0]);
        let status = format!("/thing/status?{ids}");
        assert_eq!(get(&run, &status, Some(&token)).await.0, 200);
        let static_token = run.simulator.static_token();
        assert_eq!(get(&run, &status, Some(&static_token)).await.0, 200);
        assert_eq!(
            get(&run, "/things", None).await,
            (401, "Unauthorized".to_owned())
        );
        assert_eq!(get(&run, &status, Some("forged.token.x")).await.0, 401);

        // Expiry follows the simulator clock.
        run.simulator
            .advance_time(Duration::from_secs(4 * 3600 - 1));
        assert_eq!(get(&run, &status, Some(&token)).await.0, 200);
        run.simulator.advance_time(Duration::from_secs(1));
        assert_eq!(
            get(&run, &status, Some(&token)).await,
            (401, "Unauthorized".to_owned())
        );
        assert_eq!(get(&run, &status, Some(&static_token)).await.0, 200);

        let fresh = login(&run).await;
        run.simulator.revoke_tokens();
        assert_eq!(get(&run, &status, Some(&fresh)).await.0, 401);
        assert_eq!(get(&run, "/things", Some(&static_token)).await.0, 401);
        let after = login(&run).await;
        assert_eq!(get(&run, &status, Some(&after)).await.0, 200);
        // Every request counted, whatever the answer.
        assert_eq!(run.simulator.requests(SimEndpoint::Auth), 7);
        assert_eq!(run.simulator.requests(SimEndpoint::Status), 8);
        assert_eq!(run.simulator.requests(SimEndpoint::Things), 2);
    }

    #[tokio::test]
    async fn overrides_removal_and_failures() {
        let run = frozen(20, 9).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = login(&run).await;
        let all = sim.iccids();
        let ids = ids_param(&all);

        // Forced disconnected, then forced connected, then back to the timeline.
        let before = sim.truth(&all[2]).expect("truth");
        sim.advance_time(Duration::from_secs(10));
        sim.set_connected(&all[2], Some(false));
        sim.advance_time(Duration::from_secs(1000));
        let t = sim.truth(&all[2]).expect("truth");
        assert!(!t.connected);
        assert_eq!(t.active_sessions, 0);
        assert_eq!(t.last_disconnection, Some((T0 + 10) as f64));
        sim.set_connected(&all[2], Some(true));
        let t = sim.truth(&all[2]).expect("truth");
        assert!(t.connected);
        assert_eq!(t.active_sessions, 1);
        assert_eq!(t.last_connection, Some((T0 + 1010) as f64));
        assert_eq!(t.session_start, Some((T0 + 1010) as f64));
        assert_fleet_matches_truth(&run, &token).await;
        sim.set_connected(&all[2], None);
        sim.set_time(Some(UNIX_EPOCH + Duration::from_secs(T0)));
        assert_eq!(sim.truth(&all[2]), Some(before));

        // Removal.
        sim.remove_thing(&all[4]);
        assert!(sim.truth(&all[4]).is_none());
        assert!(!sim.iccids().contains(&all[4]));
        let data = status_data(&run, &token, &format!("ThingIds={ids}")).await;
        assert_eq!(data.len(), 19);
        assert!(!data_iccids(&data).contains(&all[4]));

        // Failures: any failing id in the request fails it, first one wins.
        sim.set_failing(&all[7], Some(FailMode::SuccessFalse));
        sim.set_failing(&all[8], Some(FailMode::ServerError));
        let (code, text) = get(
            &run,
            &format!("/thing/status?ThingIds={ids}&limit=1"),
            Some(&token),
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json"),
            json!({"Success": false, "Message": "simulated failure", "Data": null})
        );
        let only_8 = format!("/thing/status?ThingIds={}", ids_param(&all[8..10]));
        let (code, text) = get(&run, &only_8, Some(&token)).await;
        assert_eq!(code, 500);
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json"),
            json!({"Success": false, "Message": "Internal Server Error"})
        );
        let unaffected = status_data(
            &run,
            &token,
            &format!("ThingIds={}", ids_param(&all[9..12])),
        )
        .await;
        assert_eq!(unaffected.len(), 3);
        sim.set_failing(&all[8], None);
        assert_eq!(get(&run, &only_8, Some(&token)).await.0, 200);
    }

    #[tokio::test]
    async fn control_api() {
        let run = frozen(10, 10).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let all = sim.iccids();
        let c = client();
        let set = |iccid: String, body: &'static str| {
            let c = c.clone();
            let url = format!("{}/_sim/things/{iccid}/connected", run.url());
            async move {
                c.post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("send")
                    .status()
                    .as_u16()
            }
        };
        let active = all
            .iter()
            .find(|i| sim.truth(i).is_some_and(|t| t.provision_status == "ACTIVE"))
            .expect("active thing")
            .clone();
        assert_eq!(set(active.clone(), r#"{"connected": false}"#).await, 204);
        assert!(!sim.truth(&active).expect("truth").connected);
        assert_eq!(set(active.clone(), r#"{"connected": true}"#).await, 204);
        assert!(sim.truth(&active).expect("truth").connected);
        assert_eq!(set(active.clone(), r#"{"connected": null}"#).await, 204);
        assert_eq!(set(active.clone(), r#"{"connected": "yes"}"#).await, 400);
        assert_eq!(set(active.clone(), "garbage").await, 400);
        assert_eq!(set("8988000".into(), r#"{"connected": true}"#).await, 404);

        let delete = |iccid: String| {
            let c = c.clone();
            let url = format!("{}/_sim/things/{iccid}", run.url());
            async move { c.delete(url).send().await.expect("send").status().as_u16() }
        };
        assert_eq!(delete(all[1].clone()).await, 204);
        assert_eq!(delete(all[1].clone()).await, 404);
        assert_eq!(sim.iccids().len(), 9);

        let token = login(&run).await;
        let _ = get(&run, "/things", Some(&token)).await;
        let (code, text) = get(&run, "/_sim/stats", None).await;
        assert_eq!(code, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json"),
            json!({"auth": 1, "things": 1, "status": 0})
        );
        sim.reset_counters();
        assert_eq!(sim.requests(SimEndpoint::Auth), 0);
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_server() {
        let run = Simulator::new(config(3, 1)).spawn().await.expect("spawn");
        let url = run.url();
        assert!(run.url().starts_with("http://127.0.0.1:"));
        let c = client();
        assert_eq!(
            c.get(format!("{url}/_sim/stats"))
                .send()
                .await
                .expect("send")
                .status(),
            200
        );
        drop(run);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            client()
                .get(format!("{url}/_sim/stats"))
                .send()
                .await
                .is_err()
        );
    }

    #[test]
    fn query_parsing() {
        assert_eq!(
            parse_query("a=1&b=x%2Cy&&c&d=a+b").expect("parse"),
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x,y".to_owned()),
                ("c".to_owned(), String::new()),
                ("d".to_owned(), "a b".to_owned()),
            ]
        );
        for bad in ["a=%", "a=%4", "a=%zz", "a=%FF", "%C3"] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_query("n=%C3%A4").expect("utf-8"),
            [("n".to_owned(), "ä".to_owned())]
        );
    }

    #[test]
    fn clock_controls() {
        let sim = Simulator::new(config(1, 1));
        let now = epoch_secs(SystemTime::now());
        assert!(sim.lock().now_secs() >= now);
        sim.set_time(Some(UNIX_EPOCH + Duration::from_secs(T0)));
        sim.advance_time(Duration::from_secs(5));
        assert_eq!(sim.lock().now_secs(), T0 as i64 + 5);
        sim.set_time(None);
        assert!(sim.lock().now_secs() >= now);
        assert_eq!(epoch_secs(UNIX_EPOCH - Duration::from_millis(1500)), -2);
    }

    // ------------------------------------------------------------ faults

    fn rule(spec: &str) -> FaultRule {
        spec.parse().expect("valid spec")
    }

    async fn fetch(
        run: &RunningSimulator,
        path: &str,
        token: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Bytes) {
        let mut req = client().get(format!("{}{path}", run.url()));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("send");
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        (code, headers, resp.bytes().await.expect("body"))
    }

    fn header_str<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).map(|v| v.to_str().expect("ascii header"))
    }

    fn status_path(sim: &Simulator) -> String {
        format!("/thing/status?ThingIds={}", ids_param(&sim.iccids()))
    }

    async fn listed_faults(run: &RunningSimulator) -> Value {
        let (code, text) = get(run, "/_sim/faults", None).await;
        assert_eq!(code, 200, "{text}");
        serde_json::from_str(&text).expect("json")
    }

    fn envelope(message: &str) -> Value {
        json!({"Success": false, "Message": message, "Data": null})
    }

    fn now_epoch() -> i64 {
        epoch_secs(SystemTime::now())
    }

    #[tokio::test]
    async fn fault_latency_delays_and_composes() {
        let run = frozen(5, 21).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = sim.static_token();
        let path = status_path(&sim);
        let (_, normal) = get(&run, &path, Some(&token)).await;
        sim.add_fault(rule("latency=300ms,endpoint=status,count=2"));
        sim.add_fault(rule("latency=200ms,endpoint=status,after=1,count=1"));
        sim.add_fault(rule("status=503,endpoint=status,after=1,count=1"));

        let start = Instant::now();
        assert_eq!(get(&run, &path, Some(&token)).await, (200, normal.clone()));
        assert!(start.elapsed() >= Duration::from_millis(300));
        // Both delays add up, then the later rule answers.
        let start = Instant::now();
        let (code, _) = get(&run, &path, Some(&token)).await;
        assert_eq!(code, 503);
        assert!(start.elapsed() >= Duration::from_millis(500));
        assert_eq!(get(&run, &path, Some(&token)).await, (200, normal));
        assert_eq!(get(&run, "/things", Some(&token)).await.0, 200);

        let listed = listed_faults(&run).await;
        let applied: Vec<u64> = listed["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| r["applied"].as_u64().expect("applied"))
            .collect();
        assert_eq!(applied, [2, 1, 1]);
        // Latency only delays: the 503 is the one fault served.
        assert_eq!(sim.faults_served(), 1);
        assert_eq!(sim.requests(SimEndpoint::Status), 4);
    }

    #[tokio::test]
    async fn fault_hang_is_cut_by_the_client_and_released_on_shutdown() {
        let run = frozen(3, 22).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = sim.static_token();
        let url = format!("{}{}", run.url(), status_path(&sim));
        sim.add_fault(rule("hang,endpoint=status"));

        let impatient = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(300))
            .build()
            .expect("client");
        let start = Instant::now();
        let err = impatient
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect_err("no answer");
        assert!(err.is_timeout(), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(get(&run, "/things", Some(&token)).await.0, 200);
        assert_eq!(sim.requests(SimEndpoint::Status), 1);
        assert_eq!(sim.faults_served(), 1);

        // A patient client is not left waiting when the server stops.
        let pending = tokio::spawn(async move {
            client()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        while sim.requests(SimEndpoint::Status) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(run);
        let answer = tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .expect("released")
            .expect("join");
        // Either the shutdown answer or a closed connection, but never a wait.
        if let Ok(code) = answer {
            assert_eq!(code, 503);
        }
    }

    #[tokio::test]
    async fn fault_status_codes() {
        let run = frozen(3, 23).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = sim.static_token();
        let path = status_path(&sim);
        for (code, body) in [
            (500, Some("Internal Server Error")),
            (400, Some("Bad Request")),
            (502, None),
            (503, None),
            (504, None),
        ] {
            sim.add_fault(FaultRule::new(FaultKind::Status { code }).count(1));
            let (got, text) = get(&run, &path, Some(&token)).await;
            assert_eq!(got, code);
            match body {
                Some(message) => assert_eq!(
                    serde_json::from_str::<Value>(&text).expect("json"),
                    envelope(message)
                ),
                None => {
                    let reason = StatusCode::from_u16(code)
                        .expect("code")
                        .canonical_reason()
                        .expect("reason");
                    assert_eq!(text, format!("{code} {reason}"));
                }
            }
            // count=1: the burst is over.
            assert_eq!(get(&run, &path, Some(&token)).await.0, 200);
            sim.clear_faults();
        }
        // The Rust API takes any code; one that is no error answers 500.
        sim.add_fault(FaultRule::new(FaultKind::Status { code: 200 }));
        assert_eq!(get(&run, "/things", Some(&token)).await.0, 500);
        assert_eq!(sim.faults_served(), 6);
    }

    #[tokio::test]
    async fn fault_rate_limited_headers() {
        let run = frozen(3, 24).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = sim.static_token();
        sim.add_fault(rule("rate_limited=retry_after:2,count=1"));
        sim.add_fault(rule("rate_limited=date:30,after=1,count=1"));
        sim.add_fault(rule("rate_limited,after=2,count=1"));

        let before = now_epoch();
        let (code, headers, body) = fetch(&run, "/things", Some(&token)).await;
        let after = now_epoch();
        assert_eq!(code, 429);
        assert_eq!(
            serde_json::from_slice::<Value>(&body).expect("json"),
            envelope("Too Many Requests")
        );
        assert_eq!(header_str(&headers, "retry-after"), Some("2"));
        assert_eq!(header_str(&headers, "x-ratelimit-limit"), Some("60"));
        assert_eq!(header_str(&headers, "x-ratelimit-remaining"), Some("0"));
        let reset: i64 = header_str(&headers, "x-ratelimit-reset")
            .expect("reset")
            .parse()
            .expect("epoch seconds");
        assert!((before + 2..=after + 3).contains(&reset), "{reset}");

        let before = now_epoch();
        let (code, headers, _) = fetch(&run, &status_path(&sim), Some(&token)).await;
        let after = now_epoch();
        assert_eq!(code, 429);
        assert_eq!(header_str(&headers, "x-ratelimit-remaining"), Some("0"));
        let date = header_str(&headers, "retry-after").expect("retry-after");
        // IMF-fixdate exactly: it parses with the fixed format and prints back the same.
        let parsed = chrono::NaiveDateTime::parse_from_str(date, "%a, %d %b %Y %H:%M:%S GMT")
            .expect("IMF-fixdate")
            .and_utc();
        assert_eq!(parsed.format("%a, %d %b %Y %H:%M:%S GMT").to_string(), date);
        assert_eq!(date.len(), 29, "{date}");
        assert!(chrono::DateTime::parse_from_rfc2822(date).is_ok());
        // The real clock, not the frozen simulator clock: clients compare with theirs.
        assert!(
            (before + 30..=after + 31).contains(&parsed.timestamp()),
            "{date}"
        );
        let reset = header_str(&headers, "x-ratelimit-reset").expect("reset");
        assert_eq!(reset, parsed.timestamp().to_string());

        let before = now_epoch();
        let (code, headers, _) = fetch(&run, "/things", Some(&token)).await;
        assert_eq!(code, 429);
        assert_eq!(header_str(&headers, "retry-after"), None);
        assert_eq!(header_str(&headers, "x-ratelimit-remaining"), Some("0"));
        let reset: i64 = header_str(&headers, "x-ratelimit-reset")
            .expect("reset")
            .parse()
            .expect("epoch seconds");
        assert!((before + 60..=now_epoch() + 61).contains(&reset));

        assert_eq!(get(&run, "/things", Some(&token)).await.0, 200);
        assert_eq!(
            http_date(784_111_777),
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "the example of RFC 7231"
        );
        assert_eq!(http_date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[tokio::test]
    async fn fault_unauthorized_after_n_requests() {
        let run = frozen(3, 25).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = login(&run).await;
        let path = status_path(&sim);
        sim.add_fault(rule("unauthorized,after=3"));
        for _ in 0..3 {
            assert_eq!(get(&run, &path, Some(&token)).await.0, 200);
        }
        let unauthorized = (401, "Unauthorized".to_owned());
        assert_eq!(get(&run, &path, Some(&token)).await, unauthorized);
        assert_eq!(
            get(&run, &path, Some(&sim.static_token())).await,
            unauthorized
        );
        assert_eq!(get(&run, "/things", Some(&token)).await, unauthorized);
        let (user, password) = sim.credentials();
        let body = json!({"UserName": user, "Password": password}).to_string();
        assert_eq!(
            login_raw(&run.url(), &body).await,
            (401, "Access denied".to_owned())
        );
        assert_eq!(sim.faults_served(), 4);
        sim.clear_faults();
        assert_eq!(get(&run, &path, Some(&token)).await.0, 200);
        assert_eq!(sim.faults_served(), 4);
        sim.reset_counters();
        assert_eq!(sim.faults_served(), 0);
    }

    #[tokio::test]
    async fn token_expires_at_its_exp_with_the_real_clock() {
        let sim = Simulator::new(SimulatorConfig {
            token_lifetime: Duration::from_secs(2),
            ..config(2, 26)
        });
        sim.set_time(None);
        let run = sim.spawn().await.expect("spawn");
        let token = login(&run).await;
        let payload = token.split('.').nth(1).expect("payload");
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        let exp = payload["exp"].as_i64().expect("exp");
        let left = exp - now_epoch();
        assert!((1..=2).contains(&left), "{left}");
        let path = status_path(&run.simulator);
        assert_eq!(get(&run, &path, Some(&token)).await.0, 200);

        let exp_at = UNIX_EPOCH + Duration::from_secs(exp as u64);
        let wait = exp_at.duration_since(SystemTime::now()).unwrap_or_default();
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
        assert_eq!(
            get(&run, &path, Some(&token)).await,
            (401, "Unauthorized".to_owned())
        );
        let fresh = login(&run).await;
        assert_eq!(get(&run, &path, Some(&fresh)).await.0, 200);
    }

    #[tokio::test]
    async fn fault_truncated_json_is_a_strict_prefix() {
        let run = frozen(12, 27).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = sim.static_token();
        for path in [status_path(&sim), "/things".to_owned()] {
            let (_, _, normal) = fetch(&run, &path, Some(&token)).await;
            assert!(serde_json::from_slice::<Value>(&normal).is_ok());
            sim.add_fault(rule("truncated_json,count=1"));
            let (code, headers, cut) = fetch(&run, &path, Some(&token)).await;
            assert_eq!(code, 200);
            assert!(!cut.is_empty() && cut.len() < normal.len(), "{path}");
            assert!(normal.starts_with(&cut), "{path}");
            assert!(serde_json::from_slice::<Value>(&cut).is_err(), "{path}");
            // The client reads the whole (short) body; nothing is left pending.
            assert_eq!(
                header_str(&headers, "content-length"),
                Some(cut.len().to_string().as_str())
            );
            assert_eq!(fetch(&run, &path, Some(&token)).await.2, normal);
            sim.clear_faults();
        }
        assert_eq!(sim.faults_served(), 2);
    }

    #[tokio::test]
    async fn fault_malformed_json() {
        let run = frozen(3, 28).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        sim.add_fault(rule("malformed_json"));
        let (code, headers, body) =
            fetch(&run, &status_path(&sim), Some(&sim.static_token())).await;
        assert_eq!(code, 200);
        assert_eq!(
            header_str(&headers, "content-type"),
            Some("application/json")
        );
        assert!(serde_json::from_slice::<Value>(&body).is_err());
        assert!(body.starts_with(b"<!DOCTYPE html>"));
    }

    #[tokio::test]
    async fn fault_wrong_types_keep_thing_ids() {
        let run = frozen(6, 29).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = sim.static_token();
        let all = sim.iccids();
        sim.add_fault(rule("wrong_types"));

        let v = get_json(&run, &status_path(&sim), &token).await;
        assert_eq!(v["Success"], json!(true));
        let data = v["Data"].as_array().expect("Data array");
        assert_eq!(data_iccids(data), all);
        let mut session_shapes = HashSet::new();
        for d in data {
            assert!(d["ThingName"].is_object());
            assert!(d["ConnectionStatus"].is_number());
            assert!(d["LastConnectionTime"].is_boolean());
            assert!(!d["ProvisionStatus"].is_string());
            assert!(!d["MSISDN"].is_string());
            let sessions = &d["ActiveSessions"];
            let session = match sessions {
                Value::String(s) => {
                    assert_eq!(s, "x");
                    session_shapes.insert("string");
                    continue;
                }
                Value::Array(a) => {
                    session_shapes.insert("array");
                    &a[0]
                }
                other => {
                    session_shapes.insert("object");
                    other
                }
            };
            assert_eq!(session["UplinkThroughput"], json!("fast"));
            assert!(!session["DownlinkThroughput"].is_number());
            assert!(session["LastConnectedTime"].is_array());
        }
        assert_eq!(session_shapes.len(), 3);

        let things = get_json(&run, "/things", &token).await;
        let things = things.as_array().expect("bare array");
        assert_eq!(things.len(), 6);
        for (t, iccid) in things.iter().zip(&all) {
            assert_eq!(t["ThingId"], json!(format!("{THING_ID_PREFIX}{iccid}")));
            assert!(t["ThingName"].is_object());
            assert!(!t["ExternalUniqueId"].is_string());
        }
        let (user, password) = sim.credentials();
        let body = json!({"UserName": user, "Password": password}).to_string();
        let (code, text) = login_raw(&run.url(), &body).await;
        assert_eq!(code, 200);
        let login: Value = serde_json::from_str(&text).expect("json");
        assert!(login["token"].is_number());
        // An error comes before the broken serialisation would.
        assert_eq!(
            get(&run, "/things", Some("forged")).await,
            (401, "Unauthorized".to_owned())
        );
    }

    #[tokio::test]
    async fn fault_success_false() {
        let run = frozen(3, 30).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = sim.static_token();
        sim.add_fault(rule("success_false,endpoint=status"));
        let (code, text) = get(&run, &status_path(&sim), Some(&token)).await;
        assert_eq!(code, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json"),
            envelope("simulated failure")
        );
        assert_eq!(get(&run, "/things", Some(&token)).await.0, 200);
    }

    #[tokio::test]
    async fn fault_oversized_streams_at_least_the_size() {
        let run = frozen(4, 31).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = sim.static_token();
        let bytes: u64 = 4 * 1024 * 1024 + 7;
        sim.add_fault(FaultRule::new(FaultKind::Oversized { bytes }).endpoint(SimEndpoint::Status));
        let mut resp = client()
            .get(format!("{}{}", run.url(), status_path(&sim)))
            .bearer_auth(&token)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("content-length").is_none());
        assert_eq!(resp.content_length(), None);
        let mut body = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = resp.chunk().await.expect("chunk") {
            chunks += 1;
            body.extend_from_slice(&chunk);
        }
        assert!(body.len() as u64 >= bytes);
        assert!((body.len() as u64) < bytes + 2 * OVERSIZED_CHUNK as u64);
        assert!(chunks > 1);
        // Valid JSON in the status shape, should a client read it all.
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["Success"], json!(true));
        let ids = data_iccids(v["Data"].as_array().expect("Data"));
        assert!(ids.iter().all(|i| sim.iccids().contains(i)));

        // Other endpoints keep their own shape; a tiny size is just the empty shell.
        sim.add_fault(
            FaultRule::new(FaultKind::Oversized { bytes: 1 }).endpoint(SimEndpoint::Things),
        );
        assert_eq!(
            get(&run, "/things", Some(&token)).await,
            (200, "[]".to_owned())
        );
        sim.add_fault(
            FaultRule::new(FaultKind::Oversized { bytes: 100_000 }).endpoint(SimEndpoint::Auth),
        );
        let (code, text) = login_raw(&run.url(), "{}").await;
        assert_eq!(code, 200);
        assert!(text.len() >= 100_000);
        let v: Value = serde_json::from_str(&text).expect("json");
        assert!(v["Padding"].is_array());
    }

    #[tokio::test]
    async fn fault_windows_endpoints_and_order() {
        let run = frozen(3, 32).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = sim.static_token();
        let path = status_path(&sim);
        sim.add_fault(rule("status=500,endpoint=status,after=2,count=3"));
        sim.add_fault(rule("success_false,endpoint=status,count=4"));
        sim.add_fault(rule("status=502,endpoint=things,after=1,count=1"));
        let outcome = |(code, text): (u16, String)| match code {
            200 if text.contains(r#""Success":false"#) => "success_false".to_owned(),
            200 => "ok".to_owned(),
            other => other.to_string(),
        };
        let mut status = Vec::new();
        for _ in 0..6 {
            status.push(outcome(get(&run, &path, Some(&token)).await));
        }
        // The first rule that applies wins; the second still counts requests 3 to 5.
        assert_eq!(
            status,
            ["success_false", "success_false", "500", "500", "500", "ok"]
        );
        let mut things = Vec::new();
        for _ in 0..3 {
            things.push(outcome(get(&run, "/things", Some(&token)).await));
        }
        assert_eq!(things, ["ok", "502", "ok"]);

        let listed = listed_faults(&run).await;
        assert_eq!(listed["faults_served"], json!(6));
        let counters: Vec<(u64, u64, bool)> = listed["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| {
                (
                    r["matched"].as_u64().expect("matched"),
                    r["applied"].as_u64().expect("applied"),
                    r["exhausted"].as_bool().expect("exhausted"),
                )
            })
            .collect();
        assert_eq!(counters, [(6, 3, true), (6, 2, true), (3, 1, true)]);
        // Exhausted rules stay listed, and every request is still counted.
        assert_eq!(sim.faults_served(), 6);
        assert_eq!(sim.requests(SimEndpoint::Status), 6);
        assert_eq!(sim.requests(SimEndpoint::Things), 3);
        assert_eq!(sim.requests(SimEndpoint::Auth), 0);
        assert_eq!(sim.status_queries().len(), 6);
    }

    #[tokio::test]
    async fn fault_control_api() {
        let run = frozen(3, 33).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = sim.static_token();
        let c = client();
        let url = format!("{}/_sim/faults", run.url());
        let post = |body: &str| {
            let req = c
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_owned());
            async move {
                let resp = req.send().await.expect("send");
                (resp.status().as_u16(), resp.text().await.expect("body"))
            }
        };
        assert_eq!(
            post(r#"{"kind": {"type": "status", "code": 503}, "endpoint": "status", "count": 1}"#)
                .await
                .0,
            204
        );
        assert_eq!(
            post(r#"[{"kind": {"type": "latency", "millis": 1}}, "unauthorized,endpoint=things,after=1"]"#)
                .await
                .0,
            204
        );
        for bad in [
            "garbage",
            "42",
            r#"{"kind": {"type": "nope"}}"#,
            r#"{"kind": {"type": "status", "code": 200}}"#,
            r#"{"kind": {"type": "hang"}, "count": 0}"#,
            r#"{"kind": {"type": "hang"}, "aftr": 3}"#,
            r#"{"kind": {"type": "hang"}, "endpoint": "metrics"}"#,
            r#""statuz=1""#,
            // All or nothing: the valid first rule is not added either.
            r#"["hang", "hang,count=0"]"#,
        ] {
            let (code, text) = post(bad).await;
            assert_eq!(code, 400, "{bad}: {text}");
            assert!(!text.is_empty());
        }
        let listed = listed_faults(&run).await;
        let specs: Vec<&str> = listed["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| r["spec"].as_str().expect("spec"))
            .collect();
        assert_eq!(
            specs,
            [
                "status=503,endpoint=status,count=1",
                "latency=1ms",
                "unauthorized,endpoint=things,after=1"
            ]
        );
        assert_eq!(
            listed["rules"][0],
            json!({
                "kind": {"type": "status", "code": 503},
                "endpoint": "status",
                "after": 0,
                "count": 1,
                "spec": "status=503,endpoint=status,count=1",
                "matched": 0,
                "applied": 0,
                "exhausted": false,
            })
        );

        let path = status_path(&sim);
        assert_eq!(get(&run, &path, Some(&token)).await.0, 503);
        assert_eq!(get(&run, &path, Some(&token)).await.0, 200);
        assert_eq!(get(&run, "/things", Some(&token)).await.0, 200);
        assert_eq!(get(&run, "/things", Some(&token)).await.0, 401);
        let listed = listed_faults(&run).await;
        assert_eq!(listed["faults_served"], json!(2));
        assert_eq!(listed["rules"][0]["exhausted"], json!(true));
        // The latency rule comes after the 503, so it did not delay that one.
        assert_eq!(listed["rules"][1]["matched"], json!(4));
        assert_eq!(listed["rules"][1]["applied"], json!(3));

        // The control API itself is never faulted.
        assert_eq!(post(r#""unauthorized""#).await.0, 204);
        assert_eq!(get(&run, "/_sim/stats", None).await.0, 200);
        assert_eq!(
            listed_faults(&run).await["rules"].as_array().map(Vec::len),
            Some(4)
        );

        let deleted = c.delete(&url).send().await.expect("send").status().as_u16();
        assert_eq!(deleted, 204);
        assert_eq!(listed_faults(&run).await["rules"], json!([]));
        assert_eq!(get(&run, &path, Some(&token)).await.0, 200);
        assert_eq!(sim.faults_served(), 2);
    }

    #[tokio::test]
    async fn fault_raw_rate_limit_headers_are_sent_verbatim() {
        let run = frozen(3, 31).spawn().await.expect("spawn");
        let sim = run.simulator.clone();
        let token = sim.static_token();
        let path = status_path(&sim);
        sim.add_fault(rule("raw_retry_after=18446744073709551615,count=1"));
        sim.add_fault(rule("raw_retry_after=503:-1,after=1,count=1"));
        sim.add_fault(rule("raw_rate_limit_reset=1e300,after=2,count=1"));
        let (code, headers, _) = fetch(&run, &path, Some(&token)).await;
        assert_eq!(code, 429);
        assert_eq!(
            header_str(&headers, "retry-after"),
            Some("18446744073709551615")
        );
        assert_eq!(header_str(&headers, "x-ratelimit-remaining"), None);
        let (code, headers, _) = fetch(&run, &path, Some(&token)).await;
        assert_eq!(
            (code, header_str(&headers, "retry-after")),
            (503, Some("-1"))
        );
        let (code, headers, body) = fetch(&run, &path, Some(&token)).await;
        assert_eq!(code, 200, "the normal answer");
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["Data"].as_array().map(Vec::len), Some(3));
        assert_eq!(header_str(&headers, "x-ratelimit-remaining"), Some("0"));
        assert_eq!(header_str(&headers, "x-ratelimit-reset"), Some("1e300"));
        let (code, headers, _) = fetch(&run, &path, Some(&token)).await;
        assert_eq!(code, 200);
        assert_eq!(header_str(&headers, "x-ratelimit-reset"), None);
        // A value no header can carry is refused when the rule is added.
        let bad = FaultRule::new(FaultKind::RawRateLimitReset {
            value: "1\n2".into(),
        });
        assert!(bad.check().is_err());
    }

    #[tokio::test]
    async fn lowercase_iccids_are_written_lower_case_and_matched_in_any_case() {
        let sim = Simulator::new(SimulatorConfig {
            lowercase_iccids: true,
            ..config(40, 7)
        });
        sim.set_time(Some(UNIX_EPOCH + Duration::from_secs(T0)));
        let run = sim.spawn().await.expect("spawn");
        let token = run.simulator.static_token();
        let with_f: Vec<String> = run
            .simulator
            .iccids()
            .into_iter()
            .filter(|i| i.ends_with('F'))
            .collect();
        assert!(!with_f.is_empty());
        let listed = get_json(&run, "/things", &token).await;
        let listed: Vec<&str> = listed
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|t| t["ExternalUniqueId"].as_str())
            .collect();
        for iccid in &with_f {
            assert!(
                listed.contains(&iccid.to_ascii_lowercase().as_str()),
                "{iccid}"
            );
            // Asked for in either case, answered once, lower-case.
            for asked in [iccid.clone(), iccid.to_ascii_lowercase()] {
                let data =
                    status_data(&run, &token, &format!("ThingIds={}", ids_param(&[asked]))).await;
                assert_eq!(data.len(), 1);
                assert_eq!(
                    data[0]["ThingId"],
                    json!(format!("ThingId_ICCID_{}", iccid.to_ascii_lowercase()))
                );
            }
        }
    }

    #[test]
    fn fault_rules_as_json() {
        let rule: FaultRule = serde_json::from_str(
            r#"{"kind": {"type": "rate_limited", "retry_after": {"http_date": {"seconds_from_now": 3}}}, "endpoint": "things"}"#,
        )
        .expect("json");
        assert_eq!(
            rule,
            FaultRule::new(FaultKind::RateLimited {
                retry_after: RetryAfter::HttpDate {
                    seconds_from_now: 3
                }
            })
            .endpoint(SimEndpoint::Things)
        );
        let kinds = [
            FaultKind::Latency { millis: 5 },
            FaultKind::Hang,
            FaultKind::Status { code: 503 },
            FaultKind::RateLimited {
                retry_after: RetryAfter::Seconds(2),
            },
            FaultKind::RateLimited {
                retry_after: RetryAfter::None,
            },
            FaultKind::Unauthorized,
            FaultKind::TruncatedJson,
            FaultKind::MalformedJson,
            FaultKind::WrongTypes,
            FaultKind::SuccessFalse,
            FaultKind::Oversized { bytes: 10 },
            FaultKind::RawRetryAfter {
                value: "Wed, 21 Oct 2015 07:28:00 GMT".into(),
                code: 503,
            },
            FaultKind::RawRateLimitReset {
                value: "1e300".into(),
            },
        ];
        for kind in kinds {
            let rule = FaultRule::new(kind).after(2).count(3);
            let v = serde_json::to_value(&rule).expect("serialize");
            assert_eq!(
                serde_json::from_value::<FaultRule>(v).expect("deserialize"),
                rule
            );
        }
        assert_eq!(
            serde_json::to_value(FaultRule::new(FaultKind::Status { code: 502 }))
                .expect("serialize"),
            json!({"kind": {"type": "status", "code": 502}, "endpoint": null, "after": 0, "count": null})
        );
        assert_eq!(
            serde_json::to_value(RetryAfter::Seconds(2)).expect("serialize"),
            json!({"seconds": 2})
        );
        assert_eq!(
            serde_json::to_value(RetryAfter::None).expect("serialize"),
            json!("none")
        );
        for (endpoint, name) in [
            (SimEndpoint::Auth, "auth"),
            (SimEndpoint::Things, "things"),
            (SimEndpoint::Status, "status"),
        ] {
            assert_eq!(
                serde_json::to_value(endpoint).expect("serialize"),
                json!(name)
            );
        }
    }

    #[test]
    fn fault_specs_parse() {
        use FaultKind as K;
        let new = FaultRule::new;
        let cases = [
            ("latency=200ms", new(K::Latency { millis: 200 })),
            ("latency=2s", new(K::Latency { millis: 2000 })),
            ("latency=150", new(K::Latency { millis: 150 })),
            ("hang", new(K::Hang)),
            ("hang,after=10", new(K::Hang).after(10)),
            (
                "status=503,count=5,endpoint=status",
                new(K::Status { code: 503 })
                    .count(5)
                    .endpoint(SimEndpoint::Status),
            ),
            (
                " Status = 502 , endpoint = Things , after = 1 , count = 2 ",
                new(K::Status { code: 502 })
                    .endpoint(SimEndpoint::Things)
                    .after(1)
                    .count(2),
            ),
            (
                "rate_limited",
                new(K::RateLimited {
                    retry_after: RetryAfter::None,
                }),
            ),
            (
                "rate_limited=none",
                new(K::RateLimited {
                    retry_after: RetryAfter::None,
                }),
            ),
            (
                "rate_limited=retry_after:2",
                new(K::RateLimited {
                    retry_after: RetryAfter::Seconds(2),
                }),
            ),
            (
                "rate-limited=3",
                new(K::RateLimited {
                    retry_after: RetryAfter::Seconds(3),
                }),
            ),
            (
                "rate_limited=retry_after:1m",
                new(K::RateLimited {
                    retry_after: RetryAfter::Seconds(60),
                }),
            ),
            (
                "rate_limited=date:30,endpoint=auth",
                new(K::RateLimited {
                    retry_after: RetryAfter::HttpDate {
                        seconds_from_now: 30,
                    },
                })
                .endpoint(SimEndpoint::Auth),
            ),
            ("unauthorized,after=100", new(K::Unauthorized).after(100)),
            ("truncated_json", new(K::TruncatedJson)),
            ("malformed_json", new(K::MalformedJson)),
            ("wrong_types", new(K::WrongTypes)),
            ("success_false,endpoint=all", new(K::SuccessFalse)),
            ("oversized=20MiB", new(K::Oversized { bytes: 20 << 20 })),
            ("oversized=500KB", new(K::Oversized { bytes: 500_000 })),
            ("oversized=2gib", new(K::Oversized { bytes: 2 << 30 })),
            ("oversized=3m", new(K::Oversized { bytes: 3_000_000 })),
            ("oversized=1048576", new(K::Oversized { bytes: 1 << 20 })),
            (
                "raw_retry_after=18446744073709551615",
                new(K::RawRetryAfter {
                    value: "18446744073709551615".into(),
                    code: 429,
                }),
            ),
            (
                "raw_retry_after=503:-1,endpoint=status",
                new(K::RawRetryAfter {
                    value: "-1".into(),
                    code: 503,
                })
                .endpoint(SimEndpoint::Status),
            ),
            (
                "raw_rate_limit_reset=1e300,count=1",
                new(K::RawRateLimitReset {
                    value: "1e300".into(),
                })
                .count(1),
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(spec.parse::<FaultRule>().as_ref(), Ok(&want), "{spec}");
            // Display writes a spec that parses back to the same rule.
            assert_eq!(want.to_string().parse::<FaultRule>(), Ok(want), "{spec}");
        }
        assert_eq!(
            rule("status=503,count=5,endpoint=status").to_string(),
            "status=503,endpoint=status,count=5"
        );
        assert_eq!(rule("oversized=1KiB").to_string(), "oversized=1024");

        for (spec, error) in [
            ("", "empty fault"),
            (" ", "empty fault"),
            ("statuz=503", "unknown fault \"statuz\""),
            ("status", "status needs a value"),
            ("status=abc", "must be a number"),
            ("status=200", "between 400 and 599"),
            ("status=600", "between 400 and 599"),
            ("status=70000", "must be a number"),
            ("hang=5", "hang takes no value"),
            ("truncated_json=1", "takes no value"),
            ("latency", "latency needs a value"),
            ("latency=fast", "invalid duration"),
            ("latency=1500us", "whole milliseconds"),
            ("oversized", "needs a value"),
            ("oversized=20XB", "invalid size"),
            ("oversized=MiB", "invalid size"),
            ("oversized=99999999999GiB", "too large"),
            ("rate_limited=soon", "rate_limited takes"),
            ("rate_limited=date:x", "invalid wait"),
            ("rate_limited=date:1500ms", "invalid wait"),
            ("hang,count=0", "at least 1"),
            ("hang,after=-1", "whole number"),
            ("hang,count=many", "whole number"),
            ("hang,after=1,after=2", "after given twice"),
            ("hang,endpoint=metrics", "endpoint must be"),
            ("hang,retries=3", "unknown option \"retries\""),
            ("hang,", "empty option"),
            ("hang,after", "needs a value"),
            ("raw_retry_after", "needs a value"),
            ("raw_retry_after=404:5", "429 or 500 to 599"),
            ("raw_rate_limit_reset", "needs a value"),
        ] {
            let err = spec.parse::<FaultRule>().expect_err(spec).to_string();
            assert!(err.contains(error), "{spec:?}: {err}");
        }
    }

    #[test]
    fn simulate_flags_take_fault_specs() {
        use crate::config::{Cli, Command};
        use clap::Parser as _;
        let cli = Cli::try_parse_from([
            "monogoto-exporter",
            "simulate",
            "--fault",
            "status=503,count=5,endpoint=status",
            "--fault",
            "hang,after=10",
            "--token-lifetime",
            "90s",
        ])
        .expect("valid flags");
        let Some(Command::Simulate(args)) = cli.command else {
            panic!("not the simulate command");
        };
        assert_eq!(
            args.faults,
            [
                rule("status=503,count=5,endpoint=status"),
                rule("hang,after=10")
            ]
        );
        assert_eq!(args.token_lifetime, Duration::from_secs(90));
        let err = Cli::try_parse_from(["monogoto-exporter", "simulate", "--fault", "status=200"])
            .expect_err("invalid spec");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("between 400 and 599"), "{err}");
    }
}
