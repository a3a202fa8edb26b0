//! Credentials and the token lifecycle: a static token, or a login whose JWT
//! `exp` says when to log in again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use secrecy::SecretString;
use serde_json::Value;

/// Log in again this long before the token's `exp`, or after a fifth of its
/// lifetime is left, whichever comes later: a short-lived token is not renewed
/// on every request.
const RENEW_BEFORE_EXP: Duration = Duration::from_secs(60);
/// After a failed login, wait at least this long before the next one, doubling
/// up to [`MAX_LOGIN_BACKOFF`], so that the account is not locked.
pub(crate) const MIN_LOGIN_BACKOFF: Duration = Duration::from_secs(60);
pub(crate) const MAX_LOGIN_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// How the exporter authenticates: a static token, or a login.
#[derive(Debug, Clone)]
pub enum Credentials {
    Token(SecretString),
    Login {
        username: String,
        password: SecretString,
    },
}

/// A bearer token and what is known about it.
pub struct Token {
    pub secret: SecretString,
    /// Increases with every login, so a 401 invalidates only the token it was answered to.
    pub(crate) generation: u64,
    /// When to log in again before using it; `None` for static tokens and tokens without `exp`.
    pub(crate) renew_at: Option<SystemTime>,
    /// Sent as the `apikey` header, which some endpoints want.
    pub(crate) customer_id: Option<String>,
    /// Set once a request with this token succeeded. A 401 on a token that never
    /// worked is not cured by logging in again.
    proven: AtomicBool,
}

impl Token {
    pub fn new(
        secret: SecretString,
        generation: u64,
        renew_at: Option<SystemTime>,
        customer_id: Option<String>,
    ) -> Self {
        Token {
            secret,
            generation,
            renew_at,
            customer_id,
            proven: AtomicBool::new(false),
        }
    }

    pub(crate) fn mark_proven(&self) {
        self.proven.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_proven(&self) -> bool {
        self.proven.load(Ordering::Relaxed)
    }

    pub(crate) fn needs_renewal(&self, now: SystemTime) -> bool {
        self.renew_at.is_some_and(|at| now >= at)
    }
}

/// Login state, behind an async mutex so that concurrent requests wait for one
/// login instead of each starting their own.
#[derive(Default)]
pub(crate) struct LoginState {
    pub token: Option<Arc<Token>>,
    pub(crate) generation: u64,
    pub(crate) failures: u32,
    pub(crate) next_attempt: Option<Instant>,
}

impl LoginState {
    /// Forgets the current token if it is `token`; false when a newer one
    /// already replaced it.
    pub(crate) fn forget(&mut self, token: &Token) -> bool {
        let current = self
            .token
            .as_ref()
            .is_some_and(|t| t.generation == token.generation);
        if current {
            self.token = None;
        }
        current
    }

    /// Records a failed login (or a token that never worked) and returns the
    /// time to wait before the next attempt.
    pub fn fail(&mut self, now: Instant) -> Duration {
        let wait = login_backoff(self.failures);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = Some(now + wait);
        wait
    }

    pub fn succeed(&mut self, token: Arc<Token>) {
        self.failures = 0;
        self.next_attempt = None;
        self.token = Some(token);
    }

    /// How long until a login may be tried again; `None` when it may now.
    pub(crate) fn backoff_left(&self, now: Instant) -> Option<Duration> {
        self.next_attempt
            .and_then(|at| at.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

/// 1 min, 2 min, 4 min, ... capped at 15 min.
pub(crate) fn login_backoff(previous_failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(previous_failures.min(10))
        .unwrap_or(u32::MAX);
    MIN_LOGIN_BACKOFF
        .saturating_mul(factor)
        .min(MAX_LOGIN_BACKOFF)
}

/// The `exp` and `iat` claims of a JWT, read without verifying the signature
/// (we only need to know when the server will stop accepting it).
pub(crate) fn jwt_times(token: &str) -> Option<(SystemTime, Option<SystemTime>)> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let time = |name: &str| {
        let secs = claims.get(name)?.as_f64()?;
        // Checked: an `exp` of 1e300 (or 1e19) must not panic the login.
        let since_epoch = Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())?;
        UNIX_EPOCH.checked_add(since_epoch)
    };
    Some((time("exp")?, time("iat")))
}

/// When to log in again, by our clock, for a token obtained at `obtained`.
/// The lifetime is taken from `exp - iat` when the token says when it was
/// issued, so a server clock that differs from ours does not make every
/// token look expired. `None` when the token carries no usable expiry.
pub(crate) fn renew_at(token: &str, obtained: SystemTime) -> Option<SystemTime> {
    let (expiry, issued) = jwt_times(token)?;
    let lifetime = match issued {
        Some(issued) => expiry.duration_since(issued).ok()?,
        None => expiry.duration_since(obtained).ok()?,
    };
    let expiry = obtained.checked_add(lifetime)?;
    (!lifetime.is_zero()).then(|| renewal_time(obtained, expiry))
}

/// When to log in again, given when the token was obtained and when it expires.
pub(crate) fn renewal_time(obtained: SystemTime, expiry: SystemTime) -> SystemTime {
    let lifetime = expiry.duration_since(obtained).unwrap_or_default();
    let margin = RENEW_BEFORE_EXP.min(lifetime / 5);
    expiry - margin
}

/// Reads the token and customer id out of a `POST /Auth` answer. The
/// documented field is `token`; a few spellings and a `Data` envelope are
/// accepted as well.
pub(crate) fn parse_login_answer(body: &[u8]) -> Option<(String, Option<String>)> {
    let root: Value = serde_json::from_slice(body).ok()?;
    let obj = match root.get("Data").or_else(|| root.get("data")) {
        Some(inner @ Value::Object(_)) if token_of(inner).is_some() => inner,
        _ => &root,
    };
    let token = token_of(obj)?;
    let customer_id = ["CustomerId", "customerId"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .map(str::to_string);
    Some((token, customer_id))
}

fn token_of(obj: &Value) -> Option<String> {
    ["token", "Token", "accessToken", "access_token"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", enc("{\"alg\":\"HS256\"}"), enc(claims))
    }

    #[test]
    fn reads_exp_without_verifying() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(
            jwt_times(&jwt("{\"exp\":1700000000}")),
            Some((at(1_700_000_000), None))
        );
        assert_eq!(
            jwt_times(&jwt("{\"exp\":1700000000,\"iat\":1699985600}")),
            Some((at(1_700_000_000), Some(at(1_699_985_600))))
        );
        assert_eq!(jwt_times(&jwt("{\"sub\":\"x\"}")), None);
        // Times no clock can hold are no times, not a panic.
        for exp in ["1e300", "1e19", "18446744073709551615", "-5", "0"] {
            assert_eq!(
                jwt_times(&jwt(&format!("{{\"exp\":{exp}}}"))),
                None,
                "{exp}"
            );
            let token = jwt(&format!("{{\"exp\":{exp},\"iat\":1}}"));
            assert_eq!(renew_at(&token, at(1_700_000_000)), None, "{exp}");
        }
        // Far, but on the clock: renewed some day, not a panic.
        let far = jwt("{\"exp\":9000000000000000000,\"iat\":1}");
        assert!(renew_at(&far, at(1_700_000_000)).is_some());
        assert_eq!(jwt_times("opaque-token"), None);
        assert_eq!(jwt_times("a.%%%.c"), None);
    }

    #[test]
    fn renewal_uses_the_lifetime_not_the_server_clock() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        // Issued and expiring a year before our clock's now: the lifetime still counts.
        let skewed = jwt("{\"exp\":1600014400,\"iat\":1600000000}");
        assert_eq!(
            renew_at(&skewed, at(1_700_000_000)),
            Some(at(1_700_000_000 + 14_400 - 60))
        );
        let no_iat = jwt("{\"exp\":1700003600}");
        assert_eq!(
            renew_at(&no_iat, at(1_700_000_000)),
            Some(at(1_700_003_540))
        );
        assert_eq!(
            renew_at(&no_iat, at(1_800_000_000)),
            None,
            "already expired by our clock: rely on 401"
        );
        assert_eq!(renew_at("opaque", at(1_700_000_000)), None);
    }

    #[test]
    fn renews_before_expiry_but_not_at_once() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            renewal_time(t0, t0 + Duration::from_secs(4 * 3600)),
            t0 + Duration::from_secs(4 * 3600 - 60)
        );
        assert_eq!(
            renewal_time(t0, t0 + Duration::from_secs(30)),
            t0 + Duration::from_secs(24)
        );
        assert_eq!(renewal_time(t0, t0), t0);
    }

    #[test]
    fn login_backoff_grows_and_is_capped() {
        assert_eq!(login_backoff(0), Duration::from_secs(60));
        assert_eq!(login_backoff(1), Duration::from_secs(120));
        assert_eq!(login_backoff(3), Duration::from_secs(480));
        assert_eq!(login_backoff(4), MAX_LOGIN_BACKOFF);
        assert_eq!(login_backoff(u32::MAX), MAX_LOGIN_BACKOFF);
        let mut state = LoginState::default();
        let now = Instant::now();
        assert_eq!(state.fail(now), Duration::from_secs(60));
        assert_eq!(state.backoff_left(now), Some(Duration::from_secs(60)));
        assert_eq!(state.backoff_left(now + Duration::from_secs(61)), None);
    }

    #[test]
    fn login_answers() {
        assert_eq!(
            parse_login_answer(
                b"{\"token\":\"abc\",\"refreshToken\":\"r\",\"CustomerId\":\"cid_1\"}"
            ),
            Some(("abc".into(), Some("cid_1".into())))
        );
        assert_eq!(
            parse_login_answer(b"{\"Data\":{\"Token\":\"abc\"}}"),
            Some(("abc".into(), None))
        );
        assert_eq!(parse_login_answer(b"{\"token\":\"\"}"), None);
        assert_eq!(parse_login_answer(b"Access denied"), None);
    }
}
