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

mod cap;
#[cfg(test)]
mod tests;
mod timeouts;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use super::config::WebConfig;
pub use cap::raise_open_file_limit;
use cap::{Registered, Registry, connection_cap, open_file_limit};
use timeouts::{Conn, Expiry, InFlight, Io};

pub(crate) const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const MIN_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
pub(crate) const MAX_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(600);
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 512;
pub(crate) const MAX_MAX_CONNECTIONS: usize = 1_000_000;
/// Longer than the common 60 s scrape interval, so that a Prometheus keeps
/// its connection (and TLS session) from one scrape to the next.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// An idle connection told to close (HTTP/2 GOAWAY) gets this long to do so.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long and how many connections are kept (`--web.read-header-timeout`,
/// `--web.max-connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub read_header_timeout: Duration,
    pub max_connections: usize,
    /// Fixed at `IDLE_TIMEOUT` outside tests.
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
