//! One `Config`, resolved from flags, environment, a YAML file and defaults
//! (highest precedence first), validated with errors that name the key.
//!
//! This module holds the resolved types and the defaults; the rest is one
//! concern a file: the flags (`cli`), the YAML file's schema and its loading
//! (`file`), and the resolution and its validators (`validate`). Everything
//! callers use is re-exported here, so `config::X` names it wherever it lives.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::monogoto::budget::Budget;
use crate::monogoto::{Credentials, DEFAULT_RETRIES, DEFAULT_TIMEOUT, ThingIdsFormat};
use crate::shard::Shard;

mod cli;
mod file;
mod validate;

#[cfg(test)]
mod tests;

pub use cli::{Cli, Command, DemoArgs, ExporterArgs, LONG_VERSION, SimulateArgs};

pub(crate) const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:19540";
pub(crate) const DEFAULT_TELEMETRY_PATH: &str = "/metrics";
pub(crate) const DEFAULT_URL: &str = "https://console.monogoto.io";
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_BATCH_SIZE: usize = 50;
pub(crate) const MAX_BATCH_SIZE: usize = 50;
pub(crate) const DEFAULT_CONCURRENCY: usize = 4;
pub(crate) const MAX_CONCURRENCY: usize = 64;
/// The standard plan's budget: both windows bind, the hourly one in the long run.
pub(crate) const DEFAULT_RATE_LIMIT: &str = "60/min,1000/h";
/// SUSPENDED, RETIRED and unknown SIMs are polled this often.
pub(crate) const DEFAULT_INACTIVE_INTERVAL: Duration = Duration::from_secs(3600);
pub(crate) const MAX_SHARDS: usize = 1024;
pub(crate) const DEFAULT_DISCOVER_INTERVAL: Duration = Duration::from_secs(3600);
pub(crate) const MAX_RETRIES: usize = 10;

/// The range of a duration setting, both ends included, and how to say it.
/// Every duration is bounded: a few milliseconds floods the logs and the API,
/// and years overflow the clock arithmetic of the poller and the rate limiter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DurationBounds {
    pub min: Duration,
    pub max: Duration,
    pub text: &'static str,
}

const DAY: u64 = 24 * 3600;
pub(crate) const INTERVAL_BOUNDS: DurationBounds = DurationBounds {
    min: Duration::from_secs(1),
    max: Duration::from_secs(DAY),
    text: "from 1s to 24h",
};
pub(crate) const TIMEOUT_BOUNDS: DurationBounds = DurationBounds {
    min: Duration::from_millis(100),
    max: Duration::from_secs(600),
    text: "from 100ms to 10m",
};
pub(crate) const MAX_STALE_AFTER: Duration = Duration::from_secs(30 * DAY);
/// Shorter than the refresh target is raised to it by the poller, with a
/// warning: the target depends on the fleet, known only then.
pub(crate) const STALE_AFTER_BOUNDS: DurationBounds = DurationBounds {
    min: Duration::from_secs(1),
    max: MAX_STALE_AFTER,
    text: "from 1s to 30d",
};
/// 0 (every SIM every refresh) is accepted besides.
pub(crate) const INACTIVE_INTERVAL_BOUNDS: DurationBounds = DurationBounds {
    min: Duration::from_secs(1),
    max: Duration::from_secs(30 * DAY),
    text: "from 1s to 30d, or 0",
};
pub(crate) const DISCOVER_INTERVAL_BOUNDS: DurationBounds = DurationBounds {
    min: Duration::from_secs(60),
    max: Duration::from_secs(30 * DAY),
    text: "from 1m to 30d",
};

/// Environment variables holding secrets themselves, never paths.
pub(crate) const ENV_TOKEN: &str = "MONOGOTO_TOKEN";
pub(crate) const ENV_PASSWORD: &str = "MONOGOTO_PASSWORD";
pub(crate) const ENV_WEBHOOK_TOKEN: &str = "MONOGOTO_WEBHOOK_TOKEN";
pub(crate) const DEFAULT_WEBHOOK_MAX_BODY_SIZE: usize = 1024 * 1024;

/// The secrets and overrides read from the environment outside clap, so that
/// tests can give them without touching the process environment.
#[derive(Default, Clone)]
pub struct Environment {
    pub token: Option<SecretString>,
    pub password: Option<SecretString>,
    pub webhook_token: Option<SecretString>,
    pub rust_log: Option<String>,
}

impl Environment {
    /// The secrets as they are set, blank or not: [`Config::resolve`] trims
    /// them and refuses one that is set but blank.
    pub fn from_process() -> Self {
        let secret = |name: &str| std::env::var(name).ok().map(SecretString::from);
        Environment {
            token: secret(ENV_TOKEN),
            password: secret(ENV_PASSWORD),
            webhook_token: secret(ENV_WEBHOOK_TOKEN),
            rust_log: std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen_address: String,
    pub telemetry_path: String,
    /// Exporter-toolkit web configuration (TLS, basic auth); validated at start-up.
    pub web_config_file: Option<PathBuf>,
    /// `--web.read-header-timeout` and `--web.max-connections`.
    pub web_limits: crate::web::Limits,
    /// `--web.enable-lifecycle`: `POST /-/reload` reloads the configuration.
    pub enable_lifecycle: bool,
    pub url: String,
    pub credentials: Option<Credentials>,
    /// Where the credentials came from: a reload cannot move the client to another source.
    pub credentials_source: CredentialsSource,
    /// The configured ICCIDs, those of `iccids_file` included.
    pub iccids: Vec<String>,
    /// `--monogoto.iccids-file`, watched for changes while running.
    pub iccids_file: Option<PathBuf>,
    pub discover: bool,
    pub discover_interval: Duration,
    pub rate_limit: Budget,
    pub max_body_size: usize,
    pub thing_ids_format: ThingIdsFormat,
    pub shard: Shard,
    pub poll: PollConfig,
    pub log: LogConfig,
    /// `--storage.path`: where the state is kept across restarts.
    pub storage_path: Option<PathBuf>,
    /// `POST /webhook`, when a token is configured.
    pub webhook: Option<WebhookConfig>,
    /// `--shard.peer-url-template`: where another shard's replica is, `{index}` its shard.
    pub shard_peer_url_template: Option<String>,
    /// Problems worth a warning but not a refusal, logged once logging is up.
    pub warnings: Vec<String>,
}

/// The webhook receiver's settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub token: SecretString,
    pub max_body_size: usize,
}

/// Where a secret was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// `MONOGOTO_TOKEN` or `MONOGOTO_PASSWORD`.
    Environment,
    /// Written in the YAML file itself.
    Inline,
}

/// Where the token or the password came from (none when not used).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialsSource {
    pub token: Option<SecretSource>,
    pub password: Option<SecretSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollConfig {
    pub interval: Duration,
    pub batch_size: usize,
    pub concurrency: usize,
    pub timeout: Duration,
    pub retries: u32,
    /// As configured; the poller derives the one in force from the refresh
    /// target (see `Plan`), which depends on the fleet.
    pub stale_after: Option<Duration>,
    /// Zero: every SIM every refresh.
    pub inactive_interval: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: DEFAULT_INTERVAL,
            batch_size: DEFAULT_BATCH_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            stale_after: None,
            inactive_interval: DEFAULT_INACTIVE_INTERVAL,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter directive such as `info` or `monogoto_exporter=debug`.
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration error: names the key, the offending value and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(key: &str, message: impl fmt::Display) -> Self {
        ConfigError(format!("config: {key}: {message}"))
    }

    pub fn value(key: &str, value: &str, message: impl fmt::Display) -> Self {
        ConfigError(format!("config: {key} {value:?}: {message}"))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Creates the storage folder if needed and checks that it takes a
    /// file: a start refuses (exit 2) a folder it could not keep its state in.
    pub fn check_storage(&self) -> Result<(), ConfigError> {
        match &self.storage_path {
            Some(dir) => crate::storage::prepare(dir)
                .map_err(|e| ConfigError::value("storage.path", &dir.display().to_string(), e)),
            None => Ok(()),
        }
    }
}

/// Whether the configuration must name credentials and Things (the exporter)
/// or the caller provides them (demo mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exporter,
    Demo,
}
