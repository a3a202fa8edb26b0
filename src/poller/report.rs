//! What a refresh reports: its batches and failures, counted as they happen
//! and logged once per kind of error at its end.

use std::collections::BTreeMap;

use crate::health::HealthMetrics;
use crate::monogoto::{ApiError, ErrorKind};

/// What one refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshReport {
    pub batches: usize,
    pub failed_batches: usize,
    pub(crate) discovery_failed: bool,
    /// A listing ran without error (finished or to be continued).
    pub(crate) listed: bool,
    pub(crate) things_refreshed: usize,
    /// Failed batches (and discoveries) by [`ApiError::kind`].
    pub errors: BTreeMap<ErrorKind, usize>,
}

impl RefreshReport {
    pub fn succeeded(&self) -> bool {
        self.failed_batches == 0 && !self.discovery_failed
    }
}

/// The errors of one refresh, by kind: counted as they happen, logged once
/// per kind at the end.
#[derive(Default)]
pub(super) struct ErrorLog {
    by_kind: BTreeMap<ErrorKind, (usize, String)>,
}

impl ErrorLog {
    pub(super) fn record(&mut self, error: &ApiError, health: &HealthMetrics) {
        self.record_kind(error.kind(), error.to_string(), health);
    }

    pub(super) fn record_kind(&mut self, kind: ErrorKind, message: String, health: &HealthMetrics) {
        health
            .refresh_errors
            .with_label_values(&[kind.label()])
            .inc();
        self.by_kind.entry(kind).or_insert_with(|| (0, message)).0 += 1;
    }

    pub(super) fn report(&self, report: &mut RefreshReport) {
        for (kind, (count, first)) in &self.by_kind {
            report.errors.insert(*kind, *count);
            if *kind == ErrorKind::Auth {
                tracing::error!(failed = count, error = %first, "the Monogoto API rejected the credentials; every SIM keeps its last values until stale-after, then leaves /metrics");
            } else {
                tracing::warn!(kind = kind.label(), failed = count, first_error = %first, "requests failed this refresh; their Things keep their last values");
            }
        }
    }
}
