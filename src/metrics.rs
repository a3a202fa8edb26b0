//! Metric names, HELP texts and rendering.
//!
//! Per-Thing series are rendered from a snapshot (the "const metrics" pattern):
//! a Thing that leaves the snapshot leaves /metrics with no bookkeeping. The
//! exporter's own health is ordinary registered metrics.

use std::io::Write as _;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::record::Record;

/// The API endpoints, as the `endpoint` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Auth,
    Things,
    Status,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Auth => "auth",
            Endpoint::Things => "things",
            Endpoint::Status => "status",
        }
    }
}

/// The fields of the status answer whose parse errors are counted from zero,
/// so that `rate()` sees the first error.
const KNOWN_FIELDS: &[&str] = crate::monogoto::model::PARSE_ERROR_FIELDS;

/// The exporter's own health.
pub struct HealthMetrics {
    registry: Registry,
    pub up: IntGauge,
    pub last_refresh_success: Gauge,
    pub refresh_duration: Gauge,
    pub api_requests: IntCounterVec,
    pub api_request_duration: HistogramVec,
    pub things_configured: IntGauge,
    pub things_reported: IntGauge,
    pub parse_errors: IntCounterVec,
    pub api_retries: IntCounterVec,
    pub rate_limited: IntCounter,
    pub refresh_errors: IntCounterVec,
    pub shard_info: IntGaugeVec,
    pub refresh_target: Gauge,
    pub things_inactive: IntGauge,
    pub things_missing: IntGauge,
    pub budget_wait: prometheus::Counter,
    /// The failed batches of the last complete refresh by kind, for the
    /// status page (the counters add up every refresh since start).
    pub last_refresh_errors: std::sync::Mutex<std::collections::BTreeMap<&'static str, usize>>,
    pub shards: IntGauge,
    pub config_last_reload_successful: IntGauge,
    pub config_last_reload_success: Gauge,
}

impl Default for HealthMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let up = IntGauge::new(
            "monogoto_up",
            "1 if the Monogoto API answered the requests of the last refresh (or, in a refresh longer than poll.interval, of its last interval) successfully, 429s aside, else 0.",
        )
        .expect("valid metric");
        let last_refresh_success = Gauge::new(
            "monogoto_last_refresh_success_timestamp_seconds",
            "Unix time at which the last refresh in which every batch succeeded ended.",
        )
        .expect("valid metric");
        let refresh_duration = Gauge::new(
            "monogoto_refresh_duration_seconds",
            "Duration of the last complete refresh (one pass over every SIM followed), in seconds.",
        )
        .expect("valid metric");
        let api_requests = IntCounterVec::new(
            Opts::new(
                "monogoto_api_requests_total",
                "HTTP requests to the Monogoto API by endpoint and status code (\"error\" for transport failures).",
            ),
            &["endpoint", "code"],
        )
        .expect("valid metric");
        let api_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "monogoto_api_request_duration_seconds",
                "Duration of HTTP requests to the Monogoto API, in seconds.",
            )
            .buckets(vec![0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["endpoint"],
        )
        .expect("valid metric");
        let things_configured = IntGauge::new(
            "monogoto_things_configured",
            "ICCIDs this exporter is responsible for (configured and discovered).",
        )
        .expect("valid metric");
        let things_reported = IntGauge::new(
            "monogoto_things_reported",
            "Things present in the current snapshot, and so on /metrics.",
        )
        .expect("valid metric");
        let parse_errors = IntCounterVec::new(
            Opts::new(
                "monogoto_parse_errors_total",
                "Values of the status answer that could not be understood and were dropped, by API field.",
            ),
            &["field"],
        )
        .expect("valid metric");
        let api_retries = IntCounterVec::new(
            Opts::new(
                "monogoto_api_retries_total",
                "Requests to the Monogoto API sent again after a timeout, connection error, 429 or 5xx, by endpoint.",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let rate_limited = IntCounter::new(
            "monogoto_api_rate_limited_total",
            "Answers of the Monogoto API with HTTP 429 Too Many Requests.",
        )
        .expect("valid metric");
        let refresh_errors = IntCounterVec::new(
            Opts::new(
                "monogoto_refresh_errors_total",
                "Batches (and discoveries) that failed in a refresh, by kind: timeout, connect, status, decode, auth.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let shard_info = IntGaugeVec::new(
            Opts::new(
                "monogoto_shard_info",
                "A metric with a constant value 1, labelled by this replica's shard index and the shard count.",
            ),
            &["index", "count"],
        )
        .expect("valid metric");
        let refresh_target = Gauge::new(
            "monogoto_refresh_target_seconds",
            "Time a refresh is planned to take: the longer of poll.interval and what the request budget allows for the active SIMs plus the inactive ones' share, in seconds.",
        )
        .expect("valid metric");
        let things_inactive = IntGauge::new(
            "monogoto_things_inactive",
            "SIMs polled once per poll.inactive-interval: SUSPENDED, RETIRED, or not returned by the API.",
        )
        .expect("valid metric");
        let things_missing = IntGauge::new(
            "monogoto_things_missing",
            "SIMs this exporter asked for whose status the last answers did not contain (unknown to the account, or refused with 400).",
        )
        .expect("valid metric");
        let budget_wait = prometheus::Counter::new(
            "monogoto_api_budget_wait_seconds_total",
            "Time requests spent waiting for the request budget, in seconds; its rate near 1 means the exporter runs at the budget.",
        )
        .expect("valid metric");
        // The count on its own too, so that rules can compare the shards that
        // report with the shards there should be (MonogotoShardsMissing).
        let shards = IntGauge::new(
            "monogoto_shards",
            "The number of shards the fleet is split across (--shard.count); 1 when it is not sharded.",
        )
        .expect("valid metric");
        shards.set(1);
        // Named as Prometheus and Alertmanager name theirs, so that the same
        // habits (and alerts) carry over.
        let config_last_reload_successful = IntGauge::new(
            "monogoto_config_last_reload_successful",
            "1 if the last reload of the configuration succeeded (and at start), 0 if it failed: the configuration in force is then not the one on disk.",
        )
        .expect("valid metric");
        let config_last_reload_success = Gauge::new(
            "monogoto_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful reload of the configuration, or of the start.",
        )
        .expect("valid metric");
        let build_info = prometheus::GaugeVec::new(
            Opts::new(
                "monogoto_exporter_build_info",
                "A metric with a constant value 1, labelled by the version, revision and rustc version of the exporter.",
            ),
            &["version", "revision", "rustc_version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                env!("MONOGOTO_EXPORTER_REVISION"),
                env!("MONOGOTO_EXPORTER_RUSTC"),
            ])
            .set(1.0);

        for field in KNOWN_FIELDS {
            parse_errors.with_label_values(&[*field]);
        }
        for endpoint in [Endpoint::Auth, Endpoint::Things, Endpoint::Status] {
            api_request_duration.with_label_values(&[endpoint.label()]);
            api_retries.with_label_values(&[endpoint.label()]);
        }
        for kind in crate::monogoto::client::ERROR_KINDS {
            refresh_errors.with_label_values(&[*kind]);
        }

        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(up.clone()),
            Box::new(last_refresh_success.clone()),
            Box::new(refresh_duration.clone()),
            Box::new(api_requests.clone()),
            Box::new(api_request_duration.clone()),
            Box::new(things_configured.clone()),
            Box::new(things_reported.clone()),
            Box::new(parse_errors.clone()),
            Box::new(api_retries.clone()),
            Box::new(rate_limited.clone()),
            Box::new(refresh_errors.clone()),
            Box::new(shard_info.clone()),
            Box::new(refresh_target.clone()),
            Box::new(things_inactive.clone()),
            Box::new(things_missing.clone()),
            Box::new(budget_wait.clone()),
            Box::new(shards.clone()),
            Box::new(config_last_reload_successful.clone()),
            Box::new(config_last_reload_success.clone()),
            Box::new(build_info),
        ];
        for c in collectors {
            registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once");

        HealthMetrics {
            registry,
            up,
            last_refresh_success,
            refresh_duration,
            api_requests,
            api_request_duration,
            things_configured,
            things_reported,
            parse_errors,
            api_retries,
            rate_limited,
            refresh_errors,
            shard_info,
            refresh_target,
            things_inactive,
            things_missing,
            budget_wait,
            last_refresh_errors: std::sync::Mutex::default(),
            shards,
            config_last_reload_successful,
            config_last_reload_success,
        }
    }

    /// Records how a (re)load of the configuration went; a success at `unix_time`.
    pub fn config_loaded(&self, succeeded: bool, unix_time: f64) {
        self.config_last_reload_successful.set(i64::from(succeeded));
        if succeeded {
            self.config_last_reload_success.set(unix_time);
        }
    }

    pub fn set_shard(&self, shard: crate::shard::Shard) {
        self.shard_info.reset();
        self.shard_info
            .with_label_values(&[shard.index.to_string(), shard.count.to_string()])
            .set(1);
        self.shards
            .set(i64::try_from(shard.count).unwrap_or(i64::MAX));
    }

    pub fn observe_request(&self, endpoint: Endpoint, code: &str, seconds: f64) {
        self.api_requests
            .with_label_values(&[endpoint.label(), code])
            .inc();
        self.api_request_duration
            .with_label_values(&[endpoint.label()])
            .observe(seconds);
    }

    pub fn count_parse_error(&self, field: &str) {
        self.parse_errors.with_label_values(&[field]).inc();
    }

    /// Appends the health metrics in the text exposition format.
    pub fn render_into(&self, out: &mut Vec<u8>) {
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families.
        if let Err(e) = TextEncoder::new().encode(&families, out) {
            tracing::error!(error = %e, "cannot encode health metrics");
        }
    }
}

const FRESHNESS: &str = "Data come from the last successful poll of this Thing.";

struct Family {
    name: &'static str,
    help: &'static str,
    value: fn(&Record) -> Option<f64>,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "monogoto_thing_connected",
        help: "1 if the SIM has an open data session (CONNECTED), else 0.",
        value: |t| t.connected().map(|c| if c { 1.0 } else { 0.0 }),
    },
    Family {
        name: "monogoto_thing_active_sessions",
        help: "Number of active data sessions of the SIM.",
        value: |t| t.active_sessions().map(f64::from),
    },
    Family {
        name: "monogoto_thing_uplink_throughput",
        help: "Sum of UplinkThroughput over the active sessions, in the unit Monogoto reports it in.",
        value: |t| t.uplink_throughput(),
    },
    Family {
        name: "monogoto_thing_downlink_throughput",
        help: "Sum of DownlinkThroughput over the active sessions, in the unit Monogoto reports it in.",
        value: |t| t.downlink_throughput(),
    },
    Family {
        name: "monogoto_thing_last_connection_timestamp_seconds",
        help: "Unix time of the SIM's last connection (LastConnectionTime).",
        value: |t| t.last_connection(),
    },
    Family {
        name: "monogoto_thing_last_disconnection_timestamp_seconds",
        help: "Unix time of the SIM's last disconnection (LastDisconnectionTime).",
        value: |t| t.last_disconnection(),
    },
    Family {
        name: "monogoto_thing_session_start_timestamp_seconds",
        help: "Unix time at which the earliest active data session started (LastConnectedTime).",
        value: |t| t.session_start(),
    },
];

/// The per-Thing metric families, in the order they are exposed: the numeric
/// ones, then `monogoto_thing_info`.
pub const THING_FAMILIES: usize = FAMILIES.len() + 1;

const INFO_HELP: &str = "# HELP monogoto_thing_info Constant 1, labelled with the SIM's name, IMSI, MSISDN and provisioning status (empty where unknown).";

/// The `# HELP` and `# TYPE` lines of per-Thing family `family`.
pub fn render_family_header(family: usize, out: &mut Vec<u8>) {
    let text = match FAMILIES.get(family) {
        Some(f) => format!(
            "# HELP {} {} {FRESHNESS}\n# TYPE {} gauge\n",
            f.name, f.help, f.name
        ),
        None => format!("{INFO_HELP} {FRESHNESS}\n# TYPE monogoto_thing_info gauge\n"),
    };
    out.extend_from_slice(text.as_bytes());
}

/// The sample lines of per-Thing family `family` for `things`, in order.
pub fn render_family_lines<'a>(
    family: usize,
    things: impl Iterator<Item = &'a Record>,
    out: &mut Vec<u8>,
) {
    match FAMILIES.get(family) {
        Some(f) => {
            for thing in things {
                if let Some(value) = (f.value)(thing) {
                    out.extend_from_slice(f.name.as_bytes());
                    out.extend_from_slice(b"{iccid=\"");
                    escape_label_value(thing.iccid(), out);
                    out.extend_from_slice(b"\"} ");
                    write_value(value, out);
                    out.push(b'\n');
                }
            }
        }
        None => {
            for thing in things {
                out.extend_from_slice(b"monogoto_thing_info{");
                for (i, (label, value)) in [
                    ("iccid", thing.iccid()),
                    ("thing_name", thing.thing_name()),
                    ("imsi", thing.imsi()),
                    ("msisdn", thing.msisdn()),
                    ("provision_status", thing.provision_status()),
                ]
                .into_iter()
                .enumerate()
                {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(label.as_bytes());
                    out.extend_from_slice(b"=\"");
                    escape_label_value(value, out);
                    out.push(b'"');
                }
                out.extend_from_slice(b"} 1\n");
            }
        }
    }
}

/// Renders the per-Thing series of `things` (in the order given) in the text
/// exposition format 0.0.4, family by family.
pub fn render_things<'a>(things: impl Iterator<Item = &'a Record> + Clone, out: &mut Vec<u8>) {
    for family in 0..THING_FAMILIES {
        render_family_header(family, out);
        render_family_lines(family, things.clone(), out);
    }
}

/// The oldest data the snapshot still serves. Rendered with the snapshot
/// rather than registered, because it is a property of the snapshot, and one
/// series instead of a per-Thing one.
pub fn render_oldest_refresh(oldest: std::time::SystemTime, out: &mut Vec<u8>) {
    let seconds = oldest
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    out.extend_from_slice(
        b"# HELP monogoto_snapshot_oldest_refresh_timestamp_seconds Unix time of the last successful poll of the least recently refreshed Thing still served.\n",
    );
    out.extend_from_slice(b"# TYPE monogoto_snapshot_oldest_refresh_timestamp_seconds gauge\n");
    out.extend_from_slice(b"monogoto_snapshot_oldest_refresh_timestamp_seconds ");
    write_value(seconds, out);
    out.push(b'\n');
}

/// Escapes a label value as the text format requires: backslash, double quote
/// and line feed. Everything else, any Unicode included, passes as is.
pub fn escape_label_value(value: &str, out: &mut Vec<u8>) {
    // Nearly every value needs no escaping: copy it whole.
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            // UTF-8 continuation bytes never equal the three above.
            byte => out.push(byte),
        }
    }
}

/// Whole numbers below this print exactly as integers.
const EXACT_INTEGER: f64 = 1e15;

fn write_value(value: f64, out: &mut Vec<u8>) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if value.fract() == 0.0 && value.abs() < EXACT_INTEGER {
        // Most values (flags, counts, Unix times) are whole: the integer
        // formatter writes the same digits as `f64`'s, several times faster.
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
    } else {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::monogoto::ThingStatus;

    fn thing(iccid: &str) -> ThingStatus {
        ThingStatus {
            iccid: iccid.into(),
            ..ThingStatus::default()
        }
    }

    fn render(things: &[ThingStatus]) -> String {
        let mut out = Vec::new();
        let records: Vec<Record> = things.iter().cloned().map(Record::from).collect();
        render_things(records.iter(), &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn escapes_label_values() {
        let mut t = thing("898800000000000001");
        t.thing_name = "meter \"north\" \\ 7\nline 2 Zähler-東京-🚚".into();
        let text = render(&[t]);
        assert!(
            text.contains(r#"thing_name="meter \"north\" \\ 7\nline 2 Zähler-東京-🚚""#),
            "{text}"
        );
    }

    #[test]
    fn unknown_values_are_absent_and_known_ones_exact() {
        let mut t = thing("898800000000000001");
        t.connected = Some(true);
        t.active_sessions = Some(2);
        t.uplink_throughput = Some(1500.5);
        t.last_connection = Some(1_739_955_863.0);
        t.provision_status = "ACTIVE".into();
        let text = render(&[t, thing("898800000000000002")]);
        assert!(text.contains("monogoto_thing_connected{iccid=\"898800000000000001\"} 1\n"));
        assert!(text.contains("monogoto_thing_active_sessions{iccid=\"898800000000000001\"} 2\n"));
        assert!(
            text.contains(
                "monogoto_thing_uplink_throughput{iccid=\"898800000000000001\"} 1500.5\n"
            )
        );
        assert!(text.contains(
            "monogoto_thing_last_connection_timestamp_seconds{iccid=\"898800000000000001\"} 1739955863\n"
        ));
        assert!(!text.contains("monogoto_thing_downlink_throughput{"));
        assert!(!text.contains("monogoto_thing_connected{iccid=\"898800000000000002\"}"));
        assert!(text.contains(
            "monogoto_thing_info{iccid=\"898800000000000002\",thing_name=\"\",imsi=\"\",msisdn=\"\",provision_status=\"\"} 1\n"
        ));
        assert_eq!(text.matches("# TYPE ").count(), FAMILIES.len() + 1);
    }

    #[test]
    fn an_empty_sum_renders_as_zero() {
        // Summing no sessions gives -0.
        let mut t = thing("898800000000000001");
        t.uplink_throughput = Some(std::iter::empty::<f64>().sum());
        t.downlink_throughput = Some(0.25);
        let text = render(&[t]);
        assert!(
            text.contains("monogoto_thing_uplink_throughput{iccid=\"898800000000000001\"} 0\n")
        );
        assert!(
            text.contains(
                "monogoto_thing_downlink_throughput{iccid=\"898800000000000001\"} 0.25\n"
            )
        );
    }

    #[test]
    fn health_metrics_render() {
        let health = HealthMetrics::new();
        health.observe_request(Endpoint::Status, "200", 0.1);
        let mut out = Vec::new();
        health.render_into(&mut out);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("monogoto_api_requests_total{code=\"200\",endpoint=\"status\"} 1"));
        assert!(text.contains("monogoto_parse_errors_total{field=\"ActiveSessions\"} 0"));
        assert!(text.contains("monogoto_exporter_build_info{"));
        assert!(text.contains("monogoto_up 0"));
        assert!(text.contains("monogoto_shards 1\n"), "unsharded by default");
    }

    #[test]
    fn the_shard_count_is_exported_with_the_shard() {
        let health = HealthMetrics::new();
        health.set_shard(crate::shard::Shard { index: 2, count: 3 });
        let mut out = Vec::new();
        health.render_into(&mut out);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("monogoto_shard_info{count=\"3\",index=\"2\"} 1\n"));
        assert!(text.contains("monogoto_shards 3\n"), "{text}");
    }
}
