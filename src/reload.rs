//! Reloading the configuration while running: on SIGHUP, on `POST /-/reload`
//! (with `--web.enable-lifecycle`) and when the ICCIDs file changes on disk.
//!
//! A reload resolves the configuration again exactly as at start (flags,
//! environment, YAML file, ICCIDs file) and applies what can change while
//! polling goes on: the configured ICCIDs and the poll settings a refresh
//! reads at its start. Anything else that differs (the listen address, the
//! API URL, the credentials, the budget, the shard, ...) fails the reload with
//! an error naming it, as does an invalid file: the running configuration then
//! stays in force, whole. The web configuration file has its own reloading
//! (see [`crate::web`]).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, SecretSource};
use crate::hangup::Hangup;
use crate::health::{HealthMetrics, unix_now};
use crate::monogoto::Credentials;
use crate::poller::{Poller, Reconfigured};

/// How often the ICCIDs file is checked for changes, as the web configuration file is.
pub const WATCH_INTERVAL: Duration = crate::web::RELOAD_INTERVAL;

/// Resolves the configuration again, as at start.
pub type Resolve = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration does not resolve: a bad file, value or ICCID.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// Settings that only a restart applies differ from those in force.
    #[error(
        "cannot apply without a restart: {}; the running configuration stays in force",
        .0.join(", ")
    )]
    NeedsRestart(Vec<String>),
    #[error("reading the configuration failed: {0}")]
    Internal(String),
}

/// What a successful reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub changed: Reconfigured,
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.changed;
        if c.is_empty() {
            return f.write_str("configuration reloaded, nothing changed");
        }
        write!(
            f,
            "configuration reloaded: {} SIM(s) added, {} removed",
            c.added, c.removed
        )?;
        if !c.settings.is_empty() {
            write!(f, "; changed: {}", c.settings.join(", "))?;
        }
        Ok(())
    }
}

/// The configuration in force, and what it was read from.
struct Running {
    config: Config,
    /// The ICCIDs file as the last reload (or the start) read it.
    iccids_file: Option<Fingerprint>,
}

pub struct Reloader {
    resolve: Resolve,
    /// Held for a whole reload: two never run at once.
    running: Mutex<Running>,
    poller: Arc<Poller>,
    health: Arc<HealthMetrics>,
}

impl Reloader {
    /// `config` is in force; `resolve` gives the configuration to reload.
    pub fn new(
        config: Config,
        resolve: Resolve,
        poller: Arc<Poller>,
        health: Arc<HealthMetrics>,
    ) -> Self {
        // Taken just after the configuration read the file: an edit in the
        // milliseconds between is seen only at the next edit or SIGHUP.
        let iccids_file = config.iccids_file.as_deref().map(Fingerprint::of);
        Reloader {
            resolve,
            running: Mutex::new(Running {
                config,
                iccids_file,
            }),
            poller,
            health,
        }
    }

    /// Reloads the configuration (`trigger` says why, for the log). On any
    /// error the running configuration stays in force, whole.
    pub async fn reload(&self, trigger: &str) -> Result<Reloaded, ReloadError> {
        let mut running = self.running.lock().await;
        // The file is read after its fingerprint is taken, so that a change
        // in between is seen at the next check rather than missed.
        let path = running.config.iccids_file.clone();
        let resolve = self.resolve.clone();
        let resolved = tokio::task::spawn_blocking(move || {
            let fingerprint = path.as_deref().map(Fingerprint::of);
            (fingerprint, resolve())
        })
        .await;
        let outcome = match resolved {
            Ok((fingerprint, resolved)) => {
                running.iccids_file = fingerprint;
                match resolved {
                    Ok(new) => self.apply(&mut running, new),
                    Err(e) => Err(ReloadError::Invalid(e)),
                }
            }
            Err(e) => Err(ReloadError::Internal(e.to_string())),
        };
        self.health.config_loaded(outcome.is_ok(), unix_now());
        match &outcome {
            Ok(reloaded) => tracing::info!(
                trigger,
                added = reloaded.changed.added,
                removed = reloaded.changed.removed,
                changed = %reloaded.changed.settings.join(","),
                configured = self.poller.configured().len(),
                "configuration reloaded"
            ),
            Err(e) => tracing::error!(
                trigger,
                error = %e,
                "reloading the configuration failed; the running configuration stays in force"
            ),
        }
        outcome
    }

    fn apply(&self, running: &mut Running, new: Config) -> Result<Reloaded, ReloadError> {
        let differ = needs_restart(&running.config, &new);
        if !differ.is_empty() {
            return Err(ReloadError::NeedsRestart(differ));
        }
        for warning in &new.warnings {
            if !running.config.warnings.contains(warning) {
                tracing::warn!("{warning}");
            }
        }
        if new.iccids_file != running.config.iccids_file {
            // Watched from now on; its next check reads it once more, harmlessly.
            running.iccids_file = None;
        }
        let changed =
            self.poller
                .reconfigure(new.poll.clone(), new.iccids.clone(), new.discover_interval);
        running.config = new;
        Ok(Reloaded { changed })
    }

    /// Reloads on SIGHUP and when the ICCIDs file changes, until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut hangup = Hangup::listen(
            "the configuration reloads only when the ICCIDs file changes or on POST /-/reload",
        );
        loop {
            let trigger = tokio::select! {
                () = stop.cancelled() => return,
                () = hangup.recv() => "SIGHUP",
                () = tokio::time::sleep(WATCH_INTERVAL) => {
                    if !self.iccids_file_changed().await {
                        continue;
                    }
                    "the ICCIDs file changed"
                }
            };
            // The outcome is logged and in the metrics.
            let _ = self.reload(trigger).await;
        }
    }

    /// Whether the ICCIDs file in force reads differently from when it was last loaded.
    async fn iccids_file_changed(&self) -> bool {
        let (path, last) = {
            let running = self.running.lock().await;
            match &running.config.iccids_file {
                Some(path) => (path.clone(), running.iccids_file.clone()),
                None => return false,
            }
        };
        let previous = last.clone();
        let now =
            tokio::task::spawn_blocking(move || Fingerprint::again(&path, previous.as_ref())).await;
        match now {
            Ok(now) if last.as_ref().is_some_and(|last| now.same_content(last)) => {
                // Keep the newer reading: a file last read within RACY of its
                // write would otherwise be read and hashed at every check.
                let mut running = self.running.lock().await;
                if running
                    .iccids_file
                    .as_ref()
                    .is_some_and(|kept| kept.same_content(&now))
                {
                    running.iccids_file = Some(now);
                }
                false
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }
}

/// The settings of `new` that differ from `old` and that only a restart
/// applies, each named by its key; values that are not secret are shown.
pub(crate) fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut shown = |key: &str, before: String, after: String| {
        if before != after {
            out.push(format!("{key} (running {before:?}, now {after:?})"));
        }
    };
    shown(
        "web.listen-address",
        old.listen_address.clone(),
        new.listen_address.clone(),
    );
    shown(
        "web.telemetry-path",
        old.telemetry_path.clone(),
        new.telemetry_path.clone(),
    );
    shown(
        "web.config.file",
        display_path(old.web_config_file.as_deref()),
        display_path(new.web_config_file.as_deref()),
    );
    shown(
        "web.read-header-timeout",
        humantime::format_duration(old.web_limits.read_header_timeout).to_string(),
        humantime::format_duration(new.web_limits.read_header_timeout).to_string(),
    );
    shown(
        "web.max-connections",
        old.web_limits.max_connections.to_string(),
        new.web_limits.max_connections.to_string(),
    );
    shown("monogoto.url", old.url.clone(), new.url.clone());
    shown(
        "webhook.max-body-size",
        old.webhook
            .as_ref()
            .map_or(String::new(), |w| w.max_body_size.to_string()),
        new.webhook
            .as_ref()
            .map_or(String::new(), |w| w.max_body_size.to_string()),
    );
    shown(
        "shard.peer-url-template",
        old.shard_peer_url_template.clone().unwrap_or_default(),
        new.shard_peer_url_template.clone().unwrap_or_default(),
    );
    shown(
        "storage.path",
        display_path(old.storage_path.as_deref()),
        display_path(new.storage_path.as_deref()),
    );
    shown(
        "monogoto.discover",
        old.discover.to_string(),
        new.discover.to_string(),
    );
    shown(
        "monogoto.rate-limit",
        old.rate_limit.to_string(),
        new.rate_limit.to_string(),
    );
    shown(
        "monogoto.max-body-size",
        old.max_body_size.to_string(),
        new.max_body_size.to_string(),
    );
    shown(
        "monogoto.thing-ids-format",
        format!("{:?}", old.thing_ids_format),
        format!("{:?}", new.thing_ids_format),
    );
    shown(
        "poll.timeout",
        humantime::format_duration(old.poll.timeout).to_string(),
        humantime::format_duration(new.poll.timeout).to_string(),
    );
    shown(
        "poll.retries",
        old.poll.retries.to_string(),
        new.poll.retries.to_string(),
    );
    shown(
        "shard.index",
        old.shard.index.to_string(),
        new.shard.index.to_string(),
    );
    shown(
        "shard.count",
        old.shard.count.to_string(),
        new.shard.count.to_string(),
    );
    shown("log.level", old.log.filter.clone(), new.log.filter.clone());
    shown(
        "log.format",
        format!("{:?}", old.log.format).to_lowercase(),
        format!("{:?}", new.log.format).to_lowercase(),
    );
    out.extend(credentials_differ(old, new));
    // A rotated webhook token is a change too, named by key only.
    let webhook_token = |c: &Config| {
        c.webhook
            .as_ref()
            .map(|w| w.token.expose_secret().to_string())
    };
    if webhook_token(old) != webhook_token(new) {
        out.push("webhook.token".to_string());
    }
    out
}

/// The credential settings that differ, by key only: never a secret, and a
/// rotated token or password counts as a change (the client keeps the old one).
fn credentials_differ(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let (old_source, new_source) = (&old.credentials_source, &new.credentials_source);
    let key = |a: &Option<SecretSource>, b: &Option<SecretSource>, file: &str, value: &str| {
        if matches!(a, Some(SecretSource::File(_))) || matches!(b, Some(SecretSource::File(_))) {
            file.to_string()
        } else {
            value.to_string()
        }
    };
    let token_key = key(
        &old_source.token,
        &new_source.token,
        "monogoto.token-file",
        "monogoto.token",
    );
    let password_key = key(
        &old_source.password,
        &new_source.password,
        "monogoto.password-file",
        "monogoto.password",
    );
    match (&old.credentials, &new.credentials) {
        (Some(Credentials::Token(a)), Some(Credentials::Token(b))) => {
            if old_source.token != new_source.token || a.expose_secret() != b.expose_secret() {
                out.push(token_key);
            }
        }
        (
            Some(Credentials::Login {
                username: user_a,
                password: a,
            }),
            Some(Credentials::Login {
                username: user_b,
                password: b,
            }),
        ) => {
            if user_a != user_b {
                out.push(format!(
                    "monogoto.username (running {user_a:?}, now {user_b:?})"
                ));
            }
            if old_source.password != new_source.password || a.expose_secret() != b.expose_secret()
            {
                out.push(password_key);
            }
        }
        (None, None) => {}
        // From a token to a login or back, or credentials appearing or going.
        _ => {
            out.push(token_key);
            out.push("monogoto.username".to_string());
        }
    }
    out
}

fn display_path(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

/// What identifies the content of a file without keeping it: a SHA-256 of
/// its bytes, so that a `touch` is no change. The bytes are read again only
/// when size, modification time or inode changed, or when the file was
/// modified shortly before it was last read (as git does: a second write
/// within the clock's granularity would leave the time as it was). An
/// unreadable file is fingerprinted by its error, so that it is reported
/// once, not at every check.
#[derive(Debug, Clone)]
enum Fingerprint {
    File {
        len: u64,
        modified: Option<SystemTime>,
        inode: u64,
        read_at: SystemTime,
        sha256: [u8; 32],
    },
    Unreadable(std::io::ErrorKind),
}

/// A file modified less than this before it was read is read again at the next check.
const RACY: Duration = Duration::from_secs(2);

impl Fingerprint {
    fn of(path: &Path) -> Fingerprint {
        Fingerprint::again(path, None)
    }

    /// The fingerprint now, reusing `previous`'s hash when it still holds.
    fn again(path: &Path, previous: Option<&Fingerprint>) -> Fingerprint {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => return Fingerprint::Unreadable(e.kind()),
        };
        let (len, modified, inode) = (meta.len(), meta.modified().ok(), inode(&meta));
        if let Some(Fingerprint::File {
            len: l,
            modified: Some(m),
            inode: i,
            read_at,
            sha256,
        }) = previous
            && (*l, Some(*m), *i) == (len, modified, inode)
            && m.checked_add(RACY)
                .is_some_and(|settled| settled < *read_at)
        {
            return Fingerprint::File {
                len,
                modified,
                inode,
                read_at: *read_at,
                sha256: *sha256,
            };
        }
        let read_at = SystemTime::now();
        match std::fs::read(path) {
            Ok(bytes) => Fingerprint::File {
                len,
                modified,
                inode,
                read_at,
                sha256: Sha256::digest(&bytes).into(),
            },
            Err(e) => Fingerprint::Unreadable(e.kind()),
        }
    }

    fn same_content(&self, other: &Fingerprint) -> bool {
        match (self, other) {
            (Fingerprint::File { sha256: a, .. }, Fingerprint::File { sha256: b, .. }) => a == b,
            (Fingerprint::Unreadable(a), Fingerprint::Unreadable(b)) => a == b,
            _ => false,
        }
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Environment, Mode};
    use clap::Parser as _;
    use secrecy::SecretString;

    const A: &str = "898820000000000001";

    fn resolve(args: &[&str]) -> Config {
        let mut argv = vec!["monogoto-exporter"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("flags parse");
        Config::resolve(
            &cli.exporter,
            Environment {
                token: Some(SecretString::from("env-token-value")),
                ..Environment::default()
            },
            Mode::Exporter,
        )
        .expect("valid")
    }

    #[test]
    fn live_settings_need_no_restart() {
        let old = resolve(&["--monogoto.iccid", A]);
        let new = resolve(&[
            "--monogoto.iccid",
            "8988200000000000002",
            "--poll.interval",
            "5s",
            "--poll.batch-size",
            "3",
            "--poll.concurrency",
            "1",
            "--poll.stale-after",
            "1h",
            "--poll.inactive-interval",
            "0",
            "--monogoto.discover-interval",
            "2h",
        ]);
        assert_eq!(needs_restart(&old, &new), Vec::<String>::new());
    }

    #[test]
    fn the_others_are_named() {
        let old = resolve(&["--monogoto.iccid", A]);
        let new = resolve(&[
            "--monogoto.iccid",
            A,
            "--web.listen-address",
            "127.0.0.1:1",
            "--monogoto.url",
            "http://127.0.0.1:2",
            "--monogoto.rate-limit",
            "5/s",
            "--shard.count",
            "2",
            "--shard.index",
            "1",
            "--poll.timeout",
            "3s",
        ]);
        let differ = needs_restart(&old, &new);
        let keys: Vec<&str> = differ
            .iter()
            .map(|d| d.split(' ').next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            [
                "web.listen-address",
                "monogoto.url",
                "monogoto.rate-limit",
                "poll.timeout",
                "shard.index",
                "shard.count"
            ]
        );
        assert_eq!(
            differ[0],
            "web.listen-address (running \"0.0.0.0:19540\", now \"127.0.0.1:1\")"
        );
    }

    #[test]
    fn credentials_are_named_never_shown() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("token");
        std::fs::write(&file, "first-secret\n").expect("write");
        let path = file.to_str().expect("utf-8");
        let old = resolve(&["--monogoto.iccid", A, "--monogoto.token-file", path]);
        assert_eq!(
            needs_restart(&old, &old.clone()),
            Vec::<String>::new(),
            "same file, same token"
        );
        std::fs::write(&file, "second-secret\n").expect("write");
        let new = resolve(&["--monogoto.iccid", A, "--monogoto.token-file", path]);
        assert_eq!(needs_restart(&old, &new), ["monogoto.token-file"]);
        let env = resolve(&["--monogoto.iccid", A]);
        let differ = needs_restart(&old, &env).join(" ");
        assert_eq!(differ, "monogoto.token-file");
        assert!(!differ.contains("-secret") && !differ.contains("env-token-value"));
    }

    #[test]
    fn fingerprints_see_content_not_touches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("fleet.txt");
        std::fs::write(&file, format!("{A}\n")).expect("write");
        let first = Fingerprint::of(&file);
        std::fs::write(&file, format!("{A}\n")).expect("rewrite");
        let touched = Fingerprint::again(&file, Some(&first));
        assert!(touched.same_content(&first));
        std::fs::write(&file, "8988200000000000002\n").expect("write");
        let changed = Fingerprint::again(&file, Some(&touched));
        assert!(!changed.same_content(&first));
        std::fs::remove_file(&file).expect("remove");
        let gone = Fingerprint::again(&file, Some(&changed));
        assert!(!gone.same_content(&changed));
        assert!(gone.same_content(&Fingerprint::of(&file)), "reported once");
    }

    #[test]
    fn a_second_write_within_the_clock_granularity_is_seen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("fleet.txt");
        std::fs::write(&file, format!("{A}\n")).expect("write");
        let first = Fingerprint::of(&file);
        let modified = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .expect("mtime");
        // Same size, same inode, same time: only the content tells.
        std::fs::write(&file, "898820000000000009\n").expect("rewrite");
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(modified))
            .expect("set mtime");
        assert!(!Fingerprint::again(&file, Some(&first)).same_content(&first));
    }

    /// A file read just after it was written is read again at the next
    /// check (the clock may not show a second write); the newer reading is
    /// kept, so the check after that reuses its hash.
    #[tokio::test]
    async fn an_unchanged_file_is_not_hashed_at_every_check() {
        use crate::monogoto::{ApiMetrics, Client, ClientOptions, Credentials};
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("fleet.txt");
        std::fs::write(&file, format!("{A}\n")).expect("write");
        let config = resolve(&["--monogoto.iccids-file", file.to_str().expect("utf-8")]);
        let health = Arc::new(HealthMetrics::new());
        let client = Client::new(
            ClientOptions::new("http://127.0.0.1:9"),
            Credentials::Token(SecretString::from("t")),
            Arc::new(ApiMetrics::new()),
        )
        .expect("client");
        let poller = Arc::new(Poller::new(
            client,
            config.poll.clone(),
            config.iccids.clone(),
            false,
            Arc::new(crate::fleet::Fleet::default()),
            health.clone(),
        ));
        let again = config.clone();
        let reloader = Reloader::new(config, Arc::new(move || Ok(again.clone())), poller, health);
        let read_at = |reloader: &Reloader| {
            let running = reloader.running.try_lock().expect("idle");
            match running.iccids_file {
                Some(Fingerprint::File { read_at, .. }) => read_at,
                ref other => panic!("{other:?}"),
            }
        };
        let first = read_at(&reloader);
        assert!(!reloader.iccids_file_changed().await);
        assert!(read_at(&reloader) > first, "the newer reading is kept");
    }
}
