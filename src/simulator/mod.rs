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
//!
//! This module holds the [`Simulator`] itself: its state, its router and its
//! public controls. The fleet model is in `fleet`, the fault-spec language in
//! `faults`, the imitated endpoints in `api` (faulted answers in
//! `fault_answers`), the `/_sim` control API in `control`, the request
//! budget in `budget`, and the Data CDRs pushed to a webhook in `webhook`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::{delete, get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod api;
mod budget;
mod control;
mod fault_answers;
mod faults;
mod fleet;
mod replies;
#[cfg(test)]
mod tests;
mod webhook;

pub use budget::PollSummary;
pub(crate) use faults::{FAULT_SPEC_HELP, MAX_FAULT_DELAY};
pub use faults::{FaultKind, FaultRule, ParseFaultError};
pub use fleet::{ThingDevice, ThingTruth};

use api::{handle_auth, handle_status, handle_things};
use control::{
    handle_add_faults, handle_clear_faults, handle_list_faults, handle_polls, handle_push_cdr,
    handle_refuse, handle_remove, handle_reset_polls, handle_set_connected, handle_set_status,
    handle_stats,
};
use faults::{FaultPlan, FaultSlot};
use fleet::{
    TAG_CUSTOMER, TAG_SIGNATURE, ThingStatic, build_fleet, epoch_secs, hash, secs_i64, truth_of,
};

/// Prune expired tokens only past this many, so a clock moved backwards rarely matters.
const TOKEN_PRUNE_THRESHOLD: usize = 4096;

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
    /// Where to POST Data CDRs (the full URL, query included) when a Thing's
    /// data session ends, as Monogoto's webhook integration does; the task
    /// posting them runs while the simulator serves. None: no webhook.
    pub webhook_url: Option<String>,
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
    /// Only `ThingIds=a&ThingIds=b`, and a comma-joined value is refused with
    /// 400 "Invalid Input Data", as an API that checks its input may.
    RepeatStrict,
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
            webhook_url: None,
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
    webhook: Option<webhook::Webhook>,
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

    /// Sets or clears a Thing's override; (now, the override before, after).
    fn force_connected(
        &mut self,
        idx: usize,
        connected: Option<bool>,
    ) -> (i64, Option<Override>, Option<Override>) {
        let now = self.now_secs();
        let before = match connected {
            Some(connected) => self.overrides.insert(idx, Override { connected, at: now }),
            None => self.overrides.remove(&idx),
        };
        (now, before, self.overrides.get(&idx).copied())
    }
}

#[derive(Clone, Copy, Debug)]
struct Override {
    connected: bool,
    at: i64,
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
            webhook: config.webhook_url.map(webhook::Webhook::new),
        };
        Self {
            inner: Arc::new(inner),
            release: CancellationToken::new(),
        }
    }

    /// The API plus the `/_sim` control API. Served other than by [`serve`](Self::serve)
    /// or [`spawn`](Self::spawn), hung requests end only after [`MAX_FAULT_DELAY`].
    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/Auth", post(handle_auth))
            .route("/things", get(handle_things))
            .route("/thing/status", get(handle_status))
            .route("/_sim/things/{iccid}/connected", post(handle_set_connected))
            .route("/_sim/things/{iccid}/status", post(handle_set_status))
            .route("/_sim/things/{iccid}/refuse", post(handle_refuse))
            .route("/_sim/things/{iccid}/cdr", post(handle_push_cdr))
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
        server.start_webhook(release.clone());
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
        // Now rather than when the task first runs, so that what the caller
        // does from here on is what the webhook reports.
        self.prime_webhook();
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

    /// Zeroes the request counters and [`faults_served`](Self::faults_served), and
    /// forgets the recorded status queries. Fault rules keep their own counts.
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
    /// With a webhook, a change that disconnects a connected Thing queues a
    /// Data CDR for the session it ends.
    pub fn set_connected(&self, iccid: &str, connected: Option<bool>) {
        let Some(idx) = self.inner.index_of(iccid) else {
            return;
        };
        match &self.inner.webhook {
            Some(wh) => self.set_connected_reported(wh, idx, connected),
            None => {
                self.lock().force_connected(idx, connected);
            }
        }
    }

    /// Queues a Data CDR for this Thing now, posted at the next tick: its open
    /// sessions up to now, or its last session's times if it is disconnected.
    /// Does nothing without a webhook URL or for a Thing not in the fleet.
    pub fn push_cdr(&self, iccid: &str) {
        if let (Some(wh), Some(idx)) = (&self.inner.webhook, self.inner.index_of(iccid)) {
            self.queue_cdr(wh, idx);
        }
    }

    /// Data CDRs the webhook receiver answered 2xx to.
    pub fn webhook_events_sent(&self) -> u64 {
        self.inner.webhook.as_ref().map_or(0, |wh| wh.events_sent())
    }

    /// Webhook posts that failed (no connection, timeout, non-2xx answer);
    /// their events are dropped, not retried.
    pub fn webhook_post_failures(&self) -> u64 {
        self.inner
            .webhook
            .as_ref()
            .map_or(0, |wh| wh.post_failures())
    }

    /// The IMEI and network the Thing's Data CDRs name.
    pub fn device(&self, iccid: &str) -> Option<ThingDevice> {
        let idx = self.inner.index_of(iccid)?;
        Some(self.inner.device(&self.inner.fleet[idx]))
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

    #[cfg(test)]
    pub(crate) fn set_page_cap(&self, cap: Option<usize>) {
        self.lock().page_cap = cap;
    }

    /// Freezes the simulator clock at `at`; None = real time again. A webhook
    /// reports the sessions a jump ends as it does those time ends, so freeze
    /// before [`spawn`](Self::spawn) for a quiet start.
    pub fn set_time(&self, at: Option<SystemTime>) {
        self.lock().frozen = at;
    }

    /// Moves a frozen clock forward (freezes at now+by if not frozen).
    #[cfg(test)]
    pub(crate) fn advance_time(&self, by: Duration) {
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
