//! One `Config`, resolved from flags, environment, a YAML file and defaults
//! (highest precedence first), validated with errors that name the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use crate::monogoto::rate_limit::{RateLimit, RateLimitSpec};
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
pub const STALE_AFTER_INTERVALS: u32 = 3;
pub const DEFAULT_RATE_LIMIT: &str = "60/min";
pub const MAX_SHARDS: usize = 1024;
pub const DEFAULT_DISCOVER_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_RETRIES: u32 = 3;
pub const MAX_RETRIES: usize = 10;
pub const DEFAULT_MAX_BODY_SIZE: usize = 16 * 1024 * 1024;

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
    /// Client-side limit of API requests, shared by all of them: 60/min, 5/s, or 0 for none [default: 60/min].
    #[arg(long = "monogoto.rate-limit", value_name = "N/PERIOD")]
    pub rate_limit: Option<String>,
    /// Answers larger than this are refused, not buffered: 16MiB, 512KiB, bytes [default: 16MiB].
    #[arg(long = "monogoto.max-body-size", value_name = "SIZE")]
    pub max_body_size: Option<String>,
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
    /// A Thing not refreshed for this long leaves /metrics [default: 3 x poll.interval].
    #[arg(long = "poll.stale-after", value_name = "DURATION")]
    pub stale_after: Option<String>,
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
    pub fn from_process() -> Self {
        let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Environment {
            token: non_empty(ENV_TOKEN).map(SecretString::from),
            password: non_empty(ENV_PASSWORD).map(SecretString::from),
            rust_log: non_empty("RUST_LOG"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen_address: String,
    pub telemetry_path: String,
    /// Exporter-toolkit web configuration (TLS, basic auth); validated at start-up.
    pub web_config_file: Option<PathBuf>,
    pub url: String,
    pub credentials: Option<Credentials>,
    pub iccids: Vec<String>,
    pub discover: bool,
    pub discover_interval: Duration,
    pub rate_limit: Option<RateLimit>,
    pub max_body_size: usize,
    pub shard: Shard,
    pub poll: PollConfig,
    pub log: LogConfig,
    /// Problems worth a warning but not a refusal, logged once logging is up.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Credentials {
    Token(SecretString),
    Login {
        username: String,
        password: SecretString,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollConfig {
    pub interval: Duration,
    pub batch_size: usize,
    pub concurrency: usize,
    pub timeout: Duration,
    pub retries: u32,
    pub stale_after: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: DEFAULT_INTERVAL,
            batch_size: DEFAULT_BATCH_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            stale_after: DEFAULT_INTERVAL * STALE_AFTER_INTERVALS,
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

        let credentials = resolve_credentials(args, &env, &monogoto)?;

        let mut iccids = Vec::new();
        let flag_iccids = if args.iccids.is_empty() {
            monogoto.iccids.clone().unwrap_or_default()
        } else {
            args.iccids.clone()
        };
        for raw in &flag_iccids {
            iccids.push(
                normalize_iccid(raw)
                    .map_err(|why| ConfigError::value("monogoto.iccid", raw, why))?,
            );
        }
        if let Some(path) = args.iccids_file.clone().or(monogoto.iccids_file.clone()) {
            iccids.extend(read_iccids_file(&path)?);
        }
        dedup_keep_order(&mut iccids);
        let discover = args.discover.or(monogoto.discover).unwrap_or(false);
        let discover_interval = match args
            .discover_interval
            .clone()
            .or(monogoto.discover_interval.clone())
        {
            Some(v) => parse_duration("monogoto.discover-interval", &v)?,
            None => DEFAULT_DISCOVER_INTERVAL,
        };
        let rate_limit = {
            let value = args
                .rate_limit
                .clone()
                .or(monogoto.rate_limit.clone())
                .unwrap_or_else(|| DEFAULT_RATE_LIMIT.to_string());
            value
                .parse::<RateLimitSpec>()
                .map_err(|why| ConfigError::value("monogoto.rate-limit", &value, why))?
                .0
        };
        let max_body_size = match args.max_body_size.clone().or(monogoto.max_body_size.clone()) {
            Some(v) => parse_size(&v).ok_or_else(|| {
                ConfigError::value("monogoto.max-body-size", &v, "must be a size such as \"16MiB\", \"512KiB\" or a number of bytes, at least 1KiB")
            })?,
            None => DEFAULT_MAX_BODY_SIZE,
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
            url,
            credentials,
            iccids,
            discover,
            discover_interval,
            rate_limit,
            max_body_size,
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
        Some(v) => parse_duration("poll.interval", &v)?,
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
        Some(v) => parse_duration("poll.timeout", &v)?,
        None => DEFAULT_TIMEOUT,
    };
    let retries = match args.retries.clone().or(file.retries) {
        Some(v) => parse_count("poll.retries", &v, 0, MAX_RETRIES)? as u32,
        None => DEFAULT_RETRIES,
    };
    let stale_after = match args.stale_after.clone().or(file.stale_after) {
        Some(v) => {
            let d = parse_duration("poll.stale-after", &v)?;
            if d < interval {
                return Err(ConfigError::value(
                    "poll.stale-after",
                    &v,
                    format!(
                        "must be at least poll.interval ({}), or every Thing would vanish between refreshes",
                        humantime::format_duration(interval)
                    ),
                ));
            }
            d
        }
        None => interval * STALE_AFTER_INTERVALS,
    };
    Ok(PollConfig {
        interval,
        batch_size,
        concurrency,
        timeout,
        retries,
        stale_after,
    })
}

fn parse_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(value.trim())
        .map_err(|_| ConfigError::value(key, value, "invalid duration (try \"60s\" or \"5m\")"))?;
    if d.is_zero() {
        return Err(ConfigError::value(key, value, "must be greater than zero"));
    }
    Ok(d)
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
    if ["/", "/healthz", "/readyz"].contains(&value.as_str()) {
        return Err(ConfigError::value(
            "web.telemetry-path",
            &value,
            "is taken by the landing page or a probe; choose another, e.g. \"/metrics\"",
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

fn redact_url(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
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
) -> Result<Option<Credentials>, ConfigError> {
    let token = if let Some(path) = &args.token_file {
        Some(read_secret_file("monogoto.token-file", path)?)
    } else if let Some(token) = &env.token {
        Some(token.clone())
    } else if let Some(path) = &file.token_file {
        Some(read_secret_file("monogoto.token-file", path)?)
    } else {
        file.token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .map(SecretString::from)
    };
    if let Some(token) = token {
        return Ok(Some(Credentials::Token(token)));
    }

    let username = args
        .username
        .clone()
        .or(file.username.clone())
        .filter(|u| !u.is_empty());
    let password = if let Some(path) = &args.password_file {
        Some(read_secret_file("monogoto.password-file", path)?)
    } else if let Some(password) = &env.password {
        Some(password.clone())
    } else if let Some(path) = &file.password_file {
        Some(read_secret_file("monogoto.password-file", path)?)
    } else {
        file.password
            .clone()
            .filter(|p| !p.is_empty())
            .map(SecretString::from)
    };
    match (username, password) {
        (Some(username), Some(password)) => Ok(Some(Credentials::Login { username, password })),
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
        (None, None) => Ok(None),
    }
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

/// Checks an ICCID (digits, 18 to 22 characters, an optional trailing `F`)
/// and returns it in canonical form (upper-case `F`).
pub fn normalize_iccid(raw: &str) -> Result<String, &'static str> {
    const WHY: &str = "not an ICCID (18 to 22 characters: digits, optionally ending in F)";
    let s = raw.trim();
    let digits = s.strip_suffix(['F', 'f']).unwrap_or(s);
    if !(18..=22).contains(&s.len())
        || digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(WHY);
    }
    let mut canonical = digits.to_string();
    if digits.len() != s.len() {
        canonical.push('F');
    }
    Ok(canonical)
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
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let value = line.split('#').next().unwrap_or("").trim();
        if value.is_empty() {
            continue;
        }
        out.push(normalize_iccid(value).map_err(|why| (index + 1, value.to_string(), why))?);
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
        assert_eq!(c.poll.stale_after, Duration::from_secs(180));
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
        assert_eq!(c.poll.stale_after, Duration::from_secs(90));
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
        assert_eq!(c.poll.stale_after, Duration::from_secs(360));
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
                &["--poll.stale-after", "30s"],
                "config: poll.stale-after \"30s\": must be at least poll.interval",
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
        let f = yaml("poll:\n  intervall: 30s\n");
        let e = error(&[
            "--config.file",
            f.path().to_str().expect("utf-8"),
            "--monogoto.iccid",
            A,
        ]);
        assert!(e.contains("invalid YAML") && e.contains("intervall"), "{e}");
        let f = yaml("poll: [unclosed\n");
        let e = error(&[
            "--config.file",
            f.path().to_str().expect("utf-8"),
            "--monogoto.iccid",
            A,
        ]);
        assert!(e.starts_with("config: config.file"), "{e}");
        let f = yaml("poll:\n  batch_size: 99\n");
        let e = error(&[
            "--config.file",
            f.path().to_str().expect("utf-8"),
            "--monogoto.iccid",
            A,
        ]);
        assert!(e.starts_with("config: poll.batch-size \"99\""), "{e}");
    }

    #[test]
    fn resilience_settings() {
        let c = resolve(&["--monogoto.iccid", A]).expect("valid");
        assert_eq!(
            c.rate_limit.map(|l| l.to_string()),
            Some("60/min".to_string())
        );
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
        assert_eq!(c.rate_limit.map(|l| l.to_string()), Some("5/s".to_string()));
        assert_eq!(c.poll.retries, 0);
        assert_eq!(c.max_body_size, 512 * 1024);
        let c = resolve(&["--monogoto.iccid", A, "--monogoto.rate-limit", "0"]).expect("valid");
        assert_eq!(c.rate_limit, None);

        let f = yaml("monogoto:\n  rate_limit: 100/h\n  max-body-size: 1MB\npoll:\n  retries: 5\n");
        let c = resolve(&[
            "--config.file",
            f.path().to_str().expect("utf-8"),
            "--monogoto.iccid",
            A,
        ])
        .expect("valid");
        assert_eq!(
            c.rate_limit.map(|l| l.to_string()),
            Some("100/h".to_string())
        );
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
    fn iccid_validation() {
        assert_eq!(normalize_iccid(A), Ok(A.to_string()));
        assert_eq!(
            normalize_iccid("8988200000000000001f"),
            Ok("8988200000000000001F".into())
        );
        assert_eq!(
            normalize_iccid(" 8988200000000000001F "),
            Ok("8988200000000000001F".into())
        );
        assert!(
            normalize_iccid("1234567890123456789012").is_ok(),
            "22 characters"
        );
        assert!(
            normalize_iccid("89882000000000000").is_err(),
            "17 characters"
        );
        assert!(
            normalize_iccid("12345678901234567890123").is_err(),
            "23 characters"
        );
        assert!(normalize_iccid("8988200000000000x01").is_err());
        assert!(
            normalize_iccid("89882000000000000F1").is_err(),
            "F only at the end"
        );
        assert!(normalize_iccid("FFFFFFFFFFFFFFFFFF").is_err());
        assert!(normalize_iccid("").is_err());
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
