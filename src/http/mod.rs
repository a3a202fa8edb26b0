//! The exporter's own HTTP endpoints: the routes (telemetry, probes, reload)
//! and the status page. Listeners, TLS and basic auth are `web`'s.

pub(crate) mod routes;
pub(crate) mod status_page;

pub(crate) use routes::{AppState, router};
