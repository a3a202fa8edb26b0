//! [`Config::resolve`]: flags, the YAML file, the environment and defaults
//! merged into one `Config`, each value validated with an error naming its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

use super::file::{
    FileConfig, LogFile, MonogotoFile, PollFile, ShardFile, WebFile, WebhookFile, load_file,
};
use super::{
    Config, ConfigError, CredentialsSource, DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY,
    DEFAULT_DISCOVER_INTERVAL, DEFAULT_INACTIVE_INTERVAL, DEFAULT_INTERVAL, DEFAULT_LISTEN_ADDRESS,
    DEFAULT_RATE_LIMIT, DEFAULT_TELEMETRY_PATH, DEFAULT_TIMEOUT, DEFAULT_URL,
    DEFAULT_WEBHOOK_MAX_BODY_SIZE, DISCOVER_INTERVAL_BOUNDS, DurationBounds, ENV_PASSWORD,
    ENV_TOKEN, ENV_WEBHOOK_TOKEN, Environment, ExporterArgs, INACTIVE_INTERVAL_BOUNDS,
    INTERVAL_BOUNDS, LogConfig, LogFormat, MAX_BATCH_SIZE, MAX_CONCURRENCY, MAX_RETRIES,
    MAX_SHARDS, Mode, PollConfig, STALE_AFTER_BOUNDS, SecretSource, TIMEOUT_BOUNDS, WebhookConfig,
};
use crate::iccid;
use crate::monogoto::budget::Budget;
use crate::monogoto::{Credentials, DEFAULT_MAX_BODY_SIZE, DEFAULT_RETRIES, ThingIdsFormat};
use crate::shard::{self, Shard};

/// Characters a telemetry path may not hold: the router would read `{x}`,
/// `*rest` and `:x` as parameters or wildcards (or refuse them at start-up),
/// and a query or fragment never reaches a route.
const TELEMETRY_PATH_FORBIDDEN: &[char] = &['{', '}', '*', ':', '?', '#'];

impl Config {
    /// Resolves flags (already merged with their environment variables by clap),
    /// the secret environment, the YAML file and defaults into one validated Config.
    ///
    /// The steps run in a fixed order, so that the first error reported (and the
    /// order in which `--config.check` finds them) does not change.
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
            storage,
            webhook,
        } = file;

        let web = resolve_web(args, web)?;
        let url = validate_url(args.url.clone().or(monogoto.url.clone()))?;
        let poll = resolve_poll(args, poll)?;
        let log = resolve_log(args, &env, log)?;
        let (credentials, credentials_source) = resolve_credentials(args, &env, &monogoto)?;
        let (iccids, iccids_file) = resolve_iccids(args, &monogoto)?;
        let (discover, discover_interval) = resolve_discover(args, &monogoto)?;
        let requests = resolve_requests(args, &monogoto)?;
        let peer_url_template = validate_peer_url_template(
            args.shard_peer_url_template
                .clone()
                .or(shard.peer_url_template.clone()),
        )?;
        let shard = resolve_shard(args, shard)?;
        let webhook = resolve_webhook(args, &env, webhook)?;
        let warnings = secret_file_warnings(args, &monogoto);
        if mode == Mode::Exporter {
            require_credentials_and_things(credentials.is_some(), !iccids.is_empty() || discover)?;
        }

        Ok(Config {
            listen_address: web.listen_address,
            telemetry_path: web.telemetry_path,
            web_config_file: web.config_file,
            web_limits: web.limits,
            enable_lifecycle: args.enable_lifecycle,
            url,
            credentials,
            credentials_source,
            iccids,
            iccids_file,
            discover,
            discover_interval,
            rate_limit: requests.rate_limit,
            max_body_size: requests.max_body_size,
            thing_ids_format: requests.thing_ids_format,
            shard,
            poll,
            log,
            // Empty: off, so that an image's default can be switched off.
            storage_path: args
                .storage_path
                .clone()
                .or(storage.path)
                .filter(|path| !path.as_os_str().is_empty()),
            webhook,
            shard_peer_url_template: peer_url_template,
            warnings,
        })
    }
}

/// The `web.*` settings, validated in the order they always were.
struct Web {
    listen_address: String,
    telemetry_path: String,
    config_file: Option<PathBuf>,
    limits: crate::web::Limits,
}

fn resolve_web(args: &ExporterArgs, web: WebFile) -> Result<Web, ConfigError> {
    let listen_address =
        validate_listen_address(args.listen_address.clone().or(web.listen_address))?;
    let telemetry_path =
        validate_telemetry_path(args.telemetry_path.clone().or(web.telemetry_path))?;
    let config_file = args.web_config_file.clone().or(web.config_file);
    if let Some(path) = &config_file {
        crate::web::WebConfig::load(path)
            .map_err(|e| ConfigError::value("web.config.file", &path.display().to_string(), e))?;
    }
    let limits = resolve_web_limits(
        args.read_header_timeout.clone().or(web.read_header_timeout),
        args.max_connections.clone().or(web.max_connections),
    )?;
    Ok(Web {
        listen_address,
        telemetry_path,
        config_file,
        limits,
    })
}

/// `log.format`, then `log.level` (the flag, else `RUST_LOG`, else the file).
fn resolve_log(
    args: &ExporterArgs,
    env: &Environment,
    log: LogFile,
) -> Result<LogConfig, ConfigError> {
    let format = match args.log_format.clone().or(log.format).as_deref() {
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
    Ok(LogConfig { filter, format })
}

/// The ICCIDs given (flags, else the file's list), then those of the ICCIDs
/// file, normalized and without duplicates; and that file's path.
fn resolve_iccids(
    args: &ExporterArgs,
    monogoto: &MonogotoFile,
) -> Result<(Vec<String>, Option<PathBuf>), ConfigError> {
    let mut iccids = Vec::new();
    let flag_iccids = if args.iccids.is_empty() {
        monogoto.iccids.clone().unwrap_or_default()
    } else {
        args.iccids.clone()
    };
    for raw in &flag_iccids {
        iccids.push(
            iccid::normalize(raw).map_err(|why| ConfigError::value("monogoto.iccid", raw, why))?,
        );
    }
    let iccids_file = args.iccids_file.clone().or(monogoto.iccids_file.clone());
    if let Some(path) = &iccids_file {
        iccids.extend(read_iccids_file(path)?);
    }
    dedup_keep_order(&mut iccids);
    Ok((iccids, iccids_file))
}

/// `monogoto.discover` and `monogoto.discover-interval`.
fn resolve_discover(
    args: &ExporterArgs,
    monogoto: &MonogotoFile,
) -> Result<(bool, Duration), ConfigError> {
    let discover = args.discover.or(monogoto.discover).unwrap_or(false);
    let discover_interval = match args
        .discover_interval
        .clone()
        .or(monogoto.discover_interval.clone())
    {
        Some(v) => parse_duration("monogoto.discover-interval", &v, DISCOVER_INTERVAL_BOUNDS)?,
        None => DEFAULT_DISCOVER_INTERVAL,
    };
    Ok((discover, discover_interval))
}

/// How requests to the API are made: budget, largest answer, ThingIds form.
struct Requests {
    rate_limit: Budget,
    max_body_size: usize,
    thing_ids_format: ThingIdsFormat,
}

fn resolve_requests(args: &ExporterArgs, monogoto: &MonogotoFile) -> Result<Requests, ConfigError> {
    let rate_limit = validate_rate_limit(
        &args
            .rate_limit
            .clone()
            .or(monogoto.rate_limit.clone())
            .unwrap_or_else(|| DEFAULT_RATE_LIMIT.to_string()),
    )?;
    let max_body_size = match args
        .max_body_size
        .clone()
        .or(monogoto.max_body_size.clone())
    {
        Some(v) => parse_byte_size(&v).ok_or_else(|| {
            ConfigError::value(
                "monogoto.max-body-size",
                &v,
                "must be a size such as \"16MiB\", \"512KiB\" or a number of bytes, at least 1KiB",
            )
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
    Ok(Requests {
        rate_limit,
        max_body_size,
        thing_ids_format,
    })
}

/// Warnings for secret files (and a configuration file holding secrets) that
/// every local user can read.
fn secret_file_warnings(args: &ExporterArgs, monogoto: &MonogotoFile) -> Vec<String> {
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
    warnings
}

/// The exporter (not demo mode) needs credentials and something to export.
fn require_credentials_and_things(
    has_credentials: bool,
    has_things: bool,
) -> Result<(), ConfigError> {
    if !has_credentials {
        return Err(ConfigError::new(
            "monogoto.token",
            format!(
                "no credentials: set {ENV_TOKEN} or --monogoto.token-file, or --monogoto.username with {ENV_PASSWORD} or --monogoto.password-file"
            ),
        ));
    }
    if !has_things {
        return Err(ConfigError::new(
            "monogoto.iccid",
            "no Things to export: give --monogoto.iccid, --monogoto.iccids-file or --monogoto.discover",
        ));
    }
    Ok(())
}

fn resolve_poll(args: &ExporterArgs, file: PollFile) -> Result<PollConfig, ConfigError> {
    let interval = match args.interval.clone().or(file.interval) {
        Some(v) => parse_duration("poll.interval", &v, INTERVAL_BOUNDS)?,
        None => DEFAULT_INTERVAL,
    };
    let batch_size = match args.batch_size.clone().or(file.batch_size) {
        Some(v) => parse_bounded_count("poll.batch-size", &v, 1, MAX_BATCH_SIZE)?,
        None => DEFAULT_BATCH_SIZE,
    };
    let concurrency = match args.concurrency.clone().or(file.concurrency) {
        Some(v) => parse_bounded_count("poll.concurrency", &v, 1, MAX_CONCURRENCY)?,
        None => DEFAULT_CONCURRENCY,
    };
    let timeout = match args.timeout.clone().or(file.timeout) {
        Some(v) => parse_duration("poll.timeout", &v, TIMEOUT_BOUNDS)?,
        None => DEFAULT_TIMEOUT,
    };
    let retries = match args.retries.clone().or(file.retries) {
        Some(v) => parse_bounded_count("poll.retries", &v, 0, MAX_RETRIES)? as u32,
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
/// The budget's windows; each period at most `budget::MAX_WINDOW`, so that
/// the limiter's arithmetic on it cannot overflow.
fn validate_rate_limit(value: &str) -> Result<Budget, ConfigError> {
    value
        .parse::<Budget>()
        .map_err(|why| ConfigError::value("monogoto.rate-limit", value, why))
}

fn parse_bounded_count(
    key: &str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<usize, ConfigError> {
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
        Some(v) => parse_bounded_count("shard.count", &v, 1, MAX_SHARDS)? as u64,
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
pub(super) fn parse_byte_size(value: &str) -> Option<usize> {
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
        limits.max_connections =
            parse_bounded_count("web.max-connections", &v, 1, MAX_MAX_CONNECTIONS)?;
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
    let token = resolve_secret(
        ("monogoto.token", ENV_TOKEN),
        args.token_file.as_deref(),
        env.token.as_ref(),
        file.token_file.as_deref(),
        file.token.as_deref(),
    )?;
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
    let password = resolve_secret(
        ("monogoto.password", ENV_PASSWORD),
        args.password_file.as_deref(),
        env.password.as_ref(),
        file.password_file.as_deref(),
        file.password.as_deref(),
    )?;
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

/// `webhook.*`: on when a token is given, with the body size limit.
fn resolve_webhook(
    args: &ExporterArgs,
    env: &Environment,
    file: WebhookFile,
) -> Result<Option<WebhookConfig>, ConfigError> {
    let max_body_size = match args
        .webhook_max_body_size
        .clone()
        .or(file.max_body_size.clone())
    {
        Some(v) => parse_byte_size(&v).ok_or_else(|| {
            ConfigError::value(
                "webhook.max-body-size",
                &v,
                "must be a size such as \"1MiB\", \"256KiB\" or a number of bytes, at least 1KiB",
            )
        })?,
        None => DEFAULT_WEBHOOK_MAX_BODY_SIZE,
    };
    let token = resolve_secret(
        ("webhook.token", ENV_WEBHOOK_TOKEN),
        args.webhook_token_file.as_deref(),
        env.webhook_token.as_ref(),
        file.token_file.as_deref(),
        file.token.as_deref(),
    )?;
    Ok(token.map(|(token, _)| WebhookConfig {
        token,
        max_body_size,
    }))
}

/// `shard.peer-url-template`: an http(s) URL with `{index}` in it.
fn validate_peer_url_template(value: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(template) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let key = "shard.peer-url-template";
    if !template.contains("{index}") {
        return Err(ConfigError::value(
            key,
            &template,
            "must contain {index}, which stands for the shard, e.g. http://monogoto-exporter-{index}.monogoto-exporter:19540",
        ));
    }
    let example = template.replace("{index}", "0");
    match reqwest::Url::parse(&example) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Ok(Some(template.trim_end_matches('/').to_string()))
        }
        _ => Err(ConfigError::value(
            key,
            &template,
            "must be an http:// or https:// URL with a host",
        )),
    }
}

/// A secret from the first of: the file named by the flag, the environment
/// variable `var`, the file named in the YAML, the YAML's value itself.
/// `key` names the setting in errors (`<key>-file` for the files).
fn resolve_secret(
    (key, var): (&str, &str),
    flag_file: Option<&Path>,
    env: Option<&SecretString>,
    yaml_file: Option<&Path>,
    yaml_inline: Option<&str>,
) -> Result<Option<(SecretString, SecretSource)>, ConfigError> {
    let from_file = |path: &Path| {
        let secret = read_secret_file(&format!("{key}-file"), path)?;
        Ok(Some((secret, SecretSource::File(path.to_path_buf()))))
    };
    if let Some(path) = flag_file {
        return from_file(path);
    }
    if let Some(value) = env {
        return Ok(Some((
            env_secret(key, var, value)?,
            SecretSource::Environment,
        )));
    }
    if let Some(path) = yaml_file {
        return from_file(path);
    }
    Ok(yaml_inline
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| (SecretString::from(v.to_string()), SecretSource::Inline)))
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
pub(super) fn read_iccids_file(path: &Path) -> Result<Vec<String>, ConfigError> {
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
pub(super) fn parse_iccids(text: &str) -> Result<Vec<String>, (usize, String, &'static str)> {
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
