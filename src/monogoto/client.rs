//! HTTP access to the Monogoto console API: authentication, requests and
//! their accounting in the health metrics.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::auth::{self, LoginState, Token};
use super::model::{self, DecodeError, StatusPage, THING_ID_PREFIX};
use crate::config::Credentials;
use crate::metrics::{Endpoint, HealthMetrics};

/// Bodies larger than this are refused rather than buffered.
pub const DEFAULT_MAX_BODY_SIZE: usize = 16 * 1024 * 1024;
/// How much of an error body goes into a log line.
const ERROR_BODY_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{endpoint}: request timed out")]
    Timeout { endpoint: &'static str },
    #[error("{endpoint}: cannot reach the API: {detail}")]
    Connect {
        endpoint: &'static str,
        detail: String,
    },
    #[error("{endpoint}: HTTP {code}: {body}")]
    Status {
        endpoint: &'static str,
        code: u16,
        body: String,
    },
    #[error("{endpoint}: {source}")]
    Decode {
        endpoint: &'static str,
        source: DecodeError,
    },
    #[error("{endpoint}: answer larger than {limit} bytes, refused")]
    TooLarge {
        endpoint: &'static str,
        limit: usize,
    },
    #[error("{endpoint}: unauthorized (HTTP 401): {hint}")]
    Unauthorized {
        endpoint: &'static str,
        hint: &'static str,
    },
    #[error("auth: {0}")]
    Login(String),
}

enum AuthMode {
    Static(Arc<Token>),
    Login {
        username: String,
        password: SecretString,
    },
}

pub struct ClientOptions {
    pub base_url: String,
    pub timeout: Duration,
    pub max_body_size: usize,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    max_body_size: usize,
    auth: AuthMode,
    login: Mutex<LoginState>,
    health: Arc<HealthMetrics>,
}

impl Client {
    pub fn new(
        options: ClientOptions,
        credentials: Credentials,
        health: Arc<HealthMetrics>,
    ) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
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
            max_body_size: options.max_body_size,
            auth,
            login: Mutex::new(LoginState::default()),
            health,
        })
    }

    /// One page of `GET /thing/status` for `iccids`.
    pub async fn thing_status(
        &self,
        iccids: &[String],
        limit: usize,
        offset: usize,
    ) -> Result<StatusPage, ApiError> {
        let ids = iccids
            .iter()
            .map(|iccid| encode_query_value(&format!("{THING_ID_PREFIX}{iccid}")))
            .collect::<Vec<_>>()
            .join(",");
        let url = format!(
            "{}/thing/status?ThingIds={ids}&limit={limit}&offset={offset}",
            self.base
        );
        let body = self.get(Endpoint::Status, &url).await?;
        let page = model::parse_status_page(&body).map_err(|source| ApiError::Decode {
            endpoint: Endpoint::Status.label(),
            source,
        })?;
        for field in &page.field_errors {
            self.health.count_parse_error(field);
        }
        Ok(page)
    }

    /// One page of `GET /things`: the number of entries and the ICCIDs found.
    pub async fn list_things(
        &self,
        limit: usize,
        offset: usize,
    ) -> Result<(usize, Vec<String>), ApiError> {
        let url = format!("{}/things?limit={limit}&offset={offset}", self.base);
        let body = self.get(Endpoint::Things, &url).await?;
        model::parse_things_page(&body).map_err(|source| ApiError::Decode {
            endpoint: Endpoint::Things.label(),
            source,
        })
    }

    /// A GET with the bearer token. A 401 on a token that has worked before
    /// means it expired or was revoked: log in once more and repeat the request
    /// once. A 401 on a fresh token is an error (and backs logins off).
    async fn get(&self, endpoint: Endpoint, url: &str) -> Result<Vec<u8>, ApiError> {
        let mut logged_in_again = false;
        loop {
            let token = self.token().await?;
            let mut request = self.http.get(url).bearer_auth(token.secret.expose_secret());
            request = request.header(reqwest::header::ACCEPT, "application/json");
            if let Some(cid) = &token.customer_id {
                request = request.header("apikey", cid);
            }
            let response = self.send(endpoint, request).await?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                match &self.auth {
                    AuthMode::Static(_) => {
                        return Err(ApiError::Unauthorized {
                            endpoint: endpoint.label(),
                            hint: "the token was rejected; check MONOGOTO_TOKEN or the token file",
                        });
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
                        return Err(ApiError::Unauthorized {
                            endpoint: endpoint.label(),
                            hint: "a fresh token was rejected; check the account's permissions",
                        });
                    }
                }
            }
            if !status.is_success() {
                let body = read_body(response, endpoint, self.max_body_size)
                    .await
                    .unwrap_or_default();
                return Err(ApiError::Status {
                    endpoint: endpoint.label(),
                    code: status.as_u16(),
                    body: snippet(&body),
                });
            }
            let body = read_body(response, endpoint, self.max_body_size).await?;
            token.mark_proven();
            return Ok(body);
        }
    }

    /// Sends a request, accounting for it by endpoint and status code.
    async fn send(
        &self,
        endpoint: Endpoint,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let started = Instant::now();
        let result = request.send().await;
        let elapsed = started.elapsed().as_secs_f64();
        match result {
            Ok(response) => {
                self.health
                    .observe_request(endpoint, response.status().as_str(), elapsed);
                Ok(response)
            }
            Err(e) => {
                self.health.observe_request(endpoint, "error", elapsed);
                Err(transport_error(endpoint, &e))
            }
        }
    }

    /// The token to send now, logging in first when there is none or it is
    /// about to expire.
    async fn token(&self) -> Result<Arc<Token>, ApiError> {
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
        if let Some(wait) = state.backoff_left(Instant::now()) {
            // A token that is merely due for renewal still works meanwhile.
            if let Some(token) = &state.token {
                return Ok(token.clone());
            }
            return Err(ApiError::Login(format!(
                "not logging in again for {} after a failed login",
                humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)))
            )));
        }
        match self.log_in(username, password).await {
            Ok((secret, customer_id)) => {
                state.generation += 1;
                let renew_at = auth::renew_at(secret.expose_secret(), now);
                let token = Arc::new(Token::new(secret, state.generation, renew_at, customer_id));
                state.succeed(token.clone());
                tracing::info!(
                    generation = state.generation,
                    "logged in to the Monogoto API"
                );
                Ok(token)
            }
            Err(e) => {
                let wait = state.fail(Instant::now());
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
        let mut state = self.login.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|t| t.generation == token.generation)
        {
            state.token = None;
        }
    }

    /// A token that never worked was rejected: logging in again would only
    /// repeat that, so logins back off as after a failed login. Counted once
    /// per token however many requests were in flight with it.
    async fn reject_fresh_token(&self, endpoint: Endpoint, token: &Token) {
        let mut state = self.login.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|t| t.generation == token.generation)
        {
            state.token = None;
            let wait = state.fail(Instant::now());
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
    ) -> Result<(SecretString, Option<String>), ApiError> {
        let body =
            serde_json::json!({ "UserName": username, "Password": password.expose_secret() });
        let request = self
            .http
            .post(format!("{}/Auth", self.base))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let response = self.send(Endpoint::Auth, request).await?;
        let status = response.status();
        let body = read_body(response, Endpoint::Auth, self.max_body_size).await?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ApiError::Login(format!(
                "login rejected (HTTP {}): check the user name and password",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(ApiError::Status {
                endpoint: Endpoint::Auth.label(),
                code: status.as_u16(),
                body: snippet(&body),
            });
        }
        let (token, customer_id) = auth::parse_login_answer(&body)
            .ok_or_else(|| ApiError::Login("login answer holds no token".to_string()))?;
        Ok((SecretString::from(token), customer_id))
    }
}

fn transport_error(endpoint: Endpoint, e: &reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::Timeout {
            endpoint: endpoint.label(),
        }
    } else {
        // Without the URL: it is long and the endpoint says enough.
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            detail = format!("{detail}: {inner}");
            source = inner.source();
        }
        ApiError::Connect {
            endpoint: endpoint.label(),
            detail: detail.replace(&e.url().map(|u| u.to_string()).unwrap_or_default(), "<url>"),
        }
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

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(ERROR_BODY_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Percent-encodes a query value, keeping RFC 3986's unreserved characters.
pub fn encode_query_value(value: &str) -> String {
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

    #[test]
    fn query_values_are_encoded_only_as_needed() {
        assert_eq!(
            encode_query_value("ThingId_ICCID_8988200000000000001F"),
            "ThingId_ICCID_8988200000000000001F"
        );
        assert_eq!(encode_query_value("a,b&c d"), "a%2Cb%26c%20d");
        assert_eq!(encode_query_value("é"), "%C3%A9");
    }

    #[test]
    fn error_snippets_are_short() {
        assert_eq!(snippet(b"  Access denied \n"), "Access denied");
        assert_eq!(
            snippet("x".repeat(500).as_bytes()).chars().count(),
            ERROR_BODY_CHARS + 1
        );
    }
}
