//! HTTP access to the Monogoto console API: authentication, retries, the
//! shared request budget, and the accounting of every request in its metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::budget::{Budget, Limiter};
use super::decode;
use super::error::{ApiError, Endpoint, shortened};
use super::login::{self, Credentials, LoginState, Token};
use super::metrics::ApiMetrics;
use super::model::{self, DecodeError, FieldError, StatusPage, THING_ID_PREFIX};
use super::retry;

/// Bodies larger than this are refused rather than buffered.
pub(crate) const DEFAULT_MAX_BODY_SIZE: usize = 16 * 1024 * 1024;
pub(crate) const DEFAULT_RETRIES: u32 = 3;
/// How long one request may take.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How one attempt failed: worth another try (after `wait`, if the API said), or not.
enum Failure {
    Retryable {
        error: ApiError,
        wait: Option<Duration>,
    },
    Final(ApiError),
}

enum AuthMode {
    Static(Arc<Token>),
    Login {
        username: String,
        password: SecretString,
    },
}

pub struct ClientOptions {
    pub(crate) base_url: String,
    pub timeout: Duration,
    pub max_body_size: usize,
    pub retries: u32,
    pub budget: Budget,
    pub thing_ids_format: ThingIdsFormat,
}

/// How several SIMs are named in one status request. The documentation shows
/// one SIM only: `ThingIds=a,b` is the likely reading, the parameter repeated
/// (`ThingIds=a&ThingIds=b`) the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThingIdsFormat {
    Comma,
    Repeat,
    /// Comma first; when a request for several SIMs returns none of them, the
    /// other form is tried once, and whichever returns data is kept.
    Auto,
}

impl std::str::FromStr for ThingIdsFormat {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "comma" => Ok(ThingIdsFormat::Comma),
            "repeat" => Ok(ThingIdsFormat::Repeat),
            "auto" => Ok(ThingIdsFormat::Auto),
            _ => Err("must be comma, repeat or auto"),
        }
    }
}

impl std::fmt::Display for ThingIdsFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ThingIdsFormat::Comma => "comma",
            ThingIdsFormat::Repeat => "repeat",
            ThingIdsFormat::Auto => "auto",
        })
    }
}

/// The form in use, and whether an answer has settled it.
struct IdsForm {
    repeat: std::sync::atomic::AtomicBool,
    settled: std::sync::atomic::AtomicBool,
    /// Held by requests while the form is unsettled, so that concurrent
    /// batches do not each spend a request on the same question.
    probing: Mutex<()>,
    /// A 400 was answered by trying the other form once, and that was
    /// refused too: further 400s are about ICCIDs, not worth another try.
    other_form_refused: std::sync::atomic::AtomicBool,
    /// The form is to be found out (`auto`), not configured.
    probed: bool,
}

impl ClientOptions {
    pub fn new(base_url: impl Into<String>) -> Self {
        ClientOptions {
            base_url: base_url.into(),
            timeout: DEFAULT_TIMEOUT,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            retries: DEFAULT_RETRIES,
            budget: Budget::unlimited(),
            thing_ids_format: ThingIdsFormat::Auto,
        }
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    max_body_size: usize,
    retries: u32,
    limiter: Limiter,
    auth: AuthMode,
    login: Mutex<LoginState>,
    metrics: Arc<ApiMetrics>,
    ids_form: IdsForm,
    /// The longest pause the API can impose (see [`retry::MAX_SERVER_PAUSE`]).
    max_server_pause: Duration,
    /// A capped pause is warned about once, not at every answer.
    warned_pause_capped: AtomicBool,
    /// `GET /thing/status` requests sent, retries and pages included: what
    /// the plan measures a batch's real cost by.
    status_requests: std::sync::atomic::AtomicU64,
}

impl Client {
    pub fn new(
        options: ClientOptions,
        credentials: Credentials,
        metrics: Arc<ApiMetrics>,
    ) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(options.timeout)
            .user_agent(concat!("monogoto-exporter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Connect {
                endpoint: "client",
                detail: e.to_string(),
            })?;
        let auth = match credentials {
            Credentials::Token(secret) => {
                AuthMode::Static(Arc::new(Token::new(secret, 0, None, None)))
            }
            Credentials::Login { username, password } => AuthMode::Login { username, password },
        };
        Ok(Client {
            http,
            base: options.base_url.trim_end_matches('/').to_string(),
            timeout: options.timeout,
            max_body_size: options.max_body_size,
            retries: options.retries,
            limiter: Limiter::new(&options.budget),
            auth,
            login: Mutex::new(LoginState::default()),
            metrics,
            ids_form: IdsForm {
                repeat: (options.thing_ids_format == ThingIdsFormat::Repeat).into(),
                settled: (options.thing_ids_format != ThingIdsFormat::Auto).into(),
                probing: Mutex::new(()),
                other_form_refused: false.into(),
                probed: options.thing_ids_format == ThingIdsFormat::Auto,
            },
            max_server_pause: retry::MAX_SERVER_PAUSE,
            warned_pause_capped: AtomicBool::new(false),
            status_requests: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Lowers the longest pause the API can impose below
    /// [`retry::MAX_SERVER_PAUSE`], so that tests need not wait 15 minutes.
    pub fn with_max_server_pause(mut self, max: Duration) -> Self {
        self.max_server_pause = max.min(retry::MAX_SERVER_PAUSE);
        self
    }

    /// The request budget in force (lower than configured once the API announced less).
    pub fn budget(&self) -> Budget {
        self.limiter.budget()
    }

    /// The `ThingIds` form found out in `auto` mode (repeated: true), once settled.
    pub(crate) fn found_ids_form(&self) -> Option<bool> {
        use std::sync::atomic::Ordering::Relaxed;
        (self.ids_form.probed && self.ids_form.settled.load(Relaxed))
            .then(|| self.ids_form.repeat.load(Relaxed))
    }

    /// Takes the `ThingIds` form a previous process found out (`auto` mode
    /// only: a configured form wins), so that it is not probed again.
    pub(crate) fn assume_ids_form(&self, repeat: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.ids_form.probed && !self.ids_form.settled.load(Relaxed) {
            self.ids_form.repeat.store(repeat, Relaxed);
            self.ids_form.settled.store(true, Relaxed);
        }
    }

    /// Counts a previous process's requests against the budget.
    pub(crate) fn restore_budget_spent(&self, spent: &crate::monogoto::budget::Spent) {
        self.limiter.restore(spent);
    }

    /// Keeps every request in `journal` before it goes out (with a budget:
    /// without one there is nothing to overspend).
    pub(crate) fn keep_spending_in(&self, journal: Arc<dyn crate::monogoto::budget::SpendJournal>) {
        if !self.limiter.budget().is_unlimited() {
            self.limiter.keep_in(journal);
        }
    }

    /// `GET /thing/status` requests sent so far, retries and pages included.
    pub(crate) fn status_requests(&self) -> u64 {
        self.status_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the API can be used with these credentials, for a replica
    /// with nothing to poll: a login for a user and password (none while the
    /// token in hand is good), the smallest listing for a token given.
    pub(crate) async fn check_access(&self) -> Result<(), ApiError> {
        match &self.auth {
            AuthMode::Login { .. } => self.token(None).await.map(|_| ()),
            AuthMode::Static(_) => self.list_things(1, 0, None).await.map(|_| ()),
        }
    }

    /// One page of `GET /thing/status` for `iccids`. Until an answer has
    /// settled which form of `ThingIds` the API takes (see
    /// [`ThingIdsFormat::Auto`]), a request for several SIMs that returns none
    /// of them is asked once more in the other form, and so is the first one
    /// refused with 400: an API that refuses one form would otherwise have
    /// every batch split SIM by SIM.
    pub async fn thing_status(
        &self,
        iccids: &[String],
        limit: usize,
        offset: usize,
        deadline: Option<Instant>,
    ) -> Result<StatusPage, ApiError> {
        use std::sync::atomic::Ordering::Relaxed;
        // One SIM reads the same in both forms: it teaches nothing, and
        // must not settle the form that happened to be tried.
        let _probing = if self.ids_form.settled.load(Relaxed) || offset > 0 || iccids.len() < 2 {
            None
        } else {
            Some(self.ids_form.probing.lock().await)
        };
        let repeat = self.ids_form.repeat.load(Relaxed);
        let first = self
            .thing_status_as(iccids, repeat, limit, offset, deadline)
            .await;
        let page = match first {
            Err(ApiError::Status { code: 400, .. })
                if _probing.is_some()
                    && !self.ids_form.settled.load(Relaxed)
                    && !self.ids_form.other_form_refused.load(Relaxed) =>
            {
                let other = self
                    .thing_status_as(iccids, !repeat, limit, offset, deadline)
                    .await;
                match other {
                    Ok(page) if answers_any(&page, iccids) => {
                        self.settle(!repeat);
                        return Ok(page);
                    }
                    // Refused in both forms: about the ICCIDs, not the form.
                    _ => {
                        self.ids_form.other_form_refused.store(true, Relaxed);
                        return first;
                    }
                }
            }
            other => other?,
        };
        if _probing.is_none() || self.ids_form.settled.load(Relaxed) {
            return Ok(page);
        }
        if answers_any(&page, iccids) {
            self.settle(repeat);
            return Ok(page);
        }
        let other = self
            .thing_status_as(iccids, !repeat, limit, offset, deadline)
            .await?;
        if answers_any(&other, iccids) {
            self.settle(!repeat);
            return Ok(other);
        }
        Ok(page)
    }

    /// Keeps the form that returned data, and says which it is once.
    fn settle(&self, repeat: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.ids_form.repeat.store(repeat, Relaxed);
        if !self.ids_form.settled.swap(true, Relaxed) {
            tracing::info!(
                thing_ids_format = if repeat { "repeat" } else { "comma" },
                "the API takes several ThingIds in one request in this form \
                 (--monogoto.thing-ids-format sets it)"
            );
        }
    }

    async fn thing_status_as(
        &self,
        iccids: &[String],
        repeat: bool,
        limit: usize,
        offset: usize,
        deadline: Option<Instant>,
    ) -> Result<StatusPage, ApiError> {
        let ids = iccids
            .iter()
            .map(|iccid| encode_query_value(&format!("{THING_ID_PREFIX}{iccid}")))
            .collect::<Vec<_>>()
            .join(if repeat { "&ThingIds=" } else { "," });
        let url = format!(
            "{}/thing/status?ThingIds={ids}&limit={limit}&offset={offset}",
            self.base
        );
        let body = self.get(Endpoint::Status, &url, deadline).await?;
        let page = decode::parse_status_page(&body);
        self.decoded(Endpoint::Status, page, |p| &p.field_errors)
    }

    /// One page of `GET /things`: the number of entries and the Things found.
    pub(crate) async fn list_things(
        &self,
        limit: usize,
        offset: usize,
        deadline: Option<Instant>,
    ) -> Result<(usize, Vec<model::ListedThing>), ApiError> {
        let url = format!("{}/things?limit={limit}&offset={offset}", self.base);
        let body = self.get(Endpoint::Things, &url, deadline).await?;
        let page = decode::parse_things_listing(&body);
        let page = self.decoded(Endpoint::Things, page, |p| &p.field_errors)?;
        Ok((page.returned, page.things()))
    }

    /// An answer of `endpoint` as decoded, with the values it could not
    /// understand counted.
    fn decoded<T>(
        &self,
        endpoint: Endpoint,
        decoded: Result<T, DecodeError>,
        field_errors: impl FnOnce(&T) -> &[FieldError],
    ) -> Result<T, ApiError> {
        let page = decoded.map_err(|source| ApiError::Decode {
            endpoint: endpoint.label(),
            source,
        })?;
        for field in field_errors(&page) {
            self.metrics.count_parse_error(field);
        }
        Ok(page)
    }

    /// A GET, tried again after timeouts, connection errors, 429 and 5xx, at
    /// most `retries` more times and never past `deadline`.
    async fn get(
        &self,
        endpoint: Endpoint,
        url: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, ApiError> {
        let mut retries = 0;
        loop {
            let (error, wait) = match self.attempt(endpoint, url, deadline).await {
                Ok(body) => return Ok(body),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Retryable { error, wait }) => (error, wait),
            };
            if retries >= self.retries {
                return Err(error);
            }
            let delay = wait.unwrap_or_else(|| retry::backoff(retries, fastrand::f64()));
            if deadline.is_some_and(|d| Instant::now().checked_add(delay).is_none_or(|t| t >= d)) {
                return Err(error);
            }
            retries += 1;
            self.metrics
                .retries
                .with_label_values(&[endpoint.label()])
                .inc();
            tracing::debug!(
                endpoint = endpoint.label(),
                error = %error,
                retry = retries,
                delay_ms = delay.as_millis() as u64,
                "retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One try, with the bearer token. A 401 on a token that has worked before
    /// means it expired or was revoked: log in once more and repeat at once.
    /// A 401 on a fresh token is final (and backs logins off).
    async fn attempt(
        &self,
        endpoint: Endpoint,
        url: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, Failure> {
        let mut logged_in_again = false;
        loop {
            let token = self.token(deadline).await.map_err(Failure::Final)?;
            let mut request = self
                .http
                .get(url)
                .bearer_auth(token.secret.expose_secret())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(cid) = &token.customer_id {
                request = request.header("apikey", cid);
            }
            let response = self.send(endpoint, request, deadline).await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED {
                match &self.auth {
                    AuthMode::Static(_) => {
                        return Err(Failure::Final(ApiError::Unauthorized {
                            endpoint: endpoint.label(),
                            hint: "the token was rejected; check MONOGOTO_TOKEN or the token file",
                        }));
                    }
                    AuthMode::Login { .. } if token.is_proven() && !logged_in_again => {
                        tracing::info!(
                            endpoint = endpoint.label(),
                            "token rejected, logging in again"
                        );
                        self.invalidate(&token).await;
                        logged_in_again = true;
                        continue;
                    }
                    AuthMode::Login { .. } => {
                        self.reject_fresh_token(endpoint, &token).await;
                        return Err(Failure::Final(ApiError::Unauthorized {
                            endpoint: endpoint.label(),
                            hint: "a fresh token was rejected; check the account's permissions",
                        }));
                    }
                }
            }
            if !status.is_success() {
                let wait = retry_after(response.headers()).map(|w| self.server_pause(w));
                let body = read_body(response, endpoint, self.max_body_size)
                    .await
                    .unwrap_or_default();
                let error = ApiError::Status {
                    endpoint: endpoint.label(),
                    code: status.as_u16(),
                    body: snippet(&body, token.secret.expose_secret()),
                };
                let rate_limited = status == StatusCode::TOO_MANY_REQUESTS;
                if rate_limited {
                    self.metrics.rate_limited.inc();
                }
                if rate_limited || status.is_server_error() {
                    if let Some(wait) = wait {
                        // Every request of the process waits, not only this
                        // one: a 503 with Retry-After is as clear as a 429.
                        self.pause_all(wait);
                    }
                    return Err(Failure::Retryable { error, wait });
                }
                return Err(Failure::Final(error));
            }
            return match read_body(response, endpoint, self.max_body_size).await {
                Ok(body) => {
                    token.mark_proven();
                    Ok(body)
                }
                Err(error @ (ApiError::Timeout { .. } | ApiError::Connect { .. })) => {
                    Err(Failure::Retryable { error, wait: None })
                }
                Err(error) => Err(Failure::Final(error)),
            };
        }
    }

    /// Sends a request once the rate limit allows, accounting for it by
    /// endpoint and status code, with a timeout that ends by the deadline.
    async fn send(
        &self,
        endpoint: Endpoint,
        request: reqwest::RequestBuilder,
        deadline: Option<Instant>,
    ) -> Result<reqwest::Response, Failure> {
        let waiting = self.metrics.budget_wait.start();
        self.limiter.acquire(deadline).await.map_err(|_| {
            Failure::Final(ApiError::DeadlineExceeded {
                endpoint: endpoint.label(),
            })
        })?;
        drop(waiting);
        let timeout = match deadline {
            Some(d) => self
                .timeout
                .min(d.saturating_duration_since(Instant::now())),
            None => self.timeout,
        };
        if timeout.is_zero() {
            return Err(Failure::Final(ApiError::DeadlineExceeded {
                endpoint: endpoint.label(),
            }));
        }
        if endpoint == Endpoint::Status {
            self.status_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let started = Instant::now();
        let result = request.timeout(timeout).send().await;
        let elapsed = started.elapsed().as_secs_f64();
        match result {
            Ok(response) => {
                self.metrics
                    .observe_request(endpoint, response.status().as_str(), elapsed);
                self.note_rate_limit_headers(response.headers());
                Ok(response)
            }
            Err(e) if e.is_builder() => {
                self.metrics.observe_request(endpoint, "error", elapsed);
                Err(Failure::Final(ApiError::Request {
                    endpoint: endpoint.label(),
                    detail: error_chain(&e),
                }))
            }
            Err(e) => {
                self.metrics.observe_request(endpoint, "error", elapsed);
                Err(Failure::Retryable {
                    error: transport_error(endpoint, &e),
                    wait: None,
                })
            }
        }
    }

    /// `X-RateLimit-Remaining: 0` means the window is spent: hold every request
    /// back until it resets. An `X-RateLimit-Limit` below the configured budget
    /// is followed from then on.
    fn note_rate_limit_headers(&self, headers: &HeaderMap) {
        let announced = headers
            .get("x-ratelimit-limit")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        if let Some(announced) = announced
            && let Some(budget) = self.limiter.follow_announced_limit(announced)
        {
            tracing::warn!(
                announced,
                budget = %budget,
                "the API announces a lower rate limit than --monogoto.rate-limit; following the API's"
            );
        }
        let remaining = headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        if remaining.is_some_and(|r| r <= 0.0) {
            let reset = headers
                .get("x-ratelimit-reset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_rate_limit_reset(v, SystemTime::now()))
                .or_else(|| retry_after(headers))
                .unwrap_or(retry::DEFAULT_RATE_LIMIT_WINDOW);
            let reset = self.server_pause(reset);
            tracing::info!(
                pause_ms = reset.as_millis() as u64,
                "API rate-limit window spent; pausing requests"
            );
            self.pause_all(reset);
        }
    }

    /// A pause the API asked for, at most `max_server_pause`; the first one
    /// cut short is logged, as it means the API (or a proxy) says something odd.
    fn server_pause(&self, asked: Duration) -> Duration {
        if asked < self.max_server_pause {
            return asked;
        }
        if !self.warned_pause_capped.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                asked_at_least = %humantime::format_duration(asked),
                cap = %humantime::format_duration(self.max_server_pause),
                "the API asked to pause requests for this long or longer; pausing at most the cap (warned once)"
            );
        }
        self.max_server_pause
    }

    /// Holds every request of the process back for `wait`.
    fn pause_all(&self, wait: Duration) {
        // Capped pauses always fit; checked all the same, as Instant + Duration panics on overflow.
        if let Some(until) = Instant::now().checked_add(wait) {
            self.limiter.pause_until(until);
        }
    }

    /// The token to send now, logging in first when there is none or it is
    /// about to expire.
    async fn token(&self, deadline: Option<Instant>) -> Result<Arc<Token>, ApiError> {
        let (username, password) = match &self.auth {
            AuthMode::Static(token) => return Ok(token.clone()),
            AuthMode::Login { username, password } => (username, password),
        };
        let mut state = self.login.lock().await;
        let now = SystemTime::now();
        if let Some(token) = &state.token
            && !token.needs_renewal(now)
        {
            return Ok(token.clone());
        }
        if let Some(wait) = state.backoff_left(std::time::Instant::now()) {
            // A token that is merely due for renewal still works meanwhile.
            if let Some(token) = &state.token {
                return Ok(token.clone());
            }
            return Err(ApiError::Login(format!(
                "not logging in again for {} after a failed login",
                humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)))
            )));
        }
        match self.log_in(username, password, deadline).await {
            Ok((secret, customer_id)) => {
                state.generation += 1;
                let renew_at = login::renew_at(secret.expose_secret(), now);
                let token = Arc::new(Token::new(secret, state.generation, renew_at, customer_id));
                state.succeed(token.clone());
                tracing::info!(
                    generation = state.generation,
                    "logged in to the Monogoto API"
                );
                Ok(token)
            }
            Err(e) => {
                let wait = state.fail(std::time::Instant::now());
                state.token = None;
                tracing::error!(
                    error = %e,
                    next_attempt_in = %humantime::format_duration(wait),
                    "login to the Monogoto API failed"
                );
                Err(e)
            }
        }
    }

    /// Forgets `token` unless a newer one already replaced it.
    async fn invalidate(&self, token: &Token) {
        self.login.lock().await.forget(token);
    }

    /// A token that never worked was rejected: logging in again would only
    /// repeat that, so logins back off as after a failed login. Counted once
    /// per token however many requests were in flight with it.
    async fn reject_fresh_token(&self, endpoint: Endpoint, token: &Token) {
        let mut state = self.login.lock().await;
        if state.forget(token) {
            let wait = state.fail(std::time::Instant::now());
            tracing::warn!(
                endpoint = endpoint.label(),
                next_login_in = %humantime::format_duration(wait),
                "a freshly issued token was rejected; backing off logins"
            );
        }
    }

    async fn log_in(
        &self,
        username: &str,
        password: &SecretString,
        deadline: Option<Instant>,
    ) -> Result<(SecretString, Option<String>), ApiError> {
        let body =
            serde_json::json!({ "UserName": username, "Password": password.expose_secret() });
        let request = self
            .http
            .post(format!("{}/Auth", self.base))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let response = match self.send(Endpoint::Auth, request, deadline).await {
            Ok(response) => response,
            Err(Failure::Final(e) | Failure::Retryable { error: e, .. }) => return Err(e),
        };
        let status = response.status();
        // No part of this body goes into an error or a log line: an API or a
        // proxy that echoes the request would show the password there.
        let body = read_body(response, Endpoint::Auth, self.max_body_size).await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ApiError::Login(format!(
                "login rejected (HTTP {}): check the user name and password",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(ApiError::LoginStatus {
                code: status.as_u16(),
                bytes: body.len(),
            });
        }
        let (token, customer_id) = login::parse_login_answer(&body).ok_or_else(|| {
            ApiError::Login(format!(
                "the login answer (HTTP {}, {} bytes) holds no token; check --monogoto.url",
                status.as_u16(),
                body.len()
            ))
        })?;
        Ok((SecretString::from(token), customer_id))
    }
}

/// Whether a page answers for any of the SIMs asked for.
fn answers_any(page: &StatusPage, iccids: &[String]) -> bool {
    page.things
        .iter()
        .any(|thing| iccids.iter().any(|i| i.eq_ignore_ascii_case(&thing.iccid)))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()))
}

fn transport_error(endpoint: Endpoint, e: &reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::Timeout {
            endpoint: endpoint.label(),
        }
    } else {
        ApiError::Connect {
            endpoint: endpoint.label(),
            detail: error_chain(e),
        }
    }
}

/// The error and its sources on one line, without the URL: it is long and the
/// endpoint says enough.
fn error_chain(e: &reqwest::Error) -> String {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        detail = format!("{detail}: {inner}");
        source = inner.source();
    }
    match e.url().map(|u| u.to_string()) {
        // Replacing "" would put "<url>" between every two characters.
        Some(url) if !url.is_empty() => detail.replace(&url, "<url>"),
        _ => detail,
    }
}

/// Reads a body, refusing it once it grows past `limit`.
async fn read_body(
    mut response: reqwest::Response,
    endpoint: Endpoint,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::TooLarge {
        endpoint: endpoint.label(),
        limit,
    };
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(transport_error(endpoint, &e)),
        }
    }
}

/// An error body as an error message shows it, without `secret` (the token
/// sent): an API or a proxy that echoes the request would show it there.
fn snippet(body: &[u8], secret: &str) -> String {
    let text = String::from_utf8_lossy(body);
    // Cut out before shortening, so that no part of the token survives the cut.
    let text = if secret.is_empty() {
        text.into_owned()
    } else {
        text.replace(secret, "<token>")
    };
    shortened(text.trim())
}

/// Percent-encodes a query value, keeping RFC 3986's unreserved characters.
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monogoto::error::{API_TEXT_CHARS, ErrorKind};

    #[test]
    fn query_values_are_encoded_only_as_needed() {
        assert_eq!(
            encode_query_value("ThingId_ICCID_8988200000000000001F"),
            "ThingId_ICCID_8988200000000000001F"
        );
        assert_eq!(encode_query_value("a,b&c d"), "a%2Cb%26c%20d");
        assert_eq!(encode_query_value("é"), "%C3%A9");
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_built_is_final_and_legible() {
        // A token no header can carry (config refuses it; this is the net below).
        let metrics = Arc::new(ApiMetrics::new());
        let client = Client::new(
            ClientOptions::new("http://127.0.0.1:9"),
            Credentials::Token(SecretString::from("tok\nen")),
            metrics.clone(),
        )
        .expect("client");
        let error = client
            .thing_status(&["8988200000000000001".to_string()], 50, 0, None)
            .await
            .expect_err("cannot be sent");
        assert!(matches!(error, ApiError::Request { .. }), "{error:?}");
        let text = error.to_string();
        assert!(
            text.starts_with("status: cannot build the request: "),
            "{text}"
        );
        assert!(!text.contains("<url>"), "{text}");
        assert!(!text.contains("tok"), "no secret in the error: {text}");
        assert_eq!(
            metrics
                .retries
                .with_label_values(&[Endpoint::Status.label()])
                .get(),
            0,
            "not retried"
        );
    }

    /// Logs written while a test runs, to look for secrets in.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        /// Captures every log line of this thread (a `#[tokio::test]` runs
        /// its tasks on it) until the guard is dropped.
        fn install(&self) -> tracing::subscriber::DefaultGuard {
            let writer = self.clone();
            tracing::subscriber::set_default(
                tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::TRACE)
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .finish(),
            )
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
        }
    }

    /// A fake API that answers every request with `code` and echoes it back,
    /// its bearer token and body, as a misconfigured proxy may.
    async fn echoing_api(code: u16) -> String {
        use axum::http::{HeaderMap, StatusCode};
        let status = StatusCode::from_u16(code).expect("a status code");
        let app = axum::Router::new().fallback(
            move |headers: HeaderMap, body: bytes::Bytes| async move {
                let auth = headers
                    .get(reqwest::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let echo = format!(
                    "you sent: Authorization: {auth} {}",
                    String::from_utf8_lossy(&body)
                );
                (status, echo)
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_login_answer_that_echoes_the_request_never_shows_the_password() {
        const PASSWORD: &str = "pa55-w0rd-never-shown";
        let logs = Captured::default();
        let _logging = logs.install();
        let cases = [
            (502, "auth: login answered HTTP 502 (", ErrorKind::Status),
            (200, "auth: the login answer (HTTP 200, ", ErrorKind::Auth),
            (
                401,
                "auth: login rejected (HTTP 401): check the user name and password",
                ErrorKind::Auth,
            ),
        ];
        for (code, expected, kind) in cases {
            let client = Client::new(
                ClientOptions::new(echoing_api(code).await),
                Credentials::Login {
                    username: "ops@example.com".into(),
                    password: SecretString::from(PASSWORD),
                },
                Arc::new(ApiMetrics::new()),
            )
            .expect("client");
            let error = client
                .thing_status(&["8988200000000000001".to_string()], 50, 0, None)
                .await
                .expect_err("the login fails");
            let (text, debug) = (error.to_string(), format!("{error:?}"));
            assert!(text.starts_with(expected), "{code}: {text}");
            assert_eq!(error.kind(), kind, "{code}: {debug}");
            assert!(!text.contains(PASSWORD), "{code}: password in {text}");
            assert!(!debug.contains(PASSWORD), "{code}: password in {debug}");
        }
        let logs = logs.text();
        assert!(
            logs.contains("login answered HTTP 502") && logs.contains("login rejected"),
            "the failed logins were logged: {logs}"
        );
        assert!(!logs.contains(PASSWORD), "password in the logs: {logs}");
    }

    #[tokio::test]
    async fn an_error_answer_that_echoes_the_request_never_shows_the_token() {
        const TOKEN: &str = "s3cr3t-bearer-token";
        let logs = Captured::default();
        let _logging = logs.install();
        let mut options = ClientOptions::new(echoing_api(502).await);
        options.retries = 0;
        let client = Client::new(
            options,
            Credentials::Token(SecretString::from(TOKEN)),
            Arc::new(ApiMetrics::new()),
        )
        .expect("client");
        let error = client
            .thing_status(&["8988200000000000001".to_string()], 50, 0, None)
            .await
            .expect_err("502");
        let (text, debug) = (error.to_string(), format!("{error:?}"));
        assert!(
            text.starts_with("status: HTTP 502: you sent: Authorization: Bearer <token>"),
            "{text}"
        );
        assert!(!text.contains(TOKEN) && !debug.contains(TOKEN), "{debug}");
        assert!(!logs.text().contains(TOKEN), "{}", logs.text());
    }

    #[test]
    fn error_snippets_are_short_and_hold_no_token() {
        assert_eq!(snippet(b"  Access denied \n", "tok"), "Access denied");
        assert_eq!(
            snippet("x".repeat(500).as_bytes(), "tok").chars().count(),
            API_TEXT_CHARS + 1
        );
        let echoed = format!("{}Authorization: Bearer s3cr3t-token", "x".repeat(170));
        assert_eq!(
            snippet(echoed.as_bytes(), "s3cr3t-token"),
            format!("{}Authorization: Bearer <token>", "x".repeat(170)),
            "cut out before shortening: no part of the token is left"
        );
    }
}
