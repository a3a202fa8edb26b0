//! Wires a `Config` into a running exporter: client, poller, HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::fleet::Fleet;
use crate::health::HealthMetrics;
use crate::http::{self, AppState};
use crate::monogoto::Credentials;
use crate::monogoto::{Client, ClientOptions};
use crate::poller::Poller;
use crate::reload::{Reloader, Resolve};
use crate::storage::{Owner, Storage, StorageMetrics, ledger::BudgetJournal};

/// In-flight scrapes get this long to finish once shutdown starts.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("no credentials configured")]
    NoCredentials,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("web.config.file: {0}")]
    WebConfig(#[from] crate::web::WebConfigError),
}

/// A started exporter. Dropping it does not stop it; call [`RunningExporter::shutdown`].
pub struct RunningExporter {
    pub addr: SocketAddr,
    /// Serving HTTPS (`--web.config.file` with `tls_server_config`).
    pub tls: bool,
    pub fleet: Arc<Fleet>,
    pub health: Arc<HealthMetrics>,
    pub poller: Arc<Poller>,
    /// Reloads the configuration; none when started without a source ([`start`]).
    pub reloader: Option<Arc<Reloader>>,
    cancel: CancellationToken,
    server: JoinHandle<()>,
    polling: JoinHandle<()>,
    /// Aborts the polling task itself (the supervisor in `polling` watches it).
    polling_task: tokio::task::AbortHandle,
    /// Cancelled when polling stopped for another reason than shutdown.
    polling_failed: CancellationToken,
}

impl RunningExporter {
    /// Stops polling, lets in-flight scrapes finish (up to `SHUTDOWN_GRACE`) and returns.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.polling.await;
        // Polling has stopped and published what it got: the state is whole.
        self.poller.save_now().await;
        let server = self.server;
        let abort = server.abort_handle();
        if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
            tracing::warn!("scrapes still running after the grace period; closing them");
            abort.abort();
        }
    }

    /// Completes if polling stops for any reason other than shutdown (the
    /// task panicked or ended): the process should then exit non-zero, so
    /// that its supervisor restarts it, rather than serve ageing data as healthy.
    pub async fn polling_failed(&self) {
        self.polling_failed.cancelled().await;
    }

    /// Stops the polling task as a crash would; for tests of what follows.
    pub fn abort_polling(&self) {
        self.polling_task.abort();
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// Binds the listen address, starts polling (the first refresh at once) and
/// serving. The configuration stays as given: see [`start_reloadable`].
pub async fn start(config: &Config) -> Result<RunningExporter, StartError> {
    start_with(config, None).await
}

/// [`start`], reloading the configuration from `resolve` on SIGHUP, on
/// `POST /-/reload` (with `--web.enable-lifecycle`) and when the ICCIDs file
/// changes on disk (see [`crate::reload`]).
pub async fn start_reloadable(
    config: &Config,
    resolve: Resolve,
) -> Result<RunningExporter, StartError> {
    start_with(config, Some(resolve)).await
}

async fn start_with(
    config: &Config,
    resolve: Option<Resolve>,
) -> Result<RunningExporter, StartError> {
    let listener = TcpListener::bind(&config.listen_address)
        .await
        .map_err(|source| StartError::Listen {
            address: config.listen_address.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        address: config.listen_address.clone(),
        source,
    })?;

    let health = Arc::new(HealthMetrics::new());
    let fleet = Arc::new(Fleet::default());
    let credentials = config
        .credentials
        .clone()
        .ok_or(StartError::NoCredentials)?;
    let client = Client::new(
        ClientOptions {
            base_url: config.url.clone(),
            timeout: config.poll.timeout,
            max_body_size: config.max_body_size,
            retries: config.poll.retries,
            budget: config.rate_limit.clone(),
            thing_ids_format: config.thing_ids_format,
        },
        credentials.clone(),
        health.api.clone(),
    )
    .map_err(|e| StartError::Client(e.to_string()))?;
    let storage = config.storage_path.as_deref().map(|dir| {
        let metrics = Arc::new(StorageMetrics::new());
        if let Err(e) = metrics.register(health.registry()) {
            tracing::error!(error = %e, "cannot register the storage metrics");
        }
        // The folder was found writable as the configuration was checked.
        metrics.last_write_success.set(crate::health::unix_now());
        Arc::new(Storage::new(
            dir,
            Owner::new(&config.url, &credentials),
            metrics,
        ))
    });
    if let Some(storage) = &storage {
        // Before any request: what the last process spent still counts.
        if let Some(spent) = storage.load_budget() {
            client.restore_budget_spent(&spent);
        }
        client.keep_spending_in(Arc::new(BudgetJournal::new(storage.clone())));
    }
    let mut poller = Poller::new(
        client,
        config.poll.clone(),
        config.iccids.clone(),
        config.discover,
        fleet.clone(),
        health.clone(),
    )
    .with_discover_interval(config.discover_interval)
    .with_shard(config.shard);
    if let Some(storage) = &storage {
        poller = poller.with_storage(storage.clone());
    }
    let poller = Arc::new(poller);
    if let Some(storage) = &storage {
        let served = poller.restore(storage).await;
        storage.metrics.loaded_things.set(served as i64);
    }
    health.config_loaded(true, crate::health::unix_now());
    let reloader = resolve.map(|resolve| {
        Arc::new(Reloader::new(
            config.clone(),
            resolve,
            poller.clone(),
            health.clone(),
        ))
    });

    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        listen = %addr,
        telemetry_path = %config.telemetry_path,
        api = %config.url,
        auth = match credentials { Credentials::Token(_) => "token", Credentials::Login { .. } => "login" },
        iccids = config.iccids.len(),
        discover = config.discover,
        shard = %config.shard,
        interval = %humantime::format_duration(config.poll.interval),
        rate_limit = %config.rate_limit,
        lifecycle = config.enable_lifecycle,
        storage = config.storage_path.as_ref().map(|p| p.display().to_string()),
        webhook = config.webhook.is_some(),
        "monogoto-exporter started"
    );

    let webhook = config.webhook.as_ref().map(|webhook| {
        let receiver = Arc::new(crate::push::Receiver::new(
            webhook.token.clone(),
            webhook.max_body_size,
            poller.clone(),
            config.shard,
            config.shard_peer_url_template.clone(),
        ));
        if let Err(e) = receiver
            .metrics
            .register(health.registry())
            .and_then(|()| poller.hint_metrics.register(health.registry()))
        {
            tracing::error!(error = %e, "cannot register the webhook metrics");
        }
        receiver
    });
    let app = http::router(AppState {
        fleet: fleet.clone(),
        health: health.clone(),
        telemetry_path: config.telemetry_path.as_str().into(),
        enable_lifecycle: config.enable_lifecycle,
        reloader: reloader.clone(),
        webhook,
    });
    // Validated again here: the file may have changed since the config was resolved.
    let web_server = crate::web::Server::new(
        listener,
        app,
        config.web_config_file.as_deref(),
        config.web_limits,
    )?;
    let tls = web_server.is_tls();

    let cancel = CancellationToken::new();
    let polling_failed = CancellationToken::new();
    let task = tokio::spawn(poller.clone().run(cancel.clone()));
    let polling_task = task.abort_handle();
    if let Some(reloader) = &reloader {
        tokio::spawn(reloader.clone().watch(cancel.clone()));
    }
    let polling = tokio::spawn(supervise_polling(
        task,
        cancel.clone(),
        polling_failed.clone(),
        fleet.clone(),
    ));
    let server_cancel = cancel.clone();
    let server = tokio::spawn(async move {
        if let Err(e) = web_server.serve(server_cancel.cancelled_owned()).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    Ok(RunningExporter {
        addr,
        tls,
        fleet,
        health,
        poller,
        reloader,
        cancel,
        server,
        polling,
        polling_task,
        polling_failed,
    })
}

/// Waits for the polling task; if it ends while no shutdown was asked for,
/// says so and marks the exporter unhealthy.
async fn supervise_polling(
    task: JoinHandle<()>,
    cancel: CancellationToken,
    failed: CancellationToken,
    fleet: Arc<Fleet>,
) {
    let outcome = task.await;
    if cancel.is_cancelled() {
        return;
    }
    let why = match outcome {
        Ok(()) => "it ended".to_string(),
        Err(e) if e.is_panic() => "it panicked".to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(reason = %why, "the polling task stopped unexpectedly; exiting so that the process is restarted");
    fleet.mark_polling_stopped();
    failed.cancel();
}

/// Keeps a SIGHUP from ending the process while it starts: call it first,
/// within the runtime, before the configuration is read. The reload loops
/// listen for SIGHUP once they run.
pub fn ignore_sighup_until_listened() {
    crate::hangup::ignore_until_listened();
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received, shutting down"),
        _ = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
