//! SIGHUP as something to wait for, for the loops that reload on it. Each
//! listener gets every signal, so the web configuration and the exporter's
//! configuration each hear one SIGHUP.

#[cfg(unix)]
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Makes SIGHUP harmless from now on, before any reload loop listens for it.
/// Its default action ends the process, so one sent while the exporter starts
/// (a configuration tool reloading every service, say) would kill it. tokio
/// keeps a handler it has registered for the life of the process, so the
/// listener is dropped at once: a SIGHUP before a loop listens is ignored.
/// Must be called within a tokio runtime.
pub(crate) fn ignore_until_listened() {
    #[cfg(unix)]
    {
        // Logging is not set up yet; a loop that then cannot listen warns.
        let _ = signal(SignalKind::hangup());
    }
}

pub(crate) struct Hangup {
    #[cfg(unix)]
    signal: Option<Signal>,
}

impl Hangup {
    /// Starts listening. When that fails, a warning says what still reloads
    /// (`otherwise`), and [`Hangup::recv`] never resolves.
    pub(crate) fn listen(otherwise: &str) -> Self {
        #[cfg(unix)]
        {
            let signal = match signal(SignalKind::hangup()) {
                Ok(signal) => Some(signal),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; {otherwise}");
                    None
                }
            };
            Hangup { signal }
        }
        #[cfg(not(unix))]
        {
            let _ = otherwise;
            Hangup {}
        }
    }

    /// Resolves at the next SIGHUP.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}
