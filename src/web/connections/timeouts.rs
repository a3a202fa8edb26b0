//! How long connections are kept: each connection's phase (waiting for a
//! request header, serving, idle, closing) and the deadline it sets, moved
//! by the requests it serves and the bytes it reads and writes. The cap reads
//! the same phase to choose which connection to close.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::Version;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Limits;

pub(super) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The connection's stream, noting the first byte a keep-alive connection
/// reads after idling: the next request's header clock starts there.
pub(super) struct Io<I> {
    pub(super) inner: I,
    pub(super) conn: Arc<Conn>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Io<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.bytes_read();
        }
        poll
    }
}

/// Also noting when the client stops taking the answer: writes that cannot
/// proceed since then.
impl<I: AsyncWrite + Unpin> AsyncWrite for Io<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.conn.write_polled(poll.is_pending());
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.conn.write_polled(poll.is_pending());
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.conn.write_polled(poll.is_pending());
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// No complete request header within the read-header timeout.
    Header,
    /// Idle between requests for the idle timeout.
    Idle,
    /// Made room for another connection, or out of its closing grace.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for a complete request header since `since`: the accept, or
    /// the first byte after idling.
    Header { since: Instant },
    /// Requests in flight: no deadline; the handler and the client decide.
    Busy { requests: usize },
    /// Between requests since `since`.
    Idle { since: Instant },
    /// To be closed at `at`.
    Closing { at: Instant },
}

/// What the registry needs to know to pick a connection to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    /// Has not sent a complete request yet.
    New,
    /// Between requests (idle, or the next header coming) since then.
    Between(Instant),
    /// A request in flight whose client has not taken a byte of the answer
    /// since then, for at least the read-header timeout.
    Stalled(Instant),
    Busy,
    Closing,
}

pub(super) struct State {
    pub(super) phase: Phase,
    served: bool,
    http2: bool,
    /// Since when writes to the client cannot proceed.
    write_blocked_since: Option<Instant>,
}

/// One connection's phase, shared by its task, its requests and the registry.
pub(super) struct Conn {
    pub(super) id: u64,
    read_header_timeout: Duration,
    idle_timeout: Duration,
    state: Mutex<State>,
    /// Idle on HTTP/1: the next byte read starts a header clock. Checked
    /// without the lock on every read.
    awaiting_byte: AtomicBool,
    /// `write_blocked_since` is set; checked without the lock on every write.
    write_blocked: AtomicBool,
    /// Wakes the task when its deadline moved earlier or appeared.
    wake: Notify,
}

impl Conn {
    pub(super) fn new(id: u64, limits: &Limits) -> Conn {
        Conn {
            id,
            read_header_timeout: limits.read_header_timeout,
            idle_timeout: limits.idle_timeout,
            state: Mutex::new(State {
                phase: Phase::Header {
                    since: Instant::now(),
                },
                served: false,
                http2: false,
                write_blocked_since: None,
            }),
            awaiting_byte: AtomicBool::new(false),
            write_blocked: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // The state is a few plain values, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn request_started(self: &Arc<Self>, version: Version) -> InFlight {
        let mut state = self.state();
        state.served = true;
        // Control frames of an idle HTTP/2 connection are no request: only
        // the idle timeout applies to it between requests.
        state.http2 |= version == Version::HTTP_2;
        state.phase = match state.phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            closing @ Phase::Closing { .. } => closing,
            Phase::Header { .. } | Phase::Idle { .. } => Phase::Busy { requests: 1 },
        };
        self.awaiting_byte.store(false, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn request_finished(&self) {
        let mut state = self.state();
        if let Phase::Busy { requests } = state.phase {
            state.phase = if requests > 1 {
                Phase::Busy {
                    requests: requests - 1,
                }
            } else {
                self.awaiting_byte.store(!state.http2, Ordering::Relaxed);
                self.wake.notify_one();
                Phase::Idle {
                    since: Instant::now(),
                }
            };
        }
    }

    pub(super) fn bytes_read(&self) {
        if !self.awaiting_byte.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut state = self.state();
        if let Phase::Idle { .. } = state.phase {
            state.phase = Phase::Header {
                since: Instant::now(),
            };
            self.wake.notify_one();
        }
    }

    fn write_polled(&self, pending: bool) {
        if self.write_blocked.load(Ordering::Relaxed) == pending {
            return;
        }
        self.write_blocked.store(pending, Ordering::Relaxed);
        self.state().write_blocked_since = pending.then(Instant::now);
    }

    /// Closes the connection now unless it serves a request (one the client
    /// still takes the answer of).
    pub(super) fn evict(&self) -> bool {
        let mut state = self.state();
        if let Standing::Busy | Standing::Closing = self.standing_of(&state) {
            return false;
        }
        state.phase = Phase::Closing { at: Instant::now() };
        self.wake.notify_one();
        true
    }

    pub(super) fn close_within(&self, grace: Duration) {
        self.state().phase = Phase::Closing {
            at: Instant::now() + grace,
        };
    }

    pub(super) fn busy(&self) -> bool {
        matches!(self.state().phase, Phase::Busy { .. })
    }

    pub(super) fn standing(&self) -> Standing {
        self.standing_of(&self.state())
    }

    fn standing_of(&self, state: &State) -> Standing {
        match state.phase {
            Phase::Header { .. } if !state.served => Standing::New,
            Phase::Header { since } | Phase::Idle { since } => Standing::Between(since),
            Phase::Busy { .. } => match state.write_blocked_since {
                Some(since) if since + self.read_header_timeout <= Instant::now() => {
                    Standing::Stalled(since)
                }
                _ => Standing::Busy,
            },
            Phase::Closing { .. } => Standing::Closing,
        }
    }

    pub(super) fn deadline(&self) -> Option<(Instant, Expiry)> {
        match self.state().phase {
            Phase::Header { since } => Some((since + self.read_header_timeout, Expiry::Header)),
            Phase::Idle { since } => Some((since + self.idle_timeout, Expiry::Idle)),
            Phase::Busy { .. } => None,
            Phase::Closing { at } => Some((at, Expiry::Closed)),
        }
    }

    /// Completes when the deadline of the phase the connection is in passes.
    pub(super) async fn expired(&self) -> Expiry {
        loop {
            // Before reading the deadline, so that no change slips between.
            let woken = self.wake.notified();
            match self.deadline() {
                Some((at, expiry)) if at <= Instant::now() => return expiry,
                Some((at, _)) => tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = woken => {}
                },
                None => woken.await,
            }
        }
    }
}
