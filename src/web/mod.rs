//! Serving the router, optionally under a `--web.config.file` (exporter-toolkit
//! format): TLS, client certificates, basic auth, extra headers, rate limit,
//! all re-read from disk while running.
//!
//! Whether the listener speaks TLS is fixed at start-up, as in exporter-toolkit;
//! everything else (certificates, users, headers, ...) follows the file. How
//! long and how many connections are kept is the same with or without a file
//! (see `connections`).

mod config;
pub(crate) mod connections;
mod guard;
mod throttle;
mod tls;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::hangup::Hangup;
pub(crate) use config::WebConfig;
pub use config::WebConfigError;
pub use connections::{Limits, raise_open_file_limit};

/// How often the web configuration file (and the files it names) is checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// A listener and router ready to serve, with the web configuration already
/// validated, so that a bad file stops start-up rather than the first scrape.
pub(crate) struct Server {
    listener: TcpListener,
    router: Router,
    web: Option<Web>,
    limits: Limits,
}

struct Web {
    path: PathBuf,
    live: Arc<ArcSwap<WebConfig>>,
}

impl Server {
    pub(crate) fn new(
        listener: TcpListener,
        router: Router,
        web_config: Option<&Path>,
        limits: Limits,
    ) -> Result<Server, WebConfigError> {
        let Some(path) = web_config else {
            return Ok(Server {
                listener,
                router,
                web: None,
                limits,
            });
        };
        let config = WebConfig::load(path)?;
        for warning in &config.warnings {
            tracing::warn!(file = %path.display(), "{warning}");
        }
        tracing::info!(
            file = %path.display(),
            tls = config.tls.is_some(),
            client_auth = %config.client_auth,
            http2 = config.tls.is_some() && config.http2,
            basic_auth_users = config.users.len(),
            "web configuration loaded"
        );
        let live = Arc::new(ArcSwap::from_pointee(config));
        let shared = Arc::new(guard::Guard::new(live.clone()));
        let router = router.layer(axum::middleware::from_fn_with_state(shared, guard::guard));
        Ok(Server {
            listener,
            router,
            web: Some(Web {
                path: path.to_path_buf(),
                live,
            }),
            limits,
        })
    }

    /// Whether the listener speaks TLS (fixed for the life of the server).
    pub(crate) fn is_tls(&self) -> bool {
        self.web
            .as_ref()
            .is_some_and(|web| web.live.load().tls.is_some())
    }

    /// Serves until `shutdown` completes, then stops accepting and waits for
    /// the connections in flight (the caller bounds that wait).
    pub(crate) async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let Server {
            listener,
            router,
            web,
            limits,
        } = self;
        tracing::debug!(
            read_header_timeout = ?limits.read_header_timeout,
            idle_timeout = ?limits.idle_timeout,
            max_connections = limits.max_connections,
            "connection limits"
        );
        let Some(web) = web else {
            return connections::serve(listener, router, None, limits, shutdown).await;
        };
        let stop_reloading = CancellationToken::new();
        tokio::spawn(reload_loop(
            web.path.clone(),
            web.live.clone(),
            stop_reloading.clone(),
        ));
        let _stop_reloading = stop_reloading.drop_guard();
        let tls = web.live.load().tls.is_some().then_some(web.live);
        connections::serve(listener, router, tls, limits, shutdown).await
    }
}

/// Sends the end of a response at once: with Nagle's algorithm a body's last
/// short write waits for the client's delayed ACK, which cost a gzip scrape
/// of 10,000 Things 15 ms. Go's servers, Prometheus' among them, do the same.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// Re-reads the file every [`RELOAD_INTERVAL`] and on SIGHUP. A valid new
/// version replaces the live one whole; an invalid one is logged once and
/// the version in force stays, so a bad edit never takes protection away.
async fn reload_loop(path: PathBuf, live: Arc<ArcSwap<WebConfig>>, stop: CancellationToken) {
    let mut hangup = Hangup::listen("the web configuration is still re-read every few seconds");
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RELOAD_INTERVAL) => {}
            () = hangup.recv() => tracing::info!(file = %path.display(), "SIGHUP received, re-reading the web configuration"),
        }
        let load_path = path.clone();
        let loaded = match tokio::task::spawn_blocking(move || WebConfig::load(&load_path)).await {
            Ok(loaded) => loaded,
            Err(e) => Err(WebConfigError::new(format!("reading failed: {e}"))),
        };
        let current = live.load_full();
        match loaded.and_then(|new| compatible(&current, new)) {
            Ok(new) if new.fingerprint == current.fingerprint => {
                if last_error.take().is_some() {
                    tracing::info!(file = %path.display(), "web configuration valid again, as the one in force");
                }
            }
            Ok(new) => {
                for warning in &new.warnings {
                    tracing::warn!(file = %path.display(), "{warning}");
                }
                tracing::info!(
                    file = %path.display(),
                    client_auth = %new.client_auth,
                    basic_auth_users = new.users.len(),
                    "web configuration reloaded"
                );
                live.store(Arc::new(new));
                last_error = None;
            }
            Err(e) => {
                let message = e.to_string();
                if last_error.as_deref() != Some(message.as_str()) {
                    tracing::error!(
                        file = %path.display(),
                        error = %message,
                        "invalid web configuration; keeping the previous one"
                    );
                }
                last_error = Some(message);
            }
        }
    }
}

/// A running listener cannot switch between TLS and plain HTTP.
fn compatible(current: &WebConfig, new: WebConfig) -> Result<WebConfig, WebConfigError> {
    match (current.tls.is_some(), new.tls.is_some()) {
        (true, false) => Err(WebConfigError::new(
            "tls_server_config was removed; switching from TLS to plain HTTP needs a restart",
        )),
        (false, true) => Err(WebConfigError::new(
            "tls_server_config was added; switching from plain HTTP to TLS needs a restart",
        )),
        _ => Ok(new),
    }
}
