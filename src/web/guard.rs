//! The request side of the web configuration: rate limit, basic auth and
//! extra response headers, as one axum middleware reading the live config.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
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

/// Answered without basic auth: the webhook checks its own token, as its
/// sender (Monogoto's Hub) cannot always send a user and password.
const OWN_AUTH_PATHS: [&str; 1] = ["/webhook"];

/// Successful verifications remembered; beyond this the cache starts over.
const CACHE_CAPACITY: usize = 256;

/// Most bcrypt verifications running at once, whatever the CPU count: each
/// takes a core for tens of milliseconds, and the scrapes need one too.
const MAX_BCRYPT_SLOTS: usize = 4;

/// Client addresses tracked with a queue of their own before the idle ones
/// are swept out of the table.
const LANES_SWEEP_AT: usize = 1024;

/// Shared by every request: the live configuration and the bcrypt cache.
pub(crate) struct Guard {
    live: Arc<ArcSwap<WebConfig>>,
    /// SHA-256 of (user, stored hash, password) that verified; a changed
    /// hash in the file therefore never matches an old entry.
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt: Bcrypt,
}

/// bcrypt is CPU-bound on purpose, so verifications run on blocking threads,
/// a few at once (`slots`). Each client address first takes a place in its
/// own lane, which holds as many places as there are slots: a flood from one
/// address then queues behind itself, while a scrape from another address
/// takes the next slot that frees up instead of waiting for the whole flood.
struct Bcrypt {
    slots: Arc<Semaphore>,
    lanes: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    per_lane: usize,
}

impl Bcrypt {
    fn new(slots: usize) -> Self {
        Bcrypt {
            slots: Arc::new(Semaphore::new(slots)),
            lanes: Mutex::new(HashMap::new()),
            per_lane: slots,
        }
    }

    async fn verify(&self, source: IpAddr, password: Vec<u8>, hash: String) -> bool {
        let lane = self.lane(source);
        let matched = async {
            let turn = lane.clone().acquire_owned().await.ok()?;
            let slot = self.slots.clone().acquire_owned().await.ok()?;
            // The permits go with the work: a client that hangs up does not
            // free a slot while its bcrypt still runs.
            tokio::task::spawn_blocking(move || {
                let _held = (turn, slot);
                bcrypt::verify(&password, &hash).unwrap_or(false)
            })
            .await
            .ok()
        }
        .await
        .unwrap_or(false);
        drop(lane);
        let mut lanes = self.lanes();
        // Only the table holds it now: nobody waits in this lane.
        if lanes
            .get(&source)
            .is_some_and(|lane| Arc::strong_count(lane) == 1)
        {
            lanes.remove(&source);
        }
        matched
    }

    fn lane(&self, source: IpAddr) -> Arc<Semaphore> {
        let mut lanes = self.lanes();
        if lanes.len() >= LANES_SWEEP_AT && !lanes.contains_key(&source) {
            // Lanes left behind by cancelled requests.
            lanes.retain(|_, lane| Arc::strong_count(lane) > 1);
        }
        lanes
            .entry(source)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_lane)))
            .clone()
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Arc<Semaphore>>> {
        self.lanes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The lane of a client: its IPv4 address, or the /64 of its IPv6 address
/// (what one host usually gets to choose from).
fn lane_of(peer: Option<SocketAddr>) -> IpAddr {
    match peer.map(|peer| peer.ip()) {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(IpAddr::V4(v4)) => IpAddr::V4(v4),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

impl Guard {
    pub(crate) fn new(live: Arc<ArcSwap<WebConfig>>) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Guard {
            live,
            verified: Mutex::new(HashSet::new()),
            bcrypt: Bcrypt::new(cpus.clamp(1, MAX_BCRYPT_SLOTS)),
        }
    }

    async fn authorized(&self, config: &WebConfig, headers: &HeaderMap, source: IpAddr) -> bool {
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let (hash, known) = match config.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (DUMMY_HASH.to_string(), false),
        };
        let key = cache_key(&user, &hash, &password);
        // Before any queue: a scrape whose password verified once never waits.
        if known && self.cache().contains(&key) {
            return true;
        }
        let matched = self.bcrypt.verify(source, password, hash).await;
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

/// The middleware: rate limit, then basic auth, then the route; the probes
/// skip both (a flood that spends the rate limit must not fail the liveness
/// probe and get the process restarted). The configured headers go on every
/// answer, refusals included.
pub(crate) async fn guard(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let config = guard.live.load_full();
    let probe = PROBE_PATHS.contains(&request.uri().path());
    let own_auth = OWN_AUTH_PATHS.contains(&request.uri().path());
    let mut response = if !probe && config.rate_limit.as_ref().is_some_and(|l| !l.allow()) {
        (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response()
    } else if probe
        || own_auth
        || config.users.is_empty()
        || guard
            .authorized(&config, request.headers(), lane_of(peer(&request)))
            .await
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

/// The client's address, which the connection layer puts on every request.
fn peer(request: &Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

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

    fn guard_for(users: &[(&str, &str)], cost: u32) -> (Arc<Guard>, Arc<ArcSwap<WebConfig>>) {
        let mut text = String::from("basic_auth_users:\n");
        for (user, password) in users {
            let hash = bcrypt::hash(password, cost).expect("hash");
            text.push_str(&format!("  {user}: '{hash}'\n"));
        }
        let config = WebConfig::parse(&text, std::path::Path::new(".")).expect("valid");
        let live = Arc::new(ArcSwap::from_pointee(config));
        (Arc::new(Guard::new(live.clone())), live)
    }

    fn credentials(user: &str, password: &str) -> HeaderMap {
        basic(&format!("Basic {}", encode(&format!("{user}:{password}"))))
    }

    /// Sends 60 wrong passwords from `flood_from` and waits until they hold
    /// every bcrypt slot; each one, as it finishes, adds 1 to the count.
    async fn flood(
        guard: &Arc<Guard>,
        live: &Arc<ArcSwap<WebConfig>>,
        flood_from: IpAddr,
    ) -> (
        tokio::task::JoinSet<bool>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..60 {
            let (guard, live, finished) = (guard.clone(), live.clone(), finished.clone());
            tasks.spawn(async move {
                let headers = credentials("alice", &format!("guess {i}"));
                let ok = guard.authorized(&live.load(), &headers, flood_from).await;
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ok
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while guard.bcrypt.slots.available_permits() > 0 {
            assert!(Instant::now() < deadline, "the flood never started");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (tasks, finished)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_wrong_passwords_does_not_starve_a_fresh_scrape() {
        let (guard, live) = guard_for(&[("alice", "right")], 6);
        let attacker: IpAddr = "192.0.2.1".parse().expect("ip");
        let scraper: IpAddr = "192.0.2.2".parse().expect("ip");
        let (mut tasks, finished) = flood(&guard, &live, attacker).await;

        // Never verified before: it needs a bcrypt slot like the flood.
        let ok = guard
            .authorized(&live.load(), &credentials("alice", "right"), scraper)
            .await;
        let before = finished.load(std::sync::atomic::Ordering::SeqCst);
        assert!(ok);
        // With one queue it would come after all 60; it takes one of the
        // next slots that free up instead.
        assert!(
            before < 20,
            "{before} of the 60 wrong passwords were answered first"
        );
        while let Some(result) = tasks.join_next().await {
            assert!(!result.expect("task"), "a wrong password got in");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_verified_password_skips_the_queue() {
        let (guard, live) = guard_for(&[("alice", "right")], 6);
        let source: IpAddr = "192.0.2.1".parse().expect("ip");
        let right = credentials("alice", "right");
        assert!(guard.authorized(&live.load(), &right, source).await);
        // The flood comes from the scraper's own address this time.
        let (mut tasks, finished) = flood(&guard, &live, source).await;
        assert!(guard.authorized(&live.load(), &right, source).await);
        let before = finished.load(std::sync::atomic::Ordering::SeqCst);
        assert!(before < 20, "{before} of 60 answered first");
        tasks.abort_all();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_verification_keeps_its_slot_until_bcrypt_ends() {
        let (guard, live) = guard_for(&[("alice", "right")], 8);
        let slots = guard.bcrypt.slots.available_permits();
        let task = {
            let (guard, live) = (guard.clone(), live.clone());
            tokio::spawn(async move {
                let headers = credentials("alice", "wrong");
                guard
                    .authorized(&live.load(), &headers, IpAddr::V4(Ipv4Addr::LOCALHOST))
                    .await
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while guard.bcrypt.slots.available_permits() == slots {
            assert!(Instant::now() < deadline, "never started");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
        assert_eq!(
            guard.bcrypt.slots.available_permits(),
            slots - 1,
            "the bcrypt of the cancelled request still runs"
        );
        while guard.bcrypt.slots.available_permits() < slots {
            assert!(Instant::now() < deadline, "slot never returned");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn lanes_group_ipv6_by_64_and_unwrap_mapped_ipv4() {
        let lane = |s: &str| lane_of(Some(s.parse().expect("socket address")));
        assert_eq!(lane("192.0.2.1:1"), lane("192.0.2.1:2"));
        assert_ne!(lane("192.0.2.1:1"), lane("192.0.2.2:1"));
        assert_eq!(lane("[::ffff:192.0.2.1]:1"), lane("192.0.2.1:9"));
        assert_eq!(
            lane("[2001:db8:1:2::1]:1"),
            lane("[2001:db8:1:2:ffff::9]:1")
        );
        assert_ne!(lane("[2001:db8:1:2::1]:1"), lane("[2001:db8:1:3::1]:1"));
        assert_eq!(lane_of(None), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
}
