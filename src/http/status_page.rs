//! The status page at `/`: what a person opening the exporter in a browser
//! wants to know at a glance, from the same figures `/metrics` exports.
//!
//! One HTML document built per request, with inline CSS only: no script, no
//! external asset, so it works offline and under a strict Content-Security-Policy.
//! A view walks the snapshot once to count the connected SIMs (O(SIMs):
//! about 10 ms at 100,000, on a blocking thread so that scrapes are not held
//! up), and renders at most [`DISCONNECTED_ROWS`] of them; never the whole fleet.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus::core::Collector as _;

use super::AppState;
use crate::fleet::Record;
use crate::fleet::Snapshot;
use crate::health::HealthMetrics;
use crate::monogoto::ErrorKind;

/// The page reloads itself this often, in seconds.
pub(crate) const REFRESH_SECONDS: u32 = 10;
/// At most this many disconnected ACTIVE SIMs are listed.
pub(crate) const DISCONNECTED_ROWS: usize = 10;
/// Inline CSS only: the page needs nothing else, so nothing else may load.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'";

pub(crate) async fn status_page(State(state): State<AppState>) -> Response {
    let built = tokio::task::spawn_blocking(move || {
        let snapshot = state.fleet.snapshot();
        let status = Status::gather(
            &snapshot,
            &state.health,
            state.fleet.is_ready(),
            state.fleet.is_polling(),
        );
        status.render(&state.telemetry_path, SystemTime::now())
    })
    .await;
    let page = match built {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(error = %e, "building the status page failed");
            return (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the status page could not be built; see the log\n",
            )
                .into_response();
        }
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // A status is only true now: never show a cached one.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        page,
    )
        .into_response()
}

/// A disconnected ACTIVE SIM, as the page lists it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Disconnected {
    pub iccid: String,
    pub thing_name: String,
    /// Unix time of its last disconnection, when the API gave one.
    pub since: Option<f64>,
}

/// Everything the page shows, read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub ready: bool,
    pub polling: bool,
    pub up: bool,
    /// Unix time; 0 until a refresh fully succeeded.
    pub(crate) last_success: f64,
    /// 0 until a refresh completed.
    pub(crate) refresh_duration: f64,
    pub(crate) refresh_target: f64,
    pub(crate) followed: u64,
    pub inactive: u64,
    pub missing: u64,
    pub reported: usize,
    pub connected: usize,
    /// Reported SIMs whose connection state the API left unknown.
    pub unknown: usize,
    pub disconnected_active: usize,
    /// The most recently disconnected first, at most [`DISCONNECTED_ROWS`].
    pub disconnected: Vec<Disconnected>,
    /// By kind: the failed batches of the last complete refresh, and
    /// `monogoto_refresh_errors_total` (since start).
    pub errors: Vec<(&'static str, u64, u64)>,
    pub(crate) budget_wait: f64,
    /// (index, count) when the fleet is sharded.
    pub shard: Option<(String, String)>,
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Status {
    pub(crate) fn gather(
        snapshot: &Snapshot,
        health: &HealthMetrics,
        ready: bool,
        polling: bool,
    ) -> Self {
        let mut connected = 0;
        let mut unknown = 0;
        let mut disconnected_active = 0;
        let mut latest: Vec<&Record> = Vec::with_capacity(DISCONNECTED_ROWS + 1);
        for record in snapshot.records() {
            match record.connected() {
                Some(true) => connected += 1,
                None => unknown += 1,
                Some(false) if record.provision_status() == "ACTIVE" => {
                    disconnected_active += 1;
                    keep_latest(&mut latest, record);
                }
                Some(false) => {}
            }
        }
        let last = health
            .last_refresh_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let errors = ErrorKind::ALL
            .iter()
            .map(|kind| {
                let total = health
                    .refresh_errors
                    .with_label_values(&[kind.label()])
                    .get();
                let last = last.get(kind).copied().unwrap_or(0) as u64;
                (kind.label(), last, total)
            })
            .collect();
        Status {
            ready,
            polling,
            up: health.up.get() == 1,
            last_success: health.last_refresh_success.get(),
            refresh_duration: health.refresh_duration.get(),
            refresh_target: health.refresh_target.get(),
            followed: count(health.things_configured.get()),
            inactive: count(health.things_inactive.get()),
            missing: count(health.things_missing.get()),
            reported: snapshot.len(),
            connected,
            unknown,
            disconnected_active,
            disconnected: latest
                .into_iter()
                .map(|r| Disconnected {
                    iccid: r.iccid().to_string(),
                    thing_name: r.thing_name().to_string(),
                    since: r.last_disconnection(),
                })
                .collect(),
            errors,
            budget_wait: health.api.budget_wait.get(),
            shard: shard(health),
        }
    }

    /// The page, with ages counted to `now`.
    pub fn render(&self, telemetry_path: &str, now: SystemTime) -> String {
        let now = unix(now);
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail: the results are ignored below.
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
             <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>Monogoto Exporter status</title>\n<style>{STYLE}</style>\n</head><body>\n\
             <h1>Monogoto Exporter</h1>\n<p class=\"build\">version {} &middot; revision {} &middot; rustc {}{}</p>\n",
            html_escape(env!("CARGO_PKG_VERSION")),
            html_escape(env!("MONOGOTO_EXPORTER_REVISION")),
            html_escape(env!("MONOGOTO_EXPORTER_RUSTC")),
            self.shard
                .as_ref()
                .map(|(index, count)| format!(
                    " &middot; shard {} of {}",
                    html_escape(index),
                    html_escape(count)
                ))
                .unwrap_or_default(),
        );
        let path = html_escape(telemetry_path);
        let _ = writeln!(
            out,
            "<nav><a href=\"{path}\">{path}</a> metrics &middot; \
             <a href=\"/healthz\">/healthz</a> liveness &middot; \
             <a href=\"/readyz\">/readyz</a> readiness</nav>\n<div class=\"grid\">"
        );

        out.push_str("<section><h2>Polling</h2>\n<table class=\"figures\">\n");
        let (api, api_class) = if !self.polling {
            (
                "polling stopped: the exporter is exiting to be restarted",
                "bad",
            )
        } else if !self.ready {
            ("waiting for the first refresh", "warn")
        } else if self.up {
            ("up", "ok")
        } else {
            ("down: the last refresh's requests failed", "bad")
        };
        row(
            &mut out,
            "Monogoto API",
            &format!("<span class=\"badge {api_class}\">{api}</span>"),
        );
        let last = if self.last_success > 0.0 {
            format!(
                "{} ago <span class=\"muted\">({})</span>",
                age(now - self.last_success),
                timestamp(self.last_success)
            )
        } else {
            "<span class=\"badge warn\">none yet</span>".to_string()
        };
        row(&mut out, "Last fully successful refresh", &last);
        let duration = if self.refresh_duration > 0.0 {
            let over = self.refresh_duration > self.refresh_target * 1.1;
            format!(
                "{} against a target of {}{}",
                seconds(self.refresh_duration),
                seconds(self.refresh_target),
                if over {
                    " <span class=\"badge warn\">over target</span>"
                } else {
                    ""
                }
            )
        } else {
            format!(
                "no complete refresh yet; target {}",
                seconds(self.refresh_target)
            )
        };
        row(&mut out, "Last refresh took", &duration);
        row(
            &mut out,
            "Waited for the request budget",
            &format!(
                "{} in all since start <span class=\"muted\">(near 1 s per second: running at the budget)</span>",
                seconds(self.budget_wait)
            ),
        );
        out.push_str("</table></section>\n");

        out.push_str("<section><h2>SIMs</h2>\n<table class=\"figures\">\n");
        row(&mut out, "Followed", &self.followed.to_string());
        row(
            &mut out,
            "&nbsp;&nbsp;polled every refresh",
            &self.followed.saturating_sub(self.inactive).to_string(),
        );
        row(
            &mut out,
            "&nbsp;&nbsp;polled once per inactive interval",
            &self.inactive.to_string(),
        );
        row(
            &mut out,
            "Missing from the API's answers",
            &self.missing.to_string(),
        );
        row(
            &mut out,
            "Reported on the metrics",
            &self.reported.to_string(),
        );
        let mut connected = format!(
            "<strong>{}</strong> of {} reported",
            self.connected, self.reported
        );
        if self.reported > 0 {
            let _ = write!(
                connected,
                " ({:.1}%)",
                100.0 * self.connected as f64 / self.reported as f64
            );
        }
        if self.unknown > 0 {
            let _ = write!(connected, "; {} in an unknown state", self.unknown);
        }
        row(&mut out, "Connected now", &connected);
        row(
            &mut out,
            "ACTIVE and disconnected",
            &self.disconnected_active.to_string(),
        );
        out.push_str("</table></section>\n</div>\n");

        // A column per kind (the kinds are few and fixed): the last complete
        // refresh, and in total since start.
        out.push_str(
            "<section><h2>Refresh errors</h2>\n\
             <p class=\"muted\">Failed batches and discoveries by kind, in the last complete \
             refresh and in total since start (<code>monogoto_refresh_errors_total</code>).</p>\n\
             <table class=\"list errors\"><tr><th></th>",
        );
        for (kind, _, _) in &self.errors {
            let _ = write!(out, "<th>{}</th>", html_escape(kind));
        }
        for (label, pick) in [("last refresh", 0usize), ("total since start", 1usize)] {
            let _ = write!(out, "</tr>\n<tr><th>{label}</th>");
            for (_, last, total) in &self.errors {
                let n = if pick == 0 { *last } else { *total };
                let class = if n > 0 { " class=\"warn\"" } else { "" };
                let _ = write!(out, "<td{class}>{n}</td>");
            }
        }
        out.push_str("</tr></table></section>\n");

        if self.disconnected_active > 0 {
            let _ = write!(
                out,
                "<section><h2>Disconnected ACTIVE SIMs</h2>\n\
                 <p class=\"muted\">The {} most recently disconnected of {}.</p>\n\
                 <table class=\"list\"><tr><th>ICCID</th><th>Thing name</th><th>disconnected</th></tr>\n",
                self.disconnected.len(),
                self.disconnected_active
            );
            for sim in &self.disconnected {
                let name = if sim.thing_name.is_empty() {
                    "<span class=\"muted\">(no name)</span>".to_string()
                } else {
                    html_escape(&visible(&sim.thing_name))
                };
                let since = sim
                    .since
                    .map(|t| format!("{} ago", age(now - t)))
                    .unwrap_or_else(|| "<span class=\"muted\">unknown</span>".to_string());
                let _ = writeln!(
                    out,
                    "<tr><td><code>{}</code></td><td>{name}</td><td>{since}</td></tr>",
                    html_escape(&visible(&sim.iccid))
                );
            }
            out.push_str("</table></section>\n");
        }

        let _ = write!(
            out,
            "<footer>This page reloads every {REFRESH_SECONDS} s. Each view counts the connected SIMs \
             over the whole snapshot.</footer>\n</body></html>\n"
        );
        out
    }
}

/// Keeps in `latest` the [`DISCONNECTED_ROWS`] most recently disconnected
/// records (unknown times last, then by ICCID), sorted: a bounded insertion,
/// so a large fleet with many disconnected SIMs costs no sort of them all.
fn keep_latest<'a>(latest: &mut Vec<&'a Record>, record: &'a Record) {
    let key = |r: &Record| r.last_disconnection().unwrap_or(f64::NEG_INFINITY);
    let before = |a: &Record, b: &Record| {
        key(b)
            .total_cmp(&key(a))
            .then_with(|| a.iccid().cmp(b.iccid()))
            .is_lt()
    };
    let at = latest.partition_point(|r| before(r, record));
    if at < DISCONNECTED_ROWS {
        latest.insert(at, record);
        latest.truncate(DISCONNECTED_ROWS);
    }
}

fn shard(health: &HealthMetrics) -> Option<(String, String)> {
    if health.shards.get() <= 1 {
        return None;
    }
    let families = health.shard_info.collect();
    let metric = families.first()?.get_metric().first()?;
    let label = |name: &str| {
        metric
            .get_label()
            .iter()
            .find(|l| l.name() == name)
            .map(|l| l.value().to_string())
    };
    Some((label("index")?, label("count")?))
}

/// Control characters (a newline in a Thing name) would vanish in HTML:
/// shown as U+FFFD so that the name on the page is not mistaken for another.
fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

fn row(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "<tr><th>{label}</th><td>{value}</td></tr>");
}

fn unix(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// An age in whole seconds, "1h 2m 5s"; a time in the future (clock skew) is "0s".
fn age(seconds: f64) -> String {
    let whole = Duration::try_from_secs_f64(seconds.round()).unwrap_or_default();
    humantime::format_duration(whole).to_string()
}

/// A duration as a person reads it: "0.84 s", "12.3 s", "1m 4s".
fn seconds(value: f64) -> String {
    if !value.is_finite() || value < 0.0 {
        return "unknown".to_string();
    }
    if value < 10.0 {
        format!("{value:.2} s")
    } else if value < 60.0 {
        format!("{value:.1} s")
    } else {
        age(value)
    }
}

fn timestamp(unix: f64) -> String {
    Duration::try_from_secs_f64(unix)
        .ok()
        .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1d2330;--muted:#667085;--line:#d0d5dd;--card:#f8f9fb;\
--ok:#067647;--ok-bg:#dcfae6;--warn:#b54708;--warn-bg:#fef0c7;--bad:#b42318;--bad-bg:#fee4e2}\
@media (prefers-color-scheme:dark){:root{--fg:#e4e7ec;--muted:#98a2b3;--line:#344054;--card:#1d2330;\
--ok:#75e0a7;--ok-bg:#053321;--warn:#fec84b;--warn-bg:#4e1d09;--bad:#fda29b;--bad-bg:#55160c}}\
body{font:15px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:var(--fg);\
max-width:72rem;margin:1.5rem auto;padding:0 1rem}\
h1{margin:0;font-size:1.6rem}h2{font-size:1.1rem;margin:0 0 .5rem}\
nav{margin:.4rem 0 0}a{color:inherit}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(26rem,100%),1fr));gap:0 1rem}.grid section{margin-bottom:0}\
section{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.8rem 1rem;margin:1rem 0}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}\
tr:last-child th,tr:last-child td{border-bottom:none}\
table.figures th{font-weight:normal;color:var(--muted);width:50%}\
table.list th{font-size:.85rem;color:var(--muted)}table.errors td{font-size:1.1rem}\
.muted,.build,footer{color:var(--muted)}.build{margin:0}footer{font-size:.85rem;margin:1rem 0}\
p.muted{margin:0 0 .5rem;font-size:.9rem}code{font-size:.9em}\
.badge{display:inline-block;padding:0 .5rem;border-radius:999px;font-weight:600}\
.ok{color:var(--ok);background:var(--ok-bg)}.warn{color:var(--warn);background:var(--warn-bg)}\
.bad{color:var(--bad);background:var(--bad-bg)}td.warn{background:none;font-weight:bold}";

/// Escapes text for HTML content and quoted attribute values.
pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::monogoto::ThingStatus;

    fn record(iccid: &str, name: &str, status: &str, connected: Option<bool>) -> Record {
        Record::from(ThingStatus {
            iccid: iccid.into(),
            thing_name: name.into(),
            provision_status: status.into(),
            connected,
            ..ThingStatus::default()
        })
    }

    fn snapshot(records: Vec<Record>) -> Snapshot {
        Snapshot::empty().next(records, SystemTime::now(), Duration::from_secs(60))
    }

    const HOSTILE: &str = "<script>alert(\"x&y\")</script>'\n<b>";

    #[test]
    fn thing_names_are_escaped() {
        let health = HealthMetrics::new();
        let snap = snapshot(vec![
            record("8988000000000000001", HOSTILE, "ACTIVE", Some(false)),
            record("8988000000000000002", "ok", "ACTIVE", Some(true)),
        ]);
        let page = Status::gather(&snap, &health, true, true).render("/metrics", SystemTime::now());
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(
            page.contains(
                "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;\u{FFFD}&lt;b&gt;"
            ),
            "{page}"
        );
    }

    #[test]
    fn the_telemetry_path_is_escaped() {
        let page = Status::gather(&Snapshot::empty(), &HealthMetrics::new(), false, true)
            .render("/m\"><script>", SystemTime::now());
        assert!(!page.contains("<script"), "{page}");
        assert!(
            page.contains("href=\"/m&quot;&gt;&lt;script&gt;\""),
            "{page}"
        );
        assert!(page.contains("waiting for the first refresh"));
        assert!(page.contains("none yet"));
    }

    #[test]
    fn figures_count_the_snapshot_and_the_health_metrics() {
        let health = HealthMetrics::new();
        health.up.set(1);
        health.things_configured.set(7);
        health.things_inactive.set(2);
        health.things_missing.set(1);
        health.refresh_duration.set(3.5);
        health.refresh_target.set(60.0);
        health
            .last_refresh_success
            .set(unix(SystemTime::now()) - 65.0);
        health
            .refresh_errors
            .with_label_values(&["timeout"])
            .inc_by(3);
        let snap = snapshot(vec![
            record("8988000000000000001", "a", "ACTIVE", Some(true)),
            record("8988000000000000002", "b", "ACTIVE", Some(true)),
            record("8988000000000000003", "c", "ACTIVE", Some(false)),
            record("8988000000000000004", "d", "SUSPENDED", Some(false)),
            record("8988000000000000005", "e", "ACTIVE", None),
        ]);
        let status = Status::gather(&snap, &health, true, true);
        assert_eq!(
            (
                status.reported,
                status.connected,
                status.unknown,
                status.disconnected_active
            ),
            (5, 2, 1, 1)
        );
        assert_eq!(status.disconnected[0].thing_name, "c");
        assert!(status.errors.contains(&("timeout", 0, 3)));
        health
            .last_refresh_errors
            .lock()
            .expect("not poisoned")
            .insert(crate::monogoto::ErrorKind::Status, 2);
        let status = Status::gather(&snap, &health, true, true);
        assert!(
            status.errors.contains(&("status", 2, 0)),
            "the last refresh's"
        );
        let page = status.render("/metrics", SystemTime::now());
        assert!(page.contains("<strong>2</strong> of 5 reported (40.0%); 1 in an unknown state"));
        assert!(page.contains("<tr><th>Followed</th><td>7</td></tr>"));
        assert!(page.contains("polled every refresh</th><td>5</td>"));
        assert!(page.contains("1m 5s ago"), "{page}");
        assert!(page.contains("3.50 s against a target of 1m"), "{page}");
        assert!(page.contains("<th>timeout</th>"));
        assert!(page.contains("<td class=\"warn\">3</td>"));
        assert!(page.contains("<span class=\"badge ok\">up</span>"));
        assert!(page.contains(&format!(
            "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">"
        )));
        for link in ["/metrics", "/healthz", "/readyz"] {
            assert!(page.contains(&format!("<a href=\"{link}\">")), "{link}");
        }
    }

    #[test]
    fn only_the_most_recent_disconnections_are_listed() {
        let records: Vec<Record> = (0..50u32)
            .map(|i| {
                Record::from(ThingStatus {
                    iccid: format!("8988{i:015}"),
                    provision_status: "ACTIVE".into(),
                    connected: Some(false),
                    // Every fifth one's time is unknown: listed after the known ones.
                    last_disconnection: (i % 5 != 0).then_some(1_700_000_000.0 + f64::from(i)),
                    ..ThingStatus::default()
                })
            })
            .collect();
        let status = Status::gather(&snapshot(records), &HealthMetrics::new(), true, true);
        assert_eq!(status.disconnected_active, 50);
        let times: Vec<Option<f64>> = status.disconnected.iter().map(|d| d.since).collect();
        let expected: Vec<Option<f64>> = [49, 48, 47, 46, 44, 43, 42, 41, 39, 38]
            .into_iter()
            .map(|i| Some(1_700_000_000.0 + f64::from(i)))
            .collect();
        assert_eq!(times, expected);
    }

    #[test]
    fn the_shard_is_named_when_sharded() {
        let health = HealthMetrics::new();
        assert_eq!(shard(&health), None);
        health.set_shard(crate::shard::Shard { index: 2, count: 3 });
        assert_eq!(shard(&health), Some(("2".into(), "3".into())));
    }

    #[test]
    fn ages_and_durations_read_well() {
        assert_eq!(age(-5.0), "0s");
        assert_eq!(age(3725.4), "1h 2m 5s");
        assert_eq!(age(f64::NAN), "0s");
        assert_eq!(seconds(0.843), "0.84 s");
        assert_eq!(seconds(12.34), "12.3 s");
        assert_eq!(seconds(64.0), "1m 4s");
        assert_eq!(seconds(f64::INFINITY), "unknown");
        assert_eq!(timestamp(1e300), "unknown");
    }
}
