//! The command line: the subcommands and the exporter's flags, as clap parses
//! them. Values stay text here; [`Config::resolve`](super::Config::resolve)
//! validates them together with the file's and the environment's.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::monogoto::budget::Budget;

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
    /// POST a Data CDR (a JSON array of them, batched a second at most) to this URL, query
    /// included, whenever a simulated data session ends, as Monogoto's webhook integration does.
    #[arg(long = "webhook-url", value_name = "URL", value_parser = parse_webhook_url)]
    pub webhook_url: Option<String>,
    /// Log level of the simulator.
    #[arg(long = "log.level", default_value = "info")]
    pub log_level: String,
}

/// An http(s) URL, checked now rather than at every post.
fn parse_webhook_url(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(s.to_owned()),
        "http" | "https" => Err("the URL names no host".to_owned()),
        other => Err(format!(
            "scheme {other:?}: only http and https are posted to"
        )),
    }
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
    pub(crate) token_file: Option<PathBuf>,
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
    pub(crate) shard_count: Option<String>,
    /// This replica's shard, 0 to count-1; a name ending in -ORDINAL (a StatefulSet pod name) works too [default: 0].
    #[arg(long = "shard.index", env = "MONOGOTO_SHARD_INDEX", value_name = "I")]
    pub(crate) shard_index: Option<String>,
    /// File holding the token Monogoto's webhook must give (`?token=` or `Authorization: Bearer`); POST /webhook is off without one [env: MONOGOTO_WEBHOOK_TOKEN holds the token itself].
    #[arg(long = "webhook.token-file", value_name = "PATH")]
    pub webhook_token_file: Option<std::path::PathBuf>,
    /// Largest webhook body accepted; larger ones are answered 413 [default: 1MiB].
    #[arg(long = "webhook.max-body-size", value_name = "SIZE")]
    pub webhook_max_body_size: Option<String>,
    /// URL of another shard's replica, `{index}` standing for its shard, e.g. http://monogoto-exporter-{index}.monogoto-exporter:19540: webhook events for its SIMs are forwarded there [default: none, ignored].
    #[arg(long = "shard.peer-url-template", value_name = "URL")]
    pub shard_peer_url_template: Option<String>,
    /// Folder where the exporter keeps its state across restarts (answers, schedule, budget spent, listing); created if missing [default: none, nothing kept].
    #[arg(
        long = "storage.path",
        env = "MONOGOTO_EXPORTER_STORAGE_PATH",
        value_name = "DIR"
    )]
    pub storage_path: Option<std::path::PathBuf>,
    /// Log level or tracing filter (RUST_LOG is honoured when this is not given) [default: info].
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long = "log.format", value_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
}
