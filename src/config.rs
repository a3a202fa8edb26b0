//! One `Config`, resolved from flags, environment, a YAML file and defaults
//! (highest precedence first), validated with errors that name the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer};

use crate::iccid;
use crate::monogoto::budget::Budget;
use crate::monogoto::{Credentials, DEFAULT_MAX_BODY_SIZE, DEFAULT_RETRIES, ThingIdsFormat};
use crate::shard::{self, Shard};

pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:19540";
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";
pub const DEFAULT_URL: &str = "https://console.monogoto.io";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_BATCH_SIZE: usize = 50;
pub const MAX_BATCH_SIZE: usize = 50;
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const MAX_CONCURRENCY: usize = 64;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The standard plan's budget: both windows bind, the hourly one in the long run.
pub const DEFAULT_RATE_LIMIT: &str = "60/min,1000/h";
/// SUSPENDED, RETIRED and unknown SIMs are polled this often.
pub const DEFAULT_INACTIVE_INTERVAL: Duration = Duration::from_secs(3600);
pub const MAX_SHARDS: usize = 1024;
pub const DEFAULT_DISCOVER_INTERVAL: Duration = Duration::from_secs(3600);
pub const MAX_RETRIES: usize = 10;

/// The range of a duration setting, both ends included, and how to say it.
/// Every duration is bounded: a few milliseconds floods the logs and the API,
/// and years overflow the clock arithmetic of the poller and the rate limiter.
#[derive(Debug, Clone, Copy)]
pub struct DurationBounds {
    pub min: Duration,
    pub max: Duration,
    pub text: &'static str,
}

const DAY: u64 = 24 * 3600;
pub const INTERVAL_BOUNDS: DurationBounds = DurationBounds {
    min: Duration::from_secs(1),
    max: Duration::from_secs(DAY),
    text: "from 1s to 24h",
};
pub const TIMEOUT_BOUNDS: DurationBounds = DurationBounds {
    min: Duration::from_millis(100),
    max: Duration::from_secs(600),
    text: "from 100ms to 10m",
};
pub const MAX_STALE_AFTER: Duration = Duration::from_secs(30 * DAY);
/// Shorter than the refresh target is raised to it by the poller, with a
/// warning: the target depends on the fleet, known only then.
pub const STALE_AFTER_BOUNDS: DurationBounds = DurationBounds {
    min: Duration::from_secs(1),
    max: MAX_STALE_AFTER,
    text: "from 1s to 30d",
};
/// 0 (every SIM every refresh) is accepted besides.
pub const INACTIVE_INTERVAL_BOUNDS: DurationBounds = DurationBounds {
    min: Duration::from_secs(1),
    max: Duration::from_secs(30 * DAY),
    text: "from 1s to 30d, or 0",
};
pub const DISCOVER_INTERVAL_BOUNDS: DurationBounds = DurationBounds {
    min: Duration::from_secs(60),
    max: Duration::from_secs(30 * DAY),
    text: "from 1m to 30d",
};
/// The longest period of a `monogoto.rate-limit` window (`N/PERIOD`).
pub const MAX_RATE_LIMIT_PERIOD: Duration = crate::monogoto::budget::MAX_WINDOW;
/// Characters a telemetry path may not hold: the router would read `{x}`,
/// `*rest` and `:x` as parameters or wildcards (or refuse them at start-up),
/// and a query or fragment never reaches a route.
const TELEMETRY_PATH_FORBIDDEN: &[char] = &['{', '}', '*', ':', '?', '#'];

/// Environment variables holding secrets themselves, never paths.
pub const ENV_TOKEN: &str = "MONOGOTO_TOKEN";
pub const ENV_PASSWORD: &str = "MONOGOTO_PASSWORD";

/// What `--version` prints after the name: the version, and the git revision
/// and rustc version that build.rs recorded ("unknown" when it could not tell).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("MONOGOTO_EXPORTER_REVISION"),
    ", rustc ",
    env!("MONOGOTO_EXPORTER_RUSTC"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "monogoto-exporter",
    version = LONG_VERSION,
    about = "Prometheus exporter for the connectivity of Monogoto IoT SIM fleets",
    after_help = "Secrets are never flags: the token comes from MONOGOTO_TOKEN or --monogoto.token-file, \
                  the password from MONOGOTO_PASSWORD or --monogoto.password-file."
)]
pub struct Cli {
    /// Resolve the configuration as a start would (flags, environment, files), print a summary
    /// and exit: 0 if it is valid, 2 with every problem if not. Never contacts the API.
    #[arg(long = "config.check")]
    pub config_check: bool,
    #[command(flatten)]
    pub exporter: ExporterArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the exporter against a built-in simulated fleet: no account, no network.
    Demo(Box<DemoArgs>),
    /// Run only the simulated Monogoto API.
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of simulated Things.
    #[arg(long, default_value_t = 200)]
    pub things: usize,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub exporter: ExporterArgs,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Address the simulated API listens on.
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: String,
    /// Number of simulated Things.
    #[arg(long, default_value_t = 100)]
    pub things: usize,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Answer at most this many Things per /thing/status page.
    #[arg(long = "page-cap")]
    pub page_cap: Option<usize>,
    /// Length of one connect/disconnect epoch of a simulated Thing.
    #[arg(long = "flap-period", default_value = "120s", value_parser = humantime::parse_duration)]
    pub flap_period: Duration,
    /// Write the trailing F of ICCIDs lower-case in answers, as an API may.
    #[arg(long = "lowercase-iccids")]
    pub lowercase_iccids: bool,
    /// Lifetime of the tokens logins get (their JWT exp), in whole seconds; then they answer 401.
    #[arg(long = "token-lifetime", default_value = "4h", value_parser = humantime::parse_duration)]
    pub token_lifetime: Duration,
    /// Inject a fault into the API (repeatable), e.g. status=503,count=5,endpoint=status.
    #[arg(
        long = "fault",
        value_name = "SPEC",
        long_help = format!(
            "Inject a fault into the API (repeatable; rules apply in the order given).\n\n{}",
            crate::simulator::FAULT_SPEC_HELP
        )
    )]
    pub faults: Vec<crate::simulator::FaultRule>,
    /// Enforce a request budget as Monogoto does (429 with Retry-After and X-RateLimit-*), e.g. 60/min,1000/h; 0 for none.
    #[arg(
        long = "rate-limit",
        value_name = "N/PERIOD[,N/PERIOD...]",
        default_value = "0"
    )]
    pub rate_limit: Budget,
    /// Which form of several ThingIds the status endpoint understands.
    #[arg(long = "thing-ids-format", value_enum, default_value = "both")]
    pub thing_ids_format: crate::simulator::ThingIdsForm,
    /// Log level of the simulator.
    #[arg(long = "log.level", default_value = "info")]
    pub log_level: String,
}

/// The exporter's flags. Everything is optional here so that a value from the
/// YAML file can fill what neither a flag nor the environment gave.
#[derive(Args, Debug, Default, Clone)]
pub struct ExporterArgs {
    /// YAML configuration file; flags and environment override it.
    #[arg(
        long = "config.file",
        env = "MONOGOTO_EXPORTER_CONFIG",
        value_name = "PATH"
    )]
    pub config_file: Option<PathBuf>,
    /// Address to serve metrics on [default: 0.0.0.0:19540].
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Path under which metrics are served [default: /metrics].
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    pub telemetry_path: Option<String>,
    /// TLS, client certificates and basic auth, in the exporter-toolkit format (as node_exporter).
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,
    /// A connection must send a whole request header within this long of connecting (TLS handshake included) or of a later request's first byte, 1s to 10m [default: 10s].
    #[arg(long = "web.read-header-timeout", value_name = "DURATION")]
    pub read_header_timeout: Option<String>,
    /// Client connections open at once; at the cap the oldest without a request in flight is closed [default: 512].
    #[arg(long = "web.max-connections", value_name = "N")]
    pub max_connections: Option<String>,
    /// Answer POST and PUT on /-/reload by reloading the configuration, as SIGHUP does (off: 403, as in Prometheus).
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// Base URL of the Monogoto console API [default: https://console.monogoto.io].
    #[arg(long = "monogoto.url", env = "MONOGOTO_URL", value_name = "URL")]
    pub url: Option<String>,
    /// File holding the API token (or set MONOGOTO_TOKEN to the token itself).
    #[arg(long = "monogoto.token-file", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// User name to log in with (POST /Auth).
    #[arg(
        long = "monogoto.username",
        env = "MONOGOTO_USERNAME",
        value_name = "NAME"
    )]
    pub username: Option<String>,
    /// File holding the password (or set MONOGOTO_PASSWORD to the password itself).
    #[arg(long = "monogoto.password-file", value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// ICCID to export (repeatable).
    #[arg(long = "monogoto.iccid", value_name = "ICCID")]
    pub iccids: Vec<String>,
    /// File with one ICCID a line; `#` starts a comment, blank lines are ignored.
    #[arg(long = "monogoto.iccids-file", value_name = "PATH")]
    pub iccids_file: Option<PathBuf>,
    /// Export every Thing of the account, listed with GET /things.
    #[arg(
        long = "monogoto.discover",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub discover: Option<bool>,
    /// How often discovery lists the Things again; refreshes use the list in between [default: 1h].
    #[arg(long = "monogoto.discover-interval", value_name = "DURATION")]
    pub discover_interval: Option<String>,
    /// The account's request budget, windows enforced together and shared by every request: 60/min,1000/h, 300/min,10000/h, 5/s, 20/10s, or 0 for none [default: 60/min,1000/h].
    #[arg(long = "monogoto.rate-limit", value_name = "N/PERIOD[,N/PERIOD...]")]
    pub rate_limit: Option<String>,
    /// Answers larger than this are refused, not buffered: 16MiB, 512KiB, bytes [default: 16MiB].
    #[arg(long = "monogoto.max-body-size", value_name = "SIZE")]
    pub max_body_size: Option<String>,
    /// How several ThingIds go in one status request: comma (ThingIds=a,b), repeat (ThingIds=a&ThingIds=b), or auto (found from the API's answers) [default: auto].
    #[arg(long = "monogoto.thing-ids-format", value_name = "FORMAT")]
    pub thing_ids_format: Option<String>,
    /// Time between refreshes, e.g. 30s, 5m [default: 60s].
    #[arg(long = "poll.interval", value_name = "DURATION")]
    pub interval: Option<String>,
    /// Things per status request, 1 to 50 [default: 50].
    #[arg(long = "poll.batch-size", value_name = "N")]
    pub batch_size: Option<String>,
    /// Status requests in flight at once [default: 4].
    #[arg(long = "poll.concurrency", value_name = "N")]
    pub concurrency: Option<String>,
    /// Timeout of one HTTP request to the API [default: 10s].
    #[arg(long = "poll.timeout", value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Retries of a request after a timeout, connection error, 429 or 5xx [default: 3].
    #[arg(long = "poll.retries", value_name = "N")]
    pub retries: Option<String>,
    /// A Thing asked for but not answered for this long leaves /metrics; raised to the refresh target if shorter [default: 3 x the refresh target].
    #[arg(long = "poll.stale-after", value_name = "DURATION")]
    pub stale_after: Option<String>,
    /// SUSPENDED, RETIRED and unknown SIMs are polled once per this, the others every refresh; 0 polls every SIM every refresh [default: 1h].
    #[arg(long = "poll.inactive-interval", value_name = "DURATION")]
    pub inactive_interval: Option<String>,
    /// Number of exporter replicas the fleet is split across [default: 1].
    #[arg(long = "shard.count", env = "MONOGOTO_SHARD_COUNT", value_name = "N")]
    pub shard_count: Option<String>,
    /// This replica's shard, 0 to count-1; a name ending in -ORDINAL (a StatefulSet pod name) works too [default: 0].
    #[arg(long = "shard.index", env = "MONOGOTO_SHARD_INDEX", value_name = "I")]
    pub shard_index: Option<String>,
    /// Log level or tracing filter (RUST_LOG is honoured when this is not given) [default: info].
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long = "log.format", value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// The secrets and overrides read from the environment outside clap, so that
/// tests can give them without touching the process environment.
#[derive(Default)]
pub struct Environment {
    pub token: Option<SecretString>,
    pub password: Option<SecretString>,
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
    /// Problems worth a warning but not a refusal, logged once logging is up.
    pub warnings: Vec<String>,
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

/// The YAML file: the same keys as the flags, nested by their prefix.
/// Keys accept `snake_case` and the flags' `kebab-case`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    web: WebFile,
    #[serde(default)]
    monogoto: MonogotoFile,
    #[serde(default)]
    poll: PollFile,
    #[serde(default)]
    log: LogFile,
    #[serde(default)]
    shard: ShardFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ShardFile {
    #[serde(default, deserialize_with = "scalar")]
    index: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    count: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WebFile {
    #[serde(default, alias = "listen-address", deserialize_with = "scalar")]
    listen_address: Option<String>,
    #[serde(default, alias = "telemetry-path", deserialize_with = "scalar")]
    telemetry_path: Option<String>,
    #[serde(default, alias = "config-file")]
    config_file: Option<PathBuf>,
    #[serde(default, alias = "read-header-timeout", deserialize_with = "scalar")]
    read_header_timeout: Option<String>,
    #[serde(default, alias = "max-connections", deserialize_with = "scalar")]
    max_connections: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MonogotoFile {
    #[serde(default, deserialize_with = "scalar")]
    url: Option<String>,
    #[serde(default, alias = "token-file")]
    token_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "scalar")]
    token: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    username: Option<String>,
    #[serde(default, alias = "password-file")]
    password_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "scalar")]
    password: Option<String>,
    #[serde(default, alias = "iccid", deserialize_with = "scalar_list")]
    iccids: Option<Vec<String>>,
    #[serde(default, alias = "iccids-file")]
    iccids_file: Option<PathBuf>,
    #[serde(default)]
    discover: Option<bool>,
    #[serde(default, alias = "discover-interval", deserialize_with = "scalar")]
    discover_interval: Option<String>,
    #[serde(default, alias = "rate-limit", deserialize_with = "scalar")]
    rate_limit: Option<String>,
    #[serde(default, alias = "max-body-size", deserialize_with = "scalar")]
    max_body_size: Option<String>,
    #[serde(default, alias = "thing-ids-format", deserialize_with = "scalar")]
    thing_ids_format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PollFile {
    #[serde(default, deserialize_with = "scalar")]
    interval: Option<String>,
    #[serde(default, alias = "batch-size", deserialize_with = "scalar")]
    batch_size: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    concurrency: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    timeout: Option<String>,
    #[serde(default, alias = "stale-after", deserialize_with = "scalar")]
    stale_after: Option<String>,
    #[serde(default, alias = "inactive-interval", deserialize_with = "scalar")]
    inactive_interval: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    retries: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogFile {
    #[serde(default, deserialize_with = "scalar")]
    level: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    format: Option<String>,
}

/// YAML scalars of any type as text, so `batch_size: 50` and `batch_size: "50"`
/// both reach the one validation that the flags go through.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(Scalar::into_text))
}

fn scalar_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Scalar),
        Many(Vec<Scalar>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s.into_text()]),
        Some(OneOrMany::Many(v)) => Some(v.into_iter().map(Scalar::into_text).collect()),
    })
}

/// Whether the configuration must name credentials and Things (the exporter)
/// or the caller provides them (demo mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exporter,
    Demo,
}

impl Config {
    /// Resolves flags (already merged with their environment variables by clap),
    /// the secret environment, the YAML file and defaults into one validated Config.
    pub fn resolve(
        args: &ExporterArgs,
        env: Environment,
        mode: Mode,
    ) -> Result<Config, ConfigError> {
        let file = match &args.config_file {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let FileConfig {
            web,
            monogoto,
            poll,
            log,
            shard,
        } = file;

        let listen_address =
            validate_listen_address(args.listen_address.clone().or(web.listen_address))?;
        let telemetry_path =
            validate_telemetry_path(args.telemetry_path.clone().or(web.telemetry_path))?;
        let web_config_file = args.web_config_file.clone().or(web.config_file);
        if let Some(path) = &web_config_file {
            crate::web::WebConfig::load(path).map_err(|e| {
                ConfigError::value("web.config.file", &path.display().to_string(), e)
            })?;
        }
        let web_limits = resolve_web_limits(
            args.read_header_timeout.clone().or(web.read_header_timeout),
            args.max_connections.clone().or(web.max_connections),
        )?;
        let url = validate_url(args.url.clone().or(monogoto.url.clone()))?;

        let poll = resolve_poll(args, poll)?;

        let log_format = match args.log_format.clone().or(log.format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::value(
                    "log.format",
                    other,
                    "must be \"text\" or \"json\"",
                ));
            }
        };
        let filter = match args.log_level.clone() {
            Some(level) => level,
            None => env
                .rust_log
                .clone()
                .or(log.level)
                .unwrap_or_else(|| "info".to_string()),
        };
        let filter = validate_log_filter(filter)?;

        let (credentials, credentials_source) = resolve_credentials(args, &env, &monogoto)?;

        let mut iccids = Vec::new();
        let flag_iccids = if args.iccids.is_empty() {
            monogoto.iccids.clone().unwrap_or_default()
        } else {
            args.iccids.clone()
        };
        for raw in &flag_iccids {
            iccids.push(
                iccid::normalize(raw)
                    .map_err(|why| ConfigError::value("monogoto.iccid", raw, why))?,
            );
        }
        let iccids_file = args.iccids_file.clone().or(monogoto.iccids_file.clone());
        if let Some(path) = &iccids_file {
            iccids.extend(read_iccids_file(path)?);
        }
        dedup_keep_order(&mut iccids);
        let discover = args.discover.or(monogoto.discover).unwrap_or(false);
        let discover_interval = match args
            .discover_interval
            .clone()
            .or(monogoto.discover_interval.clone())
        {
            Some(v) => parse_duration("monogoto.discover-interval", &v, DISCOVER_INTERVAL_BOUNDS)?,
            None => DEFAULT_DISCOVER_INTERVAL,
        };
        let rate_limit = validate_rate_limit(
            &args
                .rate_limit
                .clone()
                .or(monogoto.rate_limit.clone())
                .unwrap_or_else(|| DEFAULT_RATE_LIMIT.to_string()),
        )?;
        let max_body_size = match args.max_body_size.clone().or(monogoto.max_body_size.clone()) {
            Some(v) => parse_size(&v).ok_or_else(|| {
                ConfigError::value("monogoto.max-body-size", &v, "must be a size such as \"16MiB\", \"512KiB\" or a number of bytes, at least 1KiB")
            })?,
            None => DEFAULT_MAX_BODY_SIZE,
        };
        let thing_ids_format = match args
            .thing_ids_format
            .clone()
            .or(monogoto.thing_ids_format.clone())
        {
            Some(v) => v
                .parse()
                .map_err(|why| ConfigError::value("monogoto.thing-ids-format", &v, why))?,
            None => ThingIdsFormat::Auto,
        };
        let shard = resolve_shard(args, shard)?;
        let mut warnings = Vec::new();
        for (key, path) in [
            (
                "monogoto.token-file",
                args.token_file.as_ref().or(monogoto.token_file.as_ref()),
            ),
            (
                "monogoto.password-file",
                args.password_file
                    .as_ref()
                    .or(monogoto.password_file.as_ref()),
            ),
        ] {
            if let Some(path) = path {
                warnings.extend(world_readable_warning(key, path));
            }
        }
        if let Some(path) = &args.config_file
            && (monogoto.token.is_some() || monogoto.password.is_some())
        {
            warnings.extend(world_readable_warning("config.file", path));
        }

        if mode == Mode::Exporter {
            if credentials.is_none() {
                return Err(ConfigError::new(
                    "monogoto.token",
                    format!(
                        "no credentials: set {ENV_TOKEN} or --monogoto.token-file, or --monogoto.username with {ENV_PASSWORD} or --monogoto.password-file"
                    ),
                ));
            }
            if iccids.is_empty() && !discover {
                return Err(ConfigError::new(
                    "monogoto.iccid",
                    "no Things to export: give --monogoto.iccid, --monogoto.iccids-file or --monogoto.discover",
                ));
            }
        }

        Ok(Config {
            listen_address,
            telemetry_path,
            web_config_file,
            web_limits,
            enable_lifecycle: args.enable_lifecycle,
            url,
            credentials,
            credentials_source,
            iccids,
            iccids_file,
            discover,
            discover_interval,
            rate_limit,
            max_body_size,
            thing_ids_format,
            shard,
            poll,
            log: LogConfig {
                filter,
                format: log_format,
            },
            warnings,
        })
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::value("config.file", &shown, format!("cannot read: {e}")))?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml_ng::from_str(&text)
        .map_err(|e| ConfigError::value("config.file", &shown, format!("invalid YAML: {e}")))
}

fn resolve_poll(args: &ExporterArgs, file: PollFile) -> Result<PollConfig, ConfigError> {
    let interval = match args.interval.clone().or(file.interval) {
        Some(v) => parse_duration("poll.interval", &v, INTERVAL_BOUNDS)?,
        None => DEFAULT_INTERVAL,
    };
    let batch_size = match args.batch_size.clone().or(file.batch_size) {
        Some(v) => parse_count("poll.batch-size", &v, 1, MAX_BATCH_SIZE)?,
        None => DEFAULT_BATCH_SIZE,
    };
    let concurrency = match args.concurrency.clone().or(file.concurrency) {
        Some(v) => parse_count("poll.concurrency", &v, 1, MAX_CONCURRENCY)?,
        None => DEFAULT_CONCURRENCY,
    };
    let timeout = match args.timeout.clone().or(file.timeout) {
        Some(v) => parse_duration("poll.timeout", &v, TIMEOUT_BOUNDS)?,
        None => DEFAULT_TIMEOUT,
    };
    let retries = match args.retries.clone().or(file.retries) {
        Some(v) => parse_count("poll.retries", &v, 0, MAX_RETRIES)? as u32,
        None => DEFAULT_RETRIES,
    };
    // Shorter than the refresh target is raised to it by the poller, with a
    // warning: the target depends on the fleet, which is known only then.
    let stale_after = match args.stale_after.clone().or(file.stale_after) {
        Some(v) => Some(parse_duration("poll.stale-after", &v, STALE_AFTER_BOUNDS)?),
        None => None,
    };
    let inactive_interval = match args.inactive_interval.clone().or(file.inactive_interval) {
        Some(v) if v.trim() == "0" => Duration::ZERO,
        Some(v) => parse_duration("poll.inactive-interval", &v, INACTIVE_INTERVAL_BOUNDS)?,
        None => DEFAULT_INACTIVE_INTERVAL,
    };
    Ok(PollConfig {
        interval,
        batch_size,
        concurrency,
        timeout,
        retries,
        stale_after,
        inactive_interval,
    })
}

fn parse_duration(key: &str, value: &str, bounds: DurationBounds) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(value.trim())
        .map_err(|_| ConfigError::value(key, value, "invalid duration (try \"60s\" or \"5m\")"))?;
    if d.is_zero() {
        return Err(ConfigError::value(key, value, "must be greater than zero"));
    }
    if d < bounds.min || d > bounds.max {
        return Err(ConfigError::value(
            key,
            value,
            format!("must be {}", bounds.text),
        ));
    }
    Ok(d)
}

/// `monogoto.rate-limit`: parsed, and its period bounded, since a period of
/// years overflows the limiter's clock arithmetic. A hook of its own so that
/// the rate limiter's own parsing can change without touching the rest.
/// The budget's windows; each period at most [`MAX_RATE_LIMIT_PERIOD`], so
/// that the limiter's arithmetic on it cannot overflow.
fn validate_rate_limit(value: &str) -> Result<Budget, ConfigError> {
    value
        .parse::<Budget>()
        .map_err(|why| ConfigError::value("monogoto.rate-limit", value, why))
}

fn parse_count(key: &str, value: &str, min: usize, max: usize) -> Result<usize, ConfigError> {
    match value.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::value(
            key,
            value,
            format!("must be a whole number from {min} to {max}"),
        )),
    }
}

fn resolve_shard(args: &ExporterArgs, file: ShardFile) -> Result<Shard, ConfigError> {
    let count = match args.shard_count.clone().or(file.count) {
        Some(v) => parse_count("shard.count", &v, 1, MAX_SHARDS)? as u64,
        None => 1,
    };
    let index = match args.shard_index.clone().or(file.index) {
        Some(v) => {
            let index = shard::parse_index(&v).ok_or_else(|| {
                ConfigError::value(
                    "shard.index",
                    &v,
                    "must be a number or a name ending in -NUMBER (a StatefulSet pod name)",
                )
            })?;
            if index >= count {
                return Err(ConfigError::value(
                    "shard.index",
                    &v,
                    format!("must be less than shard.count ({count})"),
                ));
            }
            index
        }
        None => 0,
    };
    Ok(Shard { index, count })
}

/// A byte size: a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB).
pub fn parse_size(value: &str) -> Option<usize> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "kib" => 1024.0,
        "mb" | "m" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "gb" | "g" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 1024.0 && bytes <= usize::MAX as f64).then_some(bytes as usize)
}

/// A file holding a secret that every local user can read deserves a warning.
fn world_readable_warning(key: &str, path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o004 != 0).then(|| {
            format!(
                "{key} {:?} holds a secret and is readable by every user (mode {:o}); run chmod o-r on it",
                path.display().to_string(),
                mode & 0o777
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (key, path);
        None
    }
}

fn validate_listen_address(value: Option<String>) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok(DEFAULT_LISTEN_ADDRESS.to_string());
    };
    // ":19540" is the Go exporters' spelling of "every interface".
    let addr = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.clone()
    };
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(ConfigError::value(
            "web.listen-address",
            &value,
            "must be HOST:PORT, e.g. \"0.0.0.0:19540\" or \":19540\"",
        ));
    }
    Ok(addr)
}

fn resolve_web_limits(
    read_header_timeout: Option<String>,
    max_connections: Option<String>,
) -> Result<crate::web::Limits, ConfigError> {
    use crate::web::connections::{
        MAX_MAX_CONNECTIONS, MAX_READ_HEADER_TIMEOUT, MIN_READ_HEADER_TIMEOUT,
    };
    let mut limits = crate::web::Limits::default();
    if let Some(v) = read_header_timeout {
        const KEY: &str = "web.read-header-timeout";
        limits.read_header_timeout = parse_duration(
            KEY,
            &v,
            DurationBounds {
                min: MIN_READ_HEADER_TIMEOUT,
                max: MAX_READ_HEADER_TIMEOUT,
                text: "from 1s to 10m",
            },
        )?;
    }
    if let Some(v) = max_connections {
        limits.max_connections = parse_count("web.max-connections", &v, 1, MAX_MAX_CONNECTIONS)?;
    }
    Ok(limits)
}

fn validate_telemetry_path(value: Option<String>) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok(DEFAULT_TELEMETRY_PATH.to_string());
    };
    if !value.starts_with('/') || value.contains(char::is_whitespace) {
        return Err(ConfigError::value(
            "web.telemetry-path",
            &value,
            "must be a path starting with \"/\"",
        ));
    }
    if value.contains(TELEMETRY_PATH_FORBIDDEN) {
        return Err(ConfigError::value(
            "web.telemetry-path",
            &value,
            "must be a plain path: {, }, *, :, ? and # are not allowed",
        ));
    }
    if ["/", "/healthz", "/readyz", "/-/reload"].contains(&value.as_str()) {
        return Err(ConfigError::value(
            "web.telemetry-path",
            &value,
            "is taken by the landing page, a probe or /-/reload; choose another, e.g. \"/metrics\"",
        ));
    }
    Ok(value)
}

fn validate_url(value: Option<String>) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok(DEFAULT_URL.to_string());
    };
    let parsed = reqwest::Url::parse(value.trim())
        .map_err(|e| ConfigError::value("monogoto.url", &value, format!("invalid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ConfigError::value(
            "monogoto.url",
            &value,
            "must be an http:// or https:// URL with a host",
        ));
    }
    if parsed.fragment().is_some() {
        // Never sent, and every request path would be appended after it.
        return Err(ConfigError::value(
            "monogoto.url",
            &redact_url(&parsed),
            "must not carry a #fragment",
        ));
    }
    if parsed.query().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        // Credentials in a URL would end up in logs and errors.
        return Err(ConfigError::value(
            "monogoto.url",
            &redact_url(&parsed),
            "must not carry a query or credentials; use the token or password settings",
        ));
    }
    Ok(value.trim().trim_end_matches('/').to_string())
}

/// The URL without what may be secret (credentials, query) or is refused.
fn redact_url(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    )
}

fn validate_log_filter(filter: String) -> Result<String, ConfigError> {
    tracing_subscriber::EnvFilter::try_new(&filter).map_err(|_| {
        ConfigError::value(
            "log.level",
            &filter,
            "must be error, warn, info, debug or trace",
        )
    })?;
    Ok(filter)
}

fn resolve_credentials(
    args: &ExporterArgs,
    env: &Environment,
    file: &MonogotoFile,
) -> Result<(Option<Credentials>, CredentialsSource), ConfigError> {
    let token = if let Some(path) = &args.token_file {
        Some((
            read_secret_file("monogoto.token-file", path)?,
            SecretSource::File(path.clone()),
        ))
    } else if let Some(token) = &env.token {
        Some((
            env_secret("monogoto.token", ENV_TOKEN, token)?,
            SecretSource::Environment,
        ))
    } else if let Some(path) = &file.token_file {
        Some((
            read_secret_file("monogoto.token-file", path)?,
            SecretSource::File(path.clone()),
        ))
    } else {
        file.token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| (SecretString::from(t.to_string()), SecretSource::Inline))
    };
    if let Some((token, source)) = token {
        // Sent as a header: a line break inside would fail every request.
        if token.expose_secret().chars().any(|c| c.is_ascii_control()) {
            return Err(ConfigError::new(
                "monogoto.token",
                "contains a control character (a line break?) that an HTTP header cannot carry",
            ));
        }
        let source = CredentialsSource {
            token: Some(source),
            password: None,
        };
        return Ok((Some(Credentials::Token(token)), source));
    }

    let username = args
        .username
        .clone()
        .or(file.username.clone())
        .filter(|u| !u.is_empty());
    let password = if let Some(path) = &args.password_file {
        Some((
            read_secret_file("monogoto.password-file", path)?,
            SecretSource::File(path.clone()),
        ))
    } else if let Some(password) = &env.password {
        Some((
            env_secret("monogoto.password", ENV_PASSWORD, password)?,
            SecretSource::Environment,
        ))
    } else if let Some(path) = &file.password_file {
        Some((
            read_secret_file("monogoto.password-file", path)?,
            SecretSource::File(path.clone()),
        ))
    } else {
        file.password
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| (SecretString::from(p.to_string()), SecretSource::Inline))
    };
    match (username, password) {
        (Some(username), Some((password, source))) => Ok((
            Some(Credentials::Login { username, password }),
            CredentialsSource {
                token: None,
                password: Some(source),
            },
        )),
        (Some(_), None) => Err(ConfigError::new(
            "monogoto.password",
            format!(
                "monogoto.username is set but no password: set {ENV_PASSWORD} or --monogoto.password-file"
            ),
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "monogoto.username",
            "a password is set but no user name: set --monogoto.username or MONOGOTO_USERNAME",
        )),
        (None, None) => Ok((None, CredentialsSource::default())),
    }
}

/// A secret from the environment, trimmed as one from a file is: a Kubernetes
/// Secret or a shell `$(cat token)` brings a trailing newline along.
fn env_secret(key: &str, var: &str, value: &SecretString) -> Result<SecretString, ConfigError> {
    let secret = value.expose_secret().trim();
    if secret.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{var} is set but empty; give it a value or unset it"),
        ));
    }
    Ok(SecretString::from(secret.to_string()))
}

fn read_secret_file(key: &str, path: &Path) -> Result<SecretString, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::value(key, &shown, format!("cannot read: {e}")))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(ConfigError::value(key, &shown, "file is empty"));
    }
    Ok(SecretString::from(secret.to_string()))
}

/// Reads ICCIDs one a line; `#` starts a comment; blank lines are ignored.
pub fn read_iccids_file(path: &Path) -> Result<Vec<String>, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::value("monogoto.iccids-file", &shown, format!("cannot read: {e}"))
    })?;
    parse_iccids(&text).map_err(|(line, value, why)| {
        ConfigError::new(
            "monogoto.iccids-file",
            format!("{shown:?} line {line}: {value:?} is {why}"),
        )
    })
}

/// The body of an ICCIDs file; on error, the 1-based line, its value and why.
pub fn parse_iccids(text: &str) -> Result<Vec<String>, (usize, String, &'static str)> {
    // Editors on Windows start UTF-8 files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let value = line.split('#').next().unwrap_or("").trim();
        if value.is_empty() {
            continue;
        }
        out.push(iccid::normalize(value).map_err(|why| (index + 1, value.to_string(), why))?);
    }
    Ok(out)
}

fn dedup_keep_order(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|i| seen.insert(i.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::io::Write;

    const A: &str = "898820000000000001";
    const B: &str = "8988200000000000002";

    fn parse(args: &[&str]) -> ExporterArgs {
        let mut argv = vec!["monogoto-exporter"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect("test flags parse")
            .exporter
    }

    fn token_env() -> Environment {
        Environment {
            token: Some(SecretString::from("tok")),
            ..Environment::default()
        }
    }

    fn yaml(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write temp file");
        f
    }

    fn resolve(args: &[&str]) -> Result<Config, ConfigError> {
        Config::resolve(&parse(args), token_env(), Mode::Exporter)
    }

    /// The error of a configuration file holding `text` (with one ICCID given as a flag).
    fn yaml_error(text: &str) -> String {
        let f = yaml(text);
        error(&[
            "--config.file",
            f.path().to_str().expect("utf-8"),
            "--monogoto.iccid",
            A,
        ])
    }

    fn error(args: &[&str]) -> String {
        resolve(args)
            .expect_err("config must be rejected")
            .to_string()
    }

    #[test]
    fn defaults() {
        let c = resolve(&["--monogoto.iccid", A]).expect("valid");
        assert_eq!(c.listen_address, DEFAULT_LISTEN_ADDRESS);
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.url, "https://console.monogoto.io");
        assert_eq!(c.poll, PollConfig::default());
        assert_eq!(c.poll.stale_after, None, "derived from the refresh target");
        assert_eq!(c.rate_limit.to_string(), "60/min,1000/h");
        assert_eq!(c.poll.inactive_interval, Duration::from_secs(3600));
        assert_eq!(
            c.log,
            LogConfig {
                filter: "info".into(),
                format: LogFormat::Text
            }
        );
        assert!(!c.discover);
        assert!(matches!(c.credentials, Some(Credentials::Token(_))));
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let f = yaml(
            "web:\n  listen_address: 127.0.0.1:1234\n  telemetry-path: /m\n\
             monogoto:\n  url: http://127.0.0.1:9/\n  iccids: [\"898820000000000001\"]\n  discover: true\n\
             poll:\n  interval: 30s\n  batch_size: 20\n  concurrency: 2\n  timeout: 5s\n\
             log:\n  level: debug\n  format: json\n",
        );
        let path = f.path().to_str().expect("utf-8 path");
        let c = resolve(&["--config.file", path]).expect("valid");
        assert_eq!(c.listen_address, "127.0.0.1:1234");
        assert_eq!(c.telemetry_path, "/m");
        assert_eq!(c.url, "http://127.0.0.1:9");
        assert_eq!(c.iccids, vec![A.to_string()]);
        assert!(c.discover);
        assert_eq!(c.poll.interval, Duration::from_secs(30));
        assert_eq!(c.poll.stale_after, None);
        assert_eq!(c.poll.batch_size, 20);
        assert_eq!(c.poll.concurrency, 2);
        assert_eq!(c.poll.timeout, Duration::from_secs(5));
        assert_eq!(c.log.filter, "debug");
        assert_eq!(c.log.format, LogFormat::Json);

        let c = resolve(&[
            "--config.file",
            path,
            "--poll.interval",
            "2m",
            "--poll.batch-size",
            "7",
            "--monogoto.iccid",
            B,
            "--monogoto.discover=false",
            "--log.format",
            "text",
        ])
        .expect("valid");
        assert_eq!(c.poll.interval, Duration::from_secs(120));
        assert_eq!(c.poll.stale_after, None);
        assert_eq!(c.poll.batch_size, 7);
        assert_eq!(c.iccids, vec![B.to_string()]);
        assert!(!c.discover);
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(
            c.poll.concurrency, 2,
            "file value survives where no flag is given"
        );
    }

    #[test]
    fn environment_overrides_file_secrets_and_log_level() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token_path = dir.path().join("token");
        std::fs::write(&token_path, "from-file\n").expect("write");
        let f = yaml(&format!(
            "monogoto:\n  token_file: {}\n  iccid: {A}\nlog:\n  level: warn\n",
            token_path.display()
        ));
        let path = f.path().to_str().expect("utf-8 path");
        let env = Environment {
            token: Some(SecretString::from("from-env")),
            password: None,
            rust_log: Some("debug".into()),
        };
        let c =
            Config::resolve(&parse(&["--config.file", path]), env, Mode::Exporter).expect("valid");
        match c.credentials {
            Some(Credentials::Token(t)) => assert_eq!(t.expose_secret(), "from-env"),
            other => panic!("unexpected credentials {other:?}"),
        }
        assert_eq!(c.log.filter, "debug");

        let c = Config::resolve(
            &parse(&["--config.file", path]),
            Environment::default(),
            Mode::Exporter,
        )
        .expect("valid");
        match c.credentials {
            Some(Credentials::Token(t)) => assert_eq!(t.expose_secret(), "from-file"),
            other => panic!("unexpected credentials {other:?}"),
        }
        assert_eq!(c.log.filter, "warn");

        let flag_path = dir.path().join("flag-token");
        std::fs::write(&flag_path, "  from-flag-file \n").expect("write");
        let env = Environment {
            token: Some(SecretString::from("from-env")),
            ..Environment::default()
        };
        let args = parse(&[
            "--config.file",
            path,
            "--monogoto.token-file",
            flag_path.to_str().expect("utf-8"),
        ]);
        match Config::resolve(&args, env, Mode::Exporter)
            .expect("valid")
            .credentials
        {
            Some(Credentials::Token(t)) => assert_eq!(t.expose_secret(), "from-flag-file"),
            other => panic!("unexpected credentials {other:?}"),
        }
    }

    #[test]
    fn login_credentials() {
        let env = Environment {
            password: Some(SecretString::from("pw")),
            ..Environment::default()
        };
        let c = Config::resolve(
            &parse(&["--monogoto.username", "ops", "--monogoto.discover"]),
            env,
            Mode::Exporter,
        )
        .expect("valid");
        assert!(c.discover);
        match c.credentials {
            Some(Credentials::Login { username, password }) => {
                assert_eq!(username, "ops");
                assert_eq!(password.expose_secret(), "pw");
            }
            other => panic!("unexpected credentials {other:?}"),
        }
        let e = Config::resolve(
            &parse(&["--monogoto.username", "ops", "--monogoto.discover"]),
            Environment::default(),
            Mode::Exporter,
        )
        .expect_err("no password");
        assert!(
            e.to_string().starts_with("config: monogoto.password:"),
            "{e}"
        );
    }

    #[test]
    fn secrets_from_the_environment_are_trimmed() {
        let token = |env: Environment| match Config::resolve(
            &parse(&["--monogoto.iccid", A]),
            env,
            Mode::Exporter,
        )
        .expect("valid")
        .credentials
        {
            Some(Credentials::Token(t)) => t.expose_secret().to_string(),
            other => panic!("unexpected credentials {other:?}"),
        };
        for raw in ["tok\n", " tok ", "\ttok\r\n"] {
            let env = Environment {
                token: Some(SecretString::from(raw)),
                ..Environment::default()
            };
            assert_eq!(token(env), "tok", "{raw:?}");
        }
        let env = Environment {
            password: Some(SecretString::from("pw\n")),
            ..Environment::default()
        };
        let c = Config::resolve(
            &parse(&["--monogoto.username", "ops", "--monogoto.discover"]),
            env,
            Mode::Exporter,
        )
        .expect("valid");
        match c.credentials {
            Some(Credentials::Login { password, .. }) => assert_eq!(password.expose_secret(), "pw"),
            other => panic!("unexpected credentials {other:?}"),
        }
        // As from the YAML file.
        let f = yaml(&format!("monogoto:\n  token: |\n    tok\n  iccid: {A}\n"));
        let c = Config::resolve(
            &parse(&["--config.file", f.path().to_str().expect("utf-8")]),
            Environment::default(),
            Mode::Exporter,
        )
        .expect("valid");
        match c.credentials {
            Some(Credentials::Token(t)) => assert_eq!(t.expose_secret(), "tok"),
            other => panic!("unexpected credentials {other:?}"),
        }
    }

    #[test]
    fn blank_or_unsendable_secrets_are_errors() {
        let resolve_env = |args: &[&str], env: Environment| {
            Config::resolve(&parse(args), env, Mode::Exporter)
                .expect_err("refused")
                .to_string()
        };
        for blank in ["", "\n", "  \t "] {
            let e = resolve_env(
                &["--monogoto.iccid", A],
                Environment {
                    token: Some(SecretString::from(blank)),
                    ..Environment::default()
                },
            );
            assert_eq!(
                e,
                "config: monogoto.token: MONOGOTO_TOKEN is set but empty; give it a value or unset it"
            );
            let e = resolve_env(
                &["--monogoto.username", "ops", "--monogoto.iccid", A],
                Environment {
                    password: Some(SecretString::from(blank)),
                    ..Environment::default()
                },
            );
            assert!(
                e.starts_with("config: monogoto.password: MONOGOTO_PASSWORD is set but empty"),
                "{e}"
            );
        }
        let e = resolve_env(
            &["--monogoto.iccid", A],
            Environment {
                token: Some(SecretString::from("first\nsecond")),
                ..Environment::default()
            },
        );
        assert!(
            e.starts_with("config: monogoto.token: contains a control character"),
            "{e}"
        );
        assert!(!e.contains("first"), "the secret stays out: {e}");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let env = Environment {
            token: Some(SecretString::from("s3cr3t-token")),
            ..Environment::default()
        };
        let c =
            Config::resolve(&parse(&["--monogoto.iccid", A]), env, Mode::Exporter).expect("valid");
        assert!(!format!("{c:?}").contains("s3cr3t-token"));
    }

    #[test]
    fn every_validation_error_names_its_key() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--poll.interval", "5x"],
                "config: poll.interval \"5x\": invalid duration",
            ),
            (
                &["--poll.interval", "0s"],
                "config: poll.interval \"0s\": must be greater than zero",
            ),
            (&["--poll.timeout", "soon"], "config: poll.timeout \"soon\""),
            (
                &["--poll.batch-size", "0"],
                "config: poll.batch-size \"0\": must be a whole number from 1 to 50",
            ),
            (
                &["--poll.batch-size", "51"],
                "config: poll.batch-size \"51\"",
            ),
            (
                &["--poll.batch-size", "ten"],
                "config: poll.batch-size \"ten\"",
            ),
            (
                &["--poll.concurrency", "0"],
                "config: poll.concurrency \"0\"",
            ),
            (
                &["--poll.stale-after", "soon"],
                "config: poll.stale-after \"soon\": invalid duration",
            ),
            (
                &["--monogoto.thing-ids-format", "semicolon"],
                "config: monogoto.thing-ids-format \"semicolon\": must be comma, repeat or auto",
            ),
            (
                &["--poll.inactive-interval", "often"],
                "config: poll.inactive-interval \"often\": invalid duration",
            ),
            (
                &["--monogoto.rate-limit", "60/min,1000"],
                "config: monogoto.rate-limit \"60/min,1000\"",
            ),
            (
                &["--web.listen-address", "nowhere"],
                "config: web.listen-address \"nowhere\"",
            ),
            (
                &["--web.listen-address", "host:99999"],
                "config: web.listen-address",
            ),
            (
                &["--web.telemetry-path", "metrics"],
                "config: web.telemetry-path \"metrics\"",
            ),
            (
                &["--web.telemetry-path", "/healthz"],
                "config: web.telemetry-path \"/healthz\"",
            ),
            (
                &["--web.telemetry-path", "/-/reload"],
                "config: web.telemetry-path \"/-/reload\": is taken",
            ),
            (
                &["--monogoto.url", "console.monogoto.io"],
                "config: monogoto.url \"console.monogoto.io\": invalid URL",
            ),
            (
                &["--monogoto.url", "ftp://x"],
                "config: monogoto.url \"ftp://x\"",
            ),
            (
                &["--monogoto.url", "https://u:p@x/"],
                "config: monogoto.url \"https://x/\": must not carry",
            ),
            (&["--log.format", "xml"], "config: log.format \"xml\""),
            (&["--log.level", "loud=="], "config: log.level"),
            (
                &["--monogoto.iccid", "12345"],
                "config: monogoto.iccid \"12345\": not an ICCID",
            ),
            (
                &["--config.file", "/nonexistent/monogoto.yml"],
                "config: config.file \"/nonexistent/monogoto.yml\": cannot read",
            ),
            (
                &["--monogoto.token-file", "/nonexistent/token"],
                "config: monogoto.token-file \"/nonexistent/token\": cannot read",
            ),
        ];
        for (args, expected) in cases {
            let mut all = args.to_vec();
            if !args.contains(&"--monogoto.iccid") {
                all.extend_from_slice(&["--monogoto.iccid", A]);
            }
            let e = error(&all);
            assert!(
                e.starts_with(expected),
                "{args:?}: got {e:?}, want prefix {expected:?}"
            );
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }

    #[test]
    fn every_duration_is_bounded() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--poll.interval", "1ms"],
                "config: poll.interval \"1ms\": must be from 1s to 24h",
            ),
            (
                &["--poll.interval", "25h"],
                "config: poll.interval \"25h\": must be from 1s to 24h",
            ),
            (
                &["--poll.interval", "10000000000000000000s"],
                "config: poll.interval \"10000000000000000000s\"",
            ),
            (
                &["--poll.interval", "300000000000y"],
                "config: poll.interval \"300000000000y\"",
            ),
            (
                &["--poll.timeout", "10ms"],
                "config: poll.timeout \"10ms\": must be from 100ms to 10m",
            ),
            (
                &["--poll.timeout", "11m"],
                "config: poll.timeout \"11m\": must be from 100ms to 10m",
            ),
            (
                &["--poll.stale-after", "31days"],
                "config: poll.stale-after \"31days\": must be from 1s to 30d",
            ),
            (
                &["--poll.inactive-interval", "31days"],
                "config: poll.inactive-interval \"31days\": must be from 1s to 30d, or 0",
            ),
            (
                &["--poll.stale-after", "300000000000y"],
                "config: poll.stale-after \"300000000000y\"",
            ),
            (
                &["--monogoto.discover-interval", "30s"],
                "config: monogoto.discover-interval \"30s\": must be from 1m to 30d",
            ),
            (
                &["--monogoto.discover-interval", "300000000000y"],
                "config: monogoto.discover-interval \"300000000000y\"",
            ),
            (
                &["--monogoto.rate-limit", "1/300000000000y"],
                "config: monogoto.rate-limit \"1/300000000000y\"",
            ),
            (
                &["--monogoto.rate-limit", "1/8d"],
                "config: monogoto.rate-limit \"1/8d\": the period must be at most 7d",
            ),
        ];
        for (args, expected) in cases {
            let mut all = args.to_vec();
            all.extend_from_slice(&["--monogoto.iccid", A]);
            let e = error(&all);
            assert!(e.starts_with(expected), "{args:?}: {e:?}");
        }
        // The ends of each range are accepted.
        let c = resolve(&[
            "--monogoto.iccid",
            A,
            "--poll.interval",
            "24h",
            "--poll.timeout",
            "100ms",
            "--poll.stale-after",
            "30d",
            "--monogoto.discover-interval",
            "30d",
            "--monogoto.rate-limit",
            "1/7d",
        ])
        .expect("valid");
        assert_eq!(c.poll.interval, Duration::from_secs(24 * 3600));
        assert_eq!(c.poll.stale_after, Some(MAX_STALE_AFTER));
        assert_eq!(c.discover_interval, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(c.rate_limit.windows()[0].period, MAX_RATE_LIMIT_PERIOD);
        let c = resolve(&[
            "--monogoto.iccid",
            A,
            "--poll.interval",
            "1s",
            "--poll.timeout",
            "10m",
            "--monogoto.discover-interval",
            "1m",
        ])
        .expect("valid");
        assert_eq!(
            c.poll.stale_after, None,
            "3 refresh targets, known once polling"
        );
        // The YAML file goes through the same checks.
        let e = yaml_error("poll:\n  interval: 1ms\n");
        assert!(e.starts_with("config: poll.interval \"1ms\""), "{e}");
    }

    #[test]
    fn telemetry_paths_the_router_would_misread_and_url_fragments_are_refused() {
        for path in [
            "/:metrics",
            "/*rest",
            "/m/{x}",
            "/metrics?x=1",
            "/metrics#top",
            "/m}",
        ] {
            let e = error(&["--web.telemetry-path", path, "--monogoto.iccid", A]);
            assert!(
                e.starts_with(&format!(
                    "config: web.telemetry-path {path:?}: must be a plain path"
                )),
                "{e}"
            );
        }
        for path in ["/metrics", "/prometheus/metrics", "/m-1_x.txt", "/metrics/"] {
            let c = resolve(&["--web.telemetry-path", path, "--monogoto.iccid", A]).expect(path);
            assert_eq!(c.telemetry_path, path);
        }
        let e = error(&[
            "--monogoto.url",
            "https://console.monogoto.io/#frag",
            "--monogoto.iccid",
            A,
        ]);
        assert!(
            e.starts_with(
                "config: monogoto.url \"https://console.monogoto.io/\": must not carry a #fragment"
            ),
            "{e}"
        );
    }

    #[test]
    fn missing_credentials_or_things_are_errors_only_for_the_exporter() {
        let e = Config::resolve(
            &parse(&["--monogoto.iccid", A]),
            Environment::default(),
            Mode::Exporter,
        )
        .expect_err("no credentials");
        assert!(
            e.to_string()
                .starts_with("config: monogoto.token: no credentials"),
            "{e}"
        );
        let e = error(&[]);
        assert!(
            e.starts_with("config: monogoto.iccid: no Things to export"),
            "{e}"
        );
        assert!(Config::resolve(&parse(&[]), Environment::default(), Mode::Demo).is_ok());
    }

    #[test]
    fn bad_yaml_and_unknown_keys_are_errors() {
        let e = yaml_error("poll:\n  intervall: 30s\n");
        assert!(e.contains("invalid YAML") && e.contains("intervall"), "{e}");
        let e = yaml_error("poll: [unclosed\n");
        assert!(e.starts_with("config: config.file"), "{e}");
        let e = yaml_error("poll:\n  batch_size: 99\n");
        assert!(e.starts_with("config: poll.batch-size \"99\""), "{e}");
    }

    #[test]
    fn resilience_settings() {
        let c = resolve(&["--monogoto.iccid", A]).expect("valid");
        assert_eq!(c.rate_limit.to_string(), "60/min,1000/h");
        assert_eq!(c.poll.retries, 3);
        assert_eq!(c.max_body_size, 16 * 1024 * 1024);
        let c = resolve(&[
            "--monogoto.iccid",
            A,
            "--monogoto.rate-limit",
            "5/s",
            "--poll.retries",
            "0",
            "--monogoto.max-body-size",
            "512KiB",
        ])
        .expect("valid");
        assert_eq!(Some(c.rate_limit.to_string()), Some("5/s".to_string()));
        assert_eq!(c.poll.retries, 0);
        assert_eq!(c.max_body_size, 512 * 1024);
        let c = resolve(&["--monogoto.iccid", A, "--monogoto.rate-limit", "0"]).expect("valid");
        assert!(c.rate_limit.is_unlimited());

        let f = yaml(
            "monogoto:\n  rate_limit: 300/min,10000/h\n  max-body-size: 1MB\npoll:\n  retries: 5\n  inactive-interval: 0\n  stale_after: 10s\n",
        );
        let c = resolve(&[
            "--config.file",
            f.path().to_str().expect("utf-8"),
            "--monogoto.iccid",
            A,
        ])
        .expect("valid");
        assert_eq!(c.rate_limit.to_string(), "300/min,10000/h");
        assert_eq!(c.poll.inactive_interval, Duration::ZERO);
        assert_eq!(c.poll.stale_after, Some(Duration::from_secs(10)));
        assert_eq!(c.max_body_size, 1_000_000);
        assert_eq!(c.poll.retries, 5);

        for (args, expected) in [
            (
                ["--monogoto.rate-limit", "fast"],
                "config: monogoto.rate-limit \"fast\"",
            ),
            (
                ["--poll.retries", "11"],
                "config: poll.retries \"11\": must be a whole number from 0 to 10",
            ),
            (
                ["--monogoto.max-body-size", "huge"],
                "config: monogoto.max-body-size \"huge\"",
            ),
            (
                ["--monogoto.max-body-size", "10"],
                "config: monogoto.max-body-size \"10\"",
            ),
        ] {
            let mut all = args.to_vec();
            all.extend_from_slice(&["--monogoto.iccid", A]);
            let e = error(&all);
            assert!(e.starts_with(expected), "{e}");
        }
    }

    #[test]
    fn shards() {
        let c = resolve(&["--monogoto.iccid", A]).expect("valid");
        assert_eq!(c.shard, Shard { index: 0, count: 1 });
        let c = resolve(&[
            "--monogoto.iccid",
            A,
            "--shard.count",
            "3",
            "--shard.index",
            "monogoto-exporter-2",
        ])
        .expect("valid");
        assert_eq!(c.shard, Shard { index: 2, count: 3 });
        let f = yaml("shard:\n  index: 1\n  count: 4\n");
        let c = resolve(&[
            "--config.file",
            f.path().to_str().expect("utf-8"),
            "--monogoto.iccid",
            A,
        ])
        .expect("valid");
        assert_eq!(c.shard, Shard { index: 1, count: 4 });
        for (args, expected) in [
            (
                ["--shard.count", "3", "--shard.index", "3"],
                "config: shard.index \"3\": must be less than shard.count (3)",
            ),
            (
                ["--shard.count", "0", "--shard.index", "0"],
                "config: shard.count \"0\"",
            ),
            (
                ["--shard.count", "2", "--shard.index", "pod"],
                "config: shard.index \"pod\"",
            ),
        ] {
            let mut all = args.to_vec();
            all.extend_from_slice(&["--monogoto.iccid", A]);
            let e = error(&all);
            assert!(e.starts_with(expected), "{e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Some(16 * 1024 * 1024));
        assert_eq!(parse_size("2048"), Some(2048));
        assert_eq!(parse_size("1.5 KiB"), Some(1536));
        assert_eq!(parse_size("1gb"), Some(1_000_000_000));
        assert_eq!(parse_size("100"), None, "below 1 KiB");
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_size("5 parsecs"), None);
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_secret_files_are_warned_about() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t").expect("write");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let args = parse(&[
            "--monogoto.iccid",
            A,
            "--monogoto.token-file",
            token.to_str().expect("utf-8"),
        ]);
        let c = Config::resolve(&args, Environment::default(), Mode::Exporter).expect("valid");
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].starts_with("monogoto.token-file"),
            "{:?}",
            c.warnings
        );
        assert!(
            !c.warnings[0].contains("t\""),
            "the warning names the file, not the secret"
        );

        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let c = Config::resolve(&args, Environment::default(), Mode::Exporter).expect("valid");
        assert!(c.warnings.is_empty());

        let f = yaml(&format!("monogoto:\n  token: inline\n  iccid: {A}\n"));
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let c = resolve(&["--config.file", f.path().to_str().expect("utf-8")]).expect("valid");
        assert!(
            c.warnings.iter().any(|w| w.starts_with("config.file")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn web_config_file_from_flag_or_yaml_and_validated() {
        let web = yaml("basic_auth_users: {}\n");
        let web_path = web.path().to_str().expect("utf-8");
        let c = resolve(&["--web.config.file", web_path, "--monogoto.iccid", A]).expect("valid");
        assert_eq!(c.web_config_file.as_deref(), Some(web.path()));
        assert_eq!(
            resolve(&["--monogoto.iccid", A])
                .expect("valid")
                .web_config_file,
            None
        );
        for key in ["config_file", "config-file"] {
            let f = yaml(&format!("web:\n  {key}: {web_path}\n"));
            let c = resolve(&[
                "--config.file",
                f.path().to_str().expect("utf-8"),
                "--monogoto.iccid",
                A,
            ])
            .expect("valid");
            assert_eq!(c.web_config_file.as_deref(), Some(web.path()), "{key}");
        }

        let bad = yaml("basic_auth_users:\n  alice: not-a-hash\n");
        let bad_path = bad.path().to_str().expect("utf-8");
        let e = error(&["--web.config.file", bad_path, "--monogoto.iccid", A]);
        assert!(
            e.starts_with(&format!(
                "config: web.config.file {bad_path:?}: basic_auth_users.alice: not a bcrypt hash"
            )),
            "{e}"
        );
        let e = error(&[
            "--web.config.file",
            "/nonexistent/web.yml",
            "--monogoto.iccid",
            A,
        ]);
        assert!(
            e.starts_with("config: web.config.file \"/nonexistent/web.yml\": cannot read"),
            "{e}"
        );
    }

    #[test]
    fn iccids_are_normalised_and_the_documented_example_is_accepted() {
        // The API page's own example has 16 digits; a trailing f is upper-cased.
        let c = resolve(&[
            "--monogoto.iccid",
            "8912372646888991",
            "--monogoto.iccid",
            "8988200000000000001f",
            "--monogoto.iccid",
            "8988200000000000001F",
        ])
        .expect("valid");
        assert_eq!(c.iccids, vec!["8912372646888991", "8988200000000000001F"]);
        let e = error(&["--monogoto.iccid", "123456789"]);
        assert!(
            e.starts_with("config: monogoto.iccid \"123456789\": not an ICCID (10 to 22"),
            "{e}"
        );
    }

    #[test]
    fn web_limits_from_flags_or_yaml_and_validated() {
        let c = resolve(&["--monogoto.iccid", A]).expect("valid");
        assert_eq!(c.web_limits, crate::web::Limits::default());
        assert_eq!(c.web_limits.read_header_timeout, Duration::from_secs(10));
        assert_eq!(c.web_limits.max_connections, 512);

        let c = resolve(&[
            "--web.read-header-timeout",
            "3s",
            "--web.max-connections",
            "64",
            "--monogoto.iccid",
            A,
        ])
        .expect("valid");
        assert_eq!(c.web_limits.read_header_timeout, Duration::from_secs(3));
        assert_eq!(c.web_limits.max_connections, 64);

        for text in [
            "web:\n  read_header_timeout: 1m\n  max_connections: 1000\n",
            "web:\n  read-header-timeout: 1m\n  max-connections: \"1000\"\n",
        ] {
            let f = yaml(text);
            let path = f.path().to_str().expect("utf-8");
            let c = resolve(&["--config.file", path, "--monogoto.iccid", A]).expect("valid");
            assert_eq!(c.web_limits.read_header_timeout, Duration::from_secs(60));
            assert_eq!(c.web_limits.max_connections, 1000);
            let c = resolve(&[
                "--config.file",
                path,
                "--web.max-connections",
                "2",
                "--monogoto.iccid",
                A,
            ])
            .expect("valid");
            assert_eq!(c.web_limits.max_connections, 2, "the flag wins");
        }

        for (args, expected) in [
            (
                ["--web.read-header-timeout", "999ms"],
                "config: web.read-header-timeout \"999ms\": must be from 1s to 10m",
            ),
            (
                ["--web.read-header-timeout", "10m1s"],
                "config: web.read-header-timeout \"10m1s\": must be from 1s to 10m",
            ),
            (
                ["--web.read-header-timeout", "0"],
                "config: web.read-header-timeout \"0\": must be greater than zero",
            ),
            (
                ["--web.max-connections", "0"],
                "config: web.max-connections \"0\": must be a whole number from 1 to 1000000",
            ),
            (
                ["--web.max-connections", "many"],
                "config: web.max-connections \"many\": must be a whole number from 1 to 1000000",
            ),
        ] {
            assert_eq!(error(&[args[0], args[1], "--monogoto.iccid", A]), expected);
        }
        assert!(
            resolve(&[
                "--web.read-header-timeout",
                "10m",
                "--web.max-connections",
                "1000000",
                "--monogoto.iccid",
                A
            ])
            .is_ok(),
            "the bounds themselves"
        );
        let e = yaml_error("web:\n  max_connections: -1\n");
        assert!(e.starts_with("config: web.max-connections \"-1\""), "{e}");
    }

    #[test]
    fn what_a_reload_compares_is_recorded() {
        let c = resolve(&["--monogoto.iccid", A]).expect("valid");
        assert!(!c.enable_lifecycle, "off by default, as in Prometheus");
        assert_eq!(c.iccids_file, None);
        assert_eq!(
            c.credentials_source,
            CredentialsSource {
                token: Some(SecretSource::Environment),
                password: None
            }
        );

        let fleet = yaml(&format!("{B}\n"));
        let token = yaml("t\n");
        let f = yaml(&format!(
            "monogoto:\n  iccids_file: {}\n  token_file: {}\n",
            fleet.path().display(),
            token.path().display()
        ));
        let c = Config::resolve(
            &parse(&[
                "--config.file",
                f.path().to_str().expect("utf-8"),
                "--web.enable-lifecycle",
            ]),
            Environment::default(),
            Mode::Exporter,
        )
        .expect("valid");
        assert!(c.enable_lifecycle);
        assert_eq!(c.iccids_file.as_deref(), Some(fleet.path()));
        assert_eq!(c.iccids, vec![B.to_string()]);
        assert_eq!(
            c.credentials_source.token,
            Some(SecretSource::File(token.path().to_path_buf()))
        );

        let f = yaml("monogoto:\n  username: u\n  password: p\n");
        let c = Config::resolve(
            &parse(&[
                "--config.file",
                f.path().to_str().expect("utf-8"),
                "--monogoto.iccid",
                A,
            ]),
            Environment::default(),
            Mode::Exporter,
        )
        .expect("valid");
        assert_eq!(
            c.credentials_source,
            CredentialsSource {
                token: None,
                password: Some(SecretSource::Inline)
            }
        );
    }

    #[test]
    fn an_iccids_file_may_start_with_a_byte_order_mark() {
        let f = yaml(&format!("\u{feff}{A}\n{B}\n"));
        let c =
            resolve(&["--monogoto.iccids-file", f.path().to_str().expect("utf-8")]).expect("valid");
        assert_eq!(c.iccids, vec![A.to_string(), B.to_string()]);
        // Only at the start: elsewhere it is not part of an ICCID.
        assert!(parse_iccids(&format!("{A}\n\u{feff}{B}\n")).is_err());
    }

    #[test]
    fn iccids_file_comments_blanks_duplicates_and_bad_lines() {
        let text = format!("# fleet\n\n{A}\n  {B}  # gateway\n{A}\n");
        assert_eq!(
            parse_iccids(&text),
            Ok(vec![A.to_string(), B.to_string(), A.to_string()])
        );
        let f = yaml(&text);
        let c = resolve(&[
            "--monogoto.iccids-file",
            f.path().to_str().expect("utf-8"),
            "--monogoto.iccid",
            B,
        ])
        .expect("valid");
        assert_eq!(
            c.iccids,
            vec![B.to_string(), A.to_string()],
            "union, duplicates removed"
        );

        let f = yaml(&format!("{A}\n# ok\nnot-an-iccid\n"));
        let e = error(&["--monogoto.iccids-file", f.path().to_str().expect("utf-8")]);
        assert!(
            e.starts_with("config: monogoto.iccids-file") && e.contains("line 3: \"not-an-iccid\""),
            "{e}"
        );
    }
}
