//! Webhook push: the Data CDRs Monogoto posts to a customer's URL when a SIM's
//! data session ends, imitated so the exporter can take them as hints.
//!
//! A background task compares every Thing's connection state with the previous
//! tick's once a second, on the simulator's clock (frozen, nothing ends but
//! what [`Simulator::set_connected`] forces), queues a CDR for each session
//! that ended, and posts what is queued as one JSON array. A failed post is
//! counted and its events dropped: the real platform's retries are not
//! documented, and a test tool must not pile up work behind a dead receiver.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::fleet::{Session, TAG_CDR, THING_ID_PREFIX, ThingStatic, hash};
use super::{Inner, Override, Simulator};

/// How often session ends are looked for and queued events posted.
const TICK: Duration = Duration::from_secs(1);
/// Events in one POST body at most; the rest wait for the next tick.
pub(super) const MAX_BATCH: usize = 1_000;
/// Events waiting at most; past it the oldest are dropped, so a receiver
/// slower than the fleet bounds the memory rather than grows it.
const MAX_OUTBOX: usize = 100_000;
const POST_TIMEOUT: Duration = Duration::from_secs(2);
/// What the sessions of the simulated Things use; as in the status answers.
const APN: &str = "data.mono";

// A Thing's connection state in a tick's snapshot. Forced states are kept apart
// so that only the timeline's own connected periods make interim records.
const DISCONNECTED: u8 = 0;
const CONNECTED: u8 = 1;
const FORCED_DISCONNECTED: u8 = 2;
const FORCED_CONNECTED: u8 = 3;
/// Removed from the fleet: its sessions end unreported, as the SIM is gone.
const GONE: u8 = 4;

fn is_connected(state: u8) -> bool {
    matches!(state, CONNECTED | FORCED_CONNECTED)
}

/// The webhook side of a simulator configured with a URL.
pub(super) struct Webhook {
    url: String,
    /// None when the HTTP client could not be built; every post then fails.
    client: Option<reqwest::Client>,
    /// Lock order: `watch`, then the simulator's state, then `outbox`.
    watch: Mutex<Watch>,
    outbox: Mutex<Outbox>,
    next_unique: AtomicU64,
    sent: AtomicU64,
    failures: AtomicU64,
    /// A task is posting; a second server on the same simulator starts none.
    running: AtomicBool,
    /// Failure causes already logged at warn; each is said once.
    logged: Mutex<HashSet<String>>,
}

/// The states seen at the last tick.
struct Watch {
    /// By fleet index; empty until the first snapshot.
    states: Vec<u8>,
    at: i64,
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<Pending>,
    dropped: u64,
}

/// A queued CDR, kept small: its strings are written when it is posted.
struct Pending {
    index: usize,
    start: i64,
    end: i64,
    uplink_bytes: u64,
    downlink_bytes: u64,
    session_id: u64,
    unique: u64,
}

/// One Data CDR as posted. The names from `CdrType` to `ThingId` are the
/// documented ones; the documentation's table is cut off after `ThingId`, so
/// `SessionId`, `ApnName`, `StartTime`, `EndTime`, `UplinkBytes`,
/// `DownlinkBytes` and `TotalBytes` are guesses (PascalCase like the rest,
/// times RFC 3339 UTC).
#[derive(Serialize, Debug)]
pub(super) struct DataCdr {
    #[serde(rename = "CdrType")]
    cdr_type: &'static str,
    #[serde(rename = "UniqueID")]
    unique_id: String,
    #[serde(rename = "Iccid")]
    iccid: String,
    #[serde(rename = "IMSI")]
    imsi: String,
    /// null when the Thing has none, as in the status answers.
    #[serde(rename = "MSISDN")]
    msisdn: Option<String>,
    #[serde(rename = "IMEI")]
    imei: String,
    #[serde(rename = "MNO")]
    mno: String,
    #[serde(rename = "MnoName")]
    mno_name: String,
    #[serde(rename = "MCC")]
    mcc: String,
    #[serde(rename = "MNC")]
    mnc: String,
    #[serde(rename = "ThingName")]
    thing_name: String,
    #[serde(rename = "ThingId")]
    thing_id: String,
    #[serde(rename = "SessionId")]
    session_id: String,
    #[serde(rename = "ApnName")]
    apn_name: &'static str,
    #[serde(rename = "StartTime")]
    start_time: String,
    #[serde(rename = "EndTime")]
    end_time: String,
    #[serde(rename = "UplinkBytes")]
    uplink_bytes: u64,
    #[serde(rename = "DownlinkBytes")]
    downlink_bytes: u64,
    #[serde(rename = "TotalBytes")]
    total_bytes: u64,
}

impl Webhook {
    pub(super) fn new(url: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            // The receiver is usually the exporter on this machine; an
            // environment's proxy must not stand between them.
            .no_proxy()
            .user_agent(concat!(
                "monogoto-exporter-simulator/",
                env!("CARGO_PKG_VERSION")
            ))
            .build();
        let client = match client {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::warn!(error = %e, "webhook: cannot build the HTTP client; every post will fail");
                None
            }
        };
        Self {
            url,
            client,
            watch: Mutex::new(Watch {
                states: Vec::new(),
                at: 0,
            }),
            outbox: Mutex::new(Outbox::default()),
            next_unique: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            running: AtomicBool::new(false),
            logged: Mutex::new(HashSet::new()),
        }
    }

    pub(super) fn events_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(super) fn post_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Events waiting to be posted.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.outbox().queue.len()
    }

    fn watch(&self) -> MutexGuard<'_, Watch> {
        // Plain data: what a panic left behind is still usable.
        self.watch.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self, events: impl IntoIterator<Item = Pending>) {
        let mut outbox = self.outbox();
        for event in events {
            if outbox.queue.len() >= MAX_OUTBOX {
                outbox.queue.pop_front();
                if outbox.dropped == 0 {
                    tracing::warn!(
                        max = MAX_OUTBOX,
                        "webhook: more events wait than the receiver takes; dropping the oldest"
                    );
                }
                outbox.dropped = outbox.dropped.saturating_add(1);
            }
            outbox.queue.push_back(event);
        }
    }

    /// Counts a failed post; the first of each cause is logged at warn.
    fn failed(&self, cause: String, detail: &str, events: usize) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let first = self
            .logged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cause.clone());
        if first {
            tracing::warn!(
                %cause,
                error = detail,
                events,
                "webhook: post failed; its events are dropped (later failures of this cause are logged at debug)"
            );
        } else {
            tracing::debug!(%cause, error = detail, events, "webhook: post failed");
        }
    }
}

impl Inner {
    /// Connected under `ov` if there is one, else by the timeline.
    fn connected_now(&self, t: &ThingStatic, now: i64, ov: Option<Override>) -> bool {
        ov.map_or_else(|| self.connected_at(t, now), |ov| ov.connected)
    }

    /// A CDR for the sessions `sessions` ending at `end`; `start` when there are none.
    fn pending(
        &self,
        wh: &Webhook,
        index: usize,
        sessions: &[Session],
        start: i64,
        end: i64,
    ) -> Pending {
        let t = &self.fleet[index];
        let start = sessions.iter().map(|s| s.start).min().unwrap_or(start);
        let end = end.max(start);
        // The status answers' throughputs read as bytes a second.
        let bytes = |rate: fn(&Session) -> u64| {
            sessions.iter().fold(0u64, |sum, s| {
                let secs = u64::try_from(end.saturating_sub(s.start)).unwrap_or(0);
                sum.saturating_add(rate(s).saturating_mul(secs))
            })
        };
        Pending {
            index,
            start,
            end,
            uplink_bytes: bytes(|s| s.uplink),
            downlink_bytes: bytes(|s| s.downlink),
            session_id: self.session_id(t, start, 0),
            unique: wh.next_unique.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn render_cdr(&self, p: &Pending) -> DataCdr {
        let t = &self.fleet[p.index];
        let device = self.device(t);
        let iccid = self.answered_iccid(t);
        let a = hash(&[self.seed, TAG_CDR, p.index as u64, p.unique]);
        let b = hash(&[self.seed, TAG_CDR, p.index as u64, p.unique, 1]);
        DataCdr {
            cdr_type: "DATA",
            unique_id: format!("{a:016x}{b:016x}"),
            thing_id: format!("{THING_ID_PREFIX}{iccid}"),
            iccid,
            imsi: t.imsi.clone(),
            msisdn: t.msisdn.clone(),
            imei: device.imei,
            mno: device.mno,
            mno_name: device.mno_name,
            mcc: device.mcc,
            mnc: device.mnc,
            thing_name: t.name.clone(),
            session_id: format!("{:016x}", p.session_id),
            apn_name: APN,
            start_time: rfc3339(p.start),
            end_time: rfc3339(p.end),
            uplink_bytes: p.uplink_bytes,
            downlink_bytes: p.downlink_bytes,
            total_bytes: p.uplink_bytes.saturating_add(p.downlink_bytes),
        }
    }
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0).map_or_else(
        || secs.to_string(),
        |dt| dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// Why a post failed, coarse enough to log each once.
fn cause_of(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_builder() {
        "url"
    } else {
        "request"
    }
}

/// The error and its sources, as reqwest's own message says only "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Simulator {
    /// Every Thing's state at the simulator's now, and that now.
    fn snapshot(&self) -> (i64, Vec<u8>) {
        let now = self.lock().now_secs();
        let inner = &self.inner;
        // The timeline pass runs without the lock so API answers do not wait on it.
        let mut states: Vec<u8> = inner
            .fleet
            .iter()
            .map(|t| u8::from(inner.connected_at(t, now)))
            .collect();
        let st = self.lock();
        for (&i, ov) in &st.overrides {
            states[i] = if ov.connected {
                FORCED_CONNECTED
            } else {
                FORCED_DISCONNECTED
            };
        }
        if st.removed_count > 0 {
            for (s, &removed) in states.iter_mut().zip(&st.removed) {
                if removed {
                    *s = GONE;
                }
            }
        }
        (now, states)
    }

    /// Takes the first snapshot if there is none yet, so that what happens
    /// after this call (and only that) is reported.
    pub(super) fn prime_webhook(&self) {
        let Some(wh) = &self.inner.webhook else {
            return;
        };
        let mut watch = wh.watch();
        if watch.states.is_empty() {
            let (now, states) = self.snapshot();
            watch.states = states;
            watch.at = now;
        }
    }

    /// One tick's comparison: queues a CDR for each session that ended since
    /// the last. A Thing that stayed connected into a new epoch of its
    /// timeline ended one session and opened another (its status answers
    /// change `LastConnectedTime`), so it gets one too, like the interim
    /// records of long sessions elsewhere.
    pub(super) fn scan_sessions(&self, wh: &Webhook) -> usize {
        let mut watch = wh.watch();
        let (now, states) = self.snapshot();
        let inner = &self.inner;
        let mut ended = Vec::new();
        if watch.states.len() == states.len() {
            let before = watch.at;
            for (i, (&was, &is)) in watch.states.iter().zip(&states).enumerate() {
                if was == is && was != CONNECTED {
                    continue;
                }
                let t = &inner.fleet[i];
                let epoch = inner.epoch_of(t, before);
                // Set_connected reports the ends it causes itself (and updates
                // the snapshot), so what is left here is the timeline's doing:
                // the session open at the last tick ended with its epoch.
                let ends = (is_connected(was) && matches!(is, DISCONNECTED | FORCED_DISCONNECTED))
                    || (was == CONNECTED && is == CONNECTED && inner.epoch_of(t, now) != epoch);
                if ends {
                    let end = inner.epoch_start(t, epoch.saturating_add(1)).min(now);
                    let d = inner.timeline(t, before);
                    ended.push(inner.pending(wh, i, &d.sessions, before, end));
                }
            }
        }
        watch.states = states;
        watch.at = now;
        drop(watch);
        let n = ended.len();
        wh.queue(ended);
        n
    }

    /// `set_connected` with a webhook: reports the session the change ends,
    /// and records the new state so the next tick does not report it again.
    pub(super) fn set_connected_reported(&self, wh: &Webhook, idx: usize, connected: Option<bool>) {
        // Held across the change so that a tick sees it whole, or not at all.
        let mut watch = wh.watch();
        let (now, before, after, removed) = {
            let mut st = self.lock();
            let (now, before, after) = st.force_connected(idx, connected);
            (now, before, after, st.removed[idx])
        };
        if removed {
            return;
        }
        let inner = &self.inner;
        let t = &inner.fleet[idx];
        let was = inner.connected_now(t, now, before);
        let is = inner.connected_now(t, now, after);
        if let Some(s) = watch.states.get_mut(idx) {
            *s = match (after, is) {
                (Some(_), true) => FORCED_CONNECTED,
                (Some(_), false) => FORCED_DISCONNECTED,
                (None, true) => CONNECTED,
                (None, false) => DISCONNECTED,
            };
        }
        drop(watch);
        if was && !is {
            let d = inner.dynamic(t, now, before);
            wh.queue([inner.pending(wh, idx, &d.sessions, now, now)]);
        }
    }

    /// Queues a CDR for a Thing now: its open sessions up to now if it is
    /// connected, else its last session's times (without bytes).
    pub(super) fn queue_cdr(&self, wh: &Webhook, idx: usize) {
        let (now, ov) = {
            let st = self.lock();
            if st.removed[idx] {
                return;
            }
            (st.now_secs(), st.overrides.get(&idx).copied())
        };
        let inner = &self.inner;
        let d = inner.dynamic(&inner.fleet[idx], now, ov);
        let p = if d.sessions.is_empty() {
            let end = d.last_disconnection.unwrap_or(now);
            inner.pending(wh, idx, &[], d.last_connection.unwrap_or(end), end)
        } else {
            inner.pending(wh, idx, &d.sessions, now, now)
        };
        wh.queue([p]);
    }

    /// The background task: a tick scans and posts, until `release` is cancelled.
    pub(super) fn start_webhook(&self, release: CancellationToken) {
        let Some(wh) = &self.inner.webhook else {
            return;
        };
        if wh.running.swap(true, Ordering::SeqCst) {
            return;
        }
        self.prime_webhook();
        let sim = self.clone();
        tokio::spawn(async move {
            let Some(wh) = &sim.inner.webhook else {
                return;
            };
            let mut ticks = tokio::time::interval(TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = release.cancelled() => break,
                }
                sim.scan_sessions(wh);
                tokio::select! {
                    () = sim.post_batch(wh) => {}
                    () = release.cancelled() => break,
                }
            }
            wh.running.store(false, Ordering::SeqCst);
        });
    }

    /// Posts up to [`MAX_BATCH`] queued events as one JSON array.
    async fn post_batch(&self, wh: &Webhook) {
        let batch: Vec<Pending> = {
            let mut outbox = wh.outbox();
            let n = outbox.queue.len().min(MAX_BATCH);
            outbox.queue.drain(..n).collect()
        };
        if batch.is_empty() {
            return;
        }
        let cdrs: Vec<DataCdr> = batch.iter().map(|p| self.inner.render_cdr(p)).collect();
        let body = match serde_json::to_vec(&cdrs) {
            Ok(body) => body,
            Err(e) => return wh.failed("encode".to_owned(), &e.to_string(), cdrs.len()),
        };
        let Some(client) = &wh.client else {
            return wh.failed("client".to_owned(), "no HTTP client", cdrs.len());
        };
        let answer = client
            .post(&wh.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match answer {
            Ok(resp) if resp.status().is_success() => {
                wh.sent.fetch_add(cdrs.len() as u64, Ordering::Relaxed);
            }
            Ok(resp) => {
                let code = resp.status().as_u16();
                wh.failed(format!("HTTP {code}"), "non-2xx answer", cdrs.len());
            }
            Err(e) => {
                let cause = cause_of(&e);
                // Without the URL: its query may hold the receiver's secret.
                let detail = error_chain(&e.without_url());
                wh.failed(cause.to_owned(), &detail, cdrs.len());
            }
        }
    }
}
