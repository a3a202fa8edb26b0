//! How many connections are kept: the table of open ones, oldest first; the
//! cap on their number, lowered to fit the open-file limit; and which one
//! closes to make room at the cap.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Limits;
use super::timeouts::{Conn, Standing};

/// Descriptors left to everything but the server's connections (the API
/// client, the configuration files, /proc for the process metrics), at most
/// half the limit.
const NOFILE_HEADROOM: usize = 128;
/// "Connection limit reached" is logged at most this often.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// `--web.max-connections`, lowered to what the open-file limit leaves for
/// connections, so that a flood exhausts the cap (and idle connections make
/// room) before it exhausts the descriptors the rest of the process needs.
pub(super) fn connection_cap(configured: usize, open_files: Option<usize>) -> usize {
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
pub(super) fn open_file_limit() -> Option<usize> {
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
pub(super) fn open_file_limit() -> Option<usize> {
    None
}

/// Takes the connection out of the registry however its task ends.
pub(super) struct Registered {
    pub(super) conn: Arc<Conn>,
    pub(super) registry: Arc<Registry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.conn.id);
    }
}

/// The open connections, oldest first, and the cap on their number.
pub(super) struct Registry {
    limits: Limits,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
    last_full_warning: Mutex<Option<Instant>>,
}

impl Registry {
    pub(super) fn new(limits: Limits) -> Registry {
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
    pub(super) fn admit(&self) -> Option<Arc<Conn>> {
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
    pub(super) fn make_room(&self) -> bool {
        evict_one(&mut self.open())
    }

    pub(super) fn remove(&self, id: u64) {
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
