//! The `--web.config.file` of the Prometheus exporter-toolkit
//! (docs/web-configuration.md there), so that one file protects node_exporter
//! and this exporter alike: parsing, and validation with errors that name the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::throttle::Throttle;
use super::tls::{self, ClientAuth, TlsMaterial, TlsVersion};

/// The headers exporter-toolkit lets a file set, with their allowed values
/// where the set is closed. Anything else (Authorization, Set-Cookie, ...) is refused.
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// An invalid web configuration file; the text names the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError(String);

impl WebConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        WebConfigError(message.into())
    }
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WebConfigError {}

/// One validated version of the file, ready to serve with.
pub(crate) struct WebConfig {
    /// None: plain HTTP.
    pub(crate) tls: Option<Arc<ServerConfig>>,
    pub(crate) client_auth: ClientAuth,
    pub(crate) http2: bool,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// User name to bcrypt hash; empty: no basic auth.
    pub(crate) users: BTreeMap<String, String>,
    pub(crate) rate_limit: Option<Throttle>,
    /// Keys that are accepted for compatibility but have no effect here.
    pub(crate) warnings: Vec<String>,
    /// SHA-256 of every byte this version was built from (the file and the
    /// files it names), so a reload can tell whether anything changed.
    pub(crate) fingerprint: [u8; 32],
}

// Hand-written so that neither the key nor the password hashes can reach a log.
impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("client_auth", &self.client_auth)
            .field("http2", &self.http2)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    interval: Option<RawDuration>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Int(i64),
    Text(String),
}

/// Reads what the configuration is built from and fingerprints all of it.
struct Sources {
    dir: PathBuf,
    hasher: Sha256,
}

impl Sources {
    /// Relative paths are relative to the web configuration file, as in exporter-toolkit.
    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    fn read(&mut self, key: &str, path: &str) -> Result<Vec<u8>, WebConfigError> {
        let resolved = self.resolve(path);
        let bytes = std::fs::read(&resolved).map_err(|e| {
            WebConfigError::new(format!(
                "{key} {:?}: cannot read: {e}",
                resolved.display().to_string()
            ))
        })?;
        self.note(key.as_bytes());
        self.note(&bytes);
        Ok(bytes)
    }

    /// Length-prefixed, so that no two different inputs hash alike.
    fn note(&mut self, bytes: &[u8]) {
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }
}

impl WebConfig {
    /// Reads and validates the file at `path` and every file it names.
    pub(crate) fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| WebConfigError::new(format!("cannot read: {e}")))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        WebConfig::parse(&text, &dir)
    }

    /// Validates `text`, reading the files it names relative to `dir`.
    pub(crate) fn parse(text: &str, dir: &Path) -> Result<WebConfig, WebConfigError> {
        let raw: RawFile = if text.trim().is_empty() {
            RawFile::default()
        } else {
            serde_yaml_ng::from_str(text)
                .map_err(|e| WebConfigError::new(format!("invalid YAML: {e}")))?
        };
        let mut sources = Sources {
            dir: dir.to_path_buf(),
            hasher: Sha256::new(),
        };
        sources.note(text.as_bytes());
        let mut warnings = Vec::new();

        let http = raw.http_server_config.unwrap_or_default();
        let http2 = http.http2.unwrap_or(true);
        let headers = validate_headers(http.headers.unwrap_or_default())?;
        let users = validate_users(raw.basic_auth_users.unwrap_or_default())?;
        let rate_limit = match raw.rate_limit {
            Some(raw) => validate_rate_limit(raw)?,
            None => None,
        };
        let (tls, client_auth) = match raw.tls_server_config {
            Some(raw) => resolve_tls(raw, http2, &mut sources, &mut warnings)?,
            None => (None, ClientAuth::NoClientCert),
        };
        Ok(WebConfig {
            tls,
            client_auth,
            http2,
            headers,
            users,
            rate_limit,
            warnings,
            fingerprint: sources.hasher.finalize().into(),
        })
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn resolve_tls(
    raw: RawTls,
    http2: bool,
    sources: &mut Sources,
    warnings: &mut Vec<String>,
) -> Result<(Option<Arc<ServerConfig>>, ClientAuth), WebConfigError> {
    let err = |message: String| WebConfigError::new(format!("tls_server_config: {message}"));
    let cert = non_empty(raw.cert);
    let key = non_empty(raw.key);
    let client_ca = non_empty(raw.client_ca);
    let cert_file = non_empty(raw.cert_file);
    let key_file = non_empty(raw.key_file);
    let client_ca_file = non_empty(raw.client_ca_file);
    let client_auth_type = non_empty(raw.client_auth_type);

    // As in exporter-toolkit, TLS is on when any of these is set; a section
    // with only, say, min_version leaves the server on plain HTTP.
    let enabled = cert.is_some()
        || key.is_some()
        || client_ca.is_some()
        || cert_file.is_some()
        || key_file.is_some()
        || client_ca_file.is_some()
        || client_auth_type.is_some();
    if !enabled {
        return Ok((None, ClientAuth::NoClientCert));
    }

    for (name, set) in [
        ("cipher_suites", raw.cipher_suites.is_some()),
        ("curve_preferences", raw.curve_preferences.is_some()),
        (
            "prefer_server_cipher_suites",
            raw.prefer_server_cipher_suites.is_some(),
        ),
    ] {
        if set {
            warnings.push(format!(
                "tls_server_config.{name} is ignored: rustls chooses cipher suites and curves itself"
            ));
        }
    }

    let client_auth = match client_auth_type.as_deref() {
        None => ClientAuth::NoClientCert,
        Some(value) => ClientAuth::parse(value).ok_or_else(|| {
            err(format!(
                "client_auth_type {value:?}: must be one of {}",
                ClientAuth::NAMES
            ))
        })?,
    };
    let min_version = parse_version("min_version", raw.min_version, TlsVersion::Tls12)?;
    let max_version = parse_version("max_version", raw.max_version, TlsVersion::Tls13)?;
    if min_version > max_version {
        return Err(err("min_version is above max_version".into()));
    }

    let cert_pem = inline_or_file(sources, "cert", cert, "cert_file", cert_file)?;
    let key_pem = inline_or_file(sources, "key", key, "key_file", key_file)?;
    let ca_pem = match (client_ca, client_ca_file) {
        (None, None) => None,
        (ca, file) => Some(inline_or_file(
            sources,
            "client_ca",
            ca,
            "client_ca_file",
            file,
        )?),
    };

    let cert_chain =
        certificates(&cert_pem.bytes).map_err(|why| err(format!("{}: {why}", cert_pem.key)))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem.bytes).map_err(|_| {
        err(format!(
            "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) found",
            key_pem.key
        ))
    })?;
    let client_cas = match &ca_pem {
        Some(pem) => certificates(&pem.bytes).map_err(|why| err(format!("{}: {why}", pem.key)))?,
        None => Vec::new(),
    };

    let config = tls::server_config(TlsMaterial {
        cert_chain,
        key,
        client_auth,
        client_cas,
        min_version,
        max_version,
        client_allowed_sans: raw
            .client_allowed_sans
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
        http2,
    })
    .map_err(err)?;
    Ok((Some(config), client_auth))
}

struct Pem {
    key: &'static str,
    bytes: Vec<u8>,
}

/// Exactly one of the inline value and the file must be given.
fn inline_or_file(
    sources: &mut Sources,
    inline_key: &'static str,
    inline: Option<String>,
    file_key: &'static str,
    file: Option<String>,
) -> Result<Pem, WebConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(WebConfigError::new(format!(
            "tls_server_config: give {file_key} or {inline_key}, not both"
        ))),
        (Some(text), None) => {
            sources.note(text.as_bytes());
            Ok(Pem {
                key: inline_key,
                bytes: text.into_bytes(),
            })
        }
        (None, Some(path)) => Ok(Pem {
            key: file_key,
            bytes: sources.read(&format!("tls_server_config.{file_key}"), &path)?,
        }),
        (None, None) => Err(WebConfigError::new(format!(
            "tls_server_config: missing {file_key} (or {inline_key})"
        ))),
    }
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(certs)
}

fn parse_version(
    key: &str,
    value: Option<String>,
    default: TlsVersion,
) -> Result<TlsVersion, WebConfigError> {
    match non_empty(value).as_deref() {
        None => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some(old @ ("TLS10" | "TLS11")) => Err(WebConfigError::new(format!(
            "tls_server_config.{key} {old:?}: TLS 1.0 and 1.1 are not supported (rustls implements TLS12 and TLS13); use TLS12"
        ))),
        Some(other) => Err(WebConfigError::new(format!(
            "tls_server_config.{key} {other:?}: must be TLS12 or TLS13"
        ))),
    }
}

fn validate_headers(
    headers: BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let Some((_, allowed_values)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
            let allowed: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
            return Err(WebConfigError::new(format!(
                "http_server_config.headers: {name:?} cannot be configured; allowed: {}",
                allowed.join(", ")
            )));
        };
        // "Unset if blank", as the toolkit documents.
        if value.is_empty() {
            continue;
        }
        if !allowed_values.is_empty() && !allowed_values.contains(&value.as_str()) {
            return Err(WebConfigError::new(format!(
                "http_server_config.headers.{name} {value:?}: must be one of {}",
                allowed_values.join(", ")
            )));
        }
        let header_value = HeaderValue::from_str(&value).map_err(|_| {
            WebConfigError::new(format!(
                "http_server_config.headers.{name}: not a valid header value"
            ))
        })?;
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            WebConfigError::new(format!(
                "http_server_config.headers: {name:?} is not a header name"
            ))
        })?;
        out.push((header_name, header_value));
    }
    Ok(out)
}

fn validate_users(
    users: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, WebConfigError> {
    for (user, hash) in &users {
        // The hash itself stays out of the message: it is a secret.
        hash.parse::<bcrypt::HashParts>().map_err(|e| {
            WebConfigError::new(format!(
                "basic_auth_users.{user}: not a bcrypt hash ({e}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
            ))
        })?;
        if user.contains(':') {
            return Err(WebConfigError::new(format!(
                "basic_auth_users: user name {user:?} contains ':', which basic auth cannot carry"
            )));
        }
    }
    Ok(users)
}

fn validate_rate_limit(raw: RawRateLimit) -> Result<Option<Throttle>, WebConfigError> {
    let interval = match raw.interval {
        None | Some(RawDuration::Int(0)) => return Ok(None),
        Some(RawDuration::Int(n)) => {
            return Err(WebConfigError::new(format!(
                "rate_limit.interval {n}: write a duration with its unit, e.g. \"1s\" (0 disables)"
            )));
        }
        Some(RawDuration::Text(text)) => {
            if text.trim() == "0" {
                return Ok(None);
            }
            humantime::parse_duration(text.trim()).map_err(|_| {
                WebConfigError::new(format!(
                    "rate_limit.interval {text:?}: invalid duration (try \"1s\" or \"100ms\")"
                ))
            })?
        }
    };
    if interval.is_zero() {
        return Ok(None);
    }
    let burst = raw.burst.unwrap_or(0);
    if burst == 0 {
        // Go's limiter would refuse every request; that is never the intent.
        return Err(WebConfigError::new(
            "rate_limit.burst: must be at least 1 when rate_limit.interval is set",
        ));
    }
    Ok(Some(Throttle::new(interval, burst)))
}

/// Only for tests: how long the limiter waits between requests.
#[cfg(test)]
fn interval_of(config: &WebConfig) -> Option<std::time::Duration> {
    config.rate_limit.as_ref().map(Throttle::interval)
}

#[cfg(test)]
mod tests;
