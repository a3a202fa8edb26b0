//! The exporter's own HTTP endpoints: the routes (telemetry, probes, reload)
//! and the status page. Listeners, TLS and basic auth are `web`'s.

pub mod routes;
pub mod status_page;

pub use routes::{AppState, router};
