//! The request side of the web configuration: rate limit, basic auth and
//! extra response headers, as one axum middleware reading the live config.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::config::WebConfig;

/// A bcrypt hash (cost 10, of a random password nobody knows) that unknown
/// users are checked against, so that they cost the same time as known ones.
const DUMMY_HASH: &str = "$2b$10$Lo0fsOBAm.VH0TOBMcfMwOKBYs9QWeF5loU/VcO0vUvAR988QaVla";

/// Answered without basic auth: Kubernetes' HTTP probes send no credentials,
/// and these say only that the process runs and has refreshed once.
const PROBE_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Successful verifications remembered; beyond this the cache starts over.
const CACHE_CAPACITY: usize = 256;

/// Shared by every request: the live configuration and the bcrypt cache.
pub struct Guard {
    live: Arc<ArcSwap<WebConfig>>,
    /// SHA-256 of (user, stored hash, password) that verified; a changed
    /// hash in the file therefore never matches an old entry.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt is CPU-bound on purpose: one check at a time, off the async
    /// threads, so wrong passwords cannot starve the scrapes.
    bcrypt_slot: Semaphore,
}

impl Guard {
    pub fn new(live: Arc<ArcSwap<WebConfig>>) -> Self {
        Guard {
            live,
            verified: Mutex::new(HashSet::new()),
            bcrypt_slot: Semaphore::new(1),
        }
    }

    async fn authorized(&self, config: &WebConfig, headers: &HeaderMap) -> bool {
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let (hash, known) = match config.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (DUMMY_HASH.to_string(), false),
        };
        let key = cache_key(&user, &hash, &password);
        if known && self.cache().contains(&key) {
            return true;
        }
        let Ok(_permit) = self.bcrypt_slot.acquire().await else {
            return false;
        };
        let matched =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let ok = matched && known;
        if ok {
            let mut cache = self.cache();
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // A poisoned cache only ever holds verified keys; keep using it.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The middleware: rate limit, then basic auth (except on the probes), then
/// the route; the configured headers go on every answer, refusals included.
pub async fn guard(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let config = guard.live.load_full();
    let mut response = if config.rate_limit.as_ref().is_some_and(|l| !l.allow()) {
        (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response()
    } else if config.users.is_empty()
        || PROBE_PATHS.contains(&request.uri().path())
        || guard.authorized(&config, request.headers()).await
    {
        next.run(request).await
    } else {
        unauthorized()
    };
    let headers = response.headers_mut();
    for (name, value) in &config.headers {
        headers.insert(name.clone(), value.clone());
    }
    response
}

/// The same answer whatever was wrong: no user, unknown user, wrong password.
fn unauthorized() -> Response {
    let mut response = Response::new(Body::from("Unauthorized\n"));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// User and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

fn cache_key(user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [user.as_bytes(), hash.as_bytes(), password] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// `rate_limit`: a token bucket of `burst` requests refilled at one per
/// `interval`, as Go's `rate.Limiter` that exporter-toolkit uses.
pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(interval: Duration, burst: u32) -> Self {
        RateLimiter {
            interval,
            burst,
            state: Mutex::new(Bucket {
                tokens: f64::from(burst),
                at: Instant::now(),
            }),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refill =
            now.saturating_duration_since(bucket.at).as_secs_f64() / self.interval.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(f64::from(self.burst));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("interval", &self.interval)
            .field("burst", &self.burst)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    fn encode(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn dummy_hash_is_a_valid_cost_10_hash() {
        let parts: bcrypt::HashParts = DUMMY_HASH.parse().expect("bcrypt hash");
        assert_eq!(parts.get_cost(), 10);
        assert!(!bcrypt::verify("", DUMMY_HASH).expect("verifies"));
    }

    #[test]
    fn basic_credentials_parsing() {
        let h = basic(&format!("Basic {}", encode("alice:pa:ss")));
        assert_eq!(
            basic_credentials(&h),
            Some(("alice".to_string(), b"pa:ss".to_vec()))
        );
        let h = basic(&format!("basic {}", encode("bob:")));
        assert_eq!(basic_credentials(&h), Some(("bob".to_string(), Vec::new())));
        assert_eq!(
            basic_credentials(&basic(&format!("Basic {}", encode("nocolon")))),
            None
        );
        assert_eq!(basic_credentials(&basic("Bearer abc")), None);
        assert_eq!(basic_credentials(&basic("Basic !!!")), None);
        assert_eq!(basic_credentials(&HeaderMap::new()), None);
    }

    #[test]
    fn cache_keys_separate_their_parts() {
        assert_ne!(cache_key("ab", "c", b"d"), cache_key("a", "bc", b"d"));
        assert_ne!(cache_key("a", "h1", b"p"), cache_key("a", "h2", b"p"));
        assert_eq!(cache_key("a", "h", b"p"), cache_key("a", "h", b"p"));
    }

    #[test]
    fn token_bucket() {
        let limiter = RateLimiter::new(Duration::from_secs(1), 2);
        let t0 = Instant::now();
        assert!(limiter.allow_at(t0));
        assert!(limiter.allow_at(t0));
        assert!(!limiter.allow_at(t0), "burst spent");
        assert!(!limiter.allow_at(t0 + Duration::from_millis(500)));
        assert!(
            limiter.allow_at(t0 + Duration::from_millis(1000)),
            "refilled one"
        );
        assert!(!limiter.allow_at(t0 + Duration::from_millis(1000)));
        assert!(limiter.allow_at(t0 + Duration::from_secs(10)));
        assert!(limiter.allow_at(t0 + Duration::from_secs(10)));
        assert!(
            !limiter.allow_at(t0 + Duration::from_secs(10)),
            "capped at burst"
        );
    }
}
