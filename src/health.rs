//! The exporter's own health: ordinary registered metrics, beside the
//! per-Thing series that are rendered from the snapshot (see `fleet`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::monogoto::{ApiMetrics, ErrorKind};
use crate::shard::Shard;

/// The exporter's own health.
pub struct HealthMetrics {
    registry: Registry,
    /// What the API client counts itself.
    pub api: Arc<ApiMetrics>,
    pub up: IntGauge,
    pub last_refresh_success: Gauge,
    pub(crate) refresh_duration: Gauge,
    pub things_configured: IntGauge,
    pub things_reported: IntGauge,
    pub(crate) refresh_errors: IntCounterVec,
    pub(crate) shard_info: IntGaugeVec,
    pub(crate) refresh_target: Gauge,
    pub things_inactive: IntGauge,
    pub things_missing: IntGauge,
    /// The failed batches of the last complete refresh by kind, for the
    /// status page (the counters add up every refresh since start).
    pub(crate) last_refresh_errors: Mutex<BTreeMap<ErrorKind, usize>>,
    pub(crate) shards: IntGauge,
    pub(crate) config_last_reload_successful: IntGauge,
    pub(crate) config_last_reload_success: Gauge,
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

        for kind in ErrorKind::ALL {
            refresh_errors.with_label_values(&[kind.label()]);
        }
        let api = Arc::new(ApiMetrics::new());
        api.register(&registry).expect("metric names are unique");

        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(up.clone()),
            Box::new(last_refresh_success.clone()),
            Box::new(refresh_duration.clone()),
            Box::new(things_configured.clone()),
            Box::new(things_reported.clone()),
            Box::new(refresh_errors.clone()),
            Box::new(shard_info.clone()),
            Box::new(refresh_target.clone()),
            Box::new(things_inactive.clone()),
            Box::new(things_missing.clone()),
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
            api,
            up,
            last_refresh_success,
            refresh_duration,
            things_configured,
            things_reported,
            refresh_errors,
            shard_info,
            refresh_target,
            things_inactive,
            things_missing,
            last_refresh_errors: Mutex::default(),
            shards,
            config_last_reload_successful,
            config_last_reload_success,
        }
    }

    /// Where optional parts (storage, the webhook) register their metrics.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records how a (re)load of the configuration went; a success at `unix_time`.
    pub(crate) fn config_loaded(&self, succeeded: bool, unix_time: f64) {
        self.config_last_reload_successful.set(i64::from(succeeded));
        if succeeded {
            self.config_last_reload_success.set(unix_time);
        }
    }

    pub(crate) fn set_shard(&self, shard: Shard) {
        self.shard_info.reset();
        self.shard_info
            .with_label_values(&[shard.index.to_string(), shard.count.to_string()])
            .set(1);
        self.shards
            .set(i64::try_from(shard.count).unwrap_or(i64::MAX));
    }

    /// Appends the health metrics in the text exposition format.
    pub(crate) fn render_into(&self, out: &mut Vec<u8>) {
        // A wait in progress counts up to now, not in one step at its end.
        self.api.budget_wait.get();
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families.
        if let Err(e) = TextEncoder::new().encode(&families, out) {
            tracing::error!(error = %e, "cannot encode health metrics");
        }
    }
}

/// Now as Unix seconds, for the timestamp gauges.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monogoto::error::Endpoint;

    #[test]
    fn health_metrics_render() {
        let health = HealthMetrics::new();
        health.api.observe_request(Endpoint::Status, "200", 0.1);
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
        health.set_shard(Shard { index: 2, count: 3 });
        let mut out = Vec::new();
        health.render_into(&mut out);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("monogoto_shard_info{count=\"3\",index=\"2\"} 1\n"));
        assert!(text.contains("monogoto_shards 3\n"), "{text}");
    }
}
