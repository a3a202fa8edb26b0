//! SIGHUP as something to wait for, for the loops that reload on it. Each
//! listener gets every signal, so the web configuration and the exporter's
//! configuration each hear one SIGHUP.

#[cfg(unix)]
use tokio::signal::unix::{Signal, SignalKind, signal};

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
