//! The exporter's own HTTP endpoints: the routes (telemetry, probes, reload)
//! and the status page. Listeners, TLS and basic auth are `web`'s.

mod routes;
mod status_page;

use std::sync::Arc;

use crate::fleet::Fleet;
use crate::health::HealthMetrics;
use crate::reload::Reloader;

pub(crate) use routes::router;

/// What every handler reads.
#[derive(Clone)]
pub(crate) struct AppState {
    pub fleet: Arc<Fleet>,
    pub health: Arc<HealthMetrics>,
    pub telemetry_path: Arc<str>,
    /// `--web.enable-lifecycle`: `POST /-/reload` reloads the configuration.
    pub enable_lifecycle: bool,
    /// What `/-/reload` reloads with; none when started without a configuration source.
    pub reloader: Option<Arc<Reloader>>,
    /// `POST /webhook`; none without a webhook token (404).
    pub webhook: Option<Arc<crate::push::Receiver>>,
}
