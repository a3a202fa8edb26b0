//! A fake Monogoto console API, served with axum.
//!
//! Used by the exporter's demo mode, its tests and its benchmarks. It knows
//! nothing of the exporter: it only imitates the service described in
//! `monogoto-api.md`, deterministically from a seed. Things connect and
//! disconnect over time, and the answers mix every documented (and
//! contradictory) response shape so a tolerant client is fully exercised.
//! [`Simulator::truth`] tells what an answer means, whatever shape it used.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
        }
    }
}

/// The API endpoints whose requests are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    by_iccid: HashMap<String, usize>,
    counters: [AtomicU64; 3],
    state: Mutex<MutableState>,
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
            counters: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            state: Mutex::new(state),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The API plus the `/_sim` control API.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/Auth", post(handle_auth))
            .route("/things", get(handle_things))
            .route("/thing/status", get(handle_status))
            .route("/_sim/things/{iccid}/connected", post(handle_set_connected))
            .route("/_sim/things/{iccid}", delete(handle_remove))
            .route("/_sim/stats", get(handle_stats))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
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
        let idx = *self.inner.by_iccid.get(iccid)?;
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

    /// Zeroes the request counters and forgets the recorded status queries.
    pub fn reset_counters(&self) {
        for c in &self.inner.counters {
            c.store(0, Ordering::Relaxed);
        }
        self.lock().status_queries.clear();
    }

    /// Raw query strings of the /thing/status requests, in order (the last 10,000).
    pub fn status_queries(&self) -> Vec<String> {
        self.lock().status_queries.iter().cloned().collect()
    }

    /// Forces a Thing connected/disconnected; None returns it to its timeline.
    pub fn set_connected(&self, iccid: &str, connected: Option<bool>) {
        let Some(&idx) = self.inner.by_iccid.get(iccid) else {
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
        if let Some(&idx) = self.inner.by_iccid.get(iccid) {
            let mut st = self.lock();
            if !st.removed[idx] {
                st.removed[idx] = true;
                st.removed_count += 1;
            }
        }
    }

    /// Any status request whose ThingIds include this Thing fails this way.
    pub fn set_failing(&self, iccid: &str, mode: Option<FailMode>) {
        let Some(&idx) = self.inner.by_iccid.get(iccid) else {
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
        json!({
            "ThingId": format!("{THING_ID_PREFIX}{}", t.iccid),
            "ThingName": t.name,
            "ExternalUniqueId": t.iccid,
            "State": t.status,
            "CustomerId": self.customer_id,
            "ThingDescription": t.description,
        })
    }

    fn render_status(&self, t: &ThingStatic, d: &Dynamic) -> Value {
        let mut m = Map::new();
        m.insert(
            "ThingId".into(),
            json!(format!("{THING_ID_PREFIX}{}", t.iccid)),
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
            let f = if slot(seed, TAG_ICCID_F, index) % 10 == 0 {
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
            let msisdn = (h % 8 != 0).then(|| format!("+44{:010}", (h >> 8) % 10_000_000_000));

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
                single_as_object: hash(&[seed, TAG_OBJECT, index]) % 2 == 0,
                empty,
                connection_status: slot(seed, TAG_CONN_FIELD, index) % 4 != 0,
                time,
                session_ms: slot(seed, TAG_SESSION_MS, index) % 2 == 0,
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
    let creds = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
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
    if !sim.authorized(&headers) {
        return unauthorized();
    }
    let params = match parse_query(query.as_deref().unwrap_or("")) {
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
    if !sim.authorized(&headers) {
        return unauthorized();
    }
    let params = match parse_query(&query) {
        Ok(p) => p,
        Err(msg) => return envelope_error(StatusCode::BAD_REQUEST, &msg),
    };
    let ids: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "ThingIds")
        .flat_map(|(_, v)| v.split(','))
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
            .filter_map(|iccid| inner.by_iccid.get(iccid).copied())
            .filter(|&i| !st.removed[i] && seen.insert(i))
            .collect();
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
        let page: Vec<(usize, Option<Override>)> = requested
            .into_iter()
            .skip(offset)
            .take(size)
            .map(|i| (i, st.overrides.get(&i).copied()))
            .collect();
        (st.now_secs(), page)
    };
    let data: Vec<Value> = page
        .into_iter()
        .map(|(i, ov)| {
            let t = &inner.fleet[i];
            inner.render_status(t, &inner.dynamic(t, now, ov))
        })
        .collect();
    Json(json!({"Success": true, "Message": "Operation succeeded", "Data": data})).into_response()
}

/// Index of a Thing still in the fleet.
fn control_target(sim: &Simulator, iccid: &str) -> Option<usize> {
    let idx = *sim.inner.by_iccid.get(iccid)?;
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

#[cfg(test)]
mod tests {
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
}
