//! The exporter's state on disk (`--storage.path`), so that a restart, a
//! crash or an upgrade costs neither data nor budget.
//!
//! Two files, each replaced atomically with a format version and a checksum
//! (see `file`):
//! - `state`: the SIMs served with their answers and answer times, their
//!   places in the schedule, the discovery listing and what was learnt of the
//!   API (see `state`); written at the end of the first pass, at least once a
//!   minute, and at shutdown;
//! - `budget`: the requests sent within the budget's longest window (see
//!   `ledger`); written before each request goes out, so that even a process
//!   killed at once never lets the next one overspend the account's windows.
//!
//! Both say which API and account they belong to; a file of another is not
//! used. A damaged one is moved aside, and the exporter starts cold: the
//! state is worth keeping, never worth refusing to start for.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit as _, Mac as _};
use prometheus::{Gauge, IntCounter, IntGauge, Registry};
use secrecy::ExposeSecret as _;
use sha2::Sha256;

use crate::monogoto::Credentials;

pub(crate) mod file;
pub(crate) mod ledger;
pub(crate) mod state;

use file::{Disk, Opened, RealDisk};
use state::{Account, Identity};

/// The state file's name in the storage folder.
pub const STATE_FILE: &str = "state";
/// The budget ledger's name in the storage folder.
pub const BUDGET_FILE: &str = "budget";

/// The storage metrics, registered only when storage is on.
pub struct StorageMetrics {
    pub last_write_success: Gauge,
    pub last_write_duration: Gauge,
    pub write_failures: IntCounter,
    pub bytes: IntGauge,
    pub loaded_things: IntGauge,
}

impl StorageMetrics {
    pub fn new() -> Self {
        StorageMetrics {
            last_write_success: Gauge::new(
                "monogoto_storage_last_write_success_timestamp_seconds",
                "Unix time of the last successful write of the state file under --storage.path (at start: when the folder was found writable).",
            )
            .expect("valid metric"),
            last_write_duration: Gauge::new(
                "monogoto_storage_last_write_duration_seconds",
                "Time the last write of the state file took, encoding included, in seconds (off the scrape path).",
            )
            .expect("valid metric"),
            write_failures: IntCounter::new(
                "monogoto_storage_write_failures_total",
                "Writes of the state or budget file under --storage.path that failed (no space, read-only, permissions); polling goes on, and the next write tries again.",
            )
            .expect("valid metric"),
            bytes: IntGauge::new(
                "monogoto_storage_bytes",
                "Size in bytes of the state file last written.",
            )
            .expect("valid metric"),
            loaded_things: IntGauge::new(
                "monogoto_storage_loaded_things",
                "SIMs served from the state file at start (0 after a cold start).",
            )
            .expect("valid metric"),
        }
    }

    pub(crate) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.last_write_success.clone()))?;
        registry.register(Box::new(self.last_write_duration.clone()))?;
        registry.register(Box::new(self.write_failures.clone()))?;
        registry.register(Box::new(self.bytes.clone()))?;
        registry.register(Box::new(self.loaded_things.clone()))
    }
}

impl Default for StorageMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Creates the storage folder if needed and checks that a file can be
/// written and flushed in it: what a start (and `--config.check`) demands.
pub fn prepare(dir: &Path) -> Result<(), String> {
    let why = |what: &str, e: io::Error| format!("{}: cannot {what}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| why("create the folder", e))?;
    if !dir.is_dir() {
        return Err(format!("{}: not a folder", dir.display()));
    }
    let probe = dir.join(".write-check");
    RealDisk
        .write_synced(&probe, &[b"monogoto-exporter write check\n"])
        .map_err(|e| why("write a file in it", e))?;
    std::fs::remove_file(&probe).map_err(|e| why("remove a file from it", e))?;
    Ok(())
}

/// The owner of the files, as the configuration says: URL and account.
#[derive(Clone)]
pub struct Owner {
    url: String,
    account: OwnerAccount,
}

#[derive(Clone)]
enum OwnerAccount {
    User(String),
    /// The token itself stays in memory only; files get its keyed hash.
    Token(secrecy::SecretString),
}

impl Owner {
    pub fn new(url: &str, credentials: &Credentials) -> Owner {
        Owner {
            url: url.trim_end_matches('/').to_string(),
            account: match credentials {
                Credentials::Login { username, .. } => OwnerAccount::User(username.clone()),
                Credentials::Token(token) => OwnerAccount::Token(token.clone()),
            },
        }
    }

    /// The identity to write, its token hashed under `key`.
    pub(crate) fn identity(&self, key: [u8; 16]) -> Identity<'_> {
        Identity {
            url: &self.url,
            account: match &self.account {
                OwnerAccount::User(user) => Account::User(user),
                OwnerAccount::Token(token) => Account::Token {
                    key,
                    mac: token_mac(&key, token.expose_secret()),
                },
            },
        }
    }

    /// Whether a file's identity is this owner's.
    pub(crate) fn owns(&self, found: &Identity<'_>) -> bool {
        let key = match found.account {
            Account::Token { key, .. } => key,
            Account::User(_) => [0; 16],
        };
        *found == self.identity(key)
    }
}

fn token_mac(key: &[u8; 16], token: &str) -> [u8; 32] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => return [0; 32],
    };
    mac.update(token.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The storage folder of a running exporter.
pub struct Storage {
    dir: PathBuf,
    disk: Box<dyn Disk>,
    owner: Owner,
    /// The key the token's hash is written under: random per process, so that
    /// two installations with one token write different hashes.
    key: [u8; 16],
    pub metrics: Arc<StorageMetrics>,
    /// The causes of failed writes already warned of, until a write succeeds.
    warned: Mutex<HashSet<String>>,
    /// One write of the state at a time.
    writing: Mutex<()>,
    /// How long the last write of the state took, in microseconds.
    last_write_took: AtomicU64,
}

impl Storage {
    pub fn new(dir: &Path, owner: Owner, metrics: Arc<StorageMetrics>) -> Storage {
        Storage::with_disk(dir, owner, metrics, Box::new(RealDisk))
    }

    pub(crate) fn with_disk(
        dir: &Path,
        owner: Owner,
        metrics: Arc<StorageMetrics>,
        disk: Box<dyn Disk>,
    ) -> Storage {
        let mut key = [0u8; 16];
        key.iter_mut().for_each(|b| *b = fastrand::u8(..));
        Storage {
            dir: dir.to_path_buf(),
            disk,
            owner,
            key,
            metrics,
            warned: Mutex::default(),
            writing: Mutex::new(()),
            last_write_took: AtomicU64::new(0),
        }
    }

    /// How long to wait between writes of the state: as often as every
    /// `min`, but no more than a fiftieth of the time in writes, and at
    /// least every `max`.
    pub(crate) fn write_every(&self, min: Duration, max: Duration) -> Duration {
        let took = Duration::from_micros(self.last_write_took.load(Ordering::Relaxed));
        took.saturating_mul(50).clamp(min, max)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The identity written into files.
    pub(crate) fn identity(&self) -> Identity<'_> {
        self.owner.identity(self.key)
    }

    pub(crate) fn owns(&self, found: &Identity<'_>) -> bool {
        self.owner.owns(found)
    }

    /// The payload of file `name` if it is a good `kind` file, with its
    /// format version. A damaged one is warned of and moved aside.
    pub(crate) fn read(&self, name: &str, kind: &file::Kind) -> Option<(u32, Vec<u8>)> {
        let path = self.path(name);
        match file::open(&path, kind) {
            Ok(Opened::Missing) => {
                tracing::info!(path = %path.display(), "nothing saved there yet: starting cold");
                None
            }
            Ok(Opened::Found { version, payload }) => Some((version, payload)),
            Ok(Opened::Damaged(why)) => {
                self.set_aside(&path, &why);
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the saved state: starting cold");
                None
            }
        }
    }

    /// Warns that the file at `path` cannot be used, and moves it aside.
    pub(crate) fn set_aside(&self, path: &Path, why: &str) {
        match file::move_aside(path) {
            Ok(aside) => tracing::warn!(
                path = %path.display(),
                moved_to = %aside.display(),
                problem = why,
                "the saved state cannot be used: moved aside, starting cold"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                problem = why,
                error = %e,
                "the saved state cannot be used, nor moved aside: starting cold"
            ),
        }
    }

    /// Encodes the state with `encode` (given a buffer size to start with)
    /// and writes it; counts and warns of a failure. One write at a time.
    pub(crate) fn write_state(
        &self,
        encode: impl FnOnce(usize) -> Result<Vec<u8>, postcard::Error>,
    ) {
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        // The last state's size and a little: states grow slowly.
        let last = usize::try_from(self.metrics.bytes.get()).unwrap_or(0);
        let payload = match encode(last + last / 16) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the state");
                return;
            }
        };
        if let Some(bytes) = self.write(STATE_FILE, &state::KIND, state::VERSION, &payload) {
            let seconds = started.elapsed().as_secs_f64();
            self.last_write_took
                .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            self.metrics
                .bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            self.metrics.last_write_duration.set(seconds);
            self.metrics
                .last_write_success
                .set(crate::health::unix_now());
            tracing::debug!(bytes, seconds, "state written");
        }
    }

    /// Writes one file atomically; the bytes written, or none when it failed
    /// (counted, and warned of once per cause until a write succeeds).
    pub(crate) fn write(
        &self,
        name: &str,
        kind: &file::Kind,
        version: u32,
        payload: &[u8],
    ) -> Option<u64> {
        let path = self.path(name);
        match file::write_atomically(self.disk.as_ref(), &path, kind, version, payload) {
            Ok(bytes) => {
                self.warned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                Some(bytes)
            }
            Err(e) => {
                self.metrics.write_failures.inc();
                let cause = e.kind().to_string();
                let first = self
                    .warned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(cause);
                if first {
                    tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "cannot write the saved state; polling and serving go on, the next write tries again (see monogoto_storage_write_failures_total)"
                    );
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
