//! The fault-spec language: what a fault rule is, how `simulate --fault SPEC`
//! spells one ([`FAULT_SPEC_HELP`]), and the limits a rule must keep. How a
//! faulted request is then answered is in `fault_answers`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use axum::http::HeaderValue;
use serde::{Deserialize, Serialize};

use super::SimEndpoint;

/// No injected delay (hang or latency) holds an answer longer than this.
pub(crate) const MAX_FAULT_DELAY: Duration = Duration::from_secs(600);

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
/// [`FromStr`] parses the compact form of `simulate --fault` (see `FAULT_SPEC_HELP`);
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
    /// Delays the answer by this much (at most `MAX_FAULT_DELAY`), then answers
    /// as the later rules or the normal handling say.
    Latency { millis: u64 },
    /// Accepts the request and never answers, until the client gives up, the server
    /// shuts down, or `MAX_FAULT_DELAY` passes (then a 504).
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
pub(crate) const FAULT_SPEC_HELP: &str = "\
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

pub(super) fn spec_error(message: impl Into<String>) -> ParseFaultError {
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
    pub(super) fn check(&self) -> Result<(), ParseFaultError> {
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
    pub(super) fn applies_to(&self, n: u64) -> bool {
        n > self.after && self.count.is_none_or(|c| n - self.after <= c)
    }

    pub(super) fn exhausted(&self, matched: u64) -> bool {
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

    /// Parses `KIND[=VALUE][,OPTION=VALUE]...`; see `FAULT_SPEC_HELP`.
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
pub(super) struct FaultSlot {
    pub(super) rule: FaultRule,
    /// Requests to the rule's endpoint(s) since it was added.
    pub(super) matched: u64,
    /// Of those, the ones the rule applied to (delayed or answered).
    pub(super) applied: u64,
}

/// What the rules decided for one request.
pub(super) struct FaultPlan {
    pub(super) delay: Duration,
    pub(super) fault: Option<FaultKind>,
}
