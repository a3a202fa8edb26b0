//! Connections: the accept loop, and how long and how many of them are kept.
//!
//! A connection must send a complete request header within the read-header
//! timeout of being accepted (its TLS handshake included) and, on a
//! keep-alive connection, of the first byte of each later request; between
//! requests it may stay idle for [`IDLE_TIMEOUT`]. At most `max_connections`
//! are open at once. At the cap, the oldest connection without a request in
//! flight makes room for the new one (one that has never sent a complete
//! request first, then the longest idle, then one whose client has not taken
//! a byte of its answer for the read-header timeout), so connections that
//! idle or stall cannot lock a scrape out; only when every one of them is
//! busy is the new one refused.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use super::config::WebConfig;

pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const MIN_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;
/// Longer than the common 60 s scrape interval, so that a Prometheus keeps
/// its connection (and TLS session) from one scrape to the next.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// An idle connection told to close (HTTP/2 GOAWAY) gets this long to do so.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Descriptors left to everything but the server's connections (the API
/// client, the configuration files, /proc for the process metrics), at most
/// half the limit.
const NOFILE_HEADROOM: usize = 128;
/// "Connection limit reached" is logged at most this often.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// How long and how many connections are kept (`--web.read-header-timeout`,
/// `--web.max-connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub read_header_timeout: Duration,
    pub max_connections: usize,
    /// Fixed at [`IDLE_TIMEOUT`] outside tests.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Accepts and serves until `shutdown` completes; then stops accepting,
/// closes the connections without a request in flight, lets the others
/// finish theirs and returns once all are closed. `tls`: the live web
/// configuration when the listener speaks TLS.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ArcSwap<WebConfig>>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let registry = Arc::new(Registry::new(Limits {
        max_connections: connection_cap(limits.max_connections, open_file_limit()),
        ..limits
    }));
    let service = TowerToHyperService::new(router);
    let closing = CancellationToken::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (mut tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if out_of_descriptors(&e) && registry.make_room() {
                    tracing::debug!(error = %e, "accept failed; closed an idle connection to make room");
                    // Time for the closed connection's task to let go of its descriptor.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                } else {
                    // Per-connection errors (reset before accept) and
                    // descriptor exhaustion alike: pause briefly, keep serving.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        super::no_delay(&mut tcp);
        let tls_config = match &tls {
            None => None,
            Some(live) => {
                let config = live.load();
                // A reload never switches TLS off (see `compatible`); be safe anyway.
                let Some(server_config) = config.tls.clone() else {
                    continue;
                };
                Some((server_config, config.http2))
            }
        };
        let Some(conn) = registry.admit() else {
            refuse(tcp, tls_config.is_none());
            continue;
        };
        connections.spawn(connection(
            tcp,
            peer,
            tls_config,
            service.clone(),
            Registered {
                conn,
                registry: registry.clone(),
            },
            closing.clone(),
        ));
    }
    drop(listener);
    closing.cancel();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// At the cap with every connection busy: a plain-HTTP client is told so
/// when its socket takes the answer at once; either way the connection closes.
fn refuse(tcp: TcpStream, plain: bool) {
    if plain {
        const BODY: &str = "too many open connections\n";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        let _ = tcp.try_write(answer.as_bytes());
    }
}

#[cfg(unix)]
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(not(unix))]
fn out_of_descriptors(_: &io::Error) -> bool {
    false
}

/// `--web.max-connections`, lowered to what the open-file limit leaves for
/// connections, so that a flood exhausts the cap (and idle connections make
/// room) before it exhausts the descriptors the rest of the process needs.
fn connection_cap(configured: usize, open_files: Option<usize>) -> usize {
    let Some(open_files) = open_files else {
        return configured;
    };
    let room = open_files
        .saturating_sub(NOFILE_HEADROOM.min(open_files / 2))
        .max(1);
    if configured > room {
        tracing::warn!(
            max_connections = configured,
            open_file_limit = open_files,
            "--web.max-connections is above what the open-file limit leaves for connections; \
             keeping at most {room} open (raise the limit, e.g. ulimit -n, to keep more)"
        );
        room
    } else {
        configured
    }
}

/// Raises the soft limit of open files to the hard limit, as Go programs do
/// at start-up: the soft limit (often 1,024) exists for programs using
/// select(2), which this one does not.
#[cfg(unix)]
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct passed, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "cannot read the open-file limit");
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        tracing::debug!(
            limit = limit.rlim_cur,
            "open-file limit already at its hard limit"
        );
        return;
    }
    let soft = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit only reads the struct passed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), soft, hard = limit.rlim_max, "cannot raise the open-file limit");
        return;
    }
    tracing::debug!(
        from = soft,
        to = limit.rlim_max,
        "raised the soft open-file limit to the hard limit"
    );
}

#[cfg(not(unix))]
pub fn raise_open_file_limit() {}

/// The soft limit of open files; None when unlimited or unknown.
#[cfg(unix)]
fn open_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct passed, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    usize::try_from(limit.rlim_cur).ok()
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<usize> {
    None
}

/// Takes the connection out of the registry however its task ends.
struct Registered {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.conn.id);
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<(Arc<ServerConfig>, bool)>,
    service: TowerToHyperService<Router>,
    registered: Registered,
    closing: CancellationToken,
) {
    let conn = &registered.conn;
    let Some((server_config, http2)) = tls else {
        return drive(tcp, true, peer, service, conn, &closing).await;
    };
    // The read-header clock runs from the accept, so the handshake counts.
    let stream = tokio::select! {
        // Nothing in flight yet: nothing to finish.
        () = closing.cancelled() => return,
        expiry = conn.expired() => {
            tracing::debug!(%peer, ?expiry, "TLS handshake not finished in time; closing");
            return;
        }
        result = TlsAcceptor::from(server_config).accept(tcp) => match result {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
        },
    };
    drive(stream, http2, peer, service, conn, &closing).await;
}

/// Serves HTTP on `io` until the client or a deadline ends it.
async fn drive<I>(
    io: I,
    http2: bool,
    peer: SocketAddr,
    router: TowerToHyperService<Router>,
    conn: &Arc<Conn>,
    closing: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if !http2 {
        builder = builder.http1_only();
    }
    let service = Service {
        router,
        conn: conn.clone(),
        peer,
    };
    let io = TokioIo::new(Io {
        inner: io,
        conn: conn.clone(),
    });
    let mut connection = pin!(builder.serve_connection(io, service));
    let mut expired = pin!(conn.expired());
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = closing.cancelled(), if !draining => {
                draining = true;
                if !conn.busy() {
                    return;
                }
                connection.as_mut().graceful_shutdown();
            }
            expiry = &mut expired => match expiry {
                Expiry::Header => {
                    tracing::debug!(%peer, "no complete request header in time; closing");
                    return;
                }
                Expiry::Idle => {
                    // Politely: HTTP/2 clients get a GOAWAY and retry elsewhere.
                    connection.as_mut().graceful_shutdown();
                    conn.close_within(CLOSE_GRACE);
                    expired.set(conn.expired());
                }
                Expiry::Closed => return,
            },
        }
    }
}

/// The router, telling the connection when requests start and end and
/// giving each the client's address.
#[derive(Clone)]
struct Service {
    router: TowerToHyperService<Router>,
    conn: Arc<Conn>,
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let in_flight = self.conn.request_started(request.version());
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let response = hyper::service::Service::call(&self.router, request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that counts as a request in flight until it is dropped,
/// which hyper does once it has written it.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The connection's stream, noting the first byte a keep-alive connection
/// reads after idling: the next request's header clock starts there.
struct Io<I> {
    inner: I,
    conn: Arc<Conn>,
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
enum Expiry {
    /// No complete request header within the read-header timeout.
    Header,
    /// Idle between requests for the idle timeout.
    Idle,
    /// Made room for another connection, or out of its closing grace.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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
enum Standing {
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

struct State {
    phase: Phase,
    served: bool,
    http2: bool,
    /// Since when writes to the client cannot proceed.
    write_blocked_since: Option<Instant>,
}

/// One connection's phase, shared by its task, its requests and the registry.
struct Conn {
    id: u64,
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
    fn new(id: u64, limits: &Limits) -> Conn {
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

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a few plain values, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request_started(self: &Arc<Self>, version: Version) -> InFlight {
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

    fn bytes_read(&self) {
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
    fn evict(&self) -> bool {
        let mut state = self.state();
        if let Standing::Busy | Standing::Closing = self.standing_of(&state) {
            return false;
        }
        state.phase = Phase::Closing { at: Instant::now() };
        self.wake.notify_one();
        true
    }

    fn close_within(&self, grace: Duration) {
        self.state().phase = Phase::Closing {
            at: Instant::now() + grace,
        };
    }

    fn busy(&self) -> bool {
        matches!(self.state().phase, Phase::Busy { .. })
    }

    fn standing(&self) -> Standing {
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

    fn deadline(&self) -> Option<(Instant, Expiry)> {
        match self.state().phase {
            Phase::Header { since } => Some((since + self.read_header_timeout, Expiry::Header)),
            Phase::Idle { since } => Some((since + self.idle_timeout, Expiry::Idle)),
            Phase::Busy { .. } => None,
            Phase::Closing { at } => Some((at, Expiry::Closed)),
        }
    }

    /// Completes when the deadline of the phase the connection is in passes.
    async fn expired(&self) -> Expiry {
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

/// The open connections, oldest first, and the cap on their number.
struct Registry {
    limits: Limits,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
    last_full_warning: Mutex<Option<Instant>>,
}

impl Registry {
    fn new(limits: Limits) -> Registry {
        Registry {
            limits,
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
            last_full_warning: Mutex::new(None),
        }
    }

    fn open(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection, made by closing another if need be;
    /// None when every open connection has a request in flight.
    fn admit(&self) -> Option<Arc<Conn>> {
        let mut open = self.open();
        if open.len() >= self.limits.max_connections && !evict_one(&mut open) {
            drop(open);
            self.warn_full();
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(id, &self.limits));
        open.insert(id, conn.clone());
        Some(conn)
    }

    /// Closes one connection without a request in flight, if there is one.
    fn make_room(&self) -> bool {
        evict_one(&mut self.open())
    }

    fn remove(&self, id: u64) {
        self.open().remove(&id);
    }

    fn warn_full(&self) {
        let mut last = self
            .last_full_warning
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_none_or(|at| now.duration_since(at) >= FULL_WARNING_INTERVAL) {
            *last = Some(now);
            tracing::warn!(
                max_connections = self.limits.max_connections,
                "connection limit reached with a request in flight on every connection; \
                 refusing new connections (--web.max-connections)"
            );
        }
    }
}

fn evict_one(open: &mut BTreeMap<u64, Arc<Conn>>) -> bool {
    // A victim may take a request between being chosen and being closed:
    // then choose again.
    while let Some(id) = victim(open) {
        if let Some(conn) = open.remove(&id) {
            if conn.evict() {
                tracing::debug!(
                    open = open.len(),
                    "connection limit reached; closed a new, idle or stuck connection to make room"
                );
                return true;
            }
            open.insert(id, conn);
        }
    }
    false
}

/// The connection to close to make room: the oldest that has not sent a
/// complete request yet (slow or silent clients), else the one idle longest,
/// else the one whose client has left its answer untaken longest.
fn victim(open: &BTreeMap<u64, Arc<Conn>>) -> Option<u64> {
    let mut longest_idle: Option<(Instant, u64)> = None;
    let mut longest_stalled: Option<(Instant, u64)> = None;
    for (&id, conn) in open {
        let (since, longest) = match conn.standing() {
            // Ids grow with each accept: the first one found is the oldest.
            Standing::New => return Some(id),
            Standing::Between(since) => (since, &mut longest_idle),
            Standing::Stalled(since) => (since, &mut longest_stalled),
            Standing::Busy | Standing::Closing => continue,
        };
        if longest.is_none_or(|(oldest, _)| since < oldest) {
            *longest = Some((since, id));
        }
    }
    longest_idle.or(longest_stalled).map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn the_cap_closes_new_connections_first_then_the_longest_idle() {
        let registry = Registry::new(limits(3));
        let a = registry.admit().expect("room");
        let b = registry.admit().expect("room");
        let c = registry.admit().expect("room");
        // a has served a request and idles; b never sent one; c is busy.
        drop(a.request_started(Version::HTTP_11));
        let _busy = c.request_started(Version::HTTP_11);
        assert_eq!(a.standing(), Standing::Between(a_since(&a)));

        let d = registry.admit().expect("b makes room");
        assert_eq!(b.standing(), Standing::Closing);
        assert_eq!(b.deadline().map(|(_, e)| e), Some(Expiry::Closed));
        assert_eq!(a.standing(), Standing::Between(a_since(&a)));

        // Now d is the only new one: it goes before the idle a.
        let e = registry.admit().expect("d makes room");
        assert_eq!(d.standing(), Standing::Closing);
        let _busy_too = e.request_started(Version::HTTP_11);
        let f = registry.admit().expect("a makes room");
        assert_eq!(a.standing(), Standing::Closing);
        let _g = registry.admit().expect("f, new, makes room");
        assert_eq!(f.standing(), Standing::Closing);
    }

    fn a_since(conn: &Conn) -> Instant {
        match conn.state().phase {
            Phase::Idle { since } | Phase::Header { since } => since,
            phase => panic!("not between requests: {phase:?}"),
        }
    }

    #[tokio::test]
    async fn the_cap_refuses_when_every_connection_is_busy() {
        let registry = Registry::new(limits(2));
        let a = registry.admit().expect("room");
        let b = registry.admit().expect("room");
        let in_flight = [
            a.request_started(Version::HTTP_11),
            b.request_started(Version::HTTP_2),
        ];
        assert!(registry.admit().is_none());
        assert!(!registry.make_room());
        drop(in_flight);
        assert!(registry.admit().is_some(), "idle again: one makes room");
        registry.remove(b.id);
        registry.remove(a.id);
        assert!(registry.admit().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_phase() {
        let limits = Limits {
            read_header_timeout: Duration::from_secs(10),
            max_connections: 1,
            idle_timeout: Duration::from_secs(90),
        };
        let conn = Arc::new(Conn::new(0, &limits));
        let start = Instant::now();
        assert_eq!(
            conn.deadline(),
            Some((start + Duration::from_secs(10), Expiry::Header)),
            "from the accept"
        );
        let first = conn.request_started(Version::HTTP_11);
        let second = conn.request_started(Version::HTTP_11);
        assert_eq!(conn.deadline(), None, "busy");
        drop(first);
        assert_eq!(conn.deadline(), None, "still one in flight");
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(second);
        let idle = Instant::now();
        assert_eq!(
            conn.deadline(),
            Some((idle + Duration::from_secs(90), Expiry::Idle))
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        conn.bytes_read();
        assert_eq!(
            conn.deadline(),
            Some((Instant::now() + Duration::from_secs(10), Expiry::Header)),
            "the next request's clock starts at its first byte"
        );
        conn.bytes_read();
        assert_eq!(
            conn.deadline(),
            Some((idle + Duration::from_secs(40), Expiry::Header)),
            "and only there"
        );
        assert_eq!(conn.expired().await, Expiry::Header);
        assert_eq!(Instant::now(), idle + Duration::from_secs(40));
    }

    #[tokio::test(start_paused = true)]
    async fn http2_connections_idle_whatever_frames_they_read() {
        let conn = Arc::new(Conn::new(0, &Limits::default()));
        drop(conn.request_started(Version::HTTP_2));
        let idle = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        conn.bytes_read();
        assert_eq!(
            conn.deadline(),
            Some((idle + IDLE_TIMEOUT, Expiry::Idle)),
            "a PING or WINDOW_UPDATE starts no request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_eviction_wakes_the_connection_at_once() {
        let conn = Arc::new(Conn::new(0, &Limits::default()));
        let busy = conn.request_started(Version::HTTP_11);
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move { conn.expired().await }
        });
        tokio::task::yield_now().await;
        assert!(!conn.evict(), "busy connections stay");
        drop(busy);
        assert!(conn.evict());
        assert_eq!(waiting.await.expect("task"), Expiry::Closed);
    }

    /// Serves `/ok`; `/hang`, which never answers; and `/endless`, an answer
    /// that never ends. The count is of the requests these two received.
    async fn server(limits: Limits) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use axum::routing::get;
        static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
        let hanging = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counter, endless_counter) = (hanging.clone(), hanging.clone());
        let router = Router::new()
            .route("/ok", get(|| async { "ok\n" }))
            .route(
                "/hang",
                get(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<&'static str>()
                }),
            )
            .route(
                "/endless",
                get(move || async move {
                    endless_counter.fetch_add(1, Ordering::SeqCst);
                    Body::from_stream(futures_util::stream::repeat_with(|| {
                        Ok::<_, Infallible>(Bytes::from_static(&CHUNK))
                    }))
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(serve(
            listener,
            router,
            None,
            limits,
            std::future::pending(),
        ));
        (addr, hanging)
    }

    /// What the server sends until it closes the connection (or 10 s pass).
    async fn read_to_close(stream: &mut TcpStream) -> String {
        use tokio::io::AsyncReadExt as _;
        let mut text = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut text)).await;
        String::from_utf8_lossy(&text).into_owned()
    }

    #[tokio::test]
    async fn beyond_the_cap_with_every_connection_busy_new_ones_get_503() {
        use tokio::io::AsyncWriteExt as _;
        let (addr, hanging) = server(limits(2)).await;
        let mut busy = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            busy.push(stream);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while hanging.load(Ordering::SeqCst) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "requests never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut refused = TcpStream::connect(addr).await.expect("connect");
        let answer = read_to_close(&mut refused).await;
        assert!(
            answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                && answer.ends_with("\r\n\r\ntoo many open connections\n"),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn beyond_the_cap_the_oldest_silent_connection_makes_room() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (addr, _) = server(limits(2)).await;
        let mut oldest = TcpStream::connect(addr).await.expect("connect");
        let mut newer = TcpStream::connect(addr).await.expect("connect");
        // Accepted in order before the next one arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut scrape = TcpStream::connect(addr).await.expect("connect");
        scrape
            .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let answer = read_to_close(&mut scrape).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
        assert_eq!(
            read_to_close(&mut oldest).await,
            "",
            "closed without a word"
        );
        let still_open =
            tokio::time::timeout(Duration::from_millis(200), newer.read(&mut [0u8; 1])).await;
        assert!(still_open.is_err(), "the newer one stays: {still_open:?}");
    }

    #[tokio::test]
    async fn beyond_the_cap_a_client_not_taking_its_answer_makes_room() {
        use tokio::io::AsyncWriteExt as _;
        let (addr, requests) = server(Limits {
            read_header_timeout: Duration::from_secs(1),
            ..limits(1)
        })
        .await;
        let mut greedy = TcpStream::connect(addr).await.expect("connect");
        greedy
            .write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while requests.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "request never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Busy, and refusing others, until its answer has been stuck for the
        // read-header timeout; then it makes room.
        let mut refused = 0;
        loop {
            let mut scrape = TcpStream::connect(addr).await.expect("connect");
            let _ = scrape
                .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let answer = read_to_close(&mut scrape).await;
            if answer.starts_with("HTTP/1.1 200 OK\r\n") {
                break;
            }
            refused += 1;
            assert!(
                std::time::Instant::now() < deadline,
                "never got in: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(refused > 0, "the busy connection was closed at once");
    }

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest_of_the_process() {
        assert_eq!(connection_cap(512, None), 512);
        assert_eq!(connection_cap(512, Some(1_048_576)), 512);
        assert_eq!(connection_cap(512, Some(1024)), 512);
        assert_eq!(connection_cap(512, Some(256)), 128);
        assert_eq!(connection_cap(512, Some(100)), 50);
        assert_eq!(connection_cap(512, Some(1)), 1);
    }
}
